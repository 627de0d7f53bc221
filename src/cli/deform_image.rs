//! `dvc-stream deform-image IMAGE -pf PHI`: spam-deformImage, streamed slab by slab (Zarr
//! with a pyramid, or TIFF when the output ends in .tif). A registration warps by one Φ; a
//! measured field warps each voxel by the inverse-distance average of its nearest points'
//! inverse maps (see `kernels::deform::FieldWarp`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::output_names::{out_dir_path, stem};
use super::ReadOpts;
use crate::run::deform_image::{DeformJob, DeformOutput};

#[derive(Args, Debug)]
pub struct DeformImageArgs {
    /// Volume to deform (TIFF, slice folder, Zarr), or a 2D image (one slice).
    pub image: PathBuf,
    /// A registration (one row) or a measured field (TSV or Parquet) [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: PathBuf,
    /// Field mode: points with a lower return status are not used [spam: -rst].
    #[arg(long = "return-status-threshold", default_value_t = 2, allow_negative_numbers = true)]
    pub return_status_threshold: i64,
    /// Field mode: drop points farther than this from the image's Z axis [spam: -rad].
    #[arg(long, value_parser = super::values::positive_f64)]
    pub radius: Option<f64>,
    /// Field mode: neighbours averaged for each voxel [spam: -nn].
    #[arg(long = "number-of-neighbours", default_value_t = 8, value_parser = super::values::positive_usize)]
    pub number_of_neighbours: usize,
    /// Field mode: interpolate displacements only, not each point's F [spam: -disp].
    #[arg(long = "interpolate-displacements")]
    pub interpolate_displacements: bool,
    /// Field mode: deform through a Delaunay tetrahedral mesh between the points (in their
    /// deformed positions), the displacement linear inside each tetrahedron; voxels outside
    /// the mesh are 0, and grey levels are interpolated trilinearly whatever -o says, as
    /// spam does. Output <prefix>-tetMesh-def.tif [spam: -tet].
    #[arg(long = "triangulation")]
    pub triangulation: bool,
    /// With --triangulation: CGAL's alpha clean-up. A tetrahedron is kept when its
    /// circumradius² − 1 is at most this; 0 keeps all, a negative value (or one too small
    /// to leave every point in the mesh) takes the smallest that does [spam: -a].
    #[arg(long = "triangulation-alpha-value", default_value_t = 0.0, allow_negative_numbers = true, value_parser = super::values::threshold_f64)]
    pub triangulation_alpha: f64,
    /// With --triangulation: multiply grey levels by each tetrahedron's reference over
    /// deformed volume (Stavropoulou et al. 2020 eq. 12 with the vacuum at grey 0) [spam: -cgs].
    #[arg(long = "correct-grey-for-strain")]
    pub correct_grey_for_strain: bool,
    /// Field mode (per voxel): a mask of the image in its deformed configuration; only its
    /// non-zero voxels are deformed, the others are 0, as spam's `applyPhiField(imMaskDef=…)`.
    /// Ignored, with a warning, for a registration and with --triangulation, as spam ignores
    /// it there [spam: -mf2].
    #[arg(long = "mask-file2")]
    pub mask_file2: Option<PathBuf>,
    /// Bin ratio of --phi-file [spam: -pfb].
    #[arg(long = "phi-file-bin-ratio", default_value_t = 1.0, value_parser = super::values::positive_f64)]
    pub phi_file_bin_ratio: f64,
    /// Apply only the rigid part (rotation and translation) [spam: -rr].
    #[arg(long = "rigid-only")]
    pub rigid_only: bool,
    /// 1 = trilinear (spam's), 3 = cubic B-spline [spam: -o]. A registration applied to a
    /// 2D image is always cubic, as spam applies it.
    #[arg(long = "interpolation-order", default_value_t = 1, value_parser = super::parse_order)]
    pub interpolation_order: usize,
    #[command(flatten)]
    pub out: super::OutputOpts,
    /// Output path; `.zarr` writes an OME-Zarr store, anything else a TIFF. Default
    /// <out-dir>/<prefix>-reg-def.tif as spam names it.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write PNGs of the residual against this reference image on the three middle
    /// slices: |REF − IMAGE| (<out>-residual-before.png) and |REF − deformed IMAGE|
    /// (<out>-residual-after.png), to check a registration or a field by eye.
    #[arg(long = "png-against", value_name = "REF")]
    pub png_against: Option<PathBuf>,
    /// Replace an existing output of the same kind (a file, or a Zarr store).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub read: ReadOpts,
}

/// The job the flags describe.
pub fn job(a: &DeformImageArgs) -> Result<DeformJob> {
    let output = match &a.output {
        Some(path) => DeformOutput::Given { path: path.clone(), overwrite: a.overwrite },
        None => DeformOutput::Spam { dir: out_dir_path(&a.out.out_dir, &a.image)?, prefix: a.out.prefix.clone().unwrap_or_else(|| stem(&a.image)) },
    };
    Ok(DeformJob {
        image: a.image.clone(),
        phi_file: a.phi_file.clone(),
        phi_file_bin_ratio: a.phi_file_bin_ratio,
        return_status_threshold: a.return_status_threshold,
        radius: a.radius,
        number_of_neighbours: a.number_of_neighbours,
        interpolate_displacements: a.interpolate_displacements,
        triangulation: a.triangulation,
        triangulation_alpha: a.triangulation_alpha,
        correct_grey_for_strain: a.correct_grey_for_strain,
        mask_file2: a.mask_file2.clone(),
        rigid_only: a.rigid_only,
        interpolation_order: a.interpolation_order,
        output,
        png_against: a.png_against.clone(),
    })
}

pub fn run(a: DeformImageArgs) -> Result<super::Summary> {
    a.read.threads();
    let cache = a.read.cache()?;
    let d = crate::run::deform_image::run(&job(&a)?, &cache, a.read.progress())?;
    for p in &d.written {
        crate::note!("wrote {}", p.display());
    }
    a.read.report(&cache);
    let s = d.shape;
    Ok(Some(format!(
        "deform-image: {} ({}×{}×{}) by {} {} → {}{}",
        a.image.display(),
        s[0],
        s[1],
        s[2],
        if d.by_field { "the field" } else { "the registration" },
        a.phi_file.display(),
        d.output.display(),
        if d.written.len() > 1 { format!(" and {} residual PNGs", d.written.len() - 1) } else { String::new() }
    )))
}
