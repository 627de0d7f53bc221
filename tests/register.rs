//! Registration against spam's reference outputs and against exact synthetic truth.

use std::path::{Path, PathBuf};

use dvc_stream::field::PhiField;
use dvc_stream::kernels::register::{register_multiscale, MultiscaleOptions, RegisterOptions};
use dvc_stream::phi;
use dvc_stream::store::{ChunkCache, Volume};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/examples")
}

fn open(p: &Path) -> Volume {
    Volume::open(p, ChunkCache::new(256 << 20)).unwrap()
}

fn spam_reg(im2: &str, tsv: &str) {
    let ex = examples();
    let a = open(&ex.join("inputs/im1.tif"));
    let b = open(&ex.join(format!("inputs/{im2}")));
    let o = MultiscaleOptions { bin_start: 2, bin_stop: 1, margin: None, single: RegisterOptions::default() };
    let r = register_multiscale(&a, &b, None, None, 1.0, &o).unwrap();
    let want = PhiField::read(&ex.join(format!("reg/{tsv}"))).unwrap();
    assert_eq!(r.return_status as f64, want.return_status[0]);
    assert_eq!(r.iterations as f64, want.iterations[0]);
    for i in 0..3 {
        for j in 0..4 {
            let (g, w) = (r.phi[(i, j)], want.phis[0][(i, j)]);
            assert!((g - w).abs() < 2e-7, "{tsv}: Φ[{i}][{j}] {g} vs spam {w}");
        }
    }
    assert!((r.error - want.error[0]).abs() < 1e-5, "error {} vs {}", r.error, want.error[0]);
    assert!((r.delta_phi_norm - want.delta_phi_norm[0]).abs() < 1e-6);
}

#[test]
fn matches_spam_reg_translation() {
    spam_reg("im2.tif", "im1-im2-registration.tsv");
}

#[test]
fn matches_spam_reg_rotation_and_stretch() {
    spam_reg("im3.tif", "im1-im3-registration.tsv");
}

#[test]
fn decompositions_of_spam_outputs() {
    let want = PhiField::read(&examples().join("reg/im1-im3-registration.tsv")).unwrap();
    let (_, d) = phi::decompose_phi(&want.phis[0], &want.positions[0], &want.positions[0]);
    // 2° about Z and a 2 % stretch along Z (examples/README.md).
    assert!((d.r[0] - 2.0).abs() < 0.01, "{:?}", d.r);
    assert!((d.z[0] - 1.02).abs() < 1e-3);
}
