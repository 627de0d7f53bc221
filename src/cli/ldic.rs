//! `dvc-stream ldic IM1 IM2 [IM3 …]`: spam-ldic — local DVC on a regular grid, streamed
//! tile by tile through the chunk cache.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use nalgebra::Vector3;

use super::output_names::{dir_beside, open_matching, stem};
use super::grid_plan::{self, three};
use super::ReadOpts;
use crate::field::parquet::FieldMeta;
use crate::field::sink::print_statuses;
use crate::field::vtk::{self, HeaderNum, VtkArray, VtkValues};
use crate::field::{FieldKind, FieldRow, Layout};
use crate::kernels::local::{correlate_point, window1_box, window2_box, round_even, LocalOptions, PointResult};
use crate::kernels::register::RegisterOptions;
use crate::phi::{self, ApplyF};
use crate::scheduler;
use crate::store::dtype::TypedBuf;
use crate::store::output::{Existing, OutputSet};
use crate::store::tiff_write::write_tiff;
use crate::store::Volume;

#[derive(Args, Debug)]
pub struct LdicArgs {
    /// Two or more volumes: pairs (IM1, IMk), or consecutive pairs with --series-incremental.
    #[arg(required = true, num_args = 2..)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub grid: grid_plan::GridArgs,
    /// Guess: a registration (one row) or a field on the same grid (TSV or Parquet) [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: Option<PathBuf>,
    /// Bin ratio of the guess [spam: -pfb].
    #[arg(long = "phi-file-bin-ratio", default_value_t = 1.0, value_parser = super::values::positive_f64)]
    pub phi_file_bin_ratio: f64,
    /// Part of a registration's F given to the nodes [spam: -F].
    #[arg(long = "apply-f", value_enum, default_value = "all")]
    pub apply_f: ApplyF,
    /// Skip windows whose mean grey is ≤ this [spam: -glt].
    #[arg(long = "grey-low-threshold", allow_negative_numbers = true, default_value_t = f64::NEG_INFINITY, value_parser = super::values::threshold_f64)]
    pub grey_low_threshold: f64,
    /// Skip windows whose mean grey is ≥ this [spam: -ght].
    #[arg(long = "grey-high-threshold", allow_negative_numbers = true, default_value_t = f64::INFINITY, value_parser = super::values::threshold_f64)]
    pub grey_high_threshold: f64,
    /// Mask of im1 (0 = excluded) [spam: -mf1].
    #[arg(long = "mask-file1")]
    pub mask_file1: Option<PathBuf>,
    /// Minimum unmasked fraction of a window [spam: -mc].
    #[arg(long = "mask-coverage", default_value_t = 0.5, value_parser = super::values::fraction)]
    pub mask_coverage: f64,
    /// Search margin of window 2 [spam: -m].
    #[arg(long, default_value_t = 3)]
    pub margin: usize,
    /// Search margin Z Y X [spam: -m3].
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"])]
    pub margin3: Option<Vec<usize>>,
    /// Most Gauss–Newton iterations per window [spam: -it].
    #[arg(long = "max-iterations", default_value_t = 50)]
    pub max_iterations: usize,
    /// Convergence: stop when the norm of the change of Φ falls below this [spam: -dp].
    #[arg(long = "min-delta-phi", default_value_t = 0.001, value_parser = super::values::non_negative_f64)]
    pub min_delta_phi: f64,
    /// 3 = cubic B-spline (the default: a ten times smaller error than trilinear on sub-voxel
    /// motion, at about half its speed in a release build: bench/peers.sh), 1 = trilinear, spam's default, which
    /// reproduces spam-ldic's results [spam: -o; spam's default is 1].
    #[arg(long = "interpolation-order", default_value_t = 3, value_parser = super::parse_order)]
    pub interpolation_order: usize,
    /// Recompute the gradient of the deformed image at each iteration [spam: -ug].
    #[arg(long = "update-gradient")]
    pub update_gradient: bool,
    /// Rigid local registration [spam: -rig].
    #[arg(long)]
    pub rigid: bool,
    /// spam 0.9.1's shift-DVC: each voxel of both images sampled ±0.25 voxel off its grid
    /// point (a fixed pattern over the 8 corners of a cube, Wantz et al. 2025), which cuts
    /// trilinear interpolation bias at sub-voxel displacements (BENCHMARKS.md, "shift-DVC");
    /// 6× (trilinear) to 16× (cubic) slower: it runs a path of its own
    /// (src/kernels/register_general.rs), not the fused one [spam: -shift].
    #[arg(long)]
    pub shift: bool,
    /// Recompute only nodes of the --phi-file field with status −3, −2, −1 or 1 [spam: -skp].
    #[arg(long)]
    pub skip: bool,
    /// Pairs of consecutive images instead of (IM1, IMk) [spam: -sei].
    #[arg(long = "series-incremental")]
    pub series_incremental: bool,
    #[command(flatten)]
    pub out: super::OutputOpts,
    #[command(flatten)]
    pub files: super::FieldFiles,
    #[command(flatten)]
    pub run: super::RunArgs,
    #[command(flatten)]
    pub read: ReadOpts,
}

/// Correlates one pair into `outs`; returns its job, whose checkpoint goes once the outputs are committed.
fn run_pair(a: &LdicArgs, outs: &mut OutputSet, im1p: &Path, im2p: &Path, prefix: &str) -> Result<(crate::distribute::Job, String)> {
    let cache = a.read.cache()?;
    let im1 = Volume::open(im1p, cache.clone())?;
    let im2 = open_matching(im2p, &cache, im1.shape(), "image")?;
    let mask = a.mask_file1.as_ref().map(|p| open_matching(p, &cache, im1.shape(), "mask")).transpose()?;
    let Some(mut hws) = a.grid.half_window() else {
        bail!("--half-window-size (-hws) is required");
    };
    let mut margin = three(Some(a.margin), &a.margin3).unwrap();
    let mut ns = a.grid.node_spacing();
    if crate::kernels::plane::is_plane(im1.shape()) {
        // A 2D image, as spam-ldic takes it: square windows in the plane, no search and no
        // node spacing in Z.
        hws[0] = 0;
        margin[0] = 0;
        if let Some(ns) = ns.as_mut() {
            ns[0] = 1;
        }
    }
    grid_plan::check_windows(hws, margin, im1.shape())?;
    let plan = grid_plan::plan(&a.phi_file, a.phi_file_bin_ratio, a.apply_f, ns, im1.shape(), a.skip)?;
    let o = LocalOptions {
        hws,
        margin,
        mask_coverage: a.mask_coverage,
        grey_low: a.grey_low_threshold,
        grey_high: a.grey_high_threshold,
        register: RegisterOptions {
            margin: Some([1; 3]),
            max_iterations: a.max_iterations,
            delta_phi_min: a.min_delta_phi,
            update_gradient: a.update_gradient,
            rigid: a.rigid,
            order: a.interpolation_order,
            damped: false,
            shift: a.shift,
            ..RegisterOptions::default()
        },
    };
    let dir = dir_beside(&a.out.out_dir, im1p)?;
    let n = plan.nodes.len();
    let kind = FieldKind::Grid { dims: plan.dims, spacing: plan.spacing.map(|h| h.value()) };
    let mut params = serde_json::json!({
        "im1": im1p, "im2": im2p, "hws": hws, "margin": margin, "phi_file": a.phi_file, "apply_f": a.apply_f,
        "phi_file_bin_ratio": a.phi_file_bin_ratio, "mask_file1": a.mask_file1, "mask_coverage": a.mask_coverage,
        "grey_low": a.grey_low_threshold, "grey_high": a.grey_high_threshold, "max_iterations": a.max_iterations,
        "min_delta_phi": a.min_delta_phi, "interpolation_order": a.interpolation_order, "update_gradient": a.update_gradient,
        "rigid": a.rigid, "skip": a.skip, "nodes_dim": plan.dims,
    });
    if a.shift {
        params["shift"] = true.into();
    }
    let mut meta = FieldMeta::for_command("ldic", params.clone());
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    let want_grids = a.files.vtk_out || a.files.tiff_out;
    let whole_field = want_grids || a.files.png;
    let cs = im1.chunk_shape();
    let ns_guess = plan.spacing.map(|h| (h.value().round() as usize).max(1));
    let per_tile: [usize; 3] = std::array::from_fn(|k| (cs[k] / ns_guess[k]).max(1));
    let tiles = scheduler::plan_grid_tiles(plan.dims, per_tile);
    // The resolved job: the kernel's options, every node and guess, the inputs' identities.
    let inputs: Vec<&Path> = [Some(im1p), Some(im2p), a.phi_file.as_deref(), a.mask_file1.as_deref()].into_iter().flatten().collect();
    let extra = serde_json::json!({"skip": a.skip, "grid_dims": plan.dims});
    let print = crate::distribute::JobPrint::new("ldic", &o, extra, &plan.nodes, &plan.guesses, &inputs)?;
    let mut job = crate::distribute::Job::plan(&a.run.resolve()?, &dir, &format!("{prefix}-ldic"), tiles, &print, Layout::Ldic, &kind)?;
    job.require_whole_field(whole_field, "--vtk-out, --tiff-out and --png")?;
    // Rows go to Parquet and TSV as they come; VTK and TIFF need only these 7 columns kept.
    let mut sink = job.sink(outs, Layout::Ldic, &kind, &meta, !a.files.no_tsv, false)?;
    // Every output of the pair is reserved (and checked) before the work starts.
    let tiff_names: Vec<(usize, PathBuf)> = if a.files.tiff_out {
        ["Zdisp", "Ydisp", "Xdisp", "error", "iterations", "returnStatus", "deltaPhiNorm"]
            .iter()
            .enumerate()
            .filter(|(k, _)| !(*k == 0 && plan.dims[0] == 1))
            .map(|(k, name)| (k, dir.join(format!("{prefix}-ldic-{name}.tif"))))
            .collect()
    } else {
        vec![]
    };
    for (_, p) in &tiff_names {
        outs.file(p)?;
    }
    let vtk_path = dir.join(format!("{prefix}-ldic.vtk"));
    if a.files.vtk_out {
        outs.file(&vtk_path)?;
    }
    let mut grids: Vec<Vec<f64>> = if want_grids { (0..7).map(|_| Vec::with_capacity(n)).collect() } else { vec![] };
    let recompute = |i: usize| -> bool {
        match &plan.keep {
            Some(f) => f.return_status[i].worth_retrying(),
            None => true,
        }
    };
    let bar = crate::progress::bar(n as u64, "ldic", a.read.progress());
    let threads = a.read.threads().max(1);
    let mut emit = |row: FieldRow| -> Result<()> {
        if want_grids {
            let t = phi::translation(&row.phi);
            for (k, v) in [t[0], t[1], t[2], row.error, row.iterations, row.return_status.value(), row.delta_phi_norm].into_iter().enumerate() {
                grids[k].push(v);
            }
        }
        sink.push(row)?;
        bar.inc(1);
        Ok(())
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
            // The boxes every window of the tile reads, as one box per image: each chunk is
            // loaded once, however many windows share it.
            let (mut b1, mut b2) = (scheduler::BoxUnion::default(), scheduler::BoxUnion::default());
            for &i in &tile.points {
                let p = &plan.nodes[i];
                b1.add(window1_box(p, hws));
                let g = phi::translation(&plan.guesses[i]);
                if g.iter().all(|v| v.is_finite()) {
                    b2.add(window2_box(p, hws, &g.map(round_even), margin));
                }
            }
            b1.warm(&im1);
            if let Some(m) = &mask {
                b1.warm(m);
            }
            b2.warm(&im2);
        },
        |tile| {
            tile.points
                .iter()
                .map(|&i| {
                    let r = if recompute(i) {
                        correlate_point(&im1, &im2, mask.as_ref(), &plan.nodes[i], &plan.guesses[i], &o)?
                    } else {
                        let f = plan.keep.as_ref().unwrap();
                        PointResult {
                            phi: f.phis[i],
                            return_status: f.return_status[i],
                            error: f.error[i],
                            iterations: f.iterations[i] as usize,
                            delta_phi_norm: f.delta_phi_norm[i],
                            disp_sd: f.disp_sd[i],
                        }
                    };
                    Ok((i, r))
                })
                .collect()
        },
        |i, r| {
            let row = FieldRow { disp_sd: crate::field::some_sd(r.disp_sd), ..FieldRow::registered(i as i64, plan.nodes[i], r.phi, r.error, r.iterations, r.return_status, r.delta_phi_norm) };
            job.record(&row)?;
            emit(row)
        },
    )?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let (_, counts) = sink.finish()?;
    for (k, path) in &tiff_names {
        let vals: Vec<f32> = grids[*k].iter().map(|&v| v as f32).collect();
        write_tiff(&outs.file(path)?, plan.dims, &TypedBuf::F32(vals))?;
    }
    if a.files.vtk_out {
        let fin = |v: &Vec<f64>| v.iter().map(|x| if x.is_finite() { *x } else { 0.0 }).collect::<Vec<f64>>();
        let disp: Vec<Vector3<f64>> = (0..n).map(|i| Vector3::new(grids[0][i], grids[1][i], grids[2][i]).map(|v| if v.is_finite() { v } else { 0.0 })).collect();
        let arrays = vec![
            VtkArray::new("displacements", VtkValues::Vectors(disp)),
            VtkArray::new("error", VtkValues::Scalars(fin(&grids[3]))),
            VtkArray::new("iterations", VtkValues::Scalars(fin(&grids[4]))),
            VtkArray::new("returnStatus", VtkValues::Scalars(fin(&grids[5]))),
            VtkArray::new("deltaPhiNorm", VtkValues::Scalars(fin(&grids[6]))),
        ];
        let first = plan.nodes[0];
        // spam's node positions are floats, so is its origin, with or without -ns (`ORIGIN
        // 10.0 10.0 10.0` for `-hws 5 -ns 15` on a 60³ pair; `8.0 8.0 0.0` in 2D).
        let origin: [HeaderNum; 3] = std::array::from_fn(|k| HeaderNum::Float(first[k] - hws[k] as f64));
        vtk::write(&outs.file(&vtk_path)?, &vtk::structured_points(&vtk_path.to_string_lossy(), plan.dims, plan.spacing, origin, &arrays))?;
    }
    a.files.quicklook(outs, &dir.join(format!("{prefix}-ldic.parquet")))?;
    print_statuses(&counts);
    a.read.report(&cache);
    let summary = format!(
        "ldic {} → {}: {}, returnStatus {} → {}",
        im1p.display(),
        im2p.display(),
        crate::say::work(n, replayed, secs, threads, "points"),
        crate::say::statuses(&counts),
        dir.join(format!("{prefix}-ldic.parquet")).display()
    );
    Ok((job, summary))
}

pub fn run(a: LdicArgs) -> Result<super::Summary> {
    // Every image is checked before the first output is written: all of the run's tables
    // are committed together at the end, or none.
    {
        let cache = a.read.cache()?;
        let im1 = Volume::open(&a.images[0], cache.clone())?;
        for p in &a.images[1..] {
            open_matching(p, &cache, im1.shape(), "image")?;
        }
    }
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs(a.images.iter().map(PathBuf::as_path).chain(a.phi_file.as_deref()).chain(a.mask_file1.as_deref()));
    let mut jobs = vec![];
    let mut lines = vec![];
    for k in 1..a.images.len() {
        let first = if a.series_incremental { &a.images[k - 1] } else { &a.images[0] };
        let second = &a.images[k];
        let prefix = match (&a.out.prefix, a.images.len()) {
            (Some(p), 2) => p.clone(),
            _ => format!("{}-{}", stem(first), stem(second)),
        };
        let (job, line) = run_pair(&a, &mut outs, first, second, &prefix)?;
        jobs.push(job);
        lines.push(line);
    }
    outs.commit()?;
    for job in jobs {
        job.complete()?;
    }
    Ok(Some(lines.join("; ")))
}
