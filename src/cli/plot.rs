//! `dvc-stream plot FIELD`: PNG pictures of a result table (Φ field or strain): colour maps
//! of columns on a grid slice, arrows for scattered points (labels), histograms.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::output_names::{dir_beside, stem};
use crate::store::output::{Existing, OutputSet};
use crate::view::plot::{plot_table, Colormap, PlotOptions, Table};

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A table written by dvc-stream or spam (.parquet or .tsv).
    pub field: PathBuf,
    /// Columns to draw (default: Zdisp, Ydisp, Xdisp, returnStatus; every value column of a strain table).
    #[arg(long = "column", short = 'c', num_args = 1..)]
    pub columns: Vec<String>,
    /// The axis the slice is across: z, y or x.
    #[arg(long, default_value = "z", value_parser = ["z", "y", "x"])]
    pub axis: String,
    /// Node index of the slice along that axis (default: the middle).
    #[arg(long)]
    pub index: Option<usize>,
    /// Values mapped to the ends of the colour map (default: the slice's range).
    #[arg(long, num_args = 2, value_names = ["LOW", "HIGH"], allow_negative_numbers = true)]
    pub range: Option<Vec<f64>>,
    /// Colour map of the maps: viridis or grey.
    #[arg(long, value_enum, default_value = "viridis")]
    pub colormap: Colormap,
    /// Also write a histogram of each column.
    #[arg(long)]
    pub histogram: bool,
    #[command(flatten)]
    pub out: super::OutputOpts,
}

pub fn run(a: PlotArgs) -> Result<super::Summary> {
    let range = match a.range.as_deref() {
        Some([lo, hi]) if hi > lo => Some((*lo, *hi)),
        Some(_) => bail!("--range: LOW must be below HIGH"),
        None => None,
    };
    let table = Table::read(&a.field)?;
    if table.is_empty() {
        bail!("{}: the table has no rows", a.field.display());
    }
    let dir = dir_beside(&a.out.out_dir, &a.field)?;
    let name = a.out.prefix.clone().unwrap_or_else(|| stem(&a.field));
    let axis = ["z", "y", "x"].iter().position(|x| *x == a.axis).expect("checked by clap");
    let o = PlotOptions { columns: a.columns.clone(), axis, index: a.index, range, colormap: a.colormap, histogram: a.histogram };
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.field.as_path()]);
    plot_table(&mut outs, &table, &dir, &name, &o).map_err(|e| anyhow::anyhow!("{}: {e:#}", a.field.display()))?;
    let written = outs.commit()?;
    for p in &written {
        crate::note!("wrote {}", p.display());
    }
    Ok(Some(format!("plot: {} figures of {} → {}", written.len(), a.field.display(), dir.display())))
}
