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

/// The lines of a VTK file but its title, its data lines and its ORIGIN: dvc-stream's grid
/// VTKs put their origin at the first node (docs/spam-differences.md row 48), spam's
/// ldic and pixelSearch at the first node − hws; everything else is laid out as spam's.
#[allow(dead_code)]
pub fn vtk_layout_but_origin(text: &str) -> Vec<String> {
    text.lines().skip(2).filter(|l| !l.starts_with("    ") && !l.starts_with("ORIGIN ")).map(String::from).collect()
}

/// Asserts that a grid VTK's ORIGIN is exactly its table's first position (Zpos, Ypos, Xpos,
/// written X Y Z).
#[allow(dead_code)]
pub fn assert_origin_at_first_node(vtk: &Path, table: &Path) {
    // A grid VTK holds one cell per node: read back, each cell's centre must be the node's
    // position in the table (Zpos, Ypos, Xpos).
    let from_vtk = dvc_stream::field::vtk::read_field(vtk).unwrap_or_else(|e| panic!("{}: {e:#}", vtk.display()));
    let from_table = dvc_stream::field::PhiField::read(table).unwrap();
    assert_eq!(from_vtk.positions.len(), from_table.positions.len(), "{}: node count", vtk.display());
    for (i, (a, b)) in from_vtk.positions.iter().zip(&from_table.positions).enumerate() {
        assert!((a - b).norm() < 1e-9, "{}: cell {i} is centred at {a:?}, the table's node {i} is at {b:?} ({})", vtk.display(), table.display());
    }
}
