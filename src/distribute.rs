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
//!   atomically. `--resume` checks that the manifest was written by the same job (a
//!   [`JobPrint`]: every point's position and guess, every resolved option, each input's
//!   identity; a refusal otherwise, saying what changed), replays the segments, and computes
//!   only the rest: the outputs are those of an uninterrupted run. Parts record the same
//!   print, so `merge` refuses parts of different jobs. A run that ends normally removes its
//!   checkpoint.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::field::parquet::{FieldMeta, ParquetWriter};
use crate::field::sink::FieldSink;
use crate::field::{FieldKind, FieldRow, Layout, PhiField};
use crate::scheduler::Tile;
use crate::store::output::write_file_atomic;

/// Shard `index` of `count` (0 ≤ index < count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
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

/// How a correlation is split and resumed (ldic, pixel-search, ddic), resolved from the
/// command line (`--shard`, the launcher's environment, `--resume`, `--checkpoint-seconds`).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RunOptions {
    /// Compute only this shard of the run.
    pub shard: Option<Shard>,
    /// Continue from the checkpoint of the same job.
    pub resume: bool,
    /// Time between checkpoints of finished rows.
    pub checkpoint_every: Duration,
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

/// Files at most this big are identified by a hash of their content (guess fields, label
/// tables); bigger ones by their size and modification time.
const CONTENT_HASH_BYTES: u64 = 16 << 20;

/// A 64-bit digest that stays the same across Rust versions and machines (xxHash64, which
/// parquet already builds; std's `DefaultHasher` may change between releases).
#[derive(Default)]
pub struct Digest(twox_hash::XxHash64);

impl Digest {
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        use std::hash::Hasher;
        // The length first: ("ab", "c") and ("a", "bc") differ.
        self.0.write(&(b.len() as u64).to_le_bytes());
        self.0.write(b);
        self
    }
    pub fn f64s(&mut self, v: impl IntoIterator<Item = f64>) -> &mut Self {
        use std::hash::Hasher;
        for x in v {
            self.0.write(&x.to_bits().to_le_bytes());
        }
        self
    }
    pub fn hex(&self) -> String {
        use std::hash::Hasher;
        format!("{:016x}", self.0.finish())
    }
}

/// What identifies one input of a job: a Zarr store by every file in it (relative path, size,
/// modification time), so a chunk rewritten in place changes it; a small file by its content;
/// a big file (a TIFF) by its size and modification time; a remote URL by its name.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct InputStamp {
    pub path: String,
    pub identity: String,
}

pub fn input_stamp(path: &Path) -> Result<InputStamp> {
    let mut d = Digest::default();
    let shown = path.to_string_lossy().to_string();
    match std::fs::metadata(path) {
        Err(_) => {
            // Not a local file (an s3:// URL): only its name identifies it.
            d.bytes(b"remote").bytes(shown.as_bytes());
        }
        Ok(m) if m.is_dir() => {
            let mut files = Vec::new();
            list_files(path, path, &mut files)?;
            files.sort_unstable();
            d.bytes(b"folder");
            for (rel, bytes, mtime) in files {
                d.bytes(rel.as_bytes()).bytes(&bytes.to_le_bytes()).bytes(&mtime.to_le_bytes());
            }
        }
        Ok(m) if m.len() <= CONTENT_HASH_BYTES => {
            let content = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
            d.bytes(b"content").bytes(&content);
        }
        Ok(m) => {
            d.bytes(b"stamp").bytes(&m.len().to_le_bytes()).bytes(&mtime_ns(&m).to_le_bytes());
        }
    }
    Ok(InputStamp { path: shown, identity: d.hex() })
}

fn mtime_ns(m: &std::fs::Metadata) -> u128 {
    m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

/// Every file under `dir` as (path relative to `root`, size, modification time in ns).
fn list_files(root: &Path, dir: &Path, out: &mut Vec<(String, u64, u128)>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let e = e.with_context(|| format!("{}: cannot list", dir.display()))?;
        let m = e.metadata().with_context(|| format!("{}: cannot stat", e.path().display()))?;
        if m.is_dir() {
            list_files(root, &e.path(), out)?;
        } else {
            let rel = e.path().strip_prefix(root).map(|p| p.to_string_lossy().to_string()).unwrap_or_default();
            out.push((rel, m.len(), mtime_ns(&m)));
        }
    }
    Ok(())
}

/// The resolved job of a correlation, as a checkpoint and the parts of a sharded run record
/// it: the tool, the options the kernel runs with (serialised from the kernel's own options
/// struct, so a new option cannot be left out), digests of every point's position and
/// initial guess, and each input's identity. Two runs with equal prints compute the same
/// rows; the fields are kept apart (not only their hash) so a refusal can say what changed.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct JobPrint {
    pub tool: String,
    /// Every resolved option, flattened to `name → value` (nested options as `a.b`).
    pub parameters: std::collections::BTreeMap<String, serde_json::Value>,
    pub points: usize,
    /// Digest of the points' positions (Z, Y, X of every point, in order).
    pub positions: String,
    /// Digest of the points' initial Φ.
    pub guesses: String,
    pub inputs: Vec<InputStamp>,
}

impl JobPrint {
    /// The print of a run of `tool` with kernel options `options` (and `extra` resolved values
    /// outside them), over points at `positions` with initial Φ `guesses`, reading `inputs`.
    pub fn new(tool: &str, options: &impl serde::Serialize, extra: serde_json::Value, positions: &[nalgebra::Vector3<f64>], guesses: &[crate::phi::Phi], inputs: &[&Path]) -> Result<JobPrint> {
        let mut parameters = std::collections::BTreeMap::new();
        flatten("", &serde_json::to_value(options)?, &mut parameters);
        flatten("", &extra, &mut parameters);
        let mut p = Digest::default();
        p.f64s(positions.iter().flat_map(|v| v.iter().copied()));
        let mut g = Digest::default();
        g.f64s(guesses.iter().flat_map(|m| m.iter().copied()));
        let inputs = inputs.iter().map(|i| input_stamp(i)).collect::<Result<Vec<_>>>()?;
        Ok(JobPrint { tool: tool.into(), parameters, points: positions.len(), positions: p.hex(), guesses: g.hex(), inputs })
    }

    /// One digest of the whole print.
    pub fn digest(&self) -> String {
        let text = serde_json::to_string(self).expect("a job print serialises");
        Digest::default().bytes(text.as_bytes()).hex()
    }

    /// What differs between `self` (this run) and `other` (the one that wrote a checkpoint or
    /// a part), in words: "node positions differ", "parameter hws: [10,10,10] vs [12,12,12]".
    pub fn differences(&self, other: &JobPrint) -> String {
        let mut d = Vec::new();
        if self.tool != other.tool {
            d.push(format!("tool: {} vs {}", other.tool, self.tool));
        }
        let keys: std::collections::BTreeSet<&String> = self.parameters.keys().chain(other.parameters.keys()).collect();
        let none = serde_json::Value::Null;
        for k in keys {
            let (a, b) = (other.parameters.get(k).unwrap_or(&none), self.parameters.get(k).unwrap_or(&none));
            if a != b {
                d.push(format!("parameter {k}: {a} vs {b}"));
            }
        }
        if self.points != other.points {
            d.push(format!("{} points vs {}", other.points, self.points));
        } else if self.positions != other.positions {
            d.push("point positions differ".into());
        }
        if self.guesses != other.guesses {
            d.push("initial guesses differ".into());
        }
        for i in self.inputs.iter().chain(&other.inputs) {
            let in_other = other.inputs.iter().any(|o| o == i);
            let in_self = self.inputs.iter().any(|o| o == i);
            if !(in_other && in_self) {
                let same_path = |l: &[InputStamp]| l.iter().any(|o| o.path == i.path);
                let what = if same_path(&self.inputs) && same_path(&other.inputs) { format!("input {} changed", i.path) } else { format!("input {} added or removed", i.path) };
                if !d.contains(&what) {
                    d.push(what);
                }
            }
        }
        if d.is_empty() {
            d.push("the job differs".into());
        }
        d.join(", ")
    }
}

/// Non-finite numbers as names: serde_json writes them all as null, which would make
/// `-glt -inf` and `-ght inf` the same job.
pub fn any_f64<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_str(&v.to_string())
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut std::collections::BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&name, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
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
    /// over `tiles`. `print` is the resolved job; a checkpoint left by another job (or another
    /// shard) is refused with --resume (and replaced without).
    pub fn plan(run: &RunOptions, dir: &Path, stem: &str, tiles: Vec<Tile>, print: &JobPrint, layout: Layout, kind: &FieldKind) -> Result<Job> {
        let shard = run.shard;
        let (out_dir, out_stem, tiles) = match shard {
            Some(s) => (dir.join(format!("{stem}.parts")), s.part_name(), shard_tiles(tiles, s)),
            None => (dir.to_path_buf(), stem.to_string(), tiles),
        };
        let mut order: Vec<usize> = tiles.iter().flat_map(|t| t.points.iter().copied()).collect();
        order.sort_unstable();
        let total = order.len();
        let work = out_dir.join(format!("{out_stem}.run"));
        let stamp = RunStamp { job: print.clone(), shard: shard.map(|s| [s.index, s.count]), points: total };
        let checkpoint = Checkpoint::open(&work, stamp, run.resume, run.checkpoint_every, layout, kind.clone())?;
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
            // merge refuses parts of different jobs, and says what differs.
            o.insert("job".into(), serde_json::to_value(&self.checkpoint.stamp.job)?);
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

/// The job of a checkpoint, with the shard it computes.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct RunStamp {
    job: JobPrint,
    shard: Option<[usize; 2]>,
    points: usize,
}

impl RunStamp {
    fn digest(&self) -> String {
        Digest::default().bytes(self.job.digest().as_bytes()).bytes(serde_json::to_string(&(self.shard, self.points)).unwrap_or_default().as_bytes()).hex()
    }

    fn differences(&self, theirs: &RunStamp) -> String {
        if self.shard != theirs.shard {
            let show = |s: Option<[usize; 2]>| s.map_or("the whole run".to_string(), |[k, n]| format!("shard {k}/{n}"));
            return format!("{} vs {}", show(theirs.shard), show(self.shard));
        }
        self.job.differences(&theirs.job)
    }
}

/// Finished rows as Parquet segments plus a manifest replaced atomically.
struct Checkpoint {
    dir: PathBuf,
    stamp: RunStamp,
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
    fn open(dir: &Path, stamp: RunStamp, resume: bool, every: Duration, layout: Layout, kind: FieldKind) -> Result<Checkpoint> {
        let mut c = Checkpoint { dir: dir.to_path_buf(), stamp, every, layout, kind, segments: vec![], rows: 0, pending: vec![], last: Instant::now() };
        let manifest = dir.join(MANIFEST);
        if resume && manifest.exists() {
            let text = std::fs::read_to_string(&manifest).with_context(|| format!("{}: cannot read", manifest.display()))?;
            let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}: not a checkpoint manifest ({e})", manifest.display()))?;
            let theirs: Option<RunStamp> = serde_json::from_value(m["run"].clone()).ok();
            let digest_matches = m["fingerprint"].as_str() == Some(c.stamp.digest().as_str());
            match theirs {
                Some(t) if digest_matches && t == c.stamp => {}
                Some(t) => bail!("{}: this checkpoint was made by another job ({}); rerun the same job, or without --resume to start again", dir.display(), c.stamp.differences(&t)),
                None => bail!("{}: this checkpoint does not record its job (an older version wrote it); rerun without --resume to start again", dir.display()),
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
        let m = serde_json::json!({"fingerprint": self.stamp.digest(), "run": self.stamp, "segments": self.segments, "rows": self.rows});
        write_file_atomic(&self.dir.join(MANIFEST), m.to_string().as_bytes())?;
        Ok(())
    }

    fn remove(self) -> Result<()> {
        if self.dir.exists() {
            // The manifest goes first, in one step: a kill while the segments are being
            // deleted then leaves a folder that no --resume takes for a checkpoint, never a
            // manifest naming segments that are gone.
            let manifest = self.dir.join(MANIFEST);
            if manifest.exists() {
                std::fs::remove_file(&manifest).with_context(|| format!("{}: cannot remove the finished run's checkpoint", manifest.display()))?;
                if let Ok(d) = std::fs::File::open(&self.dir) {
                    let _ = d.sync_all();
                }
            }
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
    fn a_job_print_says_what_changed() {
        let d = tempfile::tempdir().unwrap();
        let guess = d.path().join("guess.tsv");
        std::fs::write(&guess, "a").unwrap();
        let store = d.path().join("im.zarr/c/0");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("0"), "chunk").unwrap();
        let im = d.path().join("im.zarr");
        let nodes = |ns: f64| (1..4).map(|k| nalgebra::Vector3::from_element(k as f64 * ns)).collect::<Vec<_>>();
        let print = |hws: usize, ns: f64| JobPrint::new("ldic", &serde_json::json!({"hws": [hws, hws, hws], "inf": f64::INFINITY}), serde_json::json!({}), &nodes(ns), &[crate::phi::Phi::identity(); 3], &[im.as_path(), guess.as_path()]).unwrap();
        let a = print(10, 10.0);
        assert_eq!(a, print(10, 10.0));
        assert_eq!(a.digest(), print(10, 10.0).digest());
        assert_eq!(print(12, 10.0).differences(&a), "parameter hws: [10,10,10] vs [12,12,12]");
        assert_eq!(print(10, 11.0).differences(&a), "point positions differ");
        // The same content written again: a chunk's time is part of the store's identity.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(store.join("0"), "chunk").unwrap();
        let f = std::fs::File::options().write(true).open(store.join("0")).unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(print(10, 10.0).differences(&a), format!("input {} changed", im.display()));
        // A small file by its content.
        let b = print(10, 10.0);
        std::fs::write(&guess, "b").unwrap();
        assert_eq!(print(10, 10.0).differences(&b), format!("input {} changed", guess.display()));
        assert_ne!(print(10, 10.0).digest(), b.digest());
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
