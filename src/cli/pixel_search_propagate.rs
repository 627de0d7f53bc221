//! `dvc-stream pixel-search-propagate IM1 IM2 -sp Z Y X dZ dY dX`: spam-pixelSearchPropagate
//! on a grid, on guiding points (`-gp`) or on labels (`-lab1`), each point searched around
//! the displacement of its already found neighbours.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use nalgebra::Vector3;

use super::grid_plan::three;
use super::output_names::{open_matching, out_dir, stem};
use super::pixel_search::{background_row, write_extras, SearchArgs};
use crate::field::parquet::FieldMeta;
use crate::field::sink::{print_statuses, FieldSink};
use crate::field::vtk::HeaderNum;
use crate::field::{make_grid, FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::pixel_search::{search_label, search_point, PixelOptions, PixelResult};
use crate::kernels::propagate::{propagate, rank_points, PropagateOptions};
use crate::label::{label_of, LabelTable};
use crate::phi::{self, ApplyF, Phi};
use crate::store::output::{Existing, OutputSet};
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
    /// Half window size on all axes [spam: -hws].
    #[arg(long = "half-window-size", default_value_t = 5)]
    pub half_window_size: usize,
    /// Half window size Z Y X [spam: -hws3].
    #[arg(long = "half-window-size3", num_args = 3, value_names = ["Z", "Y", "X"])]
    pub half_window_size3: Option<Vec<usize>>,
    /// Node spacing on all axes (default: twice the half window) [spam: -ns].
    #[arg(long = "node-spacing", value_parser = super::values::positive_usize)]
    pub node_spacing: Option<usize>,
    /// Node spacing Z Y X [spam: -ns3].
    #[arg(long = "node-spacing3", num_args = 3, value_names = ["Z", "Y", "X"], value_parser = super::values::positive_usize)]
    pub node_spacing3: Option<Vec<usize>>,
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

fn with_translation(t: Vector3<f64>) -> Phi {
    let mut p = Phi::identity();
    phi::set_translation(&mut p, &t);
    p
}

fn row(i: usize, position: Vector3<f64>, r: &PixelResult) -> FieldRow {
    FieldRow {
        id: i as i64,
        position,
        phi: r.phi,
        cc: r.cc,
        error: r.error,
        iterations: 0.0,
        return_status: r.status,
        delta_phi_norm: 1.0,
        label_dilate: 0.0,
        disp_sd: None,
    }
}

pub fn run(a: PropagateArgs) -> Result<super::Summary> {
    let s = &a.search;
    let cache = s.read.cache()?;
    let im1 = Volume::open(&a.im1, cache.clone())?;
    let im2 = open_matching(&a.im2, &cache, im1.shape(), "image")?;
    // A 2D image is one plane, correlated in Y and X only: no window or search along Z
    // (spam-pixelSearchPropagate crashes on 2D images; docs/spam-differences.md).
    let two_d = im1.shape()[0] == 1;
    let (range_lo, range_hi) = s.range_in(im1.shape())?;
    let hws = three(Some(a.half_window_size), &a.half_window_size3).unwrap();
    let hws = if two_d { [0, hws[1], hws[2]] } else { hws };
    let labels = s.labelled_file1.as_ref().map(|p| open_matching(p, &cache, im1.shape(), "label image")).transpose()?;
    if labels.is_some() && a.guiding_points_file.is_some() {
        bail!("--labelled-file1 and --guiding-points-file are two different modes; give one");
    }
    let sp = match (&a.start_point, &a.guiding_points_file) {
        (Some(v), _) => [v[0], v[1], v[2], v[3], v[4], v[5]],
        (None, Some(_)) => [f64::NAN, f64::NAN, f64::NAN, 0.0, 0.0, 0.0],
        (None, None) => bail!("--start-point (-sp Z Y X dZ dY dX) is required unless --guiding-points-file is given"),
    };
    let start_disp = Vector3::new(sp[3], sp[4], sp[5]);
    let mask1 = s.mask_file1.as_ref().map(|p| open_matching(p, &cache, im1.shape(), "mask")).transpose()?;
    let mask2 = s.mask_file2.as_ref().map(|p| open_matching(p, &cache, im1.shape(), "mask")).transpose()?;
    let upper = (range_hi[0] + range_hi[1] + range_hi[2]) as f64;
    // spam's defaults are means over the three axes; in 2D, over the two that are correlated.
    let axes = if two_d { 2.0 } else { 3.0 };
    let opts = PropagateOptions {
        radius: a.neighbourhood_radius.unwrap_or(hws.iter().sum::<usize>() as f64 / axes + upper / axes),
        weighting_distance: a.gaussian_weighting_distance.unwrap_or(hws.iter().sum::<usize>() as f64 + upper),
        cc_threshold: a.cc_threshold,
    };
    let o = PixelOptions {
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
    let dir = out_dir(&s.out.out_dir, &a.im1)?;
    let prefix = s.out.prefix.clone().unwrap_or_else(|| format!("{}-{}", stem(&a.im1), stem(&a.im2)));
    let params = serde_json::json!({
        "im1": a.im1, "im2": a.im2, "start_point": a.start_point, "guiding_points_file": a.guiding_points_file,
        "labelled_file1": s.labelled_file1, "hws": hws, "search_range": s.search_range, "radius": opts.radius,
        "weighting_distance": opts.weighting_distance, "cc_threshold": opts.cc_threshold, "label_dilate": s.label_dilate,
        "mask_file1": s.mask_file1, "mask_file2": s.mask_file2, "mask_coverage": s.mask_coverage, "subvoxel": s.subvoxel, "zero_mean": s.zero_mean,
    });
    let mut meta = FieldMeta::for_command("pixel-search-propagate", params);
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    let stem_out = format!("{prefix}-pixelSearchPropagate");
    let keep = s.files.vtk_out || s.files.tiff_out;
    let t0 = Instant::now();
    let progress = s.read.progress();

    // Points, the start's index, and how rows are written.
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.im1.as_path(), a.im2.as_path()].into_iter().chain(a.guiding_points_file.as_deref()));
    let (kept, counts, n) = if let Some(lab) = &labels {
        let table = LabelTable::scan(lab, progress)?;
        let start_voxel: [i64; 3] = std::array::from_fn(|k| sp[k].round() as i64);
        let v = lab.read_box(start_voxel[0]..start_voxel[0] + 1, start_voxel[1]..start_voxel[1] + 1, start_voxel[2]..start_voxel[2] + 1)?[[0, 0, 0]];
        let start_label = label_of(v, lab)? as usize;
        if start_label == 0 {
            bail!("{}: the start point {:?} is in the background (label 0), not in a label", lab.path().display(), start_voxel);
        }
        let n = table.max_label() + 1;
        let points: Vec<Vector3<f64>> = (0..n).map(|l| table.get(l).filter(|_| l > 0).map(|i| Vector3::from(i.com)).unwrap_or(Vector3::from_element(f64::NAN))).collect();
        let order = rank_points(&points, start_label, opts.radius);
        let bar = crate::progress::bar(order.len() as u64, "propagate", progress);
        let res = propagate(&points, &order, start_disp, &opts, |l, g| search_label(&im1, &im2, lab, &table, l, &with_translation(g), &o), || bar.inc(1))?;
        bar.finish_and_clear();
        let mut sink = FieldSink::create(&mut outs, &dir, &stem_out, Layout::PixelSearchLabels, &FieldKind::Labels, &meta, !s.files.no_tsv, keep)?;
        for (l, r) in res.iter().enumerate() {
            match (l, r) {
                (0, _) => sink.push(background_row())?,
                (_, Some(r)) => sink.push(row(l, points[l], r))?,
                (_, None) => sink.push(row(l, points[l], &PixelResult::failed(&Phi::identity(), crate::field::Status::NoGuess)))?,
            }
        }
        let (kept, counts) = sink.finish()?;
        if let Some(f) = &kept {
            write_extras(&mut outs, f, &dir, &prefix, "pixelSearchPropagate", hws, [HeaderNum::Int(1); 3], s.files.vtk_out, false)?;
        }
        (kept, counts, n)
    } else {
        // Grid or guiding points: point 0 is the start.
        let (points, grid, start) = match &a.guiding_points_file {
            Some(f) => (read_points(f)?, None, 0),
            None => {
                let mut ns = three(a.node_spacing, &a.node_spacing3).unwrap_or(hws.map(|h| 2 * h));
                if two_d {
                    // One layer whatever the Z spacing (the Z half window is 0 in 2D).
                    ns[0] = ns[0].max(1);
                }
                if ns.contains(&0) {
                    bail!("--node-spacing must be positive");
                }
                crate::field::check_grid_size(im1.shape(), ns)?;
                let (nodes, dims) = make_grid(im1.shape(), ns);
                if nodes.is_empty() {
                    bail!("no node fits in the {:?} image with spacing {:?}", im1.shape(), ns);
                }
                let mut pts = vec![Vector3::new(sp[0], sp[1], sp[2])];
                pts.extend(nodes);
                (pts, Some((dims, ns)), 0)
            }
        };
        let order = rank_points(&points, start, opts.radius);
        let bar = crate::progress::bar(order.len() as u64, "propagate", progress);
        let res = propagate(&points, &order, start_disp, &opts, |i, g| search_point(&im1, &im2, mask1.as_ref(), mask2.as_ref(), &points[i], &with_translation(g), &o), || bar.inc(1))?;
        bar.finish_and_clear();
        // On a grid the start point is not a node: its row is dropped.
        let first = if grid.is_some() { 1 } else { 0 };
        let kind = match grid {
            Some((dims, ns)) => FieldKind::Grid { dims, spacing: ns.map(|v| v as f64) },
            None => PhiField::grid_from_positions(&points),
        };
        let mut sink = FieldSink::create(&mut outs, &dir, &stem_out, Layout::PixelSearch, &kind, &meta, !s.files.no_tsv, keep)?;
        for i in first..points.len() {
            let r = res[i].clone().unwrap_or_else(|| PixelResult::failed(&Phi::identity(), crate::field::Status::Skipped));
            sink.push(row(i - first, points[i], &r))?;
        }
        let (kept, counts) = sink.finish()?;
        if let Some(mut f) = kept.clone() {
            match grid {
                Some((_, ns)) => {
                    // One layer of a 2D image: unit cells along Z, as pixel-search writes them.
                    let spacing: [HeaderNum; 3] = std::array::from_fn(|k| HeaderNum::Int(if two_d && k == 0 { 1 } else { ns[k] as i64 }));
                    write_extras(&mut outs, &f, &dir, &prefix, "pixelSearchPropagate", hws, spacing, s.files.vtk_out, s.files.tiff_out)?
                }
                None => {
                    // Scattered points have no grid: glyphs only.
                    f.kind = FieldKind::Labels;
                    write_extras(&mut outs, &f, &dir, &prefix, "pixelSearchPropagate", hws, [HeaderNum::Int(1); 3], s.files.vtk_out, false)?
                }
            }
        }
        (kept, counts, points.len() - first)
    };
    drop(kept);
    let secs = t0.elapsed().as_secs_f64();
    s.files.quicklook(&mut outs, &dir.join(format!("{stem_out}.parquet")))?;
    outs.commit()?;
    print_statuses(&counts);
    s.read.report(&cache);
    Ok(Some(format!(
        "pixel-search-propagate {} → {}: {n} points in {secs:.1} s, returnStatus {} → {}",
        a.im1.display(),
        a.im2.display(),
        crate::say::statuses(&counts),
        dir.join(format!("{stem_out}.parquet")).display()
    )))
}
