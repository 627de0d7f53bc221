//! Helpers the integration tests share: spam's example folder and running the binary.

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `tests/data/spam-0.9.1`: spam 0.9.1's own outputs, their inputs and the commands that made them (copied from the project's shared spec so a clone passes its tests alone).
#[allow(dead_code)]
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spam-0.9.1")
}

/// Runs dvc-stream and asserts it succeeded.
pub fn dvc(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs dvc-stream and asserts it failed with status 2 and a one-line message containing `says`.
#[allow(dead_code)]
pub fn fails(args: &[&str], says: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains(says), "'{says}' in {e}");
}

pub fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}
