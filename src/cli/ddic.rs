//! `dvc-stream ddic IM1 LAB1 IM2`: spam-ddic — one Φ per labelled grain, each label's boxes
//! streamed through the chunk cache by the tile scheduler.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::output_names::stem;
use super::ReadOpts;
use crate::kernels::discrete::DiscreteOptions;
use crate::kernels::register::RegisterOptions;
use crate::label::LabelTable;
use crate::phi::ApplyF;
use crate::run::ddic::{initial_registration, label_guesses, DdicFiles, DdicGuess, DdicJob};
use crate::run::pipeline::Context;
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
    #[command(flatten)]
    pub solver: super::solver::SolverArgs<super::solver::DdicSolver>,
    /// Full 12-component Φ per label instead of a rigid motion [spam: -nr].
    #[arg(long = "non-rigid")]
    pub non_rigid: bool,
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

/// How far another label's grey level reaches into a label's mask (image 1, image 2): the
/// dilation is how far a grain's own edge reaches past its label, so a neighbour's reaches as
/// far; one voxel more for the trilinear samples' neighbours, and in image 2 one more for
/// the guess (an integer pixel search is up to half a voxel off on each axis).
fn neighbour_reach(label_dilate: i64) -> [f64; 2] {
    let ld = label_dilate.max(0) as f64;
    [ld + 1.0, ld + 2.0]
}

impl DdicArgs {
    /// Refuses sizes that cannot be correlated on an image of `shape`, before anything is read.
    fn check(&self, shape: [usize; 3]) -> Result<()> {
        let largest = shape.iter().copied().max().unwrap_or(0) as u64;
        if self.margin < 0 {
            bail!("--margin (-m) must be ≥ 0");
        }
        if self.margin as u64 >= largest {
            bail!("--margin {}: the search margin is not smaller than the {:?} image", self.margin, shape);
        }
        if self.label_dilate.unsigned_abs() >= largest {
            bail!("--label-dilate (-ld) {}: not smaller than the {:?} image", self.label_dilate, shape);
        }
        if self.multiscale_binning == 0 {
            bail!("--multiscale-binning (-msb) must be ≥ 1");
        }
        Ok(())
    }

    fn options(&self) -> DiscreteOptions {
        DiscreteOptions {
            margin: self.margin,
            label_dilate: self.label_dilate,
            mask_others: !self.dont_mask_others,
            neighbour_reach: (!self.dont_mask_others && !self.keep_neighbour_edges).then(|| neighbour_reach(self.label_dilate)),
            volume_threshold: self.volume_threshold,
            bin_start: self.multiscale_binning,
            register: RegisterOptions {
                margin: Some([1; 3]),
                max_iterations: self.solver.max_iterations,
                delta_phi_min: self.solver.min_delta_phi,
                update_gradient: self.solver.update_gradient,
                rigid: !self.non_rigid,
                order: self.solver.interpolation_order,
                damped: !self.spam_solver,
                ..RegisterOptions::default()
            },
        }
    }

    /// The resolved job: the label table, every label's guess (from -regbb, -pf or none), the outputs.
    pub fn job(&self, ctx: &Context) -> Result<DdicJob> {
        let im1 = Volume::open(&self.im1, ctx.cache.clone())?;
        let lab = Volume::open_matching(&self.lab1, &ctx.cache, im1.shape(), "label image")?;
        let im2 = Volume::open_matching(&self.im2, &ctx.cache, im1.shape(), "image")?;
        self.check(im1.shape())?;
        let guess = DdicGuess { phi_file: self.phi_file.clone(), bin_ratio: self.phi_file_bin_ratio, apply_f: self.apply_f, reg_bin_start: self.reg_bin_start, reg_bin_stop: self.reg_bin_stop };
        let registration = self.reg_bin_start.map(|b| initial_registration(&im1, &im2, &guess, b)).transpose()?;
        let table = LabelTable::scan(&lab, ctx.progress)?;
        let (positions, guesses, kept) = label_guesses(&table, &guess, self.skip, registration)?;
        let dir = super::output_names::out_dir(&self.out.out_dir, &self.lab1)?;
        let prefix = self.out.prefix.clone().unwrap_or_else(|| format!("{}-{}", stem(&self.im1), stem(&self.im2)));
        let files = DdicFiles { dir, prefix, tsv: !self.no_tsv, vtk: !self.no_vtk, png: self.png, debug: self.debug };
        Ok(DdicJob {
            im1: self.im1.clone(),
            lab1: self.lab1.clone(),
            im2: self.im2.clone(),
            table,
            positions,
            guesses,
            guess,
            skip: self.skip,
            keep_neighbour_edges: self.keep_neighbour_edges,
            kept,
            options: self.options(),
            files,
            run: self.run.resolve()?,
        })
    }
}

pub fn run(a: DdicArgs) -> Result<super::Summary> {
    let ctx = Context { cache: a.read.cache()?, threads: a.read.threads(), progress: a.read.progress() };
    let job = a.job(&ctx)?;
    let done = crate::run::ddic::run(&job, &ctx)?;
    crate::field::sink::print_statuses(&done.counts);
    a.read.report(&ctx.cache);
    Ok(Some(done.line))
}
