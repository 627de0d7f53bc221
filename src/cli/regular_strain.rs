//! `dvc-stream regular-strain -pf FIELD`: spam-regularStrain — strain components from a
//! displacement field by Q8 cells (default), Geers' least-squares fit (`-g`) or the F the
//! field carries (`-raw`); written as Parquet, spam's strain TSV, VTK and TIFF.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use nalgebra::Vector3;

use super::output_names::{dir_beside, stem};
use crate::field::parquet::{self, FieldMeta};
use crate::field::vtk::{self, HeaderNum, VtkArray, VtkValues};
use crate::field::{tsv, PhiField};
use crate::run::regular_strain::{columns, name, regular_strain, value, Component, Strain, StrainJob, StrainMode};
use crate::store::dtype::TypedBuf;
use crate::store::output::{Existing, OutputSet};
use crate::store::tiff_write::write_tiff;

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
    #[command(flatten)]
    pub threads: super::Threads,
}

/// The job the flags describe.
fn job(a: &RegularStrainArgs) -> StrainJob {
    let mut components = a.components.clone();
    components.dedup();
    let mode = if a.raw {
        StrainMode::Raw
    } else if a.geers {
        StrainMode::Geers { radius: a.radius }
    } else {
        StrainMode::Cells
    };
    StrainJob { components, mode, mask_below: (!a.no_mask_bad).then_some(a.return_status_threshold) }
}

pub fn run(a: RegularStrainArgs) -> Result<super::Summary> {
    a.threads.apply();
    let field = PhiField::read(&a.phi_file)?;
    let job = job(&a);
    let Strain { mode, positions, dims: out_dims, field_grid: grid, decompositions: decomp, columns: cols, masked, first_point } =
        regular_strain(field, &job).map_err(|e| anyhow::anyhow!("{}: {e:#}", a.phi_file.display()))?;
    let comps = job.components;
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
    // A 2D field (one Z layer): as spam, no TIFF of the Z rows of e, U and z (0 or 1 by
    // construction); the rotation keeps rz, the only one that is not 0 in the plane.
    let two_d = grid.is_some_and(|(d, _)| d[0] == 1);
    if a.files.tiff_out {
        for &c in &comps {
            for (k, cname) in columns(c).iter().enumerate() {
                if two_d && matches!(c, Component::E | Component::U | Component::Z) && cname[1..].contains('z') {
                    continue;
                }
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
                let first = first_point;
                // spam's 2D cells are one voxel thick along Z.
                let sp = if two_d { [1.0, sp[1], sp[2]] } else { sp };
                let origin: [HeaderNum; 3] = std::array::from_fn(|k| HeaderNum::Float(if mode == "Q8" || mode == "Q4" { first[k] } else { first[k] - sp[k] / 2.0 }));
                let aspect: [HeaderNum; 3] = std::array::from_fn(|k| if two_d && k == 0 { HeaderNum::Int(1) } else { HeaderNum::Float(sp[k]) });
                vtk::structured_points(&path.to_string_lossy(), dims, aspect, origin, &arrays)
            }
            _ => vtk::glyphs(&positions.iter().map(|p| p.map(|v| if v.is_finite() { v } else { 0.0 })).collect::<Vec<_>>(), &arrays),
        };
        vtk::write(&outs.file(&path)?, &text)?;
    }
    outs.commit()?;
    Ok(Some(format!("regular-strain ({mode}): {} points from {} ({masked} masked) → {}", positions.len(), a.phi_file.display(), base.display())))
}
