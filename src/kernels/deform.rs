//! Warping a whole volume by a single Φ, slab by slab, without holding it in memory.
//!
//! Each output slab's source region is the bounding box of its corners mapped back through
//! Φ⁻¹; only that box is read from the store. Values follow spam's `applyPhi`: material at X
//! appears at Φ(X) about the given centre, voxels whose source falls outside
//! `[order, N − order)` are 0.

use anyhow::Result;
use ndarray::Array3;

use super::interp::{in_bounds, trilinear, tricubic, BackwardMap};
use crate::phi::Phi;
use crate::store::Volume;

/// Output planes `[z0, z1)` of `input` deformed by `phi` about `centre`.
pub fn deformed_planes(input: &Volume, phi: &Phi, centre: [f64; 3], order: usize, z0: usize, z1: usize) -> Result<Vec<f32>> {
    let n = input.shape();
    let inv = phi.try_inverse().unwrap_or_else(Phi::identity);
    let map = BackwardMap::from_phi(&inv, centre);
    if super::plane::is_plane(n) {
        // A 2D image: spam's Python warp (bounds [0, N − 1]) of the whole plane.
        let grey = input.read_box(0..1, 0..n[1] as i64, 0..n[2] as i64)?.mapv(|v| if v.is_nan() { 0.0 } else { v });
        let grey = grey.as_slice().expect("a new array is contiguous");
        let coef = (order == 3).then(|| super::interp::bspline_coefficients_f32(grey, n));
        let mut out = Vec::new();
        super::plane::warp_plane_into(coef.as_deref().unwrap_or(grey), n, &map, [0; 3], n, order, &mut out);
        super::plane::round_to_type(&mut out, input.dtype());
        return Ok(out);
    }
    // Source bounding box of the slab.
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for &z in &[z0 as f32, (z1 - 1) as f32] {
        for &y in &[0.0, (n[1] - 1) as f32] {
            for &x in &[0.0, (n[2] - 1) as f32] {
                let q = map.apply([z, y, x]);
                for a in 0..3 {
                    lo[a] = lo[a].min(q[a]);
                    hi[a] = hi[a].max(q[a]);
                }
            }
        }
    }
    // Cubic coefficients near a box edge feel the boundary: read a wider box for them.
    let pad = if order == 3 { 8 } else { 2 };
    let b0: [i64; 3] = std::array::from_fn(|a| ((lo[a].floor() as i64) - pad).clamp(0, n[a] as i64));
    let b1: [i64; 3] = std::array::from_fn(|a| ((hi[a].floor() as i64) + pad + 1).clamp(0, n[a] as i64));
    let mut out = vec![0f32; (z1 - z0) * n[1] * n[2]];
    if (0..3).any(|a| b1[a] <= b0[a]) {
        return Ok(out);
    }
    let mut src: Array3<f32> = input.read_box(b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2])?;
    if order == 3 {
        src = super::interp::bspline_coefficients(&src.view());
    }
    let v = src.view();
    let off = [b0[0] as f32, b0[1] as f32, b0[2] as f32];
    use rayon::prelude::*;
    out.par_chunks_mut(n[2]).enumerate().for_each(|(row, dst)| {
        let z = z0 + row / n[1];
        let y = row % n[1];
        for (x, d) in dst.iter_mut().enumerate() {
            let q = map.apply([z as f32, y as f32, x as f32]);
            if !in_bounds(q, n, order) {
                continue;
            }
            let ql = [q[0] - off[0], q[1] - off[1], q[2] - off[2]];
            *d = if order == 3 { tricubic(&v, ql) } else { trilinear(&v, ql) };
        }
    });
    Ok(out)
}

/// The backward map of a measured field (spam-deformImage's per-voxel mode): an output
/// voxel x takes its grey value from X(x) in the input, where X(x) is the inverse-distance
/// average, over the `nn` points whose *deformed* positions are nearest to x, of each point's
/// own inverse map `X_i + F_i⁻¹ (x − X_i − t_i)`. Exact wherever the field is affine.
pub struct FieldWarp {
    index: crate::field::neighbours::PointIndex,
    points: Vec<nalgebra::Vector3<f64>>,
    /// Per point: F⁻¹ and t (for the full map), or only t (`disp_only`).
    inv_f: Vec<nalgebra::Matrix3<f64>>,
    t: Vec<nalgebra::Vector3<f64>>,
    nn: usize,
    disp_only: bool,
}

impl FieldWarp {
    /// Points with a non-finite or singular Φ are left out. None if no point remains.
    pub fn new(points: &[nalgebra::Vector3<f64>], phis: &[Phi], nn: usize, disp_only: bool) -> Option<FieldWarp> {
        let mut keep_p = Vec::new();
        let mut inv_f = Vec::new();
        let mut t = Vec::new();
        let mut deformed = Vec::new();
        for (p, phi) in points.iter().zip(phis) {
            if !crate::phi::is_finite(phi) || !p.iter().all(|v| v.is_finite()) {
                continue;
            }
            let Some(fi) = crate::phi::f_block(phi).try_inverse() else { continue };
            let ti = crate::phi::translation(phi);
            keep_p.push(*p);
            inv_f.push(fi);
            t.push(ti);
            deformed.push(p + ti);
        }
        if keep_p.is_empty() {
            return None;
        }
        Some(FieldWarp { index: crate::field::neighbours::PointIndex::new(&deformed), points: keep_p, inv_f, t, nn: nn.max(1), disp_only })
    }

    /// The input position whose material lands at output position x.
    pub fn source(&self, x: &nalgebra::Vector3<f64>) -> nalgebra::Vector3<f64> {
        let mut acc = nalgebra::Vector3::zeros();
        let mut wsum = 0.0;
        for (i, d) in self.index.nearest(x, self.nn) {
            let w = 1.0 / (d + 1e-6);
            let s = if self.disp_only { x - self.t[i] } else { self.points[i] + self.inv_f[i] * (x - self.points[i] - self.t[i]) };
            acc += s * w;
            wsum += w;
        }
        acc / wsum
    }
}

/// Output planes `[z0, z1)` of `input` deformed by a measured field. Only the box of input
/// the slab's sources fall in is read; sources outside `[0, N − 1]` give 0.
pub fn field_deformed_planes(input: &Volume, warp: &FieldWarp, order: usize, z0: usize, z1: usize) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    let n = input.shape();
    let plane = n[1] * n[2];
    let src: Vec<[f32; 3]> = (0..(z1 - z0) * plane)
        .into_par_iter()
        .map(|i| {
            let x = nalgebra::Vector3::new((z0 + i / plane) as f64, ((i / n[2]) % n[1]) as f64, (i % n[2]) as f64);
            let q = warp.source(&x);
            [q[0] as f32, q[1] as f32, q[2] as f32]
        })
        .collect();
    let inside = |q: &[f32; 3]| (0..3).all(|a| q[a] >= 0.0 && q[a] <= (n[a] - 1) as f32);
    let mut lo = [i64::MAX; 3];
    let mut hi = [i64::MIN; 3];
    for q in src.iter().filter(|q| inside(q)) {
        for a in 0..3 {
            lo[a] = lo[a].min(q[a].floor() as i64);
            hi[a] = hi[a].max(q[a].floor() as i64);
        }
    }
    let mut out = vec![0f32; src.len()];
    if lo[0] == i64::MAX {
        return Ok(out);
    }
    let pad = if order == 3 { 8 } else { 1 };
    let b0: [i64; 3] = std::array::from_fn(|a| (lo[a] - pad).max(0));
    let b1: [i64; 3] = std::array::from_fn(|a| (hi[a] + pad + 2).min(n[a] as i64 + 1));
    // One voxel past the volume's last layer reads as 0 (weight 0 at q = N − 1).
    let mut boxed = input.read_box(b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2])?;
    boxed.mapv_inplace(|v| if v.is_nan() { 0.0 } else { v });
    let coef = if order == 3 { Some(super::interp::bspline_coefficients(&boxed.view())) } else { None };
    let v = boxed.view();
    let d = v.dim();
    let dims = [d.0 as f32, d.1 as f32, d.2 as f32];
    let off = [b0[0] as f32, b0[1] as f32, b0[2] as f32];
    out.par_iter_mut().zip(src.par_iter()).for_each(|(o, q)| {
        if inside(q) {
            let ql = [q[0] - off[0], q[1] - off[1], q[2] - off[2]];
            // The cubic needs one voxel below and two above; at the volume's edge the
            // trilinear value is used.
            let cubic_ok = (0..3).all(|a| ql[a] >= 1.0 && ql[a].floor() + 2.0 < dims[a]);
            *o = match &coef {
                Some(c) if cubic_ok => tricubic(&c.view(), ql),
                _ => trilinear(&v, ql),
            };
        }
    });
    Ok(out)
}

/// A small in-memory box warped by Φ about `centre` (spam's C `applyPhi`, order 1): material
/// at X appears at Φ(X); voxels whose source is outside `[1, N − 1)` are 0. Used on
/// imagettes, which are small enough to hold.
pub fn warp_array(a: &ndarray::ArrayView3<f32>, phi: &Phi, centre: [f64; 3]) -> Array3<f32> {
    let d = a.dim();
    let n = [d.0, d.1, d.2];
    let inv = phi.try_inverse().unwrap_or_else(Phi::identity);
    let map = BackwardMap::from_phi(&inv, centre);
    Array3::from_shape_fn(d, |(z, y, x)| {
        let q = map.apply([z as f32, y as f32, x as f32]);
        if in_bounds(q, n, 1) {
            trilinear(a, q)
        } else {
            0.0
        }
    })
}

/// A boolean mask warped like [`warp_array`] with nearest-neighbour sampling (spam warps
/// label masks with order 0; C `round`, ties away from zero), false outside.
pub fn warp_mask(m: &ndarray::ArrayView3<bool>, phi: &Phi, centre: [f64; 3]) -> Array3<bool> {
    let d = m.dim();
    let n = [d.0 as f32, d.1 as f32, d.2 as f32];
    let inv = phi.try_inverse().unwrap_or_else(Phi::identity);
    let map = BackwardMap::from_phi(&inv, centre);
    Array3::from_shape_fn(d, |(z, y, x)| {
        let q = map.apply([z as f32, y as f32, x as f32]).map(|v| v.round());
        // Unlike spam, a coordinate that rounds to N is outside (spam reads past the row).
        if (0..3).all(|k| q[k] >= 0.0 && q[k] < n[k]) {
            m[[q[0] as usize, q[1] as usize, q[2] as usize]]
        } else {
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemorySource;
    use crate::store::ChunkCache;
    use std::sync::Arc;

    #[test]
    fn material_moves_by_phi_and_the_border_stays_zero() {
        let n = 12;
        let data: Vec<f32> = (0..n * n * n).map(|i| i as f32).collect();
        let src = MemorySource { path: "m".into(), shape: [n; 3], chunk: [5; 3], data: Arc::new(data) };
        let vol = Volume::new(Arc::new(src), ChunkCache::new(1 << 20));
        let mut phi = Phi::identity();
        phi[(0, 3)] = 1.0;
        let c = [(n as f64 - 1.0) / 2.0; 3];
        let out = deformed_planes(&vol, &phi, c, 1, 0, n).unwrap();
        let at = |z: usize, y: usize, x: usize| out[(z * n + y) * n + x];
        // Material at z appears at z + 1.
        assert_eq!(at(5, 5, 5), ((4 * n + 5) * n + 5) as f32);
        // Sources outside [1, N − 1) are never sampled (spam's C kernel).
        assert_eq!(at(1, 5, 5), 0.0);
        assert_eq!(at(5, 0, 5), 0.0);
        // Slabs give the same values as the whole volume.
        let slab = deformed_planes(&vol, &phi, c, 1, 4, 7).unwrap();
        assert_eq!(&slab[..], &out[4 * n * n..7 * n * n]);
    }
}
