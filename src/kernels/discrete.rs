//! Discrete DVC at one label, as spam-ddic does it (spam-compat.md §3.8): cut the label's box
//! (its bounding box grown by the dilation and the margin) from image 1 and the label mask
//! (dilated, other labels removed), cut image 2's box moved by the rounded guess and grown
//! by the margin again, and register the two with the label mask, rigidly by default.
//!
//! Where this differs from spam (docs/spam-differences.md):
//! - Φ is reported at the label's centre of mass, which is where the table says it is: the
//!   registration runs about the box centre, and the guess and the result are moved between
//!   the two points with t_p = t_c + (F − I)(p − c). spam drops that term.
//! - A label too small for the volume threshold is −5 and a missing label or a box wholly
//!   outside image 2 is −7, as spam's documentation says (spam returns −7 for all three).
//! - A label that spam's Gauss–Newton steps do not converge is registered again with damped
//!   steps that must lower the error (`RegisterOptions::damped`, Levenberg–Marquardt), so a
//!   grain whose rotation the images barely show (a uniform sphere) converges in translation
//!   instead of wandering in rotation. Labels spam's steps converge keep spam's result.

use anyhow::Result;
use nalgebra::Vector3;
use ndarray::{Array3, ArrayView3, Axis};

use super::local::{round_even, slice_padded, PointResult};
use super::register::{nearest_power_of_two, register, RegisterOptions, RegisterResult};
use crate::label::{drop_near_others, label_ids, mask_of, LabelTable};
use crate::phi::{self, Phi};
use crate::store::dtype::DType;
use crate::store::{binning, Volume};
use crate::field::Status;

/// Settings of a label correlation (spam-ddic's options).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DiscreteOptions {
    /// Margin around the label box, voxels [-m].
    pub margin: i64,
    /// Dilation (> 0) or erosion (< 0) of the label mask [-ld].
    pub label_dilate: i64,
    /// Remove other labels' voxels from the dilated mask [not -dmo].
    pub mask_others: bool,
    /// Also remove the voxels within this distance of another label, in image 1 and where
    /// that label's guess moves it in image 2 (None: spam's mask).
    pub neighbour_reach: Option<[f64; 2]>,
    /// Labels whose (dilated) mask has at most this many voxels are not correlated [-vt].
    pub volume_threshold: u64,
    /// First binning of the multiscale registration of each label [-msb].
    pub bin_start: usize,
    pub register: RegisterOptions,
}

/// The boxes one label reads: image 1 and the labels over `lo1..hi1`, image 2 over
/// `lo2..hi2` (None when the guess is not finite).
#[derive(Clone, Copy, Debug)]
pub struct LabelBoxes {
    pub lo1: [i64; 3],
    pub hi1: [i64; 3],
    pub image2: Option<([i64; 3], [i64; 3])>,
    /// Centre of box 1 in image coordinates (where the registration's Φ is defined).
    pub centre: Vector3<f64>,
    /// The guess moved to the box centre.
    pub guess_at_centre: Phi,
}

/// The boxes of label `l` for a guess given at its centre of mass, or None for a missing label.
pub fn label_boxes(table: &LabelTable, l: usize, guess: &Phi, o: &DiscreteOptions) -> Option<LabelBoxes> {
    let info = table.get(l)?;
    let grow = o.label_dilate + o.margin;
    let lo1: [i64; 3] = std::array::from_fn(|a| info.bbox[a][0] - grow);
    let hi1: [i64; 3] = std::array::from_fn(|a| info.bbox[a][1] + 1 + grow);
    let centre = Vector3::from_fn(|a, _| lo1[a] as f64 + (hi1[a] - lo1[a] - 1) as f64 / 2.0);
    let com = Vector3::from(info.com);
    let guess_at_centre = phi::move_to(guess, &com, &centre);
    let t = phi::translation(&guess_at_centre);
    let image2 = (phi::is_finite(guess) && (0..3).all(|a| hi1[a] > lo1[a])).then(|| {
        let ext = o.margin + o.label_dilate.max(0);
        let n = t.map(round_even);
        (std::array::from_fn(|a| lo1[a] - ext + n[a] as i64), std::array::from_fn(|a| hi1[a] + ext + n[a] as i64))
    });
    Some(LabelBoxes { lo1, hi1, image2, centre, guess_at_centre })
}

/// Correlates label `l` of `lab` between `im1` and `im2`; `guesses[k]` is label k's Φ at its
/// centre of mass (the other labels' guesses say where their voxels are in image 2). The
/// result is Φ at the centre of mass.
pub fn correlate_label(im1: &Volume, im2: &Volume, lab: &Volume, table: &LabelTable, l: usize, guesses: &[Phi], o: &DiscreteOptions) -> Result<PointResult> {
    let guess = &guesses[l];
    let Some(b) = label_boxes(table, l, guess, o) else {
        return Ok(PointResult::skipped(Status::NoGuess));
    };
    let Some((lo2, hi2)) = b.image2 else {
        // Non-finite guess, or a box eroded away.
        return Ok(PointResult::skipped(if phi::is_finite(guess) { Status::Skipped } else { Status::NoGuess }));
    };
    let ids = label_ids(lab, b.lo1, b.hi1)?;
    let mut mask = mask_of(&ids, l as u32, o.label_dilate, o.mask_others);
    if let Some(reach) = o.neighbour_reach {
        let com = Vector3::from(table.get(l).expect("label exists").com);
        drop_near_others(&mut mask, &ids, l as u32, reach, neighbour_in_image2(table, guesses, guess, &com, b.lo1));
    }
    if mask.iter().filter(|v| **v).count() as u64 <= o.volume_threshold {
        return Ok(PointResult::skipped(Status::Skipped));
    }
    let w2 = slice_padded(im2, lo2, hi2)?;
    if w2.iter().all(|v| v.is_nan()) {
        return Ok(PointResult::skipped(Status::NoGuess));
    }
    let mut w1 = slice_padded(im1, b.lo1, b.hi1)?;
    let mut w2 = w2;
    if super::plane::is_plane(im1.shape()) {
        // A 2D image: spam cuts the boxes (and dilates the mask) in 3D, then keeps their
        // middle slices, which are the image's plane.
        let middle = |a: &Array3<f32>| a.index_axis(Axis(0), (a.dim().0 - 1) / 2).insert_axis(Axis(0)).to_owned();
        w1 = middle(&w1);
        w2 = middle(&w2);
        mask = mask.index_axis(Axis(0), (mask.dim().0 - 1) / 2).insert_axis(Axis(0)).to_owned();
    }
    let n = phi::translation(&b.guess_at_centre).map(round_even);
    let mut init = b.guess_at_centre;
    phi::set_translation(&mut init, &(phi::translation(&b.guess_at_centre) - n));
    // spam's steps first; a label they do not converge (status ≠ 2) is registered again with
    // damped steps, whose result is kept when it converges.
    let plain = RegisterOptions { damped: false, ..o.register.clone() };
    let mut r = register_multiscale_boxes(&w1.view(), &w2.view(), &mask.view(), &init, o.bin_start, &plain)?;
    if o.register.damped && r.return_status != Status::Converged {
        let damped = register_multiscale_boxes(&w1.view(), &w2.view(), &mask.view(), &init, o.bin_start, &o.register)?;
        if damped.return_status == Status::Converged {
            r = damped;
        }
    }
    let mut out = r.phi;
    phi::set_translation(&mut out, &(phi::translation(&r.phi) + n));
    let com = Vector3::from(table.get(l).expect("label exists").com);
    let out = phi::move_to(&out, &b.centre, &com);
    Ok(PointResult { phi: out, return_status: r.return_status, error: r.error, iterations: r.iterations, delta_phi_norm: r.delta_phi_norm, disp_sd: r.disp_sd })
}

/// Where another label's voxel (box coordinates, box origin `lo`) is in image 2 as label
/// `l` sees it: moved by its own guess, then back by label `l`'s guess (`guess` at `com`).
/// None where either guess is unusable.
fn neighbour_in_image2<'a>(table: &'a LabelTable, guesses: &'a [Phi], guess: &Phi, com: &Vector3<f64>, lo: [i64; 3]) -> impl Fn(u32, [i64; 3]) -> Option<[i64; 3]> + 'a {
    let inverse = phi::is_finite(guess).then(|| phi::f_block(guess).try_inverse()).flatten();
    let (t, c) = (phi::translation(guess), *com);
    move |k, p| {
        let fi = inverse?;
        let other = guesses.get(k as usize).filter(|g| phi::is_finite(g))?;
        let ck = Vector3::from(table.get(k as usize)?.com);
        let x = Vector3::new((p[0] + lo[0]) as f64, (p[1] + lo[1]) as f64, (p[2] + lo[2]) as f64);
        let q = ck + phi::f_block(other) * (x - ck) + phi::translation(other);
        let back = c + fi * (q - c - t);
        Some(std::array::from_fn(|a| (back[a] - lo[a] as f64).round() as i64))
    }
}

/// spam's `registerMultiscale` on two boxes held in memory (ddic's `-msb`): levels
/// `bin_start, …, 2, 1`, each box binned as spam bins (block mean; masks by the
/// ⌈b³/100⌉ rule), the margin divided by the bin, the translation doubled between levels.
pub fn register_multiscale_boxes(
    im1: &ArrayView3<f32>,
    im2: &ArrayView3<f32>,
    mask: &ArrayView3<bool>,
    init: &Phi,
    bin_start: usize,
    o: &RegisterOptions,
) -> Result<RegisterResult> {
    let start = nearest_power_of_two(bin_start.max(1));
    if start == 1 {
        return register(im1, im2, Some(mask), Some(init), o);
    }
    let mut phi = phi::rescale(init, 0.5 / start as f64);
    let mut b = start;
    loop {
        let mut single = o.clone();
        single.margin = o.margin.map(|m| m.map(|v| v / b));
        let level_init = phi::rescale(&phi, 2.0);
        let mut r = if b > 1 {
            let (a1, a2, m) = if super::plane::is_plane({ let d = im1.dim(); [d.0, d.1, d.2] }) {
                // spam zooms planes (scipy.ndimage.zoom, order 1) instead of binning them;
                // the boxes are f32 there, the mask 0/100 bytes.
                let zoom = |a: &ArrayView3<f32>| super::plane::zoom_plane(a, b, DType::F32);
                let m100 = mask.mapv(|v| if v { 100.0f32 } else { 0.0 });
                (zoom(im1), zoom(im2), super::plane::zoom_plane(&m100.view(), b, DType::U8).mapv(|v| v != 0.0))
            } else {
                (bin_box(im1, b), bin_box(im2, b), bin_mask(mask, b))
            };
            register(&a1.view(), &a2.view(), Some(&m.view()), Some(&level_init), &single)?
        } else {
            register(im1, im2, Some(mask), Some(&level_init), &single)?
        };
        phi = r.phi;
        if r.return_status != Status::Converged || b == 1 {
            r.phi = phi::rescale(&r.phi, b as f64);
            return Ok(r);
        }
        b /= 2;
    }
}

/// Sums of each b³ block of a box, with spam's binned shape and dropped top
/// (`store::binning`'s rules, which the pyramid and the on-the-fly binned volumes use too).
fn block_sums<T: Copy>(a: &ArrayView3<T>, b: usize, value: impl Fn(T) -> f64) -> Array3<f64> {
    let d = a.dim();
    let n = binning::binned_shape([d.0, d.1, d.2], b);
    let top = binning::binning_top([d.0, d.1, d.2], b);
    Array3::from_shape_fn((n[0], n[1], n[2]), |(z, y, x)| {
        let block = a.slice(ndarray::s![top[0] + z * b..top[0] + (z + 1) * b, top[1] + y * b..top[1] + (y + 1) * b, top[2] + x * b..top[2] + (x + 1) * b]);
        block.iter().map(|&v| value(v)).sum()
    })
}

/// spam's `binning` of a box: the f32 mean of each b³ block.
fn bin_box(a: &ArrayView3<f32>, b: usize) -> Array3<f32> {
    block_sums(a, b, |v| v as f64).mapv(|s| binning::block_mean(s, b * b * b, DType::F32) as f32)
}

/// spam's binned mask: a binned voxel is in when at least ⌈b³/100⌉ of its block is.
fn bin_mask(a: &ArrayView3<bool>, b: usize) -> Array3<bool> {
    let need = binning::mask_votes_needed(b * b * b) as f64;
    block_sums(a, b, |v| f64::from(u8::from(v))).mapv(|c| c >= need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binning_drops_the_top_and_averages_blocks() {
        let a = Array3::from_shape_fn((5, 4, 4), |(z, y, x)| (z * 100 + y * 10 + x) as f32);
        let b = bin_box(&a.view(), 2);
        assert_eq!(b.dim(), (2, 2, 2));
        // Z: 5 mod 2 = 1, top = 0; block (0,0,0) averages z 0-1, y 0-1, x 0-1.
        assert_eq!(b[[0, 0, 0]], (0.0 + 1.0 + 10.0 + 11.0 + 100.0 + 101.0 + 110.0 + 111.0) / 8.0);
        let m = Array3::from_shape_fn((4, 4, 4), |(z, y, x)| z == 0 && y == 0 && x == 0);
        let bm = bin_mask(&m.view(), 2);
        assert!(bm[[0, 0, 0]] && !bm[[1, 1, 1]], "one voxel of 8 is enough for bins ≤ 4");
    }
}
