//! Putting the parts of a sharded run together (`<stem>.parts/part-K-of-N.parquet`, see
//! [`crate::distribute`]) as the table one process would have written, streamed: the parts
//! are checked to come from one job, then merged k-way by id into a sink, one row per part in
//! memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::distribute::JobPrint;
use crate::field::parquet::{read_metadata, FieldMeta, RowReader};
use crate::field::sink::FieldSink;
use crate::field::{FieldKind, FieldRow, Layout};

/// One part's file and what its metadata says.
struct Part {
    path: PathBuf,
    index: usize,
    kv: Vec<(String, String)>,
    parameters: serde_json::Value,
}

impl Part {
    fn get(&self, k: &str) -> Option<&str> {
        self.kv.iter().find(|(a, _)| a == &format!("dvc_stream.{k}")).map(|(_, v)| v.as_str())
    }
}

/// `part-K-of-N.parquet` → (K, N).
fn part_numbers(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (k, n) = rest.split_once("-of-")?;
    Some((k.parse().ok()?, n.parse().ok()?))
}

/// The part files of `dir`, all of one shard count, checked complete.
fn find_parts(dir: &Path) -> Result<(Vec<Part>, usize)> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list the parts folder", dir.display()))?;
    let mut found: Vec<(usize, usize, PathBuf)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some((k, n)) = part_numbers(&name) {
            found.push((k, n, e.path()));
        }
    }
    if found.is_empty() {
        bail!("{}: no part-K-of-N.parquet files: not the parts folder of a sharded run, or no shard has finished", dir.display());
    }
    let mut counts: Vec<usize> = found.iter().map(|f| f.1).collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.len() > 1 {
        bail!("{}: parts of runs with different shard counts ({counts:?}): remove the old ones", dir.display());
    }
    let n = counts[0];
    let mut missing = Vec::new();
    for k in 0..n {
        if found.iter().any(|f| f.0 == k) {
            continue;
        }
        let manifest = dir.join(format!("part-{k}-of-{n}.run")).join("manifest.json");
        let rows = std::fs::read_to_string(&manifest).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).and_then(|m| m["rows"].as_u64());
        missing.push(match rows {
            Some(r) => format!("shard {k} is incomplete (its checkpoint holds {r} rows: rerun it with --resume)"),
            None => format!("shard {k} is missing"),
        });
    }
    if !missing.is_empty() {
        bail!("{}: {} of {n} shards finished; {}", dir.display(), n - missing.len(), missing.join(", "));
    }
    found.sort_by_key(|f| f.0);
    let parts = found
        .into_iter()
        .map(|(k, _, path)| {
            let kv = read_metadata(&path)?;
            let params = kv.iter().find(|(a, _)| a == "dvc_stream.parameters").map(|(_, v)| v.clone()).unwrap_or_default();
            let parameters: serde_json::Value = serde_json::from_str(&params).map_err(|_| anyhow!("{}: no run parameters in its metadata: not written by a sharded run", path.display()))?;
            Ok(Part { path, index: k, kv, parameters })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((parts, n))
}

/// The parts of one sharded run, checked to belong together, ready to merge.
pub struct Parts {
    /// The parts folder.
    pub dir: PathBuf,
    /// The output's name: the folder's name without `.parts`.
    pub stem: String,
    /// How many shards the run had.
    pub count: usize,
    pub layout: Layout,
    pub kind: FieldKind,
    /// The merged table's metadata: the run's tool and parameters (the shard left out).
    pub meta: FieldMeta,
    parts: Vec<Part>,
    readers: Vec<RowReader>,
}

/// Opens the parts folder `dir` of a sharded run and checks that every shard finished and
/// that all come from the same job (the same resolved job and parameters, but for the shard).
pub fn open_parts(dir: &Path) -> Result<Parts> {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let Some(stem) = name.strip_suffix(".parts").filter(|s| !s.is_empty()) else {
        bail!("{}: expected the parts folder of a sharded run, named <output>.parts", dir.display());
    };
    let (parts, n) = find_parts(dir)?;
    let strip = |p: &serde_json::Value| {
        let mut p = p.clone();
        if let Some(o) = p.as_object_mut() {
            o.remove("shard");
            o.remove("job");
        }
        p
    };
    let job_of = |p: &Part| -> Result<JobPrint> {
        serde_json::from_value(p.parameters["job"].clone()).map_err(|_| anyhow!("{}: its metadata does not record its job (an older version wrote it): rerun the shards", p.path.display()))
    };
    let first = &parts[0];
    let params = strip(&first.parameters);
    let first_job = job_of(first)?;
    let mut readers = Vec::with_capacity(parts.len());
    for p in &parts {
        let shard = &p.parameters["shard"];
        if shard["index"].as_u64() != Some(p.index as u64) || shard["count"].as_u64() != Some(n as u64) {
            bail!("{}: its metadata does not say it is shard {} of {n}", p.path.display(), p.index);
        }
        let job = job_of(p)?;
        if job != first_job {
            bail!("{}: made by another job than {} ({}): the parts do not belong together", p.path.display(), first.path.display(), first_job.differences(&job));
        }
        if p.get("tool") != first.get("tool") || strip(&p.parameters) != params {
            bail!("{}: made by a run with other parameters than {}: the parts do not belong together", p.path.display(), first.path.display());
        }
        readers.push(RowReader::open(&p.path)?);
    }
    let layout = readers[0].layout;
    let json = |k: &str| first.get(k).and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok());
    let kind = match first.get("kind") {
        Some("grid") => {
            let dims: [usize; 3] = json("grid_dims").and_then(|v| serde_json::from_value(v).ok()).ok_or_else(|| anyhow!("{}: no grid shape in its metadata", first.path.display()))?;
            let spacing: [f64; 3] = json("grid_spacing").and_then(|v| serde_json::from_value(v).ok()).ok_or_else(|| anyhow!("{}: no grid spacing in its metadata", first.path.display()))?;
            FieldKind::Grid { dims, spacing }
        }
        Some("labels") => FieldKind::Labels,
        other => bail!("{}: cannot merge a field of kind {other:?}", first.path.display()),
    };
    let meta = FieldMeta {
        tool: first.get("tool").unwrap_or_default().to_string(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        parameters: params,
        image_shapes: json("image_shapes").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        bin: first.get("bin").and_then(|v| v.parse().ok()).unwrap_or(1),
        voxel_size: json("voxel_size").and_then(|v| serde_json::from_value(v).ok()),
        ..Default::default()
    };
    Ok(Parts { dir: dir.to_path_buf(), stem: stem.to_string(), count: n, layout, kind, meta, parts, readers })
}

impl Parts {
    /// Streams every part's rows into `sink` in id order (each part is in id order: a shard
    /// writes its rows in point order), checking that no id comes twice, that each part holds
    /// its shard's points and that a grid is complete.
    pub fn merge_into(mut self, sink: &mut FieldSink) -> Result<()> {
        let dir = &self.dir;
        let mut heads: Vec<Option<FieldRow>> = self.readers.iter_mut().map(|r| r.next_row()).collect::<Result<_>>()?;
        let mut queue: BinaryHeap<Reverse<(i64, usize)>> = heads.iter().enumerate().filter_map(|(k, h)| h.as_ref().map(|r| Reverse((r.id, k)))).collect();
        let mut rows_of = vec![0u64; self.parts.len()];
        let mut last: Option<i64> = None;
        while let Some(Reverse((id, k))) = queue.pop() {
            if last.is_some_and(|l| id <= l) {
                bail!("{}: id {id} comes twice, or out of order (in {})", dir.display(), self.parts[k].path.display());
            }
            last = Some(id);
            let row = heads[k].take().expect("a queued part has a row");
            sink.push(row)?;
            rows_of[k] += 1;
            heads[k] = self.readers[k].next_row()?;
            if let Some(r) = &heads[k] {
                queue.push(Reverse((r.id, k)));
            }
        }
        for (p, &got) in self.parts.iter().zip(&rows_of) {
            if Some(got) != p.parameters["shard"]["points"].as_u64() {
                bail!("{}: holds {got} rows where its shard has {} points", p.path.display(), p.parameters["shard"]["points"]);
            }
        }
        if let FieldKind::Grid { dims, .. } = self.kind {
            let total: u64 = rows_of.iter().sum();
            if total != dims.iter().product::<usize>() as u64 {
                bail!("{}: the parts hold {total} nodes of a {dims:?} grid", dir.display());
            }
        }
        Ok(())
    }
}
