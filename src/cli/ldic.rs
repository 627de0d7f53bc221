//! `dvc-stream ldic IM1 IM2 [IM3 …]`: spam-ldic — local DVC on a regular grid, streamed
//! tile by tile through the chunk cache.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::grid_plan::{self, three};
use super::output_names::{dir_beside, stem};
use super::ReadOpts;
use crate::kernels::local::LocalOptions;
use crate::kernels::register::RegisterOptions;
use crate::phi::ApplyF;
use crate::run::ldic::{GuessSource, LdicFiles, LdicJob, LdicPair};
use crate::run::pipeline::Context;
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
    #[command(flatten)]
    pub solver: super::solver::SolverArgs<super::solver::LdicSolver>,
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

impl LdicArgs {
    /// The windows and the solver; on a 2D image, as spam-ldic takes it: square windows in
    /// the plane, no search and no node spacing in Z.
    fn options(&self, shape: [usize; 3]) -> Result<(LocalOptions, Option<[usize; 3]>)> {
        let Some(mut hws) = self.grid.half_window() else {
            bail!("--half-window-size (-hws) is required");
        };
        let mut margin = three(Some(self.margin), &self.margin3).unwrap_or([self.margin; 3]);
        let mut ns = self.grid.node_spacing();
        if crate::kernels::plane::is_plane(shape) {
            hws[0] = 0;
            margin[0] = 0;
            if let Some(ns) = ns.as_mut() {
                ns[0] = 1;
            }
        }
        grid_plan::check_windows(hws, margin, shape)?;
        let register = RegisterOptions {
            margin: Some([1; 3]),
            max_iterations: self.solver.max_iterations,
            delta_phi_min: self.solver.min_delta_phi,
            update_gradient: self.solver.update_gradient,
            rigid: self.rigid,
            order: self.solver.interpolation_order,
            damped: false,
            shift: self.shift,
            ..RegisterOptions::default()
        };
        let o = LocalOptions { hws, margin, mask_coverage: self.mask_coverage, grey_low: self.grey_low_threshold, grey_high: self.grey_high_threshold, register };
        Ok((o, ns))
    }

    /// The pairs: (IM1, IMk), or consecutive ones with --series-incremental.
    fn pairs(&self) -> Result<Vec<LdicPair>> {
        (1..self.images.len())
            .map(|k| {
                let im1 = if self.series_incremental { &self.images[k - 1] } else { &self.images[0] };
                let im2 = &self.images[k];
                let prefix = match (&self.out.prefix, self.images.len()) {
                    (Some(p), 2) => p.clone(),
                    _ => format!("{}-{}", stem(im1), stem(im2)),
                };
                Ok(LdicPair { im1: im1.clone(), im2: im2.clone(), dir: dir_beside(&self.out.out_dir, im1)?, prefix })
            })
            .collect()
    }

    /// The resolved job: every node and its guess, the windows and the solver, the outputs.
    pub fn job(&self, shape: [usize; 3]) -> Result<LdicJob> {
        let (options, ns) = self.options(shape)?;
        let plan = grid_plan::plan(&self.phi_file, self.phi_file_bin_ratio, self.apply_f, ns, shape, self.skip)?;
        let files = LdicFiles { tsv: !self.files.no_tsv, vtk: self.files.vtk_out, tiff: self.files.tiff_out, png: self.files.png };
        Ok(LdicJob {
            pairs: self.pairs()?,
            mask1: self.mask_file1.clone(),
            guess: GuessSource { phi_file: self.phi_file.clone(), bin_ratio: self.phi_file_bin_ratio, apply_f: self.apply_f },
            nodes: plan.nodes,
            guesses: plan.guesses,
            dims: plan.dims,
            spacing: plan.spacing,
            skip: self.skip,
            kept: plan.keep,
            options,
            files,
            run: self.run.resolve()?,
        })
    }
}

pub fn run(a: LdicArgs) -> Result<super::Summary> {
    // Every image is checked before anything is written (an output folder included).
    let cache = a.read.cache()?;
    let shape = Volume::open(&a.images[0], cache.clone())?.shape();
    for p in &a.images[1..] {
        Volume::open_matching(p, &cache, shape, "image")?;
    }
    let job = a.job(shape)?;
    let ctx = Context { cache, threads: a.read.threads(), progress: a.read.progress() };
    let pairs = crate::run::ldic::run(&job, &ctx)?;
    for p in &pairs {
        crate::field::sink::print_statuses(&p.counts);
        a.read.report(&p.cache);
    }
    Ok(Some(pairs.iter().map(|p| p.line.as_str()).collect::<Vec<_>>().join("; ")))
}
