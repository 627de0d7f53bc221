//! `dvc-stream pixel-search IM1 IM2`: spam-pixelSearch — integer search of every grid node
//! or label by normalised cross-correlation, streamed tile by tile through the chunk cache.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use nalgebra::Vector3;

use super::grid_plan;
use super::output_names::{open_matching, out_dir, stem};
use super::ReadOpts;
use crate::field::parquet::FieldMeta;
use crate::field::sink::print_statuses;
use crate::field::vtk::{self, HeaderNum, VtkArray, VtkValues};
use crate::field::{FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::ncc::Method;
use crate::kernels::pixel_search::{label_boxes, point_boxes, search_label, search_point, PixelOptions, PixelResult};
use crate::label::LabelTable;
use crate::phi::{self, ApplyF, Phi};
use crate::scheduler::{self, BoxUnion};
use crate::store::dtype::TypedBuf;
use crate::store::output::{Existing, OutputSet};
use crate::store::tiff_write::write_tiff;
use crate::store::Volume;

/// How every offset's correlation is computed.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SearchMethod {
    /// The cheaper of the two for each window (cost model).
    Auto,
    /// Direct sums over the window for every offset.
    Direct,
    /// FFT cross-correlation.
    Fft,
}

/// Options pixel-search and pixel-search-propagate share.
#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    /// Search range around the rounded guess: Z− Z+ Y− Y+ X− X+ [spam: -sr].
    #[arg(long = "search-range", num_args = 6, allow_negative_numbers = true, value_names = ["Zlo", "Zhi", "Ylo", "Yhi", "Xlo", "Xhi"], default_values_t = [-3, 3, -3, 3, -3, 3])]
    pub search_range: Vec<i64>,
    /// Mask of im1 (0 = excluded) [spam: -mf1].
    #[arg(long = "mask-file1")]
    pub mask_file1: Option<PathBuf>,
    /// Mask of im2 [spam: -mf2].
    #[arg(long = "mask-file2")]
    pub mask_file2: Option<PathBuf>,
    /// Minimum unmasked fraction of window 1 [spam: -mc].
    #[arg(long = "mask-coverage", default_value_t = 0.5, value_parser = super::values::fraction)]
    pub mask_coverage: f64,
    /// Skip windows whose mean grey is ≤ this [spam: -glt].
    #[arg(long = "grey-low-threshold", allow_negative_numbers = true, default_value_t = f64::NEG_INFINITY, value_parser = super::values::threshold_f64)]
    pub grey_low_threshold: f64,
    /// Skip windows whose mean grey is ≥ this [spam: -ght].
    #[arg(long = "grey-high-threshold", allow_negative_numbers = true, default_value_t = f64::INFINITY, value_parser = super::values::threshold_f64)]
    pub grey_high_threshold: f64,
    /// Labelled image 1: search each label instead of grid nodes [spam: -lab1].
    #[arg(long = "labelled-file1")]
    pub labelled_file1: Option<PathBuf>,
    /// Label dilation in voxels [spam: -ld].
    #[arg(long = "label-dilate", default_value_t = 1, allow_negative_numbers = true)]
    pub label_dilate: i64,
    /// Refine each integer peak by a parabola per axis (sub-voxel displacement).
    #[arg(long)]
    pub subvoxel: bool,
    /// Score with the zero-normalised coefficient (each window's mean removed): insensitive
    /// to brightness and contrast changes between scans, and near 0 at wrong offsets, so
    /// CC thresholds mean something. Default: spam's non-centred coefficient.
    #[arg(long = "zero-mean")]
    pub zero_mean: bool,
    /// How the correlations are computed (results are the same; only speed differs).
    #[arg(long, value_enum, default_value = "auto")]
    pub method: SearchMethod,
    #[command(flatten)]
    pub out: super::OutputOpts,
    #[command(flatten)]
    pub files: super::FieldFiles,
    #[command(flatten)]
    pub read: ReadOpts,
}

impl SearchArgs {
    pub fn range(&self) -> Result<([i64; 3], [i64; 3])> {
        let r = &self.search_range;
        let lo = [r[0], r[2], r[4]];
        let hi = [r[1], r[3], r[5]];
        if (0..3).any(|a| lo[a] > hi[a]) {
            bail!("--search-range: a lower bound is above its upper bound ({r:?})");
        }
        Ok((lo, hi))
    }

    /// The search range on an image of this shape: on a 2D image (one plane) the Z range is
    /// 0 whatever `-sr` says, as spam does.
    pub fn range_in(&self, shape: [usize; 3]) -> Result<([i64; 3], [i64; 3])> {
        let (mut lo, mut hi) = self.range()?;
        if shape[0] == 1 {
            lo[0] = 0;
            hi[0] = 0;
        }
        Ok((lo, hi))
    }

    pub fn method(&self) -> Method {
        match self.method {
            SearchMethod::Auto => Method::Auto,
            SearchMethod::Direct => Method::Direct,
            SearchMethod::Fft => Method::Fft,
        }
    }
}

#[derive(Args, Debug)]
pub struct PixelSearchArgs {
    /// Reference image (TIFF, Zarr store or s3://): where the windows are.
    pub im1: PathBuf,
    /// Deformed image searched for each window.
    pub im2: PathBuf,
    #[command(flatten)]
    pub grid: grid_plan::GridArgs,
    /// Guess: a registration (one row), a field on the grid, or a label field [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: Option<PathBuf>,
    /// Bin ratio of the guess [spam: -pfb].
    #[arg(long = "phi-file-bin-ratio", default_value_t = 1.0, value_parser = super::values::positive_f64)]
    pub phi_file_bin_ratio: f64,
    /// Part of the guess's F that deforms window 1 [spam: -F].
    #[arg(long = "apply-f", value_enum, default_value = "all")]
    pub apply_f: ApplyF,
    /// Label mode: labels of at most this many (dilated) voxels are skipped [spam: -lvt].
    #[arg(long = "label-volume-threshold", default_value_t = 100)]
    pub label_volume_threshold: u64,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub run: super::RunArgs,
}

/// Label-mode points and guesses: label centres of mass, row l = label l.
pub fn label_plan(table: &LabelTable, phi_file: &Option<PathBuf>, bin_ratio: f64, apply_f: ApplyF) -> Result<(Vec<Vector3<f64>>, Vec<Phi>)> {
    let n = table.max_label() + 1;
    let positions = table.positions();
    let guesses = match phi_file {
        None => vec![Phi::identity(); n],
        Some(p) => {
            let mut f = PhiField::read(p)?;
            f.rescale(bin_ratio);
            match f.kind {
                FieldKind::Registration => positions.iter().map(|q| if q.iter().all(|v| v.is_finite()) { phi::registration_to_point(&f.phis[0], &f.positions[0], q, apply_f) } else { Phi::identity() }).collect(),
                FieldKind::Labels => {
                    if f.len() != n {
                        bail!("{}: has {} labels, the label image {}", p.display(), f.len(), n);
                    }
                    for l in 1..n {
                        let (a, b) = (f.positions[l], positions[l]);
                        let same = (0..3).all(|k| (a[k].is_nan() && b[k].is_nan()) || (a[k] - b[k]).abs() <= 1.0);
                        if !same {
                            bail!("{}: label {l} is at {:?}, its centre of mass in the label image is {:?}", p.display(), a.as_slice(), b.as_slice());
                        }
                    }
                    f.phis.iter().map(|m| phi::apply_f_mode(m, apply_f)).collect()
                }
                FieldKind::Grid { .. } => bail!("{}: is a grid field; label mode needs a registration or a label field (pass-phi-field -lab1 makes one)", p.display()),
            }
        }
    };
    Ok((positions, guesses))
}

fn row(i: usize, position: Vector3<f64>, r: &PixelResult) -> FieldRow {
    FieldRow {
        id: i as i64,
        position,
        phi: r.phi,
        cc: r.cc,
        error: r.error,
        iterations: 1.0,
        return_status: r.status,
        delta_phi_norm: 1.0,
        label_dilate: 0.0,
        disp_sd: None,
    }
}

/// Label 0 (the background) row: Φ = I, everything else 0 except ‖δΦ‖ and iterations 1.
pub fn background_row() -> FieldRow {
    FieldRow::background()
}

/// The VTK and TIFF files of a pixel-search field (`suffix` = "pixelSearch" or
/// "pixelSearchPropagate").
pub fn write_extras(outs: &mut OutputSet, f: &PhiField, dir: &std::path::Path, prefix: &str, suffix: &str, hws: [usize; 3], spacing: [HeaderNum; 3], vtk_out: bool, tiff_out: bool) -> Result<()> {
    let disp = |finite_only: bool| -> Vec<Vector3<f64>> {
        f.phis.iter().map(|p| phi::translation(p).map(|v| if finite_only && !v.is_finite() { 0.0 } else { v })).collect()
    };
    match &f.kind {
        FieldKind::Grid { dims, .. } => {
            if tiff_out {
                let cols: [(&str, Vec<f64>); 5] = [
                    ("Zdisp", f.phis.iter().map(|p| p[(0, 3)]).collect()),
                    ("Ydisp", f.phis.iter().map(|p| p[(1, 3)]).collect()),
                    ("Xdisp", f.phis.iter().map(|p| p[(2, 3)]).collect()),
                    ("CC", f.cc.clone()),
                    ("returnStatus", f.return_status.iter().map(|s| s.value()).collect()),
                ];
                for (name, v) in cols {
                    write_tiff(&outs.file(&dir.join(format!("{prefix}-{suffix}-{name}.tif")))?, *dims, &TypedBuf::F32(v.iter().map(|x| *x as f32).collect()))?;
                }
            }
            if vtk_out {
                let first = f.positions[0];
                let origin: [HeaderNum; 3] = std::array::from_fn(|k| HeaderNum::Float(first[k] - hws[k] as f64));
                let arrays = vec![
                    VtkArray::new("displacements", VtkValues::Vectors(disp(true))),
                    VtkArray::new("pixelSearchCC", VtkValues::Scalars(f.cc.iter().map(|v| if v.is_finite() { *v } else { 0.0 }).collect())),
                ];
                let path = dir.join(format!("{prefix}-{suffix}.vtk"));
                vtk::write(&outs.file(&path)?, &vtk::structured_points(&path.to_string_lossy(), *dims, spacing, origin, &arrays))?;
            }
        }
        _ => {
            if vtk_out {
                let d = disp(false);
                let arrays = vec![
                    VtkArray::new("displacements", VtkValues::Vectors(d.clone())),
                    VtkArray::new("mag(displacements)", VtkValues::Scalars(d.iter().map(|v| v.norm()).collect())),
                    VtkArray::new("pixelSearchCC", VtkValues::Scalars(f.cc.clone())),
                ];
                let pts: Vec<Vector3<f64>> = f.positions.iter().map(|p| p.map(|v| if v.is_finite() { v } else { 0.0 })).collect();
                vtk::write(&outs.file(&dir.join(format!("{prefix}-{suffix}.vtk")))?, &vtk::glyphs(&pts, &arrays))?;
            }
        }
    }
    Ok(())
}

pub fn run(a: PixelSearchArgs) -> Result<super::Summary> {
    let s = &a.search;
    let cache = s.read.cache()?;
    let im1 = Volume::open(&a.im1, cache.clone())?;
    let im2 = open_matching(&a.im2, &cache, im1.shape(), "image")?;
    let two_d = im1.shape()[0] == 1;
    let (range_lo, range_hi) = s.range_in(im1.shape())?;
    if !(a.phi_file_bin_ratio > 0.0) {
        bail!("--phi-file-bin-ratio must be positive");
    }
    let labels = s.labelled_file1.as_ref().map(|p| open_matching(p, &cache, im1.shape(), "label image")).transpose()?;
    // A 2D image is one plane, correlated in Y and X only: no window or search along Z.
    let hws = a.grid.half_window().map(|h| if two_d { [0, h[1], h[2]] } else { h });
    if labels.is_none() && hws.is_none() {
        bail!("--half-window-size (-hws) is required in grid mode");
    }
    // Sizes from arguments, against the image before anything is allocated (issue 15).
    grid_plan::check_windows(hws.unwrap_or([0; 3]), [0; 3], im1.shape())?;
    let shape = im1.shape();
    if (0..3).any(|k| shape[k] > 1 && (range_lo[k].unsigned_abs() >= shape[k] as u64 || range_hi[k].unsigned_abs() >= shape[k] as u64)) {
        bail!("--search-range {:?}: a displacement is not smaller than the {}x{}x{} image", s.search_range, shape[0], shape[1], shape[2]);
    }
    let mask1 = s.mask_file1.as_ref().map(|p| open_matching(p, &cache, im1.shape(), "mask")).transpose()?;
    let mask2 = s.mask_file2.as_ref().map(|p| open_matching(p, &cache, im1.shape(), "mask")).transpose()?;
    let o = PixelOptions {
        hws: hws.unwrap_or([0; 3]),
        range_lo,
        range_hi,
        mask_coverage: s.mask_coverage,
        grey_low: s.grey_low_threshold,
        grey_high: s.grey_high_threshold,
        apply_f: a.apply_f,
        method: s.method(),
        subvoxel: s.subvoxel,
        zero_mean: s.zero_mean,
        label_dilate: s.label_dilate,
        volume_threshold: a.label_volume_threshold,
    };
    let dir = out_dir(&s.out.out_dir, &a.im1)?;
    let prefix = s.out.prefix.clone().unwrap_or_else(|| format!("{}-{}", stem(&a.im1), stem(&a.im2)));
    let threads = s.read.threads().max(1);
    let params = serde_json::json!({
        "im1": a.im1, "im2": a.im2, "labelled_file1": s.labelled_file1, "hws": hws, "search_range": s.search_range,
        "phi_file": a.phi_file, "phi_file_bin_ratio": a.phi_file_bin_ratio, "apply_f": a.apply_f,
        "mask_file1": s.mask_file1, "mask_file2": s.mask_file2, "mask_coverage": s.mask_coverage,
        "grey_low": s.grey_low_threshold, "grey_high": s.grey_high_threshold, "label_dilate": s.label_dilate,
        "label_volume_threshold": a.label_volume_threshold, "subvoxel": s.subvoxel, "zero_mean": s.zero_mean,
    });
    let mut meta = FieldMeta::for_command("pixel-search", params.clone());
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    let t0 = Instant::now();
    let keep = s.files.vtk_out || s.files.tiff_out;
    let inputs: Vec<&std::path::Path> =
        [Some(a.im1.as_path()), Some(a.im2.as_path()), a.phi_file.as_deref(), s.labelled_file1.as_deref(), s.mask_file1.as_deref(), s.mask_file2.as_deref()].into_iter().flatten().collect();
    let stem_out = format!("{prefix}-pixelSearch");
    // The resolved job: the kernel's options, every point and guess, the inputs' identities.
    let plan_job = |tiles, layout, kind: &FieldKind, points: &[Vector3<f64>], guesses: &[Phi]| -> Result<crate::distribute::Job> {
        let mode = serde_json::json!({"labels": labels.is_some()});
        let print = crate::distribute::JobPrint::new("pixel-search", &o, mode, points, guesses, &inputs)?;
        let job = crate::distribute::Job::plan(&a.run.resolve()?, &dir, &stem_out, tiles, &print, layout, kind)?;
        job.require_whole_field(keep || s.files.png, "--vtk-out, --tiff-out and --png")?;
        Ok(job)
    };
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.im1.as_path(), a.im2.as_path()].into_iter().chain(a.phi_file.as_deref()));
    let (kept, counts, n, job, replayed) = match &labels {
        None => {
            let mut plan = grid_plan::plan(&a.phi_file, a.phi_file_bin_ratio, a.apply_f, a.grid.node_spacing(), im1.shape(), false)?;
            if two_d {
                // spam's 2D grid: one layer, a unit spacing along Z (its VTK cells are one voxel thick).
                plan.spacing[0] = HeaderNum::Int(1);
            }
            let n = plan.nodes.len();
            let kind = FieldKind::Grid { dims: plan.dims, spacing: plan.spacing.map(|h| h.value()) };
            let cs = im1.chunk_shape();
            let ns = plan.spacing.map(|h| (h.value().round() as usize).max(1));
            let tiles = scheduler::plan_grid_tiles(plan.dims, std::array::from_fn(|k| (cs[k] / ns[k]).max(1)));
            let mut job = plan_job(tiles, Layout::PixelSearch, &kind, &plan.nodes, &plan.guesses)?;
            let mut sink = job.sink(&mut outs, Layout::PixelSearch, &kind, &meta, !s.files.no_tsv, keep)?;
            let bar = crate::progress::bar(n as u64, "pixel-search", s.read.progress());
            let replayed = job.replay(|r| {
                bar.inc(1);
                sink.push(r)
            })?;
            let (tiles, order) = job.take_work();
            scheduler::run(
                &tiles,
                &order,
                threads,
                |tile| {
                    let (mut b1, mut b2) = (BoxUnion::default(), BoxUnion::default());
                    for &i in &tile.points {
                        let (x1, x2) = point_boxes(&plan.nodes[i], &plan.guesses[i], &o);
                        b1.add(x1);
                        if let Some(x2) = x2 {
                            b2.add(x2);
                        }
                    }
                    b1.warm(&im1);
                    if let Some(m) = &mask1 {
                        b1.warm(m);
                    }
                    b2.warm(&im2);
                    if let Some(m) = &mask2 {
                        b2.warm(m);
                    }
                },
                |tile| tile.points.iter().map(|&i| Ok((i, search_point(&im1, &im2, mask1.as_ref(), mask2.as_ref(), &plan.nodes[i], &plan.guesses[i], &o)?))).collect(),
                |i, r| {
                    bar.inc(1);
                    let r = row(i, plan.nodes[i], &r);
                    job.record(&r)?;
                    sink.push(r)
                },
            )?;
            bar.finish_and_clear();
            let (kept, counts) = sink.finish()?;
            if let Some(f) = &kept {
                write_extras(&mut outs, f, &dir, &prefix, "pixelSearch", o.hws, plan.spacing, s.files.vtk_out, s.files.tiff_out)?;
            }
            (kept, counts, n, job, replayed)
        }
        Some(lab) => {
            let table = LabelTable::scan(lab, s.read.progress())?;
            let (positions, guesses) = label_plan(&table, &a.phi_file, a.phi_file_bin_ratio, a.apply_f)?;
            let n = positions.len();
            let pos: Vec<[f64; 3]> = positions.iter().map(|p| [p[0], p[1], p[2]]).collect();
            let tiles = scheduler::plan_point_tiles(&pos, im1.chunk_shape(), 64);
            let mut job = plan_job(tiles, Layout::PixelSearchLabels, &FieldKind::Labels, &positions, &guesses)?;
            let mut sink = job.sink(&mut outs, Layout::PixelSearchLabels, &FieldKind::Labels, &meta, !s.files.no_tsv, keep)?;
            let bar = crate::progress::bar(n as u64, "pixel-search", s.read.progress());
            let replayed = job.replay(|r| {
                bar.inc(1);
                sink.push(r)
            })?;
            let (tiles, order) = job.take_work();
            scheduler::run(
                &tiles,
                &order,
                threads,
                |tile| {
                    let (mut b1, mut b2) = (BoxUnion::default(), BoxUnion::default());
                    for &l in &tile.points {
                        if let Some((x1, x2)) = label_boxes(&table, l, &guesses[l], &o) {
                            b1.add(x1);
                            if let Some(x2) = x2 {
                                b2.add(x2);
                            }
                        }
                    }
                    b1.warm(&im1);
                    b1.warm(lab);
                    b2.warm(&im2);
                },
                |tile| {
                    tile.points
                        .iter()
                        .map(|&l| {
                            let r = if l == 0 { None } else { Some(search_label(&im1, &im2, lab, &table, l, &guesses[l], &o)?) };
                            Ok((l, r))
                        })
                        .collect()
                },
                |l, r| {
                    bar.inc(1);
                    let r = match r {
                        None => background_row(),
                        Some(r) => row(l, positions[l], &r),
                    };
                    job.record(&r)?;
                    sink.push(r)
                },
            )?;
            bar.finish_and_clear();
            let (kept, counts) = sink.finish()?;
            if let Some(f) = &kept {
                write_extras(&mut outs, f, &dir, &prefix, "pixelSearch", o.hws, [HeaderNum::Int(1); 3], s.files.vtk_out, false)?;
            }
            (kept, counts, n, job, replayed)
        }
    };
    drop(kept);
    s.files.quicklook(&mut outs, &dir.join(format!("{stem_out}.parquet")))?;
    outs.commit()?;
    job.complete()?;
    let secs = t0.elapsed().as_secs_f64();
    print_statuses(&counts);
    s.read.report(&cache);
    Ok(Some(format!(
        "pixel-search {} → {}: {}, returnStatus {} → {}",
        a.im1.display(),
        a.im2.display(),
        crate::say::work(n, replayed, secs, threads, "points"),
        crate::say::statuses(&counts),
        dir.join(format!("{stem_out}.parquet")).display()
    )))
}
