//! `dvc-stream plot` and the `--png` quicklooks: PNGs decode, have the expected size, and a
//! known field gives the expected pixels at known places.

use std::path::Path;

use dvc_stream::field::{tsv, FieldKind, FieldRow, Layout, PhiField};
use nalgebra::Vector3;

mod common;
use common::{dvc, fails, s};

/// (width, height, RGB or grey samples, channels, the range text chunk).
fn decode(path: &Path) -> (usize, usize, Vec<u8>, usize, Option<String>) {
    let mut reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let range = reader.info().uncompressed_latin1_text.iter().find(|t| t.keyword == "dvc-stream:range").map(|t| t.text.clone());
    let ch = if info.color_type == png::ColorType::Rgb { 3 } else { 1 };
    (info.width as usize, info.height as usize, buf[..info.buffer_size()].to_vec(), ch, range)
}

fn grid_field(dir: &Path) -> std::path::PathBuf {
    // 5 × 4 × 3 nodes, spacing 10; Zdisp = the node's Z index, one node without data.
    let mut f = PhiField::new(FieldKind::Grid { dims: [5, 4, 3], spacing: [10.0; 3] }, Layout::Ldic);
    for z in 0..5 {
        for y in 0..4 {
            for x in 0..3 {
                let mut p = dvc_stream::phi::identity();
                p[(0, 3)] = if (z, y, x) == (2, 3, 1) { f64::NAN } else { z as f64 };
                p[(2, 3)] = 100.0 + x as f64;
                let mut r = FieldRow::truth(((z * 4 + y) * 3 + x) as i64, Vector3::new(10.0 + 10.0 * z as f64, 10.0 + 10.0 * y as f64, 10.0 + 10.0 * x as f64), p);
                r.return_status = if z == 0 { -5.0 } else { 2.0 };
                f.push(r);
            }
        }
    }
    let path = dir.join("g.tsv");
    tsv::write_field(&path, &f).unwrap();
    path
}

#[test]
fn grid_maps_have_the_expected_pixels() {
    let d = tempfile::tempdir().unwrap();
    let f = grid_field(d.path());
    dvc(&["plot", &s(&f), "-c", "Zdisp", "--axis", "x", "--index", "1", "--colormap", "grey", "--range", "0", "4", "--histogram"]);
    let (w, h, px, ch, range) = decode(&d.path().join("g-Zdisp-x1.png"));
    // Across X: rows are the 5 Z nodes, columns the 4 Y nodes, 32 pixels each, then the bar.
    assert_eq!((w, h, ch), (4 * 32 + 4 + 16, 5 * 32, 3));
    assert_eq!(range.as_deref(), Some("0 4"));
    for z in 0..5 {
        for y in 0..4 {
            let (r, c) = (z * 32 + 16, y * 32 + 16);
            let got = &px[(r * w + c) * 3..(r * w + c) * 3 + 3];
            let want = if (z, y) == (2, 3) { [96, 96, 96] } else { [((z as f64 / 4.0) * 255.0).round() as u8; 3] };
            assert_eq!(got, want, "node z {z}, y {y}");
        }
    }
    // The colour bar runs from the high end at the top to the low end at the bottom.
    assert_eq!(&px[(w - 8) * 3..(w - 8) * 3 + 3], &[255, 255, 255]);
    assert_eq!(&px[((h - 1) * w + w - 8) * 3..((h - 1) * w + w - 8) * 3 + 3], &[0, 0, 0]);
    let (hw, hh, hist, _, _) = decode(&d.path().join("g-Zdisp-histogram.png"));
    assert_eq!((hw, hh), (400, 240));
    assert!(hist.iter().any(|&v| v > 200), "bars are drawn");
    // Defaults: displacements and status on the middle Z slice, viridis, auto range.
    dvc(&["plot", &s(&f), "-od", &s(&d.path().join("o")), "-pre", "q"]);
    for c in ["Zdisp", "Ydisp", "Xdisp", "returnStatus"] {
        let (w, h, _, _, range) = decode(&d.path().join(format!("o/q-{c}-z2.png")));
        assert_eq!((w, h), (3 * 32 + 20, 4 * 32), "{c}");
        assert!(range.is_some());
    }
    let (_, _, _, _, range) = decode(&d.path().join("o/q-Xdisp-z2.png"));
    assert_eq!(range.as_deref(), Some("100 102"));
    fails(&["plot", &s(&f), "-c", "nothing"], "no column 'nothing'");
    fails(&["plot", &s(&f), "--range", "5", "1"], "LOW must be below HIGH");
    fails(&["plot", &s(&f), "--axis", "z", "--index", "9"], "outside the grid");
    fails(&["plot", &s(&d.path().join("none.tsv"))], "none.tsv: cannot read");
    // Scattered points without displacements: nothing to draw unless a histogram is asked for.
    let strain = d.path().join("scattered.tsv");
    std::fs::write(&strain, "StrainPointNumber\tZpos\tYpos\tXpos\tvol\n0\t1\t2\t3\t0.1\n1\t4\t2\t9\t0.2\n2\t1\t7\t3\t0.3\n").unwrap();
    fails(&["plot", &s(&strain)], "nothing to draw");
    dvc(&["plot", &s(&strain), "--histogram"]);
    assert!(d.path().join("scattered-vol-histogram.png").exists());
}

#[test]
fn label_fields_get_arrows() {
    let d = tempfile::tempdir().unwrap();
    let mut f = PhiField::new(FieldKind::Labels, Layout::Ddic);
    for l in 0..6 {
        let mut p = dvc_stream::phi::identity();
        p[(1, 3)] = 2.0;
        let pos = Vector3::new(50.0, 20.0 + 30.0 * (l % 3) as f64, 20.0 + 40.0 * (l / 3) as f64);
        f.push(FieldRow::truth(l, pos, p));
    }
    let path = d.path().join("lab.tsv");
    tsv::write_field(&path, &f).unwrap();
    dvc(&["plot", &s(&path)]);
    let (w, h, px, _, _) = decode(&d.path().join("lab-quiver-z.png"));
    assert!(w > 100 && h > 100 && w <= 600 && h <= 600, "{w} × {h}");
    // Each start point is white, and the arrow (along +Y, i.e. down) is drawn below it.
    let at = |x: usize, y: usize| &px[(y * w + x) * 3..(y * w + x) * 3 + 3];
    assert_eq!(at(16, 16), &[255, 255, 255]);
    assert!((17..40).any(|y| at(16, y) != [0, 0, 0]), "an arrow below the first point");
}

#[test]
fn quicklooks_of_ldic_ddic_strain_and_reg() {
    let d = tempfile::tempdir().unwrap();
    let sd = d.path().join("s");
    dvc(&["synth", &s(&sd), "--shape", "48", "--speckle", "4", "--translate", "1.5", "-1", "0.5", "-q"]);
    let (im1, im2) = (s(&sd.join("im1.zarr")), s(&sd.join("im2.zarr")));
    let o = d.path().join("o");
    dvc(&["ldic", &im1, &im2, "-hws", "5", "-ns", "8", "-od", &s(&o), "-pre", "r", "--png", "-q"]);
    for c in ["Zdisp", "Ydisp", "Xdisp", "returnStatus"] {
        let p = o.join(format!("r-ldic-{c}-z2.png"));
        assert!(p.exists(), "{}", p.display());
        decode(&p);
    }
    dvc(&["regular-strain", "-pf", &s(&o.join("r-ldic.tsv")), "-od", &s(&o), "-pre", "st", "--png"]);
    assert!(std::fs::read_dir(&o).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("st-strain-Q8-vol-")), "a strain map");
    dvc(&["reg", &im1, &im2, "-bb", "2", "-od", &s(&o), "-pre", "g", "--png"]);
    let mean = |p: &Path| {
        let (_, _, px, _, _) = decode(p);
        px.iter().map(|&v| v as f64).sum::<f64>() / px.len() as f64
    };
    let (before, after) = (mean(&o.join("g-residual-before.png")), mean(&o.join("g-residual-after.png")));
    assert!(after < before / 3.0, "the residual drops after registration: {before} → {after}");
    // deform-image: image 2 moved back by the registration, against image 1.
    let inv = o.join("inv.tsv");
    {
        let mut f = PhiField::read(&o.join("g-registration.tsv")).unwrap();
        f.phis[0] = f.phis[0].try_inverse().unwrap();
        tsv::write_field(&inv, &f).unwrap();
    }
    dvc(&["deform-image", &im2, "-pf", &s(&inv), "--output", &s(&o.join("back.tif")), "--png-against", &im1]);
    let (before, after) = (mean(&o.join("back-residual-before.png")), mean(&o.join("back-residual-after.png")));
    assert!(after < before / 2.0, "deform-image's residual drops: {before} → {after}");
    let small = d.path().join("small");
    dvc(&["synth", &s(&small), "--shape", "20", "-q"]);
    fails(&["deform-image", &im2, "-pf", &s(&inv), "--output", &s(&o.join("back2.tif")), "--png-against", &s(&small.join("im1.zarr"))], "im1.zarr");
    assert!(!o.join("back2-residual-before.png").exists());

    let gd = d.path().join("g");
    dvc(&["synth", &s(&gd), "--grains", "12", "--shape", "56", "--grain-radius", "5", "7", "--grain-max-translation", "2", "--grain-max-rotation", "3", "-q"]);
    dvc(&["ddic", &s(&gd.join("im1.zarr")), &s(&gd.join("lab1.zarr")), &s(&gd.join("im2.zarr")), "-od", &s(&o), "-pre", "dd", "--png", "-q"]);
    decode(&o.join("dd-ddic-quiver-z.png"));
    fails(&["ldic", &im1, &im2, "-hws", "5", "-ns", "8", "-od", &s(&o), "--shard", "0/2", "--png"], "need the whole field");
}
