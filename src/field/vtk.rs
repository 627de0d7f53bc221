//! Legacy ASCII VTK files laid out exactly as spam writes them, for ParaView.
//!
//! Grids are `STRUCTURED_POINTS` with one cell per node (so `DIMENSIONS` = nodes + 1, axes
//! reversed to X Y Z); label fields are `UNSTRUCTURED_GRID` glyph files (points only).
//! Numbers are printed as Python's `str()` prints them. (The vtkio crate writes valid VTK,
//! but not spam's byte layout, which users' ParaView state files and scripts rely on.)

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use nalgebra::{Matrix3, Vector3};

use super::format::py_repr;

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
#[derive(Clone, Copy, Debug)]
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
        "# vtk DataFile Version 2.0\nVTK file from spam: {title_path}\nASCII\n\nDATASET STRUCTURED_POINTS\nDIMENSIONS {} {} {}\nASPECT_RATIO {} {} {}\nORIGIN {} {} {}\n\nCELL_DATA {}\n\n",
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
    let _ = write!(s, "\nPOINT_DATA {}\n\n", points.len());
    write_arrays(&mut s, arrays);
    s.push('\n');
    s
}

/// Writes a VTK text at `path` (a partial name of the run's output set).
pub fn write(path: &Path, text: &str) -> Result<()> {
    use anyhow::Context;
    std::fs::write(path, text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))
}
