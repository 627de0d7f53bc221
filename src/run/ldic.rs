//! spam-ldic as a library call: a resolved [`LdicJob`] (the pairs, every node and its guess,
//! the windows and the solver) correlated window by window through the
//! [pipeline](super::pipeline), giving each pair's table (and its VTK, TIFFs and quicklook).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use nalgebra::Vector3;
use serde::Serialize;

use super::pipeline::{serialize_phis, serialize_points, BoxSet, Context, Correlation, Planned, PointKernel, Sides};
use crate::distribute::{JobPrint, RunOptions};
use crate::field::grid_files::{FilesLayout, FilesRequest, GridFiles, GridShape};
use crate::field::parquet::FieldMeta;
use crate::field::vtk::HeaderNum;
use crate::field::{FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::local::{correlate_point, point_boxes, LocalOptions, PointResult};
use crate::phi::{ApplyF, Phi};
use crate::scheduler;
use crate::store::output::{Existing, OutputSet};
use crate::store::{ChunkCache, Volume};

/// One pair of images and where its table goes.
#[derive(Clone, Debug, Serialize)]
pub struct LdicPair {
    pub im1: PathBuf,
    pub im2: PathBuf,
    pub dir: PathBuf,
    /// Files are `<prefix>-ldic.parquet`, `.tsv`, `.vtk`, `-<column>.tif`.
    pub prefix: String,
}

/// Where the guesses came from (recorded in the table's metadata; the file is an input).
#[derive(Clone, Debug, Serialize)]
pub struct GuessSource {
    pub phi_file: Option<PathBuf>,
    pub bin_ratio: f64,
    pub apply_f: ApplyF,
}

/// What to write beside each table.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LdicFiles {
    pub tsv: bool,
    pub vtk: bool,
    pub tiff: bool,
    pub png: bool,
}

/// An ldic run, resolved: every pair correlates the same nodes with the same guesses.
#[derive(Clone, Debug, Serialize)]
pub struct LdicJob {
    pub pairs: Vec<LdicPair>,
    pub mask1: Option<PathBuf>,
    pub guess: GuessSource,
    #[serde(serialize_with = "serialize_points")]
    pub nodes: Vec<Vector3<f64>>,
    #[serde(serialize_with = "serialize_phis")]
    pub guesses: Vec<Phi>,
    /// Nodes per axis and their spacing, as the VTK header prints it.
    pub dims: [usize; 3],
    pub spacing: [HeaderNum; 3],
    /// `--skip`: nodes of the guess field whose status is 2 keep its values.
    pub skip: bool,
    /// The guess field whose rows `--skip` keeps (the job names it as `guess.phi_file`).
    #[serde(skip)]
    pub kept: Option<PhiField>,
    pub options: LocalOptions,
    pub files: LdicFiles,
    pub run: RunOptions,
}

/// One pair's outcome.
pub struct PairSummary {
    /// "ldic IM1 → IM2: N points in …, returnStatus … → TABLE".
    pub line: String,
    pub counts: std::collections::BTreeMap<crate::field::Status, usize>,
    /// The pair's chunk cache (for `--stats`).
    pub cache: Arc<ChunkCache>,
}

struct LdicKernel<'a> {
    job: &'a LdicJob,
    im1: &'a Volume,
    im2: &'a Volume,
    mask: Option<&'a Volume>,
}

impl LdicKernel<'_> {
    /// Whether node `i` is correlated (not a converged node kept by --skip).
    fn recompute(&self, i: usize) -> bool {
        self.job.kept.as_ref().is_none_or(|f| f.return_status[i].worth_retrying())
    }
}

impl PointKernel for LdicKernel<'_> {
    fn sides(&self) -> Sides<'_> {
        Sides { image1: std::iter::once(self.im1).chain(self.mask).collect(), image2: vec![self.im2] }
    }

    fn read_boxes(&self, i: usize, boxes: &mut BoxSet) {
        boxes.add(point_boxes(&self.job.nodes[i], &self.job.guesses[i], &self.job.options));
    }

    fn compute(&self, i: usize) -> Result<FieldRow> {
        let j = self.job;
        let r = match &j.kept {
            Some(f) if !self.recompute(i) => PointResult {
                phi: f.phis[i],
                return_status: f.return_status[i],
                error: f.error[i],
                iterations: f.iterations[i] as usize,
                delta_phi_norm: f.delta_phi_norm[i],
                disp_sd: f.disp_sd[i],
            },
            _ => correlate_point(self.im1, self.im2, self.mask, &j.nodes[i], &j.guesses[i], &j.options)?,
        };
        Ok(FieldRow { disp_sd: crate::field::some_sd(r.disp_sd), ..FieldRow::registered(i as i64, j.nodes[i], r.phi, r.error, r.iterations, r.return_status, r.delta_phi_norm) })
    }
}

/// Correlates every pair of `job`; all tables are committed together at the end, or none.
pub fn run(job: &LdicJob, ctx: &Context) -> Result<Vec<PairSummary>> {
    // Every image is checked before the first output is written.
    let first = Volume::open(&job.pairs[0].im1, ctx.cache.clone())?;
    for p in &job.pairs {
        Volume::open_matching(&p.im1, &ctx.cache, first.shape(), "image")?;
        Volume::open_matching(&p.im2, &ctx.cache, first.shape(), "image")?;
    }
    let mut outs = OutputSet::new(Existing::Replace);
    let images = job.pairs.iter().flat_map(|p| [p.im1.as_path(), p.im2.as_path()]);
    outs.inputs(images.chain(job.guess.phi_file.as_deref()).chain(job.mask1.as_deref()));
    let mut jobs = vec![];
    let mut summaries = vec![];
    for pair in &job.pairs {
        let (j, s) = run_pair(job, pair, ctx, &mut outs)?;
        jobs.push(j);
        summaries.push(s);
    }
    outs.commit()?;
    for j in jobs {
        j.complete()?;
    }
    Ok(summaries)
}

fn run_pair(job: &LdicJob, pair: &LdicPair, ctx: &Context, outs: &mut OutputSet) -> Result<(crate::distribute::Job, PairSummary)> {
    let cache = ChunkCache::new(ctx.cache.capacity());
    let im1 = Volume::open(&pair.im1, cache.clone())?;
    let im2 = Volume::open_matching(&pair.im2, &cache, im1.shape(), "image")?;
    let mask = job.mask1.as_ref().map(|p| Volume::open_matching(p, &cache, im1.shape(), "mask")).transpose()?;
    let (o, g) = (&job.options, &job.guess);
    let kind = FieldKind::Grid { dims: job.dims, spacing: job.spacing.map(|h| h.value()) };
    let mut params = serde_json::json!({
        "im1": pair.im1, "im2": pair.im2, "hws": o.hws, "margin": o.margin, "phi_file": g.phi_file, "apply_f": g.apply_f,
        "phi_file_bin_ratio": g.bin_ratio, "mask_file1": job.mask1, "mask_coverage": o.mask_coverage,
        "grey_low": o.grey_low, "grey_high": o.grey_high, "max_iterations": o.register.max_iterations,
        "min_delta_phi": o.register.delta_phi_min, "interpolation_order": o.register.order, "update_gradient": o.register.update_gradient,
        "rigid": o.register.rigid, "skip": job.skip, "nodes_dim": job.dims,
    });
    if o.register.shift {
        params["shift"] = true.into();
    }
    let mut meta = FieldMeta::for_command("ldic", params);
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    let cs = im1.chunk_shape();
    let ns = job.spacing.map(|h| (h.value().round() as usize).max(1));
    let tiles = scheduler::plan_grid_tiles(job.dims, std::array::from_fn(|k| (cs[k] / ns[k]).max(1)));
    // The resolved job: the kernel's options, every node and guess, the inputs' identities.
    let inputs: Vec<&std::path::Path> = [Some(pair.im1.as_path()), Some(pair.im2.as_path()), g.phi_file.as_deref(), job.mask1.as_deref()].into_iter().flatten().collect();
    let extra = serde_json::json!({"skip": job.skip, "grid_dims": job.dims});
    let print = JobPrint::new("ldic", o, extra, &job.nodes, &job.guesses, &inputs)?;
    let stem = format!("{}-ldic", pair.prefix);
    let f = job.files;
    let correlation = Correlation {
        tool: "ldic",
        dir: &pair.dir,
        stem: &stem,
        layout: Layout::Ldic,
        kind,
        tiles,
        points: job.nodes.len(),
        print,
        meta,
        tsv: f.tsv,
        whole_field: (f.vtk || f.tiff || f.png).then_some("--vtk-out, --tiff-out and --png"),
    };
    let planned = Planned::plan(&job.run, correlation)?;
    let request = FilesRequest { layout: FilesLayout::LdicGrid, dir: pair.dir.clone(), stem: stem.clone(), grid: Some(GridShape { dims: job.dims, spacing: job.spacing }), vtk: f.vtk, tiff: f.tiff };
    let mut files = GridFiles::reserve(outs, request)?;
    let kernel = LdicKernel { job, im1: &im1, im2: &im2, mask: mask.as_ref() };
    let done = planned.run(&kernel, outs, &Context { cache: cache.clone(), ..ctx.clone() }, |row| files.push(row))?;
    files.write(outs)?;
    let table = pair.dir.join(format!("{stem}.parquet"));
    if f.png {
        for p in crate::view::plot::quicklook(outs, &table)? {
            crate::note!("wrote {}", p.display());
        }
    }
    let line = format!(
        "ldic {} → {}: {}, returnStatus {} → {}",
        pair.im1.display(),
        pair.im2.display(),
        done.work(job.nodes.len(), "points"),
        crate::say::statuses(&done.counts),
        table.display()
    );
    Ok((done.job, PairSummary { line, counts: done.counts, cache }))
}
