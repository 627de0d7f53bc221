//! Storage: volumes read a box at a time through one byte-bounded chunk cache.
//!
//! Layers, bottom up: what a back end is ([`source`]), back ends that decode one chunk ([`zarr`], on local folders or in object storage
//! through [`remote`], [`tiff`], [`memory`],
//! [`binning`]'s binned views), the shared [`cache`], and [`volume::Volume`], the only type
//! the rest of dvc-stream reads voxels through. Writers ([`zarr::ArrayWriter`],
//! [`tiff_write`]) and the streaming converter ([`convert`]) live here too.

pub mod binning;
pub mod bulk_store;
pub mod cache;
pub mod convert;
pub mod dtype;
pub mod memory;
pub mod output;
pub mod pool;
pub mod remote;
pub mod source;
pub mod tiff;
pub mod tiff_write;
pub mod volume;
pub mod voxel_size;
pub mod zarr;

/// The machine's memory in bytes (MemTotal; 4 GiB when it cannot be read).
pub fn memory_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .map(|kib| kib * 1024)
        .unwrap_or(4 << 30)
}

pub use cache::{ChunkCache, CacheStats};
pub use dtype::{DType, TypedBuf};
pub use volume::{Volume, VolumeSource};
