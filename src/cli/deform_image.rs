//! `dvc-stream deform-image IMAGE -pf PHI`: spam-deformImage for a single Φ, streamed slab
//! by slab (Zarr with a pyramid, or TIFF when the output ends in .tif).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use super::output_names::{out_dir, read_registration, stem};
use super::ReadOpts;
use crate::kernels::deform::deformed_planes;
use crate::phi::{self, Phi};
use crate::store::convert::{default_levels, PyramidWriter};
use crate::store::dtype::TypedBuf;
use crate::store::output::PendingOutput;
use crate::store::tiff_write::TiffStackWriter;
use crate::store::zarr::{ArrayLayout, Codec, ImageMeta};
use crate::store::Volume;

#[derive(Args, Debug)]
pub struct DeformImageArgs {
    /// Volume to deform (TIFF, slice folder, Zarr).
    pub image: PathBuf,
    /// Registration (one-row TSV or Parquet) [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: PathBuf,
    /// Bin ratio of --phi-file [spam: -pfb].
    #[arg(long = "phi-file-bin-ratio", default_value_t = 1.0)]
    pub phi_file_bin_ratio: f64,
    /// Apply only the rigid part (rotation and translation) [spam: -rr].
    #[arg(long = "rigid-only")]
    pub rigid_only: bool,
    /// 1 = trilinear (spam's), 3 = cubic B-spline [spam: -o].
    #[arg(long = "interpolation-order", default_value_t = 1, value_parser = super::parse_order)]
    pub interpolation_order: usize,
    #[command(flatten)]
    pub out: super::OutputOpts,
    /// Output path; `.zarr` writes an OME-Zarr store, anything else a TIFF. Default
    /// <out-dir>/<prefix>-reg-def.tif as spam names it.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub read: ReadOpts,
}

/// Writes `input` deformed by Φ about `centre` to `out` (TIFF or Zarr by extension).
pub fn deform_to(input: &Volume, phi: &Phi, centre: [f64; 3], order: usize, out: &Path, progress: bool) -> Result<()> {
    let shape = input.shape();
    let dtype = input.dtype();
    let pending = PendingOutput::new(out, true)?;
    let bar = crate::progress::bar(shape[0] as u64, "deforming", progress);
    if out.extension().is_some_and(|e| e == "zarr") {
        std::fs::create_dir_all(pending.path())?;
        let meta = ImageMeta { name: stem(out), voxel_size: [1.0; 3], unit: "pixel".into(), extra: Default::default() };
        let layout = ArrayLayout { chunk: [64; 3], codec: Codec::Zstd(1), shard: None };
        let mut w = PyramidWriter::create(pending.path(), &meta, shape, dtype, &layout, default_levels(shape))?;
        let d = w.slab_depth();
        for z0 in (0..shape[0]).step_by(d) {
            let z1 = (z0 + d).min(shape[0]);
            w.write_planes(TypedBuf::from_f32(dtype, &deformed_planes(input, phi, centre, order, z0, z1)?))?;
            bar.inc((z1 - z0) as u64);
        }
        w.finish()?;
    } else {
        let mut w = TiffStackWriter::create(pending.path(), shape, dtype, false)?;
        for z0 in (0..shape[0]).step_by(16) {
            let z1 = (z0 + 16).min(shape[0]);
            w.write_pages(&TypedBuf::from_f32(dtype, &deformed_planes(input, phi, centre, order, z0, z1)?))?;
            bar.inc((z1 - z0) as u64);
        }
    }
    bar.finish_and_clear();
    pending.commit()?;
    Ok(())
}

pub fn run(a: DeformImageArgs) -> Result<()> {
    a.read.threads();
    let cache = a.read.cache()?;
    let im = Volume::open(&a.image, cache.clone())?;
    let reg = read_registration(&a.phi_file, a.phi_file_bin_ratio)?;
    let mut p = reg.phis[0];
    if a.rigid_only {
        p = phi::rigid_part(&p);
    }
    let c = reg.positions[0];
    let out = match &a.output {
        Some(o) => o.clone(),
        None => {
            let dir = out_dir(&a.out.out_dir, &a.image)?;
            dir.join(format!("{}-reg-def.tif", a.out.prefix.clone().unwrap_or_else(|| stem(&a.image))))
        }
    };
    if out.exists() && !a.overwrite && a.output.is_some() {
        bail!("{}: already exists (use --overwrite to replace it)", out.display());
    }
    deform_to(&im, &p, [c[0], c[1], c[2]], a.interpolation_order, &out, !a.read.quiet)?;
    println!("wrote {}", out.display());
    a.read.report(&cache);
    Ok(())
}
