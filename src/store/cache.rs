//! The byte-bounded cache of decoded chunks that every volume read goes through.
//!
//! One cache is shared by all the volumes of a run (both images, masks, labels) so that
//! `--cache-bytes` bounds the whole process, whatever the back end (Zarr or TIFF). Chunks are
//! held in their stored type (uint8, uint16, int16, uint32 or float32; float64 is held as
//! float32, what every kernel reads) and converted to f32 only when a box is copied out
//! ([`super::volume::Volume::read_box_into`]), so the budget counts stored bytes: a uint16
//! chunk costs half what it would as f32.
//!
//! Eviction is an exact LRU (a tick per access under one lock: an access is one chunk of a
//! box, never one voxel, so the lock is cheap), because the scheduler's promise, "each chunk
//! decoded once when the budget holds a layer of tiles", is a statement about exact LRU order.
//! moka, used before, records reads in a bounded log and drops them when it is full, which
//! made chunks still needed look old. The scheduler also tells the cache when a chunk's last
//! tile is done ([`ChunkCache::release`]), so the budget is spent on chunks still to be used.
//! Chunks are handed out as `Arc`s: a chunk evicted while a worker still uses it stays alive
//! until that worker drops it, so eviction never pulls data from under a worker. Concurrent
//! requests for the same missing chunk decode it once.
//!
//! The buffer of a chunk dropped from the cache (evicted or released) goes to a
//! [`BufferPool`] and is decoded into again ([`ChunkCache::get_or_load_into`]), so a run
//! allocates about as many chunk buffers as the budget holds, however many chunks it decodes;
//! the pool counts against the budget (see [`super::pool`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Result;

use super::dtype::{DType, TypedBuf};
use super::pool::{BufferPool, MAX_SLACK_BYTES};

/// A decoded chunk in its stored type, Z-major, shape as given by its source (edge chunks
/// clipped to the volume).
pub type Chunk = Arc<TypedBuf>;

/// Key of a chunk: which volume (an id unique within the process) and its chunk index.
pub type Key = (u64, [u32; 3]);

/// Volume ids are unique across caches, so a key names one chunk in the whole process.
static NEXT_VOLUME_ID: AtomicU64 = AtomicU64::new(1);

/// Counters reported by `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    /// Chunks decoded (a miss decodes).
    pub misses: u64,
    /// Distinct chunks ever decoded: `misses / distinct_chunks` is how often each was decoded.
    pub distinct_chunks: u64,
    /// Bytes of decoded chunk data produced by the back ends (in the stored type).
    pub bytes_read: u64,
    pub capacity_bytes: u64,
    /// Largest number of bytes held at once (checked after each miss).
    pub peak_resident_bytes: u64,
    /// The budget with which the scheduler's runs decode each chunk once (0: no run planned).
    pub once_budget_bytes: u64,
    /// Bytes the whole process got from read calls so far (`rchar` of /proc/self/io; 0 where
    /// there is none): what was read from the stores (compressed), next to what it decoded to.
    pub process_read_bytes: u64,
    /// Decodes that allocated a chunk buffer (no free one in the pool).
    pub buffers_allocated: u64,
    /// Decodes that reused the buffer of a chunk the cache had dropped.
    pub buffers_reused: u64,
}

/// `rchar` of /proc/self/io.
fn process_read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("rchar:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

impl std::fmt::Display for CacheStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.hits + self.misses;
        let rate = if total > 0 { 100.0 * self.hits as f64 / total as f64 } else { 0.0 };
        let per = if self.distinct_chunks > 0 { self.misses as f64 / self.distinct_chunks as f64 } else { 0.0 };
        write!(
            f,
            "chunk cache: {} hits, {} misses ({:.1}% hit rate), {} chunks decoded of {} distinct touched ({:.2} decodes per chunk), {} read, capacity {}, peak held {}",
            self.hits,
            self.misses,
            rate,
            self.misses,
            self.distinct_chunks,
            per,
            human_bytes(self.bytes_read),
            human_bytes(self.capacity_bytes),
            human_bytes(self.peak_resident_bytes)
        )?;
        if self.once_budget_bytes > 0 {
            write!(f, ", budget to decode each chunk once {}", human_bytes(self.once_budget_bytes))?;
        }
        if self.buffers_allocated + self.buffers_reused > 0 {
            write!(f, ", {} chunk buffers allocated and {} reused", self.buffers_allocated, self.buffers_reused)?;
        }
        if self.process_read_bytes > 0 {
            write!(f, ", {} read from files by the process", human_bytes(self.process_read_bytes))?;
        }
        Ok(())
    }
}

/// Formats a byte count with binary units.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses sizes such as `256M`, `4G`, `1.5GiB`, `1000000`.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("'{s}' is not a size (examples: 256M, 4G, 1000000)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => anyhow::bail!("'{s}' has an unknown unit (use K, M, G or T)"),
    };
    if n < 0.0 || !n.is_finite() {
        anyhow::bail!("'{s}' is not a positive size");
    }
    Ok((n * mult as f64) as u64)
}

/// The default budget: a quarter of physical memory, at most 4 GiB.
pub fn default_cache_bytes() -> u64 {
    (super::memory_total() / 4).min(4 << 30)
}

/// A slot filled once by whichever thread decodes the chunk; others wait on it.
type Slot = Arc<OnceLock<std::result::Result<Chunk, String>>>;

struct Entry {
    slot: Slot,
    /// Last access (the key of this entry in `State::order` or `State::pinned_order`), once
    /// loaded.
    tick: Option<u64>,
    /// Whether the entry sits in `pinned_order`.
    pinned: bool,
    bytes: u64,
}

struct State {
    map: HashMap<Key, Entry>,
    /// Loaded chunks no planned tile waits for, by last access, oldest first: evicted first.
    order: BTreeMap<u64, Key>,
    /// Loaded chunks a planned tile still has to read, by last access, oldest first.
    pinned_order: BTreeMap<u64, Key>,
    /// Chunks planned tiles still have to read ([`ChunkCache::pin`]).
    planned: HashSet<Key>,
    resident: u64,
    tick: u64,
    touched: HashSet<Key>,
    pool: BufferPool,
    /// The largest chunk held so far, in bytes: the pool's slack holds two of them.
    largest: u64,
}

impl State {
    fn touch(&mut self, key: Key) {
        self.tick += 1;
        let t = self.tick;
        let pinned = self.planned.contains(&key);
        if let Some(e) = self.map.get_mut(&key) {
            if let Some(old) = e.tick.replace(t) {
                if e.pinned { self.pinned_order.remove(&old) } else { self.order.remove(&old) };
            }
            e.pinned = pinned;
            if pinned { self.pinned_order.insert(t, key) } else { self.order.insert(t, key) };
        }
    }

    /// Drops a chunk; its buffer goes to the pool when nothing else holds it and `room`
    /// (bytes the budget leaves for pooled buffers, counted after this chunk is gone) holds it.
    fn remove(&mut self, key: &Key, capacity: u64) {
        if let Some(e) = self.map.remove(key) {
            if let Some(t) = e.tick {
                if e.pinned { self.pinned_order.remove(&t) } else { self.order.remove(&t) };
            }
            self.resident -= e.bytes;
            // A worker still copying from the chunk, or a thread that waited for its decode,
            // keeps it alive: its buffer is then freed when the last of them drops it.
            let buf = Arc::try_unwrap(e.slot)
                .ok()
                .and_then(|slot| slot.into_inner())
                .and_then(|r| r.ok())
                .and_then(|c| Arc::try_unwrap(c).ok());
            if let Some(b) = buf {
                let room = pool_room(capacity, self.resident, self.largest);
                self.pool.give(b, room);
            }
        }
    }

    /// The chunk to evict: the least recently used of those no planned tile waits for, else
    /// the least recently used of all (the budget is below what the plan needs).
    fn victim(&self) -> Option<Key> {
        self.order.first_key_value().or_else(|| self.pinned_order.first_key_value()).map(|(_, k)| *k)
    }
}

/// Bytes the pool may hold when `resident` bytes of chunks are held: what the budget leaves,
/// plus a slack for the buffers between an eviction and the next decode (two of the largest
/// chunks, or a sixteenth of the budget up to [`MAX_SLACK_BYTES`] when that is more).
fn pool_room(capacity: u64, resident: u64, largest: u64) -> u64 {
    let slack = (capacity / 16).min(MAX_SLACK_BYTES).max(2 * largest);
    (capacity + slack).saturating_sub(resident)
}

/// The shared chunk cache.
pub struct ChunkCache {
    state: Mutex<State>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_read: AtomicU64,
    peak_resident: AtomicU64,
    once_budget: AtomicU64,
}

/// Bytes a chunk costs the budget.
fn weight(c: &TypedBuf) -> u64 {
    (c.len() * c.dtype().size()) as u64
}

impl ChunkCache {
    pub fn new(capacity_bytes: u64) -> Arc<ChunkCache> {
        Arc::new(ChunkCache {
            state: Mutex::new(State {
                map: HashMap::new(),
                order: BTreeMap::new(),
                pinned_order: BTreeMap::new(),
                planned: HashSet::new(),
                resident: 0,
                tick: 0,
                touched: HashSet::new(),
                pool: BufferPool::default(),
                largest: 0,
            }),
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            peak_resident: AtomicU64::new(0),
            once_budget: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker that panicked cannot leave the map half-updated (every update is a few
        // map operations without user code), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id for a volume that will store its chunks here.
    pub fn register_volume(&self) -> u64 {
        NEXT_VOLUME_ID.fetch_add(1, Ordering::Relaxed)
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Returns the chunk, decoding it with `load` (which returns the values in their stored
    /// type and the number of bytes it read) on a miss. Concurrent requests for the same
    /// missing chunk decode it once.
    pub fn get_or_load<F>(&self, volume: u64, idx: [u32; 3], load: F) -> Result<Chunk>
    where
        F: FnOnce() -> Result<(TypedBuf, u64)>,
    {
        self.get_or_load_into(volume, idx, None, |_| load())
    }

    /// [`get_or_load`](Self::get_or_load) for a source that can decode into a recycled
    /// buffer: on a miss, `load` gets a free buffer of `dtype` from the pool (None when there
    /// is none, or `dtype` is None), of any length, and returns it filled.
    pub fn get_or_load_into<F>(&self, volume: u64, idx: [u32; 3], dtype: Option<DType>, load: F) -> Result<Chunk>
    where
        F: FnOnce(Option<TypedBuf>) -> Result<(TypedBuf, u64)>,
    {
        let key = (volume, idx);
        let slot = {
            let mut st = self.lock();
            match st.map.get(&key) {
                Some(e) => {
                    let slot = e.slot.clone();
                    if let Some(Ok(c)) = slot.get() {
                        let c = c.clone();
                        st.touch(key);
                        drop(st);
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(c);
                    }
                    slot
                }
                None => {
                    let slot: Slot = Arc::new(OnceLock::new());
                    st.map.insert(key, Entry { slot: slot.clone(), tick: None, pinned: false, bytes: 0 });
                    slot
                }
            }
        };
        let mut decoded_here = false;
        let r = slot.get_or_init(|| {
            decoded_here = true;
            let buf = dtype.and_then(|d| self.lock().pool.take(d));
            match load(buf) {
                Ok((values, bytes)) => {
                    self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
                    Ok(Arc::new(values))
                }
                Err(e) => Err(format!("{e:#}")),
            }
        });
        if !decoded_here {
            // Another thread decoded it while this one waited.
            self.hits.fetch_add(1, Ordering::Relaxed);
            return r.clone().map_err(|e| anyhow::anyhow!(e));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        let same_slot = st.map.get(&key).is_some_and(|e| Arc::ptr_eq(&e.slot, &slot));
        match r {
            Ok(c) => {
                st.touched.insert(key);
                if same_slot {
                    let w = weight(c);
                    if let Some(e) = st.map.get_mut(&key) {
                        e.bytes = w;
                    }
                    st.resident += w;
                    st.largest = st.largest.max(w);
                    st.touch(key);
                    // Evict least recently used chunks until the budget holds, at every moment.
                    while st.resident > self.capacity {
                        let Some(old) = st.victim() else { break };
                        st.remove(&old, self.capacity);
                    }
                    // A decode that allocated may leave more pooled than the budget allows.
                    let room = pool_room(self.capacity, st.resident, st.largest);
                    st.pool.shrink_to(room);
                    self.peak_resident.fetch_max(st.resident, Ordering::Relaxed);
                }
                Ok(c.clone())
            }
            Err(e) => {
                // Not cached: the next request tries again.
                if same_slot {
                    st.remove(&key, self.capacity);
                }
                Err(anyhow::anyhow!(e.clone()))
            }
        }
    }

    /// Marks a chunk that planned tiles will read: it is evicted only when every chunk no
    /// plan waits for is gone already.
    pub fn pin(&self, volume: u64, idx: [u32; 3]) {
        let mut st = self.lock();
        let key = (volume, idx);
        st.planned.insert(key);
        if st.map.get(&key).is_some_and(|e| e.tick.is_some()) {
            st.touch(key);
        }
    }

    /// Drops a chunk that no planned tile will read again, so the budget goes to chunks still
    /// to be used. A later request decodes it again (and counts as a miss).
    pub fn release(&self, volume: u64, idx: [u32; 3]) {
        let mut st = self.lock();
        let key = (volume, idx);
        st.planned.remove(&key);
        if st.map.get(&key).is_some_and(|e| e.tick.is_some()) {
            st.remove(&key, self.capacity);
        }
    }

    /// Records the budget a planned run needs to decode each chunk once (the largest seen).
    pub fn note_once_budget(&self, bytes: u64) {
        self.once_budget.fetch_max(bytes, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CacheStats {
        let (distinct, allocated, reused) = {
            let st = self.lock();
            (st.touched.len() as u64, st.pool.allocated, st.pool.reused)
        };
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            distinct_chunks: distinct,
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            capacity_bytes: self.capacity,
            peak_resident_bytes: self.peak_resident.load(Ordering::Relaxed),
            once_budget_bytes: self.once_budget.load(Ordering::Relaxed),
            process_read_bytes: process_read_bytes(),
            buffers_allocated: allocated,
            buffers_reused: reused,
        }
    }

    /// Bytes currently held.
    pub fn resident_bytes(&self) -> u64 {
        self.lock().resident
    }

    /// Number of chunks currently held.
    pub fn resident_chunks(&self) -> usize {
        let st = self.lock();
        st.order.len() + st.pinned_order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("256M").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("4G").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3X").is_err());
    }

    #[test]
    fn stays_within_budget_and_counts() {
        let cache = ChunkCache::new(64 * 1024);
        let v = cache.register_volume();
        for i in 0..100u32 {
            let c = cache.get_or_load(v, [i, 0, 0], || Ok((TypedBuf::F32(vec![i as f32; 1024]), 2048))).unwrap();
            assert_eq!(c.get_f64(0), i as f64);
        }
        let c = cache.get_or_load(v, [99, 0, 0], || panic!("should be cached")).unwrap();
        assert_eq!(c.get_f64(5), 99.0);
        assert!(cache.resident_bytes() <= 64 * 1024);
        let s = cache.stats();
        assert_eq!(s.misses, 100);
        assert_eq!(s.hits, 1);
        assert_eq!(s.distinct_chunks, 100);
        assert_eq!(s.bytes_read, 200 * 1024);
    }

    #[test]
    fn the_budget_counts_stored_bytes() {
        // 16 uint16 chunks of 32³ (64 KiB each) fit a 1 MiB budget: as f32 only 8 did.
        let n = 32 * 32 * 32;
        let cache = ChunkCache::new(16 * n as u64 * 2);
        let v = cache.register_volume();
        for i in 0..16u32 {
            cache.get_or_load(v, [i, 0, 0], || Ok((TypedBuf::U16(vec![i as u16; n]), 0))).unwrap();
        }
        assert_eq!(cache.resident_chunks(), 16);
        for i in 0..16u32 {
            cache.get_or_load(v, [i, 0, 0], || panic!("chunk {i} was evicted")).unwrap();
        }
        assert_eq!(cache.stats().misses, 16);
        // One more evicts exactly the least recently used one (chunk 0).
        cache.get_or_load(v, [16, 0, 0], || Ok((TypedBuf::U16(vec![0; n]), 0))).unwrap();
        assert_eq!(cache.resident_chunks(), 16);
        cache.get_or_load(v, [1, 0, 0], || panic!("chunk 1 is not the oldest")).unwrap();
        cache.get_or_load(v, [0, 0, 0], || Ok((TypedBuf::U16(vec![0; n]), 0))).unwrap();
        assert_eq!(cache.stats().misses, 18);
    }

    #[test]
    fn released_chunks_free_the_budget_and_failed_loads_are_retried() {
        let cache = ChunkCache::new(1 << 20);
        let v = cache.register_volume();
        cache.get_or_load(v, [0, 0, 0], || Ok((TypedBuf::U8(vec![1; 100]), 100))).unwrap();
        assert_eq!(cache.resident_bytes(), 100);
        cache.release(v, [0, 0, 0]);
        assert_eq!(cache.resident_bytes(), 0);
        // A pinned chunk outlives newer unpinned ones.
        let small = ChunkCache::new(300);
        let w = small.register_volume();
        small.pin(w, [0, 0, 0]);
        for i in 0..5u32 {
            small.get_or_load(w, [i, 0, 0], || Ok((TypedBuf::U8(vec![0; 100]), 100))).unwrap();
        }
        small.get_or_load(w, [0, 0, 0], || panic!("the pinned chunk was evicted")).unwrap();
        small.release(w, [0, 0, 0]);
        assert_eq!(small.resident_chunks(), 2);
        assert!(cache.get_or_load(v, [1, 0, 0], || anyhow::bail!("disk on fire")).is_err());
        let c = cache.get_or_load(v, [1, 0, 0], || Ok((TypedBuf::U8(vec![7; 10]), 10))).unwrap();
        assert_eq!(c.get_f64(3), 7.0);
    }
}
