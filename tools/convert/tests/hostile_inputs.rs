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
    let st = Command::new(env!("CARGO_BIN_EXE_tiff2zarr")).args([&s(&im), &s(&out), "--shard", "2", "--chunk", "16", "-q"]).status().unwrap();
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
