//! 2D images (single-page TIFFs, shape (1, Y, X)) in the correlation tools: reg, ldic, ddic
//! and deform-image against spam 0.9.1's own 2D runs (tests/data/spam-0.9.1/2d/README.md rows
//! 1, 2, 5, 9, 10, 14), and reg and ldic against exact synthetic 2D pairs (`synth --2d`).

use std::path::{Path, PathBuf};
use std::process::Command;

use dvc_stream::field::PhiField;
use dvc_stream::store::{ChunkCache, DType, Volume};

mod common;
use common::{dvc, examples, fails, s};

fn twod() -> PathBuf {
    examples().join("2d")
}

/// Runs dvc-stream from spam's 2D `inputs/` folder (as spam ran its commands), outputs to `od`.
fn in_inputs(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).arg("-q").current_dir(twod().join("inputs")).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn plane(p: &Path) -> (Vec<f32>, [usize; 3], DType) {
    let v = Volume::open(p, ChunkCache::new(1 << 24)).unwrap();
    let n = v.shape();
    (v.read_box(0..n[0] as i64, 0..n[1] as i64, 0..n[2] as i64).unwrap().into_iter().collect(), n, v.dtype())
}

/// Every row of ours against spam's: the same positions, statuses and iterations, the 12 top
/// entries of Φ within 1e-4 (voxels for t), and a plane's layout (Zpos = 0, Fzz = 1, Z row and
/// column of F at identity, Zdisp = 0).
fn same_as_spam(ours: &Path, spam: &Path) -> PhiField {
    let (a, b) = (PhiField::read(ours).unwrap(), PhiField::read(spam).unwrap());
    assert_eq!(a.len(), b.len(), "{}", ours.display());
    for i in 0..a.len() {
        assert_eq!(a.positions[i], b.positions[i], "position of row {i}");
        assert_eq!(a.positions[i][0], 0.0);
        assert_eq!(a.return_status[i], b.return_status[i], "status of row {i}");
        assert_eq!(a.iterations[i], b.iterations[i], "iterations of row {i}");
        for r in 0..3 {
            for c in 0..4 {
                let (x, y) = (a.phis[i][(r, c)], b.phis[i][(r, c)]);
                assert!((x - y).abs() < 1e-4 || (x.is_nan() && y.is_nan()), "row {i} Φ[{r}][{c}]: {x} vs spam {y}");
            }
        }
        if a.phis[i][(0, 3)].is_finite() {
            for c in 0..4 {
                assert_eq!(a.phis[i][(0, c)], if c == 0 { 1.0 } else { 0.0 }, "row {i}: Z row of Φ");
            }
            assert_eq!((a.phis[i][(1, 0)], a.phis[i][(2, 0)]), (0.0, 0.0), "row {i}: Z column of F");
        }
    }
    a
}

/// Deformed images against spam's: the same shape and type, every pixel within one grey level
/// and at most `share` of them off by one (f32 rounding of the cubic or bilinear value that
/// SciPy rounds into the image's type).
fn close_to_spam(ours: &Path, spam: &Path, share: f64) {
    let (a, na, ta) = plane(ours);
    let (b, nb, tb) = plane(spam);
    assert_eq!((na, ta), (nb, tb), "{}", ours.display());
    let off = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(worst <= 1.0, "{}: a pixel {worst} grey levels from spam's", ours.display());
    assert!((off as f64) <= share * a.len() as f64, "{}: {off} of {} pixels differ", ours.display(), a.len());
}

/// Row 1: `reg -def` of the rotated and stretched image (spam: status 2 after 3 iterations);
/// row 9: `deform-image` of spam's registration (spam: cubic warp, the same name).
/// Measured: Φ within 2·10⁻⁷ of spam's; 316 and 276 of 25 600 pixels one grey level off
/// (our cubic spline is evaluated in f32, SciPy's in f64, before both round).
#[test]
fn reg_def_and_deform_image_by_a_registration_match_spam_rows_1_and_9() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    in_inputs(&["reg", "im2d-1.tif", "im2d-3.tif", "-bb", "2", "-be", "1", "-od", &od, "-def"]);
    let out = twod().join("out");
    let r = same_as_spam(&d.path().join("im2d-1-im2d-3-registration.tsv"), &out.join("im2d-1-im2d-3-registration.tsv"));
    assert_eq!((r.return_status[0].code(), r.iterations[0]), (2, 3.0));
    close_to_spam(&d.path().join("im2d-1-reg-def.tif"), &out.join("im2d-1-reg-def.tif"), 0.02);
    let d9 = d.path().join("row9");
    in_inputs(&["deform-image", "im2d-1.tif", "-pf", &s(&out.join("im2d-1-im2d-3-registration.tsv")), "-od", &s(&d9)]);
    close_to_spam(&d9.join("im2d-1-reg-def.tif"), &out.join("im2d-1-reg-def.tif"), 0.02);
}

/// Row 2: `reg` of the translated image (spam: status 2 after 4 iterations).
#[test]
fn reg_of_a_translated_plane_matches_spam_row_2() {
    let d = tempfile::tempdir().unwrap();
    in_inputs(&["reg", "im2d-1.tif", "im2d-2.tif", "-bb", "2", "-be", "1", "-od", &s(d.path())]);
    let r = same_as_spam(&d.path().join("im2d-1-im2d-2-registration.tsv"), &twod().join("out/im2d-1-im2d-2-registration.tsv"));
    assert_eq!((r.return_status[0].code(), r.iterations[0]), (2, 4.0));
}

/// Row 5: `ldic -vtk -tif` guided by the registration: all 100 nodes with spam's statuses (99
/// converged, one −1) and iterations, Φ within 1e-4 (measured 3·10⁻⁷); the VTK as spam's but
/// for its title line; the Ydisp TIFF spam's values on its 10×10 grid; no Zdisp TIFF.
/// Row 10: `deform-image` by that field (spam's result within one grey level, 37 pixels off).
#[test]
fn ldic_and_deform_image_by_its_field_match_spam_rows_5_and_10() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let out = twod().join("out");
    in_inputs(&["ldic", "-o", "1", "im2d-1.tif", "im2d-3.tif", "-np", "2", "-hws", "7", "-ns", "15", "-pf", "../out/im2d-1-im2d-3-registration.tsv", "-od", &od, "-vtk", "-tif"]);
    let f = same_as_spam(&d.path().join("im2d-1-im2d-3-ldic.tsv"), &out.join("im2d-1-im2d-3-ldic.tsv"));
    assert_eq!(f.return_status.iter().filter(|&&r| r.code() == 2).count(), 99);
    let ours = std::fs::read_to_string(d.path().join("im2d-1-im2d-3-ldic.vtk")).unwrap();
    let spam = std::fs::read_to_string(out.join("im2d-1-im2d-3-ldic.vtk")).unwrap();
    let header = |t: &str| t.lines().take(12).enumerate().filter(|(i, l)| *i != 1 && !l.starts_with("ORIGIN ")).map(|(_, l)| l.to_string()).collect::<Vec<_>>();
    assert_eq!(header(&ours), header(&spam), "VTK header as spam's");
    common::assert_origin_at_first_node(&d.path().join("im2d-1-im2d-3-ldic.vtk"), &d.path().join("im2d-1-im2d-3-ldic.tsv"));
    let (a, na, _) = plane(&d.path().join("im2d-1-im2d-3-ldic-Ydisp.tif"));
    let (b, nb, _) = plane(&out.join("im2d-1-im2d-3-ldic-Ydisp.tif"));
    assert_eq!((na, nb), ([1, 10, 10], [1, 10, 10]));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4 || (x.is_nan() && y.is_nan())));
    assert!(!d.path().join("im2d-1-im2d-3-ldic-Zdisp.tif").exists(), "a 2D grid has no Z displacement map");
    in_inputs(&["deform-image", "im2d-1.tif", "-pf", "../out/im2d-1-im2d-3-ldic.tsv", "-od", &od, "-pre", "fld"]);
    close_to_spam(&d.path().join("fld-def.tif"), &out.join("fld-def.tif"), 0.002);
}

/// Row 14: `ddic` of six discs guided by the labelled pixel search: spam's statuses (six
/// converged, the background row 0) and iterations, Φ within 1e-4 (measured 10⁻⁷).
#[test]
fn ddic_on_discs_matches_spam_row_14() {
    let d = tempfile::tempdir().unwrap();
    in_inputs(&["ddic", "im2d-1.tif", "lab2d-1.tif", "im2d-2.tif", "-np", "2", "-pf", "../out/psLab-pixelSearch.tsv", "-od", &s(d.path())]);
    let f = same_as_spam(&d.path().join("im2d-1-im2d-2-ddic.tsv"), &twod().join("out/im2d-1-im2d-2-ddic.tsv"));
    assert_eq!(f.return_status[1..].iter().filter(|&&r| r.code() == 2).count(), 6);
    assert!(d.path().join("im2d-1-im2d-2-ddic.vtk").exists());
    // Guided by its own initial registration of the planes (-regbb) instead: the same discs
    // within 0.01 pixel of spam's.
    in_inputs(&["ddic", "im2d-1.tif", "lab2d-1.tif", "im2d-2.tif", "-regbb", "2", "-od", &s(d.path()), "-pre", "regbb"]);
    let g = PhiField::read(&d.path().join("regbb-ddic.tsv")).unwrap();
    for l in 1..7 {
        assert_eq!(g.return_status[l].code(), 2, "label {l}");
        for k in 0..3 {
            assert!((g.phis[l][(k, 3)] - f.phis[l][(k, 3)]).abs() < 0.01, "label {l} axis {k}");
        }
    }
}

/// `synth --2d`: two single-slice images and a truth in spam's 2D layout; motions out of the
/// plane are refused with one line.
#[test]
fn synth_2d_pair_is_one_slice_moved_in_its_plane() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    dvc(&["synth", &s(&dir), "--2d", "--shape", "64", "--translate", "0", "1.5", "-0.5", "--rotate", "2", "0", "0", "--format", "tiff", "--truth-ns", "16", "-q"]);
    let (a, n, _) = plane(&dir.join("im1.tif"));
    let (b, _, _) = plane(&dir.join("im2.tif"));
    assert_eq!(n, [1, 64, 64]);
    assert!(a != b, "image 2 is moved");
    let truth = PhiField::read(&dir.join("truth.tsv")).unwrap();
    assert_eq!(truth.len(), 9, "a 3×3 grid in the plane");
    assert!(truth.positions.iter().all(|p| p[0] == 0.0) && truth.phis.iter().all(|p| p[(0, 0)] == 1.0 && p[(0, 3)] == 0.0));
    for (args, says) in [
        (vec!["--translate", "0.5", "0", "0"], "in its plane only"),
        (vec!["--rotate", "0", "3", "0"], "in its plane only"),
        (vec!["--zoom", "1.1", "1", "1"], "in its plane only"),
        (vec!["--field", "shear:0.01"], "do not apply to a 2D pair"),
    ] {
        let mut all = vec!["synth", "/nonexistent/never-written", "--2d", "--shape", "32"];
        all.extend(args);
        fails(&all, says);
    }
}

/// A synthetic pair: `synth --2d` into `dir` with the given motion; returns (im1, im2).
fn synth2d(dir: &Path, shape: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["synth", dir.to_str().unwrap(), "--2d", "--shape", shape, "--speckle", "5", "--format", "tiff", "-q"];
    args.extend(extra);
    dvc(&args);
    (s(&dir.join("im1.tif")), s(&dir.join("im2.tif")))
}

/// reg on an exact 2D pair (translation, 3° rotation, stretches 1.01 and 0.99): t within 0.01
/// pixel and F within 1e-3 of the truth (tests/register.rs's bounds for its 3D pair; measured
/// 0.0011 and 7·10⁻⁵); `-rig` on a rigid pair gives a rotation about Z within the same bounds.
#[test]
fn reg_recovers_an_exact_2d_affine_and_a_rigid_motion() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let (a, b) = synth2d(&d.path().join("aff"), "160", &["--translate", "0", "-2.3", "0.7", "--rotate", "3", "0", "0", "--zoom", "1", "1.01", "0.99"]);
    dvc(&["reg", &a, &b, "-od", &od, "-pre", "aff", "-q"]);
    let got = PhiField::read(&d.path().join("aff-registration.tsv")).unwrap();
    let truth = PhiField::read(&d.path().join("aff/truth-registration.tsv")).unwrap();
    assert_eq!(got.positions[0], truth.positions[0]);
    assert_eq!(got.return_status[0].code(), 2);
    let err = |r: usize, c: usize| (got.phis[0][(r, c)] - truth.phis[0][(r, c)]).abs();
    for r in 0..3 {
        assert!(err(r, 3) < 0.01, "t[{r}] off by {}", err(r, 3));
        for c in 0..3 {
            assert!(err(r, c) < 1e-3, "F[{r}][{c}] off by {}", err(r, c));
        }
    }
    let (a, b) = synth2d(&d.path().join("rig"), "128", &["--translate", "0", "1.4", "-0.8", "--rotate", "2.5", "0", "0"]);
    dvc(&["reg", &a, &b, "-od", &od, "-pre", "rig", "-rig", "-q"]);
    let got = PhiField::read(&d.path().join("rig-registration.tsv")).unwrap();
    let truth = PhiField::read(&d.path().join("rig/truth-registration.tsv")).unwrap();
    assert_eq!(got.return_status[0].code(), 2);
    let f = dvc_stream::phi::f_block(&got.phis[0]);
    assert!((f.transpose() * f - nalgebra::Matrix3::identity()).abs().max() < 1e-6, "a rigid result is a rotation");
    assert!((got.phis[0] - truth.phis[0]).fixed_view::<3, 3>(0, 0).abs().max() < 1e-3);
    for r in 0..3 {
        assert!((got.phis[0][(r, 3)] - truth.phis[0][(r, 3)]).abs() < 0.01);
    }
}

/// ldic `-o 3` on an exact 2D affine pair, guided by the registration: every node converged,
/// F within 2e-3 and t within 0.01 of the truth (tests/ldic.rs's bounds for its 3D affine
/// field; measured 4·10⁻⁴ and 0.002), square windows in the plane.
#[test]
fn ldic_cubic_recovers_an_exact_2d_affine_field() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let (a, b) = synth2d(&dir, "160", &["--translate", "0", "-2.3", "0.7", "--rotate", "3", "0", "0", "--zoom", "1", "1.01", "0.99", "--truth-ns", "20"]);
    dvc(&["ldic", &a, &b, "-ns", "20", "-hws", "10", "-o", "3", "-pf", &s(&dir.join("truth-registration.tsv")), "-od", &s(d.path()), "-q"]);
    let got = PhiField::read(&d.path().join("im1-im2-ldic.tsv")).unwrap();
    let truth = PhiField::read(&dir.join("truth.tsv")).unwrap();
    assert_eq!(got.positions, truth.positions);
    assert_eq!(got.len(), 49);
    for i in 0..got.len() {
        assert_eq!(got.return_status[i].code(), 2, "node {i}");
        for r in 0..3 {
            for c in 0..3 {
                let e = (got.phis[i][(r, c)] - truth.phis[i][(r, c)]).abs();
                assert!(e < 2e-3, "node {i} F[{r}][{c}] off by {e}");
            }
            let e = (got.phis[i][(r, 3)] - truth.phis[i][(r, 3)]).abs();
            assert!(e < 0.01, "node {i} t[{r}] off by {e}");
        }
    }
}

/// ldic on a sub-pixel translation (−0.6, 0.45) of an exact 2D speckle, hws 10, over 196
/// nodes: cubic bias and spread ≤ 0.002 pixel, trilinear (bilinear here) bias within
/// tests/ldic.rs's 3D bounds for the same shifts (0.009 in Y, 0.005 in X) and spread ≤ 0.01
/// (a 21² window has 21 times fewer pixels than a 21³ one).
#[test]
fn ldic_2d_sub_pixel_translation_bias() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let (a, b) = synth2d(&dir, "150", &["--translate", "0", "-0.6", "0.45", "--truth-ns", "10"]);
    let truth = PhiField::read(&dir.join("truth.tsv")).unwrap();
    for (order, bias_max, sd_max) in [("3", [0.002, 0.002], 0.002), ("1", [0.009, 0.005], 0.01)] {
        let pre = format!("o{order}");
        dvc(&["ldic", &a, &b, "-ns", "10", "-hws", "10", "-o", order, "-od", &s(d.path()), "-pre", &pre, "-q"]);
        let got = PhiField::read(&d.path().join(format!("{pre}-ldic.tsv"))).unwrap();
        let interior: Vec<usize> = (0..got.len()).filter(|&i| (1..3).all(|k| (20.0..=130.0).contains(&got.positions[i][k]))).collect();
        assert_eq!(interior.len(), 144);
        for (j, k) in [1usize, 2].into_iter().enumerate() {
            let e: Vec<f64> = interior.iter().map(|&i| got.phis[i][(k, 3)] - truth.phis[i][(k, 3)]).collect();
            let mean = e.iter().sum::<f64>() / e.len() as f64;
            let sd = (e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / e.len() as f64).sqrt();
            assert!(mean.abs() <= bias_max[j] && sd <= sd_max, "order {order} axis {k}: bias {mean:.4}, sd {sd:.4}");
        }
        assert!(interior.iter().all(|&i| got.return_status[i].code() == 2 && got.phis[i][(0, 3)] == 0.0));
    }
}

/// ldic with a mask on a 2D pair (its left half): windows with less than half their pixels in
/// the mask are skipped (−5), windows wholly inside it give what they give without the mask
/// and, inside the image, the truth within 0.05 pixel; a 2D mask of another shape is refused.
#[test]
fn ldic_2d_with_a_mask() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let (a, b) = synth2d(&dir, "100", &["--translate", "0", "1.3", "-0.4", "--truth-ns", "10"]);
    let mask = d.path().join("mask.tif");
    let mut w = dvc_stream::store::tiff_write::TiffStackWriter::create(&mask, [1, 100, 100], DType::U8, false).unwrap();
    w.write_pages(&dvc_stream::store::TypedBuf::U8((0..100 * 100).map(|i| u8::from(i % 100 < 50)).collect())).unwrap();
    w.finish().unwrap();
    let od = s(d.path());
    dvc(&["ldic", &a, &b, "-ns", "10", "-hws", "10", "-mf1", &s(&mask), "-od", &od, "-pre", "masked", "-q"]);
    dvc(&["ldic", &a, &b, "-ns", "10", "-hws", "10", "-od", &od, "-pre", "whole", "-q"]);
    let got = PhiField::read(&d.path().join("masked-ldic.tsv")).unwrap();
    let whole = PhiField::read(&d.path().join("whole-ldic.tsv")).unwrap();
    let truth = PhiField::read(&dir.join("truth.tsv")).unwrap();
    assert_eq!(got.len(), 81);
    for i in 0..got.len() {
        let x = got.positions[i][2];
        if x >= 50.0 {
            assert_eq!(got.return_status[i].code(), -5, "node {i} at x {x}: mostly outside the mask");
        } else {
            assert_eq!(got.return_status[i].code(), 2, "node {i} at x {x}");
            assert_eq!(got.phis[i], whole.phis[i], "node {i}: a window inside the mask");
            // Windows that reach past the image's edge (zero-padded, as spam) are not exact.
            if !(10.0..=80.0).contains(&got.positions[i][1]) {
                continue;
            }
            for k in 1..3 {
                assert!((got.phis[i][(k, 3)] - truth.phis[i][(k, 3)]).abs() < 0.05, "node {i} axis {k}");
            }
        }
    }
    let (c, _) = synth2d(&d.path().join("small"), "90", &[]);
    fails(&["ldic", &a, &b, "-ns", "10", "-hws", "5", "-mf1", &c, "-od", &od, "-pre", "bad"], "mask shape [1, 90, 90] differs from image 1 [1, 100, 100]");
    assert!(!d.path().join("bad-ldic.tsv").exists());
}

/// A 2D image against a 3D one: every correlation tool stops with one line naming the file,
/// status 2, and writes nothing.
#[test]
fn a_2d_image_with_a_3d_one_is_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let im2d = s(&twod().join("inputs/im2d-1.tif"));
    let lab2d = s(&twod().join("inputs/lab2d-1.tif"));
    let im3d = s(&examples().join("inputs/im1.tif"));
    let says = "im1.tif: image shape [60, 60, 60] differs from image 1 [1, 160, 160]";
    fails(&["reg", &im2d, &im3d, "-od", &od], says);
    fails(&["ldic", &im2d, &im3d, "-hws", "7", "-ns", "15", "-od", &od], says);
    fails(&["ddic", &im2d, &lab2d, &im3d, "-od", &od], says);
    fails(&["reg", &im3d, &im2d, "-od", &od], "im2d-1.tif: image shape [1, 160, 160] differs from image 1 [60, 60, 60]");
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing written by refused runs");
}

/// A 2D Zarr array (shape (1, Y, X)) is the same image as the single-page TIFF: `synth --2d`
/// in both formats, registered, gives the same table.
#[test]
fn a_2d_zarr_registers_as_its_tiff() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    for format in ["tiff", "zarr"] {
        let dir = d.path().join(format);
        dvc(&["synth", &s(&dir), "--2d", "--shape", "96", "--speckle", "5", "--translate", "0", "1.2", "-0.7", "--rotate", "1", "0", "0", "--format", format, "-q"]);
        let ext = if format == "tiff" { "tif" } else { "zarr" };
        dvc(&["reg", &s(&dir.join(format!("im1.{ext}"))), &s(&dir.join(format!("im2.{ext}"))), "-od", &od, "-pre", format, "-q"]);
    }
    let (a, b) = (PhiField::read(&d.path().join("tiff-registration.tsv")).unwrap(), PhiField::read(&d.path().join("zarr-registration.tsv")).unwrap());
    assert_eq!((a.phis[0], a.return_status[0]), (b.phis[0], b.return_status[0]));
    assert_eq!(a.return_status[0].code(), 2);
}

/// The options whose solvers take all 12 components of Φ (reg's `-shift`, `-gm gaussian`,
/// ldic's `-shift`) or that the plane driver does not carry (`-rmc`, `-j`) are refused on a 2D
/// image in one line, and write nothing, rather than giving a result that is not spam's 2-D one.
#[test]
fn options_not_yet_2d_are_refused_on_a_plane() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let (im1, im2) = (s(&twod().join("inputs/im2d-1.tif")), s(&twod().join("inputs/im2d-2.tif")));
    let mask = d.path().join("mask.tif");
    std::fs::copy(twod().join("inputs/lab2d-1.tif"), &mask).unwrap();
    let not_yet = "not available for 2D images yet";
    fails(&["reg", &im1, &im2, "-shift", "-od", &od], not_yet);
    fails(&["reg", &im1, &im2, "-gm", "gaussian", "-od", &od], not_yet);
    fails(&["reg", &im1, &im2, "-j", "-od", &od], not_yet);
    fails(&["reg", &im1, &im2, "-rmc", "-mf1", &s(&mask), "-od", &od], not_yet);
    fails(&["ldic", &im1, &im2, "-hws", "7", "-ns", "15", "-shift", "-od", &od], not_yet);
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("mask.tif")], "nothing written by refused runs");
}
