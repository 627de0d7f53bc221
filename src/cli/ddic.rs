//! `dvc-stream ddic IM1 LAB1 IM2`: spam-ddic — one Φ per labelled grain, each label's boxes
//! streamed through the chunk cache by the tile scheduler.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use nalgebra::Vector3;

use super::output_names::{open_matching, read_registration, stem};
use super::ReadOpts;
use crate::field::parquet::FieldMeta;
use crate::field::sink::print_statuses;
use crate::field::vtk::{self, VtkArray, VtkValues};
use crate::field::{FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::discrete::{correlate_label, label_boxes, DiscreteOptions};
use crate::kernels::local::PointResult;
use crate::kernels::register::{image_centre, RegisterOptions};
use crate::kernels::register_volume::{register_multiscale, MultiscaleOptions};
use crate::label::LabelTable;
use crate::phi::{self, ApplyF, Phi};
use crate::scheduler::{self, BoxUnion};
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;

#[derive(Args, Debug)]
pub struct DdicArgs {
    /// Greyscale image of the reference state.
    pub im1: PathBuf,
    /// Labelled image of the reference state (0 = background).
    pub lab1: PathBuf,
    /// Greyscale image of the deformed state.
    pub im2: PathBuf,
    /// Dilation of each label's mask, voxels (negative erodes) [spam: -ld].
    #[arg(long = "label-dilate", default_value_t = 1, allow_negative_numbers = true)]
    pub label_dilate: i64,
    /// Labels whose dilated mask has at most this many voxels are not correlated (status −5) [spam: -vt].
    #[arg(long = "volume-threshold", default_value_t = 100)]
    pub volume_threshold: u64,
    /// Guess: a registration (one row) or a label field (ddic or pixel-search -lab1 output) [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: Option<PathBuf>,
    /// Bin ratio of the guess [spam: -pfb].
    #[arg(long = "phi-file-bin-ratio", default_value_t = 1.0, value_parser = super::values::positive_f64)]
    pub phi_file_bin_ratio: f64,
    /// Part of a registration's F given to the labels [spam: -F].
    #[arg(long = "apply-f", value_enum, default_value = "rigid")]
    pub apply_f: ApplyF,
    /// Start with a multiscale registration of the whole images from this binning (its
    /// result is the guess of every label, as a -pf registration would be) [spam: -regbb].
    #[arg(long = "reg-bin-start", value_parser = super::values::power_of_two)]
    pub reg_bin_start: Option<usize>,
    /// Last binning of that registration [spam: -regbe].
    #[arg(long = "reg-bin-stop", default_value_t = 1, value_parser = super::values::power_of_two)]
    pub reg_bin_stop: usize,
    /// Margin around each label's box, voxels [spam: -m].
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    pub margin: i64,
    /// Maximum iterations per label [spam: -it, -lci].
    #[arg(long = "max-iterations", default_value_t = 50)]
    pub max_iterations: usize,
    /// Convergence threshold on ‖δΦ‖ [spam: -dp, -lcp].
    #[arg(long = "min-delta-phi", default_value_t = 0.001, value_parser = super::values::non_negative_f64)]
    pub min_delta_phi: f64,
    /// 1 = trilinear (spam's), 3 = cubic B-spline [spam: -o].
    #[arg(long = "interpolation-order", default_value_t = 1, value_parser = super::parse_order)]
    pub interpolation_order: usize,
    /// Full 12-component Φ per label instead of a rigid motion [spam: -nr].
    #[arg(long = "non-rigid")]
    pub non_rigid: bool,
    /// Recompute the gradient of the deformed image at each iteration [spam: -ug].
    #[arg(long = "update-gradient")]
    pub update_gradient: bool,
    /// First binning of each label's multiscale registration [spam: -msb].
    #[arg(long = "multiscale-binning", default_value_t = 1, value_parser = super::values::power_of_two)]
    pub multiscale_binning: usize,
    /// Keep other labels' voxels in the dilated mask [spam: -dmo].
    #[arg(long = "dont-mask-others")]
    pub dont_mask_others: bool,
    /// Keep the voxels that another label's edge reaches (spam's mask: only other labels'
    /// own voxels are removed). By default a label's mask also loses every voxel within
    /// ld + 1 voxels of another label in image 1, and within ld + 2 of where that label's
    /// guess puts it in image 2: those voxels show the neighbour's edge, which moves with the
    /// neighbour, and pull touching grains towards each other's motion.
    #[arg(long = "keep-neighbour-edges")]
    pub keep_neighbour_edges: bool,
    /// Recompute only labels whose --phi-file status is not 2 [spam: -skp].
    #[arg(long)]
    pub skip: bool,
    /// Per-label report (spam's debug mode, as files): for the first 32 labels correlated, a
    /// row of <pre>-ddic-debug.tsv (position, box, guess and result translations,
    /// iterations, error, status, mean residual on the label before and after) and
    /// <pre>-ddic-debug-label<L>.png, |im1 − im2(Φx)| on the middle slices of the label's box
    /// [spam: -d].
    #[arg(long)]
    pub debug: bool,
    /// Keep the result of spam's Gauss–Newton steps even when they do not converge. By
    /// default such a label (typically one whose rotation the images barely show, such as a
    /// uniform sphere) is registered again with damped steps that must lower the error.
    #[arg(long = "spam-solver")]
    pub spam_solver: bool,
    #[command(flatten)]
    pub out: super::OutputOpts,
    /// Write the VTK glyph file (spam always does; on by default) [spam: -vtk].
    #[arg(long = "vtk-out")]
    pub vtk_out: bool,
    /// Do not write the VTK glyph file.
    #[arg(long = "no-vtk", conflicts_with = "vtk_out")]
    pub no_vtk: bool,
    /// Also write a PNG quicklook: arrows of the grains' displacements across the middle.
    #[arg(long)]
    pub png: bool,
    /// Do not write the spam TSV (the Parquet table is always written).
    #[arg(long = "no-tsv")]
    pub no_tsv: bool,
    #[command(flatten)]
    pub run: super::RunArgs,
    #[command(flatten)]
    pub read: ReadOpts,
}

/// Label positions (centres of mass; NaN for missing labels, 0 for the background) and
/// the guess of every label at its centre of mass, and the field kept for --skip.
struct Plan {
    positions: Vec<Vector3<f64>>,
    guesses: Vec<Phi>,
    keep: Option<PhiField>,
}

fn plan(a: &DdicArgs, table: &LabelTable, registration: Option<(Phi, Vector3<f64>)>) -> Result<Plan> {
    let n = table.max_label() + 1;
    let positions = table.positions();
    let from_registration = |phi: &Phi, centre: &Vector3<f64>| -> Vec<Phi> {
        positions
            .iter()
            .map(|q| if q.iter().all(|v| v.is_finite()) { phi::registration_to_point(phi, centre, q, a.apply_f) } else { Phi::identity() })
            .collect()
    };
    if let Some((phi, centre)) = registration {
        return Ok(Plan { guesses: from_registration(&phi, &centre), positions, keep: None });
    }
    let Some(path) = &a.phi_file else {
        if a.skip {
            bail!("--skip (-skp) needs a label field as --phi-file (-pf)");
        }
        return Ok(Plan { guesses: vec![Phi::identity(); n], positions, keep: None });
    };
    if !(a.phi_file_bin_ratio > 0.0) {
        bail!("--phi-file-bin-ratio (-pfb) must be positive");
    }
    let mut f = PhiField::read(path)?;
    f.rescale(a.phi_file_bin_ratio);
    match f.kind {
        FieldKind::Registration => {
            if a.skip {
                bail!("{}: --skip (-skp) needs a label field, this is a registration", path.display());
            }
            Ok(Plan { guesses: from_registration(&f.phis[0], &f.positions[0]), positions, keep: None })
        }
        FieldKind::Labels => {
            if f.len() != n {
                bail!("{}: has {} rows (labels 0..{}), the label image has labels 0..{}", path.display(), f.len(), f.len().saturating_sub(1), n - 1);
            }
            for l in 1..n {
                let (p, q) = (f.positions[l], positions[l]);
                let same = (0..3).all(|k| (p[k].is_nan() && q[k].is_nan()) || (p[k] - q[k]).abs() <= 0.1);
                if !same {
                    bail!("{}: label {l} is at {:?} but its centre of mass in the label image is {:?} (not the same labels?)", path.display(), p.as_slice(), q.as_slice());
                }
            }
            let guesses = f.phis.clone();
            Ok(Plan { guesses, positions, keep: a.skip.then_some(f) })
        }
        FieldKind::Grid { .. } => bail!("{}: is a grid field; ddic needs a registration or a label field (pass-phi-field -lab1 makes one)", path.display()),
    }
}

/// The whole-image registration of -regbb/-regbe, started from a -pf registration if any.
fn initial_registration(a: &DdicArgs, im1: &Volume, im2: &Volume, start: usize) -> Result<(Phi, Vector3<f64>)> {
    let init = match &a.phi_file {
        Some(p) => {
            let f = read_registration(p, a.phi_file_bin_ratio).map_err(|e| anyhow::anyhow!("--reg-bin-start (-regbb) takes a registration as --phi-file: {e:#}"))?;
            Some(f.phis[0])
        }
        None => None,
    };
    let o = MultiscaleOptions { bin_start: start, bin_stop: a.reg_bin_stop, margin: None, single: RegisterOptions::default() };
    let r = register_multiscale(im1, im2, None, init.as_ref(), 1.0, &o)?;
    if r.return_status.code() < 0 {
        bail!(
            "{} → {}: the initial registration (-regbb {start} -regbe {}) failed with status {}; run `dvc-stream reg` with other settings and pass its result as -pf",
            im1.path().display(),
            im2.path().display(),
            a.reg_bin_stop,
            r.return_status
        );
    }
    let t = phi::translation(&r.phi);
    crate::note!("initial registration: t = ({:.4}, {:.4}, {:.4}), status {} after {} iterations", t[0], t[1], t[2], r.return_status, r.iterations);
    Ok((r.phi, image_centre(im1.shape())))
}

fn row(l: usize, position: Vector3<f64>, r: &PointResult, label_dilate: i64) -> FieldRow {
    FieldRow { label_dilate: label_dilate as f64, ..FieldRow::registered(l as i64, position, r.phi, r.error, r.iterations, r.return_status, r.delta_phi_norm) }
}

/// How far another label's grey level reaches into a label's mask (image 1, image 2): the
/// dilation is how far a grain's own edge reaches past its label, so a neighbour's reaches as
/// far; one voxel more for the trilinear samples' neighbours, and in image 2 one more for
/// the guess (an integer pixel search is up to half a voxel off on each axis).
fn neighbour_reach(label_dilate: i64) -> [f64; 2] {
    let ld = label_dilate.max(0) as f64;
    [ld + 1.0, ld + 2.0]
}

pub fn run(a: DdicArgs) -> Result<super::Summary> {
    let cache = a.read.cache()?;
    let im1 = Volume::open(&a.im1, cache.clone())?;
    let lab = open_matching(&a.lab1, &cache, im1.shape(), "label image")?;
    let im2 = open_matching(&a.im2, &cache, im1.shape(), "image")?;
    if a.margin < 0 {
        bail!("--margin (-m) must be ≥ 0");
    }
    if a.margin as u64 >= im1.shape().iter().copied().max().unwrap_or(0) as u64 {
        bail!("--margin {}: the search margin is not smaller than the {:?} image", a.margin, im1.shape());
    }
    if a.label_dilate.unsigned_abs() >= im1.shape().iter().copied().max().unwrap_or(0) as u64 {
        bail!("--label-dilate (-ld) {}: not smaller than the {:?} image", a.label_dilate, im1.shape());
    }
    if a.multiscale_binning == 0 {
        bail!("--multiscale-binning (-msb) must be ≥ 1");
    }
    let registration = match a.reg_bin_start {
        Some(b) => Some(initial_registration(&a, &im1, &im2, b)?),
        None => None,
    };
    let table = LabelTable::scan(&lab, a.read.progress())?;
    let plan = plan(&a, &table, registration)?;
    let o = DiscreteOptions {
        margin: a.margin,
        label_dilate: a.label_dilate,
        mask_others: !a.dont_mask_others,
        neighbour_reach: (!a.dont_mask_others && !a.keep_neighbour_edges).then(|| neighbour_reach(a.label_dilate)),
        volume_threshold: a.volume_threshold,
        bin_start: a.multiscale_binning,
        register: RegisterOptions {
            margin: Some([1; 3]),
            max_iterations: a.max_iterations,
            delta_phi_min: a.min_delta_phi,
            update_gradient: a.update_gradient,
            rigid: !a.non_rigid,
            order: a.interpolation_order,
            damped: !a.spam_solver,
            ..RegisterOptions::default()
        },
    };
    let dir = super::output_names::out_dir(&a.out.out_dir, &a.lab1)?;
    let prefix = a.out.prefix.clone().unwrap_or_else(|| format!("{}-{}", stem(&a.im1), stem(&a.im2)));
    let n = plan.positions.len();
    let params = serde_json::json!({
        "im1": a.im1, "lab1": a.lab1, "im2": a.im2, "label_dilate": a.label_dilate, "volume_threshold": a.volume_threshold,
        "phi_file": a.phi_file, "phi_file_bin_ratio": a.phi_file_bin_ratio, "apply_f": a.apply_f, "reg_bin_start": a.reg_bin_start,
        "reg_bin_stop": a.reg_bin_stop, "margin": a.margin, "max_iterations": a.max_iterations, "min_delta_phi": a.min_delta_phi,
        "interpolation_order": a.interpolation_order, "non_rigid": a.non_rigid, "update_gradient": a.update_gradient,
        "multiscale_binning": a.multiscale_binning, "mask_others": !a.dont_mask_others, "keep_neighbour_edges": a.keep_neighbour_edges, "skip": a.skip, "spam_solver": a.spam_solver,
    });
    let mut meta = FieldMeta::for_command("ddic", params.clone());
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    let pos: Vec<[f64; 3]> = plan.positions.iter().map(|p| [p[0], p[1], p[2]]).collect();
    let tiles = scheduler::plan_point_tiles(&pos, im1.chunk_shape(), 32);
    // The resolved job: the kernel's options, every label's centre and guess, the inputs.
    let inputs: Vec<&std::path::Path> = [Some(a.im1.as_path()), Some(a.lab1.as_path()), Some(a.im2.as_path()), a.phi_file.as_deref()].into_iter().flatten().collect();
    let print = crate::distribute::JobPrint::new("ddic", &o, serde_json::json!({"skip": a.skip}), &plan.positions, &plan.guesses, &inputs)?;
    let mut job = crate::distribute::Job::plan(&a.run.resolve()?, &dir, &format!("{prefix}-ddic"), tiles, &print, Layout::Ddic, &FieldKind::Labels)?;
    job.require_whole_field(a.png, "--png")?;
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.im1.as_path(), a.lab1.as_path(), a.im2.as_path()].into_iter().chain(a.phi_file.as_deref()));
    let debug = if a.debug {
        if job.shard().is_some() {
            bail!("-d (--debug) reports labels of a whole run; run it without sharding");
        }
        let correlated = (1..n).filter(|&l| table.get(l).is_some() && plan.keep.as_ref().is_none_or(|f| f.return_status[l] != crate::field::Status::Converged));
        Some(super::ddic_debug::reserve(&mut outs, &dir, &prefix, correlated)?)
    } else {
        None
    };
    let mut debug_rows: Vec<Option<FieldRow>> = vec![None; debug.as_ref().map_or(0, |d| d.labels.len())];
    let mut sink = job.sink(&mut outs, Layout::Ddic, &FieldKind::Labels, &meta, !a.no_tsv, false)?;
    // A shard's labels are not the whole field: `merge --vtk-out` writes the VTK.
    let want_vtk = !a.no_vtk && job.shard().is_none();
    let mut glyphs: Vec<(Vector3<f64>, Vector3<f64>, i64)> = Vec::new();
    let recompute = |l: usize| plan.keep.as_ref().is_none_or(|f| f.return_status[l] != crate::field::Status::Converged);
    let threads = a.read.threads().max(1);
    let bar = crate::progress::bar(n as u64, "ddic", a.read.progress());
    let mut emit = |row: FieldRow| -> Result<()> {
        bar.inc(1);
        if want_vtk {
            glyphs.push((row.position, phi::translation(&row.phi), row.return_status.code().into()));
        }
        if let Some(k) = debug.as_ref().and_then(|d| d.labels.binary_search(&(row.id as usize)).ok()) {
            debug_rows[k] = Some(row.clone());
        }
        sink.push(row)
    };
    // Rows an interrupted run finished (--resume), then the rest.
    let replayed = job.replay(&mut emit)?;
    let (tiles, order) = job.take_work();
    let t0 = Instant::now();
    scheduler::run(
        &tiles,
        &order,
        threads,
        |tile| {
            let (mut b1, mut b2) = (BoxUnion::default(), BoxUnion::default());
            for &l in tile.points.iter().filter(|&&l| l > 0 && recompute(l)) {
                if let Some(b) = label_boxes(&table, l, &plan.guesses[l], &o) {
                    b1.add((b.lo1, b.hi1));
                    if let Some(x2) = b.image2 {
                        b2.add(x2);
                    }
                }
            }
            b1.warm(&im1);
            b1.warm(&lab);
            b2.warm(&im2);
        },
        |tile| {
            tile.points
                .iter()
                .map(|&l| {
                    let r = if l == 0 {
                        None
                    } else if recompute(l) {
                        Some(correlate_label(&im1, &im2, &lab, &table, l, &plan.guesses, &o)?)
                    } else {
                        None
                    };
                    Ok((l, r))
                })
                .collect()
        },
        |l, r| {
            let row = match (l, r, &plan.keep) {
                // The background keeps its initial Φ; everything else is 0.
                (0, _, _) => FieldRow {
                    id: 0,
                    position: Vector3::zeros(),
                    phi: plan.guesses[0],
                    cc: 0.0,
                    error: 0.0,
                    iterations: 0.0,
                    return_status: crate::field::Status::NotRun,
                    delta_phi_norm: 0.0,
                    label_dilate: 0.0,
                    disp_sd: None,
                },
                (_, Some(r), _) => row(l, plan.positions[l], &r, a.label_dilate),
                // --skip: a converged label keeps every value of the input file.
                (_, None, Some(f)) => f.row(l),
                (_, None, None) => unreachable!("every label but the background is correlated without --skip"),
            };
            job.record(&row)?;
            emit(row)
        },
    )?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let (_, counts) = sink.finish()?;
    if want_vtk {
        let fin = |v: &Vector3<f64>| v.map(|x| if x.is_finite() { x } else { 0.0 });
        let disp: Vec<Vector3<f64>> = glyphs.iter().map(|g| fin(&g.1)).collect();
        let arrays = vec![
            VtkArray::new("mag(displacements)", VtkValues::Scalars(disp.iter().map(|d| d.norm()).collect())),
            VtkArray::new("returnStatus", VtkValues::IntScalars(glyphs.iter().map(|g| g.2).collect())),
        ];
        let mut all = vec![VtkArray::new("displacements", VtkValues::Vectors(disp))];
        all.extend(arrays);
        let pts: Vec<Vector3<f64>> = glyphs.iter().map(|g| fin(&g.0)).collect();
        vtk::write(&outs.file(&dir.join(format!("{prefix}-ddic.vtk")))?, &vtk::glyphs(&pts, &all))?;
    }
    // Named once they are committed, not while they are still .partial.
    let mut extra = Vec::new();
    if let Some(d) = &debug {
        let rows: Vec<FieldRow> = debug_rows.into_iter().map(|r| anyhow::Context::context(r, "a reported label has no result row")).collect::<Result<_>>()?;
        let inputs = super::ddic_debug::Inputs { im1: &im1, im2: &im2, lab: &lab, table: &table, guesses: &plan.guesses, options: &o };
        extra.extend(super::ddic_debug::write(d, &mut outs, &rows, &inputs)?);
    }
    if a.png {
        extra.extend(crate::view::plot::quicklook(&mut outs, &dir.join(format!("{prefix}-ddic.parquet")))?);
    }
    outs.commit()?;
    for p in &extra {
        crate::note!("wrote {}", p.display());
    }
    job.complete()?;
    print_statuses(&counts);
    a.read.report(&cache);
    Ok(Some(format!(
        "ddic {} → {}: {}, returnStatus {} → {}",
        a.im1.display(),
        a.im2.display(),
        crate::say::work(n - 1, replayed, secs, threads, "labels"),
        crate::say::statuses(&counts),
        dir.join(format!("{prefix}-ddic.parquet")).display()
    )))
}
