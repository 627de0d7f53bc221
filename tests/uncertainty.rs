//! ldic's predicted uncertainty per point (Parquet columns `Zdisp_sd`, `Ydisp_sd`,
//! `Xdisp_sd`) against the measured spread of (result − truth) on exact synthetic pairs with
//! known Gaussian noise.

use dvc_stream::field::parquet::read_field;

mod common;
use common::{dvc, s};

/// A uniform sub-voxel translation: every interior point has the same truth, so the spread of
/// the results over the points is the noise's effect alone.
const TRUTH: [f64; 3] = [0.3, -0.4, 0.25];
const SHAPE: usize = 96;

/// For each axis: (measured standard deviation of result − truth over the interior converged
/// points, root-mean-square of the predicted standard deviation).
fn spread_and_prediction(dir: &std::path::Path, hws: usize, order: usize) -> [(f64, f64); 3] {
    let od = dir.join(format!("hws{hws}-o{order}"));
    dvc(&["ldic", &s(&dir.join("im1.zarr")), &s(&dir.join("im2.zarr")), "-hws", &hws.to_string(), "-ns", "6", "-o", &order.to_string(), "-od", &s(&od), "-q"]);
    let f = read_field(&od.join("im1-im2-ldic.parquet")).unwrap();
    let edge = (hws + 6) as f64;
    let interior: Vec<usize> = (0..f.len())
        .filter(|&i| f.return_status[i].code() == 2 && (0..3).all(|a| f.positions[i][a] > edge && f.positions[i][a] < (SHAPE - 1) as f64 - edge))
        .collect();
    assert!(interior.len() > 500, "{} interior points", interior.len());
    let n = interior.len() as f64;
    std::array::from_fn(|k| {
        let err: Vec<f64> = interior.iter().map(|&i| f.phis[i][(k, 3)] - TRUTH[k]).collect();
        let mean = err.iter().sum::<f64>() / n;
        let spread = (err.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let predicted = (interior.iter().map(|&i| f.disp_sd[i][k].powi(2)).sum::<f64>() / n).sqrt();
        (spread, predicted)
    })
}

/// Cubic interpolation (its model error in the residual is small next to the noise): the
/// prediction is within 30 % of the measured spread at two noise levels and two window sizes.
#[test]
fn predicted_sd_matches_measured_spread() {
    let d = tempfile::tempdir().unwrap();
    let t: Vec<String> = TRUTH.iter().map(|v| v.to_string()).collect();
    let mut report = Vec::new();
    for noise in ["500", "2000"] {
        let dir = d.path().join(format!("noise{noise}"));
        dvc(&["synth", &s(&dir), "--shape", &SHAPE.to_string(), "--translate", &t[0], &t[1], &t[2], "--noise", noise, "-q"]);
        for hws in [5, 8] {
            for (k, (spread, predicted)) in spread_and_prediction(&dir, hws, 3).into_iter().enumerate() {
                report.push(format!("noise {noise} hws {hws} axis {k}: spread {spread:.5}, predicted {predicted:.5} (ratio {:.3})", predicted / spread));
                assert!((predicted / spread - 1.0).abs() <= 0.3, "{}", report.join("\n"));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// Points that were not correlated carry no uncertainty, and the spam TSV keeps spam's
/// columns (no `_sd`).
#[test]
fn skipped_points_have_nan_and_tsv_keeps_spams_columns() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    dvc(&["synth", &s(dir), "--shape", "48", "--translate", "0.5", "0", "0", "--noise", "100", "-q"]);
    // -glt above every grey level: every window is skipped (-5).
    dvc(&["ldic", &s(&dir.join("im1.zarr")), &s(&dir.join("im2.zarr")), "-hws", "5", "-ns", "12", "-glt", "1e9", "-od", &s(dir), "-q"]);
    let f = read_field(&dir.join("im1-im2-ldic.parquet")).unwrap();
    assert!(!f.is_empty() && (0..f.len()).all(|i| f.return_status[i].code() == -5 && f.disp_sd[i].iter().all(|v| v.is_nan())));
    let tsv = std::fs::read_to_string(dir.join("im1-im2-ldic.tsv")).unwrap();
    assert!(!tsv.lines().next().unwrap().contains("_sd"));
}
