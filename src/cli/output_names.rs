//! Output folders and prefixes named as spam names them.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::field::PhiField;
use crate::store::{ChunkCache, Volume};

/// File name without its extension (`im1.tif` → `im1`, `im1.zarr` → `im1`).
pub fn stem(p: &Path) -> String {
    let p = if p.file_name().is_some_and(|n| n == "zarr.json") { p.parent().unwrap_or(p) } else { p };
    p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into())
}

/// `-od` or the folder of the (real path of the) first image, created.
pub fn out_dir(od: &Option<PathBuf>, im1: &Path) -> Result<PathBuf> {
    let d = out_dir_path(od, im1)?;
    create_out_dir(&d)?;
    Ok(d)
}

/// The folder [`out_dir`] names, not created yet (a job resolved before its run).
pub fn out_dir_path(od: &Option<PathBuf>, im1: &Path) -> Result<PathBuf> {
    Ok(match od {
        Some(d) => d.clone(),
        None if crate::store::remote::is_remote(im1) => {
            anyhow::bail!("{}: is in object storage; give a local output folder with --out-dir (-od)", im1.display())
        }
        None => std::fs::canonicalize(im1)
            .ok()
            .and_then(|p| p.parent().map(|p| p.to_path_buf()))
            .unwrap_or_else(|| PathBuf::from(".")),
    })
}

/// Creates an output folder (and its parents).
pub fn create_out_dir(d: &Path) -> Result<()> {
    std::fs::create_dir_all(d).map_err(|e| anyhow::anyhow!("{}: cannot create output folder ({e})", d.display()))
}

/// `-od`, or the folder of `path` as given (`./` for a bare name): spam's rule for ldic and
/// the field tools, whose outputs go next to their input.
pub fn dir_beside(od: &Option<PathBuf>, path: &Path) -> Result<PathBuf> {
    let d = match od {
        Some(d) => d.clone(),
        None if crate::store::remote::is_remote(path) => {
            anyhow::bail!("{}: is in object storage; give a local output folder with --out-dir (-od)", path.display())
        }
        None => path.parent().filter(|p| !p.as_os_str().is_empty()).map(|p| p.to_path_buf()).unwrap_or_else(|| PathBuf::from(".")),
    };
    std::fs::create_dir_all(&d).map_err(|e| anyhow::anyhow!("{}: cannot create output folder ({e})", d.display()))?;
    Ok(d)
}

/// Reads a single registration Φ (a one-row file) for `-pf`, scaled by `-pfb`
/// ([`PhiField::read_registration`]).
pub fn read_registration(path: &Path, bin_ratio: f64) -> Result<PhiField> {
    PhiField::read_registration(path, bin_ratio)
}

/// Opens a second image or a mask that must have image 1's shape ([`Volume::open_matching`]).
pub fn open_matching(path: &Path, cache: &std::sync::Arc<ChunkCache>, shape: [usize; 3], what: &str) -> Result<Volume> {
    Volume::open_matching(path, cache, shape, what)
}
