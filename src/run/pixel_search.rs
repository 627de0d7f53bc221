//! spam-pixelSearch as a library call: a resolved [`PixelSearchJob`] (grid nodes or labels,
//! each point's guess, the search) searched point by point through the
//! [pipeline](super::pipeline), giving the table and spam's VTK and TIFF files.

use std::path::PathBuf;

use anyhow::Result;
use nalgebra::Vector3;
use serde::Serialize;

use super::guesses::{read_label_guess, LabelGuess, PIXEL_SEARCH_TOLERANCE};
use super::pipeline::{serialize_phis, serialize_points, BoxSet, Context, Correlation, Planned, PointKernel, Sides};
use crate::distribute::{JobPrint, RunOptions};
use crate::field::grid_files::{FilesLayout, FilesRequest, GridFiles, GridShape};
use crate::field::parquet::FieldMeta;
use crate::field::vtk::HeaderNum;
use crate::field::{FieldKind, FieldRow, Layout};
use crate::kernels::pixel_search::{label_boxes, point_boxes, search_label, search_point, PixelOptions, PixelResult};
use crate::label::LabelTable;
use crate::phi::{self, ApplyF, Phi};
use crate::scheduler;
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;

/// The points searched: grid nodes, or the labels of a label image (row l = label l).
#[derive(Clone, Debug, Serialize)]
pub enum SearchPoints {
    Grid {
        #[serde(serialize_with = "serialize_points")]
        nodes: Vec<Vector3<f64>>,
        dims: [usize; 3],
        /// Node spacing as the VTK header prints it (one voxel along Z on a 2D image).
        spacing: [HeaderNum; 3],
    },
    Labels {
        lab1: PathBuf,
        table: LabelTable,
        /// Centres of mass (NaN for missing labels).
        #[serde(serialize_with = "serialize_points")]
        positions: Vec<Vector3<f64>>,
    },
}

impl SearchPoints {
    pub fn positions(&self) -> &[Vector3<f64>] {
        match self {
            SearchPoints::Grid { nodes, .. } => nodes,
            SearchPoints::Labels { positions, .. } => positions,
        }
    }
}

/// Where the table goes and what is written beside it.
#[derive(Clone, Debug, Serialize)]
pub struct SearchFiles {
    pub dir: PathBuf,
    pub prefix: String,
    pub tsv: bool,
    pub vtk: bool,
    pub tiff: bool,
    pub png: bool,
}

/// A pixel-search run, resolved.
#[derive(Clone, Debug, Serialize)]
pub struct PixelSearchJob {
    pub im1: PathBuf,
    pub im2: PathBuf,
    pub mask1: Option<PathBuf>,
    pub mask2: Option<PathBuf>,
    /// The guess file (`-pf`), an input of the job.
    pub phi_file: Option<PathBuf>,
    pub points: SearchPoints,
    #[serde(serialize_with = "serialize_phis")]
    pub guesses: Vec<Phi>,
    pub options: PixelOptions,
    /// The options as given, recorded in the table's metadata.
    pub parameters: serde_json::Value,
    pub files: SearchFiles,
    pub run: RunOptions,
}

/// The outcome of a run.
pub struct SearchSummary {
    pub line: String,
    pub counts: std::collections::BTreeMap<crate::field::Status, usize>,
}

/// A searched point's row (`iterations` is 1 in pixel-search's table, 0 in propagate's).
pub fn pixel_row(i: usize, position: Vector3<f64>, r: &PixelResult, iterations: f64) -> FieldRow {
    FieldRow { id: i as i64, position, phi: r.phi, cc: r.cc, error: r.error, iterations, return_status: r.status, delta_phi_norm: 1.0, label_dilate: 0.0, disp_sd: None }
}

/// Label-mode guesses at the labels' centres of mass `positions`: identity, a registration
/// moved to each centre, or a label field of the same label image (its F as `apply_f` says).
pub fn label_guesses(positions: &[Vector3<f64>], phi_file: &Option<PathBuf>, bin_ratio: f64, apply_f: ApplyF) -> Result<Vec<Phi>> {
    let Some(p) = phi_file else { return Ok(vec![Phi::identity(); positions.len()]) };
    Ok(match read_label_guess(p, bin_ratio, apply_f, positions, PIXEL_SEARCH_TOLERANCE, "label mode")? {
        LabelGuess::Registration(g) => g,
        LabelGuess::Field(f) => f.phis.iter().map(|m| phi::apply_f_mode(m, apply_f)).collect(),
    })
}

struct GridKernel<'a> {
    job: &'a PixelSearchJob,
    nodes: &'a [Vector3<f64>],
    im1: &'a Volume,
    im2: &'a Volume,
    mask1: Option<&'a Volume>,
    mask2: Option<&'a Volume>,
}

impl PointKernel for GridKernel<'_> {
    fn sides(&self) -> Sides<'_> {
        Sides { image1: std::iter::once(self.im1).chain(self.mask1).collect(), image2: std::iter::once(self.im2).chain(self.mask2).collect() }
    }

    fn read_boxes(&self, i: usize, boxes: &mut BoxSet) {
        boxes.add(point_boxes(&self.nodes[i], &self.job.guesses[i], &self.job.options));
    }

    fn compute(&self, i: usize) -> Result<FieldRow> {
        let r = search_point(self.im1, self.im2, self.mask1, self.mask2, &self.nodes[i], &self.job.guesses[i], &self.job.options)?;
        Ok(pixel_row(i, self.nodes[i], &r, 1.0))
    }
}

struct LabelKernel<'a> {
    job: &'a PixelSearchJob,
    table: &'a LabelTable,
    positions: &'a [Vector3<f64>],
    im1: &'a Volume,
    im2: &'a Volume,
    lab: &'a Volume,
}

impl PointKernel for LabelKernel<'_> {
    fn sides(&self) -> Sides<'_> {
        Sides { image1: vec![self.im1, self.lab], image2: vec![self.im2] }
    }

    fn read_boxes(&self, l: usize, boxes: &mut BoxSet) {
        if let Some(b) = label_boxes(self.table, l, &self.job.guesses[l], &self.job.options) {
            boxes.add(b);
        }
    }

    fn compute(&self, l: usize) -> Result<FieldRow> {
        if l == 0 {
            return Ok(FieldRow::background());
        }
        let r = search_label(self.im1, self.im2, self.lab, self.table, l, &self.job.guesses[l], &self.job.options)?;
        Ok(pixel_row(l, self.positions[l], &r, 1.0))
    }
}

/// Searches every point of `job`; its outputs are committed together at the end, or none.
pub fn run(job: &PixelSearchJob, ctx: &Context) -> Result<SearchSummary> {
    let cache = &ctx.cache;
    let im1 = Volume::open(&job.im1, cache.clone())?;
    let im2 = Volume::open_matching(&job.im2, cache, im1.shape(), "image")?;
    let mask1 = job.mask1.as_ref().map(|p| Volume::open_matching(p, cache, im1.shape(), "mask")).transpose()?;
    let mask2 = job.mask2.as_ref().map(|p| Volume::open_matching(p, cache, im1.shape(), "mask")).transpose()?;
    let f = &job.files;
    let mut meta = FieldMeta::for_command("pixel-search", job.parameters.clone());
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    let lab1 = match &job.points {
        SearchPoints::Labels { lab1, .. } => Some(lab1.as_path()),
        SearchPoints::Grid { .. } => None,
    };
    let inputs: Vec<&std::path::Path> = [Some(job.im1.as_path()), Some(job.im2.as_path()), job.phi_file.as_deref(), lab1, job.mask1.as_deref(), job.mask2.as_deref()].into_iter().flatten().collect();
    let positions = job.points.positions();
    let n = positions.len();
    // The resolved job: the kernel's options, every point and guess, the inputs' identities.
    let print = JobPrint::new("pixel-search", &job.options, serde_json::json!({"labels": lab1.is_some()}), positions, &job.guesses, &inputs)?;
    let stem = format!("{}-pixelSearch", f.prefix);
    let (layout, kind, tiles, files_layout, grid) = match &job.points {
        SearchPoints::Grid { dims, spacing, .. } => {
            let cs = im1.chunk_shape();
            let ns = spacing.map(|h| (h.value().round() as usize).max(1));
            let tiles = scheduler::plan_grid_tiles(*dims, std::array::from_fn(|k| (cs[k] / ns[k]).max(1)));
            let kind = FieldKind::Grid { dims: *dims, spacing: spacing.map(|h| h.value()) };
            (Layout::PixelSearch, kind, tiles, FilesLayout::PixelSearchGrid, Some(GridShape { dims: *dims, spacing: *spacing }))
        }
        SearchPoints::Labels { positions, .. } => {
            let pos: Vec<[f64; 3]> = positions.iter().map(|p| [p[0], p[1], p[2]]).collect();
            (Layout::PixelSearchLabels, FieldKind::Labels, scheduler::plan_point_tiles(&pos, im1.chunk_shape(), 64), FilesLayout::PixelSearchGlyphs, None)
        }
    };
    let correlation = Correlation {
        tool: "pixel-search",
        dir: &f.dir,
        stem: &stem,
        layout,
        kind,
        tiles,
        points: n,
        print,
        meta,
        tsv: f.tsv,
        whole_field: (f.vtk || f.tiff || f.png).then_some("--vtk-out, --tiff-out and --png"),
    };
    let planned = Planned::plan(&job.run, correlation)?;
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([job.im1.as_path(), job.im2.as_path()].into_iter().chain(job.phi_file.as_deref()));
    let request = FilesRequest { layout: files_layout, dir: f.dir.clone(), stem: stem.clone(), grid, vtk: f.vtk, tiff: f.tiff };
    let mut files = GridFiles::reserve(&mut outs, request)?;
    let done = match &job.points {
        SearchPoints::Grid { nodes, .. } => {
            let kernel = GridKernel { job, nodes, im1: &im1, im2: &im2, mask1: mask1.as_ref(), mask2: mask2.as_ref() };
            planned.run(&kernel, &mut outs, ctx, |row| files.push(row))?
        }
        SearchPoints::Labels { lab1, table, positions } => {
            let lab = Volume::open_matching(lab1, cache, im1.shape(), "label image")?;
            let kernel = LabelKernel { job, table, positions, im1: &im1, im2: &im2, lab: &lab };
            planned.run(&kernel, &mut outs, ctx, |row| files.push(row))?
        }
    };
    files.write(&mut outs)?;
    let table = f.dir.join(format!("{stem}.parquet"));
    if f.png {
        for p in crate::view::plot::quicklook(&mut outs, &table)? {
            crate::note!("wrote {}", p.display());
        }
    }
    outs.commit()?;
    done.job.complete()?;
    let line = format!(
        "pixel-search {} → {}: {}, returnStatus {} → {}",
        job.im1.display(),
        job.im2.display(),
        crate::say::work(n, done.replayed, done.secs, done.threads, "points"),
        crate::say::statuses(&done.counts),
        table.display()
    );
    Ok(SearchSummary { line, counts: done.counts })
}
