//! `dvc-stream convert-field IN OUT`: Φ fields between spam TSV, Parquet and VTK (legacy
//! ASCII VTK from spam or dvc-stream is read too; it holds displacements only).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use crate::field::parquet::{self, FieldMeta};
use crate::field::vtk;
use crate::field::{tsv, PhiField};

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
        _ => vtk::write(&partial, &vtk::field_vtk(&field, &a.output.to_string_lossy()))?,
    }
    outs.commit()?;
    Ok(Some(format!("convert-field: {} points from {} → {}", field.positions.len(), a.input.display(), a.output.display())))
}
