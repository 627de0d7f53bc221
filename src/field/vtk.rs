//! Legacy ASCII VTK files laid out as spam writes them, for ParaView, and read back.
//!
//! Grids are `STRUCTURED_POINTS` with one cell per node (so `DIMENSIONS` = nodes + 1, axes
//! reversed to X Y Z); label fields are `UNSTRUCTURED_GRID` glyph files: spam's points, plus
//! one VERTEX cell per point, without which meshio and pyvista refuse the file (spam writes
//! none). Numbers are printed as Python's `str()` prints them. (The vtkio crate writes valid
//! VTK, but not spam's byte layout, which users' ParaView state files and scripts rely on.)
//!
//! [`read_field`] reads either layout back as a Φ field, so `convert-field` goes from VTK
//! too: a VTK holds displacements only, so F comes back as the identity.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nalgebra::{Matrix3, Vector3};

use super::format::py_repr;
use super::{FieldKind, FieldRow, Layout, PhiField};

/// Values of one data array.
#[derive(Clone, Debug)]
pub enum VtkValues {
    /// Float scalars (printed as Python floats: `4.0`).
    Scalars(Vec<f64>),
    /// Integer scalars (printed as Python ints: `2`).
    IntScalars(Vec<i64>),
    /// Vectors in (Z, Y, X) order; written reversed.
    Vectors(Vec<Vector3<f64>>),
    /// Tensors in (Z, Y, X) order; written reversed.
    Tensors(Vec<Matrix3<f64>>),
}

/// A named data array.
#[derive(Clone, Debug)]
pub struct VtkArray {
    pub name: String,
    pub values: VtkValues,
}

impl VtkArray {
    pub fn new(name: &str, values: VtkValues) -> VtkArray {
        VtkArray { name: name.replace(' ', "_"), values }
    }
}

fn write_arrays(s: &mut String, arrays: &[VtkArray]) {
    for a in arrays {
        match &a.values {
            VtkValues::Scalars(v) => {
                let _ = writeln!(s, "SCALARS {} float\nLOOKUP_TABLE default", a.name);
                for x in v {
                    let _ = writeln!(s, "    {}", py_repr(*x));
                }
                s.push('\n');
            }
            VtkValues::IntScalars(v) => {
                let _ = writeln!(s, "SCALARS {} float\nLOOKUP_TABLE default", a.name);
                for x in v {
                    let _ = writeln!(s, "    {x}");
                }
                s.push('\n');
            }
            VtkValues::Vectors(v) => {
                let _ = writeln!(s, "VECTORS {} float", a.name);
                for x in v {
                    let _ = writeln!(s, "    {} {} {}", py_repr(x[2]), py_repr(x[1]), py_repr(x[0]));
                }
                s.push('\n');
            }
            VtkValues::Tensors(v) => {
                let _ = writeln!(s, "TENSORS {} float", a.name);
                for m in v {
                    for i in (0..3).rev() {
                        let _ = writeln!(s, "    {} {} {}", py_repr(m[(i, 2)]), py_repr(m[(i, 1)]), py_repr(m[(i, 0)]));
                    }
                    s.push('\n');
                }
                s.push('\n');
            }
        }
    }
}

/// Formats a header number as spam does: integers from the command line print as ints.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub enum HeaderNum {
    Int(i64),
    Float(f64),
}

impl HeaderNum {
    pub fn value(self) -> f64 {
        match self {
            HeaderNum::Int(i) => i as f64,
            HeaderNum::Float(f) => f,
        }
    }
}

impl std::fmt::Display for HeaderNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderNum::Int(i) => write!(f, "{i}"),
            HeaderNum::Float(v) => f.write_str(&py_repr(*v)),
        }
    }
}

/// A grid file: `dims` nodes (Z, Y, X), cell size `spacing`, first cell corner `origin`.
pub fn structured_points(title_path: &str, dims: [usize; 3], spacing: [HeaderNum; 3], origin: [HeaderNum; 3], arrays: &[VtkArray]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "# vtk DataFile Version 2.0\nVTK file from dvc-stream: {title_path}\nASCII\n\nDATASET STRUCTURED_POINTS\nDIMENSIONS {} {} {}\nASPECT_RATIO {} {} {}\nORIGIN {} {} {}\n\nCELL_DATA {}\n\n",
        dims[2] + 1,
        dims[1] + 1,
        dims[0] + 1,
        spacing[2],
        spacing[1],
        spacing[0],
        origin[2],
        origin[1],
        origin[0],
        dims.iter().product::<usize>()
    );
    write_arrays(&mut s, arrays);
    s.push('\n');
    s
}

/// The ORIGIN of a grid file whose first value belongs to the point `first` (Z, Y, X) of its
/// table: each value is a cell, so the cells are centred on the table's points and the origin
/// (the first cell's corner) is half a cell before `first`. Every grid VTK takes its origin
/// here, so that ParaView draws each value where the TSV puts it.
pub fn cell_centred_origin(first: Vector3<f64>, spacing: [HeaderNum; 3]) -> [HeaderNum; 3] {
    std::array::from_fn(|k| HeaderNum::Float(first[k] - spacing[k].value() / 2.0))
}

/// A glyph file of points (Z, Y, X) with point data.
pub fn glyphs(points: &[Vector3<f64>], arrays: &[VtkArray]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "# vtk DataFile Version 2.0\nUnstructured grid legacy vtk file with point scalar data\nASCII\n\nDATASET UNSTRUCTURED_GRID\nPOINTS {} float\n",
        points.len()
    );
    for p in points {
        let _ = writeln!(s, "    {} {} {}", py_repr(p[2]), py_repr(p[1]), py_repr(p[0]));
    }
    // One VERTEX cell (type 1) per point: readers that build cells from the file need them.
    let _ = write!(s, "\nCELLS {} {}\n", points.len(), 2 * points.len());
    for i in 0..points.len() {
        let _ = writeln!(s, "    1 {i}");
    }
    let _ = write!(s, "\nCELL_TYPES {}\n", points.len());
    for _ in 0..points.len() {
        s.push_str("    1\n");
    }
    let _ = write!(s, "\nPOINT_DATA {}\n\n", points.len());
    write_arrays(&mut s, arrays);
    s.push('\n');
    s
}

/// The VTK of a field: a grid as cells centred on nodes, labels as glyphs.
pub fn field_vtk(f: &PhiField, title: &str) -> String {
    let disp: Vec<_> = f
        .phis
        .iter()
        .map(|p| crate::phi::translation(p).map(|v| if v.is_finite() { v } else { 0.0 }))
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
            let spacing = spacing.map(HeaderNum::Float);
            structured_points(title, *dims, spacing, cell_centred_origin(first, spacing), &arrays)
        }
        _ => {
            let mag: Vec<f64> = disp.iter().map(|d| d.norm()).collect();
            let pts: Vec<_> = f.positions.iter().map(|p| p.map(|v| if v.is_finite() { v } else { 0.0 })).collect();
            let arrays = vec![
                VtkArray::new("displacements", VtkValues::Vectors(disp)),
                VtkArray::new("mag(displacements)", VtkValues::Scalars(mag)),
                VtkArray::new("returnStatus", VtkValues::IntScalars(f.return_status.iter().map(|s| s.code().into()).collect())),
            ];
            glyphs(&pts, &arrays)
        }
    }
}

/// The data arrays of a legacy VTK file, as read: name → (components per tuple, values).
struct VtkData {
    points: Vec<Vector3<f64>>,
    arrays: Vec<(String, usize, Vec<f64>)>,
}

/// Reads a legacy ASCII VTK field (spam's or ours: a `STRUCTURED_POINTS` grid with one cell
/// or one point per node, or points of an `UNSTRUCTURED_GRID` / `POLYDATA`) as a Φ field.
/// Positions come from the file's geometry; `displacements` gives the translation; F is the
/// identity (a VTK holds no F); `error`, `iterations`, `returnStatus`, `deltaPhiNorm` and
/// `pixelSearchCC` are read when present.
pub fn read_field(path: &Path) -> Result<PhiField> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let data = parse(&text).map_err(|e| anyhow!("{}: not a legacy VTK field: {e}", path.display()))?;
    let n = data.points.len();
    let get = |name: &str, comps: usize| -> Result<Option<&Vec<f64>>> {
        match data.arrays.iter().find(|a| a.0 == name) {
            Some((_, c, v)) if *c == comps && v.len() == n * comps => Ok(Some(v)),
            Some((_, c, v)) => bail!("{}: array {name} has {} values of {c} components for {n} points", path.display(), v.len()),
            None => Ok(None),
        }
    };
    let Some(disp) = get("displacements", 3)? else {
        bail!("{}: no 'displacements' vectors (is this a Φ field?)", path.display())
    };
    let grid = text.contains("STRUCTURED_POINTS");
    let layout = if !grid {
        Layout::Ddic
    } else if get("iterations", 1)?.is_some() {
        Layout::Ldic
    } else {
        Layout::PixelSearch
    };
    let kind = if grid { PhiField::grid_from_positions(&data.points) } else { FieldKind::Labels };
    let mut field = PhiField::new(kind, layout);
    let column = |name: &str| get(name, 1).map(|o| o.cloned());
    let (error, iterations, status, delta, cc) =
        (column("error")?, column("iterations")?, column("returnStatus")?, column("deltaPhiNorm")?, column("pixelSearchCC")?);
    let at = |c: &Option<Vec<f64>>, i: usize| c.as_ref().map_or(0.0, |v| v[i]);
    for i in 0..n {
        // VTK vectors are (X, Y, Z).
        let t = Vector3::new(disp[3 * i + 2], disp[3 * i + 1], disp[3 * i]);
        let mut row = FieldRow::truth(if grid { i as i64 + 1 } else { i as i64 }, data.points[i], crate::phi::from_f_t(&Matrix3::identity(), &t));
        row.error = at(&error, i);
        row.iterations = at(&iterations, i);
        row.return_status = match &status {
            Some(v) => super::Status::read(v[i], path, i + 1)?,
            None => super::Status::Converged,
        };
        row.delta_phi_norm = at(&delta, i);
        row.cc = at(&cc, i);
        field.push(row);
    }
    Ok(field)
}

/// The geometry and arrays of a legacy ASCII VTK text. Counts declared by the file are
/// checked against the numbers it holds before anything is stored.
fn parse(text: &str) -> std::result::Result<VtkData, String> {
    let mut lines = text.lines();
    if !lines.next().unwrap_or("").starts_with("# vtk DataFile") {
        return Err("first line is not '# vtk DataFile Version ...'".into());
    }
    lines.next();
    match lines.next().map(str::trim) {
        Some("ASCII") => {}
        Some(other) => return Err(format!("'{other}' files are not read (ASCII only)")),
        None => return Err("truncated header".into()),
    }
    let mut tokens = lines.flat_map(str::split_whitespace).peekable();
    let total_tokens = text.split_whitespace().count();
    let number = |t: Option<&str>, what: &str| -> std::result::Result<f64, String> {
        let t = t.ok_or_else(|| format!("file ends in {what}"))?;
        t.parse::<f64>().map_err(|_| format!("'{t}' is not a number ({what})"))
    };
    let count = |t: Option<&str>, what: &str| -> std::result::Result<usize, String> {
        let t = t.ok_or_else(|| format!("file ends in {what}"))?;
        let c: usize = t.parse().map_err(|_| format!("'{t}' is not a count ({what})"))?;
        if c > total_tokens {
            return Err(format!("{what} claims {c} values, more than the file holds"));
        }
        Ok(c)
    };
    let mut points: Vec<Vector3<f64>> = Vec::new();
    let (mut dims, mut spacing, mut origin) = ([0usize; 3], [1.0f64; 3], [0.0f64; 3]);
    let mut structured = false;
    let mut arrays = Vec::new();
    let mut data_count: Option<(bool, usize)> = None; // (cell data, count)
    while let Some(key) = tokens.next() {
        match key {
            "DATASET" => structured = tokens.next() == Some("STRUCTURED_POINTS"),
            "DIMENSIONS" => {
                for d in dims.iter_mut() {
                    *d = count(tokens.next(), "DIMENSIONS")?;
                }
            }
            "ASPECT_RATIO" | "SPACING" => {
                for s in spacing.iter_mut() {
                    *s = number(tokens.next(), key)?;
                }
            }
            "ORIGIN" => {
                for o in origin.iter_mut() {
                    *o = number(tokens.next(), "ORIGIN")?;
                }
            }
            "POINTS" => {
                let n = count(tokens.next(), "POINTS")?;
                tokens.next(); // type
                points.reserve(n);
                for _ in 0..n {
                    let x = number(tokens.next(), "POINTS")?;
                    let y = number(tokens.next(), "POINTS")?;
                    let z = number(tokens.next(), "POINTS")?;
                    points.push(Vector3::new(z, y, x));
                }
            }
            "CELLS" | "VERTICES" => {
                count(tokens.next(), key)?;
                let size = count(tokens.next(), key)?;
                for _ in 0..size {
                    tokens.next();
                }
            }
            "CELL_TYPES" => {
                let n = count(tokens.next(), key)?;
                for _ in 0..n {
                    tokens.next();
                }
            }
            "CELL_DATA" | "POINT_DATA" => data_count = Some((key == "CELL_DATA", count(tokens.next(), key)?)),
            "SCALARS" | "VECTORS" | "NORMALS" | "TENSORS" => {
                let (_, n) = data_count.ok_or_else(|| format!("{key} before POINT_DATA or CELL_DATA"))?;
                let name = tokens.next().ok_or("file ends in an array name")?.to_string();
                tokens.next(); // type
                let comps = match key {
                    "SCALARS" => {
                        let c = if tokens.peek() != Some(&"LOOKUP_TABLE") { count(tokens.next(), "SCALARS")? } else { 1 };
                        if tokens.next() != Some("LOOKUP_TABLE") {
                            return Err(format!("SCALARS {name}: no LOOKUP_TABLE"));
                        }
                        tokens.next();
                        c
                    }
                    "TENSORS" => 9,
                    _ => 3,
                };
                let len = n.checked_mul(comps).filter(|&l| l <= total_tokens).ok_or_else(|| format!("{name}: more values claimed than the file holds"))?;
                let mut v = Vec::with_capacity(len);
                for _ in 0..len {
                    v.push(number(tokens.next(), &name)?);
                }
                arrays.push((name, comps, v));
            }
            other => return Err(format!("unexpected '{other}'")),
        }
    }
    if structured {
        // Cell data: one node per cell, at the cell's centre; point data: one per point.
        let cells = matches!(data_count, Some((true, _)));
        let nodes = if cells { dims.map(|d| d.saturating_sub(1).max(1)) } else { dims };
        let offset = if cells { 0.5 } else { 0.0 };
        let total = nodes.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&t| t <= total_tokens).ok_or("DIMENSIONS larger than the file")?;
        points.reserve(total);
        // DIMENSIONS are X Y Z; VTK orders X fastest, which is spam's Z-major node order.
        for z in 0..nodes[2] {
            for y in 0..nodes[1] {
                for x in 0..nodes[0] {
                    let c = |i: usize, a: usize| origin[a] + (i as f64 + offset) * spacing[a];
                    points.push(Vector3::new(c(z, 2), c(y, 1), c(x, 0)));
                }
            }
        }
    }
    if let Some((_, n)) = data_count {
        if n != points.len() {
            return Err(format!("{n} data tuples for {} points", points.len()));
        }
    }
    Ok(VtkData { points, arrays })
}

/// Writes a VTK text at `path` (a partial name of the run's output set).
pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))
}
