//! Values and inputs that would give garbage are refused with one line and exit status 2,
//! before anything is written: NaN or zero bin ratios and thresholds, binnings that are not
//! powers of 2, zero neighbours or radii, and strain on a field that is not a complete,
//! ordered grid. And what used to saturate (synth --dtype uint8) now has contrast.

use std::path::Path;

mod common;
use common::{dvc, examples, fails, s};

fn inp(f: &str) -> String {
    s(&examples().join("inputs").join(f))
}

#[test]
fn numeric_options_that_make_no_sense_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let (im1, im2) = (inp("im1.tif"), inp("im2.tif"));
    let reg = s(&examples().join("reg/im1-im2-registration.tsv"));
    let field = s(&examples().join("ldic/im1-im3-ldic.tsv"));
    let ldic = |extra: &[&str], says: &str| {
        let mut a = vec!["ldic", &im1, &im2, "-ns", "15", "-hws", "5", "-od", &od, "-q"];
        a.extend_from_slice(extra);
        fails(&a, says);
    };
    ldic(&["-pf", &reg, "-pfb", "nan"], "must be a finite number above 0");
    ldic(&["-pf", &reg, "-pfb", "0"], "must be a finite number above 0");
    ldic(&["-dp", "nan"], "must be a finite number ≥ 0");
    ldic(&["-glt", "nan"], "is not a number");
    ldic(&["-mc", "1.5"], "must be a fraction between 0 and 1");
    fails(&["ldic", &im1, &im2, "-ns", "0", "-hws", "5", "-od", &od], "must be at least 1");
    fails(&["pixel-search", &im1, &im2, "-ns", "15", "-hws", "5", "-ght", "nan", "-od", &od], "is not a number");
    fails(&["pixel-search", &im1, &im2, "-ns", "15", "-hws", "5", "-pf", &reg, "-pfb", "inf", "-od", &od], "must be a finite number above 0");
    fails(&["ddic", &im1, &inp("lab1.tif"), &im2, "-regbb", "3", "-od", &od], "is not a power of 2");
    fails(&["ddic", &im1, &inp("lab1.tif"), &im2, "-msb", "0", "-od", &od], "is not a power of 2");
    fails(&["reg", &im1, &im2, "-bb", "0", "-od", &od], "is not a power of 2");
    fails(&["reg", &im1, &im2, "-bb", "3", "-od", &od], "is not a power of 2");
    fails(&["reg", &im1, &im2, "-dp", "nan", "-od", &od], "must be a finite number ≥ 0");
    fails(&["regular-strain", "-pf", &field, "-g", "-r", "0", "-od", &od], "must be a finite number above 0");
    fails(&["deform-image", &im1, "-pf", &field, "-nn", "0", "-od", &od], "must be at least 1");
    fails(&["filter-phi-field", "-pf", &field, "-cint", "-nn", "0", "-od", &od], "must be at least 1");
    fails(&["pass-phi-field", "-pf", &field, "-ns", "10", "-im1shape", "50", "50", "50", "-nr", "nan", "-od", &od], "must be a finite number above 0");
    fails(&["synth", &od, "--noise", "nan"], "must be a finite number ≥ 0");
    fails(&["synth", &od, "--chunk", "0"], "must be at least 1");
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "nothing written");
}

fn rows(text: &str) -> (String, Vec<String>) {
    let mut lines = text.lines().map(String::from);
    (lines.next().unwrap(), lines.collect())
}

#[test]
fn strain_of_a_shuffled_field_is_that_of_the_ordered_one() {
    let d = tempfile::tempdir().unwrap();
    let (head, mut body) = rows(&std::fs::read_to_string(examples().join("ldic/im1-im3-ldic.tsv")).unwrap());
    // A fixed permutation that moves every row.
    body.reverse();
    body.swap(3, 17);
    body.swap(8, 21);
    let shuffled = d.path().join("shuffled.tsv");
    std::fs::write(&shuffled, format!("{head}\n{}\n", body.join("\n"))).unwrap();
    for mode in [&[][..], &["-g"][..]] {
        let run = |pf: &Path, pre: &str| -> String {
            let mut a = vec!["regular-strain", "-pf", pf.to_str().unwrap(), "-od", d.path().to_str().unwrap(), "-pre", pre, "-q"];
            a.extend_from_slice(mode);
            dvc(&a);
            let name = if mode.is_empty() { "Q8" } else { "Geers" };
            std::fs::read_to_string(d.path().join(format!("{pre}-strain-{name}.tsv"))).unwrap()
        };
        let ordered = run(&examples().join("ldic/im1-im3-ldic.tsv"), "ordered");
        assert_eq!(run(&shuffled, "shuffled"), ordered, "{mode:?}");
    }
    // And the ordered one is spam's.
    let ours = std::fs::read_to_string(d.path().join("ordered-strain-Q8.tsv")).unwrap();
    let spam = std::fs::read_to_string(examples().join("regularStrain/im1-im3-ldic-strain-Q8.tsv")).unwrap();
    assert_eq!(ours.lines().count(), spam.lines().count());
}

#[test]
fn a_field_with_a_missing_plane_or_node_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (head, body) = rows(&std::fs::read_to_string(examples().join("ldic/im1-im3-ldic.tsv")).unwrap());
    // Four Z planes (15, 30, 45, 60): the 45 plane copied to 60, then the 45 plane removed.
    let with_z = |line: &str, z: &str| -> String {
        let mut v: Vec<&str> = line.split('\t').collect();
        v[1] = z;
        v.join("\t")
    };
    let mut four: Vec<String> = body.clone();
    four.extend(body.iter().filter(|l| l.split('\t').nth(1) == Some("45.0000000")).map(|l| with_z(l, "60.0000000")));
    let missing_plane: Vec<String> = four.iter().filter(|l| l.split('\t').nth(1) != Some("45.0000000")).cloned().collect();
    let f = d.path().join("missing-plane.tsv");
    std::fs::write(&f, format!("{head}\n{}\n", missing_plane.join("\n"))).unwrap();
    let od = s(d.path());
    fails(&["regular-strain", "-pf", &s(&f), "-od", &od], "missing-plane.tsv: not a regular grid: Z plane at 45 missing (spacing 15)");
    fails(&["regular-strain", "-pf", &s(&f), "-g", "-od", &od], "Z plane at 45 missing");
    // One node removed.
    let mut holed = body.clone();
    holed.remove(13);
    let h = d.path().join("holed.tsv");
    std::fs::write(&h, format!("{head}\n{}\n", holed.join("\n"))).unwrap();
    fails(&["regular-strain", "-pf", &s(&h), "-od", &od], "not a regular grid: node at [30, 30, 30] missing");
    assert!(!d.path().join("missing-plane-strain-Q8.tsv").exists() && !d.path().join("holed-strain-Q8.tsv").exists());
}

#[test]
fn synth_uint8_has_contrast() {
    let d = tempfile::tempdir().unwrap();
    dvc(&["synth", &s(d.path()), "--shape", "32", "--dtype", "uint8", "--noise", "1", "-q"]);
    let v = dvc_stream::store::Volume::open(&d.path().join("im1.zarr"), dvc_stream::store::ChunkCache::new(1 << 24)).unwrap();
    let a = v.read_box(0..32, 0..32, 0..32).unwrap();
    let n = a.len() as f64;
    let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
    let sd = (a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let saturated = a.iter().filter(|&&x| x >= 255.0).count() as f64 / n;
    assert!(sd > 5.0, "grey levels vary: sd {sd}");
    assert!(saturated < 0.01, "{:.1} % of voxels at 255", 100.0 * saturated);
    // The pair still correlates: the texture is the same, only scaled.
    dvc(&["synth", &s(&d.path().join("t")), "--shape", "48", "--dtype", "uint8", "--speckle", "4", "--translate", "0.5", "0", "0", "-q"]);
}
