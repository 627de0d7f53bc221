//! spam's `reg` options -rmc, -gm/-gs, -j and -shift (and ldic's -shift): against spam 0.9.1's
//! own outputs on the example inputs (tests/data/reg-options/README.md has the commands) and
//! against exact synthetic truth.

use std::path::{Path, PathBuf};

use dvc_stream::kernels::gradient::{gradient_on_box, GradientMethod};
use dvc_stream::store::{ChunkCache, Volume};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn open(p: &Path) -> Volume {
    Volume::open(p, ChunkCache::new(256 << 20)).unwrap()
}

/// The Gaussian gradient equals SciPy's `gaussian_filter(im, 1.5, order=…, mode="nearest")`
/// on the whole image, also on a box at the image's corner (values from SciPy 1.17.1).
#[test]
fn gaussian_gradient_matches_scipy() {
    let im = open(&data().join("spam-0.9.1/inputs/im1.tif"));
    let n = im.shape();
    let all = im.read_box(0..n[0] as i64, 0..n[1] as i64, 0..n[2] as i64).unwrap();
    let m = GradientMethod::Gaussian { sigma: 1.5 };
    let g = gradient_on_box(&all.view(), [0; 3], n, [0, 0, 0], [1, 1, 4], m);
    let want = [663.5994f32, 1243.7898, 1728.407, 1755.4744];
    for x in 0..4 {
        assert!((g[2][[0, 0, x]] - want[x]).abs() < 2e-3, "x {x}: {} vs {}", g[2][[0, 0, x]], want[x]);
    }
    let g = gradient_on_box(&all.view(), [0; 3], n, [30, 30, 28], [31, 31, 32], m);
    let want = [272.86954f32, 85.6621, -441.5877, -1104.773];
    for x in 0..4 {
        assert!((g[2][[0, 0, x]] - want[x]).abs() < 2e-3, "x {x}: {} vs {}", g[2][[0, 0, x]], want[x]);
    }
}
