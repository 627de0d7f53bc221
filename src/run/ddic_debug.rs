//! `ddic -d`: spam-ddic's debug mode as files instead of a terminal and pop-up windows. spam
//! prints each label's position, guess and Gauss–Newton progress and shows its residual at
//! every iteration ("only use for a few particles"); here the first [`MAX_LABELS`] labels
//! correlated get a row in `<pre>-ddic-debug.tsv` (position, box, guess, result, iterations,
//! error, status, mean residual on the label's voxels before and after) and a picture
//! `<pre>-ddic-debug-label<L>.png` of |im1 − im2(Φx)| on the three middle slices of the
//! label's box, all written with the run's other outputs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nalgebra::Vector3;
use ndarray::{Array2, Array3};

use crate::field::FieldRow;
use crate::kernels::discrete::{label_boxes, DiscreteOptions};
use crate::kernels::gradient::trilinear_in_box;
use crate::label::LabelTable;
use crate::phi::{self, Phi};
use crate::store::output::OutputSet;
use crate::store::Volume;

/// Labels reported at most (spam: "only use for a few particles").
pub const MAX_LABELS: usize = 32;

/// The reserved outputs of a report.
pub struct DebugReport {
    pub labels: Vec<usize>,
    tsv: PathBuf,
    pngs: Vec<PathBuf>,
}

/// Picks the labels (the first [`MAX_LABELS`] of `candidates`) and reserves their files.
pub fn reserve(outs: &mut OutputSet, dir: &Path, prefix: &str, candidates: impl Iterator<Item = usize>) -> Result<DebugReport> {
    let all: Vec<usize> = candidates.collect();
    if all.len() > MAX_LABELS {
        crate::say::warn(format_args!("-d reports the first {MAX_LABELS} of the {} labels correlated (labels {} to {})", all.len(), all[0], all[MAX_LABELS - 1]));
    }
    let labels: Vec<usize> = all.into_iter().take(MAX_LABELS).collect();
    let tsv = dir.join(format!("{prefix}-ddic-debug.tsv"));
    outs.file(&tsv)?;
    let pngs: Vec<PathBuf> = labels.iter().map(|l| dir.join(format!("{prefix}-ddic-debug-label{l}.png"))).collect();
    for p in &pngs {
        outs.file(p)?;
    }
    Ok(DebugReport { labels, tsv, pngs })
}

/// Everything a label's report reads.
pub struct Inputs<'a> {
    pub im1: &'a Volume,
    pub im2: &'a Volume,
    pub lab: &'a Volume,
    pub table: &'a LabelTable,
    pub guesses: &'a [Phi],
    pub options: &'a DiscreteOptions,
}

/// Writes the table and the pictures; `rows[k]` is the result of `report.labels[k]`.
pub fn write(report: &DebugReport, outs: &mut OutputSet, rows: &[FieldRow], inp: &Inputs) -> Result<Vec<PathBuf>> {
    let mut text = String::from(
        "Label\tZpos\tYpos\tXpos\tZlo\tZhi\tYlo\tYhi\tXlo\tXhi\tguessZdisp\tguessYdisp\tguessXdisp\tZdisp\tYdisp\tXdisp\titerations\terror\treturnStatus\tdeltaPhiNorm\tresidualBefore\tresidualAfter\n",
    );
    let n = inp.im1.shape();
    let mut wrote = vec![report.tsv.clone()];
    for ((&l, row), png) in report.labels.iter().zip(rows).zip(&report.pngs) {
        let guess = inp.guesses[l];
        let boxes = label_boxes(inp.table, l, &guess, inp.options);
        // The label's box (grown by the dilation and the margin), clipped to the image.
        let (lo, hi) = match &boxes {
            Some(b) => (std::array::from_fn(|a| b.lo1[a].clamp(0, n[a] as i64) as usize), std::array::from_fn(|a| b.hi1[a].clamp(0, n[a] as i64) as usize)),
            None => ([0usize; 3], [0usize; 3]),
        };
        let shape: [usize; 3] = std::array::from_fn(|a| hi[a].saturating_sub(lo[a]));
        let empty = shape.contains(&0);
        let result_phi = if phi::is_finite(&row.phi) { row.phi } else { guess };
        let (before, after, picture) = if empty {
            (f64::NAN, f64::NAN, None)
        } else {
            let rd = |v: &Volume| v.read_box(lo[0] as i64..hi[0] as i64, lo[1] as i64..hi[1] as i64, lo[2] as i64..hi[2] as i64);
            let (a1, lab) = (rd(inp.im1)?, rd(inp.lab)?);
            let before = residual(inp.im2, &a1, lo, &guess, &row.position)?;
            let after = residual(inp.im2, &a1, lo, &result_phi, &row.position)?;
            let on_label = |r: &Array3<f32>| -> f64 {
                let (s, c) = r.iter().zip(lab.iter()).filter(|(v, k)| **k as usize == l && v.is_finite()).fold((0f64, 0usize), |(s, c), (v, _)| (s + *v as f64, c + 1));
                if c > 0 { s / c as f64 } else { f64::NAN }
            };
            (on_label(&before), on_label(&after), Some((a1, after)))
        };
        let t = |p: &Phi| phi::translation(p);
        let (tg, tr) = (t(&guess), t(&row.phi));
        write!(text, "{l}\t{}\t{}\t{}", row.position[0], row.position[1], row.position[2]).expect("a String");
        for a in 0..3 {
            write!(text, "\t{}\t{}", lo[a], hi[a]).expect("a String");
        }
        for v in [tg[0], tg[1], tg[2], tr[0], tr[1], tr[2]] {
            write!(text, "\t{v:.7}").expect("a String");
        }
        writeln!(text, "\t{}\t{:.7}\t{}\t{:.7}\t{before:.7}\t{after:.7}", row.iterations, row.error, row.return_status, row.delta_phi_norm).expect("a String");
        let slices: Vec<Array2<f32>> = match &picture {
            Some((_, r)) => (0..3).map(|axis| r.index_axis(ndarray::Axis(axis), shape[axis] / 2).to_owned()).collect(),
            None => (0..3).map(|_| Array2::from_elem((1, 1), f32::NAN)).collect(),
        };
        let span = match &picture {
            Some((a1, _)) => {
                let (mn, mx) = a1.iter().filter(|v| v.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
                (mx - mn) / 2.0
            }
            None => 1.0,
        };
        let which = if phi::is_finite(&row.phi) { "the result" } else { "the guess (no result)" };
        let subtitle = vec![
            format!("returnStatus {}, {} iterations, error {:.4}, ‖δΦ‖ {:.2e}; Φ = {which}", row.return_status, row.iterations, row.error, row.delta_phi_norm),
            format!("box Z {}..{}, Y {}..{}, X {}..{}; mean residual on the label {before:.1} with the guess, {after:.1} after", lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]),
        ];
        let fig = crate::view::plot::residual_slices_figure(slices, if empty { [1; 3] } else { shape }, inp.im1.voxel_size(), 1, span, &format!("ddic label {l}: residual |im1 − im2(Φx)|"), &subtitle)?;
        wrote.push(fig.write(outs, png)?);
    }
    let partial = outs.file(&report.tsv)?;
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    Ok(wrote)
}

/// |im1 − im2(Φx)| over the box of `a1` (starting at `lo`), Φ about `centre`; NaN where Φx
/// falls outside image 2.
fn residual(im2: &Volume, a1: &Array3<f32>, lo: [usize; 3], phi: &Phi, centre: &Vector3<f64>) -> Result<Array3<f32>> {
    let d = a1.dim();
    let shape = [d.0, d.1, d.2];
    let n = im2.shape();
    if !phi::is_finite(phi) {
        return Ok(Array3::from_elem(d, f32::NAN));
    }
    let map = |p: [usize; 3]| -> Vector3<f64> {
        let x = Vector3::from_fn(|a, _| p[a] as f64 - centre[a]);
        centre + phi::f_block(phi) * x + phi::translation(phi)
    };
    // Image 2's box: the mapped corners, one voxel more, clipped.
    let (mut qlo, mut qhi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for c in 0..8 {
        let p: [usize; 3] = std::array::from_fn(|a| lo[a] + if (c >> a) & 1 == 1 { shape[a] - 1 } else { 0 });
        let q = map(p);
        for a in 0..3 {
            qlo[a] = qlo[a].min(q[a]);
            qhi[a] = qhi[a].max(q[a]);
        }
    }
    let b0: [i64; 3] = std::array::from_fn(|a| (qlo[a].floor() as i64 - 1).clamp(0, n[a] as i64));
    let b1: [i64; 3] = std::array::from_fn(|a| (qhi[a].floor() as i64 + 2).clamp(0, n[a] as i64));
    if (0..3).any(|a| b1[a] - b0[a] < 2) {
        return Ok(Array3::from_elem(d, f32::NAN));
    }
    let a2 = im2.read_box(b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2])?;
    let origin: [usize; 3] = std::array::from_fn(|a| b0[a] as usize);
    Ok(Array3::from_shape_fn(d, |(z, y, x)| {
        let q = map([lo[0] + z, lo[1] + y, lo[2] + x]);
        let inside = (0..3).all(|a| q[a] >= b0[a] as f64 && q[a] <= (b1[a] - 1) as f64);
        if !inside {
            return f32::NAN;
        }
        let v = trilinear_in_box(&a2.view(), origin, [q[0] as f32, q[1] as f32, q[2] as f32]);
        (a1[[z, y, x]] - v).abs()
    }))
}
