//! spam-deformImage's output as a library call: a volume deformed by one Φ (or computed plane
//! by plane by any warp) written slab by slab as a TIFF or an OME-Zarr store with its pyramid,
//! through the run's output set. Used by `deform-image`, `reg -def` and the browser pages.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::kernels::deform::deformed_planes;
use crate::phi::Phi;
use crate::store::convert::{default_levels, PyramidWriter};
use crate::store::dtype::TypedBuf;
use crate::store::output::OutputSet;
use crate::store::tiff_write::TiffStackWriter;
use crate::store::zarr::{ArrayLayout, Codec, ImageMeta};
use crate::store::Volume;

fn is_zarr_name(out: &Path) -> bool {
    out.extension().is_some_and(|e| e == "zarr")
}

/// Reserves a deformed image in `outs`: a Zarr store for a `.zarr` name, else a TIFF.
pub fn reserve(outs: &mut OutputSet, out: &Path) -> Result<PathBuf> {
    if is_zarr_name(out) {
        outs.store(out)
    } else {
        outs.file(out)
    }
}

/// Writes `input` deformed by Φ about `centre` as output `out` of `outs` (TIFF or Zarr by
/// extension).
pub fn deform_to(input: &Volume, phi: &Phi, centre: [f64; 3], order: usize, outs: &mut OutputSet, out: &Path, progress: bool) -> Result<()> {
    write_planes(input, outs, out, progress, 16, |z0, z1| deformed_planes(input, phi, centre, order, z0, z1))
}

/// Writes a volume of `input`'s shape and type, computed `depth` planes at a time by
/// `planes(z0, z1)`, as output `out` of `outs` (an OME-Zarr store with its pyramid, or a TIFF).
pub fn write_planes(input: &Volume, outs: &mut OutputSet, out: &Path, progress: bool, depth: usize, planes: impl Fn(usize, usize) -> Result<Vec<f32>>) -> Result<()> {
    let shape = input.shape();
    let dtype = input.dtype();
    let voxel_size = input.voxel_size();
    let partial = reserve(outs, out)?;
    let bar = crate::progress::bar(shape[0] as u64, "deforming", progress);
    // Planes [z0, z1) in pieces of at most `depth`.
    let slab = |z0: usize, z1: usize| -> Result<Vec<f32>> {
        let mut v = Vec::with_capacity((z1 - z0) * shape[1] * shape[2]);
        for a in (z0..z1).step_by(depth.max(1)) {
            let b = (a + depth.max(1)).min(z1);
            v.extend(planes(a, b)?);
            bar.inc((b - a) as u64);
        }
        Ok(v)
    };
    if is_zarr_name(out) {
        std::fs::create_dir_all(&partial).with_context(|| format!("{}: cannot create", partial.display()))?;
        // The deformed image keeps the input's voxel size.
        let meta = ImageMeta { name: out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into()), voxel_size: voxel_size.clone().unwrap_or_else(crate::store::voxel_size::VoxelSize::unknown), labels: false, extra: Default::default() };
        let layout = ArrayLayout { chunk: [64; 3], codec: Codec::Zstd(1), shard: None };
        let mut w = PyramidWriter::create(&partial, &meta, shape, dtype, &layout, default_levels(shape)).with_context(|| format!("{}: cannot write", partial.display()))?;
        let d = w.slab_depth();
        for z0 in (0..shape[0]).step_by(d) {
            let z1 = (z0 + d).min(shape[0]);
            let planes = TypedBuf::from_f32(dtype, &slab(z0, z1)?);
            w.write_planes(planes).with_context(|| format!("{}: cannot write", partial.display()))?;
        }
        w.finish().with_context(|| format!("{}: cannot write", partial.display()))?;
    } else {
        let mut w = TiffStackWriter::create(&partial, shape, dtype, false)?;
        w.set_voxel_size(voxel_size);
        let d = depth.max(1);
        for z0 in (0..shape[0]).step_by(d) {
            let z1 = (z0 + d).min(shape[0]);
            w.write_pages(&TypedBuf::from_f32(dtype, &slab(z0, z1)?))?;
        }
        w.finish()?;
    }
    bar.finish_and_clear();
    Ok(())
}
