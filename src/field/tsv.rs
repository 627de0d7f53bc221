//! spam's TSV files: byte-compatible writers for its Φ layouts and a reader for all of them.
//!
//! Writing follows NumPy `savetxt(fmt="%.7f", delimiter="\t")`: a header line of column
//! names, then every value (node numbers and statuses included) as `%.7f`. Reading follows
//! `readCorrelationTSV` (spam-compat.md §2.3): columns by name, one data row = registration,
//! several rows with `NodeNumber` = grid, with `Label` = one row per label.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nalgebra::Vector3;

use super::format::c_fixed7;
use super::{FieldKind, FieldRow, Layout, PhiField};
use crate::phi;

const PHI_COLS: [&str; 12] = ["Fzz", "Fzy", "Fzx", "Zdisp", "Fyz", "Fyy", "Fyx", "Ydisp", "Fxz", "Fxy", "Fxx", "Xdisp"];

/// Column names of a layout, in spam's order.
pub fn columns(layout: Layout) -> Vec<&'static str> {
    let mut c = Vec::new();
    match layout {
        Layout::Registration | Layout::Ldic => {
            c.extend(["NodeNumber", "Zpos", "Ypos", "Xpos"]);
            c.extend(PHI_COLS);
            c.extend(["error", "iterations", "returnStatus", "deltaPhiNorm"]);
        }
        Layout::PixelSearch | Layout::PixelSearchLabels => {
            c.push(if layout == Layout::PixelSearch { "NodeNumber" } else { "Label" });
            c.extend(["Zpos", "Ypos", "Xpos"]);
            c.extend(PHI_COLS);
            c.extend(["pixelSearchCC", "returnStatus", "error", "deltaPhiNorm", "iterations"]);
        }
        Layout::Ddic => {
            c.extend(["Label", "Zpos", "Ypos", "Xpos", "Zdisp", "Ydisp", "Xdisp"]);
            c.extend(["Fzz", "Fzy", "Fzx", "Fyz", "Fyy", "Fyx", "Fxz", "Fxy", "Fxx"]);
            c.extend(["PSCC", "error", "iterations", "returnStatus", "deltaPhiNorm", "LabelDilate"]);
        }
    }
    c
}

/// The value of column `name` in a row.
pub fn value(r: &FieldRow, name: &str) -> f64 {
    let p = &r.phi;
    match name {
        "NodeNumber" | "Label" => r.id as f64,
        "Zpos" => r.position[0],
        "Ypos" => r.position[1],
        "Xpos" => r.position[2],
        "Fzz" => p[(0, 0)],
        "Fzy" => p[(0, 1)],
        "Fzx" => p[(0, 2)],
        "Zdisp" => p[(0, 3)],
        "Fyz" => p[(1, 0)],
        "Fyy" => p[(1, 1)],
        "Fyx" => p[(1, 2)],
        "Ydisp" => p[(1, 3)],
        "Fxz" => p[(2, 0)],
        "Fxy" => p[(2, 1)],
        "Fxx" => p[(2, 2)],
        "Xdisp" => p[(2, 3)],
        "pixelSearchCC" | "PSCC" => r.cc,
        "error" => r.error,
        "iterations" => r.iterations,
        "returnStatus" => r.return_status.value(),
        "deltaPhiNorm" => r.delta_phi_norm,
        "LabelDilate" => r.label_dilate,
        other => unreachable!("unknown column {other}"),
    }
}

/// The header line (without newline).
pub fn header(layout: Layout) -> String {
    columns(layout).join("\t")
}

/// One data line (with newline).
pub fn line(layout: Layout, r: &FieldRow) -> String {
    let cols = columns(layout);
    let mut s = String::with_capacity(cols.len() * 12);
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            s.push('\t');
        }
        super::format::push_c_fixed7(&mut s, value(r, c));
    }
    s.push('\n');
    s
}

/// Writes a whole field as spam would, at `path` (an [`crate::store::output::OutputSet`]'s
/// partial name: the set renames it into place with the run's other outputs).
pub fn write_field(path: &Path, field: &PhiField) -> Result<()> {
    let mut w = TsvWriter::create(path, field.layout)?;
    for i in 0..field.len() {
        w.write_row(&field.row(i))?;
    }
    w.finish()
}

/// Writes named columns in spam's `%.7f` format, the id column first (spam's strain TSV), at
/// `path` (a partial name of the run's output set).
pub fn write_columns(path: &Path, id_name: &str, columns: &[(String, Vec<f64>)]) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut out = std::io::BufWriter::new(f);
    let mut head = vec![id_name.to_string()];
    head.extend(columns.iter().map(|c| c.0.clone()));
    let n = columns.first().map(|c| c.1.len()).unwrap_or(0);
    let mut text = head.join("\t");
    text.push('\n');
    out.write_all(text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
    for i in 0..n {
        let mut l = c_fixed7(i as f64);
        for (_, v) in columns {
            l.push('\t');
            super::format::push_c_fixed7(&mut l, v[i]);
        }
        l.push('\n');
        out.write_all(l.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    out.flush().with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

/// A TSV being written row by row (at a partial name of the run's output set).
pub struct TsvWriter {
    path: std::path::PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    layout: Layout,
}

impl TsvWriter {
    pub fn create(path: &Path, layout: Layout) -> Result<TsvWriter> {
        let f = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut out = std::io::BufWriter::new(f);
        writeln!(out, "{}", header(layout)).with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(TsvWriter { path: path.to_path_buf(), out, layout })
    }
    pub fn write_row(&mut self, r: &FieldRow) -> Result<()> {
        self.out
            .write_all(line(self.layout, r).as_bytes())
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// A parsed TSV: column names and numeric rows.
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

impl Table {
    pub fn col(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.columns.iter().position(|c| c == n))
    }
}

/// Parses a tab-separated numeric table with a header line.
pub fn read_table(path: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut lines = text.lines();
    let head = lines.next().ok_or_else(|| anyhow!("{}: empty file", path.display()))?;
    let columns: Vec<String> = head.trim_start_matches('#').split('\t').map(|s| s.trim().to_string()).collect();
    let mut rows = Vec::new();
    for (ln, l) in lines.enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let vals: Vec<&str> = l.split('\t').collect();
        if vals.len() != columns.len() {
            bail!("{}: line {} has {} values but the header has {} columns", path.display(), ln + 2, vals.len(), columns.len());
        }
        let row = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.trim().parse::<f64>().map_err(|_| {
                    anyhow!("{}: line {}, column '{}': '{}' is not a number", path.display(), ln + 2, columns[i], v.trim())
                })
            })
            .collect::<Result<Vec<f64>>>()?;
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{}: no data rows", path.display());
    }
    Ok(Table { columns, rows })
}

/// Reads any of spam's Φ TSVs (and ours) into a field.
pub fn read_field(path: &Path) -> Result<PhiField> {
    let t = read_table(path)?;
    table_to_field(&t, path)
}

/// Interprets a parsed table as spam's `readCorrelationTSV` does.
pub fn table_to_field(t: &Table, path: &Path) -> Result<PhiField> {
    let need = |names: &[&str]| -> Result<usize> {
        t.col(names).ok_or_else(|| anyhow!("{}: missing column '{}'", path.display(), names[0]))
    };
    let pos = [need(&["Zpos"])?, need(&["Ypos"])?, need(&["Xpos"])?];
    let disp = [need(&["Zdisp", "F14"])?, need(&["Ydisp", "F24"])?, need(&["Xdisp", "F34"])?];
    let fnames = [
        ["Fzz", "F11"],
        ["Fzy", "F12"],
        ["Fzx", "F13"],
        ["Fyz", "F21"],
        ["Fyy", "F22"],
        ["Fyx", "F23"],
        ["Fxz", "F31"],
        ["Fxy", "F32"],
        ["Fxx", "F33"],
    ];
    let mut fcols = [0usize; 9];
    for (k, n) in fnames.iter().enumerate() {
        fcols[k] = need(n)?;
    }
    let rs = need(&["returnStatus", "SubPixReturnStat"])?;
    let dpn = need(&["deltaPhiNorm", "SubPixDeltaPhiNorm"])?;
    let its = need(&["iterations", "SubPixIterations"])?;
    let cc = t.col(&["pixelSearchCC", "PSCC"]);
    let err = t.col(&["error"]);
    let ld = t.col(&["LabelDilate"]);
    let node = t.col(&["NodeNumber"]);
    let label = t.col(&["Label"]);
    let n = t.rows.len();
    let has_psc = t.col(&["pixelSearchCC"]).is_some();
    let (kind, layout) = if n == 1 && label.is_none() {
        (FieldKind::Registration, Layout::Registration)
    } else if node.is_some() {
        let layout = if has_psc { Layout::PixelSearch } else { Layout::Ldic };
        (FieldKind::Grid { dims: [0; 3], spacing: [0.0; 3] }, layout)
    } else if label.is_some() {
        let layout = if t.col(&["PSCC"]).is_some() || ld.is_some() { Layout::Ddic } else { Layout::PixelSearchLabels };
        (FieldKind::Labels, layout)
    } else {
        bail!("{}: {} rows but neither a 'NodeNumber' nor a 'Label' column", path.display(), n)
    };
    let mut field = PhiField::new(kind, layout);
    for (i, r) in t.rows.iter().enumerate() {
        let mut f = nalgebra::Matrix3::identity();
        for k in 0..9 {
            f[(k / 3, k % 3)] = r[fcols[k]];
        }
        let tvec = Vector3::new(r[disp[0]], r[disp[1]], r[disp[2]]);
        let id = match (node, label) {
            (Some(c), _) | (None, Some(c)) => r[c] as i64,
            _ => if layout == Layout::Registration { 1 } else { i as i64 },
        };
        field.push(FieldRow {
            id,
            position: Vector3::new(r[pos[0]], r[pos[1]], r[pos[2]]),
            phi: phi::from_f_t(&f, &tvec),
            // spam forces the CC of a one-row file to 0.
            cc: if layout == Layout::Registration { 0.0 } else { cc.map(|c| r[c]).unwrap_or(0.0) },
            error: err.map(|c| r[c]).unwrap_or(0.0),
            iterations: r[its],
            return_status: super::Status::read(r[rs], path, i + 1)?,
            delta_phi_norm: r[dpn],
            label_dilate: ld.map(|c| r[c]).unwrap_or(0.0),
            disp_sd: None,
        });
    }
    if let FieldKind::Grid { .. } = field.kind {
        // Like spam, rows are taken to be in Z-major grid order; dims come from the distinct
        // coordinates (extracts of a grid read too).
        field.kind = PhiField::grid_from_positions(&field.positions);
    }
    Ok(field)
}
