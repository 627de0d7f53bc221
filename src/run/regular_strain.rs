//! spam-regularStrain as a library call: a resolved [`StrainJob`] (which components, which
//! shape function, which nodes are masked) applied to a displacement field, giving the strain
//! columns and their points. The command line builds the job and writes the files.

use anyhow::{bail, Result};
use clap::ValueEnum;
use nalgebra::{Matrix3, Vector3};
use serde::Serialize;

use crate::field::{FieldKind, PhiField};
use crate::kernels::strain;
use crate::phi::{self, decompose_f};

/// A strain component spam offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Component {
    /// det F − 1.
    Vol,
    /// ‖U det(F)^(−1/3) − I‖.
    Dev,
    /// tr(e), small strain.
    Volss,
    /// ‖e − tr(e)/3 I‖.
    Devss,
    /// Rotation vector in degrees (rz ry rx).
    R,
    /// Diagonal of U (zz zy zx).
    Z,
    /// Right stretch tensor U.
    #[value(name = "U")]
    U,
    /// Small strain tensor e = (F + Fᵀ)/2 − I.
    E,
    /// Principal stretches − 1, ascending (Upmin Upmid Upmax).
    #[value(name = "Up")]
    Up,
}

/// How F is taken from the displacements.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum StrainMode {
    /// Q8 cells between grid nodes (Q4 in 2D), spam's default.
    Cells,
    /// Geers' least-squares fit over a radius in units of the largest node spacing (or of the
    /// mean nearest-neighbour distance on scattered points).
    Geers { radius: f64 },
    /// The F each point of the field carries.
    Raw,
}

/// A strain run, resolved from the command line (or built by a script).
#[derive(Clone, Debug, Serialize)]
pub struct StrainJob {
    /// Components, in the order of the output columns (repeats dropped).
    pub components: Vec<Component>,
    pub mode: StrainMode,
    /// Nodes with a return status below this lose their displacement; None keeps every node.
    pub mask_below: Option<i64>,
}

/// The strain of a field: named columns (positions first) at its points.
pub struct Strain {
    /// "Q8", "Q4", "Geers" or "raw", as spam names its outputs.
    pub mode: &'static str,
    pub positions: Vec<Vector3<f64>>,
    /// The grid of the strain points (cell centres, or the field's own grid), if any.
    pub dims: Option<[usize; 3]>,
    /// The field's own grid (dims, spacing), when it is one.
    pub field_grid: Option<([usize; 3], [f64; 3])>,
    pub decompositions: Vec<phi::Decomposition>,
    /// Zpos, Ypos, Xpos, then each component's columns.
    pub columns: Vec<(String, Vec<f64>)>,
    /// Points masked out (bad status or the background label).
    pub masked: usize,
    /// The field's first point in grid order (where a grid's VTK origin is taken from).
    pub first_point: Vector3<f64>,
}

/// Named output columns of one component.
pub fn columns(c: Component) -> Vec<&'static str> {
    match c {
        Component::Vol => vec!["vol"],
        Component::Dev => vec!["dev"],
        Component::Volss => vec!["volss"],
        Component::Devss => vec!["devss"],
        Component::R => vec!["rz", "ry", "rx"],
        Component::Z => vec!["zz", "zy", "zx"],
        Component::U => vec!["Uzz", "Uzy", "Uzx", "Uyy", "Uyx", "Uxx"],
        Component::E => vec!["ezz", "ezy", "ezx", "eyy", "eyx", "exx"],
        Component::Up => vec!["Upmin", "Upmid", "Upmax"],
    }
}

pub fn name(c: Component) -> &'static str {
    match c {
        Component::Vol => "vol",
        Component::Dev => "dev",
        Component::Volss => "volss",
        Component::Devss => "devss",
        Component::R => "r",
        Component::Z => "z",
        Component::U => "U",
        Component::E => "e",
        Component::Up => "Up",
    }
}

/// A grid field's rows sorted into Z-major order, checked to be a complete regular grid:
/// constant spacing on each axis and every node present once. Q8 cells and the Geers radius
/// take neighbours from the grid's order and spacing, so a shuffled file or a missing plane
/// would otherwise give wrong strain without a word.
fn in_grid_order(field: PhiField) -> Result<PhiField> {
    const AXES: [&str; 3] = ["Z", "Y", "X"];
    if let Some(p) = field.positions.iter().find(|p| !p.iter().all(|v| v.is_finite())) {
        bail!("a node has no finite position ({:?})", p.as_slice());
    }
    let mut levels: Vec<Vec<f64>> = Vec::with_capacity(3);
    for (k, axis) in AXES.iter().enumerate() {
        let mut v: Vec<f64> = field.positions.iter().map(|p| p[k]).collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        if v.len() >= 2 {
            // The node spacing is the smallest step; a larger one is a missing plane.
            let s = v.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
            let tol = 1e-6 * s.abs().max(1.0);
            for w in v.windows(2) {
                let d = w[1] - w[0];
                if (d - s).abs() > tol {
                    let ratio = d / s;
                    if (ratio - ratio.round()).abs() * s <= tol {
                        bail!("{axis} plane at {} missing (spacing {s})", w[0] + s);
                    }
                    bail!("{axis} spacing changes from {s} to {d} at {}", w[0]);
                }
            }
        }
        levels.push(v);
    }
    let dims = [levels[0].len(), levels[1].len(), levels[2].len()];
    let index = |p: &Vector3<f64>| -> usize {
        let i: [usize; 3] = std::array::from_fn(|k| levels[k].partition_point(|&x| x < p[k]));
        (i[0] * dims[1] + i[1]) * dims[2] + i[2]
    };
    let mut row_of: Vec<Option<usize>> = vec![None; dims.iter().product()];
    for (r, p) in field.positions.iter().enumerate() {
        let i = index(p);
        if row_of[i].replace(r).is_some() {
            bail!("node at {:?} comes twice", p.as_slice());
        }
    }
    if let Some(i) = row_of.iter().position(Option::is_none) {
        let at = [i / (dims[1] * dims[2]), (i / dims[2]) % dims[1], i % dims[2]];
        bail!("node at [{}, {}, {}] missing ({} rows for a {}×{}×{} grid)", levels[0][at[0]], levels[1][at[1]], levels[2][at[2]], field.len(), dims[0], dims[1], dims[2]);
    }
    let mut sorted = PhiField::new(field.kind.clone(), field.layout);
    for r in row_of.into_iter().flatten() {
        sorted.push(field.row(r));
    }
    Ok(sorted)
}

/// Upper triangle of a symmetric tensor, spam's order.
fn upper(m: &Matrix3<f64>) -> [f64; 6] {
    [m[(0, 0)], m[(0, 1)], m[(0, 2)], m[(1, 1)], m[(1, 2)], m[(2, 2)]]
}

/// The value(s) of one component from a decomposition, in [`columns`]'s order.
pub fn value(c: Component, d: &phi::Decomposition) -> Vec<f64> {
    match c {
        Component::Vol => vec![d.vol],
        Component::Dev => vec![d.dev],
        Component::Volss => vec![d.volss],
        Component::Devss => vec![d.devss],
        Component::R => d.r.iter().copied().collect(),
        Component::Z => d.z.iter().copied().collect(),
        Component::U => upper(&d.u).to_vec(),
        Component::E => upper(&d.e).to_vec(),
        Component::Up => d.up.iter().copied().collect(),
    }
}

/// Applies the job. Errors say what cannot be done (the caller names the file).
pub fn regular_strain(field: PhiField, job: &StrainJob) -> Result<Strain> {
    let mut field = field;
    if field.kind == FieldKind::Registration {
        bail!("holds a single registration; regular-strain needs a field");
    }
    if field.is_empty() {
        bail!("has no points");
    }
    if let FieldKind::Grid { .. } = field.kind {
        field = in_grid_order(field).map_err(|e| anyhow::anyhow!("not a regular grid: {e}"))?;
    }
    let grid = match field.kind {
        FieldKind::Grid { dims, spacing } if dims.iter().product::<usize>() == field.len() => Some((dims, spacing)),
        _ => None,
    };
    if grid.is_none() && job.mode == StrainMode::Cells {
        bail!("is not a regular grid; use --geers (-g) or --raw on scattered points or labels");
    }
    let two_d = grid.is_some_and(|(d, _)| d[0] == 1);
    // Masking: bad nodes lose their displacement (and, in raw mode, their F).
    let n = field.len();
    let mut masked = 0usize;
    let mut u: Vec<Vector3<f64>> = Vec::with_capacity(n);
    let mut fs_raw: Vec<Matrix3<f64>> = Vec::with_capacity(n);
    for i in 0..n {
        let bad = job.mask_below.is_some_and(|t| !field.return_status[i].at_least(t));
        let is_label_zero = field.layout.is_labels() && field.ids[i] == 0;
        if bad || is_label_zero {
            masked += 1;
            u.push(Vector3::from_element(f64::NAN));
            fs_raw.push(Matrix3::from_element(f64::NAN));
        } else {
            u.push(phi::translation(&field.phis[i]));
            fs_raw.push(phi::f_block(&field.phis[i]));
        }
    }
    if masked as f64 > 0.99 * n as f64 {
        bail!(
            "{masked} of {n} points have a return status below {} (use --return-status-threshold or --no-mask-bad)",
            job.mask_below.unwrap_or(i64::MIN)
        );
    }
    let (mode, positions, dims, fs) = match job.mode {
        StrainMode::Raw => ("raw", field.positions.clone(), grid.map(|g| g.0), fs_raw),
        StrainMode::Geers { radius } => {
            let r = strain::geers_radius(&field.positions, grid.map(|g| g.1), radius);
            ("Geers", field.positions.clone(), grid.map(|g| g.0), strain::geers(&field.positions, &u, r, two_d))
        }
        StrainMode::Cells => {
            let (dims, spacing) = grid.expect("checked above");
            let (cd, pos, fs) = strain::q8(dims, spacing, field.positions[0], &u);
            (if two_d { "Q4" } else { "Q8" }, pos, Some(cd), fs)
        }
    };
    let decompositions: Vec<phi::Decomposition> = {
        use rayon::prelude::*;
        fs.par_iter().map(|f| decompose_f(f, two_d)).collect()
    };
    // Columns in the order asked for.
    let mut columns_out: Vec<(String, Vec<f64>)> = vec![
        ("Zpos".into(), positions.iter().map(|p| p[0]).collect()),
        ("Ypos".into(), positions.iter().map(|p| p[1]).collect()),
        ("Xpos".into(), positions.iter().map(|p| p[2]).collect()),
    ];
    for &c in &job.components {
        for (k, cname) in columns(c).into_iter().enumerate() {
            columns_out.push((cname.to_string(), decompositions.iter().map(|d| value(c, d)[k]).collect()));
        }
    }
    let first_point = field.positions[0];
    Ok(Strain { mode, positions, dims, field_grid: grid, decompositions, columns: columns_out, masked, first_point })
}
