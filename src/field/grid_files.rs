//! spam's VTK and TIFF files of a correlation's table, written in one place for every tool
//! that writes them (ldic, pixel-search, pixel-search-propagate, ddic): one writer per table
//! layout, each knowing its arrays, its file names and its NaN policy.
//!
//! Why here and not in each command: the layouts (spam-compat.md §2.4) are spam's, not a
//! tool's, and two copies had drifted (two VTK origins). The rules, once:
//! - **Grids** (`STRUCTURED_POINTS`, `CELL_DATA`, one cell per node): the cell size is the
//!   node spacing and ORIGIN the first node's position as the table gives it (Zpos, Ypos,
//!   Xpos) less half a cell, so every cell is centred where the table puts its node, as in
//!   pass-phi-field's and convert-field's grids (spam writes first node − hws for ldic and
//!   pixelSearch: docs/spam-differences.md row 48). Non-finite values are written as 0 (ParaView draws no NaN cell), as spam does.
//! - **Glyphs** (`UNSTRUCTURED_GRID`, one point per label): a missing label's NaN centre is
//!   written at 0. pixel-search keeps NaN displacements and CC (spam does); ddic writes them
//!   as 0 (spam does).
//! - TIFFs: one float32 image per column on the node grid; an ldic grid of one layer (2D) has
//!   no Zdisp image (spam writes none).
//!
//! Only the columns a file needs are kept while rows stream past (7 numbers a node for ldic),
//! never the whole table.

use std::path::{Path, PathBuf};

use anyhow::Result;
use nalgebra::Vector3;

use super::vtk::{self, HeaderNum, VtkArray, VtkValues};
use super::FieldRow;
use crate::store::dtype::TypedBuf;
use crate::store::output::OutputSet;
use crate::store::tiff_write::write_tiff;

/// Which of spam's file layouts a table is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilesLayout {
    /// spam-ldic's grid: displacements, error, iterations, returnStatus, deltaPhiNorm.
    LdicGrid,
    /// spam-pixelSearch's (and Propagate's) grid: displacements, pixelSearchCC.
    PixelSearchGrid,
    /// spam-pixelSearch's label glyphs (also propagate's labels and guiding points).
    PixelSearchGlyphs,
    /// spam-ddic's label glyphs.
    DdicGlyphs,
}

/// One column of a row, as the files write it.
#[derive(Clone, Copy, Debug)]
enum Column {
    Disp(usize),
    Cc,
    Error,
    Iterations,
    Status,
    DeltaPhiNorm,
}

impl Column {
    fn of(self, r: &FieldRow) -> f64 {
        match self {
            Column::Disp(k) => r.phi[(k, 3)],
            Column::Cc => r.cc,
            Column::Error => r.error,
            Column::Iterations => r.iterations,
            Column::Status => r.return_status.value(),
            Column::DeltaPhiNorm => r.delta_phi_norm,
        }
    }
}

impl FilesLayout {
    /// The columns kept, with their TIFF names (grids).
    fn columns(self) -> &'static [(Column, &'static str)] {
        use Column::*;
        match self {
            FilesLayout::LdicGrid => &[
                (Disp(0), "Zdisp"),
                (Disp(1), "Ydisp"),
                (Disp(2), "Xdisp"),
                (Error, "error"),
                (Iterations, "iterations"),
                (Status, "returnStatus"),
                (DeltaPhiNorm, "deltaPhiNorm"),
            ],
            FilesLayout::PixelSearchGrid => &[(Disp(0), "Zdisp"), (Disp(1), "Ydisp"), (Disp(2), "Xdisp"), (Cc, "CC"), (Status, "returnStatus")],
            FilesLayout::PixelSearchGlyphs => &[(Disp(0), ""), (Disp(1), ""), (Disp(2), ""), (Cc, "")],
            FilesLayout::DdicGlyphs => &[(Disp(0), ""), (Disp(1), ""), (Disp(2), ""), (Status, "")],
        }
    }

    fn is_grid(self) -> bool {
        matches!(self, FilesLayout::LdicGrid | FilesLayout::PixelSearchGrid)
    }
}

/// A node grid: nodes per axis and the node spacing as the header prints it.
#[derive(Clone, Copy, Debug)]
pub struct GridShape {
    pub dims: [usize; 3],
    pub spacing: [HeaderNum; 3],
}

/// What a run asked for beside its table.
#[derive(Clone, Debug)]
pub struct FilesRequest {
    pub layout: FilesLayout,
    /// Folder and stem of the files (`<stem>.vtk`, `<stem>-<column>.tif`).
    pub dir: PathBuf,
    pub stem: String,
    /// The grid, for grid layouts (None: glyphs).
    pub grid: Option<GridShape>,
    pub vtk: bool,
    /// TIFFs of the columns (grids only; ignored for glyphs).
    pub tiff: bool,
}

/// The VTK and TIFF files of one table: reserved when created, fed every row, written at the end.
pub struct GridFiles {
    request: FilesRequest,
    vtk: Option<PathBuf>,
    tiffs: Vec<(usize, PathBuf)>,
    columns: Vec<Vec<f64>>,
    /// The first row's position (a grid's origin), or every position (glyphs).
    positions: Vec<Vector3<f64>>,
}

impl GridFiles {
    /// Reserves the files `request` asks for as outputs of `outs` (nothing when it asks none).
    pub fn reserve(outs: &mut OutputSet, request: FilesRequest) -> Result<GridFiles> {
        let mut request = request;
        if request.grid.is_none() {
            request.tiff = false;
        }
        let layout = request.layout;
        let flat = request.grid.is_some_and(|g| g.dims[0] == 1);
        let tiffs: Vec<(usize, PathBuf)> = if request.tiff {
            layout
                .columns()
                .iter()
                .enumerate()
                // A one-layer ldic grid has no Zdisp image, as spam-ldic writes none.
                .filter(|(k, _)| !(layout == FilesLayout::LdicGrid && *k == 0 && flat))
                .map(|(k, (_, name))| (k, request.dir.join(format!("{}-{name}.tif", request.stem))))
                .collect()
        } else {
            vec![]
        };
        for (_, p) in &tiffs {
            outs.file(p)?;
        }
        let vtk = request.vtk.then(|| request.dir.join(format!("{}.vtk", request.stem)));
        if let Some(p) = &vtk {
            outs.file(p)?;
        }
        let wanted = vtk.is_some() || !tiffs.is_empty();
        let columns = if wanted { layout.columns().iter().map(|_| Vec::new()).collect() } else { vec![] };
        Ok(GridFiles { request, vtk, tiffs, columns, positions: vec![] })
    }

    /// Whether any file is written (rows need not be fed otherwise).
    pub fn wanted(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Keeps what the files need of the next row (rows come in table order).
    pub fn push(&mut self, row: &FieldRow) {
        if !self.wanted() {
            return;
        }
        for (col, (c, _)) in self.columns.iter_mut().zip(self.request.layout.columns()) {
            col.push(c.of(row));
        }
        if !self.request.layout.is_grid() || self.positions.is_empty() {
            self.positions.push(row.position);
        }
    }

    /// Writes the files (under their partial names; `outs` renames them at its commit).
    pub fn write(self, outs: &mut OutputSet) -> Result<()> {
        if !self.wanted() {
            return Ok(());
        }
        for (k, path) in &self.tiffs {
            let g = self.request.grid.expect("TIFFs are written for grids only");
            let vals: Vec<f32> = self.columns[*k].iter().map(|&v| v as f32).collect();
            write_tiff(&outs.file(path)?, g.dims, &TypedBuf::F32(vals))?;
        }
        let Some(path) = &self.vtk else { return Ok(()) };
        let text = self.vtk_text(path);
        vtk::write(&outs.file(path)?, &text)
    }

    fn vtk_text(&self, path: &Path) -> String {
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        let c = &self.columns;
        let disp = |zero_nan: bool| -> Vec<Vector3<f64>> {
            (0..c[0].len()).map(|i| Vector3::new(c[0][i], c[1][i], c[2][i]).map(|v| if zero_nan { finite(v) } else { v })).collect()
        };
        let scalars = |k: usize, zero_nan: bool| VtkValues::Scalars(c[k].iter().map(|&v| if zero_nan { finite(v) } else { v }).collect());
        let arrays = match self.request.layout {
            FilesLayout::LdicGrid => vec![
                VtkArray::new("displacements", VtkValues::Vectors(disp(true))),
                VtkArray::new("error", scalars(3, true)),
                VtkArray::new("iterations", scalars(4, true)),
                VtkArray::new("returnStatus", scalars(5, true)),
                VtkArray::new("deltaPhiNorm", scalars(6, true)),
            ],
            FilesLayout::PixelSearchGrid => vec![VtkArray::new("displacements", VtkValues::Vectors(disp(true))), VtkArray::new("pixelSearchCC", scalars(3, true))],
            FilesLayout::PixelSearchGlyphs => {
                let d = disp(false);
                let mag = d.iter().map(|v| v.norm()).collect();
                vec![VtkArray::new("displacements", VtkValues::Vectors(d)), VtkArray::new("mag(displacements)", VtkValues::Scalars(mag)), VtkArray::new("pixelSearchCC", scalars(3, false))]
            }
            FilesLayout::DdicGlyphs => {
                let d = disp(true);
                let mag = d.iter().map(|v| v.norm()).collect();
                vec![
                    VtkArray::new("displacements", VtkValues::Vectors(d)),
                    VtkArray::new("mag(displacements)", VtkValues::Scalars(mag)),
                    VtkArray::new("returnStatus", VtkValues::IntScalars(c[3].iter().map(|&s| s as i64).collect())),
                ]
            }
        };
        match self.request.grid.filter(|_| self.request.layout.is_grid()) {
            Some(g) => {
                // Each cell centred where the table says its node is.
                let first = self.positions.first().copied().unwrap_or_else(Vector3::zeros);
                let origin = vtk::cell_centred_origin(first, g.spacing);
                vtk::structured_points(&path.to_string_lossy(), g.dims, g.spacing, origin, &arrays)
            }
            None => {
                let points: Vec<Vector3<f64>> = self.positions.iter().map(|p| p.map(finite)).collect();
                vtk::glyphs(&points, &arrays)
            }
        }
    }
}
