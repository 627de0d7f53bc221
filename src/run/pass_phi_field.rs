//! spam-passPhiField as a library call: a registration or a measured field carried onto new
//! points (a grid or label centres) by inverse-distance interpolation through a k-d tree, or
//! a registration subtracted from a field. The command line resolves where the points go and
//! the options into a [`PassJob`]; this computes the passed field.

use anyhow::{bail, Result};
use nalgebra::Vector3;
use serde::Serialize;

use crate::field::interpolate::{Neighbours, PhiInterpolator};
use crate::field::parquet::{self, FieldMeta};
use crate::field::vtk::{self, HeaderNum, VtkArray, VtkValues};
use crate::field::{tsv, FieldKind, FieldRow, Layout, PhiField, Status};
use crate::store::dtype::TypedBuf;
use crate::store::output::OutputSet;
use crate::store::tiff_write::write_tiff;
use crate::phi::{self, ApplyF, Phi};

/// Where the field goes.
#[derive(Clone, Debug)]
pub enum PassTargets {
    /// Grid nodes (Z-major) of the given dimensions and spacing.
    Grid { nodes: Vec<Vector3<f64>>, dims: [usize; 3], spacing: [usize; 3] },
    /// Label centres of mass, indexed by label (NaN for label 0 and missing labels), and the
    /// labels' mean equivalent radius (the default interpolation radius is 5 of them).
    Labels { centres: Vec<Vector3<f64>>, mean_radius: f64 },
}

impl PassTargets {
    fn points(&self) -> &[Vector3<f64>] {
        match self {
            PassTargets::Grid { nodes, .. } => nodes,
            PassTargets::Labels { centres, .. } => centres,
        }
    }

    /// spam's default neighbourhood: 2 node spacings on a grid, 5 mean label radii on labels.
    fn default_neighbours(&self) -> Neighbours {
        match self {
            PassTargets::Grid { spacing, .. } => Neighbours::Radius(2.0 * ((spacing.iter().sum::<usize>() as f64 / 3.0) as i64) as f64),
            PassTargets::Labels { mean_radius, .. } => Neighbours::Radius(5.0 * mean_radius),
        }
    }
}

/// A pass run, resolved from the command line (or built by a script).
#[derive(Clone, Debug, Serialize)]
pub struct PassJob {
    /// What is interpolated: all of Φ, its rigid part, or only t.
    pub apply_f: ApplyF,
    /// Which points of the field each target averages (None: spam's default for the targets).
    #[serde(skip)]
    pub neighbours: Option<Neighbours>,
    /// Only inside the box of the neighbours (NaN outside).
    pub check_point_surrounded: bool,
    /// Points of the field with a lower return status are not used.
    pub min_return_status: i64,
}

/// A row of a passed field: spam's constant status columns, or −7 where nothing could be
/// interpolated (so ldic and ddic skip the point instead of starting from NaN).
pub fn passed_row(id: usize, position: Vector3<f64>, p: Phi) -> FieldRow {
    let ok = phi::is_finite(&p);
    FieldRow {
        id: id as i64,
        position,
        phi: p,
        cc: 0.0,
        error: 0.0,
        iterations: 1.0,
        return_status: if ok { Status::FOUND } else { Status::NoGuess },
        delta_phi_norm: 1.0,
        label_dilate: 0.0,
        disp_sd: None,
    }
}

/// The field (or registration) `input` carried onto the targets.
pub fn pass(input: &PhiField, targets: &PassTargets, job: &PassJob) -> Result<PhiField> {
    let points = targets.points();
    let phis: Vec<Phi> = if input.kind == FieldKind::Registration {
        points.iter().map(|p| if p.iter().all(|v| v.is_finite()) { phi::registration_to_point(&input.phis[0], &input.positions[0], p, job.apply_f) } else { Phi::from_element(f64::NAN) }).collect()
    } else {
        let used: Vec<usize> = (0..input.len()).filter(|&i| input.return_status[i].at_least(job.min_return_status) && !(input.layout.is_labels() && input.ids[i] == 0)).collect();
        let pts: Vec<Vector3<f64>> = used.iter().map(|&i| input.positions[i]).collect();
        let ps: Vec<Phi> = used.iter().map(|&i| input.phis[i]).collect();
        let ip = PhiInterpolator::new(&pts, &ps);
        if ip.is_empty() {
            bail!("no point has a return status ≥ {} and a finite Φ to interpolate from", job.min_return_status);
        }
        let nb = job.neighbours.unwrap_or_else(|| targets.default_neighbours());
        if job.apply_f != ApplyF::No {
            crate::note!("note: each neighbour's Φ is moved to the target before averaging; where F ≠ I this differs from spam-passPhiField (by up to ~1.7 voxels on ordinary fields) and is closer to the truth (docs/spam-differences.md, row 15)");
        }
        ip.at_all(points, nb, job.apply_f, job.check_point_surrounded)
    };
    let (kind, layout) = match targets {
        PassTargets::Grid { dims, spacing, .. } => (FieldKind::Grid { dims: *dims, spacing: spacing.map(|v| v as f64) }, Layout::PixelSearch),
        PassTargets::Labels { .. } => (FieldKind::Labels, Layout::PixelSearchLabels),
    };
    let mut out = PhiField::new(kind, layout);
    for (i, (p, q)) in points.iter().zip(phis).enumerate() {
        if layout.is_labels() && i == 0 {
            out.push(FieldRow::background());
        } else {
            out.push(passed_row(i, *p, q));
        }
    }
    Ok(out)
}

/// The field with the part `mode` of a registration (Φ about `centre`) subtracted from every
/// point's displacement, in spam's pixel-search layout (with the CC column).
pub fn subtract_registration(input: &PhiField, reg: &Phi, centre: &Vector3<f64>, mode: ApplyF) -> Result<PhiField> {
    if input.kind == FieldKind::Registration {
        bail!("--regs subtracts a registration from a field, but this file holds a single registration");
    }
    let reduced = phi::apply_f_mode(reg, mode);
    let mut out = input.clone();
    // spam's layout (C): with the CC column; NodeNumber for a grid, Label for labels.
    out.layout = if input.layout.is_labels() { Layout::PixelSearchLabels } else { Layout::PixelSearch };
    for i in 0..out.len() {
        let t = phi::translation(&out.phis[i]) - phi::translation_at(&reduced, centre, &out.positions[i]);
        phi::set_translation(&mut out.phis[i], &t);
        out.cc[i] = 0.0;
        out.error[i] = 0.0;
    }
    Ok(out)
}

/// A discrete result (ddic or label pixel search) merged into a grid field, with the label
/// of a voxel of its label image (`label_at(z, y, x)`; None outside the image).
pub struct Discrete<'a> {
    pub field: &'a PhiField,
    /// Where the field was read from, for messages.
    pub source: &'a std::path::Path,
    pub label_at: &'a dyn Fn([i64; 3]) -> Result<Option<u64>>,
}

/// spam's `mergeRegularGridAndDiscrete` (spam-passPhiField `-pf2`): the grid field with each
/// node that falls inside a label (of the first label image, in order, where it is non-zero)
/// given that label's Φ, its translation moved from the label's centre to the node. Without
/// `prefer_label`, a node the grid correlation converged (status 2) keeps its own Φ.
/// `bin_ratio` (spam's `-pf2b`) is how many grid voxels a voxel of the label images spans.
/// As spam, the node is looked up at its position truncated to whole voxels, and the merged
/// rows carry CC and error 0.
pub fn merge_grid_and_discrete(grid: &PhiField, discrete: &[Discrete], bin_ratio: f64, prefer_label: bool) -> Result<PhiField> {
    if !matches!(grid.kind, FieldKind::Grid { .. }) {
        bail!("merging needs a grid field as --phi-file (ldic or grid pixel-search)");
    }
    // Each field's row of a label, looked up once per node (the first row, if a label repeats).
    let rows: Vec<std::collections::HashMap<i64, usize>> = discrete
        .iter()
        .map(|d| {
            let mut m = std::collections::HashMap::with_capacity(d.field.ids.len());
            for (i, &id) in d.field.ids.iter().enumerate() {
                m.entry(id).or_insert(i);
            }
            m
        })
        .collect();
    let mut out = PhiField::new(grid.kind.clone(), Layout::PixelSearch);
    for n in 0..grid.len() {
        let node = grid.positions[n].map(|v| v.trunc());
        let mut found = None;
        for (m, d) in discrete.iter().enumerate() {
            let voxel: [i64; 3] = std::array::from_fn(|k| (node[k] / bin_ratio).trunc() as i64);
            if let Some(l) = (d.label_at)(voxel)?.filter(|&l| l > 0) {
                found = Some((m, l));
                break;
            }
        }
        let mut row = grid.row(n);
        row.id = n as i64;
        row.cc = 0.0;
        row.error = 0.0;
        row.label_dilate = 0.0;
        match found {
            Some((m, label)) if prefer_label || grid.return_status[n] != Status::Converged => {
                let d = discrete[m].field;
                let Some(&i) = rows[m].get(&(label as i64)) else {
                    bail!("{}: label {label} (at grid node {n}, {:?}) has no row", discrete[m].source.display(), grid.positions[n].as_slice());
                };
                let p = d.phis[i];
                let f = phi::f_block(&p);
                let t = if phi::is_finite(&p) && f.determinant() != 0.0 {
                    let centre = d.positions[i] * bin_ratio;
                    phi::translation(&p) * bin_ratio + (f - nalgebra::Matrix3::identity()) * (node - centre)
                } else {
                    Vector3::from_element(f64::NAN)
                };
                let mut merged = p;
                phi::set_translation(&mut merged, &t);
                row.phi = merged;
                row.delta_phi_norm = d.delta_phi_norm[i];
                row.return_status = d.return_status[i];
                row.iterations = d.iterations[i];
            }
            _ => {}
        }
        out.push(row);
    }
    Ok(out)
}

/// Writes a field as Parquet and spam TSV, plus VTK/TIFF when asked (grid: displacements
/// and returnStatus cells centred on nodes; labels: glyphs), as outputs of `outs`.
pub fn write_outputs(outs: &mut OutputSet, field: &PhiField, dir: &std::path::Path, name: &str, meta: &FieldMeta, tsv_out: bool, vtk_out: bool, tiff_out: bool, spacing: Option<[HeaderNum; 3]>) -> Result<()> {
    parquet::write_field(&outs.file(&dir.join(format!("{name}.parquet")))?, field, meta)?;
    if tsv_out {
        tsv::write_field(&outs.file(&dir.join(format!("{name}.tsv")))?, field)?;
    }
    let disp: Vec<Vector3<f64>> = field.phis.iter().map(|p| phi::translation(p).map(|v| if v.is_finite() { v } else { 0.0 })).collect();
    match (&field.kind, spacing) {
        (FieldKind::Grid { dims, spacing: sp }, sp_cli) if dims.iter().product::<usize>() == field.len() => {
            if tiff_out {
                for (k, c) in ["Zdisp", "Ydisp", "Xdisp"].iter().enumerate() {
                    if k == 0 && dims[0] == 1 {
                        // A 2D grid: no Zdisp picture, as spam.
                        continue;
                    }
                    let v: Vec<f32> = field.phis.iter().map(|p| p[(k, 3)] as f32).collect();
                    write_tiff(&outs.file(&dir.join(format!("{name}-{c}.tif")))?, *dims, &TypedBuf::F32(v))?;
                }
            }
            if vtk_out {
                let hs = sp_cli.unwrap_or(sp.map(HeaderNum::Float));
                let origin = vtk::cell_centred_origin(field.positions[0], hs);
                let arrays = vec![
                    VtkArray::new("displacements", VtkValues::Vectors(disp)),
                    VtkArray::new("returnStatus", VtkValues::IntScalars(field.return_status.iter().map(|s| s.code().into()).collect())),
                ];
                let path = dir.join(format!("{name}.vtk"));
                vtk::write(&outs.file(&path)?, &vtk::structured_points(&path.to_string_lossy(), *dims, hs, origin, &arrays))?;
            }
        }
        _ => {
            if vtk_out {
                let pts: Vec<Vector3<f64>> = field.positions.iter().map(|p| p.map(|v| if v.is_finite() { v } else { 0.0 })).collect();
                let arrays = vec![
                    VtkArray::new("displacements", VtkValues::Vectors(disp.clone())),
                    VtkArray::new("mag(displacements)", VtkValues::Scalars(disp.iter().map(|d| d.norm()).collect())),
                    VtkArray::new("returnStatus", VtkValues::Scalars(field.return_status.iter().map(|s| s.value()).collect())),
                ];
                vtk::write(&outs.file(&dir.join(format!("{name}.vtk")))?, &vtk::glyphs(&pts, &arrays))?;
            }
        }
    }
    Ok(())
}
