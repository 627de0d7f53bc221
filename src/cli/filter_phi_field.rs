//! `dvc-stream filter-phi-field -pf FIELD`: spam-filterPhiField — select bad points (by
//! return status, correlation coefficient or local quadratic coherency) and correct them
//! (inverse-distance interpolation or quadratic fit of their good neighbours), or
//! median-filter a whole grid field.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;

use super::output_names::{dir_beside, stem};
use crate::run::pass_phi_field::write_outputs;
use crate::field::filter::Hood;
use crate::field::parquet::FieldMeta;
use crate::field::PhiField;
use crate::phi::ApplyF;
use crate::run::filter_phi_field::{default_hood, filter, Action, FilterJob, Filtered, Selection};

#[derive(Args, Debug)]
pub struct FilterPhiFieldArgs {
    /// The field to filter (TSV or Parquet) [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: PathBuf,
    /// Bin ratio of the field (spam accepts and ignores it; here it scales the field) [spam: -pfb].
    #[arg(long = "phi-file-bin-ratio", default_value_t = 1.0, value_parser = super::values::positive_f64)]
    pub phi_file_bin_ratio: f64,
    /// Also filter points with a return status below −4 (otherwise left as they are) [spam: -nomask].
    #[arg(long = "no-mask")]
    pub no_mask: bool,
    /// Neighbourhood radius in voxels (default: 4 × node spacing on grids) [spam: -nr].
    #[arg(long = "neighbourhood-radius", value_parser = super::values::positive_f64)]
    pub neighbourhood_radius: Option<f64>,
    /// Number of neighbours (default 27 on label fields) [spam: -nn].
    #[arg(long = "number-of-neighbours", value_parser = super::values::positive_usize)]
    pub number_of_neighbours: Option<usize>,
    /// Select as bad the points with a return status ≤ --srs-threshold [spam: -srs].
    #[arg(long = "select-return-status")]
    pub select_return_status: bool,
    /// Points with a return status below this are bad for --select-return-status [spam: -srst].
    #[arg(long = "srs-threshold", default_value_t = 1, allow_negative_numbers = true)]
    pub srs_threshold: i64,
    /// Select as bad the points with a correlation coefficient ≤ --scc-threshold [spam: -scc].
    #[arg(long = "select-cc")]
    pub select_cc: bool,
    /// Points with a pixelSearchCC below this are bad for --select-cc [spam: -scct].
    #[arg(long = "scc-threshold", default_value_t = 0.99, allow_negative_numbers = true, value_parser = super::values::threshold_f64)]
    pub scc_threshold: f64,
    /// Select as bad the points whose local quadratic coherency is ≥ 0.1 [spam: -slqc].
    #[arg(long = "select-lqc")]
    pub select_lqc: bool,
    /// Correct bad points by inverse-distance interpolation of good ones [spam: -cint].
    #[arg(long = "correct-interpolate")]
    pub correct_interpolate: bool,
    /// Correct bad points' displacement by a local quadratic fit of good ones [spam: -clqf].
    #[arg(long = "correct-lqf", conflicts_with = "correct_interpolate")]
    pub correct_lqf: bool,
    /// What -cint interpolates and -fm filters: all of Φ, its rigid part (-cint), or only t [spam: -F].
    #[arg(long = "apply-f", value_enum, default_value = "all")]
    pub apply_f: ApplyF,
    /// Median-filter every point of a grid field [spam: -fm].
    #[arg(long = "filter-median", conflicts_with_all = ["correct_interpolate", "correct_lqf"])]
    pub filter_median: bool,
    /// Radius of the median cube [spam: -fmr].
    #[arg(long = "filter-median-radius", default_value_t = 1)]
    pub filter_median_radius: usize,
    #[command(flatten)]
    pub out: super::OutputOpts,
    #[command(flatten)]
    pub files: super::FieldFiles,
    #[command(flatten)]
    pub threads: super::Threads,
}

/// The job the flags describe (the first selection flag wins, as in spam).
fn job(a: &FilterPhiFieldArgs, field: &PhiField) -> FilterJob {
    let selection = if a.select_return_status {
        Selection::ReturnStatus(a.srs_threshold)
    } else if a.select_cc {
        Selection::Cc(a.scc_threshold)
    } else if a.select_lqc {
        Selection::Coherency
    } else {
        Selection::None
    };
    let action = if a.correct_interpolate {
        Action::Interpolate
    } else if a.correct_lqf {
        Action::QuadraticFit
    } else if a.filter_median {
        Action::Median { radius: a.filter_median_radius }
    } else {
        Action::Mark
    };
    let hood = match (a.neighbourhood_radius, a.number_of_neighbours) {
        (Some(r), _) => Hood::Radius(r),
        (None, Some(k)) => Hood::Count(k),
        (None, None) => default_hood(field),
    };
    FilterJob { selection, action, hood, include_failed: a.no_mask, apply_f: a.apply_f }
}

pub fn run(a: FilterPhiFieldArgs) -> Result<super::Summary> {
    a.threads.apply();
    let mut field = PhiField::read(&a.phi_file)?;
    field.rescale(a.phi_file_bin_ratio);
    let job = job(&a, &field);
    let Filtered { field: out, message } = filter(&field, &job).map_err(|e| anyhow!("{}: {e:#}", a.phi_file.display()))?;
    let hood = job.hood;
    let dir = dir_beside(&a.out.out_dir, &a.phi_file)?;
    let mut name = format!("{}-filtered", a.out.prefix.clone().unwrap_or_else(|| stem(&a.phi_file)));
    if a.correct_lqf {
        name += "-LQC";
    }
    let params = serde_json::json!({
        "phi_file": a.phi_file, "no_mask": a.no_mask, "hood": format!("{hood:?}"), "select_return_status": a.select_return_status,
        "srs_threshold": a.srs_threshold, "select_cc": a.select_cc, "scc_threshold": a.scc_threshold, "select_lqc": a.select_lqc,
        "correct_interpolate": a.correct_interpolate, "correct_lqf": a.correct_lqf, "apply_f": a.apply_f,
        "filter_median": a.filter_median, "filter_median_radius": a.filter_median_radius,
    });
    let mut outs = crate::store::output::OutputSet::new(crate::store::output::Existing::Replace);
    outs.inputs([a.phi_file.as_path()]);
    write_outputs(&mut outs, &out, &dir, &name, &FieldMeta::for_command("filter-phi-field", params), !a.files.no_tsv, a.files.vtk_out, a.files.tiff_out, None)?;
    a.files.quicklook(&mut outs, &dir.join(format!("{name}.parquet")))?;
    outs.commit()?;
    Ok(Some(format!("filter-phi-field: {message} → {}", dir.join(&name).display())))
}
