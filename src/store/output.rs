//! Outputs that appear complete or not at all.
//!
//! Every file or store dvc-stream writes is first written under `NAME.partial` and renamed
//! to `NAME` only when complete, so an interrupted run or a full disk never leaves
//! something that looks finished. An existing output is replaced only when asked.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// An output being written under a temporary name.
pub struct PendingOutput {
    final_path: PathBuf,
    partial_path: PathBuf,
    committed: bool,
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
}

impl PendingOutput {
    /// Prepares to write `path`. Fails if it exists and `overwrite` is false.
    pub fn new(path: &Path, overwrite: bool) -> Result<PendingOutput> {
        if path.exists() && !overwrite {
            bail!("{}: already exists (use --overwrite to replace it)", path.display());
        }
        let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".partial");
        let partial_path = path.with_file_name(name);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create folder", parent.display()))?;
        }
        if partial_path.exists() {
            remove_any(&partial_path)
                .with_context(|| format!("{}: cannot remove a stale partial output", partial_path.display()))?;
        }
        Ok(PendingOutput { final_path: path.to_path_buf(), partial_path, committed: false })
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        &self.partial_path
    }

    /// Where the output will be once complete.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Renames the finished output into place (replacing an old one), after flushing what
    /// was written to disk so that a completed name always holds completed data.
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.partial_path.exists() {
            let target = if self.partial_path.is_dir() { self.partial_path.clone() } else { self.partial_path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".").to_path_buf() } else { p.to_path_buf() }).unwrap_or_else(|| ".".into()) };
            super::bulk_store::sync(&target).with_context(|| format!("{}: cannot flush to disk", self.final_path.display()))?;
        }
        // A file is replaced by the rename itself, atomically: at every moment the name holds
        // the old or the new content (a checkpoint manifest relies on it). A folder cannot be
        // renamed over, so an old one goes first.
        if self.final_path.is_dir() {
            remove_any(&self.final_path).with_context(|| format!("{}: cannot replace", self.final_path.display()))?;
        }
        std::fs::rename(&self.partial_path, &self.final_path)
            .with_context(|| format!("{}: cannot rename the finished output into place", self.final_path.display()))?;
        // The rename is durable once the folder holding it is flushed.
        if let Some(parent) = self.final_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        self.committed = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.committed && self.partial_path.exists() {
            let _ = remove_any(&self.partial_path);
        }
    }
}

/// Writes a small file atomically (TSV, VTK, JSON...).
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> Result<PathBuf> {
    let pending = PendingOutput::new(path, true)?;
    std::fs::write(pending.path(), contents).with_context(|| format!("{}: cannot write", path.display()))?;
    pending.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.tsv");
        {
            let p = PendingOutput::new(&out, false).unwrap();
            std::fs::write(p.path(), b"half").unwrap();
        }
        assert!(!out.exists());
        assert!(!dir.path().join("a.tsv.partial").exists());
        let p = PendingOutput::new(&out, false).unwrap();
        std::fs::write(p.path(), b"done").unwrap();
        p.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"done");
        assert!(PendingOutput::new(&out, false).is_err());
        assert!(PendingOutput::new(&out, true).is_ok());
    }
}
