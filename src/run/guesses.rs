//! The initial Φ of every label (ddic, pixel-search `-lab1`), from a `-pf` registration or
//! label field, as spam decides them, written once for both tools.
//!
//! A label field is matched to the label image by row: row l is label l, and its position
//! must be label l's centre of mass. spam checks that with NumPy's `allclose` at a
//! tolerance of its own per script (spam-compat.md §3.5, §3.8): spam-pixelSearch within 1
//! voxel ([`PIXEL_SEARCH_TOLERANCE`]), spam-ddic within 0.1 ([`DDIC_TOLERANCE`]); a label missing
//! from both (NaN position in each) matches. A field of another label image is refused, naming
//! the first label that does not match.

use std::path::Path;

use anyhow::{bail, Result};
use nalgebra::Vector3;

use crate::field::{FieldKind, PhiField};
use crate::phi::{self, ApplyF, Phi};

/// spam-pixelSearch's tolerance on label positions (`np.allclose(…, atol=1)`).
pub const PIXEL_SEARCH_TOLERANCE: f64 = 1.0;
/// spam-ddic's tolerance on label positions (`atol=0.1`).
pub const DDIC_TOLERANCE: f64 = 0.1;

/// The guesses of labels at `positions` (centres of mass; NaN for a missing label): a
/// registration moved to every centre (`apply_f` of its F; a missing label gets the identity).
pub fn from_registration(phi: &Phi, centre: &Vector3<f64>, positions: &[Vector3<f64>], apply_f: ApplyF) -> Vec<Phi> {
    positions.iter().map(|q| if q.iter().all(|v| v.is_finite()) { phi::registration_to_point(phi, centre, q, apply_f) } else { Phi::identity() }).collect()
}

/// Checks that label field `f` (read from `path`) is of the label image whose centres of mass
/// are `positions`, within `tolerance` on every axis.
pub fn check_label_field(f: &PhiField, path: &Path, positions: &[Vector3<f64>], tolerance: f64) -> Result<()> {
    let n = positions.len();
    if f.len() != n {
        bail!("{}: has {} rows (labels 0..{}), the label image has labels 0..{}", path.display(), f.len(), f.len().saturating_sub(1), n.saturating_sub(1));
    }
    for l in 1..n {
        let (p, q) = (f.positions[l], positions[l]);
        let same = (0..3).all(|k| (p[k].is_nan() && q[k].is_nan()) || (p[k] - q[k]).abs() <= tolerance);
        if !same {
            bail!("{}: label {l} is at {:?} but its centre of mass in the label image is {:?} (not the same labels?)", path.display(), p.as_slice(), q.as_slice());
        }
    }
    Ok(())
}

/// What a `-pf` file gives labels: a registration's Φ at every centre, or a label field
/// (checked against the label image) whose rows are the labels' guesses.
pub enum LabelGuess {
    Registration(Vec<Phi>),
    Field(Box<PhiField>),
}

/// Reads `-pf` (scaled by `-pfb`) for labels at `positions`.
pub fn read_label_guess(path: &Path, bin_ratio: f64, apply_f: ApplyF, positions: &[Vector3<f64>], tolerance: f64, tool: &str) -> Result<LabelGuess> {
    let mut f = PhiField::read(path)?;
    f.rescale(bin_ratio);
    match f.kind {
        FieldKind::Registration => Ok(LabelGuess::Registration(from_registration(&f.phis[0], &f.positions[0], positions, apply_f))),
        FieldKind::Labels => {
            check_label_field(&f, path, positions, tolerance)?;
            Ok(LabelGuess::Field(Box::new(f)))
        }
        FieldKind::Grid { .. } => bail!("{}: is a grid field; {tool} needs a registration or a label field (pass-phi-field -lab1 makes one)", path.display()),
    }
}
