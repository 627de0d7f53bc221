//! `dvc-stream pixel-search IM1 IM2`: spam-pixelSearch — integer search of every grid node
//! or label by normalised cross-correlation, streamed tile by tile through the chunk cache.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use super::grid_plan;
use super::output_names::{open_matching, out_dir, stem};
use super::ReadOpts;
use crate::field::vtk::HeaderNum;
use crate::kernels::ncc::Method;
use crate::kernels::pixel_search::PixelOptions;
use crate::label::LabelTable;
use crate::phi::ApplyF;
use crate::run::pipeline::Context;
use crate::run::pixel_search::{label_guesses, PixelSearchJob, SearchFiles, SearchPoints};
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

    /// Where the table goes (beside `im1` unless -od) and what is written beside it.
    pub fn files(&self, im1: &std::path::Path, im2: &std::path::Path) -> Result<SearchFiles> {
        let dir = out_dir(&self.out.out_dir, im1)?;
        let prefix = self.out.prefix.clone().unwrap_or_else(|| format!("{}-{}", stem(im1), stem(im2)));
        let f = &self.files;
        Ok(SearchFiles { dir, prefix, tsv: !f.no_tsv, vtk: f.vtk_out, tiff: f.tiff_out, png: f.png })
    }

    pub fn context(&self) -> Result<Context> {
        Ok(Context { cache: self.read.cache()?, threads: self.read.threads(), progress: self.read.progress() })
    }

    /// Refuses a search range as large as the image, before anything is allocated (issue 15).
    pub fn check_range(&self, (lo, hi): ([i64; 3], [i64; 3]), shape: [usize; 3]) -> Result<()> {
        if (0..3).any(|k| shape[k] > 1 && (lo[k].unsigned_abs() >= shape[k] as u64 || hi[k].unsigned_abs() >= shape[k] as u64)) {
            bail!("--search-range {:?}: a displacement is not smaller than the {}x{}x{} image", self.search_range, shape[0], shape[1], shape[2]);
        }
        Ok(())
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

impl PixelSearchArgs {
    /// The grid nodes (and their guesses), or in label mode the labels (and theirs).
    fn points(&self, im1: &Volume, ctx: &Context) -> Result<(SearchPoints, Vec<crate::phi::Phi>)> {
        let s = &self.search;
        if let Some(lab1) = &s.labelled_file1 {
            let lab = open_matching(lab1, &ctx.cache, im1.shape(), "label image")?;
            let table = LabelTable::scan(&lab, ctx.progress)?;
            let positions = table.positions();
            let guesses = label_guesses(&positions, &self.phi_file, self.phi_file_bin_ratio, self.apply_f)?;
            return Ok((SearchPoints::Labels { lab1: lab1.clone(), table, positions }, guesses));
        }
        let mut plan = grid_plan::plan(&self.phi_file, self.phi_file_bin_ratio, self.apply_f, self.grid.node_spacing(), im1.shape(), false)?;
        if im1.shape()[0] == 1 {
            // spam's 2D grid: one layer, a unit spacing along Z (its VTK cells are one voxel thick).
            plan.spacing[0] = HeaderNum::Int(1);
        }
        Ok((SearchPoints::Grid { nodes: plan.nodes, dims: plan.dims, spacing: plan.spacing }, plan.guesses))
    }

    /// The resolved job: every point and its guess, the search, the outputs.
    pub fn job(&self, ctx: &Context) -> Result<PixelSearchJob> {
        let s = &self.search;
        let im1 = Volume::open(&self.im1, ctx.cache.clone())?;
        open_matching(&self.im2, &ctx.cache, im1.shape(), "image")?;
        let two_d = im1.shape()[0] == 1;
        let range = s.range_in(im1.shape())?;
        if let Some(l) = &s.labelled_file1 {
            open_matching(l, &ctx.cache, im1.shape(), "label image")?;
        }
        // A 2D image is one plane, correlated in Y and X only: no window or search along Z.
        let hws = self.grid.half_window().map(|h| if two_d { [0, h[1], h[2]] } else { h });
        if s.labelled_file1.is_none() && hws.is_none() {
            bail!("--half-window-size (-hws) is required in grid mode");
        }
        // Sizes from arguments, against the image before anything is allocated (issue 15).
        grid_plan::check_windows(hws.unwrap_or([0; 3]), [0; 3], im1.shape())?;
        s.check_range(range, im1.shape())?;
        for m in [&s.mask_file1, &s.mask_file2].into_iter().flatten() {
            open_matching(m, &ctx.cache, im1.shape(), "mask")?;
        }
        let options = PixelOptions {
            hws: hws.unwrap_or([0; 3]),
            range_lo: range.0,
            range_hi: range.1,
            mask_coverage: s.mask_coverage,
            grey_low: s.grey_low_threshold,
            grey_high: s.grey_high_threshold,
            apply_f: self.apply_f,
            method: s.method(),
            subvoxel: s.subvoxel,
            zero_mean: s.zero_mean,
            label_dilate: s.label_dilate,
            volume_threshold: self.label_volume_threshold,
        };
        let parameters = serde_json::json!({
            "im1": self.im1, "im2": self.im2, "labelled_file1": s.labelled_file1, "hws": hws, "search_range": s.search_range,
            "phi_file": self.phi_file, "phi_file_bin_ratio": self.phi_file_bin_ratio, "apply_f": self.apply_f,
            "mask_file1": s.mask_file1, "mask_file2": s.mask_file2, "mask_coverage": s.mask_coverage,
            "grey_low": s.grey_low_threshold, "grey_high": s.grey_high_threshold, "label_dilate": s.label_dilate,
            "label_volume_threshold": self.label_volume_threshold, "subvoxel": s.subvoxel, "zero_mean": s.zero_mean,
        });
        let files = s.files(&self.im1, &self.im2)?;
        let (points, guesses) = self.points(&im1, ctx)?;
        let (mask1, mask2, phi_file) = (s.mask_file1.clone(), s.mask_file2.clone(), self.phi_file.clone());
        Ok(PixelSearchJob { im1: self.im1.clone(), im2: self.im2.clone(), mask1, mask2, phi_file, points, guesses, options, parameters, files, run: self.run.resolve()? })
    }
}

pub fn run(a: PixelSearchArgs) -> Result<super::Summary> {
    let ctx = a.search.context()?;
    let job = a.job(&ctx)?;
    let done = crate::run::pixel_search::run(&job, &ctx)?;
    crate::field::sink::print_statuses(&done.counts);
    a.search.read.report(&ctx.cache);
    Ok(Some(done.line))
}
