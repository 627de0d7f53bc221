//! `dvc-stream deform-image IMAGE -pf PHI`: spam-deformImage, streamed slab by slab (Zarr
//! with a pyramid, or TIFF when the output ends in .tif). A registration warps by one Φ; a
//! measured field warps each voxel by the inverse-distance average of its nearest points'
//! inverse maps (see `kernels::deform::FieldWarp`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use super::output_names::{out_dir, read_registration, stem};
use super::ReadOpts;
use crate::field::PhiField;
use crate::kernels::deform::{field_deformed_planes, FieldWarp};
use crate::phi;
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;

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

pub use crate::run::deform_image::{deform_to, reserve, write_planes};

pub fn run(a: DeformImageArgs) -> Result<super::Summary> {
    a.read.threads();
    let cache = a.read.cache()?;
    let im = Volume::open(&a.image, cache.clone())?;
    if !(a.phi_file_bin_ratio > 0.0) {
        bail!("--phi-file-bin-ratio must be positive");
    }
    let mut field = PhiField::read(&a.phi_file)?;
    let is_field = field.len() > 1;
    if a.correct_grey_for_strain && !a.triangulation {
        bail!("--correct-grey-for-strain (-cgs) works on the tetrahedral mesh only: add --triangulation (-tet)");
    }
    // spam deforms a single-slice image per pixel even when asked for the mesh.
    let mesh = is_field && a.triangulation && !crate::kernels::plane::is_plane(im.shape());
    if a.triangulation && !mesh {
        crate::say::warn(format_args!(
            "--triangulation (-tet) ignored {}: deformed {}, as spam does",
            if is_field { "for a 2D image" } else { "for a registration" },
            if is_field { "per pixel" } else { "by its one Φ" }
        ));
    }
    if a.triangulation_alpha != 0.0 && !a.triangulation {
        crate::say::warn(format_args!("--triangulation-alpha-value (-a) applies to --triangulation (-tet) only; ignored"));
    }
    let suffix = if !is_field {
        "reg-def"
    } else if mesh {
        "tetMesh-def"
    } else if a.interpolate_displacements {
        "disp-def"
    } else {
        "def"
    };
    let out = match &a.output {
        Some(o) => o.clone(),
        None => {
            let dir = out_dir(&a.out.out_dir, &a.image)?;
            dir.join(format!("{}-{suffix}.tif", a.out.prefix.clone().unwrap_or_else(|| stem(&a.image))))
        }
    };
    // An output named by --output is replaced only with --overwrite; spam's default name is
    // rewritten as spam does. Either way only by one of its kind, never a folder.
    let mut outs = OutputSet::new(if a.output.is_some() { Existing::overwrite_if(a.overwrite) } else { Existing::Replace });
    outs.inputs([a.image.as_path(), a.phi_file.as_path()].into_iter().chain(a.png_against.as_deref()));
    reserve(&mut outs, &out)?;
    let base = out.with_extension("");
    let png_paths: Vec<PathBuf> = ["before", "after"].iter().map(|name| PathBuf::from(format!("{}-residual-{name}.png", base.display()))).collect();
    // The reference is checked before anything is written.
    let reference = a.png_against.as_ref().map(|r| super::output_names::open_matching(r, &cache, im.shape(), "reference image")).transpose()?;
    if reference.is_some() {
        for p in &png_paths {
            outs.file(p)?;
        }
    }
    // The mask of the deformed image is checked before anything is written.
    let mask2 = match &a.mask_file2 {
        Some(m) if is_field && !mesh => Some(super::output_names::open_matching(m, &cache, im.shape(), "mask of the deformed image")?),
        Some(m) => {
            crate::say::warn(format_args!("{}: --mask-file2 applies to a field deformed per voxel; ignored {}, as spam does", m.display(), if is_field { "with --triangulation" } else { "for a registration" }));
            None
        }
        None => None,
    };
    if let Some(m) = &a.mask_file2 {
        outs.inputs([m.as_path()]);
    }
    if !is_field {
        let reg = read_registration(&a.phi_file, a.phi_file_bin_ratio)?;
        let mut p = reg.phis[0];
        if a.rigid_only {
            p = phi::rigid_part(&p);
        }
        let c = reg.positions[0];
        // spam applies a registration to a 2D image with its Python warp at order 3 (cubic
        // B-spline), whatever -o says.
        let order = if crate::kernels::plane::is_plane(im.shape()) { 3 } else { a.interpolation_order };
        deform_to(&im, &p, [c[0], c[1], c[2]], order, &mut outs, &out, a.read.progress())?;
    } else {
        field.rescale(a.phi_file_bin_ratio);
        let s = im.shape();
        let axis = ((s[1] as f64 - 1.0) / 2.0, (s[2] as f64 - 1.0) / 2.0);
        let keep: Vec<usize> = (0..field.len())
            .filter(|&i| field.return_status[i].at_least(a.return_status_threshold) && !(field.layout.is_labels() && field.ids[i] == 0))
            .filter(|&i| a.radius.is_none_or(|r| ((field.positions[i][1] - axis.0).powi(2) + (field.positions[i][2] - axis.1).powi(2)).sqrt() <= r))
            .collect();
        let pts: Vec<_> = keep.iter().map(|&i| field.positions[i]).collect();
        let phis: Vec<_> = keep.iter().map(|&i| field.phis[i]).collect();
        if mesh {
            let disp: Vec<_> = phis.iter().map(phi::translation).collect();
            let warp = crate::kernels::tetmesh::TetWarp::new(&pts, &disp, a.triangulation_alpha, a.correct_grey_for_strain).map_err(|e| anyhow::anyhow!("{}: {e}", a.phi_file.display()))?;
            crate::note!("{} points, {} tetrahedra", pts.len(), warp.len());
            let depth = (4_000_000 / (s[1] * s[2]).max(1)).max(1);
            write_planes(&im, &mut outs, &out, a.read.progress(), depth, |z0, z1| crate::kernels::tetmesh::tet_deformed_planes(&im, &warp, z0, z1))?;
        } else {
            let Some(warp) = FieldWarp::new(&pts, &phis, a.number_of_neighbours, a.interpolate_displacements) else {
                bail!("{}: no point with a return status ≥ {} and a finite, invertible Φ", a.phi_file.display(), a.return_status_threshold);
            };
            // About 4 M voxels per piece: the source positions of a piece are held at once.
            let depth = (4_000_000 / (s[1] * s[2]).max(1)).max(1);
            write_planes(&im, &mut outs, &out, a.read.progress(), depth, |z0, z1| {
                let mut planes = field_deformed_planes(&im, &warp, a.interpolation_order, z0, z1)?;
                if crate::kernels::plane::is_plane(s) {
                    // spam's field warp writes into the image's own type: rounded (SciPy).
                    crate::kernels::plane::round_to_type(&mut planes, im.dtype());
                }
                if let Some(m) = &mask2 {
                    let keep = m.read_box(z0 as i64..z1 as i64, 0..s[1] as i64, 0..s[2] as i64)?;
                    for (v, k) in planes.iter_mut().zip(keep.iter()) {
                        if !(*k != 0.0) {
                            *v = 0.0;
                        }
                    }
                }
                Ok(planes)
            })?;
        }
    }
    if let Some(refv) = &reference {
        let deformed = Volume::open(outs.partial_of(&out).unwrap_or(&out), cache.clone())?;
        let span = {
            let (lo, hi) = crate::view::render::default_contrast(&crate::view::render::PairView::new(refv, &im, 1)?)?;
            (hi - lo) / 2.0
        };
        let reference = a.png_against.as_deref().unwrap_or(Path::new(""));
        let figures = [
            ("residual before deformation", format!("|REF − IMAGE|: REF {}, IMAGE {}", reference.display(), a.image.display())),
            ("residual after deformation", format!("|REF − deformed IMAGE|: REF {}, deformed by {}", reference.display(), a.phi_file.display())),
        ];
        for ((path, moved), (title, what)) in png_paths.iter().zip([&im, &deformed]).zip(figures) {
            let view = crate::view::render::PairView::new(refv, moved, 1)?;
            let title = format!("{}: {title}", out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
            crate::view::plot::residual_figure(&view, &phi::identity(), span, &title, &[what])?.write(&mut outs, path)?;
        }
    }
    let written = outs.commit()?;
    for p in &written {
        crate::note!("wrote {}", p.display());
    }
    a.read.report(&cache);
    let s = im.shape();
    Ok(Some(format!(
        "deform-image: {} ({}×{}×{}) by {} {} → {}{}",
        a.image.display(),
        s[0],
        s[1],
        s[2],
        if is_field { "the field" } else { "the registration" },
        a.phi_file.display(),
        out.display(),
        if written.len() > 1 { format!(" and {} residual PNGs", written.len() - 1) } else { String::new() }
    )))
}
