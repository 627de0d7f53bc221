//! Interpolation and image warping with spam's exact conventions.
//!
//! Trilinear (order 1) is spam's C kernel to the bit where it matters: transformed
//! coordinates evaluated in f32, weights in f64, and a voxel written only when every
//! coordinate satisfies `1 ≤ q < N − 1` (else 0). Order 3 is the Keys cubic convolution
//! kernel (a = −0.5): interpolating, C¹, 4 taps per axis, no prefilter, so it can be
//! evaluated on a box read from the store without a global spline solve.

use ndarray::{Array3, ArrayView3};

use crate::phi::Phi;

/// Trilinear value at q, assuming `0 ≤ floor(q_i)` and `floor(q_i) + 1 < N_i`.
#[inline]
pub fn trilinear(im: &ArrayView3<f32>, q: [f32; 3]) -> f32 {
    let f = [q[0].floor(), q[1].floor(), q[2].floor()];
    let i = [f[0] as usize, f[1] as usize, f[2] as usize];
    let r = [(q[0] - f[0]) as f64, (q[1] - f[1]) as f64, (q[2] - f[2]) as f64];
    let mut acc = 0f64;
    for dz in 0..2 {
        let wz = if dz == 1 { r[0] } else { 1.0 - r[0] };
        for dy in 0..2 {
            let wy = if dy == 1 { r[1] } else { 1.0 - r[1] };
            for dx in 0..2 {
                let wx = if dx == 1 { r[2] } else { 1.0 - r[2] };
                acc += im[[i[0] + dz, i[1] + dy, i[2] + dx]] as f64 * wz * wy * wx;
            }
        }
    }
    acc as f32
}

#[inline]
fn keys(t: f64) -> f64 {
    let a = -0.5;
    let t = t.abs();
    if t <= 1.0 {
        (a + 2.0) * t * t * t - (a + 3.0) * t * t + 1.0
    } else if t < 2.0 {
        a * t * t * t - 5.0 * a * t * t + 8.0 * a * t - 4.0 * a
    } else {
        0.0
    }
}

/// Keys cubic value at q, assuming `1 ≤ floor(q_i)` and `floor(q_i) + 2 < N_i`.
#[inline]
pub fn tricubic(im: &ArrayView3<f32>, q: [f32; 3]) -> f32 {
    let f = [q[0].floor(), q[1].floor(), q[2].floor()];
    let i = [f[0] as isize, f[1] as isize, f[2] as isize];
    let r = [(q[0] - f[0]) as f64, (q[1] - f[1]) as f64, (q[2] - f[2]) as f64];
    let w = |a: usize| [keys(r[a] + 1.0), keys(r[a]), keys(1.0 - r[a]), keys(2.0 - r[a])];
    let (wz, wy, wx) = (w(0), w(1), w(2));
    let mut acc = 0f64;
    for (a, wa) in wz.iter().enumerate() {
        for (b, wb) in wy.iter().enumerate() {
            let mut row = 0f64;
            for (c, wc) in wx.iter().enumerate() {
                row += im[[(i[0] - 1 + a as isize) as usize, (i[1] - 1 + b as isize) as usize, (i[2] - 1 + c as isize) as usize]] as f64 * wc;
            }
            acc += row * wa * wb;
        }
    }
    acc as f32
}

/// Whether q can be sampled with `order` (1 or 3) in an image of shape n (spam's C bounds
/// test `order ≤ q < N − order`).
#[inline]
pub fn in_bounds(q: [f32; 3], n: [usize; 3], order: usize) -> bool {
    let o = order as f32;
    (0..3).all(|a| q[a] >= o && q[a] < n[a] as f32 - o)
}

/// Samples with the given order, 0 where out of bounds.
#[inline]
pub fn sample(im: &ArrayView3<f32>, q: [f32; 3], order: usize) -> f32 {
    let d = im.dim();
    if !in_bounds(q, [d.0, d.1, d.2], order) {
        return 0.0;
    }
    if order == 3 {
        tricubic(im, q)
    } else {
        trilinear(im, q)
    }
}

/// The f32 coefficients of a "backward" map: q = c + K (x − c) + k, all in f32 as spam does.
#[derive(Clone, Copy, Debug)]
pub struct BackwardMap {
    pub k: [[f32; 4]; 3],
    pub c: [f32; 3],
}

impl BackwardMap {
    /// The map that samples the source at `c + F(x − c) + t` for Φ = [F, t] (spam's
    /// convention when it warps im2 "by Φ" inside `register`).
    pub fn from_phi(k: &Phi, centre: [f64; 3]) -> BackwardMap {
        let mut m = [[0f32; 4]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = k[(i, j)] as f32;
            }
        }
        BackwardMap { k: m, c: [centre[0] as f32, centre[1] as f32, centre[2] as f32] }
    }

    /// Source coordinate of output voxel x.
    #[inline]
    pub fn apply(&self, x: [f32; 3]) -> [f32; 3] {
        let d = [x[0] - self.c[0], x[1] - self.c[1], x[2] - self.c[2]];
        std::array::from_fn(|i| self.k[i][0] * d[0] + self.k[i][1] * d[1] + self.k[i][2] * d[2] + self.k[i][3] + self.c[i])
    }
}

/// spam's `applyPhi`: the image deformed so that material at X appears at Φ(X), warped about
/// the image centre (order 1 or 3). A singular Φ is replaced by the identity, as spam does.
pub fn apply_phi(im: &ArrayView3<f32>, phi: &Phi, order: usize) -> Array3<f32> {
    let d = im.dim();
    let c = [(d.0 as f64 - 1.0) / 2.0, (d.1 as f64 - 1.0) / 2.0, (d.2 as f64 - 1.0) / 2.0];
    let inv = phi.try_inverse().unwrap_or_else(Phi::identity);
    let map = BackwardMap::from_phi(&inv, c);
    Array3::from_shape_fn(d, |(z, y, x)| sample(im, map.apply([z as f32, y as f32, x as f32]), order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolators_reproduce_linear_and_cubic_exactly() {
        let lin = Array3::from_shape_fn((8, 8, 8), |(z, y, x)| (2.0 * z as f32) - y as f32 + 0.5 * x as f32);
        let v = lin.view();
        let q = [3.25f32, 2.5, 4.75];
        let want = 2.0 * 3.25 - 2.5 + 0.5 * 4.75;
        assert!((trilinear(&v, q) - want).abs() < 1e-5);
        assert!((tricubic(&v, q) - want).abs() < 1e-4);
        // Keys reproduces quadratics exactly.
        let quad = Array3::from_shape_fn((8, 8, 8), |(z, y, x)| (z * z) as f32 + (y * x) as f32);
        let want = 3.25f32 * 3.25 + 2.5 * 4.75;
        assert!((tricubic(&quad.view(), q) - want).abs() < 1e-3);
        assert_eq!(sample(&v, [0.5, 3.0, 3.0], 1), 0.0, "outermost layer is never sampled");
    }

    #[test]
    fn apply_phi_translates() {
        let im = Array3::from_shape_fn((12, 12, 12), |(z, y, x)| (z * 100 + y * 10 + x) as f32);
        let mut phi = Phi::identity();
        phi[(0, 3)] = 1.0;
        let out = apply_phi(&im.view(), &phi, 1);
        // Material at z moves to z + 1.
        assert_eq!(out[[5, 5, 5]], im[[4, 5, 5]]);
    }
}
