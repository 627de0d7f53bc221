//! `dvc-stream regular-strain -pf FIELD`: spam-regularStrain — strain components from a
//! displacement field by Q8 cells (default), Geers' least-squares fit (`-g`) or the F the
//! field carries (`-raw`); written as Parquet, spam's strain TSV, VTK and TIFF.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use nalgebra::{Matrix3, Vector3};

use super::output_names::{dir_beside, stem};
use crate::field::neighbours::PointIndex;
use crate::field::parquet::{self, FieldMeta};
use crate::field::vtk::{self, HeaderNum, VtkArray, VtkValues};
use crate::field::{tsv, FieldKind, PhiField};
use crate::kernels::strain;
use crate::phi::{self, decompose_f};
use crate::store::dtype::TypedBuf;
use crate::store::output::{Existing, OutputSet};
use crate::store::tiff_write::write_tiff;

/// A strain component spam offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
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

#[derive(Args, Debug)]
pub struct RegularStrainArgs {
    /// The displacement field: a grid (ldic, pixel-search, ...) or, for -g and -raw, any
    /// field of points [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: PathBuf,
    /// Components to compute [spam: -comp].
    #[arg(long = "strain-components", num_args = 1.., value_enum, default_values_t = [Component::Vol, Component::Dev])]
    pub components: Vec<Component>,
    /// Keep every node, whatever its return status [spam: -nomaskBad].
    #[arg(long = "no-mask-bad")]
    pub no_mask_bad: bool,
    /// Nodes with a lower return status are masked [spam: -rst].
    #[arg(long = "return-status-threshold", default_value_t = 2, allow_negative_numbers = true)]
    pub return_status_threshold: i64,
    /// Geers: neighbourhood radius in units of the largest node spacing [spam: -r].
    #[arg(long, default_value_t = 1.5, value_parser = super::values::positive_f64)]
    pub radius: f64,
    /// Geers' least-squares fit instead of Q8 cells [spam: -g].
    #[arg(long)]
    pub geers: bool,
    /// Q8 cells (the default; spam's older `-cub` spelling) [spam: -cub].
    #[arg(long, conflicts_with_all = ["geers", "raw"])]
    pub q8: bool,
    /// F straight from the field, no shape function [spam: -raw].
    #[arg(long, conflicts_with = "geers")]
    pub raw: bool,
    #[command(flatten)]
    pub out: super::OutputOpts,
    #[command(flatten)]
    pub files: super::FieldFiles,
    /// Keep NaN in the VTK instead of 0 [spam: -vtkln].
    #[arg(long = "vtk-leave-nans")]
    pub vtk_leave_nans: bool,
    /// Worker threads [spam: -np].
    #[arg(long = "number-of-processes", value_name = "N")]
    pub number_of_processes: Option<usize>,
    /// No progress, only errors and the summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Named output columns of one component.
fn columns(c: Component) -> Vec<&'static str> {
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

fn name(c: Component) -> &'static str {
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

pub fn run(a: RegularStrainArgs) -> Result<()> {
    super::set_threads(a.number_of_processes);
    let mut field = PhiField::read(&a.phi_file)?;
    if field.kind == FieldKind::Registration {
        bail!("{}: holds a single registration; regular-strain needs a field", a.phi_file.display());
    }
    if let FieldKind::Grid { .. } = field.kind {
        field = in_grid_order(field).map_err(|e| anyhow::anyhow!("{}: not a regular grid: {e}", a.phi_file.display()))?;
    }
    let grid = match field.kind {
        FieldKind::Grid { dims, spacing } if dims.iter().product::<usize>() == field.len() => Some((dims, spacing)),
        _ => None,
    };
    if grid.is_none() && !(a.geers || a.raw) {
        bail!("{}: is not a regular grid; use --geers (-g) or --raw on scattered points or labels", a.phi_file.display());
    }
    let two_d = grid.is_some_and(|(d, _)| d[0] == 1);
    // Masking: bad nodes lose their displacement (and, in raw mode, their F).
    let n = field.len();
    let mut masked = 0usize;
    let mut u: Vec<Vector3<f64>> = Vec::with_capacity(n);
    let mut fs_raw: Vec<Matrix3<f64>> = Vec::with_capacity(n);
    for i in 0..n {
        let bad = !a.no_mask_bad && field.return_status[i] < a.return_status_threshold as f64;
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
            "{}: {masked} of {n} points have a return status below {} (use --return-status-threshold or --no-mask-bad)",
            a.phi_file.display(),
            a.return_status_threshold
        );
    }
    let (mode, positions, out_dims, fs) = if a.raw {
        ("raw", field.positions.clone(), grid.map(|g| g.0), fs_raw)
    } else if a.geers {
        let r = match grid {
            Some((_, sp)) => a.radius * sp.iter().cloned().fold(0.0, f64::max),
            None => {
                // Scattered points: the radius is in units of the mean nearest-neighbour distance.
                let index = PointIndex::new(&field.positions);
                let d: Vec<f64> = field.positions.iter().filter(|p| p[0].is_finite()).map(|p| index.nearest(p, 2).get(1).map(|x| x.1).unwrap_or(0.0)).collect();
                a.radius * d.iter().sum::<f64>() / d.len().max(1) as f64
            }
        };
        ("Geers", field.positions.clone(), grid.map(|g| g.0), strain::geers(&field.positions, &u, r, two_d))
    } else {
        let (dims, spacing) = grid.unwrap();
        let (cd, pos, fs) = strain::q8(dims, spacing, field.positions[0], &u);
        (if two_d { "Q4" } else { "Q8" }, pos, Some(cd), fs)
    };
    let decomp: Vec<phi::Decomposition> = {
        use rayon::prelude::*;
        fs.par_iter().map(|f| decompose_f(f, two_d)).collect()
    };
    // Columns in the order asked for.
    let mut cols: Vec<(String, Vec<f64>)> = vec![
        ("Zpos".into(), positions.iter().map(|p| p[0]).collect()),
        ("Ypos".into(), positions.iter().map(|p| p[1]).collect()),
        ("Xpos".into(), positions.iter().map(|p| p[2]).collect()),
    ];
    let value = |c: Component, d: &phi::Decomposition| -> Vec<f64> {
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
    };
    let mut comps = a.components.clone();
    comps.dedup();
    for &c in &comps {
        for (k, cname) in columns(c).into_iter().enumerate() {
            cols.push((cname.to_string(), decomp.iter().map(|d| value(c, d)[k]).collect()));
        }
    }
    let dir = dir_beside(&a.out.out_dir, &a.phi_file)?;
    let pre = a.out.prefix.clone().unwrap_or_else(|| stem(&a.phi_file));
    let base = dir.join(format!("{pre}-strain-{mode}"));
    let params = serde_json::json!({
        "phi_file": a.phi_file, "components": comps.iter().map(|c| name(*c)).collect::<Vec<_>>(), "mode": mode,
        "radius": a.radius, "return_status_threshold": a.return_status_threshold, "no_mask_bad": a.no_mask_bad,
    });
    // All outputs are checked before the first is written, and renamed together at the end.
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.phi_file.as_path()]);
    if a.files.tiff_out && out_dims.is_none() {
        bail!("--tiff-out needs a grid field");
    }
    let parquet_path = base.with_extension("parquet");
    outs.file(&parquet_path)?;
    if !a.files.no_tsv {
        outs.file(&base.with_extension("tsv"))?;
    }
    if a.files.vtk_out {
        outs.file(&base.with_extension("vtk"))?;
    }
    let mut tiffs = vec![];
    if a.files.tiff_out {
        for &c in &comps {
            for (k, cname) in columns(c).iter().enumerate() {
                // spam: vol-Q8.tif, rz-Q8.tif, Uzy-Q8.tif (component name, then mode).
                let path = dir.join(format!("{pre}-{cname}-{mode}.tif"));
                outs.file(&path)?;
                tiffs.push((c, k, path));
            }
        }
    }
    let mut meta = FieldMeta::for_command("regular-strain", params);
    // Strain points on a grid (Q8 cell centres, or the field's nodes) keep its shape and spacing.
    meta.grid = out_dims.zip(grid.map(|g| g.1));
    // The field's voxel size, when its table records one, stays with its strain.
    meta.voxel_size = crate::field::format::is_parquet(&a.phi_file).then(|| parquet::read_voxel_size(&a.phi_file)).flatten();
    parquet::write_columns(&outs.file(&parquet_path)?, "StrainPointNumber", &cols, &meta)?;
    if !a.files.no_tsv {
        tsv::write_columns(&outs.file(&base.with_extension("tsv"))?, "StrainPointNumber", &cols)?;
    }
    a.files.quicklook(&mut outs, &parquet_path)?;
    if let Some(dims) = out_dims.filter(|_| a.files.tiff_out) {
        for (c, k, path) in &tiffs {
            let v: Vec<f32> = decomp.iter().map(|d| value(*c, d)[*k] as f32).collect();
            write_tiff(&outs.file(path)?, dims, &TypedBuf::F32(v))?;
        }
    }
    if a.files.vtk_out {
        let fix = |v: f64| if a.vtk_leave_nans || v.is_finite() { v } else { 0.0 };
        let mut arrays = Vec::new();
        for &c in &comps {
            let vals = match c {
                Component::Vol | Component::Dev | Component::Volss | Component::Devss => VtkValues::Scalars(decomp.iter().map(|d| fix(value(c, d)[0])).collect()),
                Component::R | Component::Z | Component::Up => VtkValues::Vectors(decomp.iter().map(|d| Vector3::from_iterator(value(c, d)).map(fix)).collect()),
                Component::U => VtkValues::Tensors(decomp.iter().map(|d| d.u.map(fix)).collect()),
                Component::E => VtkValues::Tensors(decomp.iter().map(|d| d.e.map(fix)).collect()),
            };
            arrays.push(VtkArray::new(name(c), vals));
        }
        let path = base.with_extension("vtk");
        let text = match (grid, out_dims) {
            (Some((_, sp)), Some(dims)) => {
                let first = field.positions[0];
                let origin: [HeaderNum; 3] = std::array::from_fn(|k| HeaderNum::Float(if mode == "Q8" || mode == "Q4" { first[k] } else { first[k] - sp[k] / 2.0 }));
                vtk::structured_points(&path.to_string_lossy(), dims, sp.map(HeaderNum::Float), origin, &arrays)
            }
            _ => vtk::glyphs(&positions.iter().map(|p| p.map(|v| if v.is_finite() { v } else { 0.0 })).collect::<Vec<_>>(), &arrays),
        };
        vtk::write(&outs.file(&path)?, &text)?;
    }
    outs.commit()?;
    if !a.quiet {
        eprintln!("regular-strain ({mode}): {} points from {} ({masked} masked) → {}", positions.len(), a.phi_file.display(), base.display());
    }
    Ok(())
}
