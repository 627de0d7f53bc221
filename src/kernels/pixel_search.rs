//! Pixel search at one grid point or one label (spam-compat.md §3.4, §3.5, §3.8): cut the
//! window of image 1 (deformed by the guess's F when asked), cut the window of image 2 moved
//! by the rounded guess and grown by the search range, and find the best integer offset with
//! [`super::ncc`].
//!
//! One deliberate difference from spam: a label's search covers exactly the asked range.
//! spam grows both label boxes by the dilation and so searches ±(range + 2·dilation).

use anyhow::Result;
use nalgebra::Vector3;
use ndarray::Array3;

use super::deform::{warp_array, warp_mask};
use super::local::{round_even, slice_padded, window1_box};
use super::ncc::{self, Method};
use crate::label::{label_mask, LabelTable};
use crate::phi::{self, ApplyF, Phi};
use crate::store::Volume;
use crate::field::Status;

/// Settings shared by grid and label searches.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PixelOptions {
    /// Half window (grid mode).
    pub hws: [usize; 3],
    /// Search range around the rounded guess: lowest and highest offset per axis.
    pub range_lo: [i64; 3],
    pub range_hi: [i64; 3],
    pub mask_coverage: f64,
    #[serde(serialize_with = "crate::distribute::any_f64")]
    pub grey_low: f64,
    #[serde(serialize_with = "crate::distribute::any_f64")]
    pub grey_high: f64,
    /// What part of the guess's F deforms window 1.
    pub apply_f: ApplyF,
    pub method: Method,
    /// Refine the integer peak with a parabola per axis.
    pub subvoxel: bool,
    /// Zero-normalised coefficient (window means removed) instead of spam's non-centred one.
    pub zero_mean: bool,
    /// Label mode: dilation of the label (and margin of its box).
    pub label_dilate: i64,
    /// Label mode: labels of at most this many voxels are not searched.
    pub volume_threshold: u64,
}

/// One point's outcome, in spam's pixel-search columns.
#[derive(Clone, Debug)]
pub struct PixelResult {
    pub phi: Phi,
    pub cc: f64,
    pub error: f64,
    /// 1 found, −5 window skipped (grey, mask, too small), −7 missing label or bad guess.
    pub status: Status,
}

impl PixelResult {
    /// A point that was not searched: the guess's F, NaN translation, CC 0, error ∞.
    pub fn failed(guess: &Phi, status: Status) -> PixelResult {
        let f = phi::f_block(guess);
        let f = if f.iter().all(|v| v.is_finite()) { f } else { nalgebra::Matrix3::identity() };
        PixelResult { phi: phi::from_f_t(&f, &Vector3::from_element(f64::NAN)), cc: 0.0, error: f64::INFINITY, status }
    }
}

/// NumPy `allclose(P, I)`: |P − I| ≤ 1e-8 + 1e-5·|I| entrywise.
fn near_identity(p: &Phi) -> bool {
    let i = Phi::identity();
    p.iter().zip(i.iter()).all(|(a, b)| (a - b).abs() <= 1e-8 + 1e-5 * b.abs())
}

/// The part of the guess that deforms window 1 (translation removed), or None for none.
fn window_deformation(guess: &Phi, mode: ApplyF) -> Option<Phi> {
    if mode == ApplyF::No {
        return None;
    }
    let mut p = *guess;
    phi::set_translation(&mut p, &Vector3::zeros());
    if mode == ApplyF::Rigid {
        p = phi::rigid_part(&p);
    }
    if near_identity(&p) {
        None
    } else {
        Some(p)
    }
}

/// Padding read around a window that is deformed (spam: `int(0.5·ceil(max(h)))`).
fn warp_pad(hws: [usize; 3]) -> i64 {
    (0.5 * *hws.iter().max().unwrap() as f64) as i64
}

/// The boxes a grid point reads from image 1 and image 2 (for prefetching).
pub fn point_boxes(p: &Vector3<f64>, guess: &Phi, o: &PixelOptions) -> (([i64; 3], [i64; 3]), Option<([i64; 3], [i64; 3])>) {
    let (lo, hi) = window1_box(p, o.hws);
    let pad = warp_pad(o.hws);
    let b1 = (lo.map(|v| v - pad), hi.map(|v| v + pad));
    let t = phi::translation(guess);
    if !t.iter().all(|v| v.is_finite()) {
        return (b1, None);
    }
    let n = t.map(round_even);
    let b2 = (std::array::from_fn(|a| lo[a] + n[a] as i64 + o.range_lo[a]), std::array::from_fn(|a| hi[a] + n[a] as i64 + o.range_hi[a]));
    (b1, Some(b2))
}

/// Searches window 2 (`lo2` its origin in image 2) for window 1 and fills the result; `n`
/// the rounded guess.
fn finish(w1: &Array3<f32>, w2: &Array3<f32>, guess: &Phi, n: &Vector3<f64>, o: &PixelOptions, fail: Status) -> PixelResult {
    let Some(best) = ncc::search(&w1.view(), &w2.view(), o.method, o.subvoxel, o.zero_mean) else {
        return PixelResult::failed(guess, fail);
    };
    let mut out = *guess;
    let d = Vector3::from_fn(|a, _| best.offset[a] as f64 + o.range_lo[a] as f64 + n[a] + best.subvoxel[a]);
    phi::set_translation(&mut out, &d);
    PixelResult { phi: out, cc: best.cc, error: ncc::error_at(&w1.view(), &w2.view(), best.offset), status: Status::FOUND }
}

/// Pixel search at grid point `p` with initial Φ `guess` (spam's `pixelSearchLocal` step).
pub fn search_point(im1: &Volume, im2: &Volume, mask1: Option<&Volume>, mask2: Option<&Volume>, p: &Vector3<f64>, guess: &Phi, o: &PixelOptions) -> Result<PixelResult> {
    let t = phi::translation(guess);
    if !t.iter().all(|v| v.is_finite()) || !phi::is_finite(guess) {
        return Ok(PixelResult::failed(guess, Status::NoGuess));
    }
    let n = t.map(round_even);
    let (lo, hi) = window1_box(p, o.hws);
    if (0..3).any(|a| hi[a] <= lo[a]) {
        return Ok(PixelResult::failed(guess, Status::Skipped));
    }
    let (mut w1, m1) = match window_deformation(guess, o.apply_f) {
        None => (slice_padded(im1, lo, hi)?, mask1.map(|m| slice_padded(m, lo, hi).map(|a| a.mapv(|v| v != 0.0 && !v.is_nan()))).transpose()?),
        Some(def) => {
            let pad = warp_pad(o.hws);
            let (plo, phi_) = (lo.map(|v| v - pad), hi.map(|v| v + pad));
            let big = slice_padded(im1, plo, phi_)?;
            let d = big.dim();
            let c = [(d.0 as f64 - 1.0) / 2.0, (d.1 as f64 - 1.0) / 2.0, (d.2 as f64 - 1.0) / 2.0];
            let cut = |a: Array3<f32>| a.slice(ndarray::s![pad as isize..d.0 as isize - pad as isize, pad as isize..d.1 as isize - pad as isize, pad as isize..d.2 as isize - pad as isize]).to_owned();
            let w = cut(warp_array(&big.view(), &def, c));
            let m = match mask1 {
                Some(m) => {
                    let mb = slice_padded(m, plo, phi_)?.mapv(|v| v != 0.0 && !v.is_nan());
                    let mw = warp_mask(&mb.view(), &def, c);
                    Some(mw.slice(ndarray::s![pad as isize..d.0 as isize - pad as isize, pad as isize..d.1 as isize - pad as isize, pad as isize..d.2 as isize - pad as isize]).to_owned())
                }
                None => None,
            };
            (w, m)
        }
    };
    let (sum, cnt) = w1.iter().filter(|v| !v.is_nan()).fold((0f64, 0usize), |(s, c), v| (s + *v as f64, c + 1));
    let mean = if cnt > 0 { sum / cnt as f64 } else { f64::NAN };
    if !(o.grey_low < mean && mean < o.grey_high) {
        return Ok(PixelResult::failed(guess, Status::Skipped));
    }
    if let Some(m) = &m1 {
        let cover = m.iter().filter(|b| **b).count() as f64 / m.len() as f64;
        if cover < o.mask_coverage {
            return Ok(PixelResult::failed(guess, Status::Skipped));
        }
        w1.zip_mut_with(m, |v, keep| {
            if !keep {
                *v = f32::NAN
            }
        });
    }
    let lo2: [i64; 3] = std::array::from_fn(|a| lo[a] + n[a] as i64 + o.range_lo[a]);
    let hi2: [i64; 3] = std::array::from_fn(|a| hi[a] + n[a] as i64 + o.range_hi[a]);
    let mut w2 = slice_padded(im2, lo2, hi2)?;
    if let Some(m) = mask2 {
        let mb = slice_padded(m, lo2, hi2)?;
        w2.zip_mut_with(&mb, |v, m| {
            if *m == 0.0 || m.is_nan() {
                *v = f32::NAN
            }
        });
    }
    Ok(finish(&w1, &w2, guess, &n, o, Status::Skipped))
}

/// Pixel search of label `l` (spam's `pixelSearchDiscrete` step, with the exact range).
pub fn search_label(im1: &Volume, im2: &Volume, lab: &Volume, table: &LabelTable, l: usize, guess: &Phi, o: &PixelOptions) -> Result<PixelResult> {
    let Some(info) = table.get(l) else {
        return Ok(PixelResult::failed(guess, Status::NoGuess));
    };
    let t = phi::translation(guess);
    if !t.iter().all(|v| v.is_finite()) || !phi::is_finite(guess) {
        return Ok(PixelResult::failed(guess, Status::NoGuess));
    }
    let n = t.map(round_even);
    let grow = 2 * o.label_dilate.max(0);
    let lo: [i64; 3] = std::array::from_fn(|a| info.bbox[a][0] - grow);
    let hi: [i64; 3] = std::array::from_fn(|a| info.bbox[a][1] + 1 + grow);
    let mut mask = label_mask(lab, l as u32, lo, hi, o.label_dilate, true)?;
    let mut w1 = slice_padded(im1, lo, hi)?;
    if let Some(def) = window_deformation(guess, o.apply_f) {
        let c = std::array::from_fn(|a| info.com[a] - lo[a] as f64);
        w1 = warp_array(&w1.view(), &def, c);
        mask = warp_mask(&mask.view(), &def, c);
    }
    if mask.iter().filter(|b| **b).count() as u64 <= o.volume_threshold {
        return Ok(PixelResult::failed(guess, Status::Skipped));
    }
    w1.zip_mut_with(&mask, |v, keep| {
        if !keep {
            *v = f32::NAN
        }
    });
    let lo2: [i64; 3] = std::array::from_fn(|a| lo[a] + n[a] as i64 + o.range_lo[a]);
    let hi2: [i64; 3] = std::array::from_fn(|a| hi[a] + n[a] as i64 + o.range_hi[a]);
    let w2 = slice_padded(im2, lo2, hi2)?;
    if w2.iter().all(|v| v.is_nan()) {
        return Ok(PixelResult::failed(guess, Status::Skipped));
    }
    Ok(finish(&w1, &w2, guess, &n, o, Status::Skipped))
}

/// The boxes label `l` reads from image 1 (and the label volume) and image 2.
pub fn label_boxes(table: &LabelTable, l: usize, guess: &Phi, o: &PixelOptions) -> Option<(([i64; 3], [i64; 3]), Option<([i64; 3], [i64; 3])>)> {
    let info = table.get(l)?;
    let grow = 2 * o.label_dilate.max(0);
    let lo: [i64; 3] = std::array::from_fn(|a| info.bbox[a][0] - grow);
    let hi: [i64; 3] = std::array::from_fn(|a| info.bbox[a][1] + 1 + grow);
    let t = phi::translation(guess);
    if !t.iter().all(|v| v.is_finite()) {
        return Some(((lo, hi), None));
    }
    let n = t.map(round_even);
    Some(((lo, hi), Some((std::array::from_fn(|a| lo[a] + n[a] as i64 + o.range_lo[a]), std::array::from_fn(|a| hi[a] + n[a] as i64 + o.range_hi[a])))))
}
