//! spam's `reg` options -rmc, -gm/-gs, -j and -shift (and ldic's -shift): against spam 0.9.1's
//! own outputs on the example inputs (tests/data/reg-options/README.md has the commands) and
//! against exact synthetic truth.

use std::path::{Path, PathBuf};

use dvc_stream::field::PhiField;
use dvc_stream::kernels::gradient::{gradient_on_box, GradientMethod};
use dvc_stream::kernels::register::{register, RegisterOptions};
use dvc_stream::kernels::register_volume::register_volumes;
use dvc_stream::store::{ChunkCache, Volume};

mod common;
use common::{dvc, fails, s};

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

/// Our registration against spam's: the same position, status and iterations, Φ within 1e-6.
fn same_as_spam(ours: &Path, spam: &Path) {
    let (a, b) = (PhiField::read(ours).unwrap(), PhiField::read(spam).unwrap());
    assert_eq!(a.positions[0], b.positions[0], "position");
    assert_eq!(a.return_status[0], b.return_status[0]);
    assert_eq!(a.iterations[0], b.iterations[0]);
    for i in 0..3 {
        for j in 0..4 {
            let (g, w) = (a.phis[0][(i, j)], b.phis[0][(i, j)]);
            assert!((g - w).abs() < 1e-6, "{}: Φ[{i}][{j}] {g} vs spam {w}", spam.display());
        }
    }
    assert!((a.error[0] - b.error[0]).abs() < 1e-5);
}

fn inputs(name: &str) -> String {
    s(&data().join("spam-0.9.1/inputs").join(name))
}

/// -rmc: the mask's centre of mass as the position (X 22: the mask keeps X < 45) and the
/// translation there, as spam 0.9.1 (tests/data/reg-options/README.md); spam's spellings.
#[test]
fn return_phi_mask_centre_matches_spam() {
    let d = tempfile::tempdir().unwrap();
    dvc(&["reg", &inputs("im1.tif"), &inputs("im3.tif"), "-od", &s(d.path()), "-bb", "2", "-be", "1", "-mf1", &inputs("mask1.tif"), "-rmc", "-pre", "rmc", "-q"]);
    same_as_spam(&d.path().join("rmc-registration.tsv"), &data().join("reg-options/rmc-registration.tsv"));
    same_as_spam(&d.path().join("rmc-registration.parquet"), &data().join("reg-options/rmc-registration.tsv"));
}

/// -shift on reg (trilinear): spam 0.9.1's result to 1e-6, 4 iterations.
#[test]
fn reg_shift_matches_spam() {
    let d = tempfile::tempdir().unwrap();
    dvc(&["reg", &inputs("im1.tif"), &inputs("im3.tif"), "-od", &s(d.path()), "-bb", "2", "-be", "1", "-shift", "-pre", "shift", "-q"]);
    same_as_spam(&d.path().join("shift-registration.tsv"), &data().join("reg-options/shift-registration.tsv"));
}

/// ldic -shift on example row 6's command line: spam 0.9.1's table (every node's status and
/// iterations; displacements and F to 1e-6).
#[test]
fn ldic_shift_matches_spam() {
    let d = tempfile::tempdir().unwrap();
    let reg = s(&common::examples().join("reg/im1-im3-registration.tsv"));
    dvc(&["ldic", "-o", "1", &inputs("im1.tif"), &inputs("im3.tif"), "-np", "2", "-hws", "5", "-ns", "15", "-pf", &reg, "-od", &s(d.path()), "-pre", "ldicshift", "-shift", "-q"]);
    let (a, b) = (PhiField::read(&d.path().join("ldicshift-ldic.tsv")).unwrap(), PhiField::read(&data().join("reg-options/ldicshift-ldic.tsv")).unwrap());
    assert_eq!(a.len(), 27);
    assert_eq!(a.len(), b.len());
    for i in 0..a.len() {
        assert_eq!((a.return_status[i], a.iterations[i]), (b.return_status[i], b.iterations[i]), "node {i}");
        for r in 0..3 {
            for c in 0..4 {
                assert!((a.phis[i][(r, c)] - b.phis[i][(r, c)]).abs() < 1e-6, "node {i} Φ[{r}][{c}]");
            }
        }
    }
}

/// -j: one row per evaluated Φ of each level; the last level's rows are spam's journal (error,
/// ‖δΦ‖, t), and the last row is the registration written beside it.
#[test]
fn journal_matches_spams_iterations() {
    let d = tempfile::tempdir().unwrap();
    dvc(&["reg", &inputs("im1.tif"), &inputs("im3.tif"), "-od", &s(d.path()), "-bb", "2", "-be", "1", "-j", "-pre", "journal", "-q"]);
    let table = |p: &Path| -> Vec<Vec<f64>> {
        std::fs::read_to_string(p).unwrap().lines().skip(1).map(|l| l.split('\t').map(|v| v.parse().unwrap()).collect()).collect()
    };
    let ours = table(&d.path().join("journal-registration-iterations.tsv"));
    let spam = table(&data().join("reg-options/journal-registration-iterations.tsv"));
    assert_eq!(ours[0][0], 2.0, "the coarse level comes first");
    let bin1: Vec<&Vec<f64>> = ours.iter().filter(|r| r[0] == 1.0).collect();
    assert_eq!(bin1.len(), spam.len());
    for (o, w) in bin1.iter().zip(&spam) {
        assert_eq!(o[1], w[0], "iteration");
        assert!((o[2] - w[1]).abs() < 1e-5 * w[1], "error {} vs {}", o[2], w[1]);
        assert!((o[3] - w[2]).abs() < 1e-6, "‖δΦ‖ {} vs {}", o[3], w[2]);
        // Φ is about the image centre (as the registration's): its translation is spam's t.
        for (k, col) in [7usize, 11, 15].iter().enumerate() {
            assert!((o[*col] - w[3 + k]).abs() < 1e-6, "t[{k}] {} vs {}", o[*col], w[3 + k]);
        }
    }
    let reg = PhiField::read(&d.path().join("journal-registration.tsv")).unwrap();
    let last = bin1.last().unwrap();
    assert!((last[7] - reg.phis[0][(0, 3)]).abs() < 1e-6);
}

/// -gm gaussian: spam 0.9.1 ignores it (its register never passes the method on), so the check
/// is exact truth: a sub-voxel translation of a synthetic speckle recovered within 0.02
/// voxel with σ = 0.7, and -rmc without a mask accepted (spam's behaviour: Φ at the centre).
#[test]
fn gaussian_gradient_recovers_synthetic_translation() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    dvc(&["synth", &s(&dir), "--shape", "48", "--speckle", "5", "--translate", "0.4", "-0.7", "1.2", "-q"]);
    dvc(&["reg", &s(&dir.join("im1.zarr")), &s(&dir.join("im2.zarr")), "-bb", "2", "-gm", "gaussian", "-gs", "0.7", "-rmc", "-od", &s(d.path()), "-pre", "g", "-q"]);
    let r = PhiField::read(&d.path().join("g-registration.tsv")).unwrap();
    assert_eq!(r.return_status[0].code(), 2);
    for (k, t) in [0.4, -0.7, 1.2].iter().enumerate() {
        assert!((r.phis[0][(k, 3)] - t).abs() < 0.02, "axis {k}: {}", r.phis[0][(k, 3)]);
    }
    fails(&["reg", &s(&dir.join("im1.zarr")), &s(&dir.join("im2.zarr")), "-gm", "sobel"], "sobel");
}

/// The streamed registration (reg) and the in-memory one (ldic's windows) give the same Φ with
/// the Gaussian gradient, with -shift, and with both and -ug.
#[test]
fn streamed_and_in_memory_agree_with_the_new_options() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    dvc(&["synth", &s(&dir), "--shape", "40", "--speckle", "5", "--translate", "0.3", "-0.45", "0.2", "-q"]);
    let (a, b) = (open(&dir.join("im1.zarr")), open(&dir.join("im2.zarr")));
    let n = a.shape();
    let all = |v: &Volume| v.read_box(0..n[0] as i64, 0..n[1] as i64, 0..n[2] as i64).unwrap();
    let (aa, bb) = (all(&a), all(&b));
    let base = RegisterOptions::default();
    for o in [
        RegisterOptions { gradient: GradientMethod::Gaussian { sigma: 0.8 }, ..base.clone() },
        RegisterOptions { shift: true, ..base.clone() },
        RegisterOptions { shift: true, order: 3, ..base.clone() },
        RegisterOptions { shift: true, update_gradient: true, gradient: GradientMethod::Gaussian { sigma: 0.6 }, ..base.clone() },
    ] {
        let init = dvc_stream::phi::Phi::identity();
        let m = register(&aa.view(), &bb.view(), None, Some(&init), &o).unwrap();
        let v = register_volumes(&a, &b, None, Some(&init), &o).unwrap();
        assert_eq!(m.return_status.code(), 2, "{o:?}");
        assert_eq!((m.return_status, m.iterations), (v.return_status, v.iterations), "{o:?}");
        for i in 0..3 {
            for j in 0..4 {
                assert!((m.phi[(i, j)] - v.phi[(i, j)]).abs() < 1e-5, "{o:?} Φ[{i}][{j}] {} vs {}", m.phi[(i, j)], v.phi[(i, j)]);
            }
            assert!((m.phi[(i, 3)] - [0.3, -0.45, 0.2][i]).abs() < 0.02, "{o:?}: {}", m.phi[(i, 3)]);
        }
    }
}

/// ldic -shift on an exact 80³ speckle moved by 0.25 voxel on every axis (bench/shift.sh):
/// trilinear's bias (0.0125 measured) falls below 0.003 (measured 0.0013), spread ≤ 0.002
/// (measured 0.0012); with -o 3 the bias stays ≤ 0.0005 (measured 0.00004).
#[test]
fn ldic_shift_bias_and_spread() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    dvc(&["synth", &s(&dir), "--shape", "80", "--speckle", "5", "--translate", "0.25", "0.25", "0.25", "--truth-ns", "10", "-q"]);
    let stats = |pre: &str, flags: &[&str]| -> (f64, f64) {
        let mut args = vec!["ldic", "-ns", "10", "-hws", "10", "-od"];
        let od = s(d.path());
        let (i1, i2) = (s(&dir.join("im1.zarr")), s(&dir.join("im2.zarr")));
        args.extend([od.as_str(), "-pre", pre, "-q", i1.as_str(), i2.as_str()]);
        args.extend(flags);
        dvc(&args);
        let got = PhiField::read(&d.path().join(format!("{pre}-ldic.parquet"))).unwrap();
        let e: Vec<f64> = (0..got.len())
            .filter(|&i| (0..3).all(|k| (20.0..=60.0).contains(&got.positions[i][k])))
            .flat_map(|i| (0..3).map(move |k| (i, k)))
            .map(|(i, k)| got.phis[i][(k, 3)] - 0.25)
            .collect();
        assert_eq!(e.len(), 375);
        let mean = e.iter().sum::<f64>() / e.len() as f64;
        (mean, (e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / e.len() as f64).sqrt())
    };
    let (plain, _) = stats("o1", &["-o", "1"]);
    let (bias, sd) = stats("o1s", &["-o", "1", "-shift"]);
    assert!(plain > 0.008, "trilinear's own bias must show: {plain}");
    assert!(bias.abs() < 0.003 && sd < 0.002, "-shift: bias {bias}, sd {sd}");
    let (bias3, sd3) = stats("o3s", &["-o", "3", "-shift"]);
    assert!(bias3.abs() < 0.0005 && sd3 < 0.001, "-o 3 -shift: bias {bias3}, sd {sd3}");
}

/// ddic -d (spam's debug mode, as files) on example row 25: a report row per label with the
/// result the table holds, the residual on the label's voxels cut by the registration, and a
/// picture per label.
#[test]
fn ddic_debug_reports_each_label() {
    let ex = common::examples();
    let d = tempfile::tempdir().unwrap();
    dvc(&[
        "ddic", &inputs("im1.tif"), &inputs("lab1.tif"), &inputs("im2.tif"), "-pf", &s(&ex.join("pixelSearch/psLab-pixelSearch.tsv")), "-od", &s(d.path()), "-d", "-q",
    ]);
    let field = PhiField::read(&d.path().join("im1-im2-ddic.tsv")).unwrap();
    let text = std::fs::read_to_string(d.path().join("im1-im2-ddic-debug.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split('\t').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 8);
    for r in &rows {
        let l = r[col("Label")] as usize;
        assert_eq!(r[col("returnStatus")], field.return_status[l].value());
        assert_eq!(r[col("iterations")], field.iterations[l]);
        assert!((r[col("Zdisp")] - field.phis[l][(0, 3)]).abs() < 1e-6);
        // Box: the label's (radius 9 balls) grown by the dilation (1) and the margin (5).
        assert_eq!(r[col("Zhi")] - r[col("Zlo")], (19 + 2 * 6) as f64);
        assert!(r[col("residualAfter")] < 0.5 * r[col("residualBefore")], "label {l}: {r:?}");
        let png = std::fs::read(d.path().join(format!("im1-im2-ddic-debug-label{l}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}

/// A Gaussian wider than the image (`-gs 1e6`: a reach of 4·10⁶ voxels) is refused in one
/// line before its extended box is allocated, on the streamed (reg) and in-memory (ldic) paths.
#[test]
fn gaussian_wider_than_the_image_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let ex = common::examples();
    let (im1, im2, od) = (s(&ex.join("inputs/im1.tif")), s(&ex.join("inputs/im2.tif")), s(d.path()));
    fails(&["reg", &im1, &im2, "-gm", "gaussian", "-gs", "1e6", "-od", &od, "-q"], "the Gaussian reaches 4000000 voxels");
    fails(&["reg", &im1, &im2, "-gm", "gaussian", "-gs", "-1", "-od", &od, "-q"], "-1");
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing written");
    let o = RegisterOptions { gradient: GradientMethod::Gaussian { sigma: 100.0 }, ..RegisterOptions::default() };
    let a = ndarray::Array3::<f32>::zeros((20, 20, 20));
    let e = register(&a.view(), &a.view(), None, None, &o).unwrap_err();
    assert!(format!("{e}").contains("the Gaussian reaches 400 voxels"), "{e}");
}
