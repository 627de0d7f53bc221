//! `dvc-stream filter-phi-field -pf FIELD`: spam-filterPhiField — select bad points (by
//! return status, correlation coefficient or local quadratic coherency) and correct them
//! (inverse-distance interpolation or quadratic fit of their good neighbours), or
//! median-filter a whole grid field.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use nalgebra::Vector3;

use super::output_names::{dir_beside, stem};
use super::pass_phi_field::write_outputs;
use crate::field::filter::{coherency, median_filter, quadratic_estimate, Hood};
use crate::field::interpolate::{Neighbours, PhiInterpolator};
use crate::field::neighbours::PointIndex;
use crate::field::parquet::FieldMeta;
use crate::field::{FieldKind, Layout, PhiField};
use crate::phi::{self, ApplyF, Phi};

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
    /// Worker threads [spam: -np].
    #[arg(long = "number-of-processes", value_name = "N")]
    pub number_of_processes: Option<usize>,
    /// No progress, only errors and the summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// spam marks corrected points: status 1 (so ldic -skp recomputes them), CC 0, error and
/// ‖δΦ‖ 100, iterations 0.
fn mark_corrected(f: &mut PhiField, i: usize) {
    f.return_status[i] = 1.0;
    f.cc[i] = 0.0;
    f.error[i] = 100.0;
    f.delta_phi_norm[i] = 100.0;
    f.iterations[i] = 0.0;
}

pub fn run(a: FilterPhiFieldArgs) -> Result<()> {
    super::set_threads(a.number_of_processes);
    let mut field = PhiField::read(&a.phi_file)?;
    if field.kind == FieldKind::Registration {
        bail!("{}: holds a single registration; filter-phi-field needs a field", a.phi_file.display());
    }
    if !(a.phi_file_bin_ratio > 0.0) {
        bail!("--phi-file-bin-ratio must be positive");
    }
    field.rescale(a.phi_file_bin_ratio);
    let n = field.len();
    let grid = match field.kind {
        FieldKind::Grid { dims, spacing } if dims.iter().product::<usize>() == n => Some((dims, spacing)),
        _ => None,
    };
    // Points never touched: failed ones (status < −4) unless --no-mask, and the background row.
    let ignored: Vec<bool> = (0..n).map(|i| (!a.no_mask && field.return_status[i] < -4.0) || (field.layout.is_labels() && field.ids[i] == 0)).collect();
    let hood = match (a.neighbourhood_radius, a.number_of_neighbours, grid) {
        (Some(r), _, _) => Hood::Radius(r),
        (None, Some(k), _) if k > 0 => Hood::Count(k),
        (None, Some(_), _) => bail!("--number-of-neighbours must be positive"),
        (None, None, Some((_, sp))) => Hood::Radius(4.0 * ((sp.iter().sum::<f64>() / 3.0) as i64) as f64),
        (None, None, None) => Hood::Count(27),
    };
    let u: Vec<Vector3<f64>> = field.phis.iter().map(phi::translation).collect();
    let usable: Vec<usize> = (0..n).filter(|&i| !ignored[i] && u[i].iter().all(|v| v.is_finite())).collect();
    let bad: Vec<bool> = if a.select_return_status {
        (0..n).map(|i| !ignored[i] && field.return_status[i] <= a.srs_threshold as f64).collect()
    } else if a.select_cc {
        (0..n).map(|i| !ignored[i] && field.cc[i] <= a.scc_threshold).collect()
    } else if a.select_lqc {
        let pts: Vec<Vector3<f64>> = usable.iter().map(|&i| field.positions[i]).collect();
        let uu: Vec<Vector3<f64>> = usable.iter().map(|&i| u[i]).collect();
        let index = PointIndex::new(&pts);
        let lqc = coherency(&pts, &uu, &index, &(0..usable.len()).collect::<Vec<_>>(), hood);
        let mut b = vec![false; n];
        for (k, &i) in usable.iter().enumerate() {
            b[i] = !(lqc[k] < 0.1);
        }
        // A non-finite displacement on a point that is not ignored is bad too.
        for i in 0..n {
            if !ignored[i] && !u[i].iter().all(|v| v.is_finite()) {
                b[i] = true;
            }
        }
        b
    } else {
        vec![false; n]
    };
    let bad_list: Vec<usize> = (0..n).filter(|&i| bad[i]).collect();
    let good: Vec<usize> = (0..n).filter(|&i| !ignored[i] && !bad[i] && phi::is_finite(&field.phis[i])).collect();
    let mut out = field.clone();
    out.layout = if field.layout.is_labels() { Layout::PixelSearchLabels } else { Layout::PixelSearch };
    let message;
    if a.correct_interpolate || a.correct_lqf {
        if bad_list.is_empty() {
            message = "no point was selected as bad: the field is written unchanged".into();
        } else if good.is_empty() {
            bail!("{}: every point is bad or ignored; there is nothing to correct from", a.phi_file.display());
        } else if a.correct_interpolate {
            let ip = PhiInterpolator::new(&good.iter().map(|&i| field.positions[i]).collect::<Vec<_>>(), &good.iter().map(|&i| field.phis[i]).collect::<Vec<_>>());
            let nb = match hood {
                Hood::Radius(r) => Neighbours::Radius(r),
                Hood::Count(k) => Neighbours::Count(k),
            };
            let targets: Vec<Vector3<f64>> = bad_list.iter().map(|&i| field.positions[i]).collect();
            for (k, p) in ip.at_all(&targets, nb, a.apply_f, false).into_iter().enumerate() {
                let i = bad_list[k];
                out.phis[i] = p;
                mark_corrected(&mut out, i);
            }
            message = format!("{} bad points corrected by interpolation from {} good ones", bad_list.len(), good.len());
        } else {
            // The fit sees only good points; bad ones are appended as query positions.
            let mut pts: Vec<Vector3<f64>> = good.iter().map(|&i| field.positions[i]).collect();
            let mut uu: Vec<Vector3<f64>> = good.iter().map(|&i| u[i]).collect();
            let index = PointIndex::new(&pts);
            let first_bad = pts.len();
            for &i in &bad_list {
                pts.push(field.positions[i]);
                uu.push(Vector3::zeros());
            }
            let which: Vec<usize> = (first_bad..pts.len()).collect();
            for (k, t) in quadratic_estimate(&pts, &uu, &index, &which, hood).into_iter().enumerate() {
                let i = bad_list[k];
                let mut p = Phi::identity();
                phi::set_translation(&mut p, &t);
                out.phis[i] = p;
                mark_corrected(&mut out, i);
            }
            message = format!("{} bad points corrected by local quadratic fit of {} good ones", bad_list.len(), good.len());
        }
    } else if a.filter_median {
        let Some((dims, _)) = grid else { bail!("{}: --filter-median works on grid fields only", a.phi_file.display()) };
        if a.apply_f == ApplyF::Rigid {
            bail!("--filter-median filters all of Φ (-F all) or only t (-F no), not its rigid part");
        }
        // Each point gathers its (2r+1)³ neighbours: a radius beyond the grid adds only
        // reflected copies, and a large one cannot be held.
        let largest = dims.iter().copied().max().unwrap_or(0);
        if a.filter_median_radius > largest {
            bail!(
                "--filter-median-radius {} is larger than the {}x{}x{} grid of {}: at most {largest}",
                a.filter_median_radius,
                dims[0],
                dims[1],
                dims[2],
                a.phi_file.display()
            );
        }
        let entries: Vec<(usize, usize)> = match a.apply_f {
            ApplyF::No => vec![(0, 3), (1, 3), (2, 3)],
            _ => (0..3).flat_map(|r| (0..4).map(move |c| (r, c))).collect(),
        };
        for (r, c) in entries {
            let v: Vec<f64> = (0..n).map(|i| if ignored[i] { f64::NAN } else { field.phis[i][(r, c)] }).collect();
            let m = median_filter(&v, dims, a.filter_median_radius);
            for i in 0..n {
                if !ignored[i] {
                    out.phis[i][(r, c)] = m[i];
                }
            }
        }
        for i in 0..n {
            if ignored[i] {
                // As spam: an ignored point has no Φ at all in the filtered field.
                out.phis[i] = Phi::from_element(f64::NAN);
                out.phis[i][(3, 3)] = 1.0;
                for c in 0..3 {
                    out.phis[i][(3, c)] = 0.0;
                }
            } else {
                if a.apply_f == ApplyF::No {
                    let t = phi::translation(&out.phis[i]);
                    out.phis[i] = Phi::identity();
                    phi::set_translation(&mut out.phis[i], &t);
                }
                mark_corrected(&mut out, i);
            }
        }
        message = format!("{} points median-filtered (radius {})", n - ignored.iter().filter(|x| **x).count(), a.filter_median_radius);
    } else if !bad_list.is_empty() {
        // Selected but not corrected: the bad points lose their displacement, so that later
        // steps do not trust it.
        for &i in &bad_list {
            phi::set_translation(&mut out.phis[i], &Vector3::from_element(f64::NAN));
        }
        message = format!("{} bad points marked (displacement set to NaN; add --correct-interpolate or --correct-lqf to correct them)", bad_list.len());
    } else if !(a.select_cc || a.select_lqc || a.select_return_status) {
        message = "no selection (--select-return-status, --select-cc or --select-lqc) and no --filter-median: the field is written unchanged".into();
    } else {
        message = "no point was selected as bad: the field is written unchanged".into();
    }
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
    if !a.quiet {
        eprintln!("filter-phi-field: {message} → {}", dir.join(&name).display());
    }
    Ok(())
}
