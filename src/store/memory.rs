//! A volume held in memory, behind the same interface as the file back ends.
//!
//! Used for imagettes and small images that tools build themselves (tests, 2D images,
//! deformed outputs checked in memory), so that they read through the same code path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use super::dtype::{DType, TypedBuf};
use super::source::{chunk_extent, VolumeSource};

/// Source used by tests and by tools that already hold a small array in memory.
pub struct MemorySource {
    pub path: PathBuf,
    pub shape: [usize; 3],
    pub chunk: [usize; 3],
    pub data: Arc<Vec<f32>>,
}

impl VolumeSource for MemorySource {
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn chunk_shape(&self) -> [usize; 3] {
        self.chunk
    }
    fn dtype(&self) -> DType {
        DType::F32
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn read_chunk(&self, idx: [usize; 3]) -> Result<(Vec<f32>, u64)> {
        let mut out = Vec::new();
        let n = self.fill_chunk(idx, &mut out);
        Ok((out, n))
    }
    fn read_chunk_into(&self, idx: [usize; 3], buf: Option<TypedBuf>) -> Result<(TypedBuf, u64)> {
        let mut out = match buf {
            Some(TypedBuf::F32(v)) => v,
            _ => Vec::new(),
        };
        let n = self.fill_chunk(idx, &mut out);
        Ok((TypedBuf::F32(out), n))
    }
}

impl MemorySource {
    /// Replaces `out` with chunk `idx`'s values; returns their bytes.
    fn fill_chunk(&self, idx: [usize; 3], out: &mut Vec<f32>) -> u64 {
        let ext = chunk_extent(self.shape, self.chunk, idx);
        out.clear();
        out.reserve(ext[0].len() * ext[1].len() * ext[2].len());
        for z in ext[0].clone() {
            for y in ext[1].clone() {
                let o = (z * self.shape[1] + y) * self.shape[2];
                out.extend_from_slice(&self.data[o + ext[2].start..o + ext[2].end]);
            }
        }
        out.len() as u64 * 4
    }
}
