//! `dvc-stream plot FIELD`: PNG figures of a result table (Φ field or strain): colour maps
//! of columns on a grid slice, arrows for scattered points (labels), histograms, each with
//! axes, a titled colour bar and a legend; optionally over a slice of an image.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::output_names::{dir_beside, stem};
use crate::store::cache::{default_cache_bytes, parse_bytes, ChunkCache};
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;
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
    /// Node index of the slice along that axis (default: the middle); for scattered points
    /// (labels), the voxel index of the --background slice under the arrows.
    #[arg(long)]
    pub index: Option<usize>,
    /// Values mapped to the ends of the colour map (default: 2nd to 98th percentile of the
    /// converged points).
    #[arg(long, num_args = 2, value_names = ["LOW", "HIGH"], allow_negative_numbers = true)]
    pub range: Option<Vec<f64>>,
    /// Colour map of the maps: viridis or grey.
    #[arg(long, value_enum, default_value = "viridis")]
    pub colormap: Colormap,
    /// Also write a histogram of each column.
    #[arg(long)]
    pub histogram: bool,
    /// An image (TIFF, Zarr, OME-Zarr) to draw under the field: the slice at the plotted
    /// node, read from a stored pyramid level small enough for the figure.
    #[arg(long, value_name = "IMAGE")]
    pub background: Option<PathBuf>,
    /// Opacity of the field over --background (0 to 1).
    #[arg(long, default_value_t = 0.6, value_parser = super::values::fraction)]
    pub opacity: f64,
    /// Budget of the decoded-chunk cache for --background (e.g. 256M).
    #[arg(long = "cache-bytes", value_name = "SIZE")]
    pub cache_bytes: Option<String>,
    #[command(flatten)]
    pub out: super::OutputOpts,
}

pub fn run(a: PlotArgs) -> Result<super::Summary> {
    let range = match a.range.as_deref() {
        Some([lo, hi]) if lo.is_finite() && hi.is_finite() && hi > lo => Some((*lo, *hi)),
        Some(_) => bail!("--range: LOW must be below HIGH (both finite)"),
        None => None,
    };
    let table = Table::read(&a.field)?;
    if table.is_empty() {
        bail!("{}: the table has no rows", a.field.display());
    }
    let background = match &a.background {
        Some(p) => {
            let bytes = match &a.cache_bytes {
                Some(s) => parse_bytes(s).map_err(|e| anyhow::anyhow!("--cache-bytes: {e}"))?,
                None => default_cache_bytes(),
            };
            Some(Volume::open(p, ChunkCache::new(bytes))?)
        }
        None => None,
    };
    let dir = dir_beside(&a.out.out_dir, &a.field)?;
    let name = a.out.prefix.clone().unwrap_or_else(|| stem(&a.field));
    let axis = ["z", "y", "x"].iter().position(|x| *x == a.axis).expect("checked by clap");
    let o = PlotOptions {
        columns: a.columns.clone(),
        axis,
        index: a.index,
        range,
        colormap: a.colormap,
        histogram: a.histogram,
        background: background.as_ref(),
        opacity: a.opacity,
    };
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.field.as_path()].into_iter().chain(a.background.as_deref()));
    plot_table(&mut outs, &table, &dir, &name, &o).map_err(|e| anyhow::anyhow!("{}: {e:#}", a.field.display()))?;
    let written = outs.commit()?;
    for p in &written {
        crate::note!("wrote {}", p.display());
    }
    Ok(Some(format!("plot: {} figures of {} → {}", written.len(), a.field.display(), dir.display())))
}
