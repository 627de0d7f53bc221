//! regular-strain, pass-phi-field, filter-phi-field and deform-image on fields: against
//! analytic fields (exact answers) and spam's example outputs (examples/README.md rows 7-9,
//! 13-16, 19-23).

use std::path::{Path, PathBuf};
use std::process::Command;

use dvc_stream::field::tsv::read_table;
use dvc_stream::field::{FieldKind, FieldRow, Layout, PhiField};
use dvc_stream::phi::{self, decompose_f, Phi};
use nalgebra::{Matrix3, Vector3};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/examples")
}

fn dvc(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// An analytic displacement field: u(X) and its gradient.
struct Analytic {
    u: Box<dyn Fn(&Vector3<f64>) -> Vector3<f64>>,
    grad: Box<dyn Fn(&Vector3<f64>) -> Matrix3<f64>>,
}

fn homogeneous() -> Analytic {
    // 1 % stretch plus a rotation of a few degrees, about (40, 40, 40).
    let p = phi::compute_phi(&phi::PhiComponents { t: Some([0.3, -0.2, 0.5]), r: Some([3.0, -1.0, 2.0]), z: Some([1.01, 1.01, 1.01]), ..Default::default() });
    let f = phi::f_block(&p);
    let c = Vector3::new(40.0, 40.0, 40.0);
    Analytic { u: Box::new(move |x| (f - Matrix3::identity()) * (x - c) + Vector3::new(0.3, -0.2, 0.5)), grad: Box::new(move |_| f - Matrix3::identity()) }
}

fn shear() -> Analytic {
    Analytic { u: Box::new(|x| Vector3::new(0.0, 0.0, 0.02 * x[0])), grad: Box::new(|_| Matrix3::new(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.0, 0.0)) }
}

fn bending() -> Analytic {
    // u_z = κ x² / 2: curvature along X.
    let k = 2e-4;
    Analytic { u: Box::new(move |x| Vector3::new(0.5 * k * x[2] * x[2], 0.0, 0.0)), grad: Box::new(move |x| Matrix3::new(0.0, 0.0, k * x[2], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)) }
}

/// A field with the analytic u (and F) at `points`; `grid` decides the layout.
fn field_at(a: &Analytic, points: &[Vector3<f64>], grid: Option<([usize; 3], [f64; 3])>) -> PhiField {
    let (kind, layout) = match grid {
        Some((dims, spacing)) => (FieldKind::Grid { dims, spacing }, Layout::Ldic),
        None => (FieldKind::Labels, Layout::PixelSearchLabels),
    };
    let mut f = PhiField::new(kind, layout);
    for (i, p) in points.iter().enumerate() {
        f.push(FieldRow {
            // Label fields start at label 1 (label 0 is the background).
            id: if grid.is_some() { i as i64 } else { i as i64 + 1 },
            position: *p,
            phi: phi::from_f_t(&(Matrix3::identity() + (a.grad)(p)), &(a.u)(p)),
            cc: 0.0,
            error: 0.0,
            iterations: 5.0,
            return_status: 2.0,
            delta_phi_norm: 0.0,
            label_dilate: 0.0,
        });
    }
    f
}

fn grid_points(first: [f64; 3], dims: [usize; 3], sp: [f64; 3]) -> Vec<Vector3<f64>> {
    let mut v = Vec::new();
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                v.push(Vector3::new(first[0] + z as f64 * sp[0], first[1] + y as f64 * sp[1], first[2] + x as f64 * sp[2]));
            }
        }
    }
    v
}

/// Strain table columns (e and vol) against the exact decomposition of F at each point.
fn check_strain(table: &Path, a: &Analytic, only_interior: Option<(Vector3<f64>, Vector3<f64>)>, tol: f64) -> usize {
    let t = read_table(table).unwrap();
    let c = |n: &str| t.col(&[n]).unwrap();
    let mut checked = 0;
    for r in &t.rows {
        let p = Vector3::new(r[c("Zpos")], r[c("Ypos")], r[c("Xpos")]);
        if let Some((lo, hi)) = only_interior {
            if (0..3).any(|k| p[k] <= lo[k] || p[k] >= hi[k]) {
                continue;
            }
        }
        let d = decompose_f(&(Matrix3::identity() + (a.grad)(&p)), false);
        let want = [d.vol, d.e[(0, 0)], d.e[(0, 1)], d.e[(0, 2)], d.e[(1, 1)], d.e[(1, 2)], d.e[(2, 2)], d.r[0], d.r[1], d.r[2]];
        let got = [r[c("vol")], r[c("ezz")], r[c("ezy")], r[c("ezx")], r[c("eyy")], r[c("eyx")], r[c("exx")], r[c("rz")], r[c("ry")], r[c("rx")]];
        for k in 0..want.len() {
            // Rotations are in degrees: the same relative precision.
            let scale = if k >= 7 { 100.0 } else { 1.0 };
            assert!((got[k] - want[k]).abs() < tol * scale, "{} at {p:?}: component {k} = {} instead of {}", table.display(), got[k], want[k]);
        }
        checked += 1;
    }
    checked
}

#[test]
fn strain_of_analytic_fields_in_every_mode() {
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    // Unequal spacings, and 2D grids have their own test in the library.
    let (dims, sp, first) = ([5, 6, 7], [10.0, 8.0, 6.0], [10.0, 12.0, 14.0]);
    let pts = grid_points(first, dims, sp);
    for (name, a) in [("homogeneous", homogeneous()), ("shear", shear())] {
        let f = field_at(&a, &pts, Some((dims, sp)));
        let path = d.path().join(format!("{name}.parquet"));
        dvc_stream::field::parquet::write_field(&path, &f, &dvc_stream::field::parquet::FieldMeta::default()).unwrap();
        for (flag, mode, n) in [(None, "Q8", 4 * 5 * 6), (Some("-g"), "Geers", 5 * 6 * 7), (Some("-raw"), "raw", 5 * 6 * 7)] {
            let mut args = vec!["regular-strain", "-pf", path.to_str().unwrap(), "-comp", "vol", "e", "r", "Up", "-od", &od, "-q"];
            if let Some(fl) = flag {
                args.push(fl);
            }
            dvc(&args);
            // Every point, borders and corners included, to 1e-6 (the TSV prints 7 decimals).
            assert_eq!(check_strain(&d.path().join(format!("{name}-strain-{mode}.tsv")), &a, None, 1e-6), n, "{name} {mode}");
        }
    }
    // Scattered points (a label-style field): Geers and raw are exact for a linear field.
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let scattered: Vec<Vector3<f64>> = (0..300).map(|_| Vector3::new(next() * 60.0, next() * 60.0, next() * 60.0)).collect();
    let a = homogeneous();
    let f = field_at(&a, &scattered, None);
    let path = d.path().join("scattered.tsv");
    dvc_stream::field::tsv::write_field(&path, &f).unwrap();
    dvc(&["regular-strain", "-pf", &s(&path), "-g", "-r", "3", "-comp", "vol", "e", "r", "-od", &od, "-q"]);
    assert_eq!(check_strain(&d.path().join("scattered-strain-Geers.tsv"), &a, None, 1e-6), 300);
    // Q8 needs a grid: a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(["regular-strain", "-pf", &s(&path), "-od", &od]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular grid"));
    // A quadratic bending field: Q8 is exact at cell centres, Geers wherever the
    // neighbourhood is symmetric (at least its radius, 1.5 × 10, from the border).
    let a = bending();
    let (dims, first) = ([7, 8, 9], [10.0, 12.0, 14.0]);
    let pts = grid_points(first, dims, sp);
    let f = field_at(&a, &pts, Some((dims, sp)));
    let path = d.path().join("bend.parquet");
    dvc_stream::field::parquet::write_field(&path, &f, &dvc_stream::field::parquet::FieldMeta::default()).unwrap();
    dvc(&["regular-strain", "-pf", &s(&path), "-comp", "vol", "e", "r", "-od", &od, "-q"]);
    assert_eq!(check_strain(&d.path().join("bend-strain-Q8.tsv"), &a, None, 1e-6), 6 * 7 * 8);
    dvc(&["regular-strain", "-pf", &s(&path), "-g", "-comp", "vol", "e", "r", "-od", &od, "-q"]);
    let lo = Vector3::new(first[0], first[1], first[2]) + Vector3::from_element(15.0);
    let hi = Vector3::new(first[0] + 6.0 * sp[0], first[1] + 7.0 * sp[1], first[2] + 8.0 * sp[2]) - Vector3::from_element(15.0);
    assert_eq!(check_strain(&d.path().join("bend-strain-Geers.tsv"), &a, Some((lo, hi)), 1e-6), 36);
}

#[test]
fn strain_rows_7_8_9_of_spams_examples() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let od = s(d.path());
    let pf = s(&ex.join("ldic/im1-im3-ldic.tsv"));
    let cols_equal = |ours: &Path, theirs: &Path, rows: Option<&[usize]>| {
        let (a, b) = (read_table(ours).unwrap(), read_table(theirs).unwrap());
        for (k, name) in b.columns.iter().enumerate() {
            let ka = a.col(&[name]).unwrap_or_else(|| panic!("column {name}"));
            for (i, row) in b.rows.iter().enumerate() {
                if rows.is_some_and(|r| !r.contains(&i)) {
                    continue;
                }
                assert!((a.rows[i][ka] - row[k]).abs() < 2e-7, "{name} row {i}: {} vs spam {}", a.rows[i][ka], row[k]);
            }
        }
        assert_eq!(&a.columns[..b.columns.len().min(a.columns.len())], &b.columns[..], "spam's columns first, in its order");
    };
    // Row 7: Q8 with every component, TIFF and VTK.
    dvc(&["regular-strain", "-pf", &pf, "-comp", "vol", "dev", "volss", "devss", "r", "z", "U", "e", "Up", "-tif", "-vtk", "-od", &od, "-q"]);
    cols_equal(&d.path().join("im1-im3-ldic-strain-Q8.tsv"), &ex.join("regularStrain/im1-im3-ldic-strain-Q8.tsv"), None);
    let t = read_table(&d.path().join("im1-im3-ldic-strain-Q8.tsv")).unwrap();
    assert!(t.col(&["Upmax"]).is_some(), "Up is written to the TSV too");
    let vtk = std::fs::read_to_string(d.path().join("im1-im3-ldic-strain-Q8.vtk")).unwrap();
    let want = std::fs::read_to_string(ex.join("regularStrain/im1-im3-ldic-strain-Q8.vtk")).unwrap();
    assert_eq!(vtk.lines().skip(2).take(9).collect::<Vec<_>>(), want.lines().skip(2).take(9).collect::<Vec<_>>());
    let v = dvc_stream::store::Volume::open(&d.path().join("im1-im3-ldic-vol-Q8.tif"), dvc_stream::store::ChunkCache::new(1 << 20)).unwrap();
    assert_eq!(v.shape(), [2, 2, 2]);
    // Row 8: Geers. spam's formula is right only at the interior node (13) of this isotropic
    // grid; everywhere else ours differs (docs/spam-differences.md).
    dvc(&["regular-strain", "-pf", &pf, "-g", "-comp", "vol", "dev", "e", "-vtk", "-od", &od, "-q"]);
    cols_equal(&d.path().join("im1-im3-ldic-strain-Geers.tsv"), &ex.join("regularStrain/im1-im3-ldic-strain-Geers.tsv"), Some(&[13]));
    let g = read_table(&d.path().join("im1-im3-ldic-strain-Geers.tsv")).unwrap();
    let ezz = g.col(&["ezz"]).unwrap();
    assert!(g.rows.iter().all(|r| (r[ezz] - 0.02).abs() < 0.006), "a near-homogeneous 2 % stretch everywhere, borders included");
    // Row 9: raw.
    dvc(&["regular-strain", "-pf", &pf, "-raw", "-comp", "vol", "dev", "-od", &od, "-q"]);
    cols_equal(&d.path().join("im1-im3-ldic-strain-raw.tsv"), &ex.join("regularStrain/im1-im3-ldic-strain-raw.HEAD10.tsv"), None);
}
