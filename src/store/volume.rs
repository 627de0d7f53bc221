//! The one way every tool reads voxels: a [`Volume`] read a box at a time.
//!
//! A volume is a [`VolumeSource`] (a Zarr array, a TIFF file, a folder of slices, or a binned
//! view of another volume) whose chunks pass through the shared byte-bounded [`ChunkCache`].
//! Reading a box touches only the chunks it overlaps, so memory depends on the box and the
//! cache budget, never on the size of the volume. Parts of a box outside the volume come
//! back as NaN, so callers can tell "outside" from "zero" without special cases.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ndarray::{s, Array3, ArrayViewMut3};

use super::cache::{Chunk, ChunkCache};
use super::voxel_size::VoxelSize;
use super::dtype::DType;

pub use super::source::{check_chunk_shape, check_memory, check_shape, chunk_extent, chunk_grid, VolumeSource, MAX_CHUNK_VOXELS, MAX_VOXELS};

/// A volume read through the shared chunk cache.
#[derive(Clone)]
pub struct Volume {
    source: Arc<dyn VolumeSource>,
    cache: Arc<ChunkCache>,
    id: u64,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Volume({}, {:?} {})", self.path().display(), self.shape(), self.dtype())
    }
}

impl Volume {
    /// Opens a second image or a mask that must have image 1's shape (`what` names it in
    /// errors).
    pub fn open_matching(path: &Path, cache: &Arc<ChunkCache>, shape: [usize; 3], what: &str) -> Result<Volume> {
        let v = Volume::open(path, cache.clone())?;
        if v.shape() != shape {
            anyhow::bail!("{}: {what} shape {:?} differs from image 1 {:?}", path.display(), v.shape(), shape);
        }
        Ok(v)
    }

    pub fn new(source: Arc<dyn VolumeSource>, cache: Arc<ChunkCache>) -> Volume {
        let id = cache.register_volume();
        Volume { source, cache, id }
    }

    /// Opens a TIFF file, a folder of 2D TIFF slices, a Zarr array or an OME-Zarr group
    /// (its full-resolution level).
    pub fn open(path: &Path, cache: Arc<ChunkCache>) -> Result<Volume> {
        let source = open_source(path)?;
        Ok(Volume::new(source, cache))
    }

    pub fn shape(&self) -> [usize; 3] {
        self.source.shape()
    }
    pub fn chunk_shape(&self) -> [usize; 3] {
        self.source.chunk_shape()
    }
    pub fn dtype(&self) -> DType {
        self.source.dtype()
    }
    pub fn path(&self) -> &Path {
        self.source.path()
    }
    pub fn bin(&self) -> usize {
        self.source.bin()
    }
    /// The physical size of a voxel, when the file says (ImageJ or OME-TIFF metadata, an
    /// OME-Zarr scale with its unit).
    pub fn voxel_size(&self) -> Option<VoxelSize> {
        self.source.voxel_size()
    }
    /// The back end this volume reads (for the layers built on a volume, such as binning).
    pub(super) fn source(&self) -> &Arc<dyn VolumeSource> {
        &self.source
    }
    pub fn cache(&self) -> &Arc<ChunkCache> {
        &self.cache
    }
    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bin factors of the pyramid levels the store holds (1 first).
    pub fn stored_levels(&self) -> Vec<usize> {
        self.source.stored_bins()
    }

    /// The id this volume's chunks carry in the cache.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// One chunk through the cache, in its stored type.
    pub fn stored_chunk(&self, idx: [usize; 3]) -> Result<Chunk> {
        let key = [idx[0] as u32, idx[1] as u32, idx[2] as u32];
        let src = &self.source;
        self.cache
            .get_or_load_into(self.id, key, Some(held_dtype(self.dtype())), |buf| src.read_chunk_into(idx, buf))
            .with_context(|| format!("{}: reading chunk {:?}", src.path().display(), idx))
    }

    /// One chunk through the cache, as f32 values (clipped to the volume, Z-major).
    pub fn chunk(&self, idx: [usize; 3]) -> Result<Vec<f32>> {
        Ok(self.stored_chunk(idx)?.to_f32_vec())
    }

    /// Bytes chunk `idx` costs the cache budget.
    pub fn chunk_bytes(&self, idx: [usize; 3]) -> u64 {
        let e = chunk_extent(self.shape(), self.chunk_shape(), idx);
        (e.iter().map(|r| r.len()).product::<usize>() * held_dtype(self.dtype()).size()) as u64
    }

    /// Reads the box `[z0,z1) × [y0,y1) × [x0,x1)` as f32; voxels outside the volume are NaN.
    pub fn read_box(&self, z: Range<i64>, y: Range<i64>, x: Range<i64>) -> Result<Array3<f32>> {
        let dims = [
            (z.end - z.start).max(0) as usize,
            (y.end - y.start).max(0) as usize,
            (x.end - x.start).max(0) as usize,
        ];
        let mut out = Array3::<f32>::from_elem(dims, f32::NAN);
        self.read_box_into([z.start, y.start, x.start], &mut out.view_mut())?;
        Ok(out)
    }

    /// Fills `out` with the box starting at `origin` (its shape gives the box size). Voxels
    /// outside the volume are set to NaN. Reuse `out` between calls to avoid allocations.
    pub fn read_box_into(&self, origin: [i64; 3], out: &mut ArrayViewMut3<f32>) -> Result<()> {
        let shape = self.shape();
        let dims = out.dim();
        let dims = [dims.0, dims.1, dims.2];
        // Intersection of the box with the volume, in volume coordinates.
        let lo: [i64; 3] = std::array::from_fn(|a| origin[a].max(0));
        let hi: [i64; 3] = std::array::from_fn(|a| (origin[a] + dims[a] as i64).min(shape[a] as i64));
        if (0..3).any(|a| lo[a] >= hi[a]) {
            out.fill(f32::NAN);
            return Ok(());
        }
        let inside = (0..3).all(|a| lo[a] == origin[a] && hi[a] == origin[a] + dims[a] as i64);
        if !inside {
            out.fill(f32::NAN);
        }
        let cs = self.chunk_shape();
        let c_lo: [usize; 3] = std::array::from_fn(|a| lo[a] as usize / cs[a]);
        let c_hi: [usize; 3] = std::array::from_fn(|a| (hi[a] as usize - 1) / cs[a]);
        let mut tmp: Vec<f32> = Vec::new();
        for cz in c_lo[0]..=c_hi[0] {
            for cy in c_lo[1]..=c_hi[1] {
                for cx in c_lo[2]..=c_hi[2] {
                    let idx = [cz, cy, cx];
                    let ext = chunk_extent(shape, cs, idx);
                    let chunk = self.stored_chunk(idx)?;
                    let ce = [ext[0].len(), ext[1].len(), ext[2].len()];
                    if chunk.len() != ce[0] * ce[1] * ce[2] {
                        bail!(
                            "{}: chunk {:?} decoded to {} values, expected {}",
                            self.path().display(),
                            idx,
                            chunk.len(),
                            ce[0] * ce[1] * ce[2]
                        );
                    }
                    // Overlap of this chunk with the wanted box, in volume coordinates.
                    let a0: [usize; 3] = std::array::from_fn(|a| (ext[a].start as i64).max(lo[a]) as usize);
                    let a1: [usize; 3] = std::array::from_fn(|a| (ext[a].end as i64).min(hi[a]) as usize);
                    let w = a1[2] - a0[2];
                    if let Some(dst) = out.as_slice_mut() {
                        // A standard-layout box (every window buffer): rows copied by offset,
                        // without building a view per row.
                        for zz in a0[0]..a1[0] {
                            for yy in a0[1]..a1[1] {
                                let src_off = ((zz - ext[0].start) * ce[1] + (yy - ext[1].start)) * ce[2] + (a0[2] - ext[2].start);
                                let o = (((zz as i64 - origin[0]) as usize) * dims[1] + (yy as i64 - origin[1]) as usize) * dims[2] + (a0[2] as i64 - origin[2]) as usize;
                                chunk.copy_f32(src_off, &mut dst[o..o + w]);
                            }
                        }
                        continue;
                    }
                    for zz in a0[0]..a1[0] {
                        for yy in a0[1]..a1[1] {
                            let src_off = ((zz - ext[0].start) * ce[1] + (yy - ext[1].start)) * ce[2]
                                + (a0[2] - ext[2].start);
                            let oz = (zz as i64 - origin[0]) as usize;
                            let oy = (yy as i64 - origin[1]) as usize;
                            let ox = (a0[2] as i64 - origin[2]) as usize;
                            let mut row = out.slice_mut(s![oz, oy, ox..ox + w]);
                            if let Some(dst) = row.as_slice_mut() {
                                chunk.copy_f32(src_off, dst);
                            } else {
                                // A strided view: converted through a row buffer.
                                tmp.resize(w, 0.0);
                                chunk.copy_f32(src_off, &mut tmp[..w]);
                                row.iter_mut().zip(&tmp[..w]).for_each(|(d, v)| *d = *v);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The whole volume (only for small volumes: tests, 2D images, imagettes).
    pub fn read_all(&self) -> Result<Array3<f32>> {
        let s = self.shape();
        self.read_box(0..s[0] as i64, 0..s[1] as i64, 0..s[2] as i64)
    }
}

/// The type the cache holds chunks of a volume stored as `d` in: float64 as float32.
fn held_dtype(d: DType) -> DType {
    match d {
        DType::F64 => DType::F32,
        d => d,
    }
}

/// What kind of input a path holds, decided from the file system and magic bytes.
pub fn open_source(path: &Path) -> Result<Arc<dyn VolumeSource>> {
    if super::remote::is_remote(path) {
        return super::zarr::open_zarr_source(path);
    }
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    if path.is_dir() {
        if super::zarr::is_zarr(path) {
            return super::zarr::open_zarr_source(path);
        }
        return Ok(Arc::new(super::tiff::TiffSlicesSource::open(path)?));
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let n = f.read(&mut magic).with_context(|| format!("{}: cannot read", path.display()))?;
        if n < 4 {
            bail!("{}: not a TIFF file (only {} bytes)", path.display(), n);
        }
    }
    if super::tiff::is_tiff_magic(&magic) {
        return Ok(Arc::new(super::tiff::TiffSource::open(path)?));
    }
    if path.file_name().is_some_and(|n| n == "zarr.json" || n == ".zarray") {
        if let Some(parent) = path.parent() {
            return super::zarr::open_zarr_source(parent);
        }
    }
    bail!("{}: not a TIFF file or a Zarr store", path.display())
}
