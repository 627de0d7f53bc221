//! dvc-stream's commands as a user runs them, against spam's example outputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use dvc_stream::field::PhiField;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spam-0.9.1")
}

fn dvc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).output().unwrap()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn fails(out: &std::process::Output, mentions: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains(mentions), "'{mentions}' in: {e}");
}

#[test]
fn reg_rows_2_and_5_with_spam_spellings() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    for (im2, def) in [("im2", false), ("im3", true)] {
        let mut args = vec![
            "reg".to_string(),
            s(&ex.join("inputs/im1.tif")),
            s(&ex.join(format!("inputs/{im2}.tif"))),
            "-od".into(),
            s(dir.path()),
            "-bb".into(),
            "2".into(),
            "-be".into(),
            "1".into(),
            "-q".into(),
        ];
        if def {
            args.push("-def".into());
        }
        let a: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        ok(&dvc(&a));
        let got = PhiField::read(&dir.path().join(format!("im1-{im2}-registration.tsv"))).unwrap();
        let pq = PhiField::read(&dir.path().join(format!("im1-{im2}-registration.parquet"))).unwrap();
        let want = PhiField::read(&ex.join(format!("reg/im1-{im2}-registration.tsv"))).unwrap();
        assert_eq!(got.positions[0], want.positions[0]);
        assert_eq!(got.return_status[0].code(), 2);
        for i in 0..3 {
            for j in 0..4 {
                assert!((got.phis[0][(i, j)] - want.phis[0][(i, j)]).abs() < 2e-7);
                assert!((got.phis[0][(i, j)] - pq.phis[0][(i, j)]).abs() <= 5e-8, "TSV keeps 7 decimals of the Parquet value");
            }
        }
    }
    assert!(dir.path().join("im1-reg-def.tif").exists());
}

#[test]
fn deform_image_then_reg_recovers_identity() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("im1def.zarr");
    ok(&dvc(&["deform-image", &s(&ex.join("inputs/im1.tif")), "-pf", &s(&ex.join("reg/im1-im3-registration.tsv")), "--output", &s(&out), "-q"]));
    // The deformed im1 looks like im3: registering im3 onto it gives almost nothing.
    ok(&dvc(&["reg", &s(&out), &s(&ex.join("inputs/im3.tif")), "-od", &s(dir.path()), "-bb", "1", "-q"]));
    let r = PhiField::read(&dir.path().join("im1def-im3-registration.tsv")).unwrap();
    let t = dvc_stream::phi::translation(&r.phis[0]);
    assert!(t.norm() < 0.05, "residual translation {t}");
}

#[test]
fn every_example_tsv_is_read_and_round_trips() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for sub in ["reg", "ldic", "pixelSearch", "ddic", "passPhiField", "filterPhiField", "pixelSearchPropagate"] {
        for e in std::fs::read_dir(ex.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|e| e != "tsv") {
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let f = PhiField::read(&p).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(!f.is_empty());
            // HEAD/ROWS extracts are not full grids; full files round-trip byte for byte.
            if name.contains("HEAD") || name.contains("ROWS") || name.contains("regs-rigid") {
                continue;
            }
            let pq = dir.path().join(format!("{name}.parquet"));
            let back = dir.path().join(&name);
            ok(&dvc(&["convert-field", &s(&p), &s(&pq)]));
            ok(&dvc(&["convert-field", &s(&pq), &s(&back)]));
            assert_eq!(std::fs::read_to_string(&p).unwrap(), std::fs::read_to_string(&back).unwrap(), "{name}: TSV → Parquet → TSV");
            n += 1;
        }
    }
    assert!(n >= 8, "{n} files round-tripped");
}

#[test]
fn vtk_of_a_grid_matches_spams_layout() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.vtk");
    ok(&dvc(&["convert-field", &s(&ex.join("ldic/im1-im2-ldic.tsv")), &s(&out)]));
    let got = std::fs::read_to_string(&out).unwrap();
    let want = std::fs::read_to_string(ex.join("ldic/im1-im2-ldic.vtk")).unwrap();
    // Same sections and the same numbers (spam's origin is node − hws; ours node − ns/2).
    let body = |t: &str| t.lines().skip(8).map(|l| l.to_string()).collect::<Vec<_>>();
    let (g, w) = (body(&got), body(&want));
    assert_eq!(g.len(), w.len());
    let mut diff = 0;
    for (a, b) in g.iter().zip(&w) {
        if a != b {
            let pa: Vec<f64> = a.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            let pb: Vec<f64> = b.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            assert_eq!(pa.len(), pb.len(), "{a} vs {b}");
            for (x, y) in pa.iter().zip(&pb) {
                assert!((x - y).abs() < 1e-6, "{a} vs {b}");
            }
            diff += 1;
        }
    }
    // The TSV holds 7 decimals, spam's VTK the full value: numbers agree to that precision.
    assert!(diff > 0 || g == w);
    assert!(got.starts_with("# vtk DataFile Version 2.0\nVTK file from dvc-stream: "));
}

/// convert-field reads legacy VTK fields back (issue 20): a grid written from spam's TSV comes
/// back with the TSV's positions and displacements; a spam glyph file (ddic) as labels.
#[test]
fn vtk_fields_convert_back_to_tables() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let (vtk, back) = (dir.path().join("f.vtk"), dir.path().join("back.tsv"));
    let tsv = ex.join("ldic/im1-im2-ldic.tsv");
    ok(&dvc(&["convert-field", &s(&tsv), &s(&vtk)]));
    let out = dvc(&["convert-field", &s(&vtk), &s(&back)]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("F is written as the identity"));
    let (a, b) = (PhiField::read(&tsv).unwrap(), PhiField::read(&back).unwrap());
    assert_eq!((a.len(), b.kind.clone()), (b.len(), a.kind.clone()));
    for i in 0..a.len() {
        assert_eq!(a.positions[i], b.positions[i], "node {i}");
        for k in 0..3 {
            assert!((a.phis[i][(k, 3)] - b.phis[i][(k, 3)]).abs() < 1e-12, "node {i}");
        }
        assert_eq!((a.return_status[i], a.iterations[i]), (b.return_status[i], b.iterations[i]));
        assert_eq!(b.phis[i].fixed_view::<3, 3>(0, 0), nalgebra::Matrix3::identity());
    }
    // spam's own ddic glyph file: 12 labels, label 9's centre at 29, 29, 29.
    let labels = dir.path().join("labels.tsv");
    ok(&dvc(&["convert-field", &s(&ex.join("ddic/lab2-ddic.vtk")), &s(&labels)]));
    let l = PhiField::read(&labels).unwrap();
    assert_eq!(l.len(), 12);
    assert_eq!(l.positions[9], nalgebra::Vector3::new(29.0, 29.0, 29.0));
    // A VTK that claims more values than it holds is refused with one line, nothing written.
    let bad = dir.path().join("bad.vtk");
    let text = std::fs::read_to_string(&vtk).unwrap().replace("CELL_DATA 27", "CELL_DATA 2700000000000");
    std::fs::write(&bad, text).unwrap();
    fails(&dvc(&["convert-field", &s(&bad), &s(&dir.path().join("x.tsv"))]), "bad.vtk");
    assert!(!dir.path().join("x.tsv").exists());
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let im1 = s(&ex.join("inputs/im1.tif"));
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "NodeNumber\tZpos\tYpos\n1\t2\t3\n").unwrap();
    fails(&dvc(&["reg", &im1, &im1, "-pf", &s(&bad), "-q"]), "missing column 'Xpos'");
    let text = std::fs::read_to_string(ex.join("reg/im1-im2-registration.tsv")).unwrap();
    std::fs::write(&bad, text.replacen("1.2095258", "one", 1)).unwrap();
    fails(&dvc(&["reg", &im1, &im1, "-pf", &s(&bad), "-q"]), "'one' is not a number");
    std::fs::write(&bad, text.replacen("1.2095258", "nan", 1)).unwrap();
    fails(&dvc(&["reg", &im1, &im1, "-pf", &s(&bad), "-q"]), "not finite");
    fails(&dvc(&["reg", &im1, &im1, "-pf", &s(&ex.join("ldic/im1-im2-ldic.tsv")), "-q"]), "single registration");
    let small = dir.path().join("small.tif");
    dvc_stream::store::tiff_write::write_tiff(&small, [4, 4, 4], &dvc_stream::store::TypedBuf::U8(vec![1; 64])).unwrap();
    fails(&dvc(&["reg", &im1, &s(&small), "-q"]), "small.tif");
    let flat = dir.path().join("flat.tif");
    dvc_stream::store::tiff_write::write_tiff(&flat, [1, 30, 30], &dvc_stream::store::TypedBuf::U8(vec![1; 900])).unwrap();
    // A 2D image is registered (tests/twod.rs); against a 3D one it is refused, naming it.
    fails(&dvc(&["reg", &im1, &s(&flat), "-q"]), "flat.tif: image shape [1, 30, 30]");
    fails(&dvc(&["reg", &im1, &im1, "-mf1", &s(&small), "-q"]), "mask shape");
    fails(&dvc(&["reg", &im1, &s(&dir.path().join("missing.tif")), "-q"]), "missing.tif: no such file");
    fails(&dvc(&["convert-field", &s(&ex.join("reg/im1-im2-registration.tsv")), &s(&dir.path().join("x.csv"))]), "x.csv");
}

#[test]
fn reg_options_pfb_m3_and_cubic() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let od = s(dir.path());
    let (im1, im2) = (s(&ex.join("inputs/im1.tif")), s(&ex.join("inputs/im2.tif")));
    // A guess measured on a 2× binned image: half the translation, positions halved, -pfb 2.
    let half = dir.path().join("half.tsv");
    let text = std::fs::read_to_string(ex.join("reg/im1-im2-registration.tsv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(|l| l.to_string()).collect();
    let mut f: Vec<f64> = lines[1].split('\t').map(|v| v.parse().unwrap()).collect();
    for k in [1, 2, 3, 7, 11, 15] {
        f[k] /= 2.0;
    }
    lines[1] = f.iter().map(|v| format!("{v:.7}")).collect::<Vec<_>>().join("\t");
    std::fs::write(&half, lines.join("\n") + "\n").unwrap();
    ok(&dvc(&["reg", &im1, &im2, "-bb", "1", "-pf", &s(&half), "-pfb", "2", "-m3", "6", "6", "6", "-o", "3", "-od", &od, "-pre", "p", "-q"]));
    let got = PhiField::read(&dir.path().join("p-registration.tsv")).unwrap();
    let want = PhiField::read(&ex.join("reg/im1-im2-registration.tsv")).unwrap();
    assert_eq!(got.return_status[0].code(), 2);
    for k in 0..3 {
        assert!((got.phis[0][(k, 3)] - want.phis[0][(k, 3)]).abs() < 0.01, "axis {k}");
    }
    // -o accepts 1 or 3 only; clap refuses anything else with status 2.
    let out = dvc(&["reg", &im1, &im2, "-o", "2", "-q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an interpolation order"));
}

#[test]
fn deform_image_rigid_only_and_spam_naming() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let od = s(dir.path());
    let im1 = s(&ex.join("inputs/im1.tif"));
    let reg = s(&ex.join("reg/im1-im3-registration.tsv"));
    ok(&dvc(&["deform-image", &im1, "-pf", &reg, "-od", &od, "-q"]));
    ok(&dvc(&["deform-image", &im1, "-pf", &reg, "-rr", "-od", &od, "-pre", "rigid", "-q"]));
    let cache = dvc_stream::store::ChunkCache::new(1 << 24);
    let full = dvc_stream::store::Volume::open(&dir.path().join("im1-reg-def.tif"), cache.clone()).unwrap();
    let rigid = dvc_stream::store::Volume::open(&dir.path().join("rigid-reg-def.tif"), cache).unwrap();
    assert_eq!(full.dtype(), dvc_stream::store::DType::U16, "the input's type is kept");
    // The registration holds a 2 % stretch along Z: dropping it changes the image.
    let (a, b) = (full.read_all().unwrap(), rigid.read_all().unwrap());
    let differ = a.iter().zip(b.iter()).filter(|(x, y)| x != y).count();
    assert!(differ > a.len() / 4, "{differ} voxels differ");
}

#[test]
fn stats_reads_pyramid_levels_and_synth_fields() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("s");
    ok(&dvc(&["synth", &s(&d), "--shape", "40", "--field", "shear:0.01", "--noise", "50", "--dtype", "uint16", "--truth-ns", "10", "-q"]));
    let truth = PhiField::read(&d.join("truth.tsv")).unwrap();
    // Shear u_x = γ (Z − c): ∂u_x/∂Z = γ at every node.
    assert!(truth.phis.iter().all(|p| (p[(2, 0)] - 0.01).abs() < 1e-12));
    let out = dvc(&["stats", &s(&d.join("im1.zarr")), "--bin", "2", "-q"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shape (Z Y X): 20 20 20") && text.contains("dtype: uint16"), "{text}");
    let out = dvc(&["synth", &s(&d), "--field", "twist:1", "-q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field 'twist'"));
}

/// `completions bash` gives a script bash loads and that completes the subcommands; `man`
/// renders with `man -l`, one page per command with `--out-dir`.
#[test]
fn completions_load_in_bash_and_man_pages_render() {
    let dir = tempfile::tempdir().unwrap();
    let out = dvc(&["completions", "bash"]);
    ok(&out);
    let script = dir.path().join("dvc-stream.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // Load it, then ask the completion function for the words after "dvc-stream l".
    let probe = format!(
        "source {}; COMP_WORDS=(dvc-stream l); COMP_CWORD=1; COMP_LINE='dvc-stream l'; COMP_POINT=12; \
         f=$(complete -p dvc-stream | sed -E 's/.*-F ([^ ]+).*/\\1/'); $f dvc-stream l dvc-stream; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let b = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    let words = String::from_utf8_lossy(&b.stdout);
    assert!(words.lines().any(|w| w == "ldic") && words.lines().any(|w| w == "labels"), "{words} {}", String::from_utf8_lossy(&b.stderr));

    let pages = dir.path().join("man");
    ok(&dvc(&["man", "--out-dir", &s(&pages)]));
    for page in ["dvc-stream.1", "dvc-stream-ldic.1", "dvc-stream-completions.1"] {
        let m = Command::new("man").arg("-l").arg(pages.join(page)).env("MANPAGER", "cat").env("MANWIDTH", "100").output().unwrap();
        assert!(m.status.success(), "{page}");
        let text = String::from_utf8_lossy(&m.stdout);
        assert!(text.contains("NAME") && text.contains("dvc-stream"), "{page}: {text}");
    }
    let ldic = String::from_utf8_lossy(&Command::new("man").arg("-l").arg(pages.join("dvc-stream-ldic.1")).env("MANPAGER", "cat").output().unwrap().stdout).to_string();
    assert!(ldic.contains("half-window-size"), "ldic's page lists its options");
    let main = dvc(&["man"]);
    ok(&main);
    assert!(String::from_utf8_lossy(&main.stdout).contains(".TH dvc-stream"));
    let v = dvc(&["ldic", "--version"]);
    ok(&v);
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("dvc-stream"));
}

/// `-q` in every command: nothing on stdout and one line on stderr, the summary; without it
/// the same summary comes last, after the notes.
#[test]
fn quiet_leaves_one_summary_line_in_every_command() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let inp = |f: &str| s(&ex.join("inputs").join(f));
    let (im1, im2, lab1) = (inp("im1.tif"), inp("im2.tif"), inp("lab1.tif"));
    let at = |f: &str| s(&d.path().join(f));
    let runs: Vec<(&str, Vec<String>)> = vec![
        ("synth", vec!["synth".into(), at("syn"), "--shape".into(), "24".into(), "--overwrite".into()]),
        ("reg", vec!["reg".into(), im1.clone(), im2.clone(), "-od".into(), od.clone()]),
        ("ldic", vec!["ldic".into(), im1.clone(), im2.clone(), "-hws".into(), "5".into(), "-ns".into(), "15".into(), "-pf".into(), at("im1-im2-registration.tsv"), "-od".into(), od.clone(), "--png".into()]),
        ("pixel-search", vec!["pixel-search".into(), im1.clone(), im2.clone(), "-hws".into(), "5".into(), "-ns".into(), "15".into(), "-sr".into(), "-2".into(), "2".into(), "-2".into(), "2".into(), "-2".into(), "2".into(), "-od".into(), od.clone()]),
        ("ddic", vec!["ddic".into(), im1.clone(), lab1.clone(), im2.clone(), "-pf".into(), at("im1-im2-registration.tsv"), "-od".into(), od.clone()]),
        ("labels", vec!["labels".into(), lab1.clone(), "-od".into(), od.clone()]),
        ("regular-strain", vec!["regular-strain".into(), "-pf".into(), at("im1-im2-ldic.tsv"), "-od".into(), od.clone()]),
        ("filter-phi-field", vec!["filter-phi-field".into(), "-pf".into(), at("im1-im2-ldic.tsv"), "-od".into(), od.clone(), "--filter-median".into()]),
        ("pass-phi-field", vec!["pass-phi-field".into(), "-pf".into(), at("im1-im2-registration.tsv"), "-ns".into(), "10".into(), "-im1".into(), im1.clone(), "-od".into(), od.clone()]),
        ("convert-field", vec!["convert-field".into(), at("im1-im2-ldic.tsv"), at("copy.parquet")]),
        ("deform-image", vec!["deform-image".into(), im1.clone(), "-pf".into(), at("im1-im2-registration.tsv"), "-od".into(), od.clone()]),
        ("plot", vec!["plot".into(), at("im1-im2-ldic.parquet"), "-od".into(), od.clone()]),
        // The demo chains synth, tiff2zarr, reg and ldic: still one line.
        ("demo", vec!["demo".into(), "--shape".into(), "48".into(), "--out-dir".into(), at("demo")]),
    ];
    for (name, args) in &runs {
        for quiet in [true, false] {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            if quiet {
                a.push("-q");
            }
            let out = dvc(&a);
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(out.status.success(), "{name}: {err}");
            let last = err.trim_end().lines().last().unwrap_or_default().to_string();
            assert!(last.starts_with(name), "{name}: the summary line comes last, naming the command: {err}");
            if quiet {
                assert!(out.stdout.is_empty(), "{name} -q printed on stdout: {}", String::from_utf8_lossy(&out.stdout));
                assert_eq!(err.trim_end().lines().count(), 1, "{name} -q: {err}");
            }
        }
    }
}
