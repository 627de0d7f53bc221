//! Finding and correcting bad points of a Φ field (spam-compat.md §3.10): local quadratic
//! coherency (Masullo & Theunissen 2016), its weighted quadratic fit as a correction, and a
//! NaN-aware median filter of a grid field.

use nalgebra::{DMatrix, DVector, Vector3};
use rayon::prelude::*;

use super::neighbours::PointIndex;

/// ε of the coherency measure and its weights.
const EPS: f64 = 0.1;

/// How a point's neighbourhood is chosen.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub enum Hood {
    /// All points within the radius, doubled while it holds 27 points or fewer.
    Radius(f64),
    /// The k nearest points.
    Count(usize),
}

fn hood(index: &PointIndex, p: &Vector3<f64>, h: Hood) -> Vec<usize> {
    match h {
        Hood::Count(k) => index.nearest(p, k).into_iter().map(|x| x.0).collect(),
        Hood::Radius(r) => {
            let mut r = r;
            loop {
                let v = index.within(p, r);
                if v.len() > 27 || v.len() == index.len() {
                    return v.into_iter().map(|x| x.0).collect();
                }
                r *= 2.0;
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The weighted quadratic fit of the displacements of `set` (positions relative to `at`),
/// evaluated at `at`; also returns the scale `median ‖u‖ + ε` of the set. Weights
/// `exp(−½ σ²_j / K²)` with σ²_j the squared distance of u_j from the component medians and
/// K = mean σ_j + ε: the Gaussian robust weights of the paper.
fn fit(points: &[Vector3<f64>], u: &[Vector3<f64>], set: &[usize], at: &Vector3<f64>) -> Option<(Vector3<f64>, f64)> {
    if set.len() < 10 {
        return None;
    }
    let med = Vector3::from_fn(|c, _| median(&mut set.iter().map(|&j| u[j][c]).collect::<Vec<_>>()));
    let s2: Vec<f64> = set.iter().map(|&j| (u[j] - med).norm_squared()).collect();
    let k = s2.iter().map(|v| v.sqrt()).sum::<f64>() / set.len() as f64 + EPS;
    let w: Vec<f64> = s2.iter().map(|v| (-0.5 * v / (k * k)).exp()).collect();
    // Basis [1, z, y, x, zy, zx, yx, z², y², x²] in coordinates centred on `at` (the same fit
    // as in absolute coordinates, better conditioned), so the value at `at` is a[0].
    let n = set.len();
    let mut x = DMatrix::<f64>::zeros(n, 10);
    for (r, &j) in set.iter().enumerate() {
        let d = points[j] - at;
        let row = [1.0, d[0], d[1], d[2], d[0] * d[1], d[0] * d[2], d[1] * d[2], d[0] * d[0], d[1] * d[1], d[2] * d[2]];
        for (c, v) in row.iter().enumerate() {
            x[(r, c)] = v * w[r].sqrt();
        }
    }
    let svd = x.svd(true, true);
    let mut out = Vector3::zeros();
    for c in 0..3 {
        let b = DVector::from_iterator(n, set.iter().enumerate().map(|(r, &j)| u[j][c] * w[r].sqrt()));
        let a = svd.solve(&b, 1e-10).ok()?;
        out[c] = a[0];
    }
    let mut norms: Vec<f64> = set.iter().map(|&j| u[j].norm()).collect();
    Some((out, median(&mut norms) + EPS))
}

/// Local quadratic coherency of every point in `which` among the points in `index` (whose
/// positions and displacements are `points`, `u`): the normalised squared residual of the
/// point from the fit of its neighbourhood (itself included), mean of the 3 components.
pub fn coherency(points: &[Vector3<f64>], u: &[Vector3<f64>], index: &PointIndex, which: &[usize], h: Hood) -> Vec<f64> {
    which
        .par_iter()
        .map(|&i| {
            let set = hood(index, &points[i], h);
            match fit(points, u, &set, &points[i]) {
                Some((est, scale)) => (0..3).map(|c| ((est[c] - u[i][c]) / scale).powi(2)).sum::<f64>() / 3.0,
                None => f64::NAN,
            }
        })
        .collect()
}

/// The displacement at each bad point estimated by the quadratic fit of its good neighbours
/// (`index` holds only good points).
pub fn quadratic_estimate(points: &[Vector3<f64>], u: &[Vector3<f64>], index: &PointIndex, bad: &[usize], h: Hood) -> Vec<Vector3<f64>> {
    bad.par_iter()
        .map(|&i| {
            let set: Vec<usize> = hood(index, &points[i], h).into_iter().filter(|&j| j != i).collect();
            fit(points, u, &set, &points[i]).map(|x| x.0).unwrap_or(Vector3::from_element(f64::NAN))
        })
        .collect()
}

/// NaN-ignoring median over a (2r+1)³ cube of a Z-major grid, edges reflected (the edge
/// value repeated: … c b a | a b c …, SciPy's `reflect`).
pub fn median_filter(values: &[f64], dims: [usize; 3], r: usize) -> Vec<f64> {
    let refl = |i: i64, n: usize| -> usize {
        let n = n as i64;
        let mut i = i;
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return i as usize;
            }
        }
    };
    let r = r as i64;
    (0..values.len())
        .into_par_iter()
        .map(|idx| {
            let (z, y, x) = ((idx / (dims[1] * dims[2])) as i64, ((idx / dims[2]) % dims[1]) as i64, (idx % dims[2]) as i64);
            let mut v = Vec::with_capacity(((2 * r + 1) as usize).pow(3));
            for dz in -r..=r {
                for dy in -r..=r {
                    for dx in -r..=r {
                        let j = (refl(z + dz, dims[0]) * dims[1] + refl(y + dy, dims[1])) * dims[2] + refl(x + dx, dims[2]);
                        if !values[j].is_nan() {
                            v.push(values[j]);
                        }
                    }
                }
            }
            median(&mut v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadratic_fields_are_coherent_and_an_outlier_is_not() {
        let mut pts = Vec::new();
        for z in 0..6 {
            for y in 0..6 {
                for x in 0..6 {
                    pts.push(Vector3::new(z as f64 * 10.0, y as f64 * 10.0, x as f64 * 10.0));
                }
            }
        }
        let field = |p: &Vector3<f64>| Vector3::new(1e-3 * p[2] * p[2], 0.01 * p[0] - 0.5, 2e-4 * p[0] * p[1]);
        let mut u: Vec<Vector3<f64>> = pts.iter().map(field).collect();
        u[100] += Vector3::new(5.0, -4.0, 3.0);
        let index = PointIndex::new(&pts);
        let all: Vec<usize> = (0..pts.len()).collect();
        let lqc = coherency(&pts, &u, &index, &all, Hood::Radius(15.0));
        assert!(lqc[100] > 0.1, "{}", lqc[100]);
        assert!(lqc.iter().enumerate().filter(|(i, _)| *i != 100).all(|(_, v)| *v < 0.1));
        let good: Vec<usize> = (0..pts.len()).filter(|&i| i != 100).collect();
        let gp: Vec<Vector3<f64>> = good.iter().map(|&i| pts[i]).collect();
        let gu: Vec<Vector3<f64>> = good.iter().map(|&i| u[i]).collect();
        let gi = PointIndex::new(&gp);
        let mut with_bad = gp.clone();
        with_bad.push(pts[100]);
        let mut ub = gu.clone();
        ub.push(Vector3::zeros());
        let est = quadratic_estimate(&with_bad, &ub, &gi, &[with_bad.len() - 1], Hood::Radius(15.0));
        assert!((est[0] - field(&pts[100])).norm() < 1e-6, "{:?}", est[0]);
    }

    #[test]
    fn median_filter_ignores_nans_and_reflects_edges() {
        let dims = [1, 1, 5];
        let v = vec![1.0, f64::NAN, 3.0, 100.0, 5.0];
        let m = median_filter(&v, dims, 1);
        assert_eq!(m, vec![1.0, 2.0, 51.5, 5.0, 5.0]);
    }
}
