//! `dvc-stream pass-phi-field -pf FIELD`: spam-passPhiField — a registration or a field
//! carried onto a new grid or onto label centres (inverse-distance interpolation through a
//! k-d tree), or a registration subtracted from a field (`-regs`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use nalgebra::Vector3;

use super::grid_plan::three;
use super::output_names::{dir_beside, read_registration, stem};
use super::pixel_search::background_row;
use super::ReadOpts;
use crate::field::interpolate::{Neighbours, PhiInterpolator};
use crate::field::parquet::{self, FieldMeta};
use crate::field::vtk::{self, HeaderNum, VtkArray, VtkValues};
use crate::field::{make_grid, tsv, FieldKind, FieldRow, Layout, PhiField};
use crate::label::LabelTable;
use crate::phi::{self, ApplyF, Phi};
use crate::store::dtype::TypedBuf;
use crate::store::output::{Existing, OutputSet};
use crate::store::tiff_write::write_tiff;
use crate::store::Volume;

#[derive(Args, Debug)]
pub struct PassPhiFieldArgs {
    /// The registration or field to pass on (TSV or Parquet) [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: PathBuf,
    /// Bin ratio of --phi-file [spam: -pfb].
    #[arg(long = "phi-file-bin-ratio", default_value_t = 1.0, value_parser = super::values::positive_f64)]
    pub phi_file_bin_ratio: f64,
    /// What is interpolated or passed: all of Φ, its rigid part, or only t [spam: -F].
    #[arg(long = "apply-f", value_enum, default_value = "all")]
    pub apply_f: ApplyF,
    /// Output on the centres of mass of this label image [spam: -lab1].
    #[arg(long = "labelled-file1")]
    pub labelled_file1: Option<PathBuf>,
    /// Output grid spacing [spam: -ns].
    #[arg(long = "node-spacing", value_parser = super::values::positive_usize)]
    pub node_spacing: Option<usize>,
    /// Output grid spacing Z Y X [spam: -ns3].
    #[arg(long = "node-spacing3", num_args = 3, value_names = ["Z", "Y", "X"], value_parser = super::values::positive_usize)]
    pub node_spacing3: Option<Vec<usize>>,
    /// An image whose shape the output grid covers [spam: -im1].
    #[arg(long)]
    pub im1: Option<PathBuf>,
    /// The shape the output grid covers, Z Y X [spam: -im1shape].
    #[arg(long = "im1-shape", num_args = 3, value_names = ["Z", "Y", "X"])]
    pub im1_shape: Option<Vec<usize>>,
    /// A registration to subtract from the field [spam: -regs].
    #[arg(long)]
    pub regs: Option<PathBuf>,
    /// Part of --regs to subtract [spam: -regsF].
    #[arg(long = "regs-f", value_enum, default_value = "rigid")]
    pub regs_f: ApplyF,
    /// Bin ratio of --regs [spam: -regsb].
    #[arg(long = "regs-bin-ratio", default_value_t = 1.0, value_parser = super::values::positive_f64)]
    pub regs_bin_ratio: f64,
    /// Interpolation radius in voxels (wins over --number-of-neighbours) [spam: -nr].
    #[arg(long = "neighbourhood-radius", value_parser = super::values::positive_f64)]
    pub neighbourhood_radius: Option<f64>,
    /// Interpolate from this many nearest points [spam: -nn].
    #[arg(long = "number-of-neighbours", value_parser = super::values::positive_usize)]
    pub number_of_neighbours: Option<usize>,
    /// Only inside the box of the neighbours (NaN outside) [spam: -cps].
    #[arg(long = "check-point-surrounded")]
    pub check_point_surrounded: bool,
    /// Points of the field with a lower return status are not used [spam: -rst].
    #[arg(long = "return-status-threshold", default_value_t = -4, allow_negative_numbers = true)]
    pub return_status_threshold: i64,
    #[command(flatten)]
    pub out: super::OutputOpts,
    /// Also write VTK [spam: -vtk].
    #[arg(long = "vtk-out")]
    pub vtk_out: bool,
    /// Also write Zdisp/Ydisp/Xdisp TIFFs (grid output) [spam: -tif].
    #[arg(long = "tiff-out")]
    pub tiff_out: bool,
    #[command(flatten)]
    pub read: ReadOpts,
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
        return_status: if ok { 1.0 } else { -7.0 },
        delta_phi_norm: 1.0,
        label_dilate: 0.0,
    }
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
                    let v: Vec<f32> = field.phis.iter().map(|p| p[(k, 3)] as f32).collect();
                    write_tiff(&outs.file(&dir.join(format!("{name}-{c}.tif")))?, *dims, &TypedBuf::F32(v))?;
                }
            }
            if vtk_out {
                let hs = sp_cli.unwrap_or(sp.map(HeaderNum::Float));
                let first = field.positions[0];
                let origin: [HeaderNum; 3] = std::array::from_fn(|k| HeaderNum::Float(first[k] - hs[k].value() / 2.0));
                let arrays = vec![
                    VtkArray::new("displacements", VtkValues::Vectors(disp)),
                    VtkArray::new("returnStatus", VtkValues::IntScalars(field.return_status.iter().map(|v| *v as i64).collect())),
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
                    VtkArray::new("returnStatus", VtkValues::Scalars(field.return_status.clone())),
                ];
                vtk::write(&outs.file(&dir.join(format!("{name}.vtk")))?, &vtk::glyphs(&pts, &arrays))?;
            }
        }
    }
    Ok(())
}

/// The run's outputs, never one of its inputs.
fn new_outputs(a: &PassPhiFieldArgs) -> OutputSet {
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.phi_file.as_path()].into_iter().chain(a.labelled_file1.as_deref()).chain(a.im1.as_deref()).chain(a.regs.as_deref()));
    outs
}

pub fn run(a: PassPhiFieldArgs) -> Result<super::Summary> {
    a.read.threads();
    if !(a.phi_file_bin_ratio > 0.0) {
        bail!("--phi-file-bin-ratio must be positive");
    }
    let mut input = PhiField::read(&a.phi_file)?;
    input.rescale(a.phi_file_bin_ratio);
    let dir = dir_beside(&a.out.out_dir, &a.phi_file)?;
    let mut name = format!("{}-passed", a.out.prefix.clone().unwrap_or_else(|| stem(&a.phi_file)));
    let params = serde_json::json!({
        "phi_file": a.phi_file, "phi_file_bin_ratio": a.phi_file_bin_ratio, "apply_f": a.apply_f,
        "labelled_file1": a.labelled_file1, "node_spacing": three(a.node_spacing, &a.node_spacing3), "im1": a.im1,
        "im1_shape": a.im1_shape, "regs": a.regs, "regs_f": a.regs_f, "neighbourhood_radius": a.neighbourhood_radius,
        "number_of_neighbours": a.number_of_neighbours, "check_point_surrounded": a.check_point_surrounded,
        "return_status_threshold": a.return_status_threshold,
    });
    let meta = FieldMeta::for_command("pass-phi-field", params);

    // Subtract a registration from every point; everything else is kept.
    if let Some(regs) = &a.regs {
        if input.kind == FieldKind::Registration {
            bail!("{}: --regs subtracts a registration from a field, but this file holds a single registration", a.phi_file.display());
        }
        let reg = read_registration(regs, a.regs_bin_ratio)?;
        let reduced = phi::apply_f_mode(&reg.phis[0], a.regs_f);
        let c = reg.positions[0];
        let mut out = input.clone();
        // spam's layout (C): with the CC column; NodeNumber for a grid, Label for labels.
        out.layout = if input.layout.is_labels() { Layout::PixelSearchLabels } else { Layout::PixelSearch };
        for i in 0..out.len() {
            let t = phi::translation(&out.phis[i]) - phi::translation_at(&reduced, &c, &out.positions[i]);
            phi::set_translation(&mut out.phis[i], &t);
            out.cc[i] = 0.0;
            out.error[i] = 0.0;
        }
        name += &format!("-regs-{}", match a.regs_f {
            ApplyF::No => "disp",
            ApplyF::Rigid => "rigid",
            ApplyF::All => "all",
        });
        let mut outs = new_outputs(&a);
        write_outputs(&mut outs, &out, &dir, &name, &meta, true, a.vtk_out, a.tiff_out, None)?;
        outs.commit()?;
        return Ok(Some(format!("pass-phi-field: {} points → {}", out.len(), dir.join(&name).display())));
    }

    // Where the field goes: label centres, or a grid.
    let (targets, kind, layout, ns_out, label_radius) = if let Some(lab) = &a.labelled_file1 {
        let cache = a.read.cache()?;
        let table = LabelTable::scan(&Volume::open(lab, cache)?, a.read.progress())?;
        let n = table.max_label() + 1;
        let targets: Vec<Vector3<f64>> = (0..n).map(|l| table.get(l).filter(|_| l > 0).map(|i| Vector3::from(i.com)).unwrap_or(Vector3::from_element(f64::NAN))).collect();
        let radii: Vec<f64> = (1..n).filter_map(|l| table.get(l)).map(|i| (3.0 * i.volume as f64 / (4.0 * std::f64::consts::PI)).cbrt()).collect();
        let mean_r = radii.iter().sum::<f64>() / radii.len().max(1) as f64;
        name += "-labelled";
        (targets, FieldKind::Labels, Layout::PixelSearchLabels, None, Some(5.0 * mean_r))
    } else {
        let Some(ns) = three(a.node_spacing, &a.node_spacing3) else {
            bail!("--node-spacing (-ns) is needed for a grid output (or give --labelled-file1)");
        };
        if ns.contains(&0) {
            bail!("--node-spacing must be positive");
        }
        let shape = match (&a.im1, &a.im1_shape) {
            (Some(p), _) => Volume::open(p, a.read.cache()?)?.shape(),
            (None, Some(s)) => [s[0], s[1], s[2]],
            (None, None) => bail!("--im1 or --im1-shape is needed to place the output grid"),
        };
        crate::field::check_grid_size(shape, ns)?;
        let (nodes, dims) = make_grid(shape, ns);
        if nodes.is_empty() {
            bail!("no node fits in the {shape:?} image with spacing {ns:?}");
        }
        name += &if ns[0] == ns[1] && ns[1] == ns[2] { format!("-ns{}", ns[0]) } else { format!("-ns{}-{}-{}", ns[0], ns[1], ns[2]) };
        (nodes, FieldKind::Grid { dims, spacing: ns.map(|v| v as f64) }, Layout::PixelSearch, Some(ns), None)
    };
    let phis: Vec<Phi> = if input.kind == FieldKind::Registration {
        targets.iter().map(|p| if p.iter().all(|v| v.is_finite()) { phi::registration_to_point(&input.phis[0], &input.positions[0], p, a.apply_f) } else { Phi::from_element(f64::NAN) }).collect()
    } else {
        let used: Vec<usize> = (0..input.len()).filter(|&i| input.return_status[i] >= a.return_status_threshold as f64 && !(input.layout.is_labels() && input.ids[i] == 0)).collect();
        let pts: Vec<Vector3<f64>> = used.iter().map(|&i| input.positions[i]).collect();
        let ps: Vec<Phi> = used.iter().map(|&i| input.phis[i]).collect();
        let ip = PhiInterpolator::new(&pts, &ps);
        if ip.is_empty() {
            bail!("{}: no point has a return status ≥ {} and a finite Φ to interpolate from", a.phi_file.display(), a.return_status_threshold);
        }
        let nb = match (a.neighbourhood_radius, a.number_of_neighbours) {
            (Some(r), _) => Neighbours::Radius(r),
            (None, Some(k)) if k > 0 => Neighbours::Count(k),
            (None, Some(_)) => bail!("--number-of-neighbours must be positive"),
            (None, None) => match (ns_out, label_radius) {
                (Some(ns), _) => Neighbours::Radius(2.0 * ((ns.iter().sum::<usize>() as f64 / 3.0) as i64) as f64),
                (None, Some(r)) => Neighbours::Radius(r),
                _ => unreachable!(),
            },
        };
        if a.apply_f != ApplyF::No {
            crate::note!("note: each neighbour's Φ is moved to the target before averaging; where F ≠ I this differs from spam-passPhiField (by up to ~1.7 voxels on ordinary fields) and is closer to the truth (docs/spam-differences.md, row 15)");
        }
        ip.at_all(&targets, nb, a.apply_f, a.check_point_surrounded)
    };
    let mut out = PhiField::new(kind, layout);
    for (i, (p, q)) in targets.iter().zip(phis).enumerate() {
        if layout.is_labels() && i == 0 {
            out.push(background_row());
        } else {
            out.push(passed_row(i, *p, q));
        }
    }
    let mut outs = new_outputs(&a);
    write_outputs(&mut outs, &out, &dir, &name, &meta, true, a.vtk_out, a.tiff_out, ns_out.map(|ns| ns.map(|v| HeaderNum::Int(v as i64))))?;
    outs.commit()?;
    Ok(Some(format!("pass-phi-field: {} points → {}", out.len(), dir.join(&name).display())))
}
