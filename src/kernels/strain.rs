//! Deformation gradients F from a displacement field (spam-compat.md §3.11): Q8 shape
//! functions on the cells of a grid, Geers' local least-squares fit around each point (grid
//! or scattered points), or the F each point's Φ already carries ("raw").
//!
//! Geers is done as the method defines it, with outer products: over the neighbours j of i,
//! ΔX = X_j − X_i and Δx = ΔX + u_j − u_i, `A = n Σ ΔX ΔXᵀ − m0 m0ᵀ`,
//! `C = n Σ Δx ΔXᵀ − mt m0ᵀ`, `F = C A⁻¹` (m0 = Σ ΔX, mt = Σ Δx): the least-squares affine
//! map of the neighbourhood, exact for any linear field at every point, borders and unequal
//! spacings included. spam subtracts scalar dot products instead and is wrong there.

use nalgebra::{Matrix2, Matrix3, Vector3};
use rayon::prelude::*;

use crate::field::neighbours::PointIndex;

/// F at the cell centres of a Z-major grid of `dims` nodes with `spacing`, from node
/// displacements `u` (NaN where unknown). Returns (cell dims, cell centres, F per cell).
/// A grid of one Z layer gives 2D cells (Q4): F has no Z derivatives and the cell centres
/// stay on the layer.
pub fn q8(dims: [usize; 3], spacing: [f64; 3], first: Vector3<f64>, u: &[Vector3<f64>]) -> ([usize; 3], Vec<Vector3<f64>>, Vec<Matrix3<f64>>) {
    let two_d = dims[0] == 1;
    let cd = [if two_d { 1 } else { dims[0].saturating_sub(1) }, dims[1].saturating_sub(1), dims[2].saturating_sub(1)];
    let at = |z: usize, y: usize, x: usize| u[(z * dims[1] + y) * dims[2] + x];
    let mut pos = Vec::with_capacity(cd.iter().product());
    let mut fs = Vec::with_capacity(cd.iter().product());
    for z in 0..cd[0] {
        for y in 0..cd[1] {
            for x in 0..cd[2] {
                let zs: &[usize] = if two_d { &[0] } else { &[z, z + 1] };
                let mut grad = Matrix3::zeros();
                let mut ok = true;
                let mut count = 0.0;
                for (iz, &cz) in zs.iter().enumerate() {
                    for (iy, cy) in [y, y + 1].into_iter().enumerate() {
                        for (ix, cx) in [x, x + 1].into_iter().enumerate() {
                            let v = at(cz, cy, cx);
                            if !v.iter().all(|c| c.is_finite()) {
                                ok = false;
                            }
                            let sign = [if iz == 1 { 1.0 } else { -1.0 }, if iy == 1 { 1.0 } else { -1.0 }, if ix == 1 { 1.0 } else { -1.0 }];
                            for a in 0..3 {
                                for b in 0..3 {
                                    if two_d && b == 0 {
                                        continue;
                                    }
                                    grad[(a, b)] += sign[b] * v[a];
                                }
                            }
                            count += 1.0;
                        }
                    }
                }
                // Each corner pair along b contributes one difference: the mean of the
                // count/2 forward differences, divided by the spacing.
                for b in 0..3 {
                    for a in 0..3 {
                        grad[(a, b)] /= count / 2.0 * spacing[b];
                    }
                }
                let mut f = Matrix3::identity() + grad;
                if two_d {
                    for k in 0..3 {
                        f[(0, k)] = if k == 0 { 1.0 } else { 0.0 };
                        f[(k, 0)] = if k == 0 { 1.0 } else { 0.0 };
                    }
                }
                fs.push(if ok { f } else { Matrix3::from_element(f64::NAN) });
                let half = Vector3::new(if two_d { 0.0 } else { spacing[0] / 2.0 }, spacing[1] / 2.0, spacing[2] / 2.0);
                pos.push(first + Vector3::new(z as f64 * spacing[0], y as f64 * spacing[1], x as f64 * spacing[2]) + half);
            }
        }
    }
    (cd, pos, fs)
}

/// F at every point by Geers' least-squares fit over the finite neighbours within `radius`
/// (inclusive, the point itself excluded). Points with an unknown displacement, or too few
/// neighbours to span the space, get NaN. `two_d`: points on one Z layer, fit in (Y, X).
pub fn geers(points: &[Vector3<f64>], u: &[Vector3<f64>], radius: f64, two_d: bool) -> Vec<Matrix3<f64>> {
    let finite: Vec<Vector3<f64>> = points
        .iter()
        .zip(u)
        .map(|(p, v)| if v.iter().all(|c| c.is_finite()) { *p } else { Vector3::from_element(f64::NAN) })
        .collect();
    let index = PointIndex::new(&finite);
    (0..points.len())
        .into_par_iter()
        .map(|i| {
            let nan = Matrix3::from_element(f64::NAN);
            if !finite[i][0].is_finite() {
                return nan;
            }
            // A neighbourhood that does not span every direction (a point at the edge of a
            // scattered cloud) grows its radius, up to 8 times, instead of giving up.
            let mut r = radius;
            for _ in 0..4 {
                if let Some(f) = fit(points, u, &index, i, r, two_d) {
                    return f;
                }
                r *= 2.0;
            }
            nan
        })
        .collect()
}

/// Geers' fit at point i over the neighbours within r; None if they do not span the space
/// (A, their scatter matrix, symmetric positive semi-definite, is nearly singular).
fn fit(points: &[Vector3<f64>], u: &[Vector3<f64>], index: &PointIndex, i: usize, r: f64, two_d: bool) -> Option<Matrix3<f64>> {
    let xi = points[i];
    let mut s0 = Matrix3::zeros();
    let mut st = Matrix3::zeros();
    let mut m0 = Vector3::zeros();
    let mut mt = Vector3::zeros();
    let mut n = 0.0;
    for (j, _) in index.within(&xi, r) {
        if j == i {
            continue;
        }
        let dx0 = points[j] - xi;
        let dxt = dx0 + u[j] - u[i];
        s0 += dx0 * dx0.transpose();
        st += dxt * dx0.transpose();
        m0 += dx0;
        mt += dxt;
        n += 1.0;
    }
    let a = s0 * n - m0 * m0.transpose();
    let c = st * n - mt * m0.transpose();
    if two_d {
        let a2: Matrix2<f64> = a.fixed_view::<2, 2>(1, 1).into_owned();
        let c2: Matrix2<f64> = c.fixed_view::<2, 2>(1, 1).into_owned();
        let ev = a2.symmetric_eigenvalues();
        if !(ev.min() > 1e-9 * ev.max().abs()) {
            return None;
        }
        let ai = a2.try_inverse()?;
        let mut f = Matrix3::identity();
        f.fixed_view_mut::<2, 2>(1, 1).copy_from(&(c2 * ai));
        Some(f)
    } else {
        let ev = a.symmetric_eigenvalues();
        if !(ev.min() > 1e-9 * ev.max().abs()) {
            return None;
        }
        let ai = a.try_inverse()?;
        Some(c * ai)
    }
}

/// Geers' radius in voxels: `radius` largest node spacings on a grid (`spacing`); on
/// scattered points, `radius` mean nearest-neighbour distances.
pub fn geers_radius(points: &[Vector3<f64>], spacing: Option<[f64; 3]>, radius: f64) -> f64 {
    match spacing {
        Some(sp) => radius * sp.iter().cloned().fold(0.0, f64::max),
        None => {
            let index = PointIndex::new(points);
            let d: Vec<f64> = points.iter().filter(|p| p[0].is_finite()).map(|p| index.nearest(p, 2).get(1).map(|x| x.1).unwrap_or(0.0)).collect();
            radius * d.iter().sum::<f64>() / d.len().max(1) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(x: &Vector3<f64>) -> Vector3<f64> {
        let g = Matrix3::new(0.01, 0.002, -0.003, 0.004, -0.005, 0.03, -0.02, 0.001, 0.007);
        g * x + Vector3::new(1.0, -2.0, 0.5)
    }

    #[test]
    fn q8_and_geers_are_exact_for_a_linear_field_with_unequal_spacing() {
        let dims = [4, 5, 6];
        let sp = [7.0, 5.0, 3.0];
        let first = Vector3::new(10.0, 8.0, 6.0);
        let mut pts = Vec::new();
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    pts.push(first + Vector3::new(z as f64 * sp[0], y as f64 * sp[1], x as f64 * sp[2]));
                }
            }
        }
        let u: Vec<Vector3<f64>> = pts.iter().map(linear).collect();
        let want = Matrix3::identity() + Matrix3::new(0.01, 0.002, -0.003, 0.004, -0.005, 0.03, -0.02, 0.001, 0.007);
        let (cd, pos, fs) = q8(dims, sp, first, &u);
        assert_eq!(cd, [3, 4, 5]);
        assert_eq!(pos[0], first + Vector3::new(3.5, 2.5, 1.5));
        assert!(fs.iter().all(|f| (f - want).abs().max() < 1e-12));
        let fg = geers(&pts, &u, 1.5 * 7.0, false);
        assert!(fg.iter().all(|f| (f - want).abs().max() < 1e-10), "borders and corners too");
    }

    #[test]
    fn unknown_displacements_give_nan() {
        let dims = [2, 2, 3];
        let mut u = vec![Vector3::zeros(); 12];
        u[0] = Vector3::from_element(f64::NAN);
        let (_, _, fs) = q8(dims, [1.0; 3], Vector3::zeros(), &u);
        assert!(fs[0][(0, 0)].is_nan() && fs[1][(0, 0)] == 1.0);
    }
}

#[cfg(test)]
mod cloud_tests {
    use super::*;

    #[test]
    fn geers_on_a_random_cloud_is_exact_for_a_linear_field() {
        let mut rng = 12345u64;
        let mut next = || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let pts: Vec<Vector3<f64>> = (0..300).map(|_| Vector3::new(next() * 60.0, next() * 60.0, next() * 60.0)).collect();
        let g = Matrix3::new(0.01, 0.002, -0.003, 0.004, -0.005, 0.03, -0.02, 0.001, 0.007);
        let u: Vec<Vector3<f64>> = pts.iter().map(|p| g * p).collect();
        let fs = geers(&pts, &u, 12.0, false);
        for (i, f) in fs.iter().enumerate() {
            assert!((f - Matrix3::identity() - g).abs().max() < 1e-9, "point {i} at {:?}: {f}", pts[i]);
        }
    }
}
