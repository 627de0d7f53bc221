//! Storage: volumes read a box at a time through one byte-bounded chunk cache.
//!
//! Layers, bottom up: back ends that decode one chunk ([`zarr`], on local folders or in object storage
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
pub mod remote;
pub mod tiff;
pub mod tiff_write;
pub mod volume;
pub mod voxel_size;
pub mod zarr;

pub use cache::{ChunkCache, CacheStats};
pub use dtype::{DType, TypedBuf};
pub use volume::{Volume, VolumeSource};
