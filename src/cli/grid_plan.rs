//! The nodes of a grid command (ldic, pixel-search) and each node's initial Φ, from
//! `-ns` and `-pf` as spam decides them (spam-compat.md §3.6 step 1).

use std::path::PathBuf;

use anyhow::{bail, Result};
use nalgebra::Vector3;

use crate::field::vtk::HeaderNum;
use crate::field::{make_grid, FieldKind, PhiField};
use crate::phi::{self, ApplyF, Phi};

pub fn three(one: Option<usize>, three: &Option<Vec<usize>>) -> Option<[usize; 3]> {
    match three {
        Some(v) => Some([v[0], v[1], v[2]]),
        None => one.map(|v| [v; 3]),
    }
}

/// `-ns`/`-ns3` and `-hws`/`-hws3`, as ldic and pixel-search take them.
#[derive(clap::Args, Debug)]
pub struct GridArgs {
    /// Node spacing on all axes [spam: -ns].
    #[arg(long = "node-spacing", value_parser = super::values::positive_usize)]
    pub node_spacing: Option<usize>,
    /// Node spacing Z Y X [spam: -ns3].
    #[arg(long = "node-spacing3", num_args = 3, value_names = ["Z", "Y", "X"], value_parser = super::values::positive_usize)]
    pub node_spacing3: Option<Vec<usize>>,
    /// Half window size on all axes [spam: -hws].
    #[arg(long = "half-window-size")]
    pub half_window_size: Option<usize>,
    /// Half window size Z Y X [spam: -hws3].
    #[arg(long = "half-window-size3", num_args = 3, value_names = ["Z", "Y", "X"])]
    pub half_window_size3: Option<Vec<usize>>,
}

impl GridArgs {
    pub fn node_spacing(&self) -> Option<[usize; 3]> {
        three(self.node_spacing, &self.node_spacing3)
    }
    pub fn half_window(&self) -> Option<[usize; 3]> {
        three(self.half_window_size, &self.half_window_size3)
    }
}

/// Refuses windows that cannot be correlated, before anything is allocated or written:
/// a window wider than the image (every window would lie mostly outside it, and a
/// `-hws 1000` window is 32 GB of f32), or a search margin as large as the image.
pub fn check_windows(hws: [usize; 3], margin: [usize; 3], shape: [usize; 3]) -> Result<()> {
    for (a, axis) in ["Z", "Y", "X"].iter().enumerate() {
        if shape[a] == 1 {
            // A 2D image: its one plane is correlated in Y and X only.
            continue;
        }
        let width = hws[a].saturating_mul(2).saturating_add(1);
        if width > shape[a] {
            bail!(
                "--half-window-size {}: windows are {width} voxels along {axis}, larger than the {}x{}x{} image",
                hws[a],
                shape[0],
                shape[1],
                shape[2]
            );
        }
        if margin[a] >= shape[a] {
            bail!(
                "--margin {}: the search margin along {axis} is not smaller than the {}x{}x{} image",
                margin[a],
                shape[0],
                shape[1],
                shape[2]
            );
        }
    }
    Ok(())
}

/// The grid, the initial Φ of every node and the file values kept by --skip.
pub struct Plan {
    pub nodes: Vec<Vector3<f64>>,
    pub dims: [usize; 3],
    pub spacing: [HeaderNum; 3],
    pub guesses: Vec<Phi>,
    pub keep: Option<PhiField>,
}

pub fn plan(phi_file: &Option<PathBuf>, bin_ratio: f64, apply_f: ApplyF, ns: Option<[usize; 3]>, shape: [usize; 3], skip: bool) -> Result<Plan> {
    let guess = match phi_file {
        Some(p) => {
            let mut f = PhiField::read(p)?;
            f.rescale(bin_ratio);
            Some((p.clone(), f))
        }
        None => None,
    };
    match guess {
        Some((p, f)) if f.kind != FieldKind::Registration => {
            let FieldKind::Grid { dims, spacing } = f.kind else {
                bail!("{}: a label field cannot guide a grid correlation (use its label mode or ddic)", p.display());
            };
            if let Some(ns) = ns {
                if (0..3).any(|k| dims[k] > 1 && (ns[k] as f64 - spacing[k]).abs() > 1e-5 * spacing[k].abs()) {
                    bail!("{}: node spacing {:?} differs from --node-spacing {:?}", p.display(), spacing, ns);
                }
            }
            f.check_whole_grid(&p, shape)?;
            let keep = if skip { Some(f.clone()) } else { None };
            Ok(Plan { nodes: f.positions.clone(), dims, spacing: spacing.map(HeaderNum::Float), guesses: f.phis.clone(), keep })
        }
        other => {
            let Some(ns) = ns else { bail!("--node-spacing (-ns) is needed unless --phi-file is a field") };
            if ns.contains(&0) {
                bail!("--node-spacing must be positive");
            }
            if skip {
                bail!("--skip needs a field as --phi-file");
            }
            crate::field::check_grid_size(shape, ns)?;
            let (nodes, dims) = make_grid(shape, ns);
            if nodes.is_empty() {
                bail!("no node fits in the {:?} image with spacing {:?}", shape, ns);
            }
            let guesses = match other {
                Some((_, f)) => nodes.iter().map(|n| phi::registration_to_point(&f.phis[0], &f.positions[0], n, apply_f)).collect(),
                None => vec![Phi::identity(); nodes.len()],
            };
            Ok(Plan { nodes, dims, spacing: ns.map(|v| HeaderNum::Int(v as i64)), guesses, keep: None })
        }
    }
}

