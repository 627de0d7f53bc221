//! pixel-search and pixel-search-propagate against spam's example outputs (examples/README.md
//! rows 3, 17, 24, 27, 28, 29) and against exact synthetic truth.

use std::path::Path;
use std::process::Command;

use dvc_stream::field::PhiField;

mod common;
use common::{dvc, examples, s};

/// The exact (f64) CC of the window of half-size `hws` at `p` in im1 and at `p + d` in im2.
fn exact_cc(images: (&str, &str), p: nalgebra::Vector3<f64>, hws: i64, d: nalgebra::Vector3<f64>) -> f64 {
    let cache = dvc_stream::store::ChunkCache::new(1 << 24);
    let a = dvc_stream::store::Volume::open(Path::new(images.0), cache.clone()).unwrap();
    let b = dvc_stream::store::Volume::open(Path::new(images.1), cache).unwrap();
    let r = |v: &dvc_stream::store::Volume, c: nalgebra::Vector3<f64>| {
        let c = c.map(|x| x as i64);
        v.read_box(c[0] - hws..c[0] + hws + 1, c[1] - hws..c[1] + hws + 1, c[2] - hws..c[2] + hws + 1).unwrap()
    };
    dvc_stream::kernels::ncc::cc_at(&r(&a, p).view(), &r(&b, p + d).view(), [0, 0, 0])
}

/// Rows of spam's file against ours: same positions, and the same integer displacement and
/// status wherever spam's CC ≥ 0.95. Where the displacements differ, spam's approximate CC
/// (f32 sums, fast inverse square root) picked a worse offset: ours must correlate better,
/// measured exactly on the images. Returns how many rows were compared.
fn agree(ours: &Path, spam: &Path) -> usize {
    agree_on(ours, spam, None)
}

fn agree_on(ours: &Path, spam: &Path, images: Option<(&str, &str, i64)>) -> usize {
    let a = PhiField::read(ours).unwrap();
    let b = PhiField::read(spam).unwrap();
    assert!(b.len() <= a.len(), "{} rows vs spam's {}", a.len(), b.len());
    let mut n = 0;
    for i in 0..b.len() {
        assert_eq!(a.positions[i], b.positions[i], "row {i}");
        if b.cc[i] >= 0.95 {
            assert_eq!(a.return_status[i], b.return_status[i], "status of row {i}");
            let (ta, tb) = (dvc_stream::phi::translation(&a.phis[i]), dvc_stream::phi::translation(&b.phis[i]));
            if ta != tb {
                let (im1, im2, hws) = images.unwrap_or_else(|| panic!("row {i}: {ta:?} vs spam's {tb:?}"));
                let (ours_cc, spams_cc) = (exact_cc((im1, im2), a.positions[i], hws, ta), exact_cc((im1, im2), a.positions[i], hws, tb));
                assert!(ours_cc > spams_cc, "row {i}: {ta:?} (exact CC {ours_cc}) vs spam's {tb:?} (exact CC {spams_cc})");
                assert!((ta - tb).abs().max() <= 1.0, "row {i}: a near tie only");
            }
            // Our CC is exact (f64, true square root): at least spam's approximate value.
            assert!(a.cc[i] >= b.cc[i] - 1e-3 && a.cc[i] <= 1.0 + 1e-12, "row {i}: CC {} vs spam {}", a.cc[i], b.cc[i]);
            n += 1;
        }
    }
    n
}

#[test]
fn rows_3_17_24_27_28_29_of_spams_examples() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let inp = |f: &str| s(&ex.join("inputs").join(f));
    let (im1, im2, im3, lab1) = (inp("im1.tif"), inp("im2.tif"), inp("im3.tif"), inp("lab1.tif"));
    // Row 3: grid, ±3, with TIFF and VTK.
    let out = dvc(&["pixel-search", &im1, &im2, "-np", "2", "-ns", "15", "-hws", "5", "-sr", "-3", "3", "-3", "3", "-3", "3", "-od", &od, "-tif", "-vtk", "-q"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("returnStatus 1: 27 →"));
    assert_eq!(agree(&d.path().join("im1-im2-pixelSearch.tsv"), &ex.join("pixelSearch/im1-im2-pixelSearch.tsv")), 27);
    agree(&d.path().join("im1-im2-pixelSearch.parquet"), &ex.join("pixelSearch/im1-im2-pixelSearch.tsv"));
    let ours = std::fs::read_to_string(d.path().join("im1-im2-pixelSearch.tsv")).unwrap();
    let theirs = std::fs::read_to_string(ex.join("pixelSearch/im1-im2-pixelSearch.tsv")).unwrap();
    assert_eq!(ours.lines().next(), theirs.lines().next(), "spam's header");
    let vtk = std::fs::read_to_string(d.path().join("im1-im2-pixelSearch.vtk")).unwrap();
    let want = std::fs::read_to_string(ex.join("pixelSearch/im1-im2-pixelSearch.vtk")).unwrap();
    assert_eq!(common::vtk_layout_but_origin(&vtk), common::vtk_layout_but_origin(&want), "VTK layout as spam's");
    common::assert_origin_at_first_node(&d.path().join("im1-im2-pixelSearch.vtk"), &d.path().join("im1-im2-pixelSearch.tsv"));
    for c in ["Zdisp", "Ydisp", "Xdisp", "CC", "returnStatus"] {
        let t = d.path().join(format!("im1-im2-pixelSearch-{c}.tif"));
        let v = dvc_stream::store::Volume::open(&t, dvc_stream::store::ChunkCache::new(1 << 20)).unwrap();
        assert_eq!(v.shape(), [3, 3, 3], "{c}");
    }
    // Row 17: im1 → im3 (rotation and stretch), ±2, ns 10.
    dvc(&["pixel-search", &im1, &im3, "-ns", "10", "-hws", "5", "-sr", "-2", "2", "-2", "2", "-2", "2", "-od", &od, "-pre", "ps13", "-q"]);
    assert!(agree_on(&d.path().join("ps13-pixelSearch.tsv"), &ex.join("pixelSearch/ps13-pixelSearch.HEAD30.tsv"), Some((&im1, &im3, 5))) >= 20);
    // Row 24: labels.
    dvc(&["pixel-search", &im1, &im2, "-lab1", &lab1, "-sr", "-3", "3", "-3", "3", "-3", "3", "-od", &od, "-pre", "psLab", "-vtk", "-q"]);
    assert_eq!(agree(&d.path().join("psLab-pixelSearch.tsv"), &ex.join("pixelSearch/psLab-pixelSearch.tsv")), 8);
    let lab = PhiField::read(&d.path().join("psLab-pixelSearch.tsv")).unwrap();
    let spam_lab = PhiField::read(&ex.join("pixelSearch/psLab-pixelSearch.tsv")).unwrap();
    assert_eq!(lab.row(0), spam_lab.row(0), "the background row");
    for l in 1..9 {
        // With masks the error is computed in floating point by both: the same value.
        assert!((lab.error[l] - spam_lab.error[l]).abs() < 1e-4 * spam_lab.error[l], "label {l}");
    }
    let glyphs = std::fs::read_to_string(d.path().join("psLab-pixelSearch.vtk")).unwrap();
    let want = std::fs::read_to_string(ex.join("pixelSearch/psLab-pixelSearch.vtk")).unwrap();
    assert_eq!(glyphs.lines().take(16).collect::<Vec<_>>(), want.lines().take(16).collect::<Vec<_>>(), "glyph points as spam's");
    // Row 27: propagation on a grid.
    dvc(&["pixel-search-propagate", &im1, &im3, "-sp", "30", "30", "30", "1", "-2", "1", "-ns", "15", "-hws", "5", "-sr", "-2", "2", "-2", "2", "-2", "2", "-od", &od, "-pre", "psp", "-tif", "-vtk", "-q"]);
    assert_eq!(agree_on(&d.path().join("psp-pixelSearchPropagate.tsv"), &ex.join("pixelSearchPropagate/psp-pixelSearchPropagate.tsv"), Some((&im1, &im3, 5))), 27);
    assert!(d.path().join("psp-pixelSearchPropagate-Xdisp.tif").exists());
    common::assert_origin_at_first_node(&d.path().join("psp-pixelSearchPropagate.vtk"), &d.path().join("psp-pixelSearchPropagate.tsv"));
    // Row 28: labels. spam attaches results to the wrong labels; ours must equal the plain
    // label search of row 24, label by label.
    dvc(&["pixel-search-propagate", &im1, &im2, "-sp", "17", "17", "17", "1", "-2", "1", "-lab1", &lab1, "-sr", "-2", "2", "-2", "2", "-2", "2", "-od", &od, "-pre", "pspLab", "-q"]);
    let psp = PhiField::read(&d.path().join("pspLab-pixelSearchPropagate.tsv")).unwrap();
    let spam_psp = PhiField::read(&ex.join("pixelSearchPropagate/pspLab-pixelSearchPropagate.tsv")).unwrap();
    assert_eq!(psp.len(), 9);
    for l in 1..9 {
        assert_eq!(psp.positions[l], spam_lab.positions[l]);
        assert_eq!(psp.return_status[l].code(), 1);
        for k in 0..3 {
            assert_eq!(psp.phis[l][(k, 3)], spam_lab.phis[l][(k, 3)], "label {l}");
        }
        assert!((psp.error[l] - spam_lab.error[l]).abs() < 1e-4 * spam_lab.error[l], "label {l}: our error is label {l}'s");
    }
    assert!((1..9).any(|l| (spam_psp.error[l] - spam_lab.error[l]).abs() > 0.1), "spam's row 28 has the labels mixed up");
    // Row 29: guiding points (spam crashes): the first point is the start.
    let gp = d.path().join("gp.txt");
    std::fs::write(&gp, "30 30 30\n15 15 15\n45 45 45\n").unwrap();
    dvc(&["pixel-search-propagate", &im1, &im2, "-gp", &s(&gp), "-sp", "30", "30", "30", "1", "-2", "1", "-od", &od, "-pre", "gp", "-vtk", "-q"]);
    let g = PhiField::read(&d.path().join("gp-pixelSearchPropagate.tsv")).unwrap();
    assert_eq!(g.len(), 3);
    for i in 0..3 {
        assert_eq!(dvc_stream::phi::translation(&g.phis[i]), nalgebra::Vector3::new(1.0, -2.0, 1.0), "point {i}");
        assert!(g.cc[i] > 0.999);
    }
    assert_eq!(g.positions[2], nalgebra::Vector3::new(45.0, 45.0, 45.0));
}

/// Whether the window of half-size h at p, and its image under u, lie inside an n³ volume.
fn inside(p: &nalgebra::Vector3<f64>, u: &nalgebra::Vector3<f64>, h: f64, n: f64) -> bool {
    (0..3).all(|k| p[k] - h >= 0.0 && p[k] + h < n && p[k] + u[k] - h >= 0.0 && p[k] + u[k] + h < n)
}

#[test]
fn large_translations_and_two_blocks_are_found_exactly() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    // Translation (20, −25, 15), plus a step of 8 voxels in X between the halves z < 47.5
    // and z > 47.5 (a band of width 0.3): two blocks moving differently.
    dvc(&["synth", &s(&dir), "--shape", "96", "--speckle", "4", "--translate", "20", "-25", "15", "--field", "band:8:0.3", "--truth-ns", "16", "-q"]);
    for method in ["fft", "direct"] {
        let pre = format!("big-{method}");
        dvc(&["pixel-search", &s(&dir.join("im1.zarr")), &s(&dir.join("im2.zarr")), "-ns", "16", "-hws", "5", "-sr", "-25", "25", "-25", "25", "-25", "25",
            "--method", method, "-od", &s(d.path()), "-pre", &pre, "-q"]);
        let got = PhiField::read(&d.path().join(format!("{pre}-pixelSearch.parquet"))).unwrap();
        let truth = PhiField::read(&dir.join("truth.parquet")).unwrap();
        assert_eq!(got.len(), truth.len());
        let mut checked = 0;
        for i in 0..got.len() {
            let p = got.positions[i];
            let u = dvc_stream::phi::translation(&truth.phis[i]);
            // Textured points: both windows inside the volume, away from the step.
            if !inside(&p, &u, 5.0, 96.0) || (p[0] - 47.5).abs() < 7.0 {
                continue;
            }
            assert_eq!(dvc_stream::phi::translation(&got.phis[i]), u.map(|v| v.round()), "node {i} at {p:?}");
            assert!(got.cc[i] >= 0.99, "node {i}: CC {}", got.cc[i]);
            checked += 1;
        }
        assert!(checked >= 40, "{checked} points checked");
    }
}

#[test]
fn propagation_follows_a_20_voxel_gradient_where_plain_search_fails() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    // Shear: X displacement 0.21·(z − 47.5), from −10 to +10 across the volume.
    dvc(&["synth", &s(&dir), "--shape", "96", "--speckle", "4", "--field", "shear:0.21", "--truth-ns", "8", "-q"]);
    let (im1, im2) = (s(&dir.join("im1.zarr")), s(&dir.join("im2.zarr")));
    dvc(&["pixel-search-propagate", &im1, &im2, "-sp", "48", "48", "48", "0", "0", "0", "-hws", "5", "-ns", "8", "-sr", "-2", "2", "-2", "2", "-2", "2",
        "-cct", "0.97", "-od", &s(d.path()), "-q"]);
    dvc(&["pixel-search", &im1, &im2, "-hws", "5", "-ns", "8", "-sr", "-5", "5", "-5", "5", "-5", "5", "-od", &s(d.path()), "-q"]);
    let truth = PhiField::read(&dir.join("truth.parquet")).unwrap();
    let prop = PhiField::read(&d.path().join("im1-im2-pixelSearchPropagate.parquet")).unwrap();
    let plain = PhiField::read(&d.path().join("im1-im2-pixelSearch.parquet")).unwrap();
    let (mut n, mut exact, mut plain_wrong) = (0, 0, 0);
    for i in 0..truth.len() {
        let p = truth.positions[i];
        let u = dvc_stream::phi::translation(&truth.phis[i]);
        if !inside(&p, &u, 5.0, 96.0) {
            continue;
        }
        n += 1;
        let err = |f: &PhiField| (dvc_stream::phi::translation(&f.phis[i]) - u.map(|v| v.round())).abs().max();
        // A sheared window has no single integer displacement: within one voxel of the
        // nearest integer everywhere, and on it nearly everywhere.
        assert!(err(&prop) <= 1.0, "node {i} at {p:?}: {:?} vs {u:?}", dvc_stream::phi::translation(&prop.phis[i]));
        exact += (err(&prop) == 0.0) as usize;
        plain_wrong += (err(&plain) > 1.0) as usize;
    }
    assert!(n > 1000);
    assert!(exact as f64 > 0.8 * n as f64, "{exact} of {n} exact");
    assert!(plain_wrong as f64 > 0.25 * n as f64, "plain ±5 search fails beyond its range ({plain_wrong} of {n})");
    // With the zero-normalised coefficient, wrong matches score low, and spam's default
    // -cct 0.9 is enough to keep them from guiding their neighbours.
    dvc(&["pixel-search-propagate", &im1, &im2, "-sp", "48", "48", "48", "0", "0", "0", "-hws", "5", "-ns", "8", "-sr", "-2", "2", "-2", "2", "-2", "2",
        "--zero-mean", "-od", &s(d.path()), "-pre", "zm", "-q"]);
    let zm = PhiField::read(&d.path().join("zm-pixelSearchPropagate.parquet")).unwrap();
    for i in 0..truth.len() {
        let u = dvc_stream::phi::translation(&truth.phis[i]);
        if inside(&truth.positions[i], &u, 5.0, 96.0) {
            assert!((dvc_stream::phi::translation(&zm.phis[i]) - u.map(|v| v.round())).abs().max() <= 1.0, "node {i}");
        }
    }
}

#[test]
fn masks_guesses_and_bad_arguments() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let inp = |f: &str| s(&ex.join("inputs").join(f));
    let (im1, im2, im3) = (inp("im1.tif"), inp("im2.tif"), inp("im3.tif"));
    // A mask on im1 (0 where X ≥ 45): windows mostly masked are skipped.
    let out = dvc(&["pixel-search", &im1, &im2, "-ns", "10", "-hws", "5", "-mf1", &inp("mask1.tif"), "-od", &od, "-pre", "m", "-q"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(", -5: 25 →"), "{}", String::from_utf8_lossy(&out.stderr));
    let m = PhiField::read(&d.path().join("m-pixelSearch.tsv")).unwrap();
    for i in 0..m.len() {
        if m.return_status[i].code() == 1 {
            // Within a voxel of the true (1.2, −2.4, 0.8): a partly masked window may round
            // either way.
            assert!((dvc_stream::phi::translation(&m.phis[i]) - nalgebra::Vector3::new(1.2, -2.4, 0.8)).abs().max() < 1.0, "node {i}");
        } else {
            assert!(m.phis[i][(0, 3)].is_nan() && m.error[i].is_infinite() && m.cc[i] == 0.0);
        }
    }
    // A registration guess with F (rotation, stretch) deforms window 1 (-F all): the
    // correlation is better than with the translation alone (-F no).
    let reg = s(&ex.join("reg/im1-im3-registration.tsv"));
    dvc(&["pixel-search", &im1, &im3, "-ns", "15", "-hws", "5", "-pf", &reg, "-sr", "-1", "1", "-1", "1", "-1", "1", "-od", &od, "-pre", "fall", "-q"]);
    dvc(&["pixel-search", &im1, &im3, "-ns", "15", "-hws", "5", "-pf", &reg, "-F", "no", "-sr", "-1", "1", "-1", "1", "-1", "1", "-od", &od, "-pre", "fno", "-q"]);
    let (fa, fno) = (PhiField::read(&d.path().join("fall-pixelSearch.tsv")).unwrap(), PhiField::read(&d.path().join("fno-pixelSearch.tsv")).unwrap());
    let mean = |f: &PhiField| f.cc.iter().sum::<f64>() / f.len() as f64;
    assert!(mean(&fa) > mean(&fno), "{} vs {}", mean(&fa), mean(&fno));
    assert!((dvc_stream::phi::f_block(&fa.phis[13])[(0, 0)] - 1.02).abs() < 0.01, "the guess's F is kept in the output");
    // Sub-voxel refinement moves the integer answer towards the true (1.2, −2.4, 0.8).
    dvc(&["pixel-search", &im1, &im2, "-ns", "15", "-hws", "8", "--subvoxel", "-od", &od, "-pre", "sub", "-q"]);
    let sub = PhiField::read(&d.path().join("sub-pixelSearch.tsv")).unwrap();
    let t = dvc_stream::phi::translation(&sub.phis[13]);
    assert!((t - nalgebra::Vector3::new(1.2, -2.4, 0.8)).abs().max() < 0.2, "{t:?}");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).output().unwrap();
    for (args, says) in [
        (vec!["pixel-search", &im1, &im2, "-ns", "15", "-od", &od], "half-window-size"),
        (vec!["pixel-search", &im1, &im2, "-ns", "15", "-hws", "5", "-sr", "3", "-3", "0", "0", "0", "0", "-od", &od], "search-range"),
        (vec!["pixel-search", &im1, &im2, "-lab1", &inp("lab2.tif"), "-pf", &s(&ex.join("pixelSearch/psLab-pixelSearch.tsv")), "-od", &od], "labels"),
        (vec!["pixel-search-propagate", &im1, &im2, "-od", &od], "start-point"),
        (vec!["pixel-search-propagate", &im1, &im2, "-sp", "30", "30", "30", "9", "9", "9", "-sr", "0", "0", "0", "0", "0", "0", "-cct", "0.99", "-od", &od], "cc-threshold"),
        (vec!["pixel-search-propagate", &im1, &im2, "-sp", "2", "2", "2", "0", "0", "0", "-lab1", &inp("lab1.tif"), "-od", &od], "background"),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(e.contains(says), "'{says}' in {e}");
    }
}
