//! Images of one slice (shape (1, Y, X)): spam's 2-D mode of `register` and
//! `registerMultiscale` (spam-compat.md §3.2 "2-D mode", §3.3).
//!
//! spam keeps a 2D image in its 3D layout and changes four things, which live here so that
//! the 3D kernels stay as they are:
//! - warping goes through its Python path (`scipy.ndimage.map_coordinates`), whose bounds are
//!   `[0, N − 1]` inclusive, not the C kernel's `[1, N − 1)` (which would leave nothing of a
//!   plane: Z has one voxel);
//! - the gradient has no Z component (NumPy's `gradient` of the plane);
//! - only the 6 in-plane parameters (Fyy, Fyx, ty, Fxy, Fxx, tx) are solved: the Z rows and
//!   columns of the normal matrix are all zero;
//! - the multiscale levels are `scipy.ndimage.zoom(1/b, order=1)` of the plane, not block means.

use anyhow::{bail, Result};
use ndarray::{Array3, ArrayView3};

use super::interp::{bspline_weights_f32, BackwardMap};
use super::register::{nearest_power_of_two, register, Evaluation, RegisterResult};
use super::register_volume::MultiscaleOptions;
use crate::phi::{self, Phi};
use crate::store::dtype::DType;
use crate::store::Volume;
use crate::field::Status;

/// Whether an image of this shape is a 2D image (one slice).
pub fn is_plane(shape: [usize; 3]) -> bool {
    shape[0] == 1
}

/// Indices of the 12 Gauss–Newton parameters (4·row + column of Φ) that a plane does not
/// determine: the Z row of Φ and the Z column of F.
const OUT_OF_PLANE: [usize; 6] = [0, 1, 2, 3, 4, 8];

/// Reduces an evaluation to the in-plane system: the out-of-plane rows and columns of M
/// become those of the identity and their entries of A zero, so that M⁻¹A solves spam's 6×6
/// system (`M[twoDmaskM]`) and leaves the Z parameters at zero.
pub(crate) fn reduce_to_plane(e: &mut Evaluation) {
    for &k in &OUT_OF_PLANE {
        e.a[k] = 0.0;
        if let Some(m) = e.m.as_mut() {
            for j in 0..12 {
                m[(k, j)] = 0.0;
                m[(j, k)] = 0.0;
            }
            m[(k, k)] = 1.0;
        }
    }
}

/// Bilinear value of a plane (row length `nx`, `ny` rows) at (y, x), for `0 ≤ y ≤ ny − 1`
/// and `0 ≤ x ≤ nx − 1`; weights and sum in f64 as `map_coordinates(order=1)`.
#[inline]
fn bilinear(data: &[f32], ny: usize, nx: usize, y: f32, x: f32) -> f32 {
    // At the last row or column the tap beyond has weight 0: step back one so that it is read
    // inside (weight 1 on the last sample).
    let iy = (y as usize).min(ny.saturating_sub(2));
    let ix = (x as usize).min(nx.saturating_sub(2));
    let ry = y as f64 - iy as f64;
    let rx = x as f64 - ix as f64;
    let at = |yy: usize, xx: usize| -> f64 { if yy < ny && xx < nx { data[yy * nx + xx] as f64 } else { 0.0 } };
    let r0 = at(iy, ix) * (1.0 - rx) + at(iy, ix + 1) * rx;
    let r1 = at(iy + 1, ix) * (1.0 - rx) + at(iy + 1, ix + 1) * rx;
    (r0 * (1.0 - ry) + r1 * ry) as f32
}

/// Bicubic B-spline value of a plane of coefficients (`ny` rows of `nx`) at (y, x), for
/// `0 ≤ y ≤ ny − 1` and `0 ≤ x ≤ nx − 1`: taps beyond the border are mirrored about the
/// first and last sample, as `map_coordinates(order=3, mode="constant")` reads the
/// coefficients of its mirror prefilter. The in-plane arithmetic of the 3D cubic sampler.
#[inline]
fn bicubic(coef: &[f32], ny: usize, nx: usize, y: f32, x: f32) -> f32 {
    let (iy, ix) = (y.floor() as isize, x.floor() as isize);
    let wy = bspline_weights_f32(y - iy as f32);
    let wx = bspline_weights_f32(x - ix as f32);
    let mirror = |i: isize, n: usize| -> usize {
        let last = n as isize - 1;
        if last == 0 {
            return 0;
        }
        // Reflect about 0 and n − 1 (period 2(n − 1)).
        let period = 2 * last;
        let m = i.rem_euclid(period);
        (if m > last { period - m } else { m }) as usize
    };
    let rows: [usize; 4] = std::array::from_fn(|r| mirror(iy - 1 + r as isize, ny));
    let cols: [usize; 4] = std::array::from_fn(|c| mirror(ix - 1 + c as isize, nx));
    let pairs = |v: [f32; 4]| (v[0] + v[1]) + (v[2] + v[3]);
    let col: [f32; 4] = std::array::from_fn(|c| pairs(std::array::from_fn(|r| wy[r] * coef[rows[r] * nx + cols[c]])));
    pairs(std::array::from_fn(|c| col[c] * wx[c]))
}

/// The plane `data` (shape `n`, n[0] = 1; B-spline coefficients for order 3) sampled through
/// `map` at the pixels `origin + [0, dims)` into `out` (the Z coordinate is the plane's own:
/// a plane's Φ has an identity Z row). Both orders follow spam's Python warp
/// (`map_coordinates`): 0 where the source leaves `[0, N − 1]`, bilinear or cubic inside.
pub fn warp_plane_into(data: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3], dims: [usize; 3], order: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(dims[0] * dims[1] * dims[2], 0.0);
    let (ny, nx) = (n[1], n[2]);
    let mut i = 0;
    for _ in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let q = map.apply([0.0, (origin[1] + y) as f32, (origin[2] + x) as f32]);
                let (qy, qx) = (q[1], q[2]);
                let inside = qy >= 0.0 && qy <= (ny - 1) as f32 && qx >= 0.0 && qx <= (nx - 1) as f32;
                out[i] = match (inside, order) {
                    (false, _) => 0.0,
                    (true, 3) => bicubic(data, ny, nx, qy, qx),
                    (true, _) => bilinear(data, ny, nx, qy, qx),
                };
                i += 1;
            }
        }
    }
}

/// Grey levels of a warped plane as SciPy writes them into an integer image (spam's 2D
/// warps call `map_coordinates` on the image itself, whose type the output keeps): rounded
/// half away from zero. Float types are left as they are.
pub fn round_to_type(values: &mut [f32], dtype: DType) {
    if !matches!(dtype, DType::F32 | DType::F64) {
        values.iter_mut().for_each(|v| *v = v.round());
    }
}

/// `scipy.ndimage.zoom(plane, 1/b, order=1)` (spam's binning of 2D images in
/// `registerMultiscale`): the output has `round(N/b)` pixels per axis, output pixel i samples
/// the input at `i·(N − 1)/(n − 1)`, bilinearly; integer types are rounded half away from
/// zero and clipped to the type's range as SciPy writes them (the levels keep the input's type).
pub fn zoom_plane(plane: &ArrayView3<f32>, b: usize, dtype: DType) -> Array3<f32> {
    let d = plane.dim();
    let (ny, nx) = (d.1, d.2);
    let out_n = |v: usize| ((v as f64 / b as f64).round() as usize).max(1);
    let (oy, ox) = (out_n(ny), out_n(nx));
    let step = |n: usize, o: usize| if o > 1 { (n as f64 - 1.0) / (o as f64 - 1.0) } else { 0.0 };
    let (sy, sx) = (step(ny, oy), step(nx, ox));
    let data: Vec<f32> = plane.iter().copied().collect();
    let sample = |y: f64, x: f64| -> f64 {
        let iy = (y.floor() as usize).min(ny.saturating_sub(2));
        let ix = (x.floor() as usize).min(nx.saturating_sub(2));
        let (ry, rx) = (y - iy as f64, x - ix as f64);
        let at = |yy: usize, xx: usize| -> f64 { if yy < ny && xx < nx { data[yy * nx + xx] as f64 } else { 0.0 } };
        (at(iy, ix) * (1.0 - rx) + at(iy, ix + 1) * rx) * (1.0 - ry) + (at(iy + 1, ix) * (1.0 - rx) + at(iy + 1, ix + 1) * rx) * ry
    };
    let range = match dtype {
        DType::U8 => Some((0.0, u8::MAX as f64)),
        DType::U16 => Some((0.0, u16::MAX as f64)),
        DType::I16 => Some((i16::MIN as f64, i16::MAX as f64)),
        DType::U32 => Some((0.0, u32::MAX as f64)),
        DType::F32 | DType::F64 => None,
    };
    Array3::from_shape_fn((1, oy, ox), |(_, y, x)| {
        let v = sample(y as f64 * sy, x as f64 * sx);
        match range {
            Some((lo, hi)) => (if v > 0.0 { v + 0.5 } else { v - 0.5 }).trunc().clamp(lo, hi) as f32,
            None => v as f32,
        }
    })
}

/// spam's `registerMultiscale` for two planes (the `reg` of a 2D image): levels
/// `bin_start, …, bin_stop`, each the SciPy zoom of the planes (the mask zoomed as 0/100
/// bytes, in where the zoomed value is not 0), the translation doubled between levels. The
/// planes are held in memory (a plane of 10⁸ pixels is 400 MB of f32).
pub fn register_multiscale_plane(
    im1: &Volume,
    im2: &Volume,
    mask1: Option<&Volume>,
    phi_init: Option<&Phi>,
    init_bin_ratio: f64,
    o: &MultiscaleOptions,
) -> Result<RegisterResult> {
    let n = im1.shape();
    if !is_plane(n) || im2.shape() != n {
        bail!("image 2 ({:?}) and image 1 ({:?}) must be planes of the same shape", im2.shape(), n);
    }
    let start = nearest_power_of_two(o.bin_start);
    let stop = nearest_power_of_two(o.bin_stop);
    if stop > start {
        bail!("the last binning ({stop}) is coarser than the first ({start})");
    }
    let whole = |v: &Volume| v.read_box(0..1, 0..n[1] as i64, 0..n[2] as i64);
    let (a1, a2) = (whole(im1)?, whole(im2)?);
    let mask = mask1.map(|m| whole(m).map(|a| a.mapv(|v| if v != 0.0 && !v.is_nan() { 100.0f32 } else { 0.0 }))).transpose()?;
    let mut phi = phi_init.copied().unwrap_or_else(Phi::identity);
    phi = phi::rescale(&phi, init_bin_ratio / 2.0 / start as f64);
    let mut b = start;
    loop {
        let (l1, l2, lm) = if b > 1 {
            (zoom_plane(&a1.view(), b, im1.dtype()), zoom_plane(&a2.view(), b, im2.dtype()), mask.as_ref().map(|m| zoom_plane(&m.view(), b, DType::U8)))
        } else {
            (a1.clone(), a2.clone(), mask.clone())
        };
        let lm = lm.map(|m| m.mapv(|v| v != 0.0));
        let mut single = o.single.clone();
        single.margin = o.margin.map(|m| m.map(|v| v / b));
        let init = phi::rescale(&phi, 2.0);
        let mut r = register(&l1.view(), &l2.view(), lm.as_ref().map(|m| m.view()).as_ref(), Some(&init), &single)?;
        phi = r.phi;
        if r.return_status != Status::Converged {
            r.phi = phi::rescale(&r.phi, b as f64);
            return Ok(r);
        }
        if b <= stop {
            r.phi = phi::rescale(&r.phi, stop as f64);
            return Ok(r);
        }
        b /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_samples_end_to_end_and_rounds_integers() {
        // scipy.ndimage.zoom([[0, 1, 2, 3]] * 2, [1, 1.5], order=1) = [0 1 1 2 2 3] (uint16);
        // here a 4-pixel row zoomed by 1/b with b = 1 keeps it, and a 6 → 3 zoom samples
        // pixels 0, 2.5, 5.
        let row = Array3::from_shape_fn((1, 2, 6), |(_, _, x)| x as f32 * 10.0 + 0.2);
        let z = zoom_plane(&row.view(), 2, DType::F32);
        assert_eq!(z.dim(), (1, 1, 3));
        assert!((z[[0, 0, 0]] - 0.2).abs() < 1e-6 && (z[[0, 0, 1]] - 25.2).abs() < 1e-5 && (z[[0, 0, 2]] - 50.2).abs() < 1e-5);
        let zi = zoom_plane(&row.view(), 2, DType::U16);
        assert_eq!(zi.iter().copied().collect::<Vec<_>>(), vec![0.0, 25.0, 50.0]);
    }

    #[test]
    fn bilinear_warp_reaches_the_last_pixel() {
        let n = [1usize, 4, 5];
        let data: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let mut phi = Phi::identity();
        phi[(2, 3)] = 0.5;
        let map = BackwardMap::from_phi(&phi, [0.0, 1.5, 2.0]);
        let mut out = Vec::new();
        warp_plane_into(&data, n, &map, [0; 3], n, 1, &mut out);
        // x + 0.5: inside up to x = 3 (3.5 ≤ 4), the last column's source 4.5 is outside.
        assert_eq!(out[0], 0.5);
        assert_eq!(out[3], 3.5);
        assert_eq!(out[4], 0.0);
        // The identity reads every pixel, the last row and column included.
        warp_plane_into(&data, n, &BackwardMap::from_phi(&Phi::identity(), [0.0, 1.5, 2.0]), [0; 3], n, 1, &mut out);
        assert_eq!(out, data);
    }
}
