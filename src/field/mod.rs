//! Φ fields: one row per grid node, label or registration, and the files they live in.
//!
//! A [`PhiField`] is the in-memory form (positions, Φ, and the status columns every spam
//! layout carries). [`Layout`] names spam's TSV column layouts (spam-compat.md §2.2);
//! [`tsv`] reads and writes them byte-compatibly, [`parquet`] holds the typed Arrow table
//! (written in row groups as results arrive), [`vtk`] the legacy VTK files spam writes.

pub mod filter;
pub mod format;
pub mod grid_files;
pub mod interpolate;
pub mod neighbours;
pub mod parquet;
pub mod sink;
pub mod status;
pub mod tsv;
pub mod vtk;

use std::path::Path;

use anyhow::{bail, Result};
use nalgebra::Vector3;

use crate::phi::{self, Phi};
pub use status::Status;

/// spam's TSV column layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// (A) spam-reg: one row, NodeNumber = 1.
    Registration,
    /// (B) spam-ldic grid.
    Ldic,
    /// (C) pixel-search-style grid (pixelSearch, propagate, passPhiField, filterPhiField).
    PixelSearch,
    /// (D) as (C) with a `Label` first column.
    PixelSearchLabels,
    /// (E) spam-ddic.
    Ddic,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Registration => "registration",
            Layout::Ldic => "ldic",
            Layout::PixelSearch => "pixel-search",
            Layout::PixelSearchLabels => "pixel-search-labels",
            Layout::Ddic => "ddic",
        }
    }
    pub fn parse(s: &str) -> Option<Layout> {
        Some(match s {
            "registration" => Layout::Registration,
            "ldic" => Layout::Ldic,
            "pixel-search" => Layout::PixelSearch,
            "pixel-search-labels" => Layout::PixelSearchLabels,
            "ddic" => Layout::Ddic,
            _ => return None,
        })
    }
    /// Whether rows are labels (first column `Label`).
    pub fn is_labels(self) -> bool {
        matches!(self, Layout::PixelSearchLabels | Layout::Ddic)
    }
}

/// How the rows of a field are arranged.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldKind {
    /// A single registration.
    Registration,
    /// A regular grid, Z-major: nodes per axis and spacing.
    Grid { dims: [usize; 3], spacing: [f64; 3] },
    /// One row per label, row k = label k (row 0 = background).
    Labels,
}

/// A Φ field with spam's per-row status columns.
#[derive(Clone, Debug)]
pub struct PhiField {
    pub kind: FieldKind,
    pub layout: Layout,
    /// NodeNumber or Label of each row.
    pub ids: Vec<i64>,
    pub positions: Vec<Vector3<f64>>,
    pub phis: Vec<Phi>,
    pub cc: Vec<f64>,
    pub error: Vec<f64>,
    pub iterations: Vec<f64>,
    pub return_status: Vec<Status>,
    pub delta_phi_norm: Vec<f64>,
    pub label_dilate: Vec<f64>,
    /// Per-row predicted displacement standard deviations (NaN where none).
    pub disp_sd: Vec<[f64; 3]>,
}

/// One row of a field, for streaming writers.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldRow {
    pub id: i64,
    pub position: Vector3<f64>,
    pub phi: Phi,
    pub cc: f64,
    pub error: f64,
    pub iterations: f64,
    pub return_status: Status,
    pub delta_phi_norm: f64,
    pub label_dilate: f64,
    /// Predicted standard deviation of the displacement (Z, Y, X) where the tool gives one
    /// (ldic: the Parquet columns `Zdisp_sd`, `Ydisp_sd`, `Xdisp_sd`; NaN there when None).
    pub disp_sd: Option<[f64; 3]>,
}

/// An uncertainty with any finite component, or none.
pub fn some_sd(sd: [f64; 3]) -> Option<[f64; 3]> {
    sd.iter().any(|v| v.is_finite()).then_some(sd)
}

impl FieldRow {
    /// Label 0 (the background) row of a labels table: Φ = I, everything else 0 except
    /// ‖δΦ‖ and iterations 1, as spam writes it.
    pub fn background() -> FieldRow {
        FieldRow {
            id: 0,
            position: Vector3::zeros(),
            phi: crate::phi::Phi::identity(),
            cc: 0.0,
            error: 0.0,
            iterations: 1.0,
            return_status: Status::NotRun,
            delta_phi_norm: 1.0,
            label_dilate: 0.0,
            disp_sd: None,
        }
    }

    /// A known Φ (a synthetic truth or a guess): converged (status 2), no error, no iterations.
    pub fn truth(id: i64, position: Vector3<f64>, phi: Phi) -> FieldRow {
        FieldRow { id, position, phi, cc: 0.0, error: 0.0, iterations: 0.0, return_status: Status::Converged, delta_phi_norm: 0.0, label_dilate: 0.0, disp_sd: None }
    }

    /// The outcome of a Gauss–Newton registration (reg, an ldic node, a ddic label).
    pub fn registered(id: i64, position: Vector3<f64>, phi: Phi, error: f64, iterations: usize, return_status: Status, delta_phi_norm: f64) -> FieldRow {
        FieldRow { id, position, phi, cc: 0.0, error, iterations: iterations as f64, return_status, delta_phi_norm, label_dilate: 0.0, disp_sd: None }
    }
}

impl PhiField {
    /// Reads a single registration Φ (a one-row file, spam's `-pf` of reg, ldic, ddic),
    /// scaled by the bin ratio (`-pfb`).
    pub fn read_registration(path: &std::path::Path, bin_ratio: f64) -> anyhow::Result<PhiField> {
        let mut f = PhiField::read(path)?;
        if f.len() != 1 {
            anyhow::bail!("{}: holds a field of {} points; a single registration (one row) is needed here", path.display(), f.len());
        }
        if !crate::phi::is_finite(&f.phis[0]) {
            anyhow::bail!("{}: the Φ in this file is not finite (NaN or inf)", path.display());
        }
        if !(bin_ratio > 0.0) {
            anyhow::bail!("-pfb must be positive");
        }
        f.rescale(bin_ratio);
        Ok(f)
    }

    pub fn new(kind: FieldKind, layout: Layout) -> PhiField {
        PhiField {
            kind,
            layout,
            ids: vec![],
            positions: vec![],
            phis: vec![],
            cc: vec![],
            error: vec![],
            iterations: vec![],
            return_status: vec![],
            delta_phi_norm: vec![],
            label_dilate: vec![],
            disp_sd: vec![],
        }
    }

    pub fn len(&self) -> usize {
        self.positions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    pub fn push(&mut self, r: FieldRow) {
        self.ids.push(r.id);
        self.positions.push(r.position);
        self.phis.push(r.phi);
        self.cc.push(r.cc);
        self.error.push(r.error);
        self.iterations.push(r.iterations);
        self.return_status.push(r.return_status);
        self.delta_phi_norm.push(r.delta_phi_norm);
        self.label_dilate.push(r.label_dilate);
        self.disp_sd.push(r.disp_sd.unwrap_or([f64::NAN; 3]));
    }

    pub fn row(&self, i: usize) -> FieldRow {
        FieldRow {
            id: self.ids[i],
            position: self.positions[i],
            phi: self.phis[i],
            cc: self.cc[i],
            error: self.error[i],
            iterations: self.iterations[i],
            return_status: self.return_status[i],
            delta_phi_norm: self.delta_phi_norm[i],
            label_dilate: self.label_dilate[i],
            disp_sd: some_sd(self.disp_sd[i]),
        }
    }

    /// Multiplies positions and translations by a bin ratio (spam's `-pfb`).
    pub fn rescale(&mut self, ratio: f64) {
        if ratio == 1.0 {
            return;
        }
        for i in 0..self.len() {
            self.positions[i] *= ratio;
            self.phis[i] = phi::rescale(&self.phis[i], ratio);
        }
        if let FieldKind::Grid { spacing, .. } = &mut self.kind {
            for s in spacing.iter_mut() {
                *s *= ratio;
            }
        }
    }

    /// Reads a `.tsv`, `.parquet` or legacy `.vtk` field, deciding by extension (then by
    /// content). A VTK field holds displacements only: its F is the identity.
    pub fn read(path: &Path) -> Result<PhiField> {
        if !path.exists() {
            bail!("{}: no such file", path.display());
        }
        let field = if format::is_parquet(path) {
            parquet::read_field(path)?
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("vtk")) {
            vtk::read_field(path)?
        } else {
            tsv::read_field(path)?
        };
        field.check_positions(path)?;
        Ok(field)
    }

    /// Refuses positions no volume can have: NaN or infinite ones in a registration or a
    /// grid (only a label field marks missing labels with NaN), and any beyond ±2^48.
    pub fn check_positions(&self, path: &Path) -> Result<()> {
        for (i, p) in self.positions.iter().enumerate() {
            let finite = p.iter().all(|v| v.is_finite());
            if (!finite && self.kind != FieldKind::Labels) || p.iter().any(|v| v.abs() > MAX_COORDINATE) {
                bail!(
                    "{}: row {} ({} {}): position ({}, {}, {}) is not a voxel position",
                    path.display(),
                    i + 1,
                    if self.layout.is_labels() { "label" } else { "node" },
                    self.ids[i],
                    p[0],
                    p[1],
                    p[2]
                );
            }
        }
        Ok(())
    }

    /// Checks that a grid field is a whole regular grid in Z-major order (the order spam
    /// and every grid command write) with every node inside an image of `shape`: what a
    /// grid command needs before it takes the field's rows as its nodes.
    pub fn check_whole_grid(&self, path: &Path, shape: [usize; 3]) -> Result<()> {
        let FieldKind::Grid { dims, .. } = self.kind else { return Ok(()) };
        if self.is_empty() {
            bail!("{}: holds no rows", path.display());
        }
        let n: usize = dims.iter().product();
        if n != self.len() {
            bail!(
                "{}: {} rows do not make a whole grid: the positions span {}x{}x{} = {n} nodes (a row is missing, repeated or moved)",
                path.display(),
                self.len(),
                dims[0],
                dims[1],
                dims[2]
            );
        }
        let axes: Vec<Vec<f64>> = (0..3)
            .map(|a| {
                let mut v: Vec<f64> = self.positions.iter().map(|p| p[a]).collect();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v
            })
            .collect();
        for (i, p) in self.positions.iter().enumerate() {
            let want = [axes[0][i / (dims[1] * dims[2])], axes[1][(i / dims[2]) % dims[1]], axes[2][i % dims[2]]];
            if (0..3).any(|a| p[a] != want[a]) {
                bail!(
                    "{}: row {}: node at ({}, {}, {}) where a Z-major grid has ({}, {}, {}): rows are not a regular grid in Z, Y, X order",
                    path.display(),
                    i + 1,
                    p[0],
                    p[1],
                    p[2],
                    want[0],
                    want[1],
                    want[2]
                );
            }
            if (0..3).any(|a| p[a] < 0.0 || p[a] > shape[a].saturating_sub(1) as f64) {
                bail!(
                    "{}: row {}: node at ({}, {}, {}) lies outside the {}x{}x{} image",
                    path.display(),
                    i + 1,
                    p[0],
                    p[1],
                    p[2],
                    shape[0],
                    shape[1],
                    shape[2]
                );
            }
        }
        Ok(())
    }

    /// Rebuilds grid metadata (dims, spacing) from positions, as spam does when reading.
    pub fn grid_from_positions(positions: &[Vector3<f64>]) -> FieldKind {
        let mut dims = [0usize; 3];
        let mut spacing = [0f64; 3];
        for a in 0..3 {
            let mut v: Vec<f64> = positions.iter().map(|p| p[a]).collect();
            // A total order: NaN positions (refused later, with the row) must not break the sort.
            v.sort_by(f64::total_cmp);
            v.dedup();
            dims[a] = v.len();
            // spam: difference of the two smallest distinct values; a single layer's spacing
            // is its coordinate itself (a quirk kept for compatibility of derived outputs).
            spacing[a] = if v.len() >= 2 { v[1] - v[0] } else { v.first().copied().unwrap_or(0.0) };
        }
        FieldKind::Grid { dims, spacing }
    }
}

/// The largest coordinate a position may have (volumes hold at most 2^48 voxels).
pub const MAX_COORDINATE: f64 = (1u64 << 48) as f64;

/// The number of nodes [`make_grid`] makes, refused when the grid could not be held in
/// memory (a spacing of 1 on a 100000³ image is 10^15 nodes).
pub fn check_grid_size(shape: [usize; 3], ns: [usize; 3]) -> Result<u64> {
    let per_axis: [u64; 3] = std::array::from_fn(|a| {
        if a == 0 && shape[0] == 1 {
            1
        } else {
            shape[a].saturating_sub(1).checked_div(ns[a]).unwrap_or(0) as u64
        }
    });
    let nodes = per_axis.iter().try_fold(1u64, |n, &k| n.checked_mul(k));
    // A node costs its position, its Φ and its status columns, several times over.
    crate::store::volume::check_memory(
        &format!("a grid of {}x{}x{} nodes (node spacing {:?} on a {:?} image)", per_axis[0], per_axis[1], per_axis[2], ns, shape),
        nodes.map(|n| n as u128 * 256),
    )?;
    Ok(nodes.unwrap_or(0))
}

/// spam's `makeGrid`: node coordinates ns, 2·ns, … strictly below N on each axis (z = 0
/// only for a 2D image), Z-major.
pub fn make_grid(shape: [usize; 3], ns: [usize; 3]) -> (Vec<Vector3<f64>>, [usize; 3]) {
    let axis = |a: usize| -> Vec<f64> {
        if a == 0 && shape[0] == 1 {
            return vec![0.0];
        }
        let mut v = Vec::new();
        let mut c = ns[a];
        while ns[a] > 0 && c < shape[a] {
            v.push(c as f64);
            c += ns[a];
        }
        v
    };
    let (zs, ys, xs) = (axis(0), axis(1), axis(2));
    let mut pts = Vec::with_capacity(zs.len() * ys.len() * xs.len());
    for &z in &zs {
        for &y in &ys {
            for &x in &xs {
                pts.push(Vector3::new(z, y, x));
            }
        }
    }
    (pts, [zs.len(), ys.len(), xs.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_grid_as_spam() {
        let (p, d) = make_grid([60, 60, 60], [15, 15, 15]);
        assert_eq!(d, [3, 3, 3]);
        assert_eq!(p[0], Vector3::new(15.0, 15.0, 15.0));
        assert_eq!(p[1], Vector3::new(15.0, 15.0, 30.0));
        assert_eq!(p[26], Vector3::new(45.0, 45.0, 45.0));
        let (_, d) = make_grid([1, 50, 40], [10, 10, 10]);
        assert_eq!(d, [1, 4, 3]);
    }
}
