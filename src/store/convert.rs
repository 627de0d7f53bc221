//! Streaming conversion between TIFF stacks and chunked Zarr stores (tiff2zarr, zarr2tiff).
//!
//! tiff2zarr reads one slab of pages (one write-block deep) at a time, writes the slab's
//! blocks in parallel, and feeds the same pages to one accumulator per pyramid level, so
//! each level is spam's binning of the full-resolution image by 2^k, computed in a single
//! pass and never holding more than about two slabs. The store is an output of an
//! [`OutputSet`]: checked (never an input, never a folder that is not a store) before the
//! input is read, written under `OUT.partial`, and swapped in when complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde_json::{json, Map};

use super::binning::{binned_shape, binning_top, block_mean};
use super::dtype::{DType, TypedBuf};
use super::output::{Existing, OutputSet};
use super::tiff::PageInput;
use super::voxel_size::VoxelSize;
use super::tiff_write::TiffStackWriter;
use super::volume::{chunk_extent, chunk_grid};
use super::zarr::{write_multiscale_group, ArrayLayout, ArrayWriter, ImageMeta, NativeReader};

/// Options of tiff2zarr.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub layout: ArrayLayout,
    /// Number of levels including full resolution; `None` = down to about 64³.
    pub levels: Option<usize>,
    /// The voxel size to record; `None` = what the TIFF's metadata says (ImageJ, OME-TIFF),
    /// or none.
    pub voxel_size: Option<VoxelSize>,
    /// The input is a segmentation: write an OME-Zarr image-label (nearest-neighbour levels).
    pub labels: bool,
    pub overwrite: bool,
    pub progress: bool,
}

/// What a conversion did.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    pub output: PathBuf,
    pub shape: [usize; 3],
    pub dtype: DType,
    pub levels: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Default number of levels: halve until the largest axis is about 64 (at least 1 level).
pub fn default_levels(shape: [usize; 3]) -> usize {
    let mut n = 1;
    let mut b = 2;
    while shape.iter().all(|&s| s / b >= 1) && shape.iter().copied().max().unwrap_or(0) / b >= 64 {
        n += 1;
        b *= 2;
    }
    n
}

/// Copies the sub-box `ext` (relative to the slab, which holds `sd` full planes) into a buffer.
fn extract_block(slab: &TypedBuf, sd: [usize; 3], ext: &[std::ops::Range<usize>; 3]) -> TypedBuf {
    macro_rules! ex {
        ($v:expr, $var:ident) => {{
            let mut out = Vec::with_capacity(ext[0].len() * ext[1].len() * ext[2].len());
            for z in ext[0].clone() {
                for y in ext[1].clone() {
                    let o = (z * sd[1] + y) * sd[2];
                    out.extend_from_slice(&$v[o + ext[2].start..o + ext[2].end]);
                }
            }
            TypedBuf::$var(out)
        }};
    }
    match slab {
        TypedBuf::U8(v) => ex!(v, U8),
        TypedBuf::U16(v) => ex!(v, U16),
        TypedBuf::I16(v) => ex!(v, I16),
        TypedBuf::U32(v) => ex!(v, U32),
        TypedBuf::F32(v) => ex!(v, F32),
        TypedBuf::F64(v) => ex!(v, F64),
    }
}

/// Writes every block of a slab of planes starting at block row `bz` of `writer`.
fn write_slab(writer: &ArrayWriter, bz: usize, slab: &TypedBuf) -> Result<()> {
    let shape = writer.shape();
    let block = writer.block();
    let grid = chunk_grid(shape, block);
    let z_ext = chunk_extent(shape, block, [bz, 0, 0])[0].clone();
    let sd = [z_ext.len(), shape[1], shape[2]];
    let blocks: Vec<[usize; 2]> = (0..grid[1]).flat_map(|by| (0..grid[2]).map(move |bx| [by, bx])).collect();
    blocks.par_iter().try_for_each(|&[by, bx]| {
        let ext = chunk_extent(shape, block, [bz, by, bx]);
        let rel = [0..sd[0], ext[1].clone(), ext[2].clone()];
        writer.write_block([bz, by, bx], &extract_block(slab, sd, &rel))
    })
}

/// One pyramid level being accumulated from full-resolution pages.
struct LevelAccumulator {
    bin: usize,
    top: [usize; 3],
    shape: [usize; 3],
    /// Exact block sums of the plane being built (f64 holds integer sums exactly).
    plane_sums: Vec<f64>,
    pages_in: usize,
    /// Finished planes of the current block row, as block means.
    slab: Vec<f32>,
    /// Labels: each block's voxel at offset `bin / 2` is taken (nearest neighbour), not the mean.
    nearest: bool,
    planes_done: usize,
    block_row: usize,
    writer: ArrayWriter,
}

/// Adds the binned-in-(y, x) sums of one page to `acc`.
fn add_rows<T: Copy + Into<f64>>(page: &[T], nx: usize, top: [usize; 3], s: [usize; 3], b: usize, acc: &mut [f64]) {
    for yb in 0..s[1] {
        let out = &mut acc[yb * s[2]..(yb + 1) * s[2]];
        for dy in 0..b {
            let y = top[1] + yb * b + dy;
            let row = &page[y * nx + top[2]..y * nx + top[2] + s[2] * b];
            for (o, block) in out.iter_mut().zip(row.chunks_exact(b)) {
                *o += block.iter().map(|&v| v.into()).sum::<f64>();
            }
        }
    }
}

/// The voxel at offset `b / 2` of each block of one page, into `acc` (labels' levels).
fn pick_rows<T: Copy + Into<f64>>(page: &[T], nx: usize, top: [usize; 3], s: [usize; 3], b: usize, acc: &mut [f64]) {
    for yb in 0..s[1] {
        let y = top[1] + yb * b + b / 2;
        for xb in 0..s[2] {
            acc[yb * s[2] + xb] = page[y * nx + top[2] + xb * b + b / 2].into();
        }
    }
}

impl LevelAccumulator {
    fn add_page(&mut self, z: usize, slab: &TypedBuf, p: usize, plane: usize, nx: usize) -> Result<()> {
        let b = self.bin;
        if z < self.top[0] || z >= self.top[0] + self.shape[0] * b {
            return Ok(());
        }
        let r = p * plane..(p + 1) * plane;
        let (t, s) = (self.top, self.shape);
        // Labels take one page of every `b` (the block's middle), grey levels sum them all.
        if !self.nearest || (z - self.top[0]) % b == b / 2 {
            let (nearest, acc) = (self.nearest, &mut self.plane_sums);
            macro_rules! rows {
                ($v:expr) => {
                    if nearest {
                        pick_rows(&$v[r], nx, t, s, b, acc)
                    } else {
                        add_rows(&$v[r], nx, t, s, b, acc)
                    }
                };
            }
            match slab {
                TypedBuf::U8(v) => rows!(v),
                TypedBuf::U16(v) => rows!(v),
                TypedBuf::I16(v) => rows!(v),
                TypedBuf::U32(v) => rows!(v),
                TypedBuf::F32(v) => rows!(v),
                TypedBuf::F64(v) => rows!(v),
            }
        }
        self.pages_in += 1;
        if self.pages_in == b {
            let dtype = self.writer.dtype();
            let n = b * b * b;
            let nearest = self.nearest;
            self.slab.extend(self.plane_sums.iter().map(|&v| if nearest { v as f32 } else { block_mean(v, n, dtype) as f32 }));
            self.plane_sums.iter_mut().for_each(|v| *v = 0.0);
            self.pages_in = 0;
            self.planes_done += 1;
            let depth = self.writer.block()[0];
            if self.planes_done.is_multiple_of(depth) || self.planes_done == self.shape[0] {
                // Means of integer data are integers below 2^24 for every supported integer
                // type but uint32; f32 holds those exactly.
                let typed = TypedBuf::from_f32(dtype, &self.slab);
                write_slab(&self.writer, self.block_row, &typed)?;
                self.block_row += 1;
                self.slab.clear();
            }
        }
        Ok(())
    }
}

/// Writes a volume that arrives as slabs of whole planes, in order, into an OME-Zarr
/// multiscale group: level 0 block by block, and every pyramid level through its own
/// accumulator. Used by tiff2zarr, synth and deform-image.
pub struct PyramidWriter {
    level0: ArrayWriter,
    accs: Vec<LevelAccumulator>,
    shape: [usize; 3],
    next_z: usize,
    block_row: usize,
}

impl PyramidWriter {
    /// Creates the group and its arrays under `root` (which must exist).
    pub fn create(root: &Path, meta: &ImageMeta, shape: [usize; 3], dtype: DType, layout: &ArrayLayout, levels: usize) -> Result<PyramidWriter> {
        if levels == 0 {
            bail!("--levels must be at least 1");
        }
        let max_bin = 1usize << (levels - 1);
        if shape.iter().any(|&s| s / max_bin == 0) {
            bail!("{levels} levels would bin the {:?} volume to nothing", shape);
        }
        let level_info: Vec<(usize, [usize; 3])> = (0..levels).map(|k| (1 << k, binning_top(shape, 1 << k))).collect();
        write_multiscale_group(root, meta, &level_info)?;
        let layout_for = |s: [usize; 3]| ArrayLayout { chunk: std::array::from_fn(|a| layout.chunk[a].min(s[a]).max(1)), ..*layout };
        let level0 = ArrayWriter::create(root, "/0", shape, dtype, &layout_for(shape), Map::new())?;
        let mut accs = Vec::new();
        for k in 1..levels {
            let b = 1 << k;
            let s = binned_shape(shape, b);
            let writer = ArrayWriter::create(root, &format!("/{k}"), s, dtype, &layout_for(s), Map::new())?;
            accs.push(LevelAccumulator {
                bin: b,
                top: binning_top(shape, b),
                shape: s,
                plane_sums: vec![0.0; s[1] * s[2]],
                pages_in: 0,
                slab: Vec::new(),
                nearest: meta.labels,
                planes_done: 0,
                block_row: 0,
                writer,
            });
        }
        Ok(PyramidWriter { level0, accs, shape, next_z: 0, block_row: 0 })
    }

    /// Planes per write block of level 0: slabs of this depth are written without buffering.
    pub fn slab_depth(&self) -> usize {
        self.level0.block()[0]
    }

    /// Appends the planes in `slab`, the next ones in Z order: exactly [`slab_depth`](Self::slab_depth)
    /// planes, fewer only for the last slab.
    pub fn write_planes(&mut self, slab: TypedBuf) -> Result<()> {
        let plane = self.shape[1] * self.shape[2];
        let depth = self.slab_depth();
        if !slab.len().is_multiple_of(plane) {
            bail!("internal: slab is not a whole number of planes");
        }
        let n = slab.len() / plane;
        let z0 = self.next_z;
        self.next_z += n;
        if self.next_z > self.shape[0] || (n != depth && self.next_z != self.shape[0]) {
            bail!("internal: slab of {n} planes at z={z0} does not fit the {depth}-plane blocks");
        }
        let shape = self.shape;
        let (level0, accs, row) = (&self.level0, &mut self.accs, self.block_row);
        let (r0, r1) = rayon::join(
            || write_slab(level0, row, &slab),
            || {
                accs.par_iter_mut().try_for_each(|acc| {
                    for p in 0..n {
                        acc.add_page(z0 + p, &slab, p, plane, shape[2])?;
                    }
                    Ok::<(), anyhow::Error>(())
                })
            },
        );
        r0?;
        r1?;
        self.block_row += 1;
        Ok(())
    }

    /// Checks that every plane arrived.
    pub fn finish(self) -> Result<()> {
        if self.next_z != self.shape[0] {
            bail!("internal: {} of {} planes written", self.next_z, self.shape[0]);
        }
        Ok(())
    }
}

/// Converts a 3D TIFF (or a folder of slices) to an OME-Zarr multiscale store.
pub fn tiff_to_zarr(input: &Path, output: &Path, opts: &ConvertOptions) -> Result<ConvertReport> {
    let t0 = Instant::now();
    let mut outs = OutputSet::new(Existing::overwrite_if(opts.overwrite));
    outs.inputs([input]);
    let root = outs.store(output)?;
    let src = PageInput::open(input)?;
    let shape = src.shape();
    let dtype = src.dtype();
    if shape[0] < 2 {
        bail!("{}: is 2D (a single page of {}x{}); tiff2zarr needs a 3D stack", input.display(), shape[2], shape[1]);
    }
    let levels = opts.levels.unwrap_or_else(|| default_levels(shape));
    std::fs::create_dir_all(&root).map_err(|e| anyhow::anyhow!("{}: cannot create ({e})", root.display()))?;
    let mut extra = Map::new();
    extra.insert("source".into(), json!(input.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()));
    extra.insert("tool".into(), json!(format!("tiff2zarr {}", env!("CARGO_PKG_VERSION"))));
    let meta = ImageMeta {
        name: input.file_stem().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        voxel_size: opts.voxel_size.clone().or_else(|| src.voxel_size()).unwrap_or_else(VoxelSize::unknown),
        labels: opts.labels,
        extra,
    };
    let mut writer = PyramidWriter::create(&root, &meta, shape, dtype, &opts.layout.clamped_to(shape), levels)
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", input.display()))?;
    let bar = crate::progress::bar(shape[0] as u64, "tiff2zarr", opts.progress);
    let depth = writer.slab_depth();
    // Double buffering: one thread reads the next slab while this one encodes and writes
    // the current one (at most two slabs in memory: the channel holds none in waiting).
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<Result<(usize, TypedBuf)>>(0);
        let src = &src;
        scope.spawn(move || {
            for z0 in (0..shape[0]).step_by(depth) {
                let z1 = (z0 + depth).min(shape[0]);
                let r = src.read_pages(z0, z1).map(|s| (z1 - z0, s));
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    break;
                }
            }
        });
        for r in rx {
            let (n, slab) = r?;
            writer.write_planes(slab).map_err(|e| anyhow::anyhow!("{}: {e:#}", root.display()))?;
            bar.inc(n as u64);
        }
        Ok(())
    })?;
    writer.finish().map_err(|e| anyhow::anyhow!("{}: {e:#}", root.display()))?;
    bar.finish_and_clear();
    let out = outs.commit()?.remove(0);
    Ok(ConvertReport {
        output: out,
        shape,
        dtype,
        levels,
        bytes: (shape.iter().product::<usize>() * dtype.size()) as u64,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Exports one level of a Zarr store as a multi-page TIFF (for Fiji), slab by slab.
pub fn zarr_to_tiff(input: &Path, output: &Path, level: usize, overwrite: bool, progress: bool) -> Result<ConvertReport> {
    let t0 = Instant::now();
    let mut outs = OutputSet::new(Existing::overwrite_if(overwrite));
    outs.inputs([input]);
    let partial = outs.file(output)?;
    let reader = NativeReader::open(input, level)?;
    let mut w = TiffStackWriter::create(&partial, reader.shape, reader.dtype, false)?;
    w.set_voxel_size(reader.voxel_size.clone());
    let depth = reader.chunk_depth.max(1);
    let bar = crate::progress::bar(reader.shape[0] as u64, "zarr2tiff", progress);
    for z0 in (0..reader.shape[0]).step_by(depth) {
        let z1 = (z0 + depth).min(reader.shape[0]);
        let slab = reader.read_slab(z0, z1)?;
        w.write_pages(&slab)?;
        bar.inc((z1 - z0) as u64);
    }
    w.finish()?;
    bar.finish_and_clear();
    let out = outs.commit()?.remove(0);
    Ok(ConvertReport {
        output: out,
        shape: reader.shape,
        dtype: reader.dtype,
        levels: 1,
        bytes: (reader.shape.iter().product::<usize>() * reader.dtype.size()) as u64,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
