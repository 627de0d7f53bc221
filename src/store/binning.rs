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
use super::source::{chunk_extent, VolumeSource};
use super::volume::Volume;

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

/// spam's binned masks: the mask is turned into 0/100, binned with the integer floor mean and
/// kept where > 0, so a binned voxel is in when at least this many of its `count` voxels are.
pub fn mask_votes_needed(count: usize) -> usize {
    count.div_ceil(100)
}

/// How a binned voxel is made from its b³ block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinRule {
    /// spam's `binning`: the block mean (floor for integer types).
    Mean,
    /// spam's binned masks: the mask is turned into 0/100, binned with the integer floor mean
    /// and kept where > 0, i.e. a voxel is in (1) when at least ⌈b³/100⌉ of its block is.
    Mask,
}

/// A volume binned by `bin`, computed from its full-resolution volume box by box.
pub struct BinnedSource {
    base: Volume,
    bin: usize,
    shape: [usize; 3],
    top: [usize; 3],
    chunk: [usize; 3],
    rule: BinRule,
}

impl BinnedSource {
    /// Grey levels binned as spam bins images.
    pub fn new(base: Volume, bin: usize) -> BinnedSource {
        Self::with_rule(base, bin, BinRule::Mean)
    }

    /// A mask binned as spam bins masks (values 1 = in, 0 = out).
    pub fn mask(base: Volume, bin: usize) -> BinnedSource {
        Self::with_rule(base, bin, BinRule::Mask)
    }

    fn with_rule(base: Volume, bin: usize, rule: BinRule) -> BinnedSource {
        let n = base.shape();
        let shape = binned_shape(n, bin);
        let c = (64 / bin).max(4);
        BinnedSource { top: binning_top(n, bin), chunk: std::array::from_fn(|a| c.min(shape[a]).max(1)), base, bin, shape, rule }
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
        match self.rule {
            BinRule::Mean => self.base.dtype(),
            BinRule::Mask => DType::U8,
        }
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
        let mask = self.rule == BinRule::Mask;
        let mut sums = vec![0f64; e[0] * e[1] * e[2]];
        for ((z, y, x), &v) in full.indexed_iter() {
            let add = if mask { f64::from(u8::from(v != 0.0 && !v.is_nan())) } else { v as f64 };
            sums[((z / b) * e[1] + y / b) * e[2] + x / b] += add;
        }
        let count = b * b * b;
        let out: Vec<f32> = match self.rule {
            BinRule::Mean => {
                let dtype = self.base.dtype();
                sums.iter().map(|&s| block_mean(s, count, dtype) as f32).collect()
            }
            BinRule::Mask => {
                let need = mask_votes_needed(count) as f64;
                sums.iter().map(|&s| if s >= need { 1.0 } else { 0.0 }).collect()
            }
        };
        Ok((out, 0))
    }
}

/// Pyramid levels: a stored one, or this module's binning on the fly.
impl Volume {
    /// The volume binned by `bin` (a power of two): a stored pyramid level when the store
    /// has one, otherwise spam's binning computed on the fly from this volume, box by box.
    pub fn level(&self, bin: usize) -> Result<Volume> {
        if bin == 1 {
            return Ok(self.clone());
        }
        if let Some(src) = self.source().level(bin)? {
            return Ok(Volume::new(src, self.cache().clone()));
        }
        Ok(Volume::new(std::sync::Arc::new(BinnedSource::new(self.clone(), bin)), self.cache().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemorySource;
    use crate::store::ChunkCache;
    use std::sync::Arc;

    fn volume(n: usize, on: &[[usize; 3]]) -> Volume {
        let mut data = vec![0f32; n * n * n];
        for p in on {
            data[(p[0] * n + p[1]) * n + p[2]] = 1.0;
        }
        let src = MemorySource { path: "m".into(), shape: [n; 3], chunk: [n; 3], data: Arc::new(data) };
        Volume::new(Arc::new(src), ChunkCache::new(1 << 20))
    }

    #[test]
    fn masks_bin_as_spam_bins_them() {
        // bin 4: one voxel of 64 is enough (⌈64/100⌉ = 1).
        let m = volume(8, &[[5, 6, 7]]);
        let b = Volume::new(Arc::new(BinnedSource::mask(m, 4)), ChunkCache::new(1 << 20)).read_all().unwrap();
        assert_eq!(b.iter().filter(|v| **v == 1.0).count(), 1);
        assert_eq!(b[[1, 1, 1]], 1.0);
        // bin 8: ⌈512/100⌉ = 6 voxels are needed.
        let five: Vec<[usize; 3]> = (0..5).map(|i| [i, 0, 0]).collect();
        let six: Vec<[usize; 3]> = (0..6).map(|i| [i, 0, 0]).collect();
        for (on, want) in [(five, 0.0), (six, 1.0)] {
            let b = Volume::new(Arc::new(BinnedSource::mask(volume(8, &on), 8)), ChunkCache::new(1 << 20)).read_all().unwrap();
            assert_eq!(b[[0, 0, 0]], want);
        }
    }
}
