//! spam-reg as a library call: a resolved [`RegJob`] (two volumes, the guess, the mask, the
//! multiscale options, which outputs) registered and written, giving the result. `reg` builds
//! the job from its flags; `demo` and scripts build it directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use nalgebra::Vector3;
use serde::Serialize;

use crate::field::parquet::{self, FieldMeta};
use crate::field::{tsv, FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::gradient::GradientMethod;
use crate::kernels::register::{image_centre, RegisterOptions, RegisterResult};
use crate::kernels::register_volume::{centre_of_mass, max_value, register_multiscale_with, JournalRow, MultiscaleExtras, MultiscaleOptions};
use crate::phi::{self, Phi};
use crate::store::cache::ChunkCache;
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;

/// A registration, resolved: what is read, how it is registered, what is written where.
#[derive(Clone, Debug, Serialize)]
pub struct RegJob {
    pub im1: PathBuf,
    pub im2: PathBuf,
    /// An initial registration (one row) and its bin ratio (spam's `-pf`, `-pfb`).
    pub phi_file: Option<PathBuf>,
    pub phi_file_bin_ratio: f64,
    /// Mask of image 1 (0 = excluded).
    pub mask_file1: Option<PathBuf>,
    /// spam's `-rmc`: Φ at the centre of mass of the mask instead of the image centre.
    pub return_phi_mask_centre: bool,
    pub options: MultiscaleOptions,
    /// Write every evaluated Φ as `<prefix>-registration-iterations.tsv` (spam's `-j`).
    pub journal: bool,
    /// Residual PNGs before and after.
    pub png: bool,
    /// Where image 1 deformed by the result goes, if asked (spam's `-def`:
    /// `<out_dir>/<im1>-reg-def.tif`); written only when the registration has a positive status.
    pub deformed_image: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub prefix: String,
}

impl RegJob {
    /// spam-reg's defaults (bins 4 → 1, identity guess, no mask, spam's solver options),
    /// writing `<out_dir>/<prefix>-registration.tsv` and `.parquet`.
    pub fn new(im1: &Path, im2: &Path, out_dir: &Path, prefix: &str) -> RegJob {
        RegJob {
            im1: im1.to_path_buf(),
            im2: im2.to_path_buf(),
            phi_file: None,
            phi_file_bin_ratio: 1.0,
            mask_file1: None,
            return_phi_mask_centre: false,
            options: MultiscaleOptions { bin_start: 4, bin_stop: 1, margin: None, single: RegisterOptions::default() },
            journal: false,
            png: false,
            deformed_image: None,
            out_dir: out_dir.to_path_buf(),
            prefix: prefix.to_string(),
        }
    }

    pub fn tsv_path(&self) -> PathBuf {
        self.out_dir.join(format!("{}-registration.tsv", self.prefix))
    }

    /// The parameters a table records (keys of newer options only when used, so that older
    /// runs' metadata is unchanged).
    fn parameters(&self) -> serde_json::Value {
        let (o, s) = (&self.options, &self.options.single);
        let mut params = serde_json::json!({
            "im1": self.im1, "im2": self.im2, "bin_start": o.bin_start, "bin_stop": o.bin_stop, "phi_file": self.phi_file,
            "phi_file_bin_ratio": self.phi_file_bin_ratio, "mask_file1": self.mask_file1, "margin": o.margin, "rigid": s.rigid,
            "update_gradient": s.update_gradient, "max_iterations": s.max_iterations, "min_delta_phi": s.delta_phi_min,
            "interpolation_order": s.order,
        });
        if let GradientMethod::Gaussian { sigma } = s.gradient {
            params["gradient_method"] = "gaussian".into();
            params["gaussian_sigma"] = sigma.into();
        }
        if self.return_phi_mask_centre && self.mask_file1.is_some() {
            params["return_phi_mask_centre"] = true.into();
        }
        if s.shift {
            params["shift"] = true.into();
        }
        params
    }
}

/// What a registration gave.
pub struct RegOutcome {
    pub result: RegisterResult,
    /// Where the table puts Φ: the image centre, or the mask's centre of mass (`-rmc`).
    pub position: Vector3<f64>,
    /// Φ's translation at `position` and its decomposition there.
    pub translation: Vector3<f64>,
    pub decomposition: phi::Decomposition,
    /// The files written, the TSV first.
    pub wrote: Vec<PathBuf>,
}

/// The outputs of a job, reserved (and checked) before any work starts.
struct RegOutputs {
    set: OutputSet,
    tsv: PathBuf,
    parquet: PathBuf,
    journal: PathBuf,
    pngs: Vec<PathBuf>,
}

fn reserve(job: &RegJob) -> Result<RegOutputs> {
    std::fs::create_dir_all(&job.out_dir).map_err(|e| anyhow::anyhow!("{}: cannot create output folder ({e})", job.out_dir.display()))?;
    let mut set = OutputSet::new(Existing::Replace);
    set.inputs([job.im1.as_path(), job.im2.as_path()].into_iter().chain(job.phi_file.as_deref()).chain(job.mask_file1.as_deref()));
    let dir = &job.out_dir;
    let mut outs = RegOutputs {
        tsv: job.tsv_path(),
        parquet: dir.join(format!("{}-registration.parquet", job.prefix)),
        journal: dir.join(format!("{}-registration-iterations.tsv", job.prefix)),
        pngs: if job.png { ["before", "after"].iter().map(|n| dir.join(format!("{}-residual-{n}.png", job.prefix))).collect() } else { vec![] },
        set,
    };
    outs.set.file(&outs.tsv)?;
    outs.set.file(&outs.parquet)?;
    if job.journal {
        outs.set.file(&outs.journal)?;
    }
    for p in &outs.pngs {
        outs.set.file(p)?;
    }
    if let Some(p) = &job.deformed_image {
        super::deform_image::reserve(&mut outs.set, p)?;
    }
    Ok(outs)
}

/// `-rmc`: the centre of mass of the mask's largest value (spam's script takes
/// `centresOfMass(mask)[-1]`); without a mask spam ignores -rmc.
fn mask_centre(job: &RegJob, mask: Option<&Volume>) -> Result<Option<Vector3<f64>>> {
    match (mask, job.return_phi_mask_centre) {
        (Some(m), true) => {
            let top = max_value(m)?;
            let n = m.shape().map(|v| v as i64);
            let com = centre_of_mass(m, [0; 3], n, |v| v == top && v != 0.0)?;
            if com.is_none() {
                bail!("{}: the mask is empty; --return-phi-mask-centre (-rmc) needs its centre of mass", job.mask_file1.as_ref().expect("mask given").display());
            }
            Ok(com)
        }
        (None, true) => {
            crate::say::warn(format_args!("--return-phi-mask-centre (-rmc) without --mask-file1 (-mf1): Φ is at the image centre, as spam"));
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Runs the job: registers, writes the table (TSV and Parquet), the journal, the residual
/// pictures and the deformed image asked for, and commits them together.
pub fn run(job: &RegJob, cache: &Arc<ChunkCache>, progress: bool) -> Result<RegOutcome> {
    let im1 = Volume::open(&job.im1, cache.clone())?;
    // A 2D image (one slice) is registered in spam's 2-D mode: the 6 in-plane parameters.
    let two_d = crate::kernels::plane::is_plane(im1.shape());
    let im2 = Volume::open_matching(&job.im2, cache, im1.shape(), "image")?;
    let mask = job.mask_file1.as_ref().map(|p| Volume::open_matching(p, cache, im1.shape(), "mask")).transpose()?;
    let centre = image_centre(im1.shape());
    let mask_centre = mask_centre(job, mask.as_ref())?;
    let mut outs = reserve(job)?;
    // The guess is defined at its own centre: express it at this image's centre.
    let init = match &job.phi_file {
        Some(p) => {
            let f = PhiField::read_registration(p, job.phi_file_bin_ratio)?;
            Some(phi::move_to(&f.phis[0], &f.positions[0], &centre))
        }
        None => None,
    };
    let mut extras = MultiscaleExtras { mask_centre: mask_centre.is_some(), journal: job.journal.then(Vec::new) };
    let r = register_multiscale_with(&im1, &im2, mask.as_ref(), init.as_ref(), 1.0, &job.options, &mut extras)?;
    // The table's Φ is about its position; the pictures and -def take it about the centre.
    let (position, phi_at_centre) = match &mask_centre {
        Some(com) => (*com, phi::move_to(&r.phi, com, &centre)),
        None => (centre, r.phi),
    };
    let mut field = PhiField::new(FieldKind::Registration, Layout::Registration);
    field.push(FieldRow::registered(1, position, r.phi, r.error, r.iterations, r.return_status, r.delta_phi_norm));
    tsv::write_field(&outs.set.file(&outs.tsv)?, &field)?;
    if let Some(rows) = &extras.journal {
        write_journal(&outs.set.file(&outs.journal)?, rows)?;
    }
    let mut meta = FieldMeta::for_command("reg", job.parameters());
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    parquet::write_field(&outs.set.file(&outs.parquet)?, &field, &meta)?;
    let mut wrote = vec![outs.tsv.clone()];
    if job.png {
        residual_pictures(job, &im1, &im2, [init.unwrap_or_else(phi::identity), phi_at_centre], &r, &mut outs)?;
        wrote.extend(outs.pngs.iter().cloned());
    }
    if let Some(deformed) = &job.deformed_image {
        if r.return_status.code() > 0 {
            // spam deforms a 2D image with its Python warp at order 3 (cubic B-spline).
            let order = if two_d { 3 } else { 1 };
            super::deform_image::deform_to(&im1, &phi_at_centre, [centre[0], centre[1], centre[2]], order, &mut outs.set, deformed, progress)?;
            wrote.push(deformed.clone());
        } else {
            outs.set.release(deformed)?;
            crate::say::warn(format_args!("not writing the deformed image: returnStatus {} ≤ 0", r.return_status));
        }
    }
    outs.set.commit()?;
    let (translation, decomposition) = phi::decompose_phi(&r.phi, &position, &position);
    Ok(RegOutcome { result: r, position, translation, decomposition, wrote })
}

/// The residual |im1 − im2(Φx)| on the three middle slices, with the guess (`phis[0]`, about
/// the centre) and with the result (`phis[1]`).
fn residual_pictures(job: &RegJob, im1: &Volume, im2: &Volume, phis: [Phi; 2], r: &RegisterResult, outs: &mut RegOutputs) -> Result<()> {
    let view = crate::view::render::PairView::new(im1, im2, 1)?;
    let (lo, hi) = crate::view::render::default_contrast(&view)?;
    let names = format!("im1 {}, im2 {}", job.im1.display(), job.im2.display());
    let before_what = if job.phi_file.is_some() { "|im1 − im2(Φ₀x)| with the initial guess (-pf)" } else { "|im1 − im2|, no registration (identity Φ)" };
    let prefix = &job.prefix;
    let figures = [
        (format!("{prefix}: residual before registration"), before_what.to_string()),
        (format!("{prefix}: residual after registration"), format!("|im1 − im2(Φx)| with the registered Φ (returnStatus {})", r.return_status)),
    ];
    for ((path, p), (title, what)) in outs.pngs.iter().zip(phis).zip(figures) {
        crate::view::plot::residual_figure(&view, &p, (hi - lo) / 2.0, &title, &[what, names.clone()])?.write(&mut outs.set, path)?;
    }
    Ok(())
}

/// spam's `-j` journal as a table: one row per evaluated Φ of every level, Φ about the
/// level's image centre with its translation in that level's voxels.
fn write_journal(path: &Path, rows: &[JournalRow]) -> Result<()> {
    use std::fmt::Write as _;
    let mut text = String::from("bin\titeration\terror\tdeltaPhiNorm\tFzz\tFzy\tFzx\tZdisp\tFyz\tFyy\tFyx\tYdisp\tFxz\tFxy\tFxx\tXdisp\n");
    for r in rows {
        write!(text, "{}\t{}\t{:.9e}\t{:.9e}", r.bin, r.iteration, r.error, r.delta_phi_norm).expect("writes to a String");
        for i in 0..3 {
            for j in 0..4 {
                write!(text, "\t{:.9}", r.phi[(i, j)]).expect("writes to a String");
            }
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
