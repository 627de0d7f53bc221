//! `dvc-stream labels LAB`: the label table — each label's bounding box, volume, centre of
//! mass and equivalent radius from one streaming pass — as Parquet (for DuckDB, pandas) and TSV.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::output_names::{out_dir, stem};
use super::ReadOpts;
use crate::field::parquet::{self, FieldMeta};
use crate::field::tsv;
use crate::label::LabelTable;
use crate::store::Volume;

#[derive(Args, Debug)]
pub struct LabelsArgs {
    /// Labelled volume (uint8/16/32; 0 = background).
    pub lab: PathBuf,
    #[command(flatten)]
    pub out: super::OutputOpts,
    /// Do not write the TSV (the Parquet table is always written).
    #[arg(long = "no-tsv")]
    pub no_tsv: bool,
    #[command(flatten)]
    pub read: ReadOpts,
}

/// The table's columns (row l = label l; missing labels and the background are NaN, volume 0).
pub fn columns(t: &LabelTable) -> Vec<(String, Vec<f64>)> {
    let names = ["Zmin", "Zmax", "Ymin", "Ymax", "Xmin", "Xmax", "volume", "Zcom", "Ycom", "Xcom", "equivalentRadius"];
    let mut cols: Vec<(String, Vec<f64>)> = names.iter().map(|n| (n.to_string(), Vec::with_capacity(t.labels.len()))).collect();
    for l in 0..t.labels.len().max(1) {
        let vals: [f64; 11] = match t.get(l) {
            Some(i) => [
                i.bbox[0][0] as f64,
                i.bbox[0][1] as f64,
                i.bbox[1][0] as f64,
                i.bbox[1][1] as f64,
                i.bbox[2][0] as f64,
                i.bbox[2][1] as f64,
                i.volume as f64,
                i.com[0],
                i.com[1],
                i.com[2],
                (3.0 * i.volume as f64 / (4.0 * std::f64::consts::PI)).cbrt(),
            ],
            None => {
                let mut v = [f64::NAN; 11];
                v[6] = 0.0;
                v
            }
        };
        for (c, v) in cols.iter_mut().zip(vals) {
            c.1.push(v);
        }
    }
    cols
}

pub fn run(a: LabelsArgs) -> Result<super::Summary> {
    let cache = a.read.cache()?;
    let lab = Volume::open(&a.lab, cache.clone())?;
    let table = LabelTable::scan(&lab, a.read.progress())?;
    let dir = out_dir(&a.out.out_dir, &a.lab)?;
    let prefix = a.out.prefix.clone().unwrap_or_else(|| stem(&a.lab));
    let cols = columns(&table);
    let mut meta = FieldMeta::for_command("labels", serde_json::json!({ "lab": a.lab }));
    meta.image_shapes = vec![lab.shape()];
    meta.voxel_size = lab.voxel_size();
    meta.integer_columns = ["Zmin", "Zmax", "Ymin", "Ymax", "Xmin", "Xmax", "volume"].map(String::from).to_vec();
    let mut outs = crate::store::output::OutputSet::new(crate::store::output::Existing::Replace);
    outs.inputs([a.lab.as_path()]);
    parquet::write_columns(&outs.file(&dir.join(format!("{prefix}-labels.parquet")))?, "Label", &cols, &meta)?;
    if !a.no_tsv {
        tsv::write_columns(&outs.file(&dir.join(format!("{prefix}-labels.tsv")))?, "Label", &cols)?;
    }
    outs.commit()?;
    a.read.report(&cache);
    let present = table.labels.iter().filter(|l| l.is_some()).count();
    Ok(Some(format!("labels: {}: {present} labels (highest {}) → {}", a.lab.display(), table.max_label(), dir.join(format!("{prefix}-labels.parquet")).display())))
}
