//! spam-filterPhiField as a library call: a resolved [`FilterJob`] (which points are bad, what
//! is done to them, over which neighbourhood) applied to a field, giving the filtered field.
//!
//! The command line only builds the job from its flags and writes the result; the selection,
//! the corrections and the median filter live here, over the measures of
//! [`crate::field::filter`], so that a script can filter a field without the command line.

use anyhow::{bail, Result};
use nalgebra::Vector3;
use serde::Serialize;

use crate::field::filter::{coherency, median_filter, quadratic_estimate, Hood};
use crate::field::interpolate::{Neighbours, PhiInterpolator};
use crate::field::neighbours::PointIndex;
use crate::field::{FieldKind, Layout, PhiField, Status};
use crate::phi::{self, ApplyF, Phi};

/// Which points are bad.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Selection {
    /// None: only a median filter or nothing.
    None,
    /// A return status at or below the threshold (spam's -srs, -srst).
    ReturnStatus(i64),
    /// A pixel-search correlation coefficient at or below the threshold (-scc, -scct).
    Cc(f64),
    /// A local quadratic coherency of 0.1 or more (-slqc).
    Coherency,
}

/// What is done to the field.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Action {
    /// Bad points lose their displacement (NaN), so that later steps do not trust it.
    Mark,
    /// Bad points get Φ interpolated from their good neighbours (-cint).
    Interpolate,
    /// Bad points get the displacement of a local quadratic fit of good neighbours (-clqf).
    QuadraticFit,
    /// Every point of a grid field is median-filtered over a (2r+1)³ cube (-fm, -fmr).
    Median { radius: usize },
}

/// A filter run, resolved from the command line (or built by a script).
#[derive(Clone, Debug, Serialize)]
pub struct FilterJob {
    pub selection: Selection,
    pub action: Action,
    /// Each point's neighbourhood for the coherency and the corrections.
    pub hood: Hood,
    /// Points that failed (status below −4) are filtered too (spam's -nomask); by default they
    /// are left as they are.
    pub include_failed: bool,
    /// What interpolation and the median act on: all of Φ, its rigid part, or only t.
    pub apply_f: ApplyF,
}

/// The filtered field and one line saying what was done.
pub struct Filtered {
    pub field: PhiField,
    pub message: String,
}

/// The neighbourhood spam uses when none is given: 4 node spacings on a grid, else 27 points.
pub fn default_hood(field: &PhiField) -> Hood {
    match grid_of(field) {
        Some((_, sp)) => Hood::Radius(4.0 * ((sp.iter().sum::<f64>() / 3.0) as i64) as f64),
        None => Hood::Count(27),
    }
}

/// The grid's dimensions and spacing when every node of it is in the field.
fn grid_of(field: &PhiField) -> Option<([usize; 3], [f64; 3])> {
    match field.kind {
        FieldKind::Grid { dims, spacing } if dims.iter().product::<usize>() == field.len() => Some((dims, spacing)),
        _ => None,
    }
}

/// spam marks corrected points: status 1 (so ldic -skp recomputes them), CC 0, error and
/// ‖δΦ‖ 100, iterations 0.
fn mark_corrected(f: &mut PhiField, i: usize) {
    f.return_status[i] = Status::FOUND;
    f.cc[i] = 0.0;
    f.error[i] = 100.0;
    f.delta_phi_norm[i] = 100.0;
    f.iterations[i] = 0.0;
}

/// Applies the job. Errors say what cannot be done (the caller names the file).
pub fn filter(field: &PhiField, job: &FilterJob) -> Result<Filtered> {
    if field.kind == FieldKind::Registration {
        bail!("holds a single registration; filter-phi-field needs a field");
    }
    let n = field.len();
    let hood = job.hood;
    // Points never touched: failed ones (status < −4) unless included, and the background row.
    let ignored: Vec<bool> = (0..n).map(|i| (!job.include_failed && !field.return_status[i].at_least(-4)) || (field.layout.is_labels() && field.ids[i] == 0)).collect();
    let u: Vec<Vector3<f64>> = field.phis.iter().map(phi::translation).collect();
    let bad = select(field, job.selection, &ignored, &u, hood);
    let bad_list: Vec<usize> = (0..n).filter(|&i| bad[i]).collect();
    let good: Vec<usize> = (0..n).filter(|&i| !ignored[i] && !bad[i] && phi::is_finite(&field.phis[i])).collect();
    let mut out = field.clone();
    out.layout = if field.layout.is_labels() { Layout::PixelSearchLabels } else { Layout::PixelSearch };
    let unchanged = "no point was selected as bad: the field is written unchanged".to_string();
    let message = match job.action {
        Action::Interpolate | Action::QuadraticFit if bad_list.is_empty() => unchanged,
        Action::Interpolate | Action::QuadraticFit if good.is_empty() => bail!("every point is bad or ignored; there is nothing to correct from"),
        Action::Interpolate => {
            let ip = PhiInterpolator::new(&good.iter().map(|&i| field.positions[i]).collect::<Vec<_>>(), &good.iter().map(|&i| field.phis[i]).collect::<Vec<_>>());
            let nb = match hood {
                Hood::Radius(r) => Neighbours::Radius(r),
                Hood::Count(k) => Neighbours::Count(k),
            };
            let targets: Vec<Vector3<f64>> = bad_list.iter().map(|&i| field.positions[i]).collect();
            for (k, p) in ip.at_all(&targets, nb, job.apply_f, false).into_iter().enumerate() {
                let i = bad_list[k];
                out.phis[i] = p;
                mark_corrected(&mut out, i);
            }
            format!("{} bad points corrected by interpolation from {} good ones", bad_list.len(), good.len())
        }
        Action::QuadraticFit => {
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
            format!("{} bad points corrected by local quadratic fit of {} good ones", bad_list.len(), good.len())
        }
        Action::Median { radius } => median(field, &mut out, &ignored, radius, job.apply_f)?,
        Action::Mark if !bad_list.is_empty() => {
            for &i in &bad_list {
                phi::set_translation(&mut out.phis[i], &Vector3::from_element(f64::NAN));
            }
            format!("{} bad points marked (displacement set to NaN; add --correct-interpolate or --correct-lqf to correct them)", bad_list.len())
        }
        Action::Mark if job.selection == Selection::None => {
            "no selection (--select-return-status, --select-cc or --select-lqc) and no --filter-median: the field is written unchanged".into()
        }
        Action::Mark => unchanged,
    };
    Ok(Filtered { field: out, message })
}

/// The bad points of the selection (none is ever an ignored point).
fn select(field: &PhiField, selection: Selection, ignored: &[bool], u: &[Vector3<f64>], hood: Hood) -> Vec<bool> {
    let n = field.len();
    match selection {
        Selection::None => vec![false; n],
        Selection::ReturnStatus(t) => (0..n).map(|i| !ignored[i] && i64::from(field.return_status[i].code()) <= t).collect(),
        Selection::Cc(t) => (0..n).map(|i| !ignored[i] && field.cc[i] <= t).collect(),
        Selection::Coherency => {
            let usable: Vec<usize> = (0..n).filter(|&i| !ignored[i] && u[i].iter().all(|v| v.is_finite())).collect();
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
        }
    }
}

/// The median filter of a grid field, written into `out`; returns the message.
fn median(field: &PhiField, out: &mut PhiField, ignored: &[bool], radius: usize, apply_f: ApplyF) -> Result<String> {
    let n = field.len();
    let Some((dims, _)) = grid_of(field) else { bail!("--filter-median works on grid fields only") };
    if apply_f == ApplyF::Rigid {
        bail!("--filter-median filters all of Φ (-F all) or only t (-F no), not its rigid part");
    }
    // Each point gathers its (2r+1)³ neighbours: a radius beyond the grid adds only reflected
    // copies, and a large one cannot be held.
    let largest = dims.iter().copied().max().unwrap_or(0);
    if radius > largest {
        bail!("--filter-median-radius {radius} is larger than the {}x{}x{} grid: at most {largest}", dims[0], dims[1], dims[2]);
    }
    let entries: Vec<(usize, usize)> = match apply_f {
        ApplyF::No => vec![(0, 3), (1, 3), (2, 3)],
        _ => (0..3).flat_map(|r| (0..4).map(move |c| (r, c))).collect(),
    };
    for (r, c) in entries {
        let v: Vec<f64> = (0..n).map(|i| if ignored[i] { f64::NAN } else { field.phis[i][(r, c)] }).collect();
        let m = median_filter(&v, dims, radius);
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
            if apply_f == ApplyF::No {
                let t = phi::translation(&out.phis[i]);
                out.phis[i] = Phi::identity();
                phi::set_translation(&mut out.phis[i], &t);
            }
            mark_corrected(out, i);
        }
    }
    Ok(format!("{} points median-filtered (radius {radius})", n - ignored.iter().filter(|x| **x).count()))
}
