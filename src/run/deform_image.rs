//! spam-deformImage as a library call: a resolved [`DeformJob`] (an image deformed by a
//! registration, by a measured field per voxel, or through a tetrahedral mesh) run into one
//! output; and the writer under it, a volume deformed by one Φ (or computed plane by plane by
//! any warp) written slab by slab as a TIFF or an OME-Zarr store with its pyramid, through the
//! run's output set. Used by `deform-image`, `reg -def` and the browser pages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::field::PhiField;
use crate::kernels::deform::{deformed_planes, field_deformed_planes, FieldWarp};
use crate::phi::{self, Phi};
use crate::store::cache::ChunkCache;
use crate::store::output::Existing;
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

/// Where a deformed image goes.
#[derive(Clone, Debug, Serialize)]
pub enum DeformOutput {
    /// A path given by the user (replaced only with `overwrite`).
    Given { path: PathBuf, overwrite: bool },
    /// spam's name, `<dir>/<prefix>-<suffix>.tif` with the suffix of the mode (`reg-def`,
    /// `def`, `disp-def`, `tetMesh-def`), rewritten as spam does.
    Spam { dir: PathBuf, prefix: String },
}

/// A deformation, resolved from the command line (or built by a script).
#[derive(Clone, Debug, Serialize)]
pub struct DeformJob {
    pub image: PathBuf,
    /// A registration (one row) or a measured field, and its bin ratio.
    pub phi_file: PathBuf,
    pub phi_file_bin_ratio: f64,
    /// Field mode: points with a lower return status are not used.
    pub return_status_threshold: i64,
    /// Field mode: points farther than this from the image's Z axis are not used.
    pub radius: Option<f64>,
    /// Field mode: neighbours averaged for each voxel.
    pub number_of_neighbours: usize,
    /// Field mode: displacements only, not each point's F.
    pub interpolate_displacements: bool,
    /// Field mode: through a Delaunay mesh of the points, with CGAL's alpha and the grey
    /// correction by volume change.
    pub triangulation: bool,
    pub triangulation_alpha: f64,
    pub correct_grey_for_strain: bool,
    /// Field mode per voxel: only the non-zero voxels of this mask of the deformed image.
    pub mask_file2: Option<PathBuf>,
    /// A registration's rigid part only.
    pub rigid_only: bool,
    pub interpolation_order: usize,
    pub output: DeformOutput,
    /// Residual pictures against this reference, before and after.
    pub png_against: Option<PathBuf>,
}

/// What a deformation wrote.
pub struct Deformed {
    pub output: PathBuf,
    /// By a field (else by a registration).
    pub by_field: bool,
    pub shape: [usize; 3],
    /// Every file committed (the image first, then any residual picture).
    pub written: Vec<PathBuf>,
}

/// How an image is deformed, decided from the field and the image.
struct Mode {
    by_field: bool,
    mesh: bool,
}

impl Mode {
    fn of(job: &DeformJob, field: &PhiField, shape: [usize; 3]) -> Result<Mode> {
        let by_field = field.len() > 1;
        if job.correct_grey_for_strain && !job.triangulation {
            bail!("--correct-grey-for-strain (-cgs) works on the tetrahedral mesh only: add --triangulation (-tet)");
        }
        // spam deforms a single-slice image per pixel even when asked for the mesh.
        let mesh = by_field && job.triangulation && !crate::kernels::plane::is_plane(shape);
        if job.triangulation && !mesh {
            crate::say::warn(format_args!(
                "--triangulation (-tet) ignored {}: deformed {}, as spam does",
                if by_field { "for a 2D image" } else { "for a registration" },
                if by_field { "per pixel" } else { "by its one Φ" }
            ));
        }
        if job.triangulation_alpha != 0.0 && !job.triangulation {
            crate::say::warn(format_args!("--triangulation-alpha-value (-a) applies to --triangulation (-tet) only; ignored"));
        }
        Ok(Mode { by_field, mesh })
    }

    /// spam's output suffix.
    fn suffix(&self, job: &DeformJob) -> &'static str {
        if !self.by_field {
            "reg-def"
        } else if self.mesh {
            "tetMesh-def"
        } else if job.interpolate_displacements {
            "disp-def"
        } else {
            "def"
        }
    }
}

/// Runs the job: the image deformed into its output (and the residual pictures asked for),
/// committed together.
pub fn run(job: &DeformJob, cache: &Arc<ChunkCache>, progress: bool) -> Result<Deformed> {
    let im = Volume::open(&job.image, cache.clone())?;
    if !(job.phi_file_bin_ratio > 0.0) {
        bail!("--phi-file-bin-ratio must be positive");
    }
    let mut field = PhiField::read(&job.phi_file)?;
    let mode = Mode::of(job, &field, im.shape())?;
    let (out, existing) = match &job.output {
        DeformOutput::Given { path, overwrite } => (path.clone(), Existing::overwrite_if(*overwrite)),
        DeformOutput::Spam { dir, prefix } => {
            std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: cannot create output folder ({e})", dir.display()))?;
            (dir.join(format!("{prefix}-{}.tif", mode.suffix(job))), Existing::Replace)
        }
    };
    // An output named by the user is replaced only when asked; spam's default name is
    // rewritten as spam does. Either way only by one of its kind, never a folder.
    let mut outs = OutputSet::new(existing);
    outs.inputs([job.image.as_path(), job.phi_file.as_path()].into_iter().chain(job.png_against.as_deref()));
    reserve(&mut outs, &out)?;
    let base = out.with_extension("");
    let png_paths: Vec<PathBuf> = ["before", "after"].iter().map(|name| PathBuf::from(format!("{}-residual-{name}.png", base.display()))).collect();
    // The reference and the mask are checked before anything is written.
    let reference = job.png_against.as_ref().map(|r| Volume::open_matching(r, cache, im.shape(), "reference image")).transpose()?;
    if reference.is_some() {
        for p in &png_paths {
            outs.file(p)?;
        }
    }
    let mask2 = match &job.mask_file2 {
        Some(m) if mode.by_field && !mode.mesh => Some(Volume::open_matching(m, cache, im.shape(), "mask of the deformed image")?),
        Some(m) => {
            crate::say::warn(format_args!("{}: --mask-file2 applies to a field deformed per voxel; ignored {}, as spam does", m.display(), if mode.by_field { "with --triangulation" } else { "for a registration" }));
            None
        }
        None => None,
    };
    if let Some(m) = &job.mask_file2 {
        outs.inputs([m.as_path()]);
    }
    if !mode.by_field {
        let reg = PhiField::read_registration(&job.phi_file, job.phi_file_bin_ratio)?;
        let p = if job.rigid_only { phi::rigid_part(&reg.phis[0]) } else { reg.phis[0] };
        let c = reg.positions[0];
        // spam applies a registration to a 2D image with its Python warp at order 3 (cubic
        // B-spline), whatever -o says.
        let order = if crate::kernels::plane::is_plane(im.shape()) { 3 } else { job.interpolation_order };
        deform_to(&im, &p, [c[0], c[1], c[2]], order, &mut outs, &out, progress)?;
    } else {
        field.rescale(job.phi_file_bin_ratio);
        deform_by_field(job, &field, &im, mode.mesh, mask2.as_ref(), &mut outs, &out, progress)?;
    }
    if let Some(refv) = &reference {
        let partial = outs.partial_of(&out).unwrap_or(&out).to_path_buf();
        residual_pictures(job, refv, &im, cache, &partial, &png_paths, &out, &mut outs)?;
    }
    let written = outs.commit()?;
    Ok(Deformed { output: out, by_field: mode.by_field, shape: im.shape(), written })
}

/// The points of a field a deformation uses: status at least the threshold, not the
/// background label, within the radius of the image's Z axis.
fn used_points(job: &DeformJob, field: &PhiField, shape: [usize; 3]) -> Vec<usize> {
    let axis = ((shape[1] as f64 - 1.0) / 2.0, (shape[2] as f64 - 1.0) / 2.0);
    (0..field.len())
        .filter(|&i| field.return_status[i].at_least(job.return_status_threshold) && !(field.layout.is_labels() && field.ids[i] == 0))
        .filter(|&i| job.radius.is_none_or(|r| ((field.positions[i][1] - axis.0).powi(2) + (field.positions[i][2] - axis.1).powi(2)).sqrt() <= r))
        .collect()
}

/// A field's deformation: through the tetrahedral mesh, or per voxel by the nearest points.
#[allow(clippy::too_many_arguments)]
fn deform_by_field(job: &DeformJob, field: &PhiField, im: &Volume, mesh: bool, mask2: Option<&Volume>, outs: &mut OutputSet, out: &Path, progress: bool) -> Result<()> {
    let s = im.shape();
    let keep = used_points(job, field, s);
    let pts: Vec<_> = keep.iter().map(|&i| field.positions[i]).collect();
    let phis: Vec<_> = keep.iter().map(|&i| field.phis[i]).collect();
    // About 4 M voxels per piece: the source positions of a piece are held at once.
    let depth = (4_000_000 / (s[1] * s[2]).max(1)).max(1);
    if mesh {
        let disp: Vec<_> = phis.iter().map(phi::translation).collect();
        let warp = crate::kernels::tetmesh::TetWarp::new(&pts, &disp, job.triangulation_alpha, job.correct_grey_for_strain).map_err(|e| anyhow!("{}: {e}", job.phi_file.display()))?;
        crate::note!("{} points, {} tetrahedra", pts.len(), warp.len());
        return write_planes(im, outs, out, progress, depth, |z0, z1| crate::kernels::tetmesh::tet_deformed_planes(im, &warp, z0, z1));
    }
    let Some(warp) = FieldWarp::new(&pts, &phis, job.number_of_neighbours, job.interpolate_displacements) else {
        bail!("{}: no point with a return status ≥ {} and a finite, invertible Φ", job.phi_file.display(), job.return_status_threshold);
    };
    write_planes(im, outs, out, progress, depth, |z0, z1| {
        let mut planes = field_deformed_planes(im, &warp, job.interpolation_order, z0, z1)?;
        if crate::kernels::plane::is_plane(s) {
            // spam's field warp writes into the image's own type: rounded (SciPy).
            crate::kernels::plane::round_to_type(&mut planes, im.dtype());
        }
        if let Some(m) = mask2 {
            let keep = m.read_box(z0 as i64..z1 as i64, 0..s[1] as i64, 0..s[2] as i64)?;
            for (v, k) in planes.iter_mut().zip(keep.iter()) {
                if !(*k != 0.0) {
                    *v = 0.0;
                }
            }
        }
        Ok(planes)
    })
}

/// |REF − IMAGE| and |REF − deformed IMAGE| on the three middle slices.
#[allow(clippy::too_many_arguments)]
fn residual_pictures(job: &DeformJob, refv: &Volume, im: &Volume, cache: &Arc<ChunkCache>, partial: &Path, png_paths: &[PathBuf], out: &Path, outs: &mut OutputSet) -> Result<()> {
    let deformed = Volume::open(partial, cache.clone())?;
    let span = {
        let (lo, hi) = crate::view::render::default_contrast(&crate::view::render::PairView::new(refv, im, 1)?)?;
        (hi - lo) / 2.0
    };
    let reference = job.png_against.as_deref().unwrap_or(Path::new(""));
    let figures = [
        ("residual before deformation", format!("|REF − IMAGE|: REF {}, IMAGE {}", reference.display(), job.image.display())),
        ("residual after deformation", format!("|REF − deformed IMAGE|: REF {}, deformed by {}", reference.display(), job.phi_file.display())),
    ];
    for ((path, moved), (title, what)) in png_paths.iter().zip([im, &deformed]).zip(figures) {
        let view = crate::view::render::PairView::new(refv, moved, 1)?;
        let title = format!("{}: {title}", out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
        crate::view::plot::residual_figure(&view, &phi::identity(), span, &title, &[what])?.write(outs, path)?;
    }
    Ok(())
}
