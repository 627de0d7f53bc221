//! `deform-image -tet` (a tetrahedral mesh between a field's points, with `-a` and `-cgs`)
//! against spam-deformImage's own outputs (tests/data/spam-0.9.1/README.md row 34) and
//! against the exact affine warp.

use std::path::Path;

use dvc_stream::store::{ChunkCache, Volume};

mod common;
use common::{dvc, examples, fails, s};

fn voxels(path: &Path) -> Vec<f32> {
    let v = Volume::open(path, ChunkCache::new(1 << 24)).unwrap();
    let n = v.shape();
    v.read_box(0..n[0] as i64, 0..n[1] as i64, 0..n[2] as i64).unwrap().iter().copied().collect()
}

/// Ours against spam's on im1 deformed by the im1–im3 ldic field: `(voxels nonzero in
/// ours only, in spam's only, where both are nonzero: the largest difference and the
/// fraction that is identical)`.
fn against_spam(flags: &[&str], golden: &str) -> (usize, usize, f32, f64) {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let (im1, field, od) = (s(&ex.join("inputs/im1.tif")), s(&ex.join("ldic/im1-im3-ldic.tsv")), s(d.path()));
    let mut args = vec!["deform-image", &im1, "-pf", &field, "-tet", "-od", &od, "-q"];
    args.extend_from_slice(flags);
    dvc(&args);
    let ours = voxels(&d.path().join("im1-tetMesh-def.tif"));
    let spam = voxels(&ex.join("deformImage").join(golden));
    assert_eq!(ours.len(), spam.len());
    let (mut only_ours, mut only_spam, mut worst, mut same, mut both) = (0, 0, 0f32, 0usize, 0usize);
    for (a, b) in ours.iter().zip(&spam) {
        match (*a > 0.0, *b > 0.0) {
            (true, false) => only_ours += 1,
            (false, true) => only_spam += 1,
            (true, true) => {
                both += 1;
                worst = worst.max((a - b).abs());
                same += (a == b) as usize;
            }
            _ => {}
        }
    }
    (only_ours, only_spam, worst, same as f64 / both as f64)
}

/// The same voxels are inside the mesh, and grey levels agree to one unit (the truncation to
/// uint16 of values that differ in their last bits), 99.7 % exactly.
#[test]
fn tet_mesh_matches_spam() {
    let (only_ours, only_spam, worst, same) = against_spam(&[], "im1-im3-tetMesh-def.tif");
    assert_eq!((only_ours, only_spam), (0, 0));
    assert!(worst <= 1.0 && same > 0.997, "worst {worst}, identical {same}");
}

/// CGAL's solid alpha (`-a -1`) carves the same 29 of the 97 tetrahedra.
#[test]
fn alpha_cleanup_matches_spam() {
    let (only_ours, only_spam, worst, same) = against_spam(&["-a", "-1"], "im1-im3-tetMesh-def-a-1.tif");
    assert_eq!((only_ours, only_spam), (0, 0));
    assert!(worst <= 1.0 && same > 0.995, "worst {worst}, identical {same}");
}

/// With `-cgs`, where spam writes a value ours is the same to one unit. spam also zeroes its
/// first tetrahedron (its label 0 is taken as background, so the correction there divides by
/// 0 and the cast gives 0): those voxels, and only those, are nonzero in ours alone.
#[test]
fn grey_correction_matches_spam_but_for_its_first_tetrahedron() {
    let (only_ours, only_spam, worst, same) = against_spam(&["-cgs"], "im1-im3-tetMesh-def-cgs.tif");
    assert_eq!(only_spam, 0);
    assert!(only_ours == 543, "{only_ours} voxels nonzero in ours only");
    assert!(worst <= 1.0 && same > 0.997, "worst {worst}, identical {same}");
}

/// An affine field (a zoom and a rotation): inside the mesh the image is the affine warp of
/// the whole image by one Φ, and `-cgs` divides every grey level by det F.
#[test]
fn affine_field_gives_the_affine_warp_and_cgs_divides_by_det_f() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    dvc(&["synth", &s(dir), "--shape", "40", "--zoom", "1.03", "0.98", "1.0", "--rotate", "3", "0", "0", "--translate", "0.4", "-0.3", "0.2", "--truth-ns", "7", "--format", "tiff", "-q"]);
    let im1 = s(&dir.join("im1.tif"));
    dvc(&["deform-image", &im1, "-pf", &s(&dir.join("truth-registration.tsv")), "-od", &s(dir), "-pre", "reg", "-q"]);
    dvc(&["deform-image", &im1, "-pf", &s(&dir.join("truth.tsv")), "-tet", "-od", &s(dir), "-pre", "tet", "-q"]);
    dvc(&["deform-image", &im1, "-pf", &s(&dir.join("truth.tsv")), "-tet", "-cgs", "-od", &s(dir), "-pre", "cgs", "-q"]);
    let reg = voxels(&dir.join("reg-reg-def.tif"));
    let tet = voxels(&dir.join("tet-tetMesh-def.tif"));
    let cgs = voxels(&dir.join("cgs-tetMesh-def.tif"));
    let det_f = 1.03 * 0.98;
    let mut inside = 0;
    for i in 0..tet.len() {
        if tet[i] == 0.0 {
            assert_eq!(cgs[i], 0.0);
            continue;
        }
        inside += 1;
        // The registration's warp takes its coordinates in f32: 10⁻⁵ voxel of the speckle.
        assert!((tet[i] - reg[i]).abs() <= 1e-5 * reg[i].abs().max(1000.0), "voxel {i}: {} vs {}", tet[i], reg[i]);
        assert!(((cgs[i] as f64) * det_f / tet[i] as f64 - 1.0).abs() < 1e-6, "voxel {i}");
    }
    // The mesh spans the nodes' hull: most of the 40³ image.
    assert!(inside > 15_000, "{inside} voxels inside the mesh");
}

#[test]
fn cgs_needs_the_mesh() {
    let ex = examples();
    fails(&["deform-image", &s(&ex.join("inputs/im1.tif")), "-pf", &s(&ex.join("ldic/im1-im3-ldic.tsv")), "-cgs"], "-tet");
}

/// `-mf2` (a mask of the deformed image, spam's `applyPhiField(imMaskDef=…)`): the per-voxel
/// field warp is the unmasked one on the mask's voxels and 0 elsewhere; a mask of another
/// shape is refused before anything is written, naming the file; with `-tet` (where spam
/// ignores it) it is ignored with a warning and the mesh image is unchanged.
#[test]
fn mask_of_the_deformed_image_keeps_its_voxels_only() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let (im1, field, od) = (s(&ex.join("inputs/im1.tif")), s(&ex.join("ldic/im1-im3-ldic.tsv")), s(d.path()));
    let mask = ex.join("inputs/mask1.tif");
    dvc(&["deform-image", &im1, "-pf", &field, "-od", &od, "-pre", "plain", "-q"]);
    dvc(&["deform-image", &im1, "-pf", &field, "-mf2", &s(&mask), "-od", &od, "-pre", "masked", "-q"]);
    let (plain, masked, keep) = (voxels(&d.path().join("plain-def.tif")), voxels(&d.path().join("masked-def.tif")), voxels(&mask));
    let (mut inside, mut outside) = (0, 0);
    for ((p, m), k) in plain.iter().zip(&masked).zip(&keep) {
        if *k != 0.0 {
            assert_eq!(m, p);
            inside += 1;
        } else {
            assert_eq!(*m, 0.0);
            outside += 1;
        }
    }
    assert!(inside > 1000 && outside > 1000, "{inside} voxels in the mask, {outside} out");
    fails(&["deform-image", &im1, "-pf", &field, "-mf2", &s(&ex.join("2d/inputs/lab2d-1.tif")), "-od", &od, "-pre", "bad", "-q"], "lab2d-1.tif");
    assert!(!d.path().join("bad-def.tif").exists());
    dvc(&["deform-image", &im1, "-pf", &field, "-tet", "-od", &od, "-pre", "tet", "-q"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dvc-stream"))
        .args(["deform-image", &im1, "-pf", &field, "-tet", "-mf2", &s(&mask), "-od", &od, "-pre", "tetm", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignored with --triangulation"));
    assert_eq!(voxels(&d.path().join("tet-tetMesh-def.tif")), voxels(&d.path().join("tetm-tetMesh-def.tif")));
}

/// A field of zero displacement deformed through the mesh gives back the input inside the mesh:
/// voxels on the hull's faces sample a rounding error outside the vertices' box, which once
/// indexed before the box read for the slab (a panic).
#[test]
fn zero_field_through_the_mesh_is_the_input() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let mut field = dvc_stream::field::PhiField::read(&ex.join("ldic/im1-im3-ldic.tsv")).unwrap();
    for p in field.phis.iter_mut() {
        *p = dvc_stream::phi::Phi::identity();
    }
    let still = d.path().join("still.tsv");
    dvc_stream::field::tsv::write_field(&still, &field).unwrap();
    let im1 = ex.join("inputs/im1.tif");
    dvc(&["deform-image", &s(&im1), "-pf", &s(&still), "-tet", "-od", &s(d.path()), "-pre", "z", "-q"]);
    let (out, inp) = (voxels(&d.path().join("z-tetMesh-def.tif")), voxels(&im1));
    let inside: Vec<_> = out.iter().zip(&inp).filter(|(o, _)| **o != 0.0).collect();
    assert!(inside.len() > 15_000, "{} voxels inside the mesh", inside.len());
    assert!(inside.iter().all(|(o, i)| o == i));
}

/// Options that do not apply are said, not dropped in silence: `-tet` on a 2D image (deformed
/// per pixel, as spam) and `-a` without `-tet` each give a warning, and the run still succeeds.
#[test]
fn options_that_do_not_apply_are_warned_about() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let two_d = run(&["deform-image", &s(&ex.join("2d/inputs/im2d-1.tif")), "-pf", &s(&ex.join("2d/out/im2d-1-im2d-3-ldic.tsv")), "-tet", "-od", &od, "-pre", "p", "-q"]);
    assert!(two_d.contains("--triangulation (-tet) ignored for a 2D image"), "{two_d}");
    let alpha = run(&["deform-image", &s(&ex.join("inputs/im1.tif")), "-pf", &s(&ex.join("ldic/im1-im3-ldic.tsv")), "-a", "2", "-od", &od, "-pre", "a", "-q"]);
    assert!(alpha.contains("(-a) applies to --triangulation (-tet) only"), "{alpha}");
}
