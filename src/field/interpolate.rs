//! Inverse-distance interpolation of a Φ field at new points (spam's `interpolatePhiField`,
//! spam-compat.md §3.9), through a k-d tree: `k` nearest neighbours or all within a radius.

use nalgebra::Vector3;
use rayon::prelude::*;

use super::neighbours::PointIndex;
use crate::phi::{self, ApplyF, Phi};

/// Which neighbours take part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Neighbours {
    /// The k nearest.
    Count(usize),
    /// All within this distance (inclusive).
    Radius(f64),
}

/// Known Φ at points, ready to be interpolated.
pub struct PhiInterpolator {
    points: Vec<Vector3<f64>>,
    phis: Vec<Phi>,
    index: PointIndex,
}

fn nan_phi() -> Phi {
    Phi::from_element(f64::NAN)
}

impl PhiInterpolator {
    /// Points with a non-finite position or Φ are left out.
    pub fn new(points: &[Vector3<f64>], phis: &[Phi]) -> PhiInterpolator {
        let keep: Vec<usize> = (0..points.len()).filter(|&i| points[i].iter().all(|v| v.is_finite()) && phi::is_finite(&phis[i])).collect();
        let points: Vec<Vector3<f64>> = keep.iter().map(|&i| points[i]).collect();
        let phis: Vec<Phi> = keep.iter().map(|&i| phis[i]).collect();
        let index = PointIndex::new(&points);
        PhiInterpolator { points, phis, index }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Φ at `target`: weights 1/(d + 1e-6); `mode` decides what is averaged (all 12 entries
    /// with each t moved to the target, the same then made rigid, or only t with F = I). With `surrounded`, a target outside
    /// the box of its neighbours (or away from a single neighbour) gets NaN, as does a target
    /// with no neighbour in the radius.
    pub fn at(&self, target: &Vector3<f64>, nb: Neighbours, mode: ApplyF, surrounded: bool) -> Phi {
        if !target.iter().all(|v| v.is_finite()) {
            return nan_phi();
        }
        let found = match nb {
            Neighbours::Count(k) => self.index.nearest(target, k),
            Neighbours::Radius(r) => self.index.within(target, r),
        };
        if found.is_empty() {
            return nan_phi();
        }
        let shape = |p: Phi| match mode {
            ApplyF::All => p,
            ApplyF::Rigid => phi::rigid_part(&p),
            ApplyF::No => {
                let mut q = Phi::identity();
                phi::set_translation(&mut q, &phi::translation(&p));
                q
            }
        };
        // Each neighbour's Φ expressed at the target (spam-compat.md eq. 2): its t plus the
        // lever arm (F − I)(target − X). An affine field is then interpolated exactly;
        // spam averages the bare t and is off by the lever arm (docs/spam-differences.md).
        // With -F no only t is passed on, as measured at the neighbour.
        let moved = |i: usize| -> Phi {
            let p = self.phis[i];
            if mode == ApplyF::No {
                return p;
            }
            phi::move_to(&p, &self.points[i], target)
        };
        if found.len() == 1 {
            let (i, d) = found[0];
            if surrounded && d > 0.0 {
                return nan_phi();
            }
            return shape(moved(i));
        }
        if surrounded {
            for a in 0..3 {
                let lo = found.iter().map(|(i, _)| self.points[*i][a]).fold(f64::INFINITY, f64::min);
                let hi = found.iter().map(|(i, _)| self.points[*i][a]).fold(f64::NEG_INFINITY, f64::max);
                if target[a] < lo || target[a] > hi {
                    return nan_phi();
                }
            }
        }
        let mut acc = Phi::zeros();
        let mut wsum = 0.0;
        for (i, d) in &found {
            let w = 1.0 / (d + 1e-6);
            acc += moved(*i) * w;
            wsum += w;
        }
        let mut p = acc / wsum;
        p[(3, 0)] = 0.0;
        p[(3, 1)] = 0.0;
        p[(3, 2)] = 0.0;
        p[(3, 3)] = 1.0;
        shape(p)
    }

    /// Φ at every target, in parallel.
    pub fn at_all(&self, targets: &[Vector3<f64>], nb: Neighbours, mode: ApplyF, surrounded: bool) -> Vec<Phi> {
        targets.par_iter().map(|t| self.at(t, nb, mode, surrounded)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_modes_and_surrounding() {
        let pts = vec![Vector3::new(0.0, 0.0, 0.0), Vector3::new(0.0, 0.0, 10.0)];
        let mut a = Phi::identity();
        a[(2, 3)] = 1.0;
        a[(0, 0)] = 1.1;
        let mut b = Phi::identity();
        b[(2, 3)] = 3.0;
        let ip = PhiInterpolator::new(&pts, &[a, b]);
        // At x = 2.5: weights 1/2.5 and 1/7.5, so t = (3·1 + 1·3)/4 = 1.5.
        let p = ip.at(&Vector3::new(0.0, 0.0, 2.5), Neighbours::Count(2), ApplyF::All, false);
        assert!((p[(2, 3)] - 1.5).abs() < 1e-6 && (p[(0, 0)] - 1.075).abs() < 1e-6);
        let p = ip.at(&Vector3::new(0.0, 0.0, 2.5), Neighbours::Count(2), ApplyF::No, false);
        assert!((p[(2, 3)] - 1.5).abs() < 1e-6 && p[(0, 0)] == 1.0);
        assert!(ip.at(&Vector3::new(0.0, 0.0, 20.0), Neighbours::Radius(5.0), ApplyF::All, false)[(0, 0)].is_nan());
        assert!(ip.at(&Vector3::new(0.0, 1.0, 5.0), Neighbours::Count(2), ApplyF::All, true)[(0, 0)].is_nan(), "outside the neighbours' box");
        // One neighbour: its Φ, moved to the target (F − I = 0.1 along Z, no Z offset: same t).
        assert_eq!(ip.at(&Vector3::new(0.0, 0.0, 1.0), Neighbours::Radius(2.0), ApplyF::All, false), a, "one neighbour: copied");
        // An affine field is interpolated exactly, anywhere between its points.
        let g = nalgebra::Matrix3::new(0.01, 0.02, 0.0, -0.02, 0.01, 0.03, 0.0, 0.0, -0.01);
        let pts: Vec<Vector3<f64>> = (0..20).map(|i| Vector3::new((i * 7 % 11) as f64 * 3.0, (i * 3 % 7) as f64 * 4.0, i as f64 * 2.0)).collect();
        let phis: Vec<Phi> = pts.iter().map(|p| phi::from_f_t(&(nalgebra::Matrix3::identity() + g), &(g * p))).collect();
        let ip = PhiInterpolator::new(&pts, &phis);
        let q = Vector3::new(10.3, 12.1, 19.7);
        assert!((phi::translation(&ip.at(&q, Neighbours::Count(6), ApplyF::All, false)) - g * q).norm() < 1e-9);
    }
}
