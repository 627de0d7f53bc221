//! tiff2zarr under faults: killed at random moments (kill -9) and at every step of its commit
//! while replacing a store with --overwrite, the output is afterwards the complete old store
//! or the complete new one, never a store missing chunks; and an output that is the input
//! (however it is spelled) is refused before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use dvc_stream::store::dtype::TypedBuf;
use dvc_stream::store::tiff_write::write_tiff;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tiff2zarr")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn tiff(path: &Path, n: usize, seed: u32) {
    let v: Vec<u16> = (0..n * n * n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) as u16).collect();
    write_tiff(path, [n, n, n], &TypedBuf::U16(v)).unwrap();
}

#[test]
fn killed_tiff2zarr_leaves_the_old_store_or_the_new_one() {
    let d = tempfile::tempdir().unwrap();
    let (old_in, new_in) = (d.path().join("old.tif"), d.path().join("new.tif"));
    tiff(&old_in, 96, 1);
    tiff(&new_in, 96, 2);
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let z = out.join("v.zarr");
    let run = |input: &Path, env: Option<usize>| {
        let mut c = Command::new(bin());
        c.args([s(input), s(&z), "--chunk", "16", "--overwrite", "-q"]).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(k) = env {
            c.env("DVC_STREAM_TEST_ABORT_AT_COMMIT_STEP", k.to_string());
        }
        c
    };
    let t = Instant::now();
    assert!(run(&new_in, None).status().unwrap().success());
    let took = t.elapsed();
    let new_set = snapshot(&out);
    assert!(run(&old_in, None).status().unwrap().success());
    let old_set = snapshot(&out);
    // Only the store itself counts: a `.partial` the kill left is recognisable and removed
    // by the next run.
    let judge = |what: &str| -> bool {
        let now: BTreeMap<_, _> = snapshot(&out).into_iter().filter(|(k, _)| k.starts_with("v.zarr")).collect();
        if now == old_set {
            false
        } else if now == new_set {
            true
        } else {
            panic!("{what}: the store is neither the old one nor the new one ({} files against {} and {})", now.len(), old_set.len(), new_set.len());
        }
    };
    let mut seed = 7u64;
    let mut saw = [0, 0];
    for k in 0..10 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = took.mul_f64((seed >> 11) as f64 / (1u64 << 53) as f64 * 1.1);
        let mut child = run(&new_in, None).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let is_new = judge(&format!("kill {k} after {delay:?}"));
        saw[is_new as usize] += 1;
        if is_new {
            assert!(run(&old_in, None).status().unwrap().success());
        }
    }
    for step in 0..3 {
        let ok = run(&new_in, Some(step)).status().unwrap().success();
        let is_new = judge(&format!("abort at commit step {step}"));
        // One output has no journal: before its rename the old store stands, after it the new.
        assert_eq!(is_new, step == 2, "step {step}");
        assert!(!ok, "aborted at step {step}");
        if is_new {
            assert!(run(&old_in, None).status().unwrap().success());
        }
    }
    // The next run clears whatever the kills left beside it.
    assert!(run(&new_in, None).status().unwrap().success());
    assert_eq!(snapshot(&out), new_set, "nothing but the store is left");
    eprintln!("tiff2zarr: 10 kills over {took:?}: {} old, {} new", saw[0], saw[1]);
}

#[test]
fn an_output_equal_to_the_input_is_refused_first() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in.tif");
    tiff(&input, 8, 3);
    let before = std::fs::read(&input).unwrap();
    std::os::unix::fs::symlink(&input, d.path().join("link.tif")).unwrap();
    for out in [input.clone(), d.path().join("link.tif"), d.path().join(".").join("in.tif")] {
        let o = Command::new(bin()).args([s(&input), s(&out), "--overwrite", "-q"]).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(e.contains("is also an input"), "{e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert!(!d.path().join("in.tif.partial").exists());
}
