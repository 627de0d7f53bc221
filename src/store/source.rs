//! What a back end is: a [`VolumeSource`] decodes one chunk of a 3D volume, and the checks
//! every back end applies to the sizes it reads from a file before sizing anything from them.
//!
//! The back ends ([`super::zarr`], [`super::tiff`], [`super::memory`]) depend on this and on
//! nothing above it; [`super::volume::Volume`] puts a source behind the chunk cache.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::dtype::{DType, TypedBuf};
use super::voxel_size::VoxelSize;

/// A back end that can decode one chunk of a 3D volume.
pub trait VolumeSource: Send + Sync {
    /// (Nz, Ny, Nx).
    fn shape(&self) -> [usize; 3];
    /// The chunk grid the source decodes in (the last chunk along an axis may be shorter).
    fn chunk_shape(&self) -> [usize; 3];
    /// The stored element type.
    fn dtype(&self) -> DType;
    /// Decodes chunk `idx`: the values inside the volume only (edge chunks are clipped),
    /// Z-major, together with the number of bytes decoded.
    fn read_chunk(&self, idx: [usize; 3]) -> Result<(Vec<f32>, u64)>;
    /// Decodes chunk `idx` as [`read_chunk`](Self::read_chunk) does, in the type the cache
    /// holds it in: the stored type (float64 as f32). Back ends that decode to f32 anyway
    /// need not override it: their values are narrowed back to uint8/uint16/int16 exactly.
    fn read_chunk_stored(&self, idx: [usize; 3]) -> Result<(TypedBuf, u64)> {
        let (values, bytes) = self.read_chunk(idx)?;
        Ok((TypedBuf::narrowed(self.dtype(), values), bytes))
    }
    /// [`read_chunk_stored`](Self::read_chunk_stored) into `buf`, a free buffer of the held
    /// type (of any length) when the cache's pool has one: back ends that can decode in place
    /// override it so that decoding allocates nothing.
    fn read_chunk_into(&self, idx: [usize; 3], buf: Option<TypedBuf>) -> Result<(TypedBuf, u64)> {
        let _ = buf;
        self.read_chunk_stored(idx)
    }
    /// The file or store this reads, for messages.
    fn path(&self) -> &Path;
    /// The bin factor of this source relative to the full-resolution data (1 for level 0).
    fn bin(&self) -> usize {
        1
    }
    /// Other resolution levels the source knows about: (bin factor, source).
    fn level(&self, _bin: usize) -> Result<Option<Arc<dyn VolumeSource>>> {
        Ok(None)
    }
    /// The bin factors of the pyramid levels stored beside this source (1 first).
    fn stored_bins(&self) -> Vec<usize> {
        vec![1]
    }
    /// The physical size of a voxel of this source, when its metadata says.
    fn voxel_size(&self) -> Option<VoxelSize> {
        None
    }
}

/// The most voxels a volume may claim (2^48, 256 Ti voxels: far beyond any scan, and small
/// enough that voxel counts, byte sizes and signed box coordinates cannot overflow).
pub const MAX_VOXELS: u64 = 1 << 48;
/// The most voxels of one chunk: a chunk is decoded whole, and held as f32.
pub const MAX_CHUNK_VOXELS: u64 = 1 << 30;

/// Checks a shape read from a file (3 axes, each positive, at most [`MAX_VOXELS`] voxels in
/// all) before anything is sized from it.
pub fn check_shape(path: &Path, shape: &[u64]) -> Result<[usize; 3]> {
    if shape.len() != 3 {
        bail!("{}: has {} dimensions, 3 are needed (Z, Y, X)", path.display(), shape.len());
    }
    let voxels = shape.iter().try_fold(1u64, |n, &s| n.checked_mul(s));
    if voxels.is_none_or(|n| n > MAX_VOXELS) {
        bail!("{}: shape {:?} claims more than 2^48 voxels: corrupt metadata, or a volume too large to read", path.display(), shape);
    }
    if shape.contains(&0) {
        bail!("{}: shape {:?} holds no voxel", path.display(), shape);
    }
    Ok([shape[0] as usize, shape[1] as usize, shape[2] as usize])
}

/// Checks a chunk shape read from a file: a chunk is decoded whole, so its voxels must be
/// few enough to hold ([`MAX_CHUNK_VOXELS`]).
pub fn check_chunk_shape(path: &Path, chunk: &[u64], dtype: DType) -> Result<[usize; 3]> {
    if chunk.len() != 3 || chunk.contains(&0) {
        bail!("{}: chunk shape {:?} is not 3 positive sizes", path.display(), chunk);
    }
    let voxels = chunk.iter().try_fold(1u64, |n, &s| n.checked_mul(s));
    if voxels.is_none_or(|n| n > MAX_CHUNK_VOXELS) {
        bail!(
            "{}: chunk shape {:?} claims more than 2^30 voxels per chunk ({} bytes each at least): corrupt metadata, or chunks too large to decode",
            path.display(),
            chunk,
            voxels.map_or("over 2^64".to_string(), |n| (n as u128 * dtype.size() as u128).to_string())
        );
    }
    Ok([chunk[0] as usize, chunk[1] as usize, chunk[2] as usize])
}


/// Refuses an allocation sized from arguments or files that cannot fit in memory: `bytes`
/// is None when computing it overflowed. `what` says what would be allocated, for the message.
pub fn check_memory(what: &str, bytes: Option<u128>) -> Result<()> {
    let total = super::memory_total();
    match bytes {
        Some(b) if b <= total as u128 => Ok(()),
        Some(b) => bail!("{what} would need {:.1} GiB, more than this machine's {:.1} GiB of memory", b as f64 / (1u64 << 30) as f64, total as f64 / (1u64 << 30) as f64),
        None => bail!("{what} would need more bytes than can be counted"),
    }
}

/// Extent of chunk `idx` along each axis, clipped to the volume.
pub fn chunk_extent(shape: [usize; 3], chunk: [usize; 3], idx: [usize; 3]) -> [Range<usize>; 3] {
    std::array::from_fn(|a| {
        let start = idx[a] * chunk[a];
        start..(start + chunk[a]).min(shape[a])
    })
}

/// Number of chunks along each axis.
pub fn chunk_grid(shape: [usize; 3], chunk: [usize; 3]) -> [usize; 3] {
    std::array::from_fn(|a| shape[a].div_ceil(chunk[a].max(1)))
}
