//! Runs split over processes, and runs that survive being killed.
//!
//! Why it exists: a 4096³ pair at ns 10 is 6·10⁷ points, a cluster job of hours. Two things
//! make that practical, for ldic, pixel-search and ddic alike:
//! - **Shards.** The scheduler's tiles (already in space-filling order) are cut into N
//!   contiguous runs holding about the same number of points. Process K computes shard K only,
//!   reading only the chunks its tiles need, and writes `<stem>.parts/part-K-of-N.parquet`:
//!   a folder that DuckDB, pandas and Spark read as one dataset, and that `dvc-stream merge`
//!   turns into the final table. K and N come from `--shard K/N`, or from the launcher:
//!   Open MPI's mpirun, MPICH/PMI, Slurm's srun, or a Slurm job array.
//! - **Checkpoints.** Rows leave the scheduler in point order, so what a run has finished is
//!   always a prefix of its points. Every few seconds that prefix's new rows are written as a
//!   small Parquet segment in `<output>.run/`, then a manifest naming the segments is replaced
//!   atomically. `--resume` checks that the manifest was written by a run with the same
//!   parameters (an error otherwise), replays the segments, and computes only the rest: the
//!   outputs are those of an uninterrupted run. A run that ends normally removes its
//!   checkpoint.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use crate::field::parquet::{FieldMeta, ParquetWriter};
use crate::field::sink::FieldSink;
use crate::field::{FieldKind, FieldRow, Layout, PhiField};
use crate::scheduler::Tile;
use crate::store::output::write_file_atomic;

/// Shard `index` of `count` (0 ≤ index < count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `K/N` with 0 ≤ K < N.
    pub fn parse(s: &str) -> std::result::Result<Shard, String> {
        let (k, n) = s.split_once('/').ok_or_else(|| format!("'{s}': expected K/N, e.g. 0/4"))?;
        let k: usize = k.trim().parse().map_err(|_| format!("'{s}': K is not a whole number"))?;
        let n: usize = n.trim().parse().map_err(|_| format!("'{s}': N is not a whole number"))?;
        if n == 0 || k >= n {
            return Err(format!("'{s}': K must be in 0..N-1 and N at least 1"));
        }
        Ok(Shard { index: k, count: n })
    }

    /// The shard the process was started as by a launcher, if any (one process: none).
    pub fn from_env() -> Result<Option<Shard>> {
        let var = |k: &str| std::env::var(k).ok();
        let num = |k: &str| -> Result<Option<usize>> {
            var(k).map(|v| v.trim().parse::<usize>().map_err(|_| anyhow!("environment variable {k}='{v}' is not a whole number"))).transpose()
        };
        // mpirun (Open MPI), MPICH/PMI, srun, then job arrays (numbered from their minimum).
        let pairs = [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")];
        for (rank, size) in pairs {
            if let (Some(k), Some(n)) = (num(rank)?, num(size)?) {
                if n > 1 {
                    return Shard::checked(k, n, rank);
                }
            }
        }
        if let (Some(id), Some(n)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            if n > 1 {
                return Shard::checked(id.checked_sub(min).ok_or_else(|| anyhow!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"))?, n, "SLURM_ARRAY_TASK_ID");
            }
        }
        Ok(None)
    }

    fn checked(k: usize, n: usize, from: &str) -> Result<Option<Shard>> {
        if k >= n {
            bail!("{from} gives shard {k} of {n}: out of range");
        }
        Ok(Some(Shard { index: k, count: n }))
    }

    /// The name of this shard's part: `part-K-of-N`.
    pub fn part_name(&self) -> String {
        format!("part-{}-of-{}", self.index, self.count)
    }
}

/// How a correlation is split and resumed (ldic, pixel-search, ddic).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Compute only shard K of N (0 ≤ K < N) and write it as `<output>.parts/part-K-of-N.parquet`
    /// for `dvc-stream merge`. Under mpirun, srun or a Slurm job array, K and N come from the
    /// launcher.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Continue an interrupted run from its checkpoint (`<output>.run/`), computing only
    /// what it had not finished; the parameters must be the same.
    #[arg(long)]
    pub resume: bool,
    /// Seconds between checkpoints of finished rows.
    #[arg(long = "checkpoint-seconds", default_value_t = 30.0, value_name = "S")]
    pub checkpoint_seconds: f64,
}

/// Cuts tiles (in scheduling order) into `shard.count` contiguous runs of about equal point
/// counts, and returns run `shard.index`.
pub fn shard_tiles(tiles: Vec<Tile>, shard: Shard) -> Vec<Tile> {
    let total: usize = tiles.iter().map(|t| t.points.len()).sum();
    // Tile t goes to the shard holding the midpoint of its points in the running count.
    let mut before = 0usize;
    let mut out = Vec::new();
    for t in tiles {
        let mid = before * 2 + t.points.len();
        before += t.points.len();
        let k = if total == 0 { 0 } else { (mid * shard.count / (2 * total)).min(shard.count - 1) };
        if k == shard.index {
            out.push(t);
        }
    }
    out
}

const MANIFEST: &str = "manifest.json";

/// What identifies an input file's content well enough for a checkpoint: its path, size and
/// modification time (for a Zarr store, its folder's).
pub fn input_stamp(path: &Path) -> serde_json::Value {
    let m = std::fs::metadata(path).ok();
    let mtime = m.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos().to_string());
    serde_json::json!({"path": path, "bytes": m.as_ref().map(|m| m.len()), "modified": mtime})
}

/// A correlation's run: which tiles to compute, in which order rows come out, where they go,
/// and its checkpoint.
pub struct Job {
    shard: Option<Shard>,
    /// Folder and file stem of the run's Parquet (and TSV) output.
    out_dir: PathBuf,
    out_stem: String,
    tiles: Vec<Tile>,
    /// Points still to compute, ascending (the order rows leave the scheduler).
    order: Vec<usize>,
    /// Points of the whole run (shard), done or not.
    total: usize,
    checkpoint: Checkpoint,
}

impl Job {
    /// Plans a run writing `<dir>/<stem>.parquet` (or, sharded, `<dir>/<stem>.parts/part-K-of-N`)
    /// over `tiles`. `fingerprint` holds every parameter that changes a result; a checkpoint
    /// left by a run with another fingerprint is refused with --resume (and replaced without).
    pub fn plan(args: &RunArgs, dir: &Path, stem: &str, tiles: Vec<Tile>, fingerprint: &serde_json::Value, layout: Layout, kind: &FieldKind) -> Result<Job> {
        if !(args.checkpoint_seconds >= 0.0 && args.checkpoint_seconds.is_finite()) {
            bail!("--checkpoint-seconds must be a number of seconds ≥ 0");
        }
        let shard = match &args.shard {
            Some(s) => Some(Shard::parse(s).map_err(|e| anyhow!("--shard {e}"))?),
            None => Shard::from_env()?,
        };
        let (out_dir, out_stem, tiles) = match shard {
            Some(s) => (dir.join(format!("{stem}.parts")), s.part_name(), shard_tiles(tiles, s)),
            None => (dir.to_path_buf(), stem.to_string(), tiles),
        };
        let mut order: Vec<usize> = tiles.iter().flat_map(|t| t.points.iter().copied()).collect();
        order.sort_unstable();
        let total = order.len();
        let mut print = fingerprint.clone();
        if let Some(o) = print.as_object_mut() {
            o.insert("shard".into(), serde_json::json!(shard.map(|s| [s.index, s.count])));
            o.insert("points".into(), serde_json::json!(total));
        }
        let work = out_dir.join(format!("{out_stem}.run"));
        let checkpoint = Checkpoint::open(&work, print.to_string(), args.resume, Duration::from_secs_f64(args.checkpoint_seconds), layout, kind.clone())?;
        let done = checkpoint.rows;
        if done > total {
            bail!("{}: the checkpoint holds {done} rows but this run has {total} points", work.display());
        }
        // Finished points are the first `done` of the run: compute only the others.
        let remaining = order.split_off(done);
        let first = remaining.first().copied();
        let tiles = tiles
            .into_iter()
            .filter_map(|mut t| {
                t.points.retain(|&p| first.is_some_and(|f| p >= f));
                (!t.points.is_empty()).then_some(t)
            })
            .collect();
        Ok(Job { shard, out_dir, out_stem, tiles, order: remaining, total, checkpoint })
    }

    pub fn shard(&self) -> Option<Shard> {
        self.shard
    }

    /// The tiles still to compute and their points in the order rows come out (for
    /// [`crate::scheduler::run`]); taken once.
    pub fn take_work(&mut self) -> (Vec<Tile>, Vec<usize>) {
        (std::mem::take(&mut self.tiles), std::mem::take(&mut self.order))
    }

    /// Refuses outputs that need the whole field (`what`, when `asked`) on a shard.
    pub fn require_whole_field(&self, asked: bool, what: &str) -> Result<()> {
        if asked && self.shard.is_some() {
            bail!("{what} need the whole field: merge the shards first (`dvc-stream merge`), then `dvc-stream plot` or `convert-field` draws them");
        }
        Ok(())
    }

    /// Where the run's rows go: the table (and spam's TSV when `tsv`, which a shard never
    /// writes) with the shard recorded in the metadata; rows kept in memory when `keep`.
    pub fn sink(&self, outs: &mut crate::store::output::OutputSet, layout: Layout, kind: &FieldKind, meta: &FieldMeta, tsv: bool, keep: bool) -> Result<FieldSink> {
        let mut meta = meta.clone();
        if let (Some(s), Some(o)) = (self.shard, meta.parameters.as_object_mut()) {
            o.insert("shard".into(), serde_json::json!({"index": s.index, "count": s.count, "points": self.total}));
        }
        FieldSink::create(outs, &self.out_dir, &self.out_stem, layout, kind, &meta, tsv && self.shard.is_none(), keep)
    }

    /// Rows finished by earlier attempts, in order (nothing on a fresh run).
    pub fn replay(&self, mut f: impl FnMut(FieldRow) -> Result<()>) -> Result<usize> {
        let mut n = 0;
        for seg in &self.checkpoint.segments {
            let field = PhiField::read(&self.checkpoint.dir.join(seg)).with_context(|| format!("{}: cannot read the checkpoint; remove it to start again", self.checkpoint.dir.display()))?;
            for i in 0..field.len() {
                f(field.row(i))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Adds a newly finished row to the checkpoint (written out every few seconds).
    pub fn record(&mut self, row: &FieldRow) -> Result<()> {
        self.checkpoint.push(row)
    }

    /// The run's outputs are complete: its checkpoint goes.
    pub fn complete(self) -> Result<()> {
        self.checkpoint.remove()
    }
}

/// Finished rows as Parquet segments plus a manifest replaced atomically.
struct Checkpoint {
    dir: PathBuf,
    fingerprint: String,
    every: Duration,
    layout: Layout,
    kind: FieldKind,
    /// Segments already written (file names in `dir`), and their rows in all.
    segments: Vec<String>,
    rows: usize,
    pending: Vec<FieldRow>,
    last: Instant,
}

impl Checkpoint {
    fn open(dir: &Path, fingerprint: String, resume: bool, every: Duration, layout: Layout, kind: FieldKind) -> Result<Checkpoint> {
        let mut c = Checkpoint { dir: dir.to_path_buf(), fingerprint, every, layout, kind, segments: vec![], rows: 0, pending: vec![], last: Instant::now() };
        let manifest = dir.join(MANIFEST);
        if resume && manifest.exists() {
            let text = std::fs::read_to_string(&manifest).with_context(|| format!("{}: cannot read", manifest.display()))?;
            let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}: not a checkpoint manifest ({e})", manifest.display()))?;
            let theirs = m["fingerprint"].as_str().unwrap_or_default();
            if theirs != c.fingerprint {
                bail!(
                    "{}: this checkpoint was made by a run with other parameters or inputs; rerun with the same options, or without --resume to start again (its parameters: {theirs})",
                    dir.display()
                );
            }
            c.segments = m["segments"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
            c.rows = m["rows"].as_u64().unwrap_or(0) as usize;
            // Segments an interrupted flush left without a manifest entry are not part of it.
            for e in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name != MANIFEST && !c.segments.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        } else if dir.exists() {
            // A fresh run replaces an old checkpoint rather than mixing with it.
            std::fs::remove_dir_all(dir).with_context(|| format!("{}: cannot remove an old checkpoint", dir.display()))?;
        }
        Ok(c)
    }

    fn push(&mut self, row: &FieldRow) -> Result<()> {
        self.pending.push(row.clone());
        if self.last.elapsed() >= self.every {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.last = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).with_context(|| format!("{}: cannot create", self.dir.display()))?;
        let name = format!("segment-{:06}.parquet", self.segments.len());
        let mut w = ParquetWriter::create(&self.dir.join(&name), self.layout, &self.kind, &FieldMeta::for_command("checkpoint", serde_json::Value::Null))?;
        for r in self.pending.drain(..) {
            w.write_row(r)?;
            self.rows += 1;
        }
        w.finish()?;
        self.segments.push(name);
        let m = serde_json::json!({"fingerprint": self.fingerprint, "segments": self.segments, "rows": self.rows});
        write_file_atomic(&self.dir.join(MANIFEST), m.to_string().as_bytes())?;
        Ok(())
    }

    fn remove(self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).with_context(|| format!("{}: cannot remove the finished run's checkpoint", self.dir.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_balanced_and_cover_every_point() {
        let tiles = crate::scheduler::plan_grid_tiles([7, 9, 11], [2, 2, 3]);
        for n in [1, 2, 3, 5] {
            let parts: Vec<Vec<Tile>> = (0..n).map(|k| shard_tiles(tiles.clone(), Shard { index: k, count: n })).collect();
            let mut seen = vec![0; 7 * 9 * 11];
            for p in &parts {
                for t in p {
                    t.points.iter().for_each(|&i| seen[i] += 1);
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{n} shards");
            let sizes: Vec<usize> = parts.iter().map(|p| p.iter().map(|t| t.points.len()).sum()).collect();
            let largest_tile = tiles.iter().map(|t| t.points.len()).max().unwrap();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 2 * largest_tile, "{sizes:?}");
        }
    }

    #[test]
    fn shard_spellings_and_launchers() {
        assert_eq!(Shard::parse("2/5"), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "1", "a/2", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 1, count: 3 }.part_name(), "part-1-of-3");
    }
}
