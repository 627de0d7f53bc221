//! `dvc-stream plot` and the `--png` figures: each figure type draws its title, axis names
//! and colour-bar numbers (found by their exact pixels, rendered with the same embedded
//! font), colours come from converged points only, physical units appear when the table
//! carries a voxel size, and the residual figures drop after a registration.

use std::path::Path;

use dvc_stream::field::parquet::{write_field, FieldMeta};
use dvc_stream::field::{tsv, FieldKind, FieldRow, Layout, PhiField, Status};
use dvc_stream::store::voxel_size::VoxelSize;
use dvc_stream::view::figure::{contains_stamp, text_stamp, Turn, LABEL, NOTE, SUBTITLE, TICK, TITLE};
use nalgebra::Vector3;

mod common;
use common::{dvc, fails, s};

/// A decoded RGB figure and its text chunks.
struct Png {
    w: usize,
    h: usize,
    px: Vec<u8>,
    chunks: Vec<(String, String)>,
}

impl Png {
    fn read(path: &Path) -> Png {
        let mut reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
        let chunks = reader.info().uncompressed_latin1_text.iter().map(|t| (t.keyword.clone(), t.text.clone())).collect();
        Png { w: info.width as usize, h: info.height as usize, px: buf[..info.buffer_size()].to_vec(), chunks }
    }

    fn chunk(&self, k: &str) -> Option<&str> {
        self.chunks.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    fn range(&self) -> (f64, f64) {
        let r: Vec<f64> = self.chunk("dvc-stream:range").unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
        (r[0], r[1])
    }

    /// Whether `text` is drawn at `size`, turned as `turn` says.
    fn has_text(&self, text: &str, size: f64, turn: Turn) -> bool {
        contains_stamp(self.w, self.h, &self.px, &text_stamp(text, size, turn).unwrap())
    }

    fn assert_text(&self, text: &str, size: f64, turn: Turn) {
        assert!(self.has_text(text, size, turn), "'{text}' ({size} px, {turn:?}) is not drawn");
    }

    /// Pixels of exactly this colour.
    fn count(&self, c: [u8; 3]) -> usize {
        self.px.chunks(3).filter(|p| *p == c).count()
    }
}

fn grid_field(dir: &Path) -> std::path::PathBuf {
    // 5 × 4 × 3 nodes, spacing 10; Zdisp = the node's Z index, one node without data, the
    // Z = 0 layer skipped (status −5).
    let mut f = PhiField::new(FieldKind::Grid { dims: [5, 4, 3], spacing: [10.0; 3] }, Layout::Ldic);
    for z in 0..5 {
        for y in 0..4 {
            for x in 0..3 {
                let mut p = dvc_stream::phi::identity();
                p[(0, 3)] = if (z, y, x) == (2, 3, 1) { f64::NAN } else { z as f64 };
                p[(2, 3)] = 100.0 + x as f64;
                let mut r = FieldRow::truth(((z * 4 + y) * 3 + x) as i64, Vector3::new(10.0 + 10.0 * z as f64, 10.0 + 10.0 * y as f64, 10.0 + 10.0 * x as f64), p);
                r.return_status = if z == 0 { Status::Skipped } else { Status::Converged };
                f.push(r);
            }
        }
    }
    let path = dir.join("g.tsv");
    tsv::write_field(&path, &f).unwrap();
    path
}

#[test]
fn grid_maps_draw_title_axes_bar_numbers_and_classes() {
    let d = tempfile::tempdir().unwrap();
    let f = grid_field(d.path());
    dvc(&["plot", &s(&f), "-c", "Zdisp", "--axis", "x", "--index", "1", "--colormap", "grey", "--range", "0", "4", "--histogram"]);
    let m = Png::read(&d.path().join("g-Zdisp-x1.png"));
    assert!((700..=1300).contains(&m.w) && m.h >= 400, "{} × {}", m.w, m.h);
    assert_eq!(m.range(), (0.0, 4.0));
    m.assert_text("g.tsv — Zdisp", TITLE, Turn::None);
    // Across X: Y runs along, Z down.
    m.assert_text("Y (voxels)", LABEL, Turn::None);
    m.assert_text("Z (voxels)", LABEL, Turn::Up);
    m.assert_text("Zdisp (voxels)", LABEL, Turn::None);
    for tick in ["0", "1", "2", "3", "4"] {
        m.assert_text(tick, TICK, Turn::None);
    }
    m.assert_text("colours: range set by --range", NOTE, Turn::None);
    // Grey levels z / 4 for Z = 1..4 (Z = 0 is skipped, grey 165), the NaN node dark grey.
    for z in 1..5 {
        let g = ((z as f64 / 4.0) * 255.0).round() as u8;
        assert!(m.count([g; 3]) > 1000, "cells of Z = {z}");
    }
    assert!(m.count([165; 3]) > 1000, "skipped cells");
    assert!(m.count([70; 3]) > 1000, "the NaN cell");
    m.assert_text("no value (NaN): 1", NOTE, Turn::None);
    // Without a status among the skipped ones, no hatch in the legend.
    assert!(!m.has_text("not converged", NOTE, Turn::None));

    let hist = Png::read(&d.path().join("g-Zdisp-histogram.png"));
    hist.assert_text("g.tsv — Zdisp: histogram", TITLE, Turn::None);
    hist.assert_text("Zdisp (voxels)", LABEL, Turn::None);
    hist.assert_text("points per bin", LABEL, Turn::Up);
    hist.assert_text("4", TICK, Turn::None);
    assert!(hist.count([59, 110, 165]) > 500, "bars are drawn");

    // Defaults: displacements and status on the middle Z slice, viridis.
    dvc(&["plot", &s(&f), "-od", &s(&d.path().join("o")), "-pre", "q"]);
    for c in ["Zdisp", "Ydisp", "Xdisp", "returnStatus"] {
        let p = Png::read(&d.path().join(format!("o/q-{c}-z2.png")));
        p.assert_text(&format!("g.tsv — {c}"), TITLE, Turn::None);
        p.assert_text("X (voxels)", LABEL, Turn::None);
        p.assert_text("Y (voxels)", LABEL, Turn::Up);
    }
    // Xdisp is 100..102 on every converged node: the 2–98 % of 45 converged values.
    let x = Png::read(&d.path().join("o/q-Xdisp-z2.png"));
    let (lo, hi) = x.range();
    assert!((100.0..100.1).contains(&lo) && (101.9..=102.0).contains(&hi), "{lo} {hi}");
    x.assert_text("101", TICK, Turn::None);
    fails(&["plot", &s(&f), "-c", "nothing"], "no column 'nothing'");
    fails(&["plot", &s(&f), "--range", "5", "1"], "LOW must be below HIGH");
    fails(&["plot", &s(&f), "--axis", "z", "--index", "9"], "outside the grid");
    fails(&["plot", &s(&d.path().join("none.tsv"))], "none.tsv: cannot read");
    fails(&["plot", &s(&f), "--opacity", "2"], "--opacity");
    // Values whose range overflows: refused in one line, not a figure that never finishes.
    let huge = d.path().join("huge.tsv");
    std::fs::write(&huge, "NodeNumber\tZpos\tYpos\tXpos\tZdisp\tYdisp\tXdisp\treturnStatus\n0\t1\t2\t3\t1e308\t1\t1\t2\n1\t5\t2\t3\t-1e308\t1\t1\t2\n").unwrap();
    fails(&["plot", &s(&huge), "-c", "Zdisp"], "cannot be drawn");
    fails(&["plot", &s(&huge), "-c", "Xdisp", "--range", "-1e308", "1e308"], "cannot be drawn");
    dvc(&["plot", &s(&huge), "-c", "Zdisp", "--range", "-1", "1", "--histogram"]);
    // Scattered points without displacements: nothing to draw unless a histogram is asked for.
    let strain = d.path().join("scattered.tsv");
    std::fs::write(&strain, "StrainPointNumber\tZpos\tYpos\tXpos\tvol\n0\t1\t2\t3\t0.1\n1\t4\t2\t9\t0.2\n2\t1\t7\t3\t0.3\n").unwrap();
    fails(&["plot", &s(&strain)], "nothing to draw");
    dvc(&["plot", &s(&strain), "--histogram"]);
    Png::read(&d.path().join("scattered-vol-histogram.png")).assert_text("vol", LABEL, Turn::None);
}

/// The issue's `ldic -hws 8 -ns 8 --png` case: converged Zdisp spans 0.76…2.25 while one
/// status-1 node sits at −5.53 and two diverged (−1) ones at 9.
fn ldic_like(dir: &Path) -> std::path::PathBuf {
    let mut f = PhiField::new(FieldKind::Grid { dims: [3, 6, 10], spacing: [10.0; 3] }, Layout::Ldic);
    for z in 0..3 {
        for y in 0..6 {
            for x in 0..10 {
                let mut p = dvc_stream::phi::identity();
                let mut status = Status::Converged;
                p[(0, 3)] = 0.76 + 1.49 * x as f64 / 9.0;
                if (z, y, x) == (1, 3, 4) {
                    p[(0, 3)] = -5.53;
                    status = Status::IterationLimit;
                }
                if (z, y) == (1, 1) && x >= 8 {
                    p[(0, 3)] = 9.0;
                    status = Status::Diverged;
                }
                let mut r = FieldRow::truth(((z * 6 + y) * 10 + x) as i64, Vector3::new(10.0 + 10.0 * z as f64, 10.0 + 10.0 * y as f64, 10.0 + 10.0 * x as f64), p);
                r.return_status = status;
                f.push(r);
            }
        }
    }
    let path = dir.join("ldic.tsv");
    tsv::write_field(&path, &f).unwrap();
    path
}

#[test]
fn the_colour_range_excludes_unconverged_nodes() {
    let d = tempfile::tempdir().unwrap();
    let f = ldic_like(d.path());
    dvc(&["plot", &s(&f), "-c", "Zdisp", "--histogram"]);
    let m = Png::read(&d.path().join("ldic-Zdisp-z1.png"));
    let (lo, hi) = m.range();
    assert!((0.76..0.85).contains(&lo) && (2.15..=2.25).contains(&hi), "range {lo} {hi} from converged nodes only");
    m.assert_text("converged points (status 2)", NOTE, Turn::None);
    m.assert_text("not converged: 3 (status", NOTE, Turn::None);
    m.assert_text("1, −1)", NOTE, Turn::None);
    // The three hatched cells: the hatch's two greys, many pixels of each.
    assert!(m.count([95; 3]) > 500 && m.count([215; 3]) > 1000, "hatched cells");
    // The histogram counts the 177 converged nodes only.
    let h = Png::read(&d.path().join("ldic-Zdisp-histogram.png"));
    h.assert_text("177 converged points (status 2) in 50 bins; not counted: 3 not converged", SUBTITLE, Turn::None);
    let (hlo, hhi) = h.range();
    assert!(hlo >= 0.76 - 1e-9 && hhi <= 2.25 + 1e-9, "{hlo} {hhi}");
    // --range still wins.
    dvc(&["plot", &s(&f), "-c", "Zdisp", "--range", "-6", "10", "-pre", "r"]);
    assert_eq!(Png::read(&d.path().join("r-Zdisp-z1.png")).range(), (-6.0, 10.0));
}

#[test]
fn physical_units_when_the_table_has_a_voxel_size() {
    let d = tempfile::tempdir().unwrap();
    let mut f = PhiField::new(FieldKind::Grid { dims: [2, 3, 4], spacing: [10.0; 3] }, Layout::Ldic);
    for i in 0..24 {
        let (z, y, x) = (i / 12, (i / 4) % 3, i % 4);
        let mut p = dvc_stream::phi::identity();
        p[(2, 3)] = x as f64 * 0.5;
        let mut r = FieldRow::truth(i as i64, Vector3::new(10.0 + 10.0 * z as f64, 10.0 + 10.0 * y as f64, 10.0 + 10.0 * x as f64), p);
        r.return_status = Status::Converged;
        f.push(r);
    }
    let mut meta = FieldMeta::for_command("ldic", serde_json::json!({}));
    meta.voxel_size = Some(VoxelSize { zyx: [0.5, 0.5, 0.5], unit: Some("micrometer".into()) });
    let with = d.path().join("um.parquet");
    write_field(&with, &f, &meta).unwrap();
    let without = d.path().join("plain.parquet");
    write_field(&without, &f, &FieldMeta::for_command("ldic", serde_json::json!({}))).unwrap();
    dvc(&["plot", &s(&with), "-c", "Xdisp", "--histogram"]);
    dvc(&["plot", &s(&without), "-c", "Xdisp", "--histogram"]);
    let m = Png::read(&d.path().join("um-Xdisp-z1.png"));
    m.assert_text("X (voxels)", LABEL, Turn::None);
    m.assert_text("X (µm)", LABEL, Turn::None);
    m.assert_text("Y (µm)", LABEL, Turn::Down);
    // The colour bar in µm beside voxels, and the slice's position in both.
    m.assert_text("µm", LABEL, Turn::Down);
    m.assert_text("slice across Z: z = 20 voxels (= 10 µm) (node 2 of 2)", SUBTITLE, Turn::None);
    let h = Png::read(&d.path().join("um-Xdisp-histogram.png"));
    h.assert_text("Xdisp (µm)", LABEL, Turn::None);
    let plain = Png::read(&d.path().join("plain-Xdisp-z1.png"));
    plain.assert_text("X (voxels)", LABEL, Turn::None);
    assert!(!plain.has_text("X (µm)", LABEL, Turn::None));
}

#[test]
fn label_fields_get_arrows_with_axes_and_a_scale() {
    let d = tempfile::tempdir().unwrap();
    let mut f = PhiField::new(FieldKind::Labels, Layout::Ddic);
    for l in 0..7 {
        let mut p = dvc_stream::phi::identity();
        p[(1, 3)] = 2.0;
        let pos = Vector3::new(50.0, 20.0 + 30.0 * (l % 3) as f64, 20.0 + 40.0 * (l / 3) as f64);
        let mut r = FieldRow::truth(l, pos, p);
        r.return_status = Status::Converged;
        f.push(r);
    }
    let path = d.path().join("lab.tsv");
    tsv::write_field(&path, &f).unwrap();
    dvc(&["plot", &s(&path)]);
    let q = Png::read(&d.path().join("lab-quiver-z.png"));
    assert!((700..=1300).contains(&q.w), "{}", q.w);
    q.assert_text("lab.tsv — displacements in the YX plane", TITLE, Turn::None);
    q.assert_text("X (voxels)", LABEL, Turn::None);
    q.assert_text("Y (voxels)", LABEL, Turn::Up);
    q.assert_text("2 voxels", NOTE, Turn::None);
    q.assert_text("in-plane |d| (voxels)", LABEL, Turn::None);
    // Label 0 (the background of the label image) is not a grain.
    q.assert_text("6 points projected along Z (all slices); arrows 1.86× their length", SUBTITLE, Turn::None);
    // Every arrow has the same length: the colour map's top colour (viridis yellow).
    assert!(q.count([253, 231, 37]) > 100, "arrows are drawn");
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
        Png::read(&p).assert_text(&format!("r-ldic.parquet — {c}"), TITLE, Turn::None);
    }
    // The image under the field, read through the store.
    dvc(&["plot", &s(&o.join("r-ldic.parquet")), "-c", "Zdisp", "--background", &im1, "-od", &s(&d.path().join("bg"))]);
    let bg = Png::read(&d.path().join("bg/r-ldic-Zdisp-z2.png"));
    bg.assert_text("under it: im1.zarr slice z = 24", SUBTITLE, Turn::None);
    let small = d.path().join("small");
    dvc(&["synth", &s(&small), "--shape", "20", "-q"]);
    fails(&["plot", &s(&o.join("r-ldic.parquet")), "--background", &s(&small.join("im1.zarr"))], "differs from the image the table was measured on");

    dvc(&["regular-strain", "-pf", &s(&o.join("r-ldic.tsv")), "-od", &s(&o), "-pre", "st", "--png"]);
    assert!(std::fs::read_dir(&o).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("st-strain-Q8-vol-")), "a strain map");
    dvc(&["reg", &im1, &im2, "-bb", "2", "-od", &s(&o), "-pre", "g", "--png"]);
    let residual = |p: &Path| -> f64 { Png::read(p).chunk("dvc-stream:residual").unwrap().parse().unwrap() };
    let (before, after) = (residual(&o.join("g-residual-before.png")), residual(&o.join("g-residual-after.png")));
    assert!(after < before / 3.0, "the residual drops after registration: {before} → {after}");
    let b = Png::read(&o.join("g-residual-before.png"));
    b.assert_text("g: residual before registration", TITLE, Turn::None);
    b.assert_text("across Z: z = 24", LABEL, Turn::None);
    b.assert_text("across X: x = 24", LABEL, Turn::None);
    b.assert_text("Y (voxels)", LABEL, Turn::Up);
    Png::read(&o.join("g-residual-after.png")).assert_text("g: residual after registration", TITLE, Turn::None);
    // deform-image: image 2 moved back by the registration, against image 1.
    let inv = o.join("inv.tsv");
    {
        let mut f = PhiField::read(&o.join("g-registration.tsv")).unwrap();
        f.phis[0] = f.phis[0].try_inverse().unwrap();
        tsv::write_field(&inv, &f).unwrap();
    }
    dvc(&["deform-image", &im2, "-pf", &s(&inv), "--output", &s(&o.join("back.tif")), "--png-against", &im1]);
    let (before, after) = (residual(&o.join("back-residual-before.png")), residual(&o.join("back-residual-after.png")));
    assert!(after < before / 2.0, "deform-image's residual drops: {before} → {after}");
    Png::read(&o.join("back-residual-after.png")).assert_text("back.tif: residual after deformation", TITLE, Turn::None);
    fails(&["deform-image", &im2, "-pf", &s(&inv), "--output", &s(&o.join("back2.tif")), "--png-against", &s(&small.join("im1.zarr"))], "im1.zarr");
    assert!(!o.join("back2-residual-before.png").exists());

    let gd = d.path().join("g");
    dvc(&["synth", &s(&gd), "--grains", "12", "--shape", "56", "--grain-radius", "5", "7", "--grain-max-translation", "2", "--grain-max-rotation", "3", "-q"]);
    dvc(&["ddic", &s(&gd.join("im1.zarr")), &s(&gd.join("lab1.zarr")), &s(&gd.join("im2.zarr")), "-od", &s(&o), "-pre", "dd", "--png", "-q"]);
    Png::read(&o.join("dd-ddic-quiver-z.png")).assert_text("dd-ddic.parquet — displacements in the YX plane", TITLE, Turn::None);
    fails(&["ldic", &im1, &im2, "-hws", "5", "-ns", "8", "-od", &s(&o), "--shard", "0/2", "--png"], "need the whole field");
}

#[test]
fn plot_quiet_prints_one_summary_line_on_stderr() {
    let d = tempfile::tempdir().unwrap();
    let f = grid_field(d.path());
    let out = dvc(&["plot", &s(&f), "-c", "Zdisp", "Xdisp", "--quiet"]);
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("2 figures"), "{e}");
    // Without -q the notes come first, the summary last, all on stderr.
    let loud = dvc(&["plot", &s(&f), "-c", "Zdisp"]);
    let e = String::from_utf8_lossy(&loud.stderr);
    assert!(e.contains("wrote ") && e.trim_end().lines().last().is_some_and(|l| l.starts_with("plot: 1 figures")), "{e}");
}
