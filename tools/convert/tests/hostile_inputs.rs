//! tiff2zarr and zarr2tiff on hostile inputs (issue 15, items 9 and 10): sizes claimed by a
//! store or computed from arguments are checked before anything is allocated, and the
//! refusal is one line with exit status 2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Runs a tool and asserts status 2 with one line on stderr containing every piece of `says`.
fn refused(exe: &str, args: &[&str], says: &[&str]) {
    let out = Command::new(exe).args(args).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} exited {:?}: {e}", out.status);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    for w in says {
        assert!(e.contains(w), "'{w}' in {e}");
    }
}

#[test]
fn a_shard_larger_than_memory_is_refused_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let im = repo().join("tests/data/spam-0.9.1/inputs/im1.tif");
    let out = d.path().join("im1.zarr");
    refused(env!("CARGO_BIN_EXE_tiff2zarr"), &[&s(&im), &s(&out), "--shard", "1000", "-q"], &["--shard 1000"]);
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing left behind");
    // A shard that fits is still written.
    let st = Command::new(env!("CARGO_BIN_EXE_tiff2zarr")).args([&s(&im), &s(&out), "--shard", "32", "--chunk", "16", "-q"]).status().unwrap();
    assert!(st.success());
}

#[test]
fn a_chunk_shape_of_2_to_the_64_is_refused_by_zarr2tiff() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("chunky.zarr");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        store.join("zarr.json"),
        r#"{"zarr_format":3,"node_type":"array","shape":[4,4,4],"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[18446744073709551615,4,4]}},"chunk_key_encoding":{"name":"default","configuration":{"separator":"/"}},"fill_value":0,"codecs":[{"name":"bytes"}]}"#,
    )
    .unwrap();
    let out = d.path().join("out.tif");
    refused(env!("CARGO_BIN_EXE_zarr2tiff"), &[&s(&store), &s(&out), "-q"], &["chunky.zarr", "chunk shape"]);
    assert!(!out.exists());
}

/// Status of a run killed after `limit`, or None when it hung.
fn run_with_timeout(exe: &str, args: &[String], limit: std::time::Duration) -> Option<(Option<i32>, String)> {
    use std::io::Read;
    let mut child = Command::new(exe).args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = stderr.read_to_string(&mut e);
        e
    });
    let t0 = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some((st.code(), reader.join().unwrap_or_default()));
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn tiff2zarr_and_zarr2tiff_on_mutants_end_with_status_0_or_2() {
    // The seeds of tests/fuzz.rs (tests/data/fuzz), mutated by seeded byte flips,
    // truncations and 8-byte fields set to extreme values.
    let seeds = repo().join("tests/data/fuzz");
    let d = tempfile::tempdir().unwrap();
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    let extreme = [0u64, u64::MAX, 1 << 31, 1 << 40, u64::MAX - 511, 0xffff_ffff];
    let mut failures = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    let mut check = |exe: &str, args: Vec<String>, what: String| match run_with_timeout(exe, &args, std::time::Duration::from_secs(20)) {
        None => failures.push(format!("{what}: hung: {args:?}")),
        Some((Some(0), _)) => ok += 1,
        Some((Some(2), e)) if e.trim_end().lines().count() == 1 => refused += 1,
        Some((code, e)) => failures.push(format!("{what}: exit {code:?}: {args:?}: {}", e.lines().find(|l| l.contains("panicked")).unwrap_or(e.trim_end()))),
    };
    for tif in ["raw.tif", "lzw.tif", "deflate-big.tif"] {
        let seed = std::fs::read(seeds.join(tif)).unwrap();
        for m in 0..25 {
            let mut b = seed.clone();
            match next() % 3 {
                0 => {
                    let i = next() as usize % b.len();
                    b[i] ^= 1 + (next() % 255) as u8;
                }
                1 => b.truncate(next() as usize % b.len()),
                _ => {
                    let i = (next() as usize % b.len()) & !1;
                    let v = extreme[next() as usize % extreme.len()].to_le_bytes();
                    for (k, byte) in v.iter().enumerate().take(b.len() - i) {
                        b[i + k] = *byte;
                    }
                }
            }
            let p = d.path().join(format!("m{m}-{tif}"));
            std::fs::write(&p, &b).unwrap();
            let out = d.path().join(format!("m{m}-{tif}.zarr"));
            check(env!("CARGO_BIN_EXE_tiff2zarr"), vec![s(&p), s(&out), "--chunk".into(), "4".into(), "-q".into()], format!("{tif} mutant {m}"));
        }
    }
    // zarr2tiff on stores whose array metadata has a number set to an extreme value.
    let meta = std::fs::read_to_string(seeds.join("vol.zarr/0/zarr.json")).unwrap();
    let numbers: Vec<(usize, usize)> = {
        let bytes = meta.as_bytes();
        let mut v = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                let j = (i..bytes.len()).find(|&j| !bytes[j].is_ascii_digit()).unwrap_or(bytes.len());
                v.push((i, j));
                i = j;
            } else {
                i += 1;
            }
        }
        v
    };
    for (m, &(a, b)) in numbers.iter().enumerate() {
        for value in ["18446744073709551615", "1152921504606846976", "0"] {
            let store = d.path().join(format!("z{m}-{value}.zarr"));
            let st = Command::new("cp").args(["-r", &s(&seeds.join("vol.zarr")), &s(&store)]).status().unwrap();
            assert!(st.success());
            std::fs::write(store.join("0/zarr.json"), format!("{}{value}{}", &meta[..a], &meta[b..])).unwrap();
            let out = d.path().join(format!("z{m}-{value}.tif"));
            check(env!("CARGO_BIN_EXE_zarr2tiff"), vec![s(&store), s(&out), "-q".into()], format!("zarr.json number {m} = {value}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ok > 5 && refused > 5, "{ok} converted, {refused} refused");
}

/// `--shard` counts voxels, as zarr-python's `shards=` does: a multiple of the chunk, clamped
/// to the volume (issue 20; `--chunk 32 --shard 64` used to claim 34 GB).
#[test]
fn shard_is_in_voxels_a_multiple_of_the_chunk_and_clamped_to_the_volume() {
    let d = tempfile::tempdir().unwrap();
    let im = repo().join("tests/data/spam-0.9.1/inputs/im1.tif");
    let shard_of = |store: &std::path::Path| -> serde_json::Value {
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(store.join("0/zarr.json")).unwrap()).unwrap();
        let codec = meta["codecs"].as_array().unwrap().iter().find(|c| c["name"] == "sharding_indexed").cloned().unwrap();
        serde_json::json!([meta["chunk_grid"]["configuration"]["chunk_shape"], codec["configuration"]["chunk_shape"]])
    };
    let a = d.path().join("a.zarr");
    let st = Command::new(env!("CARGO_BIN_EXE_tiff2zarr")).args([&s(&im), &s(&a), "--chunk", "32", "--shard", "64", "-q"]).status().unwrap();
    assert!(st.success());
    assert_eq!(shard_of(&a), serde_json::json!([[64, 64, 64], [32, 32, 32]]));
    // A shard beyond the 60³ volume is clamped to the chunks that cover it.
    let b = d.path().join("b.zarr");
    let st = Command::new(env!("CARGO_BIN_EXE_tiff2zarr")).args([&s(&im), &s(&b), "--chunk", "16", "--shard", "4096", "-q"]).status().unwrap();
    assert!(st.success());
    assert_eq!(shard_of(&b), serde_json::json!([[64, 64, 64], [16, 16, 16]]));
    refused(env!("CARGO_BIN_EXE_tiff2zarr"), &[&s(&im), &s(&d.path().join("c.zarr")), "--chunk", "16", "--shard", "40", "-q"], &["--shard 40", "multiple of the chunk"]);
}

/// `--voxel-size` must be positive and `--unit` a length unit; nothing is written otherwise.
#[test]
fn voxel_sizes_and_units_that_are_not_lengths_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let im = repo().join("tests/data/spam-0.9.1/inputs/im1.tif");
    let out = d.path().join("v.zarr");
    let t2z = env!("CARGO_BIN_EXE_tiff2zarr");
    refused(t2z, &[&s(&im), &s(&out), "--voxel-size", "0", "1", "1", "-q"], &["--voxel-size", "positive"]);
    refused(t2z, &[&s(&im), &s(&out), "--voxel-size", "1", "nan", "1", "-q"], &["--voxel-size", "positive"]);
    refused(t2z, &[&s(&im), &s(&out), "--voxel-size", "1", "1", "1", "--unit", "parsec", "-q"], &["--unit", "parsec", "not a length unit"]);
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing left behind");
}
