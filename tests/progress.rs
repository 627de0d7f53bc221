//! Progress off a terminal (a batch log): one line every `--progress-interval` seconds on
//! stderr, whose rate agrees with the work done over the time taken; `-q` prints none.

use std::process::Command;

mod common;
use common::{dvc, s};

/// (done, elapsed seconds, rate) of each progress line "ldic: D/N (P %), R/s, elapsed E, eta T".
fn progress_lines(stderr: &str) -> Vec<(f64, f64, f64)> {
    let secs = |t: &str| -> Option<f64> {
        if let Some((m, rest)) = t.split_once('m') {
            return Some(m.parse::<f64>().ok()? * 60.0 + rest.trim_end_matches('s').parse::<f64>().ok()?);
        }
        t.trim_end_matches('s').parse().ok()
    };
    stderr
        .lines()
        .filter(|l| l.starts_with("ldic: "))
        .filter_map(|l| {
            let done: f64 = l.strip_prefix("ldic: ")?.split('/').next()?.parse().ok()?;
            let rate: f64 = l.split(", ").nth(1)?.strip_suffix("/s")?.parse().ok()?;
            let elapsed = secs(l.split("elapsed ").nth(1)?.split(',').next()?)?;
            Some((done, elapsed, rate))
        })
        .collect()
}

#[test]
fn ldic_off_a_terminal_prints_an_honest_rate() {
    let d = tempfile::tempdir().unwrap();
    let dir = s(d.path());
    dvc(&["synth", &dir, "--shape", "96", "--translate", "0.4", "-0.3", "0.2", "--chunk", "32", "-q"]);
    let (im1, im2) = (s(&d.path().join("im1.zarr")), s(&d.path().join("im2.zarr")));
    // Stderr is a pipe here, as in a batch log.
    let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream"))
        .args(["ldic", &im1, &im2, "-hws", "5", "-ns", "3", "-np", "1", "--progress-interval", "1", "-od", &dir, "-pre", "p"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines = progress_lines(&err);
    assert!(lines.len() >= 2, "one line a second: {err}");
    let mut checked = 0;
    for (done, elapsed, rate) in &lines {
        // Within the first minute the rate is the run's mean; later, the last minute's.
        if *elapsed >= 2.0 && *elapsed <= 55.0 && *done > 0.0 {
            let mean = done / elapsed;
            assert!((rate - mean).abs() <= 0.2 * mean, "rate {rate}/s against {done} points in {elapsed} s: {err}");
            checked += 1;
        }
    }
    assert!(checked >= 1, "{err}");
    // --quiet: no progress line.
    let q = dvc(&["ldic", &im1, &im2, "-hws", "5", "-ns", "12", "--progress-interval", "1", "-od", &dir, "-pre", "q", "-q"]);
    assert!(!String::from_utf8_lossy(&q.stderr).contains("ldic: "));
}

#[test]
fn progress_interval_must_be_positive() {
    for bad in ["0", "-1", "nan", "x"] {
        let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(["stats", "x.zarr", &format!("--progress-interval={bad}")]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("positive number of seconds"), "{bad}");
    }
}
