//! spam-ddic as a library call: a resolved [`DdicJob`] (the label image's table, every label's
//! centre and guess, the solver) correlated label by label through the
//! [pipeline](super::pipeline), giving the label table, spam's glyph VTK and the `-d` report.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use nalgebra::Vector3;
use serde::Serialize;

use super::guesses::{from_registration, read_label_guess, LabelGuess, DDIC_TOLERANCE};
use super::pipeline::{serialize_phis, serialize_points, BoxSet, Context, Correlation, Planned, PointKernel, Sides};
use crate::distribute::{JobPrint, RunOptions};
use crate::field::grid_files::{FilesLayout, FilesRequest, GridFiles};
use crate::field::parquet::FieldMeta;
use crate::field::{FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::discrete::{correlate_label, label_boxes, DiscreteOptions};
use crate::kernels::register::{image_centre, RegisterOptions};
use crate::kernels::register_volume::{register_multiscale, MultiscaleOptions};
use crate::label::LabelTable;
use crate::phi::{self, ApplyF, Phi};
use crate::scheduler;
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;

/// Where the guesses came from (recorded in the table's metadata).
#[derive(Clone, Debug, Serialize)]
pub struct DdicGuess {
    pub phi_file: Option<PathBuf>,
    pub bin_ratio: f64,
    pub apply_f: ApplyF,
    /// The whole-image registration (-regbb, -regbe) the guesses came from, if any.
    pub reg_bin_start: Option<usize>,
    pub reg_bin_stop: usize,
}

/// What to write beside the table.
#[derive(Clone, Debug, Serialize)]
pub struct DdicFiles {
    pub dir: PathBuf,
    pub prefix: String,
    pub tsv: bool,
    /// spam's glyph file (not on a shard: `merge --vtk-out` writes it).
    pub vtk: bool,
    pub png: bool,
    /// spam's `-d` report of the first labels.
    pub debug: bool,
}

/// A ddic run, resolved.
#[derive(Clone, Debug, Serialize)]
pub struct DdicJob {
    pub im1: PathBuf,
    pub lab1: PathBuf,
    pub im2: PathBuf,
    /// Every label's box, volume and centre of mass (entry l is label l).
    pub table: LabelTable,
    /// Centres of mass (NaN for missing labels, row 0 the background).
    #[serde(serialize_with = "serialize_points")]
    pub positions: Vec<Vector3<f64>>,
    #[serde(serialize_with = "serialize_phis")]
    pub guesses: Vec<Phi>,
    pub guess: DdicGuess,
    pub skip: bool,
    /// `--keep-neighbour-edges` as asked (recorded; `options.neighbour_reach` is what it does).
    pub keep_neighbour_edges: bool,
    /// The label field whose converged rows `--skip` keeps (named by `guess.phi_file`).
    #[serde(skip)]
    pub kept: Option<PhiField>,
    pub options: DiscreteOptions,
    pub files: DdicFiles,
    pub run: RunOptions,
}

/// The outcome of a run.
pub struct DdicSummary {
    pub line: String,
    pub counts: std::collections::BTreeMap<crate::field::Status, usize>,
}

/// The guesses of every label (and the field `--skip` keeps), from a `-regbb` registration
/// (`registration`: Φ and its centre) or the `-pf` file.
pub fn label_guesses(table: &LabelTable, guess: &DdicGuess, skip: bool, registration: Option<(Phi, Vector3<f64>)>) -> Result<(Vec<Vector3<f64>>, Vec<Phi>, Option<PhiField>)> {
    let positions = table.positions();
    if let Some((phi, centre)) = registration {
        let g = from_registration(&phi, &centre, &positions, guess.apply_f);
        return Ok((positions, g, None));
    }
    let Some(path) = &guess.phi_file else {
        if skip {
            bail!("--skip (-skp) needs a label field as --phi-file (-pf)");
        }
        let n = positions.len();
        return Ok((positions, vec![Phi::identity(); n], None));
    };
    match read_label_guess(path, guess.bin_ratio, guess.apply_f, &positions, DDIC_TOLERANCE, "ddic")? {
        LabelGuess::Registration(_) if skip => bail!("{}: --skip (-skp) needs a label field, this is a registration", path.display()),
        LabelGuess::Registration(g) => Ok((positions, g, None)),
        LabelGuess::Field(f) => Ok((positions, f.phis.clone(), skip.then_some(*f))),
    }
}

/// The whole-image registration of -regbb/-regbe, started from a -pf registration if any:
/// its Φ and the image centre it is about.
pub fn initial_registration(im1: &Volume, im2: &Volume, guess: &DdicGuess, start: usize) -> Result<(Phi, Vector3<f64>)> {
    let init = match &guess.phi_file {
        Some(p) => {
            let f = PhiField::read_registration(p, guess.bin_ratio).map_err(|e| anyhow::anyhow!("--reg-bin-start (-regbb) takes a registration as --phi-file: {e:#}"))?;
            Some(f.phis[0])
        }
        None => None,
    };
    let o = MultiscaleOptions { bin_start: start, bin_stop: guess.reg_bin_stop, margin: None, single: RegisterOptions::default() };
    let r = register_multiscale(im1, im2, None, init.as_ref(), 1.0, &o)?;
    if r.return_status.code() < 0 {
        bail!(
            "{} → {}: the initial registration (-regbb {start} -regbe {}) failed with status {}; run `dvc-stream reg` with other settings and pass its result as -pf",
            im1.path().display(),
            im2.path().display(),
            guess.reg_bin_stop,
            r.return_status
        );
    }
    let t = phi::translation(&r.phi);
    crate::note!("initial registration: t = ({:.4}, {:.4}, {:.4}), status {} after {} iterations", t[0], t[1], t[2], r.return_status, r.iterations);
    Ok((r.phi, image_centre(im1.shape())))
}

struct DdicKernel<'a> {
    job: &'a DdicJob,
    im1: &'a Volume,
    im2: &'a Volume,
    lab: &'a Volume,
}

impl DdicKernel<'_> {
    /// Whether label `l` is correlated (not a converged label kept by --skip).
    fn recompute(&self, l: usize) -> bool {
        self.job.kept.as_ref().is_none_or(|f| f.return_status[l] != crate::field::Status::Converged)
    }
}

impl PointKernel for DdicKernel<'_> {
    fn sides(&self) -> Sides<'_> {
        Sides { image1: vec![self.im1, self.lab], image2: vec![self.im2] }
    }

    fn read_boxes(&self, l: usize, boxes: &mut BoxSet) {
        if l == 0 || !self.recompute(l) {
            return;
        }
        if let Some(b) = label_boxes(&self.job.table, l, &self.job.guesses[l], &self.job.options) {
            boxes.add(((b.lo1, b.hi1), b.image2));
        }
    }

    fn compute(&self, l: usize) -> Result<FieldRow> {
        let j = self.job;
        if l == 0 {
            // The background keeps its initial Φ; everything else is 0.
            return Ok(FieldRow { phi: j.guesses[0], iterations: 0.0, delta_phi_norm: 0.0, ..FieldRow::background() });
        }
        if !self.recompute(l) {
            // --skip: a converged label keeps every value of the input file.
            return Ok(j.kept.as_ref().expect("only --skip keeps rows").row(l));
        }
        let r = correlate_label(self.im1, self.im2, self.lab, &j.table, l, &j.guesses, &j.options)?;
        let row = FieldRow::registered(l as i64, j.positions[l], r.phi, r.error, r.iterations, r.return_status, r.delta_phi_norm);
        Ok(FieldRow { label_dilate: j.options.label_dilate as f64, ..row })
    }
}

/// Correlates every label of `job`; its outputs are committed together at the end, or none.
pub fn run(job: &DdicJob, ctx: &Context) -> Result<DdicSummary> {
    let im1 = Volume::open(&job.im1, ctx.cache.clone())?;
    let lab = Volume::open_matching(&job.lab1, &ctx.cache, im1.shape(), "label image")?;
    let im2 = Volume::open_matching(&job.im2, &ctx.cache, im1.shape(), "image")?;
    let (o, g, f) = (&job.options, &job.guess, &job.files);
    let n = job.positions.len();
    let params = serde_json::json!({
        "im1": job.im1, "lab1": job.lab1, "im2": job.im2, "label_dilate": o.label_dilate, "volume_threshold": o.volume_threshold,
        "phi_file": g.phi_file, "phi_file_bin_ratio": g.bin_ratio, "apply_f": g.apply_f, "reg_bin_start": g.reg_bin_start,
        "reg_bin_stop": g.reg_bin_stop, "margin": o.margin, "max_iterations": o.register.max_iterations, "min_delta_phi": o.register.delta_phi_min,
        "interpolation_order": o.register.order, "non_rigid": !o.register.rigid, "update_gradient": o.register.update_gradient,
        "multiscale_binning": o.bin_start, "mask_others": o.mask_others, "keep_neighbour_edges": job.keep_neighbour_edges, "skip": job.skip, "spam_solver": !o.register.damped,
    });
    let mut meta = FieldMeta::for_command("ddic", params);
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    let pos: Vec<[f64; 3]> = job.positions.iter().map(|p| [p[0], p[1], p[2]]).collect();
    let tiles = scheduler::plan_point_tiles(&pos, im1.chunk_shape(), 32);
    // The resolved job: the kernel's options, every label's centre and guess, the inputs.
    let inputs: Vec<&std::path::Path> = [Some(job.im1.as_path()), Some(job.lab1.as_path()), Some(job.im2.as_path()), g.phi_file.as_deref()].into_iter().flatten().collect();
    let print = JobPrint::new("ddic", o, serde_json::json!({"skip": job.skip}), &job.positions, &job.guesses, &inputs)?;
    let stem = format!("{}-ddic", f.prefix);
    let correlation = Correlation {
        tool: "ddic",
        dir: &f.dir,
        stem: &stem,
        layout: Layout::Ddic,
        kind: FieldKind::Labels,
        tiles,
        points: n,
        print,
        meta,
        tsv: f.tsv,
        whole_field: f.png.then_some("--png"),
    };
    let planned = Planned::plan(&job.run, correlation)?;
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([job.im1.as_path(), job.lab1.as_path(), job.im2.as_path()].into_iter().chain(g.phi_file.as_deref()));
    let kernel = DdicKernel { job, im1: &im1, im2: &im2, lab: &lab };
    let debug = if f.debug {
        if planned.shard().is_some() {
            bail!("-d (--debug) reports labels of a whole run; run it without sharding");
        }
        let correlated = (1..n).filter(|&l| job.table.get(l).is_some() && kernel.recompute(l));
        Some(super::ddic_debug::reserve(&mut outs, &f.dir, &f.prefix, correlated)?)
    } else {
        None
    };
    let mut debug_rows: Vec<Option<FieldRow>> = vec![None; debug.as_ref().map_or(0, |d| d.labels.len())];
    // A shard's labels are not the whole field: `merge --vtk-out` writes the VTK.
    let request = FilesRequest { layout: FilesLayout::DdicGlyphs, dir: f.dir.clone(), stem: stem.clone(), grid: None, vtk: f.vtk && planned.shard().is_none(), tiff: false };
    let mut files = GridFiles::reserve(&mut outs, request)?;
    let done = planned.run(&kernel, &mut outs, ctx, |row| {
        files.push(row);
        if let Some(k) = debug.as_ref().and_then(|d| d.labels.binary_search(&(row.id as usize)).ok()) {
            debug_rows[k] = Some(row.clone());
        }
    })?;
    files.write(&mut outs)?;
    // Named once they are committed, not while they are still .partial.
    let mut extra = Vec::new();
    if let Some(d) = &debug {
        let rows: Vec<FieldRow> = debug_rows.into_iter().map(|r| r.context("a reported label has no result row")).collect::<Result<_>>()?;
        let inputs = super::ddic_debug::Inputs { im1: &im1, im2: &im2, lab: &lab, table: &job.table, guesses: &job.guesses, options: o };
        extra.extend(super::ddic_debug::write(d, &mut outs, &rows, &inputs)?);
    }
    let table = f.dir.join(format!("{stem}.parquet"));
    if f.png {
        extra.extend(crate::view::plot::quicklook(&mut outs, &table)?);
    }
    outs.commit()?;
    for p in &extra {
        crate::note!("wrote {}", p.display());
    }
    done.job.complete()?;
    let line = format!(
        "ddic {} → {}: {}, returnStatus {} → {}",
        job.im1.display(),
        job.im2.display(),
        crate::say::work(n - 1, done.replayed, done.secs, done.threads, "labels"),
        crate::say::statuses(&done.counts),
        table.display()
    );
    Ok(DdicSummary { line, counts: done.counts })
}
