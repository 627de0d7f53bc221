//! The byte-bounded cache of decoded chunks that every volume read goes through.
//!
//! One cache is shared by all the volumes of a run (both images, masks, labels) so that
//! `--cache-bytes` bounds the whole process, whatever the back end (Zarr or TIFF). It is
//! built on `moka` (the concurrent cache that zarrs itself uses for its size-limited chunk
//! caches) with a byte weigher and LRU eviction. zarrs' own `ChunkCacheDecodedLruSizeLimit`
//! is per array and holds native-typed bytes of Zarr arrays only; here chunks are stored
//! once as f32 for every back end, and hits, misses and bytes decoded are counted for
//! `--stats`. Chunks are handed out as `Arc`s: a chunk evicted while a worker still uses
//! it stays alive until that worker drops it, so eviction never pulls data from under a
//! worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use moka::policy::EvictionPolicy;

/// A decoded chunk: f32 values in Z-major order, shape as given by its source.
pub type Chunk = Arc<[f32]>;

/// Key of a chunk: which volume (an id unique within the process) and its chunk index.
type Key = (u64, [u32; 3]);

/// Counters reported by `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes of decoded chunk data produced by the back ends (in the stored type).
    pub bytes_read: u64,
    pub capacity_bytes: u64,
    /// Largest number of bytes held at once (checked after each miss).
    pub peak_resident_bytes: u64,
}

impl std::fmt::Display for CacheStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.hits + self.misses;
        let rate = if total > 0 { 100.0 * self.hits as f64 / total as f64 } else { 0.0 };
        write!(
            f,
            "chunk cache: {} hits, {} misses ({:.1}% hit rate), {} read, capacity {}, peak held {}",
            self.hits,
            self.misses,
            rate,
            human_bytes(self.bytes_read),
            human_bytes(self.capacity_bytes),
            human_bytes(self.peak_resident_bytes)
        )
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
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .map(|kib| kib * 1024)
        .unwrap_or(4 << 30);
    (total / 4).min(4 << 30)
}

/// The shared chunk cache.
pub struct ChunkCache {
    inner: moka::sync::Cache<Key, Chunk>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_read: AtomicU64,
    peak_resident: AtomicU64,
    next_id: AtomicU64,
}

impl ChunkCache {
    pub fn new(capacity_bytes: u64) -> Arc<ChunkCache> {
        let inner = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|_k: &Key, v: &Chunk| u32::try_from(v.len() * 4).unwrap_or(u32::MAX))
            .build();
        Arc::new(ChunkCache {
            inner,
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            peak_resident: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    /// A fresh id for a volume that will store its chunks here.
    pub fn register_volume(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Returns the chunk, decoding it with `load` (which returns the values and the number of
    /// bytes it read) on a miss. Concurrent requests for the same missing chunk decode it once.
    pub fn get_or_load<F>(&self, volume: u64, idx: [u32; 3], load: F) -> Result<Chunk>
    where
        F: FnOnce() -> Result<(Vec<f32>, u64)>,
    {
        let key = (volume, idx);
        if let Some(c) = self.inner.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c);
        }
        let loaded = self.inner.try_get_with(key, || -> Result<Chunk> {
            let (values, bytes) = load()?;
            self.misses.fetch_add(1, Ordering::Relaxed);
            self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
            Ok(Arc::from(values))
        });
        // moka applies evictions in batches; settle them now so that the budget holds at every
        // moment rather than on average (a miss costs far more than this bookkeeping).
        self.inner.run_pending_tasks();
        self.peak_resident.fetch_max(self.inner.weighted_size(), Ordering::Relaxed);
        match loaded {
            Ok(c) => Ok(c),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        }
    }


    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            capacity_bytes: self.capacity,
            peak_resident_bytes: self.peak_resident.load(Ordering::Relaxed),
        }
    }

    /// Bytes currently held (after pending evictions have run).
    pub fn resident_bytes(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.weighted_size()
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
            let c = cache.get_or_load(v, [i, 0, 0], || Ok((vec![i as f32; 1024], 2048))).unwrap();
            assert_eq!(c[0], i as f32);
        }
        let c = cache.get_or_load(v, [99, 0, 0], || panic!("should be cached")).unwrap();
        assert_eq!(c[5], 99.0);
        assert!(cache.resident_bytes() <= 64 * 1024);
        let s = cache.stats();
        assert_eq!(s.misses, 100);
        assert_eq!(s.hits, 1);
        assert_eq!(s.bytes_read, 200 * 1024);
    }
}
