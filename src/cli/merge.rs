//! `dvc-stream merge PARTS`: the parts of a sharded run (`<stem>.parts/part-K-of-N.parquet`,
//! see `distribute`) put together as the table one process would have written:
//! `<stem>.parquet` and spam's TSV, rows ordered by node number or label, streamed: a
//! field of 10⁸ rows is merged with a row group per part in memory.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::field::sink::{print_statuses, FieldSink};
use crate::run::merge::open_parts;
use crate::store::output::{Existing, OutputSet};

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The parts folder of a sharded run (`<output>.parts`).
    pub parts: PathBuf,
    /// Output folder; default: the one holding the parts folder.
    #[arg(long = "out-dir")]
    pub out_dir: Option<PathBuf>,
    /// Also write a legacy VTK file of the merged field.
    #[arg(long = "vtk-out")]
    pub vtk_out: bool,
    /// Do not write the spam TSV.
    #[arg(long = "no-tsv")]
    pub no_tsv: bool,
}

pub fn run(a: MergeArgs) -> Result<super::Summary> {
    let parts = open_parts(&a.parts)?;
    let (n, stem, dir) = (parts.count, parts.stem.clone(), parts.dir.clone());
    let out_dir = match &a.out_dir {
        Some(d) => d.clone(),
        None => dir.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| ".".into()),
    };
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.parts.as_path()]);
    let mut sink = FieldSink::create(&mut outs, &out_dir, &stem, parts.layout, &parts.kind, &parts.meta, !a.no_tsv, a.vtk_out)?;
    parts.merge_into(&mut sink)?;
    let (kept, counts) = sink.finish()?;
    if let Some(f) = kept {
        let path = out_dir.join(format!("{stem}.vtk"));
        crate::field::vtk::write(&outs.file(&path)?, &crate::field::vtk::field_vtk(&f, &path.to_string_lossy()))?;
    }
    outs.commit()?;
    print_statuses(&counts);
    Ok(Some(format!(
        "merge: {n} shards of {}, returnStatus {} → {}",
        dir.display(),
        crate::say::statuses(&counts),
        out_dir.join(format!("{stem}.parquet")).display()
    )))
}
