//! Where a correlation's rows go as they arrive: always a Parquet table, the spam TSV unless
//! the user turned it off, and an in-memory copy only when a VTK or TIFF (which need the
//! whole grid at once) was asked for. The files are outputs of the run's
//! [`OutputSet`]: written under their partial names, renamed with the run's other outputs.

use std::path::Path;

use anyhow::Result;

use crate::store::output::OutputSet;

use super::parquet::{FieldMeta, ParquetWriter};
use super::tsv::TsvWriter;
use super::{FieldKind, FieldRow, Layout, PhiField, Status};

pub struct FieldSink {
    parquet: ParquetWriter,
    tsv: Option<TsvWriter>,
    kept: Option<PhiField>,
    statuses: std::collections::BTreeMap<Status, usize>,
}

impl FieldSink {
    /// `<stem>.parquet` and (if `tsv`) `<stem>.tsv` in `dir`, outputs of `outs`; rows are kept
    /// in memory if `keep`.
    pub fn create(outs: &mut OutputSet, dir: &Path, stem: &str, layout: Layout, kind: &FieldKind, meta: &FieldMeta, tsv: bool, keep: bool) -> Result<FieldSink> {
        let parquet = outs.file(&dir.join(format!("{stem}.parquet")))?;
        let tsv = if tsv { Some(outs.file(&dir.join(format!("{stem}.tsv")))?) } else { None };
        Ok(FieldSink {
            parquet: ParquetWriter::create(&parquet, layout, kind, meta)?,
            tsv: tsv.map(|p| TsvWriter::create(&p, layout)).transpose()?,
            kept: if keep { Some(PhiField::new(kind.clone(), layout)) } else { None },
            statuses: Default::default(),
        })
    }

    pub fn push(&mut self, row: FieldRow) -> Result<()> {
        *self.statuses.entry(row.return_status).or_default() += 1;
        if let Some(t) = self.tsv.as_mut() {
            t.write_row(&row)?;
        }
        if let Some(k) = self.kept.as_mut() {
            k.push(row.clone());
        }
        self.parquet.write_row(row)
    }

    /// Completes the files (the output set renames them into place) and returns the kept
    /// rows, if any, and the number of rows per return status.
    pub fn finish(self) -> Result<(Option<PhiField>, std::collections::BTreeMap<Status, usize>)> {
        self.parquet.finish()?;
        if let Some(t) = self.tsv {
            t.finish()?;
        }
        Ok((self.kept, self.statuses))
    }
}

/// Prints the "returnStatus  count" table every correlation ends with, as spam does (on
/// stdout; not with `--quiet`, whose summary line carries the counts).
pub fn print_statuses(counts: &std::collections::BTreeMap<Status, usize>) {
    if crate::say::quiet() {
        return;
    }
    println!("returnStatus  count");
    for (s, c) in counts.iter().rev() {
        println!("{s:>12}  {c}");
    }
}
