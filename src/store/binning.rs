//! Binning as spam bins, and binned views of volumes.
//!
//! spam's `binning(im, b)` keeps `N // b` voxels per axis, drops `(N mod b) // 2` voxels at the
//! start of each axis, and averages each b³ block: an f32 mean for float images and an
//! integer (floor) mean for uint8/uint16 images, so a binned uint16 image stays integer.
//! (spam returns zeros for other integer types; we floor-mean them too: see
//! docs/spam-differences.md.) Pyramid levels written by tiff2zarr and the on-the-fly
//! [`BinnedSource`] both use these rules, so multiscale registration sees the same images
//! whether or not the store has a pyramid.

use std::path::Path;

use anyhow::Result;

use super::dtype::DType;
use super::volume::{chunk_extent, Volume, VolumeSource};

/// Shape of an image of shape `n` binned by `b`.
pub fn binned_shape(n: [usize; 3], b: usize) -> [usize; 3] {
    std::array::from_fn(|a| n[a] / b)
}

/// Voxels dropped at the start of each axis when binning by `b`.
pub fn binning_top(n: [usize; 3], b: usize) -> [usize; 3] {
    std::array::from_fn(|a| (n[a] % b) / 2)
}

/// The mean of a block with the given exact sum, in the rules of `dtype`.
#[inline]
pub fn block_mean(sum: f64, count: usize, dtype: DType) -> f64 {
    let m = sum / count as f64;
    if dtype.is_integer() {
        m.floor()
    } else {
        (m as f32) as f64
    }
}

/// A volume binned by `bin`, computed from its full-resolution volume box by box.
pub struct BinnedSource {
    base: Volume,
    bin: usize,
    shape: [usize; 3],
    top: [usize; 3],
    chunk: [usize; 3],
}

impl BinnedSource {
    pub fn new(base: Volume, bin: usize) -> BinnedSource {
        let n = base.shape();
        let shape = binned_shape(n, bin);
        let top = binning_top(n, bin);
        let c = (64 / bin).max(4);
        let chunk = std::array::from_fn(|a| c.min(shape[a]).max(1));
        BinnedSource { base, bin, shape, top, chunk }
    }
}

impl VolumeSource for BinnedSource {
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn chunk_shape(&self) -> [usize; 3] {
        self.chunk
    }
    fn dtype(&self) -> DType {
        self.base.dtype()
    }
    fn path(&self) -> &Path {
        self.base.path()
    }
    fn bin(&self) -> usize {
        self.bin * self.base.bin()
    }
    fn read_chunk(&self, idx: [usize; 3]) -> Result<(Vec<f32>, u64)> {
        let b = self.bin;
        let ext = chunk_extent(self.shape, self.chunk, idx);
        let e = [ext[0].len(), ext[1].len(), ext[2].len()];
        let o: [i64; 3] = std::array::from_fn(|a| (self.top[a] + ext[a].start * b) as i64);
        let full = self.base.read_box(
            o[0]..o[0] + (e[0] * b) as i64,
            o[1]..o[1] + (e[1] * b) as i64,
            o[2]..o[2] + (e[2] * b) as i64,
        )?;
        let dtype = self.base.dtype();
        let mut sums = vec![0f64; e[0] * e[1] * e[2]];
        for ((z, y, x), &v) in full.indexed_iter() {
            sums[((z / b) * e[1] + y / b) * e[2] + x / b] += v as f64;
        }
        let count = b * b * b;
        let out: Vec<f32> = sums.iter().map(|&s| block_mean(s, count, dtype) as f32).collect();
        Ok((out, 0))
    }
}

/// A mask binned as spam bins masks: the mask is turned into 0/100, binned with the integer
/// floor mean and kept where > 0, i.e. a binned voxel is in when at least ⌈b³/100⌉ of its
/// voxels are. Values are 1 (in) or 0 (out).
pub struct MaskBinnedSource {
    base: Volume,
    bin: usize,
    shape: [usize; 3],
    top: [usize; 3],
    chunk: [usize; 3],
}

impl MaskBinnedSource {
    pub fn new(base: Volume, bin: usize) -> MaskBinnedSource {
        let n = base.shape();
        let shape = binned_shape(n, bin);
        let c = (64 / bin).max(4);
        MaskBinnedSource { top: binning_top(n, bin), chunk: std::array::from_fn(|a| c.min(shape[a]).max(1)), base, bin, shape }
    }
}

impl VolumeSource for MaskBinnedSource {
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn chunk_shape(&self) -> [usize; 3] {
        self.chunk
    }
    fn dtype(&self) -> DType {
        DType::U8
    }
    fn path(&self) -> &Path {
        self.base.path()
    }
    fn bin(&self) -> usize {
        self.bin
    }
    fn read_chunk(&self, idx: [usize; 3]) -> Result<(Vec<f32>, u64)> {
        let b = self.bin;
        let ext = chunk_extent(self.shape, self.chunk, idx);
        let e = [ext[0].len(), ext[1].len(), ext[2].len()];
        let o: [i64; 3] = std::array::from_fn(|a| (self.top[a] + ext[a].start * b) as i64);
        let full = self.base.read_box(o[0]..o[0] + (e[0] * b) as i64, o[1]..o[1] + (e[1] * b) as i64, o[2]..o[2] + (e[2] * b) as i64)?;
        let mut counts = vec![0usize; e[0] * e[1] * e[2]];
        for ((z, y, x), &v) in full.indexed_iter() {
            if v != 0.0 && !v.is_nan() {
                counts[((z / b) * e[1] + y / b) * e[2] + x / b] += 1;
            }
        }
        let need = (b * b * b).div_ceil(100);
        Ok((counts.iter().map(|&c| if c >= need { 1.0 } else { 0.0 }).collect(), 0))
    }
}
