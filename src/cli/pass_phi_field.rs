//! `dvc-stream pass-phi-field -pf FIELD`: spam-passPhiField — a registration or a field
//! carried onto a new grid or onto label centres (inverse-distance interpolation through a
//! k-d tree), or a registration subtracted from a field (`-regs`).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use nalgebra::Vector3;

use super::grid_plan::three;
use super::output_names::{dir_beside, read_registration, stem};
use super::ReadOpts;
use crate::field::interpolate::Neighbours;
use crate::field::parquet::FieldMeta;
use crate::field::vtk::HeaderNum;
use crate::field::{make_grid, FieldKind, PhiField};
use crate::label::LabelTable;
use crate::phi::ApplyF;
use crate::run::pass_phi_field::{merge_grid_and_discrete, pass, subtract_registration, write_outputs, Discrete, PassJob, PassTargets};
use crate::store::output::{Existing, OutputSet};
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
    /// Output on the centres of mass of this label image [spam: -lab1]. With --phi-file2,
    /// the label images of the discrete fields, one for each, in the same order.
    #[arg(long = "labelled-file1", num_args = 1..)]
    pub labelled_file1: Vec<PathBuf>,
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
    /// Discrete results (ddic or label pixel-search) to merge into the grid field of
    /// --phi-file: each node inside a label takes that label's Φ (its translation moved to the
    /// node); give their label images with --labelled-file1, in the same order [spam: -pf2].
    #[arg(long = "phi-file2", num_args = 1..)]
    pub phi_file2: Vec<PathBuf>,
    /// Bin ratio of the label images and fields of --phi-file2 to the grid [spam: -pf2b].
    #[arg(long = "phi-file2-bin-ratio", default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::values::positive_f64)]
    pub phi_file2_bin_ratio: f64,
    /// When merging, a node inside a label always takes the label's Φ; without it, a node the
    /// grid correlation converged (return status 2) keeps its own [spam: -mpl].
    #[arg(long = "merge-prefer-label")]
    pub merge_prefer_label: bool,
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

/// The run's outputs, never one of its inputs.
fn new_outputs(a: &PassPhiFieldArgs) -> OutputSet {
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.phi_file.as_path()].into_iter().chain(a.labelled_file1.iter().map(|p| p.as_path())).chain(a.phi_file2.iter().map(|p| p.as_path())).chain(a.im1.as_deref()).chain(a.regs.as_deref()));
    outs
}

/// Where the field goes: label centres (--labelled-file1), or a grid over the image; adds
/// spam's suffix for it to the output name.
fn targets(a: &PassPhiFieldArgs, name: &mut String) -> Result<PassTargets> {
    if a.labelled_file1.len() > 1 {
        bail!("--labelled-file1: {} label images given; more than one is for merging with --phi-file2", a.labelled_file1.len());
    }
    if let Some(lab) = a.labelled_file1.first() {
        let cache = a.read.cache()?;
        let table = LabelTable::scan(&Volume::open(lab, cache)?, a.read.progress())?;
        let n = table.max_label() + 1;
        let centres: Vec<Vector3<f64>> = (0..n).map(|l| table.get(l).filter(|_| l > 0).map(|i| Vector3::from(i.com)).unwrap_or(Vector3::from_element(f64::NAN))).collect();
        let radii: Vec<f64> = (1..n).filter_map(|l| table.get(l)).map(|i| (3.0 * i.volume as f64 / (4.0 * std::f64::consts::PI)).cbrt()).collect();
        let mean_radius = radii.iter().sum::<f64>() / radii.len().max(1) as f64;
        *name += "-labelled";
        return Ok(PassTargets::Labels { centres, mean_radius });
    }
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
    *name += &if ns[0] == ns[1] && ns[1] == ns[2] { format!("-ns{}", ns[0]) } else { format!("-ns{}-{}-{}", ns[0], ns[1], ns[2]) };
    Ok(PassTargets::Grid { nodes, dims, spacing: ns })
}

/// `-pf2 … -lab1 …`: the grid field `grid` with the discrete fields merged in, each read
/// with its label image.
fn merge(a: &PassPhiFieldArgs, grid: &PhiField) -> Result<PhiField> {
    if a.regs.is_some() {
        bail!("--regs and --phi-file2 are two different modes; give one");
    }
    if a.labelled_file1.len() != a.phi_file2.len() {
        bail!(
            "--phi-file2: {} discrete field(s) need as many label images (--labelled-file1, in the same order); {} given",
            a.phi_file2.len(),
            a.labelled_file1.len()
        );
    }
    if !matches!(grid.kind, FieldKind::Grid { .. }) {
        bail!("{}: is not a grid field; --phi-file2 merges discrete fields into a grid field (ldic or grid pixel-search)", a.phi_file.display());
    }
    let cache = a.read.cache()?;
    let mut fields = Vec::with_capacity(a.phi_file2.len());
    let mut volumes = Vec::with_capacity(a.phi_file2.len());
    for (p, lab) in a.phi_file2.iter().zip(&a.labelled_file1) {
        let f = PhiField::read(p)?;
        if f.kind != FieldKind::Labels {
            bail!("{}: is not a discrete field (ddic or label pixel-search); --phi-file2 takes label fields", p.display());
        }
        fields.push(f);
        volumes.push(Volume::open(lab, cache.clone())?);
    }
    let lookups: Vec<Box<dyn Fn([i64; 3]) -> Result<Option<u64>>>> = volumes
        .iter()
        .map(|v| {
            let f = move |at: [i64; 3]| -> Result<Option<u64>> {
                let shape = v.shape();
                if (0..3).any(|k| at[k] < 0 || at[k] >= shape[k] as i64) {
                    return Ok(None);
                }
                let value = v.read_box(at[0]..at[0] + 1, at[1]..at[1] + 1, at[2]..at[2] + 1)?[[0, 0, 0]];
                Ok(Some(crate::label::label_of(value, v)? as u64))
            };
            Box::new(f) as Box<dyn Fn([i64; 3]) -> Result<Option<u64>>>
        })
        .collect();
    let discrete: Vec<Discrete> = fields.iter().zip(&lookups).zip(&a.phi_file2).map(|((field, l), source)| Discrete { field, source, label_at: l.as_ref() }).collect();
    merge_grid_and_discrete(grid, &discrete, a.phi_file2_bin_ratio, a.merge_prefer_label)
}

/// The parameters the tables record (the merge's only when merging).
fn params(a: &PassPhiFieldArgs) -> serde_json::Value {
    let mut params = serde_json::json!({
        "phi_file": a.phi_file, "phi_file_bin_ratio": a.phi_file_bin_ratio, "apply_f": a.apply_f,
        "labelled_file1": a.labelled_file1.first(), "node_spacing": three(a.node_spacing, &a.node_spacing3), "im1": a.im1,
        "im1_shape": a.im1_shape, "regs": a.regs, "regs_f": a.regs_f, "neighbourhood_radius": a.neighbourhood_radius,
        "number_of_neighbours": a.number_of_neighbours, "check_point_surrounded": a.check_point_surrounded,
        "return_status_threshold": a.return_status_threshold,
    });
    if !a.phi_file2.is_empty() {
        params["labelled_file1"] = serde_json::json!(a.labelled_file1);
        params["phi_file2"] = serde_json::json!(a.phi_file2);
        params["phi_file2_bin_ratio"] = serde_json::json!(a.phi_file2_bin_ratio);
        params["merge_prefer_label"] = serde_json::json!(a.merge_prefer_label);
    }
    params
}

/// The interpolation the flags describe.
fn job(a: &PassPhiFieldArgs) -> PassJob {
    PassJob {
        apply_f: a.apply_f,
        neighbours: match (a.neighbourhood_radius, a.number_of_neighbours) {
            (Some(r), _) => Some(Neighbours::Radius(r)),
            (None, Some(k)) => Some(Neighbours::Count(k)),
            (None, None) => None,
        },
        check_point_surrounded: a.check_point_surrounded,
        min_return_status: a.return_status_threshold,
    }
}

pub fn run(a: PassPhiFieldArgs) -> Result<super::Summary> {
    a.read.threads();
    if a.phi_file2.is_empty() && (a.merge_prefer_label || a.phi_file2_bin_ratio != 1.0) {
        crate::say::warn(format_args!("--merge-prefer-label (-mpl) and --phi-file2-bin-ratio (-pf2b) apply to a merge (--phi-file2, -pf2) only; ignored"));
    }
    if !(a.phi_file_bin_ratio > 0.0) {
        bail!("--phi-file-bin-ratio must be positive");
    }
    let mut input = PhiField::read(&a.phi_file)?;
    input.rescale(a.phi_file_bin_ratio);
    let dir = dir_beside(&a.out.out_dir, &a.phi_file)?;
    let mut name = format!("{}-passed", a.out.prefix.clone().unwrap_or_else(|| stem(&a.phi_file)));
    let meta = FieldMeta::for_command("pass-phi-field", params(&a));

    // Merge discrete results into the grid field (spam's "grid AND discrete -> grid").
    if !a.phi_file2.is_empty() {
        let out = merge(&a, &input)?;
        name += "-merged";
        let mut outs = new_outputs(&a);
        write_outputs(&mut outs, &out, &dir, &name, &meta, true, a.vtk_out, a.tiff_out, None)?;
        outs.commit()?;
        return Ok(Some(format!("pass-phi-field: {} nodes merged with {} discrete field(s) → {}", out.len(), a.phi_file2.len(), dir.join(&name).display())));
    }

    // Subtract a registration from every point; everything else is kept.
    if let Some(regs) = &a.regs {
        let reg = read_registration(regs, a.regs_bin_ratio)?;
        let out = subtract_registration(&input, &reg.phis[0], &reg.positions[0], a.regs_f).map_err(|e| anyhow!("{}: {e:#}", a.phi_file.display()))?;
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
    let targets = targets(&a, &mut name)?;
    let ns_out = match &targets {
        PassTargets::Grid { spacing, .. } => Some(*spacing),
        PassTargets::Labels { .. } => None,
    };
    let job = job(&a);
    let out = pass(&input, &targets, &job).map_err(|e| anyhow!("{}: {e:#}", a.phi_file.display()))?;
    let mut outs = new_outputs(&a);
    write_outputs(&mut outs, &out, &dir, &name, &meta, true, a.vtk_out, a.tiff_out, ns_out.map(|ns| ns.map(|v| HeaderNum::Int(v as i64))))?;
    outs.commit()?;
    Ok(Some(format!("pass-phi-field: {} points → {}", out.len(), dir.join(&name).display())))
}
