//! Propagated pixel search (spam-compat.md §3.7): rank the points outwards from a start
//! point, then search each one around the Gaussian-weighted displacement of its already
//! found neighbours. Sequential by nature; each search reads only its own boxes.

use anyhow::Result;
use nalgebra::Vector3;

use super::pixel_search::PixelResult;
use crate::field::neighbours::PointIndex;
use crate::phi;
use crate::field::Status;

/// spam's `rankPoints`: start with `start`; then, taking ranked points in turn, append every
/// unranked point within `radius` of it (in original order), or, when there is none and
/// points remain, the single nearest unranked point. Returns point indices in rank order;
/// non-finite points are left out.
pub fn rank_points(points: &[Vector3<f64>], start: usize, radius: f64) -> Vec<usize> {
    let index = PointIndex::new(points);
    let total = index.len();
    let mut ranked = vec![start];
    let mut taken = vec![false; points.len()];
    taken[start] = true;
    let mut cur = 0;
    while ranked.len() < total {
        let q = points[ranked[cur]];
        let mut found: Vec<usize> = index.within(&q, radius).into_iter().map(|(i, _)| i).filter(|&i| !taken[i]).collect();
        if found.is_empty() {
            let mut k = 8;
            loop {
                if let Some(&(i, _)) = index.nearest(&q, k).iter().find(|(i, _)| !taken[*i]) {
                    found.push(i);
                    break;
                }
                k *= 4;
            }
        }
        found.sort_unstable();
        for i in found {
            taken[i] = true;
            ranked.push(i);
        }
        cur += 1;
    }
    ranked
}

/// Settings of the propagation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PropagateOptions {
    /// Neighbourhood radius (ranking and guesses).
    pub radius: f64,
    /// Gaussian weighting distance of neighbour displacements.
    pub weighting_distance: f64,
    /// Points below this CC are not used as neighbours (and the start must reach it).
    pub cc_threshold: f64,
}

/// Runs the propagation over `order` (from [`rank_points`]; `order[0]` is the start, searched
/// around `start_guess`). `search(i, guess)` searches point i around a displacement guess.
/// Returns one result per point (None for points not in `order`), or an error if the start
/// fails.
pub fn propagate(
    points: &[Vector3<f64>],
    order: &[usize],
    start_guess: Vector3<f64>,
    o: &PropagateOptions,
    mut search: impl FnMut(usize, Vector3<f64>) -> Result<PixelResult>,
    mut done: impl FnMut(),
) -> Result<Vec<Option<PixelResult>>> {
    let mut out: Vec<Option<PixelResult>> = vec![None; points.len()];
    let mut cc = vec![0f64; points.len()];
    let first = order[0];
    let r0 = search(first, start_guess)?;
    if r0.status != Status::FOUND {
        anyhow::bail!("the start point {:?} could not be searched (window outside the image, masked or below the grey thresholds)", points[first].as_slice());
    }
    if !(r0.cc >= o.cc_threshold) {
        anyhow::bail!("the start point {:?} correlates with CC {:.4}, below --cc-threshold {}; check its displacement guess", points[first].as_slice(), r0.cc, o.cc_threshold);
    }
    cc[first] = r0.cc;
    out[first] = Some(r0);
    done();
    let index = PointIndex::new(points);
    for &q in &order[1..] {
        let p = points[q];
        let mut radius = o.radius.max(1e-9);
        let neighbours = loop {
            let good: Vec<(usize, f64)> = index.within(&p, radius).into_iter().filter(|&(i, _)| i != q && cc[i] >= o.cc_threshold && cc[i] > 0.0).collect();
            if !good.is_empty() {
                break good;
            }
            radius *= 2.0;
        };
        let (mut sum, mut wsum) = (Vector3::zeros(), 0f64);
        for (i, d) in &neighbours {
            let w = (-(d * d) / (o.weighting_distance * o.weighting_distance)).exp();
            sum += phi::translation(&out[*i].as_ref().unwrap().phi) * w;
            wsum += w;
        }
        // Far neighbours can underflow every weight: fall back to the plain mean.
        let guess = if wsum > 0.0 {
            sum / wsum
        } else {
            neighbours.iter().map(|(i, _)| phi::translation(&out[*i].as_ref().unwrap().phi)).sum::<Vector3<f64>>() / neighbours.len() as f64
        };
        let r = search(q, guess)?;
        cc[q] = if r.status == Status::FOUND { r.cc } else { 0.0 };
        out[q] = Some(r);
        done();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phi::Phi;

    #[test]
    fn ranking_grows_outwards_and_jumps_gaps() {
        let pts: Vec<Vector3<f64>> = [0.0, 10.0, 1.0, 2.0, 11.0].iter().map(|&x| Vector3::new(0.0, 0.0, x)).collect();
        // From point 2 (x = 1) with radius 1.5: neighbours 0 and 3, then nothing near, so the
        // nearest remaining (x = 10) is taken, then its neighbour x = 11.
        assert_eq!(rank_points(&pts, 2, 1.5), vec![2, 0, 3, 1, 4]);
    }

    #[test]
    fn propagation_follows_a_gradient_far_beyond_the_search_range() {
        // Truth: displacement 0.5·x along X. Each search sees only ±2 around its guess.
        let pts: Vec<Vector3<f64>> = (0..40).map(|x| Vector3::new(0.0, 0.0, x as f64 * 2.0)).collect();
        let truth = |i: usize| (pts[i][2] * 0.5).round();
        let order = rank_points(&pts, 0, 2.5);
        let o = PropagateOptions { radius: 2.5, weighting_distance: 5.0, cc_threshold: 0.9 };
        let res = propagate(&pts, &order, Vector3::zeros(), &o, |i, g| {
            let n = g.map(|v| v.round_ties_even());
            let t = truth(i);
            let mut p = Phi::identity();
            if (t - n[2]).abs() <= 2.0 {
                p[(2, 3)] = t;
                Ok(PixelResult { phi: p, cc: 0.99, error: 0.0, status: Status::FOUND })
            } else {
                Ok(PixelResult { phi: p, cc: 0.3, error: 0.0, status: Status::FOUND })
            }
        }, || {})
        .unwrap();
        assert!(res.iter().enumerate().all(|(i, r)| r.as_ref().unwrap().phi[(2, 3)] == truth(i)));
        assert_eq!(truth(39), 39.0);
    }
}
