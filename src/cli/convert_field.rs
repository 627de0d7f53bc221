//! `dvc-stream convert-field IN OUT`: Φ fields between spam TSV, Parquet and VTK (legacy
//! ASCII VTK from spam or dvc-stream is read too; it holds displacements only).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use crate::field::parquet::{self, FieldMeta};
use crate::field::vtk::{self, HeaderNum, VtkArray, VtkValues};
use crate::field::{tsv, FieldKind, PhiField};
use crate::phi;

#[derive(Args, Debug)]
pub struct ConvertFieldArgs {
    /// Input field (.tsv, .parquet, or a legacy ASCII .vtk field: displacements only, F = identity).
    pub input: PathBuf,
    /// Output (.tsv, .parquet or .vtk).
    pub output: PathBuf,
}

fn ext(p: &Path) -> String {
    p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

/// The VTK of a field: a grid as cells centred on nodes, labels as glyphs.
pub fn field_vtk(f: &PhiField, title: &str) -> String {
    let disp: Vec<_> = f
        .phis
        .iter()
        .map(|p| phi::translation(p).map(|v| if v.is_finite() { v } else { 0.0 }))
        .collect();
    let fin = |v: &Vec<f64>| v.iter().map(|x| if x.is_finite() { *x } else { 0.0 }).collect::<Vec<_>>();
    match &f.kind {
        FieldKind::Grid { dims, spacing } => {
            let arrays = vec![
                VtkArray::new("displacements", VtkValues::Vectors(disp)),
                VtkArray::new("error", VtkValues::Scalars(fin(&f.error))),
                VtkArray::new("iterations", VtkValues::Scalars(fin(&f.iterations))),
                VtkArray::new("returnStatus", VtkValues::Scalars(f.return_status.iter().map(|s| s.value()).collect())),
                VtkArray::new("deltaPhiNorm", VtkValues::Scalars(fin(&f.delta_phi_norm))),
            ];
            let first = f.positions.first().copied().unwrap_or_default();
            let origin = std::array::from_fn(|a| HeaderNum::Float(first[a] - spacing[a] / 2.0));
            vtk::structured_points(title, *dims, spacing.map(HeaderNum::Float), origin, &arrays)
        }
        _ => {
            let mag: Vec<f64> = disp.iter().map(|d| d.norm()).collect();
            let pts: Vec<_> = f.positions.iter().map(|p| p.map(|v| if v.is_finite() { v } else { 0.0 })).collect();
            let arrays = vec![
                VtkArray::new("displacements", VtkValues::Vectors(disp)),
                VtkArray::new("mag(displacements)", VtkValues::Scalars(mag)),
                VtkArray::new("returnStatus", VtkValues::IntScalars(f.return_status.iter().map(|s| s.code().into()).collect())),
            ];
            vtk::glyphs(&pts, &arrays)
        }
    }
}

pub fn run(a: ConvertFieldArgs) -> Result<super::Summary> {
    let field = PhiField::read(&a.input)?;
    if ext(&a.input) == "vtk" && ext(&a.output) != "vtk" {
        crate::say::warn(format_args!("{}: a VTK field holds displacements only; F is written as the identity", a.input.display()));
    }
    let kind = ext(&a.output);
    if !["tsv", "parquet", "vtk"].contains(&kind.as_str()) {
        bail!("{}: unknown output type '.{kind}' (use .tsv, .parquet or .vtk)", a.output.display());
    }
    let mut outs = crate::store::output::OutputSet::new(crate::store::output::Existing::Replace);
    outs.inputs([a.input.as_path()]);
    let partial = outs.file(&a.output)?;
    match kind.as_str() {
        "tsv" => tsv::write_field(&partial, &field)?,
        "parquet" => {
            let meta = FieldMeta::for_command("convert-field", serde_json::json!({"input": a.input}));
            parquet::write_field(&partial, &field, &meta)?
        }
        _ => vtk::write(&partial, &field_vtk(&field, &a.output.to_string_lossy()))?,
    }
    outs.commit()?;
    Ok(Some(format!("convert-field: {} points from {} → {}", field.positions.len(), a.input.display(), a.output.display())))
}
