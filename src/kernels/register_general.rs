//! The in-memory registration for the two spam options the fused and two-pass paths of
//! [`super::register::register`] do not take: `-gm gaussian -gs σ` (image gradients from
//! SciPy's Gaussian derivative filter instead of NumPy's central differences) and `-shift`
//! (shift-DVC, Wantz et al. 2025).
//!
//! Shift-DVC, as spam 0.9.1's `register` does it: every voxel x of image 1 is sampled at
//! x + δ(x), δ a fixed ±0.25-voxel pattern cycling the 8 corners of a cube along the flat
//! index ([`shift_offset`]); image 2 is warped at Φ(x + δ(x)); the gradient is taken on the
//! unshifted image and sampled trilinearly at x + δ(x); the Jacobian keeps the grid
//! coordinates x. Both images are then interpolated at the same off-grid phases, which breaks
//! the symmetry that makes trilinear interpolation error correlate with the sub-voxel shift.
//! It is a separate path (kept out of the fused pass) because each voxel's sampling point
//! differs; `ldic -shift` runs 8× (trilinear) to 30× (cubic) slower than the fused pass
//! (BENCHMARKS.md, "shift-DVC").

use anyhow::{bail, Result};
use ndarray::{Array3, ArrayView3};

use super::gradient::{gradient_on_box, shift_offset, trilinear_in_box};
use super::interp::{sample, BackwardMap};
use super::register::{any_nan, crop_sums, gauss_newton, RegisterOptions, RegisterResult};
use crate::phi::Phi;

/// spam's `register` with `o.gradient` and `o.shift` honoured (see the module doc); the same
/// margins, crops, statuses and Gauss–Newton loop as [`super::register::register`].
pub(crate) fn register_general(im1: &ArrayView3<f32>, im2: &ArrayView3<f32>, mask1: Option<&ArrayView3<bool>>, phi_init: Option<&Phi>, o: &RegisterOptions) -> Result<RegisterResult> {
    let n1 = {
        let d = im1.dim();
        [d.0, d.1, d.2]
    };
    let n2 = {
        let d = im2.dim();
        [d.0, d.1, d.2]
    };
    if let Some(m) = mask1 {
        let d = m.dim();
        if [d.0, d.1, d.2] != n1 {
            bail!("mask is {:?} but image 1 is {:?}", [d.0, d.1, d.2], n1);
        }
    }
    super::register_volume::check_gradient_reach(n1, o)?;
    // At least 1: the shifted gradient is sampled up to one voxel outside the crop.
    let margin = super::register_volume::level_margin(n1, o);
    if (0..3).any(|a| 2 * margin[a] >= n1[a]) {
        bail!("margin {:?} leaves nothing of image 1 ({:?})", margin, n1);
    }
    let d: [usize; 3] = std::array::from_fn(|a| n2[a] - n1[a]);
    let c2o: [usize; 3] = std::array::from_fn(|a| (d[a] as f64 / 2.0 + margin[a] as f64) as usize);
    let nc: [usize; 3] = std::array::from_fn(|a| n1[a] - 2 * margin[a]);
    let cen: [f32; 3] = std::array::from_fn(|a| ((nc[a] as f64 - 1.0) / 2.0) as f32);
    let coords: [Vec<f64>; 3] = std::array::from_fn(|a| (0..nc[a]).map(|i| (i as f32 - cen[a]) as f64).collect());
    let voxels = nc[0] * nc[1] * nc[2];
    // Offsets per crop voxel (spam places image 1's pattern at the same voxels of image 2).
    let crop_voxel = |k: usize| [k / (nc[1] * nc[2]), (k / nc[2]) % nc[1], k % nc[2]];
    let offsets: Vec<[f32; 3]> = (0..voxels)
        .map(|k| {
            let v = crop_voxel(k);
            if o.shift { shift_offset(std::array::from_fn(|a| margin[a] + v[a]), n1) } else { [0.0; 3] }
        })
        .collect();
    let coefficients = |im: &ArrayView3<f32>, n: [usize; 3]| -> Array3<f32> {
        let g = im.as_standard_layout();
        Array3::from_shape_vec((n[0], n[1], n[2]), super::interp::bspline_coefficients_f32(g.as_slice().expect("standard layout"), n)).expect("shape matches")
    };
    // Image 1's crop, sampled at x + δ with -shift; masked voxels NaN.
    let im1c = (o.shift && o.order == 3).then(|| coefficients(im1, n1));
    let im1s = im1c.as_ref().map(|c| c.view()).unwrap_or_else(|| im1.view());
    let r1s: Vec<f32> = (0..voxels)
        .map(|k| {
            let v = crop_voxel(k);
            let p: [usize; 3] = std::array::from_fn(|a| margin[a] + v[a]);
            if mask1.is_some_and(|m| !m[p]) {
                return f32::NAN;
            }
            if o.shift { sample_inside(&im1s, std::array::from_fn(|a| p[a] as f32 + offsets[k][a]), o.order) } else { im1[p] }
        })
        .collect();
    let r1_has_nan = any_nan(&r1s);
    // The gradient at the crop voxels (x + δ with -shift) of an image known in full.
    let sh = o.shift as usize;
    let grads_of = |im: &ArrayView3<f32>, origin: [usize; 3], n: [usize; 3]| -> Vec<[f32; 3]> {
        let lo: [usize; 3] = std::array::from_fn(|a| origin[a] - sh);
        let hi: [usize; 3] = std::array::from_fn(|a| (origin[a] + nc[a] + sh).min(n[a]));
        let g = gradient_on_box(im, [0; 3], n, lo, hi, o.gradient);
        (0..voxels)
            .map(|k| {
                let v = crop_voxel(k);
                std::array::from_fn(|c| {
                    if o.shift {
                        trilinear_in_box(&g[c].view(), lo, std::array::from_fn(|a| (origin[a] + v[a]) as f32 + offsets[k][a]))
                    } else {
                        g[c][[v[0] + sh, v[1] + sh, v[2] + sh]]
                    }
                })
            })
            .collect()
    };
    let mut grads = if o.update_gradient { Vec::new() } else { grads_of(im1, margin, n1) };
    let im2c = (o.order == 3).then(|| coefficients(im2, n2));
    let im2s = im2c.as_ref().map(|c| c.view()).unwrap_or_else(|| im2.view());
    let centre2: [f64; 3] = std::array::from_fn(|a| (n2[a] as f64 - 1.0) / 2.0);
    // Image 2 at Φ(x + δ) over the crop (without δ: the whole image, for -ug's gradient).
    let warp_crop = |phi: &Phi| -> Vec<f32> {
        let map = BackwardMap::from_phi(phi, centre2);
        (0..voxels)
            .map(|k| {
                let v = crop_voxel(k);
                sample(&im2s, map.apply(std::array::from_fn(|a| (c2o[a] + v[a]) as f32 + offsets[k][a])), o.order)
            })
            .collect()
    };
    let warp_whole = |phi: &Phi| -> Array3<f32> {
        let map = BackwardMap::from_phi(phi, centre2);
        Array3::from_shape_fn((n2[0], n2[1], n2[2]), |(z, y, x)| sample(&im2s, map.apply([z as f32, y as f32, x as f32]), o.order))
    };
    let crop_of = |a: &Array3<f32>| -> Vec<f32> { (0..voxels).map(|k| a[std::array::from_fn(|i| c2o[i] + crop_voxel(k)[i])]).collect() };
    // Without an initial Φ (and without -shift) spam first compares with image 2 itself.
    let mut unwarped = phi_init.is_none() && !o.shift;
    let evaluate = |phi: &Phi, need_m: bool| -> Result<super::register::Evaluation> {
        let def = if o.update_gradient {
            let full = if unwarped { im2.to_owned() } else { warp_whole(phi) };
            grads = grads_of(&full.view(), c2o, n2);
            if o.shift { warp_crop(phi) } else { crop_of(&full) }
        } else if unwarped {
            crop_of(&im2.to_owned())
        } else {
            warp_crop(phi)
        };
        unwarped = false;
        Ok(crop_sums(&r1s, r1_has_nan, &def, &grads, nc, &coords, need_m))
    };
    gauss_newton(phi_init, o, evaluate)
}

/// Image 1 at an off-grid point of its crop, which may lie up to a quarter voxel outside the
/// range where [`sample`] interpolates (spam samples it with SciPy's `map_coordinates`, which
/// interpolates up to the image's faces): trilinear on the voxels, or the cubic B-spline of
/// `coefficients` with mirrored taps (the coefficients' own boundary rule).
fn sample_inside(im: &ArrayView3<f32>, q: [f32; 3], order: usize) -> f32 {
    if order != 3 {
        return trilinear_in_box(im, [0; 3], q);
    }
    let d = im.dim();
    let n = [d.0 as isize, d.1 as isize, d.2 as isize];
    let mirror = |i: isize, len: isize| -> usize {
        let period = 2 * (len - 1).max(1);
        let m = i.rem_euclid(period);
        (if m >= len { period - m } else { m }) as usize
    };
    let f = [q[0].floor(), q[1].floor(), q[2].floor()];
    let w: [[f64; 4]; 3] = std::array::from_fn(|a| super::interp::bspline_weights((q[a] - f[a]) as f64));
    let mut acc = 0f64;
    for (a, wa) in w[0].iter().enumerate() {
        let z = mirror(f[0] as isize - 1 + a as isize, n[0]);
        for (b, wb) in w[1].iter().enumerate() {
            let y = mirror(f[1] as isize - 1 + b as isize, n[1]);
            for (c, wc) in w[2].iter().enumerate() {
                acc += im[[z, y, mirror(f[2] as isize - 1 + c as isize, n[2])]] as f64 * wa * wb * wc;
            }
        }
    }
    acc as f32
}
