//! `dvc-stream synth`: an exact synthetic pair and its truth.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use nalgebra::Vector3;

use crate::field::parquet::{self, FieldMeta};
use crate::field::tsv;
use crate::phi::{compute_phi, PhiComponents};
use crate::store::dtype::DType;
use crate::store::output::PendingOutput;
use crate::store::zarr::{ArrayLayout, Codec};
use crate::synth::deformation::{Deformation, Field};
use crate::synth::texture::Texture;
use crate::synth::{SynthFormat, SynthSpec};

#[derive(Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output folder (receives im1, im2, truth.tsv, truth.parquet, truth-registration.tsv).
    pub out_dir: PathBuf,
    /// Cube size in voxels.
    #[arg(long, default_value_t = 128)]
    pub shape: usize,
    /// Shape Z Y X (overrides --shape).
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"])]
    pub shape3: Option<Vec<usize>>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Translation Z Y X (voxels) of the image centre.
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"], allow_negative_numbers = true)]
    pub translate: Option<Vec<f64>>,
    /// Rotation vector Z Y X in degrees (axis × angle), about the image centre.
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"], allow_negative_numbers = true)]
    pub rotate: Option<Vec<f64>>,
    /// Stretches Z Y X (1 = none).
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"], allow_negative_numbers = true)]
    pub zoom: Option<Vec<f64>>,
    /// Smooth field added on top: shear:G, bend:K or band:A:W (repeatable).
    #[arg(long = "field", value_name = "SPEC")]
    pub fields: Vec<String>,
    /// Standard deviation of Gaussian noise added to both images (grey levels).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// Speckle size (lattice cell, voxels).
    #[arg(long, default_value_t = 3.0)]
    pub speckle: f64,
    /// Stored type: uint8, uint16, int16, float32 ...
    #[arg(long, default_value = "float32")]
    pub dtype: String,
    /// zarr (OME-Zarr with pyramid) or tiff.
    #[arg(long, default_value = "zarr")]
    pub format: String,
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    #[arg(long, default_value = "zstd:1")]
    pub codec: String,
    /// Pyramid levels including full resolution (default: down to about 64³).
    #[arg(long)]
    pub levels: Option<usize>,
    /// Node spacing of the truth table.
    #[arg(long = "truth-ns", default_value_t = 10)]
    pub truth_ns: usize,
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn v3(v: &Option<Vec<f64>>) -> Option<[f64; 3]> {
    v.as_ref().map(|v| [v[0], v[1], v[2]])
}

impl SynthArgs {
    pub fn spec(&self) -> Result<SynthSpec> {
        let shape = match &self.shape3 {
            Some(s) => [s[0], s[1], s[2]],
            None => [self.shape; 3],
        };
        if shape.iter().any(|&s| s < 2) {
            bail!("--shape: every axis needs at least 2 voxels");
        }
        if !(self.speckle > 0.5) {
            bail!("--speckle must be above 0.5 voxel");
        }
        let phi = compute_phi(&PhiComponents { t: v3(&self.translate), r: v3(&self.rotate), z: v3(&self.zoom), ..Default::default() });
        let centre = Vector3::new((shape[0] as f64 - 1.0) / 2.0, (shape[1] as f64 - 1.0) / 2.0, (shape[2] as f64 - 1.0) / 2.0);
        let mut deformation = Deformation::affine(phi, centre);
        for f in &self.fields {
            deformation.fields.push(Field::parse(f)?);
        }
        let mut texture = Texture::new(self.seed);
        texture.cell = self.speckle;
        Ok(SynthSpec { shape, texture, deformation, noise: self.noise, dtype: DType::parse(&self.dtype)? })
    }
}

/// Writes the pair and the truth; returns the two image paths.
pub fn write_pair(a: &SynthArgs) -> Result<(PathBuf, PathBuf)> {
    let spec = a.spec()?;
    let (format, ext) = match a.format.as_str() {
        "zarr" => {
            let layout = ArrayLayout { chunk: [a.chunk; 3], codec: Codec::parse(&a.codec)?, shard: None };
            let levels = a.levels.unwrap_or_else(|| crate::store::convert::default_levels(spec.shape));
            (SynthFormat::Zarr { layout, levels }, "zarr")
        }
        "tiff" | "tif" => (SynthFormat::Tiff, "tif"),
        other => bail!("--format: unknown format '{other}' (use zarr or tiff)"),
    };
    std::fs::create_dir_all(&a.out_dir).map_err(|e| anyhow::anyhow!("{}: cannot create ({e})", a.out_dir.display()))?;
    let mut paths = Vec::new();
    for image in [1u8, 2] {
        let path = a.out_dir.join(format!("im{image}.{ext}"));
        let pending = PendingOutput::new(&path, a.overwrite)?;
        spec.write(image, pending.path(), &format, !a.quiet).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        paths.push(pending.commit()?);
    }
    write_truth(a, &spec, &a.out_dir)?;
    Ok((paths[0].clone(), paths[1].clone()))
}

fn write_truth(a: &SynthArgs, spec: &SynthSpec, dir: &Path) -> Result<()> {
    let truth = spec.truth([a.truth_ns; 3]);
    tsv::write_field(&dir.join("truth.tsv"), &truth)?;
    let params = serde_json::json!({
        "shape": spec.shape, "seed": a.seed, "translate": a.translate, "rotate": a.rotate, "zoom": a.zoom,
        "fields": a.fields, "noise": a.noise, "speckle": a.speckle, "dtype": a.dtype, "truth_ns": a.truth_ns,
    });
    let mut meta = FieldMeta::for_command("synth", params);
    meta.image_shapes = vec![spec.shape, spec.shape];
    parquet::write_field(&dir.join("truth.parquet"), &truth, &meta)?;
    // The affine part as a spam registration file about the image centre (a -pf guess).
    let mut reg = crate::field::PhiField::new(crate::field::FieldKind::Registration, crate::field::Layout::Registration);
    reg.push(crate::field::FieldRow {
        id: 1,
        position: spec.deformation.centre,
        phi: spec.deformation.phi,
        cc: 0.0,
        error: 0.0,
        iterations: 0.0,
        return_status: 2.0,
        delta_phi_norm: 0.0,
        label_dilate: 0.0,
    });
    tsv::write_field(&dir.join("truth-registration.tsv"), &reg)?;
    Ok(())
}

pub fn run(a: SynthArgs) -> Result<()> {
    let (p1, p2) = write_pair(&a)?;
    if !a.quiet {
        eprintln!("wrote {} and {} (truth in {})", p1.display(), p2.display(), a.out_dir.join("truth.tsv").display());
    }
    Ok(())
}
