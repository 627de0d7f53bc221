//! The options of pixel-search, pixel-search-propagate and the field tools that the
//! example-based tests do not reach, and their failure modes: a clear one-line error, exit
//! status 2, and no output file left behind.

use std::path::Path;

use dvc_stream::field::PhiField;
use dvc_stream::phi;
use nalgebra::Vector3;

mod common;
use common::{dvc, examples, fails, s};

fn inp(f: &str) -> String {
    s(&examples().join("inputs").join(f))
}

fn ex(f: &str) -> String {
    s(&examples().join(f))
}

fn read(p: &Path) -> PhiField {
    PhiField::read(p).unwrap()
}

#[test]
fn pixel_search_options() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let (im1, im2) = (inp("im1.tif"), inp("im2.tif"));
    // Grey thresholds no window passes: every node skipped; -notsv leaves only Parquet.
    let out = dvc(&["pixel-search", &im1, &im2, "-ns", "15", "-hws", "5", "-glt", "1e9", "-notsv", "-od", &od, "-pre", "g", "-q"]);
    // -q: the statuses are in the one-line summary on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("returnStatus -5: 27 →"));
    assert!(!d.path().join("g-pixelSearch.tsv").exists());
    assert!(read(&d.path().join("g-pixelSearch.parquet")).return_status.iter().all(|r| r.code() == -5));
    dvc(&["pixel-search", &im1, &im2, "-ns", "15", "-hws", "5", "-ght", "0", "-od", &od, "-pre", "h", "-q"]);
    assert!(read(&d.path().join("h-pixelSearch.tsv")).return_status.iter().all(|r| r.code() == -5));
    // A mask on im2 (0 where X ≥ 45): the found displacements stay right.
    dvc(&["pixel-search", &im1, &im2, "-ns", "15", "-hws", "5", "-mf2", &inp("mask1.tif"), "-od", &od, "-pre", "m2", "-q"]);
    let m2 = read(&d.path().join("m2-pixelSearch.tsv"));
    for i in 0..m2.len() {
        if m2.return_status[i].code() == 1 {
            assert!((phi::translation(&m2.phis[i]) - Vector3::new(1.2, -2.4, 0.8)).abs().max() < 1.0, "node {i}");
        }
    }
    // -pfb: a registration measured at bin 2 guides the full-resolution search. With a zero
    // range the answer is the rounded, doubled guess.
    let reg = d.path().join("half.tsv");
    std::fs::write(&reg, std::fs::read_to_string(examples().join("reg/im1-im2-registration.tsv")).unwrap()).unwrap();
    dvc(&["pixel-search", &im1, &im2, "-ns", "15", "-hws", "5", "-pf", &s(&reg), "-pfb", "2", "-sr", "0", "0", "0", "0", "0", "0", "-od", &od, "-pre", "b", "-q"]);
    let b = read(&d.path().join("b-pixelSearch.tsv"));
    assert_eq!(phi::translation(&b.phis[13]), Vector3::new(2.0, -5.0, 2.0), "2 × (1.21, −2.40, 0.79), rounded");
    // Labels: -lvt above every label's volume skips them all; -ld 0 keeps them.
    let out = dvc(&["pixel-search", &im1, &im2, "-lab1", &inp("lab1.tif"), "-lvt", "100000", "-od", &od, "-pre", "lvt", "-q"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(", -5: 8 →"), "label 0 apart, every label skipped");
    dvc(&["pixel-search", &im1, &im2, "-lab1", &inp("lab1.tif"), "-ld", "0", "-od", &od, "-pre", "ld0", "-q"]);
    let l = read(&d.path().join("ld0-pixelSearch.tsv"));
    assert!((1..9).all(|k| phi::translation(&l.phis[k]) == Vector3::new(1.0, -2.0, 1.0)));
    // Propagation with a tiny neighbourhood and weighting distance: ranking still reaches
    // every node (nearest-point fallback), and the smooth field is found the same way.
    dvc(&["pixel-search-propagate", &im1, &im2, "-sp", "30", "30", "30", "1", "-2", "1", "-ns", "15", "-nr", "1", "-gwd", "1", "-od", &od, "-pre", "nr", "-q"]);
    let nr = read(&d.path().join("nr-pixelSearchPropagate.tsv"));
    assert_eq!(nr.len(), 27);
    assert!(nr.phis.iter().all(|p| phi::translation(p) == Vector3::new(1.0, -2.0, 1.0)));
}

#[test]
fn field_tool_options() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let ldic = ex("ldic/im1-im3-ldic.tsv");
    // regular-strain: one node demoted to status 1 masks its Q8 cells by default; -rst 1 or
    // -nomaskBad keeps them. -vtkln keeps NaN in the VTK; -notsv writes no TSV.
    let text = std::fs::read_to_string(examples().join("ldic/im1-im3-ldic.tsv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut v: Vec<String> = lines[1].split('\t').map(String::from).collect();
    v[18] = "1.0000000".into();
    lines[1] = v.join("\t");
    let demoted = d.path().join("demoted.tsv");
    std::fs::write(&demoted, lines.join("\n") + "\n").unwrap();
    let vol = |name: &str| {
        let t = dvc_stream::field::tsv::read_table(&d.path().join(name)).unwrap();
        let c = t.col(&["vol"]).unwrap();
        t.rows.iter().map(|r| r[c]).collect::<Vec<f64>>()
    };
    dvc(&["regular-strain", "-pf", &s(&demoted), "-vtk", "-vtkln", "-od", &od, "-q"]);
    assert!(vol("demoted-strain-Q8.tsv")[0].is_nan() && vol("demoted-strain-Q8.tsv")[7].is_finite());
    assert!(std::fs::read_to_string(d.path().join("demoted-strain-Q8.vtk")).unwrap().contains("nan"));
    dvc(&["regular-strain", "-pf", &s(&demoted), "-rst", "1", "-od", &od, "-pre", "rst", "-q"]);
    assert!(vol("rst-strain-Q8.tsv")[0].is_finite());
    dvc(&["regular-strain", "-pf", &s(&demoted), "-nomaskBad", "-notsv", "-od", &od, "-pre", "nm", "-q"]);
    assert!(!d.path().join("nm-strain-Q8.tsv").exists() && d.path().join("nm-strain-Q8.parquet").exists());
    // pass-phi-field: -nn 1 copies the nearest node's Φ (moved to the target); -cps leaves
    // points outside the field's box NaN (status −7); -pfb scales; -regsF no subtracts only t.
    dvc(&["pass-phi-field", "-pf", &ldic, "-ns", "15", "-im1shape", "60", "60", "60", "-nn", "1", "-F", "no", "-od", &od, "-pre", "nn1", "-q"]);
    let (src, nn1) = (read(Path::new(&ldic)), read(&d.path().join("nn1-passed-ns15.tsv")));
    assert!((0..27).all(|i| phi::translation(&nn1.phis[i]) == phi::translation(&src.phis[i])), "same grid: each node is its own nearest");
    dvc(&["pass-phi-field", "-pf", &ldic, "-ns", "5", "-im1shape", "60", "60", "60", "-nn", "8", "-cps", "-od", &od, "-pre", "cps", "-q"]);
    let cps = read(&d.path().join("cps-passed-ns5.tsv"));
    let outside = |p: &Vector3<f64>| p.iter().any(|v| *v < 15.0 || *v > 45.0);
    for i in 0..cps.len() {
        assert_eq!(outside(&cps.positions[i]), cps.return_status[i].code() == -7, "node {i} at {:?}", cps.positions[i]);
    }
    dvc(&["pass-phi-field", "-pf", &ldic, "-pfb", "2", "-ns", "30", "-im1shape", "120", "120", "120", "-od", &od, "-pre", "pfb", "-q"]);
    let pfb = read(&d.path().join("pfb-passed-ns30.tsv"));
    assert!((phi::translation(&pfb.phis[13]) - phi::translation(&src.phis[13]) * 2.0).norm() < 1e-6, "node (60,60,60) = 2 × node (30,30,30)");
    dvc(&["pass-phi-field", "-pf", &ldic, "-regs", &ex("reg/im1-im3-registration.tsv"), "-regsF", "no", "-od", &od, "-q"]);
    let disp = read(&d.path().join("im1-im3-ldic-passed-regs-disp.tsv"));
    let reg = read(&examples().join("reg/im1-im3-registration.tsv"));
    assert!((phi::translation(&disp.phis[0]) - (phi::translation(&src.phis[0]) - phi::translation(&reg.phis[0]))).norm() < 1e-6);
    // filter-phi-field: -nomask lets failed (−5) points be selected too; -fmr 2 is a wider
    // median; -nn sets the neighbourhood.
    dvc(&["ldic", &inp("im1.tif"), &inp("im3.tif"), "-hws", "5", "-ns", "10", "-pf", &ex("reg/im1-im3-registration.tsv"), "-mf1", &inp("mask1.tif"), "-od", &od, "-pre", "masked", "-q"]);
    let masked = d.path().join("masked-ldic.tsv");
    dvc(&["filter-phi-field", "-pf", &s(&masked), "-srs", "-srst", "-5", "-cint", "-nomask", "-nn", "8", "-od", &od, "-pre", "nomask", "-q"]);
    let nm = read(&d.path().join("nomask-filtered.tsv"));
    assert!(nm.phis.iter().all(|p| phi::translation(p).iter().all(|v| v.is_finite())), "the 25 masked nodes are filled in");
    dvc(&["filter-phi-field", "-pf", &s(&masked), "-fm", "-fmr", "2", "-od", &od, "-pre", "fmr", "-q"]);
    dvc(&["filter-phi-field", "-pf", &s(&masked), "-fm", "-od", &od, "-pre", "fm1", "-q"]);
    let (f2, f1) = (read(&d.path().join("fmr-filtered.tsv")), read(&d.path().join("fm1-filtered.tsv")));
    assert!((0..f1.len()).any(|i| f1.phis[i][(0, 3)] != f2.phis[i][(0, 3)] && f1.phis[i][(0, 3)].is_finite()), "a wider cube gives other medians");
    // deform-image: -nn 1 (nearest point's map only) still lands near im3.
    dvc(&["deform-image", &inp("im1.tif"), "-pf", &ldic, "-nn", "1", "-od", &od, "-pre", "nn1", "-q"]);
    assert!(d.path().join("nn1-def.tif").exists());
}

#[test]
fn bad_inputs_fail_with_one_line_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let (im1, im2) = (inp("im1.tif"), inp("im2.tif"));
    let reg = ex("reg/im1-im3-registration.tsv");
    let ldic = ex("ldic/im1-im3-ldic.tsv");
    let labels = ex("pixelSearch/psLab-pixelSearch.tsv");
    for (args, says) in [
        (vec!["regular-strain", "-pf", &reg, "-od", &od], "single registration"),
        (vec!["regular-strain", "-pf", &ldic, "-rst", "9", "-od", &od], "return status below 9"),
        (vec!["pass-phi-field", "-pf", &ldic, "-im1shape", "60", "60", "60", "-od", &od], "node-spacing"),
        (vec!["pass-phi-field", "-pf", &ldic, "-ns", "10", "-od", &od], "--im1"),
        (vec!["pass-phi-field", "-pf", &reg, "-regs", &reg, "-od", &od], "single registration"),
        (vec!["pass-phi-field", "-pf", &ldic, "-ns", "10", "-im1shape", "60", "60", "60", "-rst", "9", "-od", &od], "no point"),
        (vec!["filter-phi-field", "-pf", &reg, "-od", &od], "single registration"),
        (vec!["filter-phi-field", "-pf", &labels, "-fm", "-od", &od], "grid fields only"),
        (vec!["filter-phi-field", "-pf", &ldic, "-fm", "-F", "rigid", "-od", &od], "rigid"),
        (vec!["filter-phi-field", "-pf", &ldic, "-srs", "-srst", "9", "-cint", "-od", &od], "nothing to correct from"),
        (vec!["deform-image", &im1, "-pf", &ldic, "-rst", "9", "-od", &od], "no point"),
        (vec!["deform-image", &im1, "-pf", &ldic, "-rad", "0", "-od", &od], "must be a finite number above 0"),
        (vec!["pixel-search", &im1, &im2, "-ns", "15", "-hws", "5", "-pf", &ex("passPhiField/im1-im3-ldic-passed-ns10.HEAD30.tsv"), "-od", &od], "differs from --node-spacing"),
        (vec!["pixel-search-propagate", &im1, &im2, "-sp", "30", "30", "30", "1", "-2", "1", "-gp", &reg, "-od", &od], "is not three numbers"),
        (vec!["pixel-search-propagate", &im1, &im2, "-sp", "30", "30", "30", "1", "-2", "1", "-lab1", &inp("lab1.tif"), "-gp", &reg, "-od", &od], "two different modes"),
    ] {
        fails(&args, says);
    }
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing written by failed runs");
}
