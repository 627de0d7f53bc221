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
//!
//! Every chunk once: before a run, the prefetch of every tile is replayed without loading
//! ([`ChunkUses::record`]), which gives the chunks each tile reads. Those chunks are pinned in
//! the cache (evicted only after every chunk no tile waits for), and a chunk is released as
//! soon as the last tile reading it is done. The chunks held at any moment are then those
//! shared by the tiles done and the tiles still to come, about one layer (Z slab) of tiles of
//! every image, plus the tiles in flight: with a budget that holds them, each chunk is
//! decoded once. That budget ([`ChunkUses::once_budget`]) is reported by `--stats`, and a run
//! whose `--cache-bytes` is below it says so on stderr.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Result};

use crate::store::cache::human_bytes;
use crate::store::ChunkCache;

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

/// One chunk a planned tile reads.
#[derive(Clone)]
struct ChunkUse {
    cache: Arc<ChunkCache>,
    volume: u64,
    idx: [u32; 3],
    bytes: u64,
}

thread_local! {
    /// While a run is planned, [`BoxUnion::warm`] records the chunks it would load here
    /// instead of loading them.
    static RECORDING: RefCell<Option<Vec<ChunkUse>>> = const { RefCell::new(None) };
}

/// The chunks each tile of a run reads, and how many tiles are still to read each.
pub struct ChunkUses {
    chunks: Vec<ChunkUse>,
    per_tile: Vec<Vec<u32>>,
    remaining: Vec<AtomicU32>,
}

impl ChunkUses {
    /// Replays `prefetch` on every tile with loading turned off, recording what it would load.
    pub fn record<P: Fn(&Tile)>(tiles: &[Tile], prefetch: &P) -> ChunkUses {
        let mut index: HashMap<(u64, [u32; 3]), u32> = HashMap::new();
        let mut chunks: Vec<ChunkUse> = Vec::new();
        let mut per_tile = Vec::with_capacity(tiles.len());
        for t in tiles {
            RECORDING.with(|r| *r.borrow_mut() = Some(Vec::new()));
            prefetch(t);
            let got = RECORDING.with(|r| r.borrow_mut().take()).unwrap_or_default();
            let mut ids: Vec<u32> = got
                .into_iter()
                .map(|u| {
                    *index.entry((u.volume, u.idx)).or_insert_with(|| {
                        chunks.push(u);
                        (chunks.len() - 1) as u32
                    })
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            per_tile.push(ids);
        }
        let mut count = vec![0u32; chunks.len()];
        for ids in &per_tile {
            for &i in ids {
                count[i as usize] += 1;
            }
        }
        ChunkUses { chunks, per_tile, remaining: count.into_iter().map(AtomicU32::new).collect() }
    }

    /// Number of distinct chunks the run reads.
    pub fn distinct(&self) -> usize {
        self.chunks.len()
    }

    /// The budget with which each chunk is decoded once when tiles are run in order with up
    /// to `lookahead` tiles loaded ahead of the oldest one not done: the largest total size
    /// of the chunks first read at most `lookahead` tiles ahead and last read no earlier.
    pub fn once_budget(&self, lookahead: usize) -> u64 {
        let n = self.per_tile.len();
        let mut first = vec![usize::MAX; self.chunks.len()];
        let mut last = vec![0usize; self.chunks.len()];
        for (t, ids) in self.per_tile.iter().enumerate() {
            for &i in ids {
                let i = i as usize;
                first[i] = first[i].min(t);
                last[i] = t;
            }
        }
        let mut delta = vec![0i64; n + 1];
        for (i, c) in self.chunks.iter().enumerate() {
            if first[i] == usize::MAX {
                continue;
            }
            delta[first[i].saturating_sub(lookahead)] += c.bytes as i64;
            delta[last[i] + 1] -= c.bytes as i64;
        }
        let (mut held, mut most) = (0i64, 0i64);
        for d in delta {
            held += d;
            most = most.max(held);
        }
        most as u64
    }

    /// Pins every planned chunk in its cache.
    fn pin(&self) {
        for c in &self.chunks {
            c.cache.pin(c.volume, c.idx);
        }
    }

    /// Tile `k` is done: chunks no remaining tile reads leave the cache.
    fn done(&self, k: usize) {
        for &i in &self.per_tile[k] {
            if self.remaining[i as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                let c = &self.chunks[i as usize];
                c.cache.release(c.volume, c.idx);
            }
        }
    }

    /// Releases what tiles that never ran (a failed run) still held pinned.
    fn release_all(&self) {
        for (i, c) in self.chunks.iter().enumerate() {
            if self.remaining[i].load(Ordering::Acquire) > 0 {
                c.cache.release(c.volume, c.idx);
            }
        }
    }

    /// Tells each cache the budget this run needs, and warns once when it is below it.
    fn report_budget(&self, lookahead: usize) {
        let need = self.once_budget(lookahead);
        let mut caches: Vec<&Arc<ChunkCache>> = Vec::new();
        for c in &self.chunks {
            if !caches.iter().any(|k| Arc::ptr_eq(k, &c.cache)) {
                caches.push(&c.cache);
            }
        }
        for cache in caches {
            cache.note_once_budget(need);
            if cache.capacity() < need {
                crate::say::warn(format_args!(
                    "--cache-bytes {} is below the {} this run needs to decode each chunk once (the chunks of one layer of tiles of every image); chunks will be decoded more than once",
                    human_bytes(cache.capacity()),
                    human_bytes(need)
                ));
            }
        }
    }
}

/// Tiles loaded ahead of the oldest tile not done: those queued in the channel, those being
/// worked on and the one being prefetched.
fn lookahead(threads: usize) -> usize {
    3 * threads + 1
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
    let uses = ChunkUses::record(tiles, &prefetch);
    uses.report_budget(lookahead(threads));
    uses.pin();
    let uses = &uses;
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
                            uses.done(k);
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
    uses.release_all();
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
        let recording = RECORDING.with(|r| r.borrow().is_some());
        for z in l[0] / c[0]..=(h[0] - 1) / c[0] {
            for y in l[1] / c[1]..=(h[1] - 1) / c[1] {
                for x in l[2] / c[2]..=(h[2] - 1) / c[2] {
                    let idx = [z, y, x];
                    if recording {
                        let u = ChunkUse {
                            cache: vol.cache().clone(),
                            volume: vol.id(),
                            idx: [z as u32, y as u32, x as u32],
                            bytes: vol.chunk_bytes(idx),
                        };
                        RECORDING.with(|r| r.borrow_mut().as_mut().map(|v| v.push(u)));
                    } else {
                        // A failed read is reported by the worker that needs the chunk.
                        let _ = vol.stored_chunk(idx);
                    }
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

    /// A grid of windows over two volumes in chunks of 4³ through a cache of `budget` bytes
    /// (0: the run's budget for once): (chunks decoded, distinct chunks, budget for once,
    /// chunk buffers allocated).
    fn windows_through(budget: u64) -> (u64, u64, u64, u64) {
        use crate::store::memory::MemorySource;
        use crate::store::Volume;
        let n = 40;
        let src = |seed: f32| MemorySource {
            path: "m".into(),
            shape: [n; 3],
            chunk: [4; 3],
            data: Arc::new((0..n * n * n).map(|i| i as f32 * seed).collect()),
        };
        let plan = |cache: Arc<ChunkCache>| {
            let a = Volume::new(Arc::new(src(1.0)), cache.clone());
            let b = Volume::new(Arc::new(src(2.0)), cache);
            (a, b)
        };
        // Nodes every 6 voxels, windows of 5³ (6³ for image 2): neighbouring layers share chunks.
        let dims = [6, 6, 6];
        let node = |i: usize| -> [i64; 3] { [(i / 36) as i64 * 6 + 4, (i / 6 % 6) as i64 * 6 + 4, (i % 6) as i64 * 6 + 4] };
        let tiles = plan_grid_tiles(dims, [1, 1, 1]);
        let order: Vec<usize> = (0..216).collect();
        let boxes = |p: [i64; 3], h: i64| (p.map(|v| v - h), p.map(|v| v + h + 1));
        let probe = ChunkCache::new(1 << 30);
        let (a, b) = plan(probe.clone());
        let warm = |t: &Tile, a: &Volume, b: &Volume| {
            let (mut b1, mut b2) = (BoxUnion::default(), BoxUnion::default());
            for &i in &t.points {
                b1.add(boxes(node(i), 2));
                b2.add(boxes(node(i), 3));
            }
            b1.warm(a);
            b2.warm(b);
        };
        let once = ChunkUses::record(&tiles, &|t: &Tile| warm(t, &a, &b)).once_budget(lookahead(2));
        let cache = ChunkCache::new(if budget == 0 { once } else { budget });
        let (a, b) = plan(cache.clone());
        run(&tiles, &order, 2, |t| warm(t, &a, &b), |t| {
            t.points
                .iter()
                .map(|&i| {
                    let (lo, hi) = boxes(node(i), 2);
                    let w = a.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
                    let (lo, hi) = boxes(node(i), 3);
                    let v = b.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
                    Ok((i, w.sum() + v.sum()))
                })
                .collect()
        }, |_, _| Ok(()))
        .unwrap();
        let s = cache.stats();
        assert!(s.peak_resident_bytes <= cache.capacity());
        assert_eq!(s.buffers_allocated + s.buffers_reused, s.misses);
        (s.misses, s.distinct_chunks, once, s.buffers_allocated)
    }

    #[test]
    fn each_chunk_is_decoded_once_when_the_budget_holds_a_layer() {
        let (decoded, distinct, once, allocated) = windows_through(0);
        // Both volumes are 2 × 1000 chunks of 256 bytes; a layer of tiles is far less.
        assert_eq!(distinct, 2000);
        assert!(once < 2000 * 256 / 3, "{once}");
        assert_eq!(decoded, distinct);
        // Chunks released after their last tile give their buffers to the next decodes: the
        // run allocates about what the budget holds (plus the pool's slack and the chunks in
        // transit), not a buffer per chunk.
        let held = (once + once / 16) / 256;
        assert!(allocated <= held + 16, "{allocated} buffers allocated for {decoded} decodes, the budget holds {held}");
        // A quarter of that budget decodes chunks again, and still allocates no more.
        let (decoded, distinct, _, allocated) = windows_through(once / 4);
        assert!(decoded > distinct + distinct / 5, "{decoded} of {distinct}");
        let held = (once / 4 + once / 64) / 256;
        assert!(allocated <= held + 16, "{allocated} buffers allocated for {decoded} decodes, the budget holds {held}");
    }

    #[test]
    fn a_failing_tile_stops_the_run() {
        let tiles = plan_grid_tiles([4, 4, 4], [1, 1, 1]);
        let r = run(&tiles, &(0..64).collect::<Vec<_>>(), 2, |_| {}, |t| if t.points[0] == 20 { Err(anyhow!("bad window")) } else { Ok(vec![(t.points[0], ())]) }, |_, _| Ok(()));
        assert!(r.unwrap_err().to_string().contains("bad window"));
    }
}
