//! Outputs that appear complete or not at all, as a set, and that never destroy what the
//! run did not create.
//!
//! Why it exists: a run writes several files (ldic: Parquet, TSV, VTK, TIFFs; reg: the
//! registration and the deformed image). If they were renamed into place one by one, a
//! killed or failed run would leave a new Parquet beside an old TSV, which the next tool in a
//! pipeline would read as one result. So every output of a run is reserved in one
//! [`OutputSet`] before anything is computed, written under `NAME.partial`, flushed, and all
//! are renamed together at the end:
//!
//! - **Checked first.** Reserving an output refuses, before any work: a folder at a file's
//!   name, a file or a folder that is not a Zarr store (no `zarr.json`) at a store's name, an
//!   existing output when the command was not told to replace it, and an output that is one
//!   of the run's inputs (also through symlinks) or holds one.
//! - **Committed together.** When every output is written, each is flushed to disk, then a
//!   small journal `FIRST.dvc-commit` naming every (partial, final, inode) triple is written
//!   and flushed, then the renames run in order, then the journal goes. A kill at any moment
//!   leaves the complete old set (no journal yet), the complete new set, or a journal: the
//!   next run that reserves any of its outputs (or [`recover`]) finishes the renames, since
//!   every partial it names was complete before it was written.
//! - **Stores replaced in one step.** A Zarr store (a folder) cannot be renamed over, so the
//!   new one is swapped with the old by `renameat2(RENAME_EXCHANGE)` (the name always holds a
//!   complete store), and the old one, now at `NAME.partial`, is deleted afterwards. Where
//!   the file system cannot exchange, the old store is moved to `NAME.old.partial` first.
//! - **Failure removes only partials.** A set dropped without commit (an error) removes the
//!   partials it wrote, nothing else.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// What to do with an output name that already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it (commands with an `--overwrite` flag, when it is not given).
    Refuse,
    /// Replace it, if it is of the same kind (a file by a file, a Zarr store by a store): spam
    /// rewrites its tables, and `--overwrite`.
    Replace,
}

impl Existing {
    /// `Replace` when `overwrite`, else `Refuse`.
    pub fn overwrite_if(overwrite: bool) -> Existing {
        if overwrite {
            Existing::Replace
        } else {
            Existing::Refuse
        }
    }
}

/// What an output is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    /// A Zarr store: a folder with a `zarr.json`.
    Store,
}

struct Planned {
    /// As the user named it (for messages and for the caller).
    shown: PathBuf,
    /// Absolute, for the journal.
    target: PathBuf,
    partial: PathBuf,
    kind: Kind,
}

/// The outputs of one run, written under `.partial` names and committed together.
pub struct OutputSet {
    existing: Existing,
    /// Canonical paths of the run's inputs.
    inputs: Vec<(PathBuf, PathBuf)>,
    planned: Vec<Planned>,
    committed: bool,
}

const JOURNAL: &str = ".dvc-commit";
const PARTIAL: &str = ".partial";
const ASIDE: &str = ".old.partial";
/// A test hook: abort (as a kill would) before commit step N (0 = the journal, 1.. = the renames,
/// then the clean-up), so that the fault tests reach every step of a commit.
const ABORT_AT: &str = "DVC_STREAM_TEST_ABORT_AT_COMMIT_STEP";

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    p.with_file_name(name)
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A Zarr store as dvc-stream writes and replaces them: a folder with a root `zarr.json`.
pub fn is_zarr_store(p: &Path) -> bool {
    p.is_dir() && p.join("zarr.json").is_file()
}

/// The canonical form of a path that may not exist yet (its folder resolved, symlinks too).
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(d), Some(n)) => canonical(d).join(n),
        _ => abs,
    }
}

/// Removes a file, or a folder with what it holds. A store's root `zarr.json` goes last, so a
/// removal cut short by a kill still leaves a folder recognisable as one of our stores (which
/// the next run removes), never an anonymous folder it must refuse to touch.
fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let root = p.join("zarr.json");
            for e in std::fs::read_dir(p)?.flatten() {
                if e.path() != root {
                    remove_any(&e.path())?;
                }
            }
            remove_any(&root)?;
            std::fs::remove_dir(p)
        }
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn inode(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

fn sync_dir(d: &Path) {
    if let Ok(f) = std::fs::File::open(d) {
        let _ = f.sync_all();
    }
}

/// Swaps two existing names in one step; `Ok(false)` where the file system cannot.
fn exchange(a: &Path, b: &Path) -> Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both strings are NUL-terminated and live for the call.
    let r = unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(anyhow!("{}: cannot swap the new store in ({e})", b.display())),
    }
}

fn abort_at(step: usize) {
    if std::env::var(ABORT_AT).ok().and_then(|v| v.parse::<usize>().ok()) == Some(step) {
        std::process::abort();
    }
}

/// One entry of a commit journal.
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    target: PathBuf,
    partial: PathBuf,
    dev: u64,
    ino: u64,
}

/// Puts the new output (`partial`, of identity `id`) under `target`; the old one, if any,
/// ends at `partial` (exchanged) or at the aside name, for [`clean_old`].
fn put_in_place(partial: &Path, target: &Path) -> Result<()> {
    let old_is_dir = std::fs::symlink_metadata(target).map(|m| m.is_dir()).unwrap_or(false);
    if old_is_dir {
        if !exchange(partial, target)? {
            let aside = with_suffix(target, ASIDE);
            remove_any(&aside).with_context(|| format!("{}: cannot remove", aside.display()))?;
            std::fs::rename(target, &aside).with_context(|| format!("{}: cannot move the old store aside", target.display()))?;
            std::fs::rename(partial, target).with_context(|| format!("{}: cannot rename the finished output into place", target.display()))?;
        }
    } else {
        // A file is replaced by the rename itself, atomically.
        std::fs::rename(partial, target).with_context(|| format!("{}: cannot rename the finished output into place", target.display()))?;
    }
    Ok(())
}

/// Removes what an old output left at the partial or aside name once the new one is in place.
fn clean_old(partial: &Path, target: &Path) -> Result<()> {
    for p in [partial.to_path_buf(), with_suffix(target, ASIDE)] {
        remove_any(&p).with_context(|| format!("{}: cannot remove the replaced output", p.display()))?;
    }
    Ok(())
}

/// Finishes the commit a journal describes (every partial it names was complete when it was
/// written), then removes it.
fn roll_forward(journal: &Path) -> Result<()> {
    let text = std::fs::read(journal).with_context(|| format!("{}: cannot read", journal.display()))?;
    let entries: Vec<Entry> = match serde_json::from_slice(&text) {
        Ok(e) => e,
        // Cut short while being written: no rename had started, the old set stands.
        Err(_) => {
            return std::fs::remove_file(journal).with_context(|| format!("{}: cannot remove", journal.display()));
        }
    };
    for e in &entries {
        let id = Some((e.dev, e.ino));
        if inode(&e.target) == id {
            // Already in place.
        } else if inode(&e.partial) == id {
            put_in_place(&e.partial, &e.target)?;
        } else {
            bail!("{}: an interrupted commit names {}, which is neither in place nor at {}; move the journal away to go on", journal.display(), e.target.display(), e.partial.display());
        }
    }
    for d in entries.iter().map(|e| parent_of(&e.target)).collect::<HashSet<_>>() {
        sync_dir(&d);
    }
    for e in &entries {
        clean_old(&e.partial, &e.target)?;
    }
    std::fs::remove_file(journal).with_context(|| format!("{}: cannot remove", journal.display()))?;
    sync_dir(&parent_of(journal));
    Ok(())
}

/// Finishes every interrupted commit in `dir` (journals `*.dvc-commit`); `only` limits it to
/// journals naming that output. Returns how many were finished.
pub fn recover(dir: &Path, only: Option<&Path>) -> Result<usize> {
    let Ok(list) = std::fs::read_dir(dir) else { return Ok(0) };
    let mut n = 0;
    for e in list.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(JOURNAL) {
            continue;
        }
        let path = e.path();
        if let Some(target) = only {
            let names_it = std::fs::read(&path)
                .ok()
                .and_then(|t| serde_json::from_slice::<Vec<Entry>>(&t).ok())
                .is_none_or(|es| es.iter().any(|x| x.target == target));
            if !names_it {
                continue;
            }
        }
        roll_forward(&path)?;
        n += 1;
    }
    Ok(n)
}

impl OutputSet {
    pub fn new(existing: Existing) -> OutputSet {
        OutputSet { existing, inputs: vec![], planned: vec![], committed: false }
    }

    /// Records the run's inputs: an output equal to one of them, or a folder holding one, is
    /// refused. Give them before the outputs.
    pub fn inputs<'a>(&mut self, paths: impl IntoIterator<Item = &'a Path>) -> &mut Self {
        for p in paths {
            if !crate::store::remote::is_remote(p) {
                self.inputs.push((p.to_path_buf(), canonical(p)));
            }
        }
        self
    }

    /// Reserves a file output; returns where to write it (`NAME.partial`).
    pub fn file(&mut self, path: &Path) -> Result<PathBuf> {
        self.reserve(path, Kind::File, self.existing)
    }

    /// Reserves a file output that replaces an existing file whatever the set's rule (a
    /// table beside images that `--overwrite` guards).
    pub fn file_replacing(&mut self, path: &Path) -> Result<PathBuf> {
        self.reserve(path, Kind::File, Existing::Replace)
    }

    /// Reserves a Zarr store output; returns the folder to write it in (`NAME.partial`).
    pub fn store(&mut self, path: &Path) -> Result<PathBuf> {
        self.reserve(path, Kind::Store, self.existing)
    }

    /// Where a reserved output is being written (to read back a finished part, such as a
    /// table a quicklook draws).
    pub fn partial_of(&self, path: &Path) -> Option<&Path> {
        self.planned.iter().find(|p| p.shown == path).map(|p| p.partial.as_path())
    }

    /// Gives up a reserved output that the run turned out not to write (its partial goes).
    pub fn release(&mut self, path: &Path) -> Result<()> {
        if let Some(k) = self.planned.iter().position(|p| p.shown == path) {
            let p = self.planned.remove(k);
            remove_any(&p.partial).with_context(|| format!("{}: cannot remove", p.partial.display()))?;
        }
        Ok(())
    }

    /// Number of reserved outputs.
    pub fn len(&self) -> usize {
        self.planned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.planned.is_empty()
    }

    fn reserve(&mut self, path: &Path, kind: Kind, existing: Existing) -> Result<PathBuf> {
        if let Some(p) = self.planned.iter().find(|p| p.shown == path) {
            if p.kind != kind {
                bail!("{}: named twice as an output, as a file and as a store", path.display());
            }
            return Ok(p.partial.clone());
        }
        if path.file_name().is_none() {
            bail!("{}: is not a file name", path.display());
        }
        let dir = parent_of(path);
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
        let target = canonical(path);
        // A commit killed half-way, naming this output, is finished first.
        recover(&parent_of(&target), Some(&target)).with_context(|| format!("{}: cannot finish an interrupted commit", path.display()))?;
        if self.planned.iter().any(|p| p.target == target) {
            bail!("{}: named twice as an output", path.display());
        }
        for (shown, c) in &self.inputs {
            if *c == target {
                bail!("{}: is also an input ({}); choose another output name", path.display(), shown.display());
            }
            if c.starts_with(&target) {
                bail!("{}: holds the input {}; choose another output name", path.display(), shown.display());
            }
        }
        if let Ok(m) = std::fs::metadata(path) {
            match kind {
                Kind::File if m.is_dir() => {
                    bail!("{}: is a folder; dvc-stream never replaces a folder by a file (move it away or choose another name)", path.display())
                }
                Kind::Store if !m.is_dir() => bail!("{}: is a file, not a Zarr store; it is not replaced (move it away or choose another name)", path.display()),
                Kind::Store if !is_zarr_store(path) => {
                    bail!("{}: is a folder but not a Zarr store (no zarr.json); dvc-stream replaces only a store by a store (move it away or choose another name)", path.display())
                }
                _ => {}
            }
            if existing == Existing::Refuse {
                bail!("{}: already exists (use --overwrite to replace it)", path.display());
            }
        }
        let partial = with_suffix(path, PARTIAL);
        // A partial left by a killed run is ours to remove, if it is what we would have written.
        if let Ok(m) = std::fs::symlink_metadata(&partial) {
            let ours = match kind {
                Kind::File => m.is_file(),
                Kind::Store => m.is_dir() && (is_zarr_store(&partial) || std::fs::read_dir(&partial).map(|mut d| d.next().is_none()).unwrap_or(false)),
            };
            if !ours {
                bail!("{}: exists and is not a partial output left by dvc-stream; move it away", partial.display());
            }
            remove_any(&partial).with_context(|| format!("{}: cannot remove a partial output left by an interrupted run", partial.display()))?;
        }
        let aside = with_suffix(path, ASIDE);
        if kind == Kind::Store && is_zarr_store(&aside) {
            remove_any(&aside).with_context(|| format!("{}: cannot remove a store left by an interrupted run", aside.display()))?;
        }
        self.planned.push(Planned { shown: path.to_path_buf(), target, partial: partial.clone(), kind });
        Ok(partial)
    }

    /// Renames every output into place, together (see the module doc), after flushing them
    /// to disk. Returns the final paths, as they were named.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        let mut any_store = false;
        let mut entries = Vec::with_capacity(self.planned.len());
        for p in &self.planned {
            let Some((dev, ino)) = inode(&p.partial) else {
                bail!("{}: internal: the output was reserved but not written", p.shown.display());
            };
            match p.kind {
                Kind::File => std::fs::File::open(&p.partial)
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("{}: cannot flush to disk", p.partial.display()))?,
                Kind::Store => any_store = true,
            }
            entries.push(Entry { target: std::path::absolute(&p.target)?, partial: std::path::absolute(&p.partial)?, dev, ino });
        }
        if any_store {
            for p in self.planned.iter().filter(|p| p.kind == Kind::Store) {
                super::bulk_store::sync(&p.partial).with_context(|| format!("{}: cannot flush to disk", p.partial.display()))?;
            }
        }
        let dirs: HashSet<PathBuf> = self.planned.iter().map(|p| parent_of(&p.target)).collect();
        for d in &dirs {
            sync_dir(d);
        }
        // One output needs no journal: its rename (or exchange) is atomic by itself.
        let journal = (self.planned.len() > 1).then(|| with_suffix(&self.planned[0].target, JOURNAL));
        abort_at(0);
        if let Some(j) = &journal {
            let text = serde_json::to_vec(&entries)?;
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(j)?;
                std::io::Write::write_all(&mut f, &text)?;
                f.sync_all()
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(j);
                bail!("{}: cannot write the commit journal ({e})", j.display());
            }
            sync_dir(&parent_of(j));
        }
        // From here on the journal (if any) completes the commit should this process die.
        for (k, p) in self.planned.iter().enumerate() {
            abort_at(k + 1);
            put_in_place(&p.partial, &p.target)?;
        }
        for d in &dirs {
            sync_dir(d);
        }
        self.committed = true;
        abort_at(self.planned.len() + 1);
        for p in &self.planned {
            clean_old(&p.partial, &p.target)?;
        }
        if let Some(j) = &journal {
            std::fs::remove_file(j).with_context(|| format!("{}: cannot remove", j.display()))?;
            sync_dir(&parent_of(j));
        }
        Ok(self.planned.iter().map(|p| p.shown.clone()).collect())
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        if !self.committed {
            for p in &self.planned {
                let _ = remove_any(&p.partial);
            }
        }
    }
}

/// Writes one small file atomically, replacing a file of that name (never a folder): the
/// checkpoint manifest, and other single files that are the whole output of their step.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> Result<PathBuf> {
    let mut set = OutputSet::new(Existing::Replace);
    let partial = set.file(path)?;
    std::fs::write(&partial, contents).with_context(|| format!("{}: cannot write", partial.display()))?;
    Ok(set.commit()?.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn partials_are_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.tsv");
        {
            let mut s = OutputSet::new(Existing::Refuse);
            write(&s.file(&out).unwrap(), "half");
        }
        assert!(!out.exists());
        assert!(!dir.path().join("a.tsv.partial").exists());
        let mut s = OutputSet::new(Existing::Refuse);
        write(&s.file(&out).unwrap(), "done");
        s.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"done");
        assert!(OutputSet::new(Existing::Refuse).file(&out).is_err());
        assert!(OutputSet::new(Existing::Replace).file(&out).is_ok());
    }

    #[test]
    fn a_folder_is_never_replaced_by_a_file_nor_a_non_store_by_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("x.tsv");
        std::fs::create_dir_all(folder.join("keep")).unwrap();
        write(&folder.join("keep/f"), "x");
        let e = OutputSet::new(Existing::Replace).file(&folder).err().unwrap().to_string();
        assert!(e.contains("is a folder") && e.contains("x.tsv"), "{e}");
        let e = OutputSet::new(Existing::Replace).store(&folder).err().unwrap().to_string();
        assert!(e.contains("not a Zarr store"), "{e}");
        let file = dir.path().join("f.zarr");
        write(&file, "x");
        assert!(OutputSet::new(Existing::Replace).store(&file).is_err());
        assert!(folder.join("keep/f").exists() && file.exists());
        // A partial name held by something else is not removed either.
        std::fs::create_dir(dir.path().join("y.tsv.partial")).unwrap();
        assert!(OutputSet::new(Existing::Replace).file(&dir.path().join("y.tsv")).is_err());
        assert!(dir.path().join("y.tsv.partial").is_dir());
    }

    #[test]
    fn an_input_is_never_an_output() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.tif");
        write(&input, "x");
        std::os::unix::fs::symlink(&input, dir.path().join("link.tif")).unwrap();
        let mut s = OutputSet::new(Existing::Replace);
        s.inputs([input.as_path()]);
        assert!(s.file(&input).is_err());
        assert!(s.file(&dir.path().join("link.tif")).is_err());
        assert!(s.file(&dir.path().join(".").join("in.tif")).is_err());
        assert!(s.store(dir.path()).is_err(), "a folder holding the input");
        assert_eq!(std::fs::read(&input).unwrap(), b"x");
    }

    fn store(p: &Path, tag: &str) {
        std::fs::create_dir_all(p.join("c")).unwrap();
        write(&p.join("zarr.json"), tag);
        write(&p.join("c/0"), tag);
    }

    #[test]
    fn a_store_is_swapped_for_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.zarr");
        store(&out, "old");
        assert!(OutputSet::new(Existing::Refuse).store(&out).is_err());
        let mut s = OutputSet::new(Existing::Replace);
        store(&s.store(&out).unwrap(), "new");
        s.commit().unwrap();
        assert_eq!(std::fs::read_to_string(out.join("c/0")).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("o.zarr")]);
    }

    #[test]
    fn a_journal_rolls_an_interrupted_commit_forward() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tsv"), dir.path().join("b.zarr"));
        write(&a, "old");
        store(&b, "old");
        // What a commit killed after its first rename leaves: a journal, a in place, b not.
        let (pa, pb) = (with_suffix(&a, PARTIAL), with_suffix(&b, PARTIAL));
        write(&pa, "new");
        store(&pb, "new");
        let entries: Vec<Entry> = [(&a, &pa), (&b, &pb)]
            .iter()
            .map(|(t, p)| {
                let (dev, ino) = inode(p).unwrap();
                Entry { target: t.to_path_buf(), partial: p.to_path_buf(), dev, ino }
            })
            .collect();
        write(&with_suffix(&a, JOURNAL), &serde_json::to_string(&entries).unwrap());
        std::fs::rename(&pa, &a).unwrap();
        // The next run reserving b finishes it.
        let mut s = OutputSet::new(Existing::Replace);
        s.store(&b).unwrap();
        drop(s);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(b.join("c/0")).unwrap(), "new");
        assert!(!with_suffix(&a, JOURNAL).exists() && !pb.exists());
    }
}
