//! The correlation pipeline, written once for every per-point tool (ldic windows, ddic labels,
//! pixel-search points and labels): plan the run (shard, checkpoint, `--resume` refused on
//! any change of the job), open the table's sink, replay the finished rows, stream the rest
//! through the tile scheduler with each tile's chunks loaded ahead, record every row in the
//! checkpoint, and count the statuses.
//!
//! Why a trait: the four tools differ only in which boxes of which images a point reads and
//! how it computes its row. The prefetch reads through the kernel's own box function (the one
//! its correlation cuts its windows with), so the chunks loaded ahead are the chunks read.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use nalgebra::Vector3;

use crate::distribute::{Job, JobPrint, RunOptions};
use crate::field::parquet::FieldMeta;
use crate::field::{FieldKind, FieldRow, Layout};
use crate::phi::Phi;
use crate::scheduler::{self, BoxUnion, Tile};
use crate::store::output::OutputSet;
use crate::store::{ChunkCache, Volume};

/// The boxes a tile reads: one union per side (image 1 and what is read with it, image 2 and
/// its mask), so each chunk is loaded once however many points share it.
#[derive(Default)]
pub struct BoxSet {
    pub image1: BoxUnion,
    pub image2: BoxUnion,
}

/// A box `[lo, hi)` in voxels (Z, Y, X).
pub type Box3 = ([i64; 3], [i64; 3]);

impl BoxSet {
    /// Adds a point's boxes: image 1's, and image 2's when the point reads it.
    pub fn add(&mut self, (b1, b2): (Box3, Option<Box3>)) {
        self.image1.add(b1);
        if let Some(b2) = b2 {
            self.image2.add(b2);
        }
    }
}

/// The volumes read through each side of a [`BoxSet`], in the order they are loaded.
pub struct Sides<'a> {
    pub image1: Vec<&'a Volume>,
    pub image2: Vec<&'a Volume>,
}

/// One tool's work at one point.
pub trait PointKernel: Sync {
    /// The volumes read through [`BoxSet::image1`] and [`BoxSet::image2`].
    fn sides(&self) -> Sides<'_>;
    /// Adds the boxes point `i` reads (none for a point computed without reading, such as a
    /// background label or a row kept by `--skip`).
    fn read_boxes(&self, i: usize, boxes: &mut BoxSet);
    /// The table row of point `i`.
    fn compute(&self, i: usize) -> Result<FieldRow>;
}

/// What a run needs that is not part of its job: where chunks are cached, how many workers,
/// whether progress is shown.
#[derive(Clone)]
pub struct Context {
    pub cache: Arc<ChunkCache>,
    pub threads: usize,
    pub progress: bool,
}

/// A planned correlation: its points in tiles and the job the checkpoint and parts record.
pub struct Correlation<'a> {
    /// The progress line's name.
    pub tool: &'static str,
    pub dir: &'a Path,
    /// File stem of the table (`<prefix>-ldic`).
    pub stem: &'a str,
    pub layout: Layout,
    pub kind: FieldKind,
    pub tiles: Vec<Tile>,
    /// Points of the whole run (the progress bar's length).
    pub points: usize,
    pub print: JobPrint,
    pub meta: FieldMeta,
    pub tsv: bool,
    /// Outputs asked for that need the whole field (refused on a shard), named for the message.
    pub whole_field: Option<&'static str>,
}

/// A run whose job is planned (and checked against its checkpoint), not yet computed.
pub struct Planned<'a> {
    c: Correlation<'a>,
    job: Job,
}

/// A finished correlation.
pub struct Finished {
    /// The run's job: [`Job::complete`] once its outputs are committed.
    pub job: Job,
    pub counts: std::collections::BTreeMap<crate::field::Status, usize>,
    /// Rows an interrupted run had finished (replayed from its checkpoint).
    pub replayed: usize,
    pub secs: f64,
    pub threads: usize,
}

impl Finished {
    /// How much work was done, as the summary lines say it (`total` points of `unit`).
    pub fn work(&self, total: usize, unit: &str) -> String {
        crate::say::work(total, self.replayed, self.secs, self.threads, unit)
    }
}

impl<'a> Planned<'a> {
    /// Plans the run: its shard, its checkpoint (a `--resume` of another job is refused), and
    /// refuses whole-field outputs on a shard.
    pub fn plan(run: &RunOptions, mut c: Correlation<'a>) -> Result<Planned<'a>> {
        let tiles = std::mem::take(&mut c.tiles);
        let job = Job::plan(run, c.dir, c.stem, tiles, &c.print, c.layout, &c.kind)?;
        if let Some(what) = c.whole_field {
            job.require_whole_field(true, what)?;
        }
        Ok(Planned { c, job })
    }

    /// The shard this run computes, if any.
    pub fn shard(&self) -> Option<crate::distribute::Shard> {
        self.job.shard()
    }

    /// Computes every point still to do with `kernel`: rows (replayed ones first) go to the
    /// table and to `observe`, in point order.
    pub fn run<K: PointKernel>(self, kernel: &K, outs: &mut OutputSet, ctx: &Context, mut observe: impl FnMut(&FieldRow)) -> Result<Finished> {
        let Planned { c, mut job } = self;
        let mut sink = job.sink(outs, c.layout, &c.kind, &c.meta, c.tsv, false)?;
        let total = c.points;
        let bar = crate::progress::bar(total as u64, c.tool, ctx.progress);
        let mut emit = |row: FieldRow| -> Result<()> {
            observe(&row);
            sink.push(row)?;
            bar.inc(1);
            Ok(())
        };
        // Rows an interrupted run finished (--resume), then the rest.
        let replayed = job.replay(&mut emit)?;
        let (tiles, order) = job.take_work();
        let threads = ctx.threads.max(1);
        let sides = kernel.sides();
        let t0 = Instant::now();
        scheduler::run(
            &tiles,
            &order,
            threads,
            |tile| {
                let mut boxes = BoxSet::default();
                for &i in &tile.points {
                    kernel.read_boxes(i, &mut boxes);
                }
                for v in &sides.image1 {
                    boxes.image1.warm(v);
                }
                for v in &sides.image2 {
                    boxes.image2.warm(v);
                }
            },
            |tile| tile.points.iter().map(|&i| Ok((i, kernel.compute(i)?))).collect(),
            |_, row| {
                job.record(&row)?;
                emit(row)
            },
        )?;
        bar.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        let (_, counts) = sink.finish()?;
        Ok(Finished { job, counts, replayed, secs, threads })
    }
}

/// Writes the rows of a tool computed outside the scheduler (propagation, whose points depend
/// on each other) as the pipeline writes a correlation's: the table (and TSV) and the files of
/// `files`. Returns the rows per return status.
#[allow(clippy::too_many_arguments)]
pub fn write_table(outs: &mut OutputSet, dir: &Path, stem: &str, layout: Layout, kind: &FieldKind, meta: &FieldMeta, tsv: bool, files: &mut crate::field::grid_files::GridFiles, rows: impl IntoIterator<Item = FieldRow>) -> Result<std::collections::BTreeMap<crate::field::Status, usize>> {
    let mut sink = crate::field::sink::FieldSink::create(outs, dir, stem, layout, kind, meta, tsv, false)?;
    for row in rows {
        files.push(&row);
        sink.push(row)?;
    }
    Ok(sink.finish()?.1)
}

/// Positions as `[Z, Y, X]` triples, for a job's serialised form.
pub fn serialize_points<S: serde::Serializer>(v: &[Vector3<f64>], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|p| [p[0], p[1], p[2]]))
}

/// Φ as its 12 top rows' entries (row-major), for a job's serialised form.
pub fn serialize_phis<S: serde::Serializer>(v: &[Phi], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|m| std::array::from_fn::<f64, 12, _>(|k| m[(k / 4, k % 4)])))
}
