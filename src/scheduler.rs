//! The tile scheduler: how a field of windows is streamed through the chunk cache.
//!
//! Points are grouped into tiles of neighbouring grid nodes (about one chunk each), tiles are
//! ordered slab by slab in Z and along a Morton curve inside each slab, so consecutive tiles
//! share chunks. A prefetch thread loads the chunks of upcoming tiles into the cache and hands
//! the tiles on through a bounded crossbeam channel (back-pressure: it never runs more than a
//! few tiles ahead); workers of a rayon pool correlate them; results come back to the calling
//! thread, which restores point order with a small reorder buffer (about one slab of tiles) and
//! passes each result on as soon as all earlier points are done. Memory is the cache budget,
//! a window buffer per worker and the reorder buffer, whatever the volume size.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};

/// A group of points correlated together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Indices of the points, in the caller's numbering.
    pub points: Vec<usize>,
}

/// Interleaves the bits of two coordinates (Morton / Z-order).
fn morton2(y: u32, x: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut v = v as u64;
        v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
        v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v << 2)) & 0x3333_3333_3333_3333;
        v = (v | (v << 1)) & 0x5555_5555_5555_5555;
        v
    }
    spread(y) << 1 | spread(x)
}

/// Tiles of `per_tile` nodes per axis over a Z-major grid of `dims` nodes, ordered by slab
/// (Z) then along a Morton curve in (Y, X).
pub fn plan_grid_tiles(dims: [usize; 3], per_tile: [usize; 3]) -> Vec<Tile> {
    let pt: [usize; 3] = std::array::from_fn(|a| per_tile[a].max(1));
    let nt: [usize; 3] = std::array::from_fn(|a| dims[a].div_ceil(pt[a]));
    let mut tiles = Vec::new();
    for tz in 0..nt[0] {
        let mut slab: Vec<(u64, Tile)> = Vec::new();
        for ty in 0..nt[1] {
            for tx in 0..nt[2] {
                let mut points = Vec::new();
                for z in tz * pt[0]..((tz + 1) * pt[0]).min(dims[0]) {
                    for y in ty * pt[1]..((ty + 1) * pt[1]).min(dims[1]) {
                        for x in tx * pt[2]..((tx + 1) * pt[2]).min(dims[2]) {
                            points.push((z * dims[1] + y) * dims[2] + x);
                        }
                    }
                }
                slab.push((morton2(ty as u32, tx as u32), Tile { points }));
            }
        }
        slab.sort_by_key(|(k, _)| *k);
        tiles.extend(slab.into_iter().map(|(_, t)| t));
    }
    tiles
}

/// Tiles for scattered points (labels): points are grouped by the chunk holding them,
/// chunks ordered slab by slab and along a Morton curve inside a slab, at most `per_tile`
/// points per tile. Points with a non-finite position go in tiles of their own at the end.
pub fn plan_point_tiles(positions: &[[f64; 3]], chunk: [usize; 3], per_tile: usize) -> Vec<Tile> {
    let per_tile = per_tile.max(1);
    let mut keyed: Vec<((u64, u64), usize)> = positions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p.iter().all(|v| v.is_finite()) {
                let c: [u32; 3] = std::array::from_fn(|a| (p[a].max(0.0) as usize / chunk[a].max(1)) as u32);
                ((c[0] as u64, morton2(c[1], c[2])), i)
            } else {
                ((u64::MAX, u64::MAX), i)
            }
        })
        .collect();
    keyed.sort();
    let mut tiles: Vec<Tile> = Vec::new();
    let mut last = None;
    for (k, i) in keyed {
        match tiles.last_mut() {
            Some(t) if last == Some(k) && t.points.len() < per_tile => t.points.push(i),
            _ => tiles.push(Tile { points: vec![i] }),
        }
        last = Some(k);
    }
    tiles
}

/// Runs `work` on every tile with `threads` workers while `prefetch` warms the cache for the
/// tiles ahead, and calls `sink` with each point's result in the order of `order` (the
/// tiles' points, ascending: 0, 1, 2, … for a whole run; a shard's or a resumed run's points
/// otherwise). `work` returns (point, result) pairs for the points of its tile.
pub fn run<R, P, W, S>(tiles: &[Tile], order: &[usize], threads: usize, prefetch: P, work: W, mut sink: S) -> Result<()>
where
    R: Send,
    P: Fn(&Tile) + Sync,
    W: Fn(&Tile) -> Result<Vec<(usize, R)>> + Sync,
    S: FnMut(usize, R) -> Result<()>,
{
    let threads = threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("dvc-worker-{i}"))
        .build()
        .map_err(|e| anyhow!("cannot start worker threads: {e}"))?;
    let (tile_tx, tile_rx) = crossbeam_channel::bounded::<usize>(threads * 2);
    let (res_tx, res_rx) = crossbeam_channel::bounded::<Result<Vec<(usize, R)>>>(threads * 2);
    let mut outcome = Ok(());
    std::thread::scope(|scope| {
        let prefetch = &prefetch;
        // Prefetch: warm the cache for a tile, then queue it (blocks when workers are behind).
        scope.spawn(move || {
            for (k, t) in tiles.iter().enumerate() {
                prefetch(t);
                if tile_tx.send(k).is_err() {
                    break;
                }
            }
        });
        let work = &work;
        scope.spawn(move || {
            pool.scope(|s| {
                for _ in 0..threads {
                    let rx = tile_rx.clone();
                    let tx = res_tx.clone();
                    s.spawn(move |_| {
                        for k in rx.iter() {
                            let r = work(&tiles[k]);
                            let failed = r.is_err();
                            if tx.send(r).is_err() || failed {
                                break;
                            }
                        }
                    });
                }
            });
            drop(res_tx);
        });
        let mut pending: BTreeMap<usize, R> = BTreeMap::new();
        let mut next = 0usize;
        for r in res_rx.iter() {
            match r {
                Ok(rows) => {
                    for (i, v) in rows {
                        match order.binary_search(&i) {
                            Ok(k) => {
                                pending.insert(k, v);
                            }
                            Err(_) => outcome = Err(anyhow!("internal: point {i} is not in this run")),
                        }
                    }
                    while let Some(v) = pending.remove(&next) {
                        if outcome.is_err() {
                            break;
                        }
                        if let Err(e) = sink(order[next], v) {
                            outcome = Err(e);
                            break;
                        }
                        next += 1;
                    }
                }
                Err(e) => outcome = Err(e),
            }
            if outcome.is_err() {
                break;
            }
        }
        // Dropping the receiver stops the workers and the prefetcher.
        drop(res_rx);
        if outcome.is_ok() && next != order.len() {
            outcome = Err(anyhow!("internal: {next} of {} points finished", order.len()));
        }
    });
    outcome
}

/// The bounding box of several boxes.
#[derive(Default)]
pub struct BoxUnion(Option<([i64; 3], [i64; 3])>);

impl BoxUnion {
    pub fn add(&mut self, (lo, hi): ([i64; 3], [i64; 3])) {
        self.0 = Some(match self.0 {
            None => (lo, hi),
            Some((l, h)) => (std::array::from_fn(|k| l[k].min(lo[k])), std::array::from_fn(|k| h[k].max(hi[k]))),
        });
    }

    /// Loads into the cache every chunk the box overlaps.
    pub fn warm(&self, vol: &crate::store::Volume) {
        let Some((lo, hi)) = self.0 else { return };
        let s = vol.shape();
        let c = vol.chunk_shape();
        let l: [usize; 3] = std::array::from_fn(|k| lo[k].clamp(0, s[k] as i64) as usize);
        let h: [usize; 3] = std::array::from_fn(|k| hi[k].clamp(0, s[k] as i64) as usize);
        if (0..3).any(|k| h[k] <= l[k]) {
            return;
        }
        for z in l[0] / c[0]..=(h[0] - 1) / c[0] {
            for y in l[1] / c[1]..=(h[1] - 1) / c[1] {
                for x in l[2] / c[2]..=(h[2] - 1) / c[2] {
                    // A failed read is reported by the worker that needs the chunk.
                    let _ = vol.chunk([z, y, x]);
                }
            }
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_every_node_once() {
        let dims = [5, 7, 9];
        let tiles = plan_grid_tiles(dims, [2, 3, 4]);
        let mut seen = vec![0; 5 * 7 * 9];
        for t in &tiles {
            for &p in &t.points {
                seen[p] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert_eq!(tiles.len(), 3 * 3 * 3);
    }

    #[test]
    fn point_tiles_group_by_chunk_and_cover_every_point() {
        let pos = [[1.0, 1.0, 1.0], [40.0, 1.0, 1.0], [2.0, 3.0, 4.0], [f64::NAN, 0.0, 0.0], [3.0, 3.0, 3.0], [41.0, 2.0, 2.0]];
        let tiles = plan_point_tiles(&pos, [32, 32, 32], 2);
        let got: Vec<Vec<usize>> = tiles.iter().map(|t| t.points.clone()).collect();
        assert_eq!(got, vec![vec![0, 2], vec![4], vec![1, 5], vec![3]]);
    }

    #[test]
    fn results_come_back_in_point_order() {
        let tiles = plan_grid_tiles([4, 6, 6], [1, 2, 2]);
        let mut got = Vec::new();
        run(&tiles, &(0..144).collect::<Vec<_>>(), 3, |_| {}, |t| Ok(t.points.iter().map(|&p| (p, p * 10)).collect()), |i, v| {
            got.push((i, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 144);
        assert!(got.iter().enumerate().all(|(k, &(i, v))| i == k && v == k * 10));
    }

    #[test]
    fn a_failing_tile_stops_the_run() {
        let tiles = plan_grid_tiles([4, 4, 4], [1, 1, 1]);
        let r = run(&tiles, &(0..64).collect::<Vec<_>>(), 2, |_| {}, |t| if t.points[0] == 20 { Err(anyhow!("bad window")) } else { Ok(vec![(t.points[0], ())]) }, |_, _| Ok(()));
        assert!(r.unwrap_err().to_string().contains("bad window"));
    }
}
