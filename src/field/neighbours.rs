//! Nearest-neighbour and radius queries over field points, through a k-d tree (kiddo).
//!
//! Points with a non-finite coordinate (missing labels) are left out of the tree; results
//! are indices into the original point list with Euclidean distances, nearest first.

use std::num::NonZeroUsize;

use kiddo::{ImmutableKdTree, SquaredEuclidean};
use nalgebra::Vector3;

pub struct PointIndex {
    tree: ImmutableKdTree<f64, 3>,
    /// Tree item → original index.
    original: Vec<usize>,
}

impl PointIndex {
    pub fn new(points: &[Vector3<f64>]) -> PointIndex {
        let mut coords = Vec::with_capacity(points.len());
        let mut original = Vec::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            if p.iter().all(|v| v.is_finite()) {
                coords.push([p[0], p[1], p[2]]);
                original.push(i);
            }
        }
        PointIndex { tree: ImmutableKdTree::new_from_slice(&coords).expect("k-d tree of finite points"), original }
    }

    /// Number of indexed (finite) points.
    pub fn len(&self) -> usize {
        self.original.len()
    }

    pub fn is_empty(&self) -> bool {
        self.original.is_empty()
    }

    /// Points at distance ≤ r of q, nearest first (ties by index).
    pub fn within(&self, q: &Vector3<f64>, r: f64) -> Vec<(usize, f64)> {
        if self.original.is_empty() || !(r >= 0.0) {
            return vec![];
        }
        let found = self.tree.query(&[q[0], q[1], q[2]]).within::<SquaredEuclidean<f64>>(r * r).execute();
        let mut v: Vec<(usize, f64)> = found.iter().map(|n| (self.original[n.item as usize], n.distance.sqrt())).collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The n nearest points of q, nearest first.
    pub fn nearest(&self, q: &Vector3<f64>, n: usize) -> Vec<(usize, f64)> {
        let Some(k) = NonZeroUsize::new(n.min(self.original.len())) else { return vec![] };
        let found = self.tree.query(&[q[0], q[1], q[2]]).nearest_n::<SquaredEuclidean<f64>>(k).execute();
        let mut v: Vec<(usize, f64)> = found.iter().map(|n| (self.original[n.item as usize], n.distance.sqrt())).collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_and_nearest_queries_match_brute_force() {
        // A grid has many equal coordinates per axis, which some k-d trees mishandle.
        let mut pts = Vec::new();
        for z in 0..12 {
            for y in 0..12 {
                for x in 0..12 {
                    pts.push(Vector3::new(z as f64 * 2.0, y as f64 * 2.0, x as f64 * 2.0));
                }
            }
        }
        pts.push(Vector3::new(f64::NAN, 0.0, 0.0));
        let idx = PointIndex::new(&pts);
        assert_eq!(idx.len(), 1728);
        let q = Vector3::new(7.0, 9.5, 3.0);
        let want: Vec<usize> = {
            let mut v: Vec<(usize, f64)> = pts.iter().enumerate().filter(|(_, p)| p[0].is_finite()).map(|(i, p)| (i, (p - q).norm())).filter(|(_, d)| *d <= 4.5).collect();
            v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            v.into_iter().map(|(i, _)| i).collect()
        };
        let got: Vec<usize> = idx.within(&q, 4.5).into_iter().map(|(i, _)| i).collect();
        assert_eq!(got, want);
        let near = idx.nearest(&q, 5);
        assert_eq!(near.len(), 5);
        assert_eq!(near.iter().map(|n| n.0).collect::<Vec<_>>(), want[..5].to_vec());
    }
}
