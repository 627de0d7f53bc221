//! 2D images (one slice) in the grid and field tools, against spam 0.9.1's own 2D runs
//! (tests/data/spam-0.9.1/2d/README.md rows 3, 4, 6, 7, 8, 11, 12, 13), run with the program
//! name changed to dvc-stream: pixel-search (grid, labels, a Z range of 0 whatever -sr says),
//! pixel-search-propagate (spam crashes in 2D), regular-strain (Q4, Geers), pass-phi-field and
//! filter-phi-field on spam's 2D ldic field, plot, ereg and view on a single slice. Also
//! pass-phi-field's merge of discrete results (-pf2 -pf2b -mpl) against spam's own runs.

use std::path::{Path, PathBuf};

use dvc_stream::field::tsv::read_table;
use dvc_stream::field::PhiField;
use dvc_stream::phi;
use dvc_stream::store::{ChunkCache, Volume};
use nalgebra::Vector3;

mod common;
use common::server::{exchange, Server};
use common::{dvc, examples, fails, s};

fn two_d() -> PathBuf {
    examples().join("2d")
}

fn inp(f: &str) -> String {
    s(&two_d().join("inputs").join(f))
}

fn spam_out(f: &str) -> PathBuf {
    two_d().join("out").join(f)
}

fn read(p: &Path) -> PhiField {
    PhiField::read(p).unwrap()
}

fn open(p: &Path) -> Volume {
    Volume::open(p, ChunkCache::new(1 << 24)).unwrap()
}

/// The exact (f64) CC of the 1×(2h+1)×(2h+1) window at `p` in im1 and at `p + d` in im2.
fn exact_cc_2d(im1: &str, im2: &str, p: Vector3<f64>, h: i64, d: Vector3<f64>) -> f64 {
    let (a, b) = (open(Path::new(im1)), open(Path::new(im2)));
    let r = |v: &Volume, c: Vector3<f64>| {
        let c = c.map(|x| x as i64);
        v.read_box(0..1, c[1] - h..c[1] + h + 1, c[2] - h..c[2] + h + 1).unwrap()
    };
    dvc_stream::kernels::ncc::cc_at(&r(&a, p).view(), &r(&b, p + d).view(), [0, 0, 0])
}

/// Our pixel search against spam's: same positions and statuses, Φ = I with Zdisp 0, and the
/// same integer displacement, except at near ties where spam's approximate CC (f32 sums, fast
/// inverse square root; docs/spam-differences.md row 6) picked the worse offset: there ours
/// must correlate better, measured exactly. Returns how many rows differ.
fn agree_2d(ours: &Path, spam: &Path, images: (&str, &str), h: i64) -> usize {
    let (a, b) = (read(ours), read(spam));
    assert_eq!(a.len(), b.len());
    let mut differ = 0;
    for i in 0..b.len() {
        assert_eq!(a.positions[i], b.positions[i], "row {i}");
        assert_eq!(a.return_status[i], b.return_status[i], "status of row {i}");
        assert_eq!(phi::f_block(&a.phis[i]), phi::f_block(&b.phis[i]), "F of row {i}");
        let (ta, tb) = (phi::translation(&a.phis[i]), phi::translation(&b.phis[i]));
        assert_eq!(ta[0], 0.0, "row {i}: no Z displacement in 2D");
        if ta != tb {
            let (ca, cb) = (exact_cc_2d(images.0, images.1, a.positions[i], h, ta), exact_cc_2d(images.0, images.1, a.positions[i], h, tb));
            assert!(ca > cb, "row {i}: {ta:?} (exact CC {ca}) vs spam's {tb:?} (exact CC {cb})");
            assert!((ta - tb).abs().max() <= 1.0, "row {i}: a near tie only");
            differ += 1;
        }
        // Ours is the exact coefficient: at least spam's approximation.
        assert!(a.cc[i] >= b.cc[i] - 1e-3 && a.cc[i] <= 1.0 + 1e-12, "row {i}: CC {} vs spam {}", a.cc[i], b.cc[i]);
    }
    differ
}

/// The lines of a VTK file other than its title and its data values.
fn vtk_skeleton(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap().lines().skip(2).filter(|l| !l.starts_with("    ")).map(String::from).collect()
}

/// The values of a TIFF, Z-major.
fn tiff_values(p: &Path) -> ([usize; 3], Vec<f32>) {
    let v = open(p);
    (v.shape(), v.read_all().unwrap().iter().copied().collect())
}

#[test]
fn pixel_search_rows_3_4_13() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let (im1, im2) = (inp("im2d-1.tif"), inp("im2d-2.tif"));
    // Row 3: -sr -4 4 for Z too: a 2D image is searched in its plane only, as spam does.
    dvc(&["pixel-search", &im1, &im2, "-np", "2", "-ns", "15", "-hws", "7", "-sr", "-4", "4", "-4", "4", "-4", "4", "-od", &od, "-vtk", "-tif", "-q"]);
    let ours = d.path().join("im2d-1-im2d-2-pixelSearch.tsv");
    let spam = spam_out("im2d-1-im2d-2-pixelSearch.tsv");
    assert!(agree_2d(&ours, &spam, (&im1, &im2), 7) <= 2, "near ties only");
    let header = |p: &Path| std::fs::read_to_string(p).unwrap().lines().next().unwrap().to_string();
    assert_eq!(header(&ours), header(&spam), "spam's header");
    let layout = |p: &Path| common::vtk_layout_but_origin(&std::fs::read_to_string(p).unwrap());
    assert_eq!(layout(&d.path().join("im2d-1-im2d-2-pixelSearch.vtk")), layout(&spam_out("im2d-1-im2d-2-pixelSearch.vtk")), "VTK layout as spam's: unit cells along Z");
    common::assert_origin_at_first_node(&d.path().join("im2d-1-im2d-2-pixelSearch.vtk"), &d.path().join("im2d-1-im2d-2-pixelSearch.tsv"));
    let (shape, x) = tiff_values(&d.path().join("im2d-1-im2d-2-pixelSearch-Xdisp.tif"));
    let (spam_shape, spam_x) = tiff_values(&spam_out("im2d-1-im2d-2-pixelSearch-Xdisp.tif"));
    assert_eq!((shape, spam_shape), ([1, 10, 10], [1, 10, 10]));
    let table = read(&ours);
    for i in 0..100 {
        assert_eq!(x[i] as f64, table.phis[i][(2, 3)], "TIFF node {i} is the table's");
        if x[i] != spam_x[i] {
            assert!((x[i] - spam_x[i]).abs() <= 1.0);
        }
    }
    // Row 4: Z range 0 0 asked: the same search, the same file.
    dvc(&["pixel-search", &im1, &im2, "-np", "2", "-ns", "15", "-hws", "7", "-sr", "0", "0", "-4", "4", "-4", "4", "-od", &od, "-pre", "ps2", "-q"]);
    agree_2d(&d.path().join("ps2-pixelSearch.tsv"), &spam_out("ps2-pixelSearch.tsv"), (&im1, &im2), 7);
    assert_eq!(std::fs::read(d.path().join("ps2-pixelSearch.tsv")).unwrap(), std::fs::read(&ours).unwrap(), "the Z range is 0 whatever -sr says");
    // Row 13: discs.
    dvc(&["pixel-search", &im1, &im2, "-lab1", &inp("lab2d-1.tif"), "-np", "2", "-sr", "0", "0", "-4", "4", "-4", "4", "-od", &od, "-pre", "psLab", "-q"]);
    let (lab, spam_lab) = (read(&d.path().join("psLab-pixelSearch.tsv")), read(&spam_out("psLab-pixelSearch.tsv")));
    assert_eq!(lab.len(), 7);
    assert_eq!(lab.row(0), spam_lab.row(0), "the background row");
    for l in 1..7 {
        assert_eq!(lab.positions[l], spam_lab.positions[l], "label {l}");
        assert_eq!(lab.return_status[l], spam_lab.return_status[l], "label {l}");
        assert_eq!(lab.phis[l], spam_lab.phis[l], "label {l}");
        assert!((lab.error[l] - spam_lab.error[l]).abs() < 1e-4 * spam_lab.error[l], "label {l}: error {} vs spam {}", lab.error[l], spam_lab.error[l]);
    }
}

#[test]
fn propagate_row_6_where_spam_crashes() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let (im1, im3) = (inp("im2d-1.tif"), inp("im2d-3.tif"));
    dvc(&["pixel-search-propagate", &im1, &im3, "-sp", "0", "80", "80", "0", "-2", "1", "-ns", "15", "-hws", "7", "-sr", "0", "0", "-2", "2", "-2", "2", "-od", &od, "-pre", "psp", "-vtk", "-tif", "-q"]);
    let f = read(&d.path().join("psp-pixelSearchPropagate.tsv"));
    // The truth: spam's registration of the same pair (2° about Z, 2 % along Y, a shift).
    let reg = read(&spam_out("im2d-1-im2d-3-registration.tsv"));
    let grid = read(&spam_out("im2d-1-im2d-2-pixelSearch.tsv"));
    assert_eq!(f.len(), 100);
    for i in 0..f.len() {
        assert_eq!(f.positions[i], grid.positions[i], "spam's 2D grid: Z = 0, 15, 30, ... in Y and X");
        assert_eq!(f.return_status[i].code(), 1, "node {i}");
        assert!(f.cc[i] > 0.99, "node {i}: CC {}", f.cc[i]);
        let t = phi::translation(&f.phis[i]);
        let truth = phi::translation_at(&reg.phis[0], &reg.positions[0], &f.positions[i]);
        assert_eq!(t[0], 0.0);
        assert!((t - truth).abs().max() < 1.5, "node {i}: {t:?} vs {truth:?}");
        // Where the integer found is not the rounded truth, it correlates better than it
        // (unless the window there runs off the 160 × 160 image and cannot be searched).
        let rounded = truth.map(f64::round);
        let inside = (1..3).all(|k| f.positions[i][k] + rounded[k] - 7.0 >= 0.0 && f.positions[i][k] + rounded[k] + 7.0 < 160.0);
        if t != rounded && inside {
            assert!(exact_cc_2d(&im1, &im3, f.positions[i], 7, t) > exact_cc_2d(&im1, &im3, f.positions[i], 7, rounded), "node {i}");
        }
    }
    let vtk = vtk_skeleton(&d.path().join("psp-pixelSearchPropagate.vtk"));
    assert!(vtk.contains(&"ASPECT_RATIO 15 15 1".to_string()) && vtk.contains(&"ORIGIN 7.5 7.5 -0.5".to_string()), "{vtk:?}");
    common::assert_origin_at_first_node(&d.path().join("psp-pixelSearchPropagate.vtk"), &d.path().join("psp-pixelSearchPropagate.tsv"));
    assert_eq!(tiff_values(&d.path().join("psp-pixelSearchPropagate-Ydisp.tif")).0, [1, 10, 10]);
    // Labels: the same search around each disc's neighbours.
    dvc(&["pixel-search-propagate", &im1, &inp("im2d-2.tif"), "-sp", "0", "40", "40", "0", "-2", "1", "-lab1", &inp("lab2d-1.tif"), "-sr", "0", "0", "-2", "2", "-2", "2", "-od", &od, "-pre", "pspLab", "-q"]);
    let (psp, lab) = (read(&d.path().join("pspLab-pixelSearchPropagate.tsv")), read(&spam_out("psLab-pixelSearch.tsv")));
    for l in 1..7 {
        assert_eq!(phi::translation(&psp.phis[l]), phi::translation(&lab.phis[l]), "label {l} as spam's plain label search");
    }
}

/// Columns of spam's table against ours, row by row (`rows`: only these), to `tol`.
fn columns_agree(ours: &Path, spam: &Path, rows: &dyn Fn(usize) -> bool, skip: &[&str], tol: f64) {
    let (a, b) = (read_table(ours).unwrap(), read_table(spam).unwrap());
    assert_eq!(a.columns, b.columns, "spam's columns, in its order");
    assert_eq!(a.rows.len(), b.rows.len());
    for (k, name) in b.columns.iter().enumerate() {
        if skip.contains(&name.as_str()) {
            continue;
        }
        for (i, row) in b.rows.iter().enumerate().filter(|(i, _)| rows(*i)) {
            let (x, y) = (a.rows[i][k], row[k]);
            assert!((x.is_nan() && y.is_nan()) || (x - y).abs() <= tol, "{} {name} row {i}: {x} vs spam {y}", ours.display());
        }
    }
}

#[test]
fn regular_strain_rows_7_8() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let pf = s(&spam_out("im2d-1-im2d-3-ldic.tsv"));
    // Row 7: Q4 cells, TIFF and VTK.
    dvc(&["regular-strain", "-pf", &pf, "-np", "2", "-comp", "vol", "dev", "e", "U", "r", "-tif", "-vtk", "-od", &od, "-q"]);
    let ours = d.path().join("im2d-1-im2d-3-ldic-strain-Q4.tsv");
    columns_agree(&ours, &spam_out("im2d-1-im2d-3-ldic-strain-Q4.tsv"), &|_| true, &["Zpos"], 2e-7);
    // spam puts Q4 points at Z = 0.5 (it adds 1 to the Z spacing in place); ours stay on the
    // layer (docs/spam-differences.md row 14).
    let t = read_table(&ours).unwrap();
    assert!(t.rows.iter().all(|r| r[1] == 0.0));
    assert_eq!(t.rows.len(), 81, "9 × 9 cells between 10 × 10 nodes");
    assert_eq!(vtk_skeleton(&d.path().join("im2d-1-im2d-3-ldic-strain-Q4.vtk")), vtk_skeleton(&spam_out("im2d-1-im2d-3-ldic-strain-Q4.vtk")));
    let (shape, exx) = tiff_values(&d.path().join("im2d-1-im2d-3-ldic-exx-Q4.tif"));
    let (spam_shape, spam_exx) = tiff_values(&spam_out("im2d-1-im2d-3-ldic-exx-Q4.tif"));
    assert_eq!((shape, spam_shape), ([1, 9, 9], [1, 9, 9]));
    assert!(exx.iter().zip(&spam_exx).all(|(a, b)| (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-6));
    // spam's set of in-plane pictures (no Z rows of e and U in 2D), plus rz, the in-plane rotation.
    for c in ["vol", "dev", "eyy", "eyx", "exx", "Uyy", "Uyx", "Uxx", "ry", "rx", "rz"] {
        assert!(d.path().join(format!("im2d-1-im2d-3-ldic-{c}-Q4.tif")).exists(), "{c}");
    }
    for c in ["ezz", "ezy", "Uzz", "Uzx"] {
        assert!(!d.path().join(format!("im2d-1-im2d-3-ldic-{c}-Q4.tif")).exists(), "{c}");
    }
    // Row 8: Geers. spam is right where a node's whole neighbourhood is inside the grid and
    // converged: interior nodes away from the failed node 99 (docs/spam-differences.md).
    dvc(&["regular-strain", "-pf", &pf, "-np", "2", "-g", "-comp", "vol", "dev", "e", "-od", &od, "-q"]);
    let geers = d.path().join("im2d-1-im2d-3-ldic-strain-Geers.tsv");
    let interior = |i: usize| {
        let (y, x) = (i / 10, i % 10);
        (1..9).contains(&y) && (1..9).contains(&x) && !(y >= 8 && x >= 8)
    };
    columns_agree(&geers, &spam_out("im2d-1-im2d-3-ldic-strain-Geers.tsv"), &interior, &[], 1e-6);
    let g = read_table(&geers).unwrap();
    let (eyy, ezz) = (g.col(&["eyy"]).unwrap(), g.col(&["ezz"]).unwrap());
    for (i, r) in g.rows.iter().enumerate().take(99) {
        assert!((r[eyy] - 0.02).abs() < 0.006, "node {i}: a near-homogeneous 2 % stretch along Y, borders included: {}", r[eyy]);
        assert_eq!(r[ezz], 0.0);
    }
}

#[test]
fn pass_and_filter_rows_11_12() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let pf = s(&spam_out("im2d-1-im2d-3-ldic.tsv"));
    // Row 11: onto an ns 10 grid over the image. F and statuses are spam's; translations carry
    // each neighbour's lever arm (docs/spam-differences.md row 15), so they land closer to
    // the registration than spam's do.
    dvc(&["pass-phi-field", "-pf", &pf, "-ns", "10", "-im1", &inp("im2d-1.tif"), "-np", "2", "-od", &od, "-q"]);
    let (a, b) = (read(&d.path().join("im2d-1-im2d-3-ldic-passed-ns10.tsv")), read(&spam_out("im2d-1-im2d-3-ldic-passed-ns10.tsv")));
    let reg = read(&spam_out("im2d-1-im2d-3-registration.tsv"));
    assert_eq!(a.len(), 225);
    let (mut ea, mut eb) = (0.0, 0.0);
    for i in 0..b.len() {
        assert_eq!(a.positions[i], b.positions[i]);
        assert_eq!(a.return_status[i], b.return_status[i]);
        assert!((phi::f_block(&a.phis[i]) - phi::f_block(&b.phis[i])).abs().max() < 2e-7, "F of row {i}");
        assert_eq!(a.phis[i][(0, 3)], 0.0);
        let want = phi::translation_at(&reg.phis[0], &reg.positions[0], &a.positions[i]);
        ea += (phi::translation(&a.phis[i]) - want).norm();
        eb += (phi::translation(&b.phis[i]) - want).norm();
    }
    assert!(ea < eb, "ours {ea} vs spam {eb} from the registration");
    // -tif on a 2D grid: Y and X pictures only, as spam.
    dvc(&["pass-phi-field", "-pf", &pf, "-ns", "10", "-im1", &inp("im2d-1.tif"), "-od", &od, "-pre", "t", "-tif", "-q"]);
    assert!(d.path().join("t-passed-ns10-Ydisp.tif").exists() && !d.path().join("t-passed-ns10-Zdisp.tif").exists());
    // Row 12: median filter, byte for byte spam's file.
    dvc(&["filter-phi-field", "-pf", &pf, "-np", "2", "-fm", "-pre", "med", "-od", &od, "-q"]);
    assert_eq!(std::fs::read_to_string(d.path().join("med-filtered.tsv")).unwrap(), std::fs::read_to_string(spam_out("med-filtered.tsv")).unwrap());
}

#[test]
fn merge_grid_and_discrete_as_spam() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let e = |f: &str| s(&ex.join(f));
    let ps = e("pixelSearch/im1-im2-pixelSearch.tsv");
    let (ddic, lab1) = (e("ddic/im1-im2-ddic.tsv"), e("inputs/lab1.tif"));
    // tests/data/spam-0.9.1/passPhiField/merge/README.md: spam's four runs, byte for byte.
    for (pre, extra) in [
        ("ps", vec!["-pf", &ps, "-pf2", &ddic, "-lab1", &lab1]),
        ("two", vec!["-pf", &ps, "-pf2", &e("ddic/lab2-ddic.tsv"), &e("pixelSearch/psLab-pixelSearch.tsv"), "-lab1", &e("inputs/lab2.tif"), &lab1]),
        ("bin2", vec!["-pf", &ps, "-pf2", &ddic, "-lab1", &lab1, "-pf2b", "2"]),
        ("mpl", vec!["-pf", &e("ldic/im1-im3-ldic.tsv"), "-pf2", &ddic, "-lab1", &lab1, "-mpl"]),
    ] {
        let mut args = vec!["pass-phi-field"];
        args.extend(extra);
        args.extend(["-od", &od, "-pre", pre, "-q"]);
        dvc(&args);
        let name = format!("{pre}-passed-merged.tsv");
        assert_eq!(std::fs::read_to_string(d.path().join(&name)).unwrap(), std::fs::read_to_string(ex.join("passPhiField/merge").join(&name)).unwrap(), "{name}");
    }
    // What the merge means: a node inside label l takes l's Φ, moved to the node.
    let (merged, grid, labels) = (read(&d.path().join("ps-passed-merged.tsv")), read(Path::new(&ps)), read(Path::new(&ddic)));
    let lab = open(Path::new(&lab1)).read_all().unwrap();
    let mut inside = 0;
    for i in 0..merged.len() {
        let p = grid.positions[i].map(|v| v as usize);
        let l = lab[[p[0], p[1], p[2]]] as usize;
        if l == 0 {
            assert_eq!(merged.phis[i], grid.phis[i], "node {i} outside the labels keeps the grid's Φ");
        } else {
            inside += 1;
            let want = phi::translation_at(&labels.phis[l], &labels.positions[l], &grid.positions[i]);
            assert!((phi::translation(&merged.phis[i]) - want).norm() < 1e-6, "node {i} in label {l}");
            assert_eq!(merged.return_status[i], labels.return_status[l]);
        }
    }
    assert!(inside >= 8, "{inside} nodes inside labels");
    // Without -mpl, a converged node (status 2) keeps its own Φ; with it, it takes the label's.
    let (ldic, mpl) = (read(&ex.join("ldic/im1-im3-ldic.tsv")), read(&d.path().join("mpl-passed-merged.tsv")));
    dvc(&["pass-phi-field", "-pf", &e("ldic/im1-im3-ldic.tsv"), "-pf2", &ddic, "-lab1", &lab1, "-od", &od, "-pre", "nompl", "-q"]);
    let nompl = read(&d.path().join("nompl-passed-merged.tsv"));
    assert!((0..27).all(|i| ldic.return_status[i].code() != 2 || nompl.phis[i] == ldic.phis[i]));
    assert!((0..27).any(|i| mpl.phis[i] != ldic.phis[i]));
    // Label images at half the grid's resolution (-pf2b 0.5): nodes past the 60³ label image
    // are in no label and keep the grid's Φ (spam would index out of its array).
    dvc(&["pass-phi-field", "-pf", &ps, "-pf2", &ddic, "-lab1", &lab1, "-pf2b", "0.5", "-od", &od, "-pre", "half", "-q"]);
    let half = read(&d.path().join("half-passed-merged.tsv"));
    for i in 0..27 {
        if grid.positions[i].iter().any(|v| *v >= 30.0) {
            assert_eq!(half.phis[i], grid.phis[i], "node {i}");
        }
    }
    // Refusals: one line, status 2, nothing written. A label the discrete file has no row for:
    let short = d.path().join("short.tsv");
    let text = std::fs::read_to_string(ex.join("pixelSearch/psLab-pixelSearch.tsv")).unwrap();
    std::fs::write(&short, text.lines().take(3).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let bad = tempfile::tempdir().unwrap();
    let bd = s(bad.path());
    fails(&["pass-phi-field", "-pf", &ps, "-pf2", &ddic, "-od", &bd], "as many label images");
    fails(&["pass-phi-field", "-pf", &ps, "-pf2", &s(&short), "-lab1", &lab1, "-od", &bd], "short.tsv: label");
    fails(&["pass-phi-field", "-pf", &ps, "-pf2", &ps, "-lab1", &lab1, "-od", &bd], "is not a discrete field");
    fails(&["pass-phi-field", "-pf", &ddic, "-pf2", &ddic, "-lab1", &lab1, "-od", &bd], "is not a grid field");
    fails(&["pass-phi-field", "-pf", &ps, "-pf2", &ddic, "-lab1", &lab1, "-regs", &e("reg/im1-im2-registration.tsv"), "-od", &bd], "two different modes");
    fails(&["pass-phi-field", "-pf", &ps, "-ns", "10", "-im1", &lab1, "-lab1", &lab1, &lab1, "-od", &bd], "more than one is for merging");
    assert!(std::fs::read_dir(bad.path()).unwrap().next().is_none(), "nothing written by failed runs");
    // The merge options without a merge are said to be ignored.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dvc-stream"))
        .args(["pass-phi-field", "-pf", &e("ldic/im1-im3-ldic.tsv"), "-ns", "20", "-im1shape", "60", "60", "60", "-mpl", "-od", &bd, "-q"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("apply to a merge (--phi-file2, -pf2) only; ignored"));
}

#[test]
fn plot_of_a_2d_field() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let pf = s(&spam_out("im2d-1-im2d-3-ldic.tsv"));
    dvc(&["plot", &pf, "-c", "Ydisp", "--background", &inp("im2d-1.tif"), "-od", &od, "-q"]);
    let png = std::fs::read(d.path().join("im2d-1-im2d-3-ldic-Ydisp-z0.png")).unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    assert!(reader.info().width > 300 && reader.info().height > 300);
    // By default, no Zdisp picture of a 2D field (0 by construction); a 2D strain table
    // leaves out the Z rows of its tensors.
    dvc(&["plot", &pf, "-od", &od, "-pre", "q", "-q"]);
    assert!(d.path().join("q-Ydisp-z0.png").exists() && d.path().join("q-returnStatus-z0.png").exists());
    assert!(!d.path().join("q-Zdisp-z0.png").exists());
    dvc(&["regular-strain", "-pf", &pf, "-comp", "e", "r", "-od", &od, "-q"]);
    dvc(&["plot", &s(&d.path().join("im2d-1-im2d-3-ldic-strain-Q4.tsv")), "-od", &od, "-pre", "st", "-q"]);
    assert!(d.path().join("st-eyy-z0.png").exists() && d.path().join("st-rz-z0.png").exists() && !d.path().join("st-ezz-z0.png").exists());
    // The one layer is the only slice across Z.
    fails(&["plot", &pf, "--index", "1", "-od", &od], "outside the grid's 1 nodes");
}

fn get(srv: &Server, path: &str) -> (u16, Vec<u8>) {
    let sep = if path.contains('?') { '&' } else { '?' };
    exchange(&srv.addr, &format!("GET {path}{sep}token={} HTTP/1.1\r\nHost: {}\r\n\r\n", srv.token, srv.addr))
}

/// (height, width, pixels) of a grey PNG answer.
fn grey_png(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    (info.height as usize, info.width as usize, buf[..info.buffer_size()].to_vec())
}

#[test]
fn ereg_and_view_serve_a_single_slice() {
    use dvc_stream::view::render::grey;
    let d = tempfile::tempdir().unwrap();
    let (im1, im3) = (inp("im2d-1.tif"), inp("im2d-3.tif"));
    let plane = open(Path::new(&im1)).read_all().unwrap();
    let (lo, hi) = (10000.0f32, 50000.0f32);
    let check_slice = |srv: &Server, path: &str| {
        let (st, body) = get(srv, path);
        assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let (h, w, px) = grey_png(&body);
        assert_eq!((h, w), (160, 160));
        let z0 = plane.index_axis(ndarray::Axis(0), 0);
        assert!(z0.indexed_iter().all(|((r, c), v)| px[r * w + c] == grey(*v, lo, hi)), "{path}: the stored pixels");
    };
    // ereg: the one slice, its difference image, and a saved registration.
    let out = d.path().join("out");
    let srv = common::server::start("ereg", &[&im1, &im3, "-od", &s(&out)]);
    assert!(srv.addr.starts_with("127.0.0.1:"));
    let (st, info) = get(&srv, "/info");
    assert_eq!(st, 200);
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(info["shape"], serde_json::json!([1, 160, 160]));
    check_slice(&srv, &format!("/slice?picture=1&axis=0&index=0&lo={lo}&hi={hi}"));
    assert_eq!(get(&srv, "/slice?picture=1&axis=0&index=1").0, 400, "there is one slice");
    let (st, body) = get(&srv, &format!("/slice?picture=diff&axis=0&index=0&t=0,-2.4,0.8&lo={lo}&hi={hi}"));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let addr = srv.addr.clone();
    let body = r#"{"t": [0, -2.4, 0.8], "r": [2, 0, 0]}"#;
    let (st, answer) = exchange(&addr, &format!("POST /save?token={} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", srv.token, body.len()));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&answer));
    let saved = read(&out.join("im2d-1-im2d-3-ereg-registration.tsv"));
    assert_eq!(saved.len(), 1);
    assert!((phi::translation(&saved.phis[0]) - Vector3::new(0.0, -2.4, 0.8)).norm() < 1e-9);
    drop(srv);
    // view: spam's 2D ldic table over the slice.
    let srv = common::server::start("view", &[&s(&spam_out("im2d-1-im2d-3-ldic.tsv")), &im1, &im3]);
    let (st, info) = get(&srv, "/info");
    assert_eq!(st, 200);
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!((info["shape"].clone(), info["rows"].clone()), (serde_json::json!([1, 160, 160]), serde_json::json!(100)));
    check_slice(&srv, &format!("/slice?axis=0&index=0&lo={lo}&hi={hi}"));
    let (st, points) = get(&srv, "/points?axis=0&index=0&column=Ydisp");
    assert_eq!(st, 200);
    let points: serde_json::Value = serde_json::from_slice(&points).unwrap();
    assert_eq!(points["points"].as_array().unwrap().len(), 100, "every node is on the slice");
    let (st, _) = get(&srv, "/residual?axis=0&index=0");
    assert_eq!(st, 200);
}
