//! Local DVC at one point, as spam-ldic does it (spam-compat.md §3.4, §3.6): cut the window
//! of image 1 around the node and the window of image 2 moved by the rounded guess and grown
//! by the margin, check grey levels and mask coverage, then register the two with the guess's
//! sub-voxel part and margin 1.

use anyhow::Result;
use nalgebra::Vector3;
use ndarray::Array3;

use super::register::{register, RegisterOptions};
use crate::phi::{self, Phi};
use crate::store::Volume;
use crate::field::Status;

/// Settings of a local correlation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LocalOptions {
    /// Half window size (Z, Y, X).
    pub hws: [usize; 3],
    /// Search margin of window 2 around window 1 (Z, Y, X).
    pub margin: [usize; 3],
    /// Minimum fraction of unmasked voxels in window 1.
    pub mask_coverage: f64,
    /// Skip windows whose mean grey level is not strictly between these.
    #[serde(serialize_with = "crate::distribute::any_f64")]
    pub grey_low: f64,
    #[serde(serialize_with = "crate::distribute::any_f64")]
    pub grey_high: f64,
    pub register: RegisterOptions,
}

/// What one point gives: spam's columns.
#[derive(Clone, Debug)]
pub struct PointResult {
    pub phi: Phi,
    pub return_status: Status,
    pub error: f64,
    pub iterations: usize,
    pub delta_phi_norm: f64,
    /// Predicted standard deviation of the displacement (Z, Y, X), NaN if not correlated.
    pub disp_sd: [f64; 3],
}

impl PointResult {
    /// A point that was not correlated: F = I, t = NaN, error and ‖δΦ‖ infinite.
    pub fn skipped(status: Status) -> PointResult {
        let mut p = Phi::identity();
        for i in 0..3 {
            p[(i, 3)] = f64::NAN;
        }
        PointResult { phi: p, return_status: status, error: f64::INFINITY, iterations: 0, delta_phi_norm: f64::INFINITY, disp_sd: [f64::NAN; 3] }
    }
}

/// NumPy rounding: ties to even.
pub fn round_even(v: f64) -> f64 {
    v.round_ties_even()
}

/// spam's `slicePadded`: the box, zero outside the image; all NaN if it misses the image.
pub fn slice_padded(vol: &Volume, lo: [i64; 3], hi: [i64; 3]) -> Result<Array3<f32>> {
    let s = vol.shape();
    let mut a = vol.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
    let touches = (0..3).all(|k| lo[k] < s[k] as i64 && hi[k] > 0);
    if touches {
        a.as_slice_mut().expect("a new array is contiguous").iter_mut().for_each(|v| *v = if v.is_nan() { 0.0 } else { *v });
    }
    Ok(a)
}

/// The mean of the values that are not NaN (NaN if none), summed in f64 over 8 lanes so that
/// the compiler vectorises it.
fn nan_mean(values: &[f32]) -> f64 {
    let (mut sum, mut count) = ([0f64; 8], [0u32; 8]);
    let blocks = values.chunks_exact(8);
    let tail = blocks.remainder();
    for block in blocks {
        for l in 0..8 {
            let keep = !block[l].is_nan();
            sum[l] += if keep { block[l] as f64 } else { 0.0 };
            count[l] += keep as u32;
        }
    }
    for v in tail.iter().filter(|v| !v.is_nan()) {
        sum[0] += *v as f64;
        count[0] += 1;
    }
    let n: u32 = count.iter().sum();
    if n > 0 { sum.iter().sum::<f64>() / n as f64 } else { f64::NAN }
}

/// The window of image 1 around `p` (spam: `int(p − h)` to `int(p + h + 1)`).
pub fn window1_box(p: &Vector3<f64>, h: [usize; 3]) -> ([i64; 3], [i64; 3]) {
    (std::array::from_fn(|a| (p[a] - h[a] as f64) as i64), std::array::from_fn(|a| (p[a] + h[a] as f64 + 1.0) as i64))
}

/// The window of image 2: window 1 moved by the rounded guess `n` and grown by the margin.
pub fn window2_box(p: &Vector3<f64>, h: [usize; 3], n: &Vector3<f64>, m: [usize; 3]) -> ([i64; 3], [i64; 3]) {
    (
        std::array::from_fn(|a| (p[a] - h[a] as f64 + n[a] - m[a] as f64) as i64),
        std::array::from_fn(|a| (p[a] + h[a] as f64 + n[a] + m[a] as f64 + 1.0) as i64),
    )
}

/// The boxes a point reads: window 1 (image 1 and its mask), and window 2 (image 2) when the
/// guess has a translation to move it by. The prefetch and [`correlate_point`] both cut
/// their windows with this.
pub fn point_boxes(p: &Vector3<f64>, guess: &Phi, o: &LocalOptions) -> (([i64; 3], [i64; 3]), Option<([i64; 3], [i64; 3])>) {
    let t = phi::translation(guess);
    let b2 = t.iter().all(|v| v.is_finite()).then(|| window2_box(p, o.hws, &t.map(round_even), o.margin));
    (window1_box(p, o.hws), b2)
}

/// Correlates one point whose initial Φ is `guess` (spam-ldic's per-node work).
pub fn correlate_point(im1: &Volume, im2: &Volume, mask1: Option<&Volume>, p: &Vector3<f64>, guess: &Phi, o: &LocalOptions) -> Result<PointResult> {
    if !phi::is_finite(guess) {
        return Ok(PointResult::skipped(Status::NoGuess));
    }
    let t0 = phi::translation(guess);
    let n = t0.map(round_even);
    let ((lo1, hi1), window2) = point_boxes(p, guess, o);
    let Some((lo2, hi2)) = window2 else {
        return Ok(PointResult::skipped(Status::NoGuess));
    };
    if (0..3).any(|a| hi1[a] <= lo1[a]) {
        return Ok(PointResult::skipped(Status::Skipped));
    }
    let w1 = slice_padded(im1, lo1, hi1)?;
    let mean = nan_mean(w1.as_slice().expect("a new array is contiguous"));
    if !(o.grey_low < mean && mean < o.grey_high) {
        return Ok(PointResult::skipped(Status::Skipped));
    }
    let mask = match mask1 {
        Some(m) => {
            let mw = slice_padded(m, lo1, hi1)?.mapv(|v| v != 0.0 && !v.is_nan());
            let cover = mw.iter().filter(|b| **b).count() as f64 / mw.len() as f64;
            if cover < o.mask_coverage {
                return Ok(PointResult::skipped(Status::Skipped));
            }
            Some(mw)
        }
        None => None,
    };
    let w2 = slice_padded(im2, lo2, hi2)?;
    let mut init = *guess;
    phi::set_translation(&mut init, &(t0 - n));
    let r = register(&w1.view(), &w2.view(), mask.as_ref().map(|m| m.view()).as_ref(), Some(&init), &o.register)?;
    let mut out = r.phi;
    phi::set_translation(&mut out, &(phi::translation(&r.phi) + n));
    Ok(PointResult { phi: out, return_status: r.return_status, error: r.error, iterations: r.iterations, delta_phi_norm: r.delta_phi_norm, disp_sd: r.disp_sd })
}
