//! Right or absent under faults: a run that is refused, fails, fills the disk or is killed
//! leaves the previous set of outputs whole, never a mix of new and old files, never a
//! complete-looking file that is half written, and never deletes a folder it did not create.
//!
//! What counts as "the set" of a run: every file and store it names (ldic's Parquet, TSV,
//! VTK and TIFFs; reg's registration and deformed image). After a fault the outputs must be,
//! byte for byte, all those of the old run or all those of the new one. A kill that lands
//! while the renames of a commit run leaves a `*.dvc-commit` journal: the next run that writes
//! any of those outputs finishes the commit, and so does `output::recover`, which these tests
//! call first; the state after it is what is judged.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{dvc, fails, s};
use dvc_stream::store::output::recover;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dvc-stream")
}

/// Every file under `dir` (recursively), as relative path → content, leaving out checkpoint
/// folders (`*.run`), which a killed run is meant to leave for --resume, and, when
/// `skip_partial`, the `.partial` names a killed run leaves (recognisably unfinished, and
/// removed by the next run).
fn snapshot_with(dir: &Path, skip_partial: bool) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, d: &Path, skip_partial: bool, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "run" || (skip_partial && x == "partial")) {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, skip_partial, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip_partial, &mut out);
    out
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot_with(dir, false)
}

/// A small deterministic generator (the kill times are seeded: a failure reproduces).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn run_ok(cmd: &[String]) {
    let out = Command::new(bin()).args(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Kills `new` (kill -9) at seeded random moments over its running time, and aborts it at each
/// step of its commit; after each fault the outputs in `out` must be the whole old set (made
/// by `old`) or the whole new set, nothing else. `single`: the set is one output (renamed
/// without a journal).
fn kill_test(name: &str, out: &Path, old: &[String], new: &[String], kills: usize, seed: u64, single: bool) {
    let t = Instant::now();
    run_ok(new);
    let new_took = t.elapsed();
    let new_set = snapshot(out);
    run_ok(old);
    let old_set = snapshot(out);
    assert!(old_set != new_set, "{name}: the two runs must differ");
    let judge = |what: &str| -> bool {
        recover(out, None).unwrap();
        let now = snapshot_with(out, true);
        if now == old_set {
            return false;
        }
        if now == new_set {
            return true;
        }
        let keys: std::collections::BTreeSet<_> = now.keys().chain(old_set.keys()).chain(new_set.keys()).collect();
        let is = |k: &PathBuf| match (now.get(k), now.get(k) == old_set.get(k), now.get(k) == new_set.get(k)) {
            (_, true, true) => "same in both",
            (_, true, false) => "old",
            (_, false, true) => "new",
            (None, _, _) => "missing",
            _ => "NEITHER",
        };
        let differs: Vec<_> = keys.iter().map(|k| format!("{} {}", k.display(), is(k))).collect();
        panic!("{name} ({what}): neither the old set nor the new one; differing: {differs:?}");
    };
    let mut rng = Lcg(seed);
    let (mut saw_old, mut saw_new) = (0, 0);
    for k in 0..kills {
        let delay = new_took.mul_f64(rng.next() * 1.1);
        let mut child = Command::new(bin()).args(new).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        if judge(&format!("kill {k} after {delay:?}")) {
            saw_new += 1;
            run_ok(old);
        } else {
            saw_old += 1;
        }
    }
    // Every step of the commit itself, which a random kill rarely hits.
    let mut step = 0;
    loop {
        let st = Command::new(bin()).args(new).env("DVC_STREAM_TEST_ABORT_AT_COMMIT_STEP", step.to_string()).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        if st.success() {
            // Past the last step: the run completed normally.
            assert!(judge("no abort"), "{name}: a finished run leaves the new set");
            break;
        }
        let is_new = judge(&format!("abort at commit step {step}"));
        let expected = if single { step >= 2 } else { step >= 1 };
        assert_eq!(is_new, expected, "{name}: abort at commit step {step}: the journal (or the one rename) decides");
        if is_new {
            run_ok(old);
        }
        step += 1;
    }
    assert!(step >= 2, "{name}: the commit has steps");
    assert_eq!(snapshot(out), new_set, "{name}: a finished run leaves no partial or journal");
    eprintln!("{name}: {kills} kills over {new_took:?}: {saw_old} left the old set, {saw_new} the new; {step} commit steps aborted");
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A small synthetic pair (Zarr) and its registration.
fn pair(dir: &Path, shape: usize) -> (String, String, String) {
    dvc(&["synth", &s(dir), "--shape", &shape.to_string(), "--speckle", "4", "--translate", "1.5", "-0.5", "0.8", "--truth-ns", "16", "-q"]);
    (s(&dir.join("im1.zarr")), s(&dir.join("im2.zarr")), s(&dir.join("truth-registration.tsv")))
}

#[test]
fn kill_reg_with_deformed_image() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2, _) = pair(&d.path().join("in"), 48);
    let out = d.path().join("out");
    let base = |it: &str| strings(&["reg", &im1, &im2, "-bb", "2", "-be", "1", "-it", it, "-def", "-od", &s(&out), "-q"]);
    kill_test("reg -def", &out, &base("1"), &base("20"), 10, 1, false);
}

#[test]
fn kill_deform_image_zarr_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let (im1, _, reg) = pair(&d.path().join("in"), 64);
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let z = s(&out.join("def.zarr"));
    let old = strings(&["deform-image", &im1, "-pf", &reg, "--output", &z, "--overwrite", "-o", "3", "-q"]);
    let new = strings(&["deform-image", &im1, "-pf", &reg, "--output", &z, "--overwrite", "-q"]);
    kill_test("deform-image --output X.zarr --overwrite", &out, &old, &new, 10, 2, true);
}

#[test]
fn kill_ldic_with_every_output() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2, reg) = pair(&d.path().join("in"), 48);
    let out = d.path().join("out");
    let base = |ns: &str| strings(&["ldic", &im1, &im2, "-hws", "5", "-ns", ns, "-pf", &reg, "-tif", "-vtk", "-od", &s(&out), "-pre", "run", "-np", "2", "-q"]);
    kill_test("ldic", &out, &base("12"), &base("6"), 10, 3, false);
}

#[test]
fn kill_regular_strain() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2, reg) = pair(&d.path().join("in"), 48);
    let field = d.path().join("in/f");
    dvc(&["ldic", &im1, &im2, "-hws", "5", "-ns", "6", "-pf", &reg, "-od", &s(&field), "-pre", "f", "-q"]);
    let out = d.path().join("out");
    let pf = s(&field.join("f-ldic.tsv"));
    let old = strings(&["regular-strain", "-pf", &pf, "-od", &s(&out), "-pre", "s", "-comp", "vol", "-vtk", "-tif", "-q"]);
    let new = strings(&["regular-strain", "-pf", &pf, "-od", &s(&out), "-pre", "s", "-comp", "vol", "-vtk", "-tif", "-nomaskBad", "-q"]);
    kill_test("regular-strain", &out, &old, &new, 6, 4, false);
}

// ---- Data loss: folders and inputs at output names ----

#[test]
fn a_folder_at_an_output_name_is_never_deleted() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2, reg) = pair(&d.path().join("in"), 32);
    let out = d.path().join("out");
    let keep = out.join("im1-im2-registration.tsv/keep");
    std::fs::create_dir_all(&keep).unwrap();
    std::fs::write(keep.join("f"), "x").unwrap();
    fails(&["reg", &im1, &im2, "-bb", "2", "-od", &s(&out), "-q"], "im1-im2-registration.tsv: is a folder");
    assert_eq!(std::fs::read(keep.join("f")).unwrap(), b"x");
    assert!(!out.join("im1-im2-registration.parquet").exists(), "nothing of the set is written");

    // deform-image --overwrite replaces a store by a store, never a folder of something else.
    let precious = d.path().join("precious");
    std::fs::create_dir_all(precious.join("sub")).unwrap();
    std::fs::write(precious.join("sub/f"), "x").unwrap();
    fails(&["deform-image", &im1, "-pf", &reg, "--output", &s(&precious), "--overwrite", "-q"], "precious: is a folder");
    let pz = d.path().join("precious.zarr");
    std::fs::create_dir_all(&pz).unwrap();
    std::fs::write(pz.join("f"), "x").unwrap();
    fails(&["deform-image", &im1, "-pf", &reg, "--output", &s(&pz), "--overwrite", "-q"], "not a Zarr store");
    assert_eq!(std::fs::read(precious.join("sub/f")).unwrap(), b"x");
    assert_eq!(std::fs::read(pz.join("f")).unwrap(), b"x");
    // A real store is replaced with --overwrite, and refused without.
    let z = s(&d.path().join("def.zarr"));
    dvc(&["deform-image", &im1, "-pf", &reg, "--output", &z, "-q"]);
    fails(&["deform-image", &im1, "-pf", &reg, "--output", &z, "-q"], "already exists");
    dvc(&["deform-image", &im1, "-pf", &reg, "--output", &z, "--overwrite", "-q"]);
    // spam's default names are rewritten, as spam does (a file by a file).
    dvc(&["reg", &im1, &im2, "-bb", "2", "-od", &s(&d.path().join("o2")), "-q"]);
    dvc(&["reg", &im1, &im2, "-bb", "2", "-od", &s(&d.path().join("o2")), "-q"]);
    let left: Vec<_> = std::fs::read_dir(d.path().join("o2")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert!(left.iter().all(|n| !n.contains("partial") && !n.contains("dvc-commit")), "{left:?}");
}

#[test]
fn an_input_is_never_an_output() {
    let d = tempfile::tempdir().unwrap();
    let (im1, _, reg) = pair(&d.path().join("in"), 32);
    let before = snapshot(&d.path().join("in"));
    // Through a symlink and a path that is spelled differently, too.
    std::os::unix::fs::symlink(d.path().join("in/im1.zarr"), d.path().join("link.zarr")).unwrap();
    for o in [im1.clone(), s(&d.path().join("link.zarr")), s(&d.path().join("in/./im1.zarr"))] {
        fails(&["deform-image", &im1, "-pf", &reg, "--output", &o, "--overwrite", "-q"], "is also an input");
    }
    fails(&["convert-field", &reg, &reg], "is also an input");
    assert_eq!(snapshot(&d.path().join("in")), before);
}

#[test]
fn ldic_checks_every_image_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2, reg) = pair(&d.path().join("a"), 48);
    dvc(&["synth", &s(&d.path().join("b")), "--shape", "40", "-q"]);
    let im3 = s(&d.path().join("b/im2.zarr"));
    let out = d.path().join("out");
    fails(&["ldic", &im1, &im2, &im3, "-hws", "5", "-ns", "12", "-pf", &reg, "-od", &s(&out), "-q"], "im2.zarr: image shape");
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(), "no table of the first pair");
}

// ---- Messages name the file ----

#[test]
fn a_truncated_zarr_json_is_named() {
    let d = tempfile::tempdir().unwrap();
    let (im1, _, reg) = pair(&d.path().join("in"), 32);
    let root = Path::new(&im1).join("zarr.json");
    let text = std::fs::read(&root).unwrap();
    std::fs::write(&root, &text[..text.len() / 2]).unwrap();
    fails(&["stats", &im1], "im1.zarr/zarr.json");
    fails(&["deform-image", &im1, "-pf", &reg, "--output", &s(&d.path().join("o.tif")), "-q"], "im1.zarr/zarr.json");
}

/// Mounts a tmpfs of `size` at `dir` (CI runs as root); None, with a note, where not allowed.
fn mount_tmpfs(dir: &Path, options: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs", &s(dir)]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: cannot mount a tmpfs at {} (not root?): the full-disk and read-only checks did not run", dir.display());
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs `args`, which must fail on the full disk: status 2, one line naming a file in `dir`.
fn fails_full(args: &[String], dir: &Path) {
    let out = Command::new(bin()).args(args).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains(&s(dir)), "names the output: {e}");
    assert!(e.contains("No space left on device"), "{e}");
}

#[test]
fn a_full_disk_fails_cleanly_and_keeps_the_old_outputs() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2, reg) = pair(&d.path().join("in"), 64);
    let field = d.path().join("in/f");
    dvc(&["ldic", &im1, &im2, "-hws", "4", "-ns", "4", "-pf", &reg, "-od", &s(&field), "-pre", "f", "-q"]);
    let pf = s(&field.join("f-ldic.tsv"));
    let disk = d.path().join("disk");
    let Some(_m) = mount_tmpfs(&disk, "size=2m") else { return };
    let o = s(&disk);

    // regular-strain: an old small set, then a large one that cannot fit.
    dvc(&["regular-strain", "-pf", &pf, "-od", &o, "-pre", "s", "-comp", "vol", "-q"]);
    let old = snapshot(&disk);
    fails_full(&strings(&["regular-strain", "-pf", &pf, "-od", &o, "-pre", "s", "-comp", "vol", "dev", "volss", "devss", "r", "z", "U", "e", "Up", "-vtk", "-tif", "-q"]), &disk);
    assert_eq!(snapshot(&disk), old, "regular-strain: the old outputs, nothing else");

    // deform-image: a 64³ float32 image is 1 MiB as TIFF; a second one does not fit beside it.
    let t = s(&disk.join("def.tif"));
    dvc(&["deform-image", &im1, "-pf", &reg, "--output", &t, "-q"]);
    let old = snapshot(&disk);
    dvc(&["synth", &s(&d.path().join("big")), "--shape", "96", "-q"]);
    fails_full(&strings(&["deform-image", &s(&d.path().join("big/im1.zarr")), "-pf", &reg, "--output", &t, "--overwrite", "-q"]), &disk);
    assert_eq!(snapshot(&disk), old, "deform-image: the old outputs, nothing else");

    // ldic: an old coarse set; a fine one with every output does not fit.
    std::fs::remove_file(disk.join("def.tif")).unwrap();
    dvc(&["ldic", &im1, &im2, "-hws", "4", "-ns", "16", "-pf", &reg, "-od", &o, "-pre", "l", "-q"]);
    let old = snapshot(&disk);
    fails_full(&strings(&["ldic", &im1, &im2, "-hws", "4", "-ns", "2", "-pf", &reg, "-od", &o, "-pre", "l", "-tif", "-vtk", "-q"]), &disk);
    let now = snapshot(&disk);
    assert_eq!(now.keys().collect::<Vec<_>>(), old.keys().collect::<Vec<_>>(), "ldic: no new file");
    assert_eq!(now, old, "ldic: the old outputs intact");
}

#[test]
fn a_read_only_folder_is_named() {
    let d = tempfile::tempdir().unwrap();
    let (im1, _, reg) = pair(&d.path().join("in"), 32);
    let ro = d.path().join("ro");
    let Some(_m) = mount_tmpfs(&ro, "size=1m,ro") else { return };
    fails(&["deform-image", &im1, "-pf", &reg, "--output", &s(&ro.join("X.zarr")), "-q"], "X.zarr");
}
