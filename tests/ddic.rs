//! ddic against spam's example outputs (examples/README.md rows 25 and 26) and against exact
//! synthetic granular truth: textured ellipsoids (translation and rotation) and uniform
//! spheres (translation only, rotation unobservable).

use std::path::Path;

use dvc_stream::field::PhiField;
use dvc_stream::phi;
use nalgebra::Vector3;

mod common;
use common::{dvc, examples, fails, s};

fn t(f: &PhiField, i: usize) -> Vector3<f64> {
    phi::translation(&f.phis[i])
}

/// Our labels against spam's: same positions, and for labels spam converged (status 2)
/// the same status with t within `tol_t` and F within `tol_f`.
fn agree(ours: &PhiField, spam: &PhiField, labels: std::ops::Range<usize>, tol_t: f64, tol_f: f64) {
    for l in labels {
        assert_eq!(spam.return_status[l].code(), 2, "spam converged label {l}");
        assert_eq!(ours.return_status[l].code(), 2, "label {l}");
        assert!((ours.positions[l] - spam.positions[l]).abs().max() < 1e-5, "label {l} position");
        let dt = (t(ours, l) - t(spam, l)).abs().max();
        assert!(dt <= tol_t, "label {l}: t {:?} vs spam {:?}", t(ours, l), t(spam, l));
        let df = (phi::f_block(&ours.phis[l]) - phi::f_block(&spam.phis[l])).abs().max();
        assert!(df <= tol_f, "label {l}: |ΔF| = {df}");
        assert_eq!(ours.label_dilate[l], 1.0);
        assert_eq!(ours.cc[l], 0.0, "PSCC is always 0");
    }
}

#[test]
fn rows_25_and_26_of_spams_examples() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let inp = |f: &str| s(&ex.join("inputs").join(f));
    // Row 25: label field guess from spam's own label pixel search (row 24).
    let ps = s(&ex.join("pixelSearch/psLab-pixelSearch.tsv"));
    dvc(&["ddic", &inp("im1.tif"), &inp("lab1.tif"), &inp("im2.tif"), "-np", "2", "-pf", &ps, "-od", &od, "-q"]);
    let ours = PhiField::read(&d.path().join("im1-im2-ddic.tsv")).unwrap();
    let spam = PhiField::read(&ex.join("ddic/im1-im2-ddic.tsv")).unwrap();
    assert_eq!(ours.len(), 9);
    agree(&ours, &spam, 1..9, 1e-4, 1e-5);
    let head = |p: &Path| std::fs::read_to_string(p).unwrap().lines().next().unwrap().to_string();
    assert_eq!(head(&d.path().join("im1-im2-ddic.tsv")), head(&ex.join("ddic/im1-im2-ddic.tsv")), "spam's header");
    // The Parquet table holds the same rows.
    let pq = PhiField::read(&d.path().join("im1-im2-ddic.parquet")).unwrap();
    assert!(pq.phis.iter().zip(&ours.phis).all(|(a, b)| (a - b).abs().max() <= 5e-8), "the TSV is the Parquet to 7 decimals");
    assert_eq!(pq.return_status, ours.return_status);
    // Every label converges with spam's steps, so --spam-solver changes nothing here.
    dvc(&["ddic", &inp("im1.tif"), &inp("lab1.tif"), &inp("im2.tif"), "-pf", &ps, "-od", &od, "-pre", "spamsolver", "--spam-solver", "-q"]);
    let exact = PhiField::read(&d.path().join("spamsolver-ddic.tsv")).unwrap();
    agree(&exact, &spam, 1..9, 1e-4, 1e-5);

    // Row 26: registration guess, lab2 = lab1 + a 27-voxel label 9, no label 10, label 11
    // cut by the image edge.
    let reg = s(&ex.join("reg/im1-im2-registration.tsv"));
    let out = dvc(&["ddic", &inp("im1.tif"), &inp("lab2.tif"), &inp("im2.tif"), "-np", "2", "-pf", &reg, "-od", &od, "-pre", "lab2", "-q"]);
    let ours = PhiField::read(&d.path().join("lab2-ddic.tsv")).unwrap();
    let spam = PhiField::read(&ex.join("ddic/lab2-ddic.tsv")).unwrap();
    assert_eq!(ours.len(), 12);
    agree(&ours, &spam, 1..9, 1e-4, 1e-5);
    // Label 0 carries the registration moved to the origin, rigid part only (-F rigid).
    assert!((ours.phis[0] - spam.phis[0]).abs().max() < 2e-7, "{} vs {}", ours.phis[0], spam.phis[0]);
    assert_eq!((ours.return_status[0].code(), ours.error[0], ours.label_dilate[0]), (0, 0.0, 0.0));
    // Label 9 is too small (27 voxels, 27 + dilation ≤ 100): −5 here, −7 in spam.
    assert_eq!((ours.return_status[9].code(), spam.return_status[9].code()), (-5, -7));
    assert_eq!(ours.positions[9], Vector3::new(29.0, 29.0, 29.0));
    assert!(t(&ours, 9).iter().all(|v| v.is_nan()) && ours.error[9].is_infinite());
    // Label 10 is missing: −7 in both, NaN position.
    assert_eq!((ours.return_status[10].code(), spam.return_status[10].code()), (-7, -7));
    assert!(ours.positions[10].iter().all(|v| v.is_nan()));
    // -q: the counts per status are in the one-line summary on stderr.
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty() && summary.contains(", -5: 1, -7: 1 →"), "{summary}");
    // VTK: spam's layout line for line (values aside).
    let vtk = std::fs::read_to_string(d.path().join("lab2-ddic.vtk")).unwrap();
    let want = std::fs::read_to_string(ex.join("ddic/lab2-ddic.vtk")).unwrap();
    // Ours adds one VERTEX cell per point (CELLS, CELL_TYPES), which spam's lacks.
    let layout = |t: &str| {
        let mut v = t.lines().filter(|l| !l.starts_with("    ") && !l.starts_with("CELL")).map(String::from).collect::<Vec<_>>();
        v.dedup_by(|a, b| a.is_empty() && b.is_empty());
        v
    };
    assert_eq!(layout(&vtk), layout(&want));
    assert!(vtk.contains("\nCELLS 12 24\n    1 0\n") && vtk.contains("\nCELL_TYPES 12\n    1\n"));
    assert!(vtk.contains("\n    29.0 29.0 29.0\n    0.0 0.0 0.0\n"), "label 9's centre, then label 10's NaN centre written as 0");
}

/// Grain k's true Φ moved from its centre to the centre of mass ddic measured at.
fn truth_at(truth: &PhiField, k: usize, p: &Vector3<f64>) -> (Vector3<f64>, nalgebra::Matrix3<f64>) {
    let m = phi::move_to(&truth.phis[k], &truth.positions[k], p);
    (phi::translation(&m), phi::f_block(&m))
}

/// The angle (degrees) of the rotation R_a R_bᵀ.
fn angle_between(a: &nalgebra::Matrix3<f64>, b: &nalgebra::Matrix3<f64>) -> f64 {
    let r = a * b.transpose();
    ((r.trace() - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
}

#[test]
fn textured_ellipsoids_translation_and_rotation_exact() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("grains");
    let g = s(&dir);
    // 300 textured ellipsoids (semi-axes 6-12), translations up to 5 voxels, rotations up to 10°.
    dvc(&["synth", &g, "--grains", "300", "--shape3", "180", "200", "220", "--grain-radius", "6", "12", "--grain-max-translation", "5", "--grain-max-rotation", "10", "--speckle", "3", "--seed", "3", "-q"]);
    let (im1, lab1, im2) = (s(&dir.join("im1.zarr")), s(&dir.join("lab1.zarr")), s(&dir.join("im2.zarr")));
    // The usual workflow: integer guesses by label pixel search, then ddic from them, with
    // cubic B-spline interpolation (trilinear, spam's default, carries its known sub-voxel
    // bias: 0.025 voxel and 0.45° at worst here).
    dvc(&["pixel-search", &im1, &im2, "-lab1", &lab1, "-sr", "-6", "6", "-6", "6", "-6", "6", "-od", &g, "-pre", "ps", "-q"]);
    dvc(&["ddic", &im1, &lab1, &im2, "-pf", &s(&dir.join("ps-pixelSearch.tsv")), "-o", "3", "-od", &g, "-q"]);
    let ours = PhiField::read(&dir.join("im1-im2-ddic.parquet")).unwrap();
    let truth = PhiField::read(&dir.join("truth-grains.tsv")).unwrap();
    assert_eq!(ours.len(), 301);
    let (mut worst_t, mut worst_r) = (0f64, 0f64);
    for k in 1..=300 {
        assert_eq!(ours.return_status[k].code(), 2, "grain {k} converges");
        let (tt, ft) = truth_at(&truth, k, &ours.positions[k]);
        worst_t = worst_t.max((t(&ours, k) - tt).abs().max());
        worst_r = worst_r.max(angle_between(&phi::f_block(&ours.phis[k]), &ft));
    }
    assert!(worst_t <= 0.02, "largest translation error {worst_t} voxel");
    assert!(worst_r <= 0.2, "largest rotation error {worst_r}°");
    // The truth has real rotations to find.
    let largest = (1..=300).map(|k| angle_between(&phi::f_block(&truth.phis[k]), &nalgebra::Matrix3::identity())).fold(0.0, f64::max);
    assert!(largest > 8.0, "{largest}");
}

#[test]
fn uniform_spheres_converge_in_translation() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("spheres");
    let g = s(&dir);
    dvc(&["synth", &g, "--grains", "60", "--shape", "110", "--grain-shape", "sphere", "--grain-fill", "uniform", "--grain-radius", "6", "10", "--grain-max-translation", "3", "--grain-max-rotation", "0", "--seed", "5", "-q"]);
    let (im1, lab1, im2) = (s(&dir.join("im1.zarr")), s(&dir.join("lab1.zarr")), s(&dir.join("im2.zarr")));
    dvc(&["pixel-search", &im1, &im2, "-lab1", &lab1, "-sr", "-4", "4", "-4", "4", "-4", "4", "-od", &g, "-pre", "ps", "-q"]);
    let ps = s(&dir.join("ps-pixelSearch.tsv"));
    dvc(&["ddic", &im1, &lab1, &im2, "-pf", &ps, "-od", &g, "-q"]);
    let ours = PhiField::read(&dir.join("im1-im2-ddic.tsv")).unwrap();
    let truth = PhiField::read(&dir.join("truth-grains.tsv")).unwrap();
    let mut worst = 0f64;
    for k in 1..=60 {
        assert_eq!(ours.return_status[k].code(), 2, "sphere {k} converges");
        worst = worst.max((t(&ours, k) - truth_at(&truth, k, &ours.positions[k]).0).abs().max());
    }
    assert!(worst <= 0.02, "largest translation error {worst} voxel");
    // spam's steps alone on the same spheres: the unobservable rotation keeps moving, so many
    // spheres end at the iteration limit or diverge (by default these are redone with damped
    // steps).
    dvc(&["ddic", &im1, &lab1, &im2, "-pf", &ps, "-od", &g, "-pre", "spam", "--spam-solver", "-q"]);
    let spam_like = PhiField::read(&dir.join("spam-ddic.tsv")).unwrap();
    let failed = (1..=60).filter(|&k| spam_like.return_status[k].code() != 2).count();
    assert!(failed >= 6, "{failed} of 60 unconverged with spam's solver");
    let wandered = (1..=60).filter(|&k| angle_between(&phi::f_block(&spam_like.phis[k]), &nalgebra::Matrix3::identity()) > 5.0).count();
    assert!(wandered >= 6, "{wandered} rotations beyond 5° with spam's solver (the truth has none)");
}

#[test]
fn streaming_skip_multiscale_registration_start_and_errors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("g");
    let g = s(&dir);
    dvc(&["synth", &g, "--grains", "25", "--shape", "80", "--grain-radius", "5", "8", "--grain-max-translation", "1.5", "--grain-max-rotation", "4", "--dtype", "uint16", "--noise", "50", "--chunk", "16", "-q"]);
    let (im1, lab1, im2) = (s(&dir.join("im1.zarr")), s(&dir.join("lab1.zarr")), s(&dir.join("im2.zarr")));
    // A cache far smaller than the volumes (3 × 1 MiB of f32 here) gives the same table.
    dvc(&["ddic", &im1, &lab1, &im2, "-od", &g, "-pre", "big", "-q"]);
    let out = dvc(&["ddic", &im1, &lab1, &im2, "-od", &g, "-pre", "small", "--cache-bytes", "64K", "--stats", "-q"]);
    let stats = String::from_utf8_lossy(&out.stderr);
    assert!(stats.contains("peak held"), "{stats}");
    let big = std::fs::read(dir.join("big-ddic.tsv")).unwrap();
    assert_eq!(big, std::fs::read(dir.join("small-ddic.tsv")).unwrap(), "same bytes through a 64 KiB cache");
    let f = PhiField::read(&dir.join("big-ddic.tsv")).unwrap();
    let truth = PhiField::read(&dir.join("truth-grains.tsv")).unwrap();
    let converged = (1..=25).filter(|&k| f.return_status[k].code() == 2).count();
    assert!(converged >= 23, "{converged} of 25 converge from no guess (motions ≤ 1.5 voxels)");
    for k in (1..=25).filter(|&k| f.return_status[k].code() == 2) {
        assert!((t(&f, k) - truth_at(&truth, k, &f.positions[k]).0).abs().max() < 0.05, "grain {k}");
    }
    // -skp: converged labels keep every value of the file; the others are recomputed.
    let mut edited = f.clone();
    edited.return_status[3] = dvc_stream::field::Status::Diverged;
    edited.error[5] = 123.0;
    let path = dir.join("edited.tsv");
    dvc_stream::field::tsv::write_field(&path, &edited).unwrap();
    dvc(&["ddic", &im1, &lab1, &im2, "-pf", &s(&path), "-skp", "-od", &g, "-pre", "skp", "-q"]);
    let skp = PhiField::read(&dir.join("skp-ddic.tsv")).unwrap();
    assert_eq!(skp.error[5], 123.0, "label 5 (status 2) kept from the file");
    assert_eq!(skp.return_status[3].code(), 2, "label 3 recomputed");
    assert!((t(&skp, 3) - t(&f, 3)).abs().max() < 1e-3);
    assert_eq!((skp.iterations[5], skp.delta_phi_norm[5], skp.label_dilate[5]), (f.iterations[5], f.delta_phi_norm[5], f.label_dilate[5]), "no column shift");
    // -msb 2: a binned first level, then full resolution.
    dvc(&["ddic", &im1, &lab1, &im2, "-msb", "2", "-od", &g, "-pre", "msb", "-q"]);
    let msb = PhiField::read(&dir.join("msb-ddic.tsv")).unwrap();
    assert!((1..=25).filter(|&k| msb.return_status[k].code() == 2).count() >= 23);
    for k in (1..=25).filter(|&k| msb.return_status[k].code() == 2) {
        assert!((t(&msb, k) - truth_at(&truth, k, &msb.positions[k]).0).abs().max() < 0.05, "grain {k}");
    }
    // -regbb: a whole-image registration first (near identity here: grains move randomly).
    let out = dvc(&["ddic", &im1, &lab1, &im2, "-regbb", "2", "-od", &g, "-pre", "regbb", "--no-vtk"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("initial registration"));
    assert!(!dir.join("regbb-ddic.vtk").exists());
    // Labels table.
    dvc(&["labels", &lab1, "-od", &g, "-q"]);
    let table = PhiField::read(&dir.join("lab1-labels.tsv"));
    assert!(table.is_err(), "the label table is not a Φ field");
    let text = std::fs::read_to_string(dir.join("lab1-labels.tsv")).unwrap();
    let first = text.lines().nth(1).unwrap();
    assert!(text.starts_with("Label\tZmin\tZmax\tYmin\tYmax\tXmin\tXmax\tvolume\tZcom\tYcom\tXcom\tequivalentRadius\n"));
    assert!(first.starts_with("0.0000000\tnan"), "{first}");
    let row = |k: usize| -> Vec<f64> { text.lines().nth(k + 1).unwrap().split('\t').map(|v| v.parse().unwrap()).collect() };
    for k in 1..=25 {
        let r = row(k);
        assert!((r[8] - f.positions[k][0]).abs() < 1e-4 && (r[10] - f.positions[k][2]).abs() < 1e-4, "COM of {k}");
        assert!(r[7] > 300.0);
    }
    // Errors: one line, exit 2, nothing written.
    let bad = d.path().join("bad");
    let b = s(&bad);
    fails(&["ddic", &im1, &s(&examples().join("inputs/lab1.tif")), &im2, "-od", &b], "label image shape");
    fails(&["ddic", &im1, &lab1, &im2, "-skp", "-od", &b], "--skip");
    let mut moved = f.clone();
    moved.positions[4][1] += 1.0;
    let mpath = d.path().join("moved.tsv");
    dvc_stream::field::tsv::write_field(&mpath, &moved).unwrap();
    fails(&["ddic", &im1, &lab1, &im2, "-pf", &s(&mpath), "-od", &b], "label 4 is at");
    fails(&["ddic", &im1, &lab1, &im2, "-pf", &s(&dir.join("truth.tsv")), "-od", &b], "no such file");
    fails(&["ddic", &im1, &lab1, &im2, "-m", "-2", "-od", &b], "--margin");
    assert!(!bad.exists() || std::fs::read_dir(&bad).unwrap().next().is_none(), "nothing written");
}

#[test]
fn every_option_has_an_effect_and_bad_input_fails_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("g");
    let g = s(&dir);
    dvc(&["synth", &g, "--grains", "20", "--shape", "72", "--grain-radius", "5", "8", "--grain-max-translation", "1", "--grain-max-rotation", "4", "--chunk", "32", "-q"]);
    let (im1, lab1, im2) = (s(&dir.join("im1.zarr")), s(&dir.join("lab1.zarr")), s(&dir.join("im2.zarr")));
    let run = |pre: &str, extra: &[&str]| -> PhiField {
        let mut args = vec!["ddic", &im1, &lab1, &im2, "-od", &g, "-pre", pre, "-q"];
        args.extend_from_slice(extra);
        dvc(&args);
        PhiField::read(&dir.join(format!("{pre}-ddic.parquet"))).unwrap()
    };
    let base = run("base", &[]);
    let labels = 1..=20;
    // -it and its guide spelling -lci: the same limit.
    let it = run("it", &["-it", "2"]);
    let lci = run("lci", &["-lci", "2"]);
    assert_eq!(std::fs::read(dir.join("it-ddic.tsv")).unwrap(), std::fs::read(dir.join("lci-ddic.tsv")).unwrap());
    assert!(labels.clone().all(|k| it.iterations[k] <= 2.0) && labels.clone().any(|k| it.return_status[k].code() == 1));
    assert!(lci.len() == 21);
    // -dp and -lcp: a loose threshold stops sooner.
    let lcp = run("lcp", &["-lcp", "0.05"]);
    let total = |f: &PhiField| labels.clone().map(|k| f.iterations[k]).sum::<f64>();
    assert!(total(&lcp) < total(&base), "{} vs {}", total(&lcp), total(&base));
    assert_eq!(std::fs::read(dir.join("lcp-ddic.tsv")).unwrap(), { run("dp", &["-dp", "0.05"]); std::fs::read(dir.join("dp-ddic.tsv")).unwrap() });
    // -vt: every label below the threshold is −5.
    let vt = run("vt", &["-vt", "100000"]);
    assert!(labels.clone().all(|k| vt.return_status[k].code() == -5));
    // -ld is written in the LabelDilate column.
    for ld in ["0", "2"] {
        let f = run(&format!("ld{ld}"), &["-ld", ld]);
        assert!(labels.clone().all(|k| f.label_dilate[k] == ld.parse::<f64>().unwrap() && f.return_status[k].code() == 2));
    }
    // Rigid by default (F a rotation); -nr measures the full F.
    let ortho = |f: &PhiField, k: usize| {
        let m = phi::f_block(&f.phis[k]);
        (m.transpose() * m - nalgebra::Matrix3::identity()).abs().max()
    };
    assert!(labels.clone().all(|k| ortho(&base, k) < 1e-6));
    let nr = run("nr", &["-nr"]);
    assert!(labels.clone().any(|k| ortho(&nr, k) > 1e-4));
    // -ug (the gradient of the deformed image 2 at every iteration) converges on the truth too.
    let truth = PhiField::read(&dir.join("truth-grains.tsv")).unwrap();
    let ug = run("ug", &["-ug"]);
    assert!(labels.clone().filter(|&k| ug.return_status[k].code() == 2).count() >= 18);
    for k in labels.clone().filter(|&k| ug.return_status[k].code() == 2) {
        assert!((t(&ug, k) - truth_at(&truth, k, &ug.positions[k]).0).abs().max() < 0.05, "label {k}");
    }
    // --no-tsv: the Parquet table only.
    run("notsv", &["--no-tsv"]);
    assert!(!dir.join("notsv-ddic.tsv").exists() && dir.join("notsv-ddic.vtk").exists());
    // -F and -pfb act on a registration guess; the background row shows the guess.
    let reg = phi::compute_phi(&phi::PhiComponents { t: Some([0.4, -0.3, 0.2]), r: Some([2.0, 0.0, 1.0]), z: Some([1.01, 1.0, 0.99]), ..Default::default() });
    let centre = Vector3::new(35.5, 35.5, 35.5);
    let mut file = PhiField::new(dvc_stream::field::FieldKind::Registration, dvc_stream::field::Layout::Registration);
    file.push(dvc_stream::field::FieldRow::truth(1, centre, reg));
    let rpath = d.path().join("reg.tsv");
    dvc_stream::field::tsv::write_field(&rpath, &file).unwrap();
    let r = s(&rpath);
    let f_of = |f: &PhiField| phi::f_block(&f.phis[0]);
    let close = |a: nalgebra::Matrix3<f64>, b: nalgebra::Matrix3<f64>| (a - b).abs().max() < 1e-6;
    assert!(close(f_of(&run("Fall", &["-pf", &r, "-F", "all"])), phi::f_block(&reg)));
    assert!(close(f_of(&run("Frigid", &["-pf", &r])), phi::f_block(&phi::rigid_part(&reg))), "rigid by default");
    assert!(close(f_of(&run("Fno", &["-pf", &r, "-F", "no"])), nalgebra::Matrix3::identity()));
    let pfb = run("pfb", &["-pf", &r, "-pfb", "2", "-F", "all"]);
    let read = PhiField::read(&rpath).unwrap();
    let want = phi::registration_to_point(&phi::rescale(&read.phis[0], 2.0), &(read.positions[0] * 2.0), &Vector3::zeros(), phi::ApplyF::All);
    assert!((t(&pfb, 0) - phi::translation(&want)).abs().max() < 1e-6, "{:?} vs {:?}", t(&pfb, 0), phi::translation(&want));
    // -dmo: with a dilation reaching the neighbouring balls, keeping their voxels changes the fit.
    let ex = examples().join("inputs");
    let (e1, el, e2) = (s(&ex.join("im1.tif")), s(&ex.join("lab1.tif")), s(&ex.join("im2.tif")));
    let ps = s(&examples().join("pixelSearch/psLab-pixelSearch.tsv"));
    dvc(&["ddic", &e1, &el, &e2, "-pf", &ps, "-ld", "8", "-od", &g, "-pre", "masked", "-q"]);
    dvc(&["ddic", &e1, &el, &e2, "-pf", &ps, "-ld", "8", "-dmo", "-od", &g, "-pre", "dmo", "-q"]);
    let (m, o) = (PhiField::read(&dir.join("masked-ddic.tsv")).unwrap(), PhiField::read(&dir.join("dmo-ddic.tsv")).unwrap());
    assert!((1..9).any(|k| m.error[k] != o.error[k]), "-dmo keeps other labels' voxels");
    // labels --no-tsv.
    dvc(&["labels", &lab1, "-od", &g, "-pre", "tbl", "--no-tsv", "-q"]);
    assert!(dir.join("tbl-labels.parquet").exists() && !dir.join("tbl-labels.tsv").exists());

    // Bad input: one line, exit 2, nothing written.
    let bad = d.path().join("bad");
    let b = s(&bad);
    fails(&["synth", &b, "--grains", "5", "--grain-shape", "cube"], "--grain-shape");
    fails(&["synth", &b, "--grains", "5", "--grain-fill", "glass"], "--grain-fill");
    fails(&["synth", &b, "--grains", "5", "--translate", "1", "0", "0"], "--translate");
    fails(&["synth", &b, "--grains", "5", "--grain-radius", "5", "2"], "--grain-radius");
    fails(&["synth", &b, "--grains", "5", "--grain-gap", "-1"], "--grain-gap");
    fails(&["synth", &b, "--grains", "500", "--shape", "40"], "grains fit");
    fails(&["ddic", &im1, &lab1, &im2, "-msb", "0", "-od", &b], "--multiscale-binning");
    fails(&["ddic", &im1, &lab1, &im2, "-pf", &r, "-pfb", "0", "-od", &b], "must be a finite number above 0");
    fails(&["ddic", &im1, &lab1, &im2, "-pf", &r, "-skp", "-od", &b], "--skip");
    fails(&["ddic", &im1, &lab1, &im2, "-pf", &s(&dir.join("base-ddic.tsv")), "-regbb", "2", "-od", &b], "takes a registration");
    dvc(&["pixel-search", &im1, &im2, "-ns", "20", "-hws", "5", "-od", &s(d.path()), "-pre", "grid", "-q"]);
    fails(&["ddic", &im1, &lab1, &im2, "-pf", &s(&d.path().join("grid-pixelSearch.tsv")), "-od", &b], "grid field");
    fails(&["labels", &s(&dir.join("missing.zarr")), "-od", &b], "missing.zarr");
    assert!(!bad.exists() || std::fs::read_dir(&bad).unwrap().next().is_none(), "nothing written");
}

#[test]
fn touching_uniform_spheres_leave_their_neighbours_edges_out() {
    // 105 uniform spheres packed with no gap (edges blend where grains touch), each moved up
    // to 2 voxels, noise σ = 100: neighbours come within one another's dilated masks, in
    // image 1 or in image 2 where they move closer.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("touching");
    let g = s(&dir);
    dvc(&["synth", &g, "--grains", "105", "--shape", "100", "--grain-shape", "sphere", "--grain-fill", "uniform", "--grain-radius", "5", "8", "--grain-max-translation", "2", "--grain-max-rotation", "0", "--grain-gap", "0", "--noise", "100", "--dtype", "uint16", "--seed", "4", "-q"]);
    let (im1, lab1, im2) = (s(&dir.join("im1.zarr")), s(&dir.join("lab1.zarr")), s(&dir.join("im2.zarr")));
    dvc(&["pixel-search", &im1, &im2, "-lab1", &lab1, "-sr", "-4", "4", "-4", "4", "-4", "4", "-od", &g, "-pre", "ps", "-q"]);
    let ps = s(&dir.join("ps-pixelSearch.tsv"));
    let truth = PhiField::read(&dir.join("truth-grains.tsv")).unwrap();
    // Translation errors (largest over the axes) of the converged grains, and how many converged.
    let errors = |pre: &str, extra: &[&str]| {
        let mut args = vec!["ddic", &im1, &lab1, &im2, "-pf", &ps, "-od", &g, "-pre", pre, "-q"];
        args.extend_from_slice(extra);
        dvc(&args);
        let f = PhiField::read(&dir.join(format!("{pre}-ddic.tsv"))).unwrap();
        let converged: Vec<usize> = (1..=105).filter(|&k| f.return_status[k].code() == 2).collect();
        let e: Vec<f64> = converged.iter().map(|&k| (t(&f, k) - truth_at(&truth, k, &f.positions[k]).0).abs().max()).collect();
        let rms = (e.iter().map(|v| v * v).sum::<f64>() / e.len() as f64).sqrt();
        (converged.len(), rms, e.iter().cloned().fold(0.0, f64::max))
    };
    let (n, rms, worst) = errors("dvc", &[]);
    assert_eq!(n, 105, "every sphere converges");
    assert!(rms <= 0.02 && worst <= 0.05, "rms {rms}, largest {worst} voxel");
    // spam's mask (other labels' own voxels removed, their edges kept) on the same spheres.
    let (_, rms_spam_mask, worst_spam_mask) = errors("keep", &["--keep-neighbour-edges"]);
    assert!(worst_spam_mask > 0.05, "spam's mask: largest {worst_spam_mask} voxel (rms {rms_spam_mask})");
}

/// A label dilation as large as the image (`-ld 100000`) is refused in one line before any
/// output is reserved (it used to grow every label's box to the dilation and run out of memory,
/// leaving `.partial` files).
#[test]
fn label_dilation_larger_than_the_image_is_refused() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let i = |f: &str| s(&ex.join("inputs").join(f));
    fails(&["ddic", &i("im1.tif"), &i("lab1.tif"), &i("im2.tif"), "-ld", "100000", "-od", &s(d.path()), "-q"], "--label-dilate (-ld) 100000");
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing written");
}
