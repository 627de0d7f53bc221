//! `dvc-stream stats VOLUME`: what a volume is and its grey levels, read box by box.
//!
//! Useful to choose `-glt/-ght` thresholds, and a check that a volume of any size can be
//! read with flat memory (`--cache-bytes`, `--stats`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use rayon::prelude::*;

use super::ReadOpts;
use crate::store::volume::{chunk_extent, chunk_grid, Volume};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A TIFF, a folder of slices, a Zarr array or an OME-Zarr store.
    pub volume: PathBuf,
    /// Pyramid level to read, as a bin factor (1, 2, 4 ...).
    #[arg(long, default_value_t = 1, value_parser = super::values::power_of_two)]
    pub bin: usize,
    #[command(flatten)]
    pub read: ReadOpts,
}

/// Grey-level summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct GreyStats {
    pub count: u64,
    pub nan: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl GreyStats {
    fn merge(mut self, o: GreyStats) -> GreyStats {
        if o.count > 0 {
            if self.count == 0 {
                self.min = o.min;
                self.max = o.max;
            } else {
                self.min = self.min.min(o.min);
                self.max = self.max.max(o.max);
            }
        }
        self.count += o.count;
        self.nan += o.nan;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self
    }
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
    pub fn std(&self) -> f64 {
        (self.sum_sq / self.count as f64 - self.mean().powi(2)).max(0.0).sqrt()
    }
}

/// Reads the whole volume one chunk-aligned box at a time, in parallel.
pub fn grey_stats(vol: &Volume, progress: bool) -> Result<GreyStats> {
    let shape = vol.shape();
    let block = vol.chunk_shape();
    let grid = chunk_grid(shape, block);
    let idx: Vec<[usize; 3]> = (0..grid[0])
        .flat_map(|z| (0..grid[1]).flat_map(move |y| (0..grid[2]).map(move |x| [z, y, x])))
        .collect();
    let bar = crate::progress::bar(idx.len() as u64, "reading", progress);
    let s = idx
        .par_iter()
        // One box buffer per worker, reused for every chunk it reads.
        .map_init(Vec::<f32>::new, |buf, &i| -> Result<GreyStats> {
            let e = chunk_extent(shape, block, i);
            let dims = (e[0].len(), e[1].len(), e[2].len());
            buf.resize(dims.0 * dims.1 * dims.2, 0.0);
            let mut view = ndarray::ArrayViewMut3::from_shape(dims, &mut buf[..]).expect("buffer sized to the box");
            vol.read_box_into([e[0].start as i64, e[1].start as i64, e[2].start as i64], &mut view)?;
            let b = view;
            let mut g = GreyStats { min: f64::INFINITY, max: f64::NEG_INFINITY, ..Default::default() };
            for &v in b.iter() {
                if v.is_nan() {
                    g.nan += 1;
                    continue;
                }
                let v = v as f64;
                g.count += 1;
                g.min = g.min.min(v);
                g.max = g.max.max(v);
                g.sum += v;
                g.sum_sq += v * v;
            }
            bar.inc(1);
            Ok(g)
        })
        .try_reduce(GreyStats::default, |a, b| Ok(a.merge(b)))?;
    bar.finish_and_clear();
    Ok(s)
}

/// The statistics are the output, on stdout; no summary line.
pub fn run(a: StatsArgs) -> Result<super::Summary> {
    a.read.threads();
    let cache = a.read.cache()?;
    let full = Volume::open(&a.volume, cache.clone())?;
    let vol = full.level(a.bin)?;
    let shape = vol.shape();
    println!("volume: {}", a.volume.display());
    println!("shape (Z Y X): {} {} {}", shape[0], shape[1], shape[2]);
    println!("dtype: {}", vol.dtype());
    let c = vol.chunk_shape();
    println!("chunk (Z Y X): {} {} {}", c[0], c[1], c[2]);
    println!("bin: {}", vol.bin());
    let levels = full.stored_levels();
    println!("levels (bin factors stored): {}", levels.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(" "));
    match vol.voxel_size() {
        Some(v) => println!("voxel size (Z Y X): {}", v.describe()),
        None => println!("voxel size: not recorded"),
    }
    let g = grey_stats(&vol, a.read.progress())?;
    println!("min: {}", g.min);
    println!("max: {}", g.max);
    println!("mean: {:.6}", g.mean());
    println!("std: {:.6}", g.std());
    a.read.report(&cache);
    Ok(None)
}
