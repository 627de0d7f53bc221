//! `dvc-stream pixel-search-propagate IM1 IM2 -sp Z Y X dZ dY dX`: spam-pixelSearchPropagate
//! on a grid, on guiding points (`-gp`) or on labels (`-lab1`), each point searched around
//! the displacement of its already found neighbours.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use nalgebra::Vector3;

use super::output_names::open_matching;
use super::pixel_search::SearchArgs;
use crate::field::make_grid;
use crate::field::vtk::HeaderNum;
use crate::kernels::pixel_search::PixelOptions;
use crate::kernels::propagate::PropagateOptions;
use crate::label::{label_of, LabelTable};
use crate::phi::ApplyF;
use crate::run::pipeline::Context;
use crate::run::propagate::{PropagateJob, PropagatePoints};
use crate::store::Volume;

#[derive(Args, Debug)]
pub struct PropagateArgs {
    /// Reference image (TIFF, Zarr store or s3://): where the windows are.
    pub im1: PathBuf,
    /// Deformed image searched for each window.
    pub im2: PathBuf,
    /// Start point and its integer displacement: Z Y X dZ dY dX [spam: -sp]. With
    /// --guiding-points-file the first guiding point is the start and only dZ dY dX are used.
    #[arg(long = "start-point", num_args = 6, allow_negative_numbers = true, value_names = ["Z", "Y", "X", "dZ", "dY", "dX"])]
    pub start_point: Option<Vec<f64>>,
    /// Points to correlate, one "Z Y X" per line (the first is the start) [spam: -gp].
    #[arg(long = "guiding-points-file")]
    pub guiding_points_file: Option<PathBuf>,
    /// -hws/-hws3 (default 5) and -ns/-ns3 (default: twice the half window).
    #[command(flatten)]
    pub grid: super::grid_plan::GridArgs,
    /// Neighbourhood radius for ranking and guesses (default: mean half window + mean of
    /// the upper search bounds) [spam: -nr].
    #[arg(long = "neighbourhood-radius", value_parser = super::values::positive_f64)]
    pub neighbourhood_radius: Option<f64>,
    /// Distance of the Gaussian weighting of neighbours (default: sum of half windows + sum
    /// of the upper search bounds) [spam: -gwd].
    #[arg(long = "gaussian-weighting-distance", value_parser = super::values::positive_f64)]
    pub gaussian_weighting_distance: Option<f64>,
    /// Points below this CC are not used as neighbours; the start must reach it [spam: -cct].
    #[arg(long = "cc-threshold", default_value_t = 0.9, value_parser = super::values::threshold_f64)]
    pub cc_threshold: f64,
    #[command(flatten)]
    pub search: SearchArgs,
}

/// Guiding points: "Z Y X" per line (more columns are ignored), `#` comments allowed.
fn read_points(path: &Path) -> Result<Vec<Vector3<f64>>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{}: cannot read ({e})", path.display()))?;
    let mut pts = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let v: Vec<f64> = l
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| anyhow!("{}: line {}: '{l}' is not three numbers Z Y X", path.display(), ln + 1))?;
        if v.len() < 3 || !v[..3].iter().all(|x| x.is_finite()) {
            bail!("{}: line {}: '{l}' is not three numbers Z Y X", path.display(), ln + 1);
        }
        pts.push(Vector3::new(v[0], v[1], v[2]));
    }
    if pts.is_empty() {
        bail!("{}: no points", path.display());
    }
    Ok(pts)
}

impl PropagateArgs {
    /// The start point and its displacement (Z Y X dZ dY dX); NaN position with -gp alone.
    fn start(&self) -> Result<[f64; 6]> {
        Ok(match (&self.start_point, &self.guiding_points_file) {
            (Some(v), _) => [v[0], v[1], v[2], v[3], v[4], v[5]],
            (None, Some(_)) => [f64::NAN, f64::NAN, f64::NAN, 0.0, 0.0, 0.0],
            (None, None) => bail!("--start-point (-sp Z Y X dZ dY dX) is required unless --guiding-points-file is given"),
        })
    }

    /// The labels, ranked from the one the start point is in.
    fn label_points(&self, lab: &Volume, sp: &[f64; 6], progress: bool) -> Result<PropagatePoints> {
        let table = LabelTable::scan(lab, progress)?;
        let v: [i64; 3] = std::array::from_fn(|k| sp[k].round() as i64);
        let start = label_of(lab.read_box(v[0]..v[0] + 1, v[1]..v[1] + 1, v[2]..v[2] + 1)?[[0, 0, 0]], lab)? as usize;
        if start == 0 {
            bail!("{}: the start point {:?} is in the background (label 0), not in a label", lab.path().display(), v);
        }
        let points = (0..table.max_label() + 1).map(|l| table.get(l).filter(|_| l > 0).map(|i| Vector3::from(i.com)).unwrap_or(Vector3::from_element(f64::NAN))).collect();
        Ok(PropagatePoints::Labels { lab1: lab.path().to_path_buf(), table, points, start })
    }

    /// The grid's nodes after the start point, or the guiding points.
    fn grid_points(&self, shape: [usize; 3], hws: [usize; 3], sp: &[f64; 6]) -> Result<PropagatePoints> {
        if let Some(f) = &self.guiding_points_file {
            return Ok(PropagatePoints::Guided { points: read_points(f)? });
        }
        let two_d = shape[0] == 1;
        let mut ns = self.grid.node_spacing().unwrap_or(hws.map(|h| 2 * h));
        if two_d {
            // One layer whatever the Z spacing (the Z half window is 0 in 2D).
            ns[0] = ns[0].max(1);
        }
        if ns.contains(&0) {
            bail!("--node-spacing must be positive");
        }
        crate::field::check_grid_size(shape, ns)?;
        let (nodes, dims) = make_grid(shape, ns);
        if nodes.is_empty() {
            bail!("no node fits in the {:?} image with spacing {:?}", shape, ns);
        }
        let mut points = vec![Vector3::new(sp[0], sp[1], sp[2])];
        points.extend(nodes);
        // One layer of a 2D image: unit cells along Z, as pixel-search writes them.
        let spacing = std::array::from_fn(|k| HeaderNum::Int(if two_d && k == 0 { 1 } else { ns[k] as i64 }));
        Ok(PropagatePoints::Grid { points, dims, node_spacing: ns, spacing })
    }

    /// The resolved job: the points in their mode, the start, the search, the outputs.
    pub fn job(&self, ctx: &Context) -> Result<PropagateJob> {
        let s = &self.search;
        let im1 = Volume::open(&self.im1, ctx.cache.clone())?;
        open_matching(&self.im2, &ctx.cache, im1.shape(), "image")?;
        // A 2D image is one plane, correlated in Y and X only: no window or search along Z
        // (spam-pixelSearchPropagate crashes on 2D images; docs/spam-differences.md).
        let two_d = im1.shape()[0] == 1;
        let (range_lo, range_hi) = s.range_in(im1.shape())?;
        let hws = self.grid.half_window().unwrap_or([5; 3]);
        let hws = if two_d { [0, hws[1], hws[2]] } else { hws };
        let lab = s.labelled_file1.as_ref().map(|p| open_matching(p, &ctx.cache, im1.shape(), "label image")).transpose()?;
        if lab.is_some() && self.guiding_points_file.is_some() {
            bail!("--labelled-file1 and --guiding-points-file are two different modes; give one");
        }
        let sp = self.start()?;
        for m in [&s.mask_file1, &s.mask_file2].into_iter().flatten() {
            open_matching(m, &ctx.cache, im1.shape(), "mask")?;
        }
        let upper = (range_hi[0] + range_hi[1] + range_hi[2]) as f64;
        // spam's defaults are means over the three axes; in 2D, over the two that are correlated.
        let axes = if two_d { 2.0 } else { 3.0 };
        let hsum = hws.iter().sum::<usize>() as f64;
        let propagation = PropagateOptions {
            radius: self.neighbourhood_radius.unwrap_or(hsum / axes + upper / axes),
            weighting_distance: self.gaussian_weighting_distance.unwrap_or(hsum + upper),
            cc_threshold: self.cc_threshold,
        };
        let options = PixelOptions {
            hws,
            range_lo,
            range_hi,
            mask_coverage: s.mask_coverage,
            grey_low: s.grey_low_threshold,
            grey_high: s.grey_high_threshold,
            apply_f: ApplyF::No,
            method: s.method(),
            subvoxel: s.subvoxel,
            zero_mean: s.zero_mean,
            label_dilate: s.label_dilate,
            // spam-pixelSearchPropagate's fixed label volume threshold.
            volume_threshold: 27,
        };
        let files = s.files(&self.im1, &self.im2)?;
        let parameters = serde_json::json!({
            "im1": self.im1, "im2": self.im2, "start_point": self.start_point, "guiding_points_file": self.guiding_points_file,
            "labelled_file1": s.labelled_file1, "hws": hws, "search_range": s.search_range, "radius": propagation.radius,
            "weighting_distance": propagation.weighting_distance, "cc_threshold": propagation.cc_threshold, "label_dilate": s.label_dilate,
            "mask_file1": s.mask_file1, "mask_file2": s.mask_file2, "mask_coverage": s.mask_coverage, "subvoxel": s.subvoxel, "zero_mean": s.zero_mean,
        });
        let points = match &lab {
            Some(lab) => self.label_points(lab, &sp, ctx.progress)?,
            None => self.grid_points(im1.shape(), hws, &sp)?,
        };
        let (mask1, mask2, guiding_points_file) = (s.mask_file1.clone(), s.mask_file2.clone(), self.guiding_points_file.clone());
        let start_displacement = [sp[3], sp[4], sp[5]];
        Ok(PropagateJob { im1: self.im1.clone(), im2: self.im2.clone(), mask1, mask2, guiding_points_file, points, start_displacement, options, propagation, parameters, files })
    }
}

pub fn run(a: PropagateArgs) -> Result<super::Summary> {
    let ctx = a.search.context()?;
    let job = a.job(&ctx)?;
    let done = crate::run::propagate::run(&job, &ctx)?;
    crate::field::sink::print_statuses(&done.counts);
    a.search.read.report(&ctx.cache);
    Ok(Some(done.line))
}
