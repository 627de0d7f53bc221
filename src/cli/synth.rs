//! `dvc-stream synth`: an exact synthetic pair and its truth.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use nalgebra::Vector3;

use crate::field::parquet::{self, FieldMeta};
use crate::field::tsv;
use crate::phi::{compute_phi, PhiComponents};
use crate::store::dtype::DType;
use crate::store::output::{Existing, OutputSet};
use crate::store::zarr::{ArrayLayout, Codec};
use crate::synth::deformation::{Deformation, Field};
use crate::synth::texture::Texture;
use crate::store::dtype::TypedBuf;
use crate::synth::grains::{GrainFill, GrainShape, Granular, GranularParams};
use crate::synth::{write_volume, SynthFormat, SynthSpec};

#[derive(Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output folder (receives im1, im2, truth.tsv, truth.parquet, truth-registration.tsv).
    pub out_dir: PathBuf,
    /// Cube size in voxels.
    #[arg(long, default_value_t = 128)]
    pub shape: usize,
    /// Shape Z Y X (overrides --shape). Z = 1 makes a 2D pair (as --2d).
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"])]
    pub shape3: Option<Vec<usize>>,
    /// A 2D pair: single-slice images of --shape × --shape pixels (or --shape3's Y X), moved
    /// in the plane only: --translate 0 Y X, --rotate about Z (R 0 0), --zoom 1 Y X.
    #[arg(long = "2d")]
    pub two_d: bool,
    /// Seed of the speckle texture and the noise (the same seed gives the same pair).
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
    #[arg(long, default_value_t = 0.0, value_parser = super::values::non_negative_f64)]
    pub noise: f64,
    /// Speckle size (lattice cell, voxels).
    #[arg(long, default_value_t = 3.0)]
    pub speckle: f64,
    /// Stored type: uint8, uint16, int16, float32 ... (uint8 and int16 get the grey levels
    /// scaled to their range; --noise is in stored grey levels).
    #[arg(long, default_value = "float32")]
    pub dtype: String,
    /// zarr (OME-Zarr with pyramid) or tiff.
    #[arg(long, default_value = "zarr")]
    pub format: String,
    /// Zarr chunk edge in voxels.
    #[arg(long, default_value_t = 64, value_parser = super::values::positive_usize)]
    pub chunk: usize,
    /// Zarr codec: zstd[:LEVEL], blosc or none.
    #[arg(long, default_value = "zstd:1")]
    pub codec: String,
    /// Pyramid levels including full resolution (default: down to about 64³).
    #[arg(long)]
    pub levels: Option<usize>,
    /// Granular mode: this many non-overlapping grains, each moved by its own rigid motion;
    /// writes lab1 (the label volume of im1) and truth-grains.tsv/.parquet (Φ per grain).
    #[arg(long)]
    pub grains: Option<usize>,
    /// Granular mode: smallest and largest grain radius (semi-axis) in voxels.
    #[arg(long = "grain-radius", num_args = 2, value_names = ["MIN", "MAX"], default_values_t = [6.0, 12.0])]
    pub grain_radius: Vec<f64>,
    /// Granular mode: ellipsoid (random semi-axes and orientation) or sphere.
    #[arg(long = "grain-shape", default_value = "ellipsoid")]
    pub grain_shape: String,
    /// Granular mode: speckle (textured grains) or uniform (flat grey: rotations unobservable).
    #[arg(long = "grain-fill", default_value = "speckle")]
    pub grain_fill: String,
    /// Granular mode: largest grain translation (voxels).
    #[arg(long = "grain-max-translation", default_value_t = 5.0)]
    pub grain_max_translation: f64,
    /// Granular mode: largest grain rotation (degrees; 0 = translations only).
    #[arg(long = "grain-max-rotation", default_value_t = 10.0)]
    pub grain_max_rotation: f64,
    /// Granular mode: smallest distance between two grains' bounding spheres (voxels, in both
    /// images). The default keeps their blurred edges apart; 0 lets grains touch.
    #[arg(long = "grain-gap", allow_negative_numbers = true, default_value_t = crate::synth::grains::GAP)]
    pub grain_gap: f64,
    /// Node spacing of the truth table.
    #[arg(long = "truth-ns", default_value_t = 10, value_parser = super::values::positive_usize)]
    pub truth_ns: usize,
    /// Replace the pair and truth files of an earlier synth in DIR.
    #[arg(long)]
    pub overwrite: bool,
}

fn v3(v: &Option<Vec<f64>>) -> Option<[f64; 3]> {
    v.as_ref().map(|v| [v[0], v[1], v[2]])
}

impl SynthArgs {
    pub fn spec(&self) -> Result<SynthSpec> {
        let shape = self.shape()?;
        if shape[0] == 1 {
            self.check_in_plane()?;
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

impl SynthArgs {
    fn shape(&self) -> Result<[usize; 3]> {
        let mut shape = match &self.shape3 {
            Some(s) => [s[0], s[1], s[2]],
            None => [self.shape; 3],
        };
        if self.two_d {
            shape[0] = 1;
        }
        if shape[0] == 1 {
            if shape[1] < 2 || shape[2] < 2 {
                bail!("--shape: a 2D image needs at least 2 pixels along Y and X");
            }
        } else if shape.iter().any(|&s| s < 2) {
            bail!("--shape: every axis needs at least 2 voxels (Z = 1 for a 2D pair)");
        }
        Ok(shape)
    }

    /// A 2D pair moves in its plane only: refuses what would move material out of it.
    fn check_in_plane(&self) -> Result<()> {
        let t = v3(&self.translate).unwrap_or([0.0; 3]);
        let r = v3(&self.rotate).unwrap_or([0.0; 3]);
        let z = v3(&self.zoom).unwrap_or([1.0; 3]);
        if t[0] != 0.0 || r[1] != 0.0 || r[2] != 0.0 || z[0] != 1.0 {
            bail!("a 2D pair (Z = 1) moves in its plane only: --translate 0 Y X, --rotate R 0 0 (about Z), --zoom 1 Y X");
        }
        if !self.fields.is_empty() {
            bail!("--field: the fields act along or across Z and do not apply to a 2D pair (Z = 1)");
        }
        if self.grains.is_some() {
            bail!("--grains: granular pairs are 3D only");
        }
        Ok(())
    }

    /// The output format for volumes of `shape` (`levels` overrides the pyramid depth).
    fn format(&self, shape: [usize; 3], labels: bool) -> Result<(SynthFormat, &'static str)> {
        Ok(match self.format.as_str() {
            "zarr" => {
                let layout = ArrayLayout { chunk: [self.chunk; 3], codec: Codec::parse(&self.codec)?, shard: None };
                let levels = self.levels.unwrap_or_else(|| crate::store::convert::default_levels(shape));
                (SynthFormat::Zarr { layout, levels, labels }, "zarr")
            }
            "tiff" | "tif" => (SynthFormat::Tiff, "tif"),
            other => bail!("--format: unknown format '{other}' (use zarr or tiff)"),
        })
    }

    pub fn granular_params(&self, count: usize) -> Result<GranularParams> {
        if self.translate.is_some() || self.rotate.is_some() || self.zoom.is_some() || !self.fields.is_empty() {
            bail!("--grains: each grain gets its own motion; --translate, --rotate, --zoom and --field do not apply");
        }
        let grain_shape = match self.grain_shape.as_str() {
            "ellipsoid" => GrainShape::Ellipsoid,
            "sphere" => GrainShape::Sphere,
            other => bail!("--grain-shape: '{other}' is not a shape (use ellipsoid or sphere)"),
        };
        let fill = match self.grain_fill.as_str() {
            "speckle" => GrainFill::Speckle,
            "uniform" => GrainFill::Uniform,
            other => bail!("--grain-fill: '{other}' is not a fill (use speckle or uniform)"),
        };
        if !(self.grain_max_translation >= 0.0 && self.grain_max_rotation >= 0.0) {
            bail!("--grain-max-translation and --grain-max-rotation must be ≥ 0");
        }
        Ok(GranularParams {
            shape: self.shape()?,
            count,
            radius: [self.grain_radius[0], self.grain_radius[1]],
            max_translation: self.grain_max_translation,
            max_rotation: self.grain_max_rotation,
            grain_shape,
            fill,
            speckle: self.speckle,
            seed: self.seed,
            gap: self.grain_gap,
        })
    }
}

/// Granular mode: im1, im2, lab1 and the per-grain truth; returns the paths of im1, lab1, im2.
pub fn write_granular(a: &SynthArgs, count: usize) -> Result<[PathBuf; 3]> {
    let g = Granular::generate(&a.granular_params(count)?)?;
    let dtype = DType::parse(&a.dtype)?;
    let (format, ext) = a.format(g.shape, false)?;
    // The label volume is an OME-Zarr image-label with a nearest-neighbour pyramid.
    let (label_format, _) = a.format(g.shape, true)?;
    std::fs::create_dir_all(&a.out_dir).map_err(|e| anyhow::anyhow!("{}: cannot create ({e})", a.out_dir.display()))?;
    // The images and the truth are one set: all renamed into place at the end, or none.
    let mut outs = OutputSet::new(Existing::overwrite_if(a.overwrite));
    let names: Vec<PathBuf> = ["im1", "im2", "lab1"].iter().map(|n| a.out_dir.join(format!("{n}.{ext}"))).collect();
    for p in &names {
        reserve_image(&mut outs, p)?;
    }
    for n in ["truth-grains.tsv", "truth-grains.parquet"] {
        outs.file_replacing(&a.out_dir.join(n))?;
    }
    let mut write = |name: &str, fmt: &SynthFormat, dt: DType, planes: &(dyn Fn(usize, usize) -> TypedBuf + Sync)| -> Result<PathBuf> {
        let path = a.out_dir.join(format!("{name}.{ext}"));
        let partial = reserve_image(&mut outs, &path)?;
        write_volume(g.shape, dt, &partial, fmt, name, !crate::say::quiet(), planes).map_err(|e| anyhow::anyhow!("{}: {e:#}", partial.display()))?;
        Ok(path)
    };
    let im1 = write("im1", &format, dtype, &|z0, z1| g.planes(1, z0, z1, a.noise, a.seed, dtype))?;
    let im2 = write("im2", &format, dtype, &|z0, z1| g.planes(2, z0, z1, a.noise, a.seed, dtype))?;
    let ld = g.label_dtype();
    let lab1 = write("lab1", &label_format, ld, &|z0, z1| TypedBuf::from_f32(ld, &g.label_planes(z0, z1)))?;
    let truth = g.truth();
    tsv::write_field(&outs.file_replacing(&a.out_dir.join("truth-grains.tsv"))?, &truth)?;
    let params = serde_json::json!({
        "shape": g.shape, "seed": a.seed, "grains": count, "grain_radius": a.grain_radius, "grain_shape": a.grain_shape,
        "grain_fill": a.grain_fill, "grain_max_translation": a.grain_max_translation, "grain_max_rotation": a.grain_max_rotation, "grain_gap": a.grain_gap,
        "noise": a.noise, "speckle": a.speckle, "dtype": a.dtype,
    });
    let mut meta = FieldMeta::for_command("synth", params);
    meta.image_shapes = vec![g.shape, g.shape];
    parquet::write_field(&outs.file_replacing(&a.out_dir.join("truth-grains.parquet"))?, &truth, &meta)?;
    outs.commit()?;
    Ok([im1, lab1, im2])
}

/// Writes the pair and the truth; returns the two image paths.
pub fn write_pair(a: &SynthArgs) -> Result<(PathBuf, PathBuf)> {
    let spec = a.spec()?;
    let (format, ext) = a.format(spec.shape, false)?;
    std::fs::create_dir_all(&a.out_dir).map_err(|e| anyhow::anyhow!("{}: cannot create ({e})", a.out_dir.display()))?;
    let mut outs = OutputSet::new(Existing::overwrite_if(a.overwrite));
    let paths: Vec<PathBuf> = [1u8, 2].iter().map(|i| a.out_dir.join(format!("im{i}.{ext}"))).collect();
    for p in &paths {
        reserve_image(&mut outs, p)?;
    }
    for n in ["truth.tsv", "truth.parquet", "truth-registration.tsv"] {
        outs.file_replacing(&a.out_dir.join(n))?;
    }
    for (image, path) in [1u8, 2].into_iter().zip(&paths) {
        let partial = reserve_image(&mut outs, path)?;
        spec.write(image, &partial, &format, !crate::say::quiet()).map_err(|e| anyhow::anyhow!("{}: {e:#}", partial.display()))?;
    }
    write_truth(&mut outs, a, &spec, &a.out_dir)?;
    outs.commit()?;
    Ok((paths[0].clone(), paths[1].clone()))
}

/// Reserves a synthetic image: a Zarr store or a TIFF, by its extension.
fn reserve_image(outs: &mut OutputSet, path: &Path) -> Result<PathBuf> {
    if path.extension().is_some_and(|e| e == "zarr") {
        outs.store(path)
    } else {
        outs.file(path)
    }
}

fn write_truth(outs: &mut OutputSet, a: &SynthArgs, spec: &SynthSpec, dir: &Path) -> Result<()> {
    let truth = spec.truth([a.truth_ns; 3]);
    tsv::write_field(&outs.file_replacing(&dir.join("truth.tsv"))?, &truth)?;
    let params = serde_json::json!({
        "shape": spec.shape, "seed": a.seed, "translate": a.translate, "rotate": a.rotate, "zoom": a.zoom,
        "fields": a.fields, "noise": a.noise, "speckle": a.speckle, "dtype": a.dtype, "truth_ns": a.truth_ns,
    });
    let mut meta = FieldMeta::for_command("synth", params);
    meta.image_shapes = vec![spec.shape, spec.shape];
    parquet::write_field(&outs.file_replacing(&dir.join("truth.parquet"))?, &truth, &meta)?;
    // The affine part as a spam registration file about the image centre (a -pf guess).
    let mut reg = crate::field::PhiField::new(crate::field::FieldKind::Registration, crate::field::Layout::Registration);
    reg.push(crate::field::FieldRow::truth(1, spec.deformation.centre, spec.deformation.phi));
    tsv::write_field(&outs.file_replacing(&dir.join("truth-registration.tsv"))?, &reg)?;
    Ok(())
}

pub fn run(a: SynthArgs) -> Result<super::Summary> {
    if !(a.speckle > 0.5) {
        bail!("--speckle must be above 0.5 voxel");
    }
    if let Some(n) = a.grains {
        if a.shape()?[0] == 1 {
            a.check_in_plane()?;
        }
        let [im1, lab1, im2] = write_granular(&a, n)?;
        return Ok(Some(format!(
            "synth: wrote {}, {} and {} ({n} grains; truth in {})",
            im1.display(),
            lab1.display(),
            im2.display(),
            a.out_dir.join("truth-grains.tsv").display()
        )));
    }
    let (p1, p2) = write_pair(&a)?;
    Ok(Some(format!("synth: wrote {} and {} (truth in {})", p1.display(), p2.display(), a.out_dir.join("truth.tsv").display())))
}
