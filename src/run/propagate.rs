//! spam-pixelSearchPropagate as a library call: a resolved [`PropagateJob`] (grid nodes,
//! guiding points or labels, the start, the search) searched in rank order from the start,
//! each point around the displacement of its already found neighbours. The points depend on
//! each other, so they are searched one after the other, not through the tile scheduler; the
//! table and spam's files are written as the [pipeline](super::pipeline) writes them.

use std::path::PathBuf;

use anyhow::Result;
use nalgebra::Vector3;
use serde::Serialize;

use super::pipeline::{serialize_points, write_table, Context};
use super::pixel_search::{pixel_row, SearchFiles};
use crate::field::grid_files::{FilesLayout, FilesRequest, GridFiles, GridShape};
use crate::field::parquet::FieldMeta;
use crate::field::vtk::HeaderNum;
use crate::field::{FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::pixel_search::{search_label, search_point, PixelOptions, PixelResult};
use crate::kernels::propagate::{propagate, rank_points, PropagateOptions};
use crate::label::LabelTable;
use crate::phi::{self, Phi};
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;

/// The points searched.
#[derive(Clone, Debug, Serialize)]
pub enum PropagatePoints {
    /// The start point first, then the grid's nodes (the start's row is not written).
    Grid {
        #[serde(serialize_with = "serialize_points")]
        points: Vec<Vector3<f64>>,
        dims: [usize; 3],
        node_spacing: [usize; 3],
        /// The spacing as the VTK header prints it (one voxel along Z on a 2D image).
        spacing: [HeaderNum; 3],
    },
    /// Guiding points (`-gp`), the first being the start.
    Guided {
        #[serde(serialize_with = "serialize_points")]
        points: Vec<Vector3<f64>>,
    },
    /// Labels (row l = label l, NaN for the background and missing labels), from `start`.
    Labels {
        lab1: PathBuf,
        table: LabelTable,
        #[serde(serialize_with = "serialize_points")]
        points: Vec<Vector3<f64>>,
        start: usize,
    },
}

/// A propagation run, resolved.
#[derive(Clone, Debug, Serialize)]
pub struct PropagateJob {
    pub im1: PathBuf,
    pub im2: PathBuf,
    pub mask1: Option<PathBuf>,
    pub mask2: Option<PathBuf>,
    pub guiding_points_file: Option<PathBuf>,
    pub points: PropagatePoints,
    /// The start's integer displacement (Z, Y, X).
    pub start_displacement: [f64; 3],
    pub options: PixelOptions,
    pub propagation: PropagateOptions,
    /// The options as given, recorded in the table's metadata.
    pub parameters: serde_json::Value,
    pub files: SearchFiles,
}

/// The outcome of a run.
pub struct PropagateSummary {
    pub line: String,
    pub counts: std::collections::BTreeMap<crate::field::Status, usize>,
}

fn with_translation(t: Vector3<f64>) -> Phi {
    let mut p = Phi::identity();
    phi::set_translation(&mut p, &t);
    p
}

/// Propagates over every point of `job`; its outputs are committed together at the end, or none.
pub fn run(job: &PropagateJob, ctx: &Context) -> Result<PropagateSummary> {
    let cache = &ctx.cache;
    let im1 = Volume::open(&job.im1, cache.clone())?;
    let im2 = Volume::open_matching(&job.im2, cache, im1.shape(), "image")?;
    let mask1 = job.mask1.as_ref().map(|p| Volume::open_matching(p, cache, im1.shape(), "mask")).transpose()?;
    let mask2 = job.mask2.as_ref().map(|p| Volume::open_matching(p, cache, im1.shape(), "mask")).transpose()?;
    let (f, o) = (&job.files, &job.options);
    let mut meta = FieldMeta::for_command("pixel-search-propagate", job.parameters.clone());
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    let stem = format!("{}-pixelSearchPropagate", f.prefix);
    let start_disp = Vector3::from(job.start_displacement);
    let t0 = std::time::Instant::now();
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([job.im1.as_path(), job.im2.as_path()].into_iter().chain(job.guiding_points_file.as_deref()));
    let (points, start) = match &job.points {
        PropagatePoints::Grid { points, .. } | PropagatePoints::Guided { points } => (points, 0),
        PropagatePoints::Labels { points, start, .. } => (points, *start),
    };
    let order = rank_points(points, start, job.propagation.radius);
    let bar = crate::progress::bar(order.len() as u64, "propagate", ctx.progress);
    let results = match &job.points {
        PropagatePoints::Labels { lab1, table, .. } => {
            let lab = Volume::open_matching(lab1, cache, im1.shape(), "label image")?;
            propagate(points, &order, start_disp, &job.propagation, |l, g| search_label(&im1, &im2, &lab, table, l, &with_translation(g), o), || bar.inc(1))?
        }
        _ => propagate(points, &order, start_disp, &job.propagation, |i, g| search_point(&im1, &im2, mask1.as_ref(), mask2.as_ref(), &points[i], &with_translation(g), o), || bar.inc(1))?,
    };
    bar.finish_and_clear();
    // The rows, the table's layout and kind, and spam's files of it.
    let (rows, layout, kind, files_layout, grid): (Vec<FieldRow>, _, _, _, _) = match &job.points {
        PropagatePoints::Labels { .. } => {
            let rows = results
                .iter()
                .enumerate()
                .map(|(l, r)| match (l, r) {
                    (0, _) => FieldRow::background(),
                    (_, Some(r)) => pixel_row(l, points[l], r, 0.0),
                    (_, None) => pixel_row(l, points[l], &PixelResult::failed(&Phi::identity(), crate::field::Status::NoGuess), 0.0),
                })
                .collect();
            (rows, Layout::PixelSearchLabels, FieldKind::Labels, FilesLayout::PixelSearchGlyphs, None)
        }
        PropagatePoints::Grid { dims, node_spacing, spacing, .. } => {
            // The start point is not a node: its row is dropped.
            let rows = (1..points.len()).map(|i| pixel_row(i - 1, points[i], &results[i].clone().unwrap_or_else(|| PixelResult::failed(&Phi::identity(), crate::field::Status::Skipped)), 0.0)).collect();
            let kind = FieldKind::Grid { dims: *dims, spacing: node_spacing.map(|v| v as f64) };
            (rows, Layout::PixelSearch, kind, FilesLayout::PixelSearchGrid, Some(GridShape { dims: *dims, spacing: *spacing }))
        }
        PropagatePoints::Guided { .. } => {
            let rows = (0..points.len()).map(|i| pixel_row(i, points[i], &results[i].clone().unwrap_or_else(|| PixelResult::failed(&Phi::identity(), crate::field::Status::Skipped)), 0.0)).collect();
            // Scattered points have no grid: glyphs only.
            (rows, Layout::PixelSearch, PhiField::grid_from_positions(points), FilesLayout::PixelSearchGlyphs, None)
        }
    };
    let n = rows.len();
    let mut files = GridFiles::reserve(&mut outs, FilesRequest { layout: files_layout, dir: f.dir.clone(), stem: stem.clone(), grid, vtk: f.vtk, tiff: f.tiff })?;
    let counts = write_table(&mut outs, &f.dir, &stem, layout, &kind, &meta, f.tsv, &mut files, rows)?;
    files.write(&mut outs)?;
    let secs = t0.elapsed().as_secs_f64();
    let table = f.dir.join(format!("{stem}.parquet"));
    if f.png {
        for p in crate::view::plot::quicklook(&mut outs, &table)? {
            crate::note!("wrote {}", p.display());
        }
    }
    outs.commit()?;
    let line = format!("pixel-search-propagate {} → {}: {n} points in {secs:.1} s, returnStatus {} → {}", job.im1.display(), job.im2.display(), crate::say::statuses(&counts), table.display());
    Ok(PropagateSummary { line, counts })
}
