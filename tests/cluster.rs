//! Sharded runs (`--shard`, mpirun, srun, job arrays) merged back, and runs killed and
//! resumed: each must give exactly the table of one uninterrupted process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dvc_stream::field::PhiField;

mod common;
use common::{dvc, fails, s};

/// The same rows, bit for bit in every column, and the same TSV bytes.
fn same_table(a: &Path, b: &Path) {
    let (fa, fb) = (PhiField::read(&a.with_extension("parquet")).unwrap(), PhiField::read(&b.with_extension("parquet")).unwrap());
    assert_eq!(fa.len(), fb.len());
    assert_eq!(fa.kind, fb.kind, "field kind (grid shape) of {}", b.display());
    let bits = |f: &PhiField| -> Vec<Vec<u64>> {
        (0..f.len())
            .map(|i| {
                let r = f.row(i);
                let mut v = vec![r.id as u64];
                v.extend(r.position.iter().chain(r.phi.iter()).map(|x| x.to_bits()));
                v.extend([r.cc, r.error, r.iterations, r.return_status.value(), r.delta_phi_norm, r.label_dilate].map(f64::to_bits));
                v
            })
            .collect()
    };
    assert!(bits(&fa) == bits(&fb), "{} and {} differ", a.display(), b.display());
    if a.with_extension("tsv").exists() {
        assert_eq!(std::fs::read(a.with_extension("tsv")).unwrap(), std::fs::read(b.with_extension("tsv")).unwrap(), "TSV of {}", b.display());
    }
}

/// An exact pair of 96³ in small chunks (many small tiles).
fn pair(dir: &Path) -> (String, String) {
    pair_chunked(dir, 16)
}

fn pair_chunked(dir: &Path, chunk: usize) -> (String, String) {
    let d = dir.join("s");
    dvc(&["synth", &s(&d), "--shape", "96", "--chunk", &chunk.to_string(), "--speckle", "4", "--translate", "0.3", "-0.6", "1.45", "--rotate", "1", "0", "0", "-q"]);
    (s(&d.join("im1.zarr")), s(&d.join("im2.zarr")))
}

#[test]
fn shards_merge_into_the_single_process_table() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2) = pair(d.path());
    let ldic = |out: &Path, extra: &[&str]| {
        let mut a = vec!["ldic", &im1, &im2, "-ns", "8", "-hws", "6", "-od", out.to_str().unwrap(), "-pre", "r", "-q"];
        a.extend_from_slice(extra);
        dvc(&a);
    };
    let full = d.path().join("full");
    ldic(&full, &[]);
    // By hand: three shards, each writing only its part.
    let sh = d.path().join("sh");
    for k in 0..3 {
        ldic(&sh, &["--shard", &format!("{k}/3")]);
    }
    let parts: Vec<String> = std::fs::read_dir(sh.join("r-ldic.parts")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(parts.len(), 3, "{parts:?}");
    let sizes: Vec<usize> = (0..3).map(|k| PhiField::read(&sh.join(format!("r-ldic.parts/part-{k}-of-3.parquet"))).unwrap().len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), PhiField::read(&full.join("r-ldic.parquet")).unwrap().len());
    assert!(sizes.iter().all(|&n| n > 0), "every shard works: {sizes:?}");
    assert!(!sh.join("r-ldic.tsv").exists(), "a shard writes its part only");
    dvc(&["merge", &s(&sh.join("r-ldic.parts"))]);
    same_table(&full.join("r-ldic"), &sh.join("r-ldic"));
    // The VTK a sharded run cannot write per part comes from merge.
    let v = d.path().join("vtk");
    dvc(&["merge", &s(&sh.join("r-ldic.parts")), "--out-dir", &s(&v), "--vtk-out", "--no-tsv"]);
    assert!(std::fs::read_to_string(v.join("r-ldic.vtk")).unwrap().starts_with("# vtk DataFile"));
    assert!(v.join("r-ldic.parquet").exists() && !v.join("r-ldic.tsv").exists());

    // Launchers: srun's and a job array's variables choose the shard.
    let lv = d.path().join("launch");
    for (vars, part) in [
        (vec![("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")], "part-1-of-2"),
        (vec![("PMI_RANK", "0"), ("PMI_SIZE", "2")], "part-0-of-2"),
        (vec![("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "3"), ("SLURM_ARRAY_TASK_COUNT", "4")], "part-2-of-4"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream"))
            .args(["ldic", &im1, &im2, "-ns", "8", "-hws", "6", "-od", &s(&lv), "-pre", "r", "-q"])
            .envs(vars.clone())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(lv.join(format!("r-ldic.parts/{part}.parquet")).exists(), "{vars:?} → {part}");
    }
}

#[test]
fn merge_says_what_is_missing_and_refuses_mixed_parts() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2) = pair(d.path());
    let out = d.path().join("o");
    let run = |extra: &[&str]| {
        let mut a = vec!["ldic", &im1, &im2, "-ns", "8", "-hws", "6", "-od", out.to_str().unwrap(), "-pre", "r", "-q"];
        a.extend_from_slice(extra);
        dvc(&a);
    };
    run(&["--shard", "0/3"]);
    let parts = s(&out.join("r-ldic.parts"));
    fails(&["merge", &parts], "shard 1 is missing, shard 2 is missing");
    // A shard interrupted after a checkpoint: merge says to resume it.
    let run_dir = out.join("r-ldic.parts/part-1-of-3.run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("manifest.json"), r#"{"fingerprint":"x","segments":[],"rows":42}"#).unwrap();
    fails(&["merge", &parts], "shard 1 is incomplete (its checkpoint holds 42 rows: rerun it with --resume)");
    std::fs::remove_dir_all(&run_dir).unwrap();
    // Parts of runs with other parameters never mix.
    run(&["--shard", "1/3", "-m", "2"]);
    run(&["--shard", "2/3"]);
    fails(&["merge", &parts], "made by another job than");
    assert!(!out.join("r-ldic.parquet").exists() && !out.join("r-ldic.tsv").exists());
    // Mixed shard counts, and a folder that is not a parts folder.
    run(&["--shard", "0/2"]);
    fails(&["merge", &parts], "different shard counts");
    fails(&["merge", &s(d.path())], "named <output>.parts");
    fails(&["ldic", &im1, &im2, "-hws", "6", "-ns", "8", "--shard", "3/3", "-od", &s(&out)], "K must be in 0..N-1");
    fails(&["ldic", &im1, &im2, "-hws", "6", "-ns", "8", "--checkpoint-seconds", "nan", "-od", &s(&out)], "'nan' must be a finite number ≥ 0");
    // A launcher's numbers that make no shard.
    for (vars, says) in [
        (vec![("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_SIZE", "2")], "OMPI_COMM_WORLD_RANK gives shard 3 of 2: out of range"),
        (vec![("SLURM_PROCID", "x"), ("SLURM_NTASKS", "2")], "SLURM_PROCID='x' is not a whole number"),
        (vec![("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "2"), ("SLURM_ARRAY_TASK_COUNT", "3")], "below SLURM_ARRAY_TASK_MIN"),
    ] {
        let r = Command::new(env!("CARGO_BIN_EXE_dvc-stream"))
            .args(["ldic", &im1, &im2, "-hws", "6", "-ns", "8", "-od", &s(&d.path().join("launcher")), "-q"])
            .envs(vars)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.code() == Some(2) && e.trim_end().lines().count() == 1 && e.contains(says), "{e}");
    }
    assert!(!d.path().join("launcher").join("r-ldic.parquet").exists());
    fails(&["ldic", &im1, &im2, "-hws", "6", "-ns", "8", "--shard", "0/2", "--vtk-out", "-od", &s(&out)], "need the whole field");
}

#[test]
fn mpirun_shards_merge_into_the_single_process_table() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2) = pair(d.path());
    let full = d.path().join("full");
    dvc(&["ldic", &im1, &im2, "-ns", "8", "-hws", "6", "-od", &s(&full), "-pre", "r", "-q"]);
    let mpi = d.path().join("mpi");
    // CI installs Debian's openmpi-bin (.ci/run); without it this test cannot run and fails.
    let out = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "3", env!("CARGO_BIN_EXE_dvc-stream"), "ldic", &im1, &im2, "-ns", "8", "-hws", "6", "-od", &s(&mpi), "-pre", "r", "-q", "-np", "1"])
        .output()
        .expect("mpirun (Debian package openmpi-bin) is needed for this test");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for k in 0..3 {
        assert!(mpi.join(format!("r-ldic.parts/part-{k}-of-3.parquet")).exists());
    }
    dvc(&["merge", &s(&mpi.join("r-ldic.parts"))]);
    same_table(&full.join("r-ldic"), &mpi.join("r-ldic"));
}

#[test]
fn pixel_search_and_ddic_shards_merge_too() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("g");
    dvc(&["synth", &s(&g), "--grains", "25", "--shape", "72", "--chunk", "24", "--grain-radius", "5", "8", "--grain-max-translation", "2", "--grain-max-rotation", "4", "-q"]);
    let (im1, im2, lab) = (s(&g.join("im1.zarr")), s(&g.join("im2.zarr")), s(&g.join("lab1.zarr")));
    for (name, args) in [
        ("pixelSearch", vec!["pixel-search", &im1, &im2, "-ns", "12", "-hws", "5", "-sr", "-3", "3", "-3", "3", "-3", "3"]),
        ("ddic", vec!["ddic", &im1, &lab, &im2]),
    ] {
        let full = d.path().join(format!("{name}-full"));
        let mut a = args.clone();
        a.extend_from_slice(&["-od", full.to_str().unwrap(), "-pre", "r", "-q"]);
        dvc(&a);
        let sh = d.path().join(format!("{name}-sh"));
        for k in 0..2 {
            let spec = format!("{k}/2");
            let mut a = args.clone();
            a.extend_from_slice(&["-od", sh.to_str().unwrap(), "-pre", "r", "-q", "--shard", &spec]);
            dvc(&a);
        }
        dvc(&["merge", &s(&sh.join(format!("r-{name}.parts")))]);
        same_table(&full.join(format!("r-{name}")), &sh.join(format!("r-{name}")));
    }
}

/// A small generator for kill times (no dependency for one test).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn killed_and_resumed_runs_end_with_the_uninterrupted_table() {
    let d = tempfile::tempdir().unwrap();
    // 8³ chunks: tiles 2 nodes deep, so rows leave the scheduler (and reach the checkpoint)
    // in many small steps.
    let (im1, im2) = pair_chunked(d.path(), 8);
    let args = |out: &Path| -> Vec<String> {
        ["ldic", &im1, &im2, "-ns", "3", "-hws", "6", "-od", &s(out), "-pre", "r", "-q", "-np", "2"].iter().map(|v| v.to_string()).collect()
    };
    let full = d.path().join("full");
    let t = Instant::now();
    dvc(&args(&full).iter().map(String::as_str).collect::<Vec<_>>());
    let whole = t.elapsed();
    let out: PathBuf = d.path().join("killed");
    let manifest = out.join("r-ldic.run/manifest.json");
    let rows = || -> u64 {
        std::fs::read_to_string(&manifest).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).and_then(|m| m["rows"].as_u64()).unwrap_or(0)
    };
    let mut seed = std::process::id() as u64 ^ 0x9E37_79B9_7F4A_7C15;
    let (mut killed, mut last_rows, mut most, mut attempts) = (0, 0, 0, 0);
    // Until 10 runs have been killed while working (an attempt may also finish the run; the
    // next one then starts afresh).
    // Runs that finish before their kill shorten the next waits: the machine may have got
    // faster since the uninterrupted run was timed.
    let mut scale = 1.0;
    while killed < 10 {
        attempts += 1;
        assert!(attempts <= 80, "only {killed} of {attempts} runs were still running when killed");
        let mut child = Command::new(env!("CARGO_BIN_EXE_dvc-stream"))
            .args(args(&out))
            .args(["--resume", "--checkpoint-seconds", "0.02"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A random moment between 10 % and 40 % of an uninterrupted run's time.
        let wait = whole.mul_f64(scale * (0.1 + 0.3 * (next(&mut seed) % 1000) as f64 / 1000.0));
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        } else {
            scale *= 0.7;
        }
        child.wait().unwrap();
        let r = rows();
        if r == 0 && out.join("r-ldic.parquet").exists() {
            // This attempt finished the run (its checkpoint is gone); the next starts afresh.
            last_rows = 0;
            continue;
        }
        eprintln!("attempt after {wait:?}: checkpoint holds {r} rows");
        assert!(r >= last_rows, "a checkpoint never loses rows ({last_rows} then {r})");
        last_rows = r;
        most = most.max(r);
    }
    assert!(most > 0, "the killed runs left a checkpoint");
    let mut a = args(&out);
    a.push("--resume".into());
    dvc(&a.iter().map(String::as_str).collect::<Vec<_>>());
    same_table(&full.join("r-ldic"), &out.join("r-ldic"));
    assert!(!out.join("r-ldic.run").exists(), "a finished run removes its checkpoint");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2, "only the Parquet and the TSV remain");

    // Resuming with other parameters is refused and keeps the checkpoint.
    let other = d.path().join("other");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args(&other)).args(["--checkpoint-seconds", "0.05"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    while !other.join("r-ldic.run/manifest.json").exists() && t.elapsed() < whole * 3 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(other.join("r-ldic.run/manifest.json").exists(), "a checkpoint to resume");
    let mut changed = args(&other);
    changed.extend(["--resume".into(), "-m".into(), "2".into()]);
    fails(&changed.iter().map(String::as_str).collect::<Vec<_>>(), "made by another job (parameter margin: [3,3,3] vs [2,2,2])");
    assert!(other.join("r-ldic.run/manifest.json").exists(), "the refused resume leaves the checkpoint");
}

/// Starts `args` with a checkpoint after every row and kills it once the first checkpoint is
/// on disk: a run interrupted early, as a cluster's time limit would.
fn interrupted(args: &[&str], manifest: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).args(["--checkpoint-seconds", "0"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    while !manifest.exists() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(manifest.exists(), "a checkpoint to resume");
}

/// A 100³ pair: -ns 10 and -ns 11 both give 9×9×9 nodes, at other positions.
fn pair_100(dir: &Path) -> (String, String) {
    let d = dir.join("s100");
    dvc(&["synth", &s(&d), "--shape", "100", "--chunk", "20", "--speckle", "4", "--translate", "0.3", "-0.6", "1.45", "-q"]);
    (s(&d.join("im1.zarr")), s(&d.join("im2.zarr")))
}

#[test]
fn resume_refuses_another_grid_or_a_rewritten_chunk() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2) = pair_100(d.path());
    let out = s(&d.path().join("o"));
    let ldic = |ns: &'static str| -> Vec<String> { ["ldic", &im1, &im2, "-ns", ns, "-hws", "5", "-od", &out, "-pre", "r", "-q", "-np", "1"].iter().map(|v| v.to_string()).collect() };
    let v = |a: &[String]| -> Vec<String> { a.to_vec() };
    let manifest = d.path().join("o/r-ldic.run/manifest.json");
    interrupted(&strs(&ldic("10")), &manifest);
    let resume = |ns: &'static str| -> Vec<String> {
        let mut a = v(&ldic(ns));
        a.push("--resume".into());
        a
    };
    fails(&strs(&resume("11")), "this checkpoint was made by another job (point positions differ)");
    assert!(manifest.exists(), "the refused resume keeps the checkpoint");
    // A chunk of im2 rewritten in place: same size, new content and time.
    let mut chunks: Vec<PathBuf> = Vec::new();
    let mut stack = vec![PathBuf::from(&im2)];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e);
            } else if e.file_name().unwrap() != "zarr.json" {
                chunks.push(e);
            }
        }
    }
    let chunk = chunks.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let (before, stamp) = (std::fs::read(chunk).unwrap(), std::fs::metadata(chunk).unwrap().modified().unwrap());
    let mut after = before.clone();
    let mid = after.len() / 2;
    after[mid] ^= 0x55;
    std::fs::write(chunk, &after).unwrap();
    let f = std::fs::File::options().write(true).open(chunk).unwrap();
    f.set_modified(stamp + Duration::from_secs(7)).unwrap();
    drop(f);
    fails(&strs(&resume("10")), &format!("input {im2} changed"));
    assert!(manifest.exists(), "the refused resume keeps the checkpoint");
    // The chunk as it was (content and time): the same job again, which resumes to the
    // uninterrupted table.
    std::fs::write(chunk, &before).unwrap();
    let f = std::fs::File::options().write(true).open(chunk).unwrap();
    f.set_modified(stamp).unwrap();
    drop(f);
    dvc(&strs(&resume("10")));
    let full = s(&d.path().join("full"));
    dvc(&["ldic", &im1, &im2, "-ns", "10", "-hws", "5", "-od", &full, "-pre", "r", "-q"]);
    same_table(&d.path().join("full/r-ldic"), &d.path().join("o/r-ldic"));
    assert!(!manifest.exists());
}

#[test]
fn pixel_search_resume_and_merge_refuse_another_grid() {
    let d = tempfile::tempdir().unwrap();
    let (im1, im2) = pair_100(d.path());
    let out = s(&d.path().join("o"));
    let ps = |ns: &'static str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["pixel-search", &im1, &im2, "-ns", ns, "-hws", "5", "-od", &out, "-pre", "r", "-q", "-np", "1"].iter().map(|v| v.to_string()).collect();
        a.extend(extra.iter().map(|v| v.to_string()));
        a
    };
    let manifest = d.path().join("o/r-pixelSearch.run/manifest.json");
    interrupted(&strs(&ps("10", &[])), &manifest);
    fails(&strs(&ps("11", &["--resume"])), "made by another job (point positions differ)");
    fails(&strs(&ps("10", &["--resume", "-sr", "-2", "2", "-2", "2", "-2", "2"])), "parameter range_hi: [3,3,3] vs [2,2,2]");
    assert!(manifest.exists());
    // Shards of two grids never merge.
    dvc(&strs(&ps("10", &["--shard", "0/2"])));
    dvc(&strs(&ps("11", &["--shard", "1/2"])));
    fails(&["merge", &s(&d.path().join("o/r-pixelSearch.parts"))], "part-1-of-2.parquet: made by another job than");
    fails(&["merge", &s(&d.path().join("o/r-pixelSearch.parts"))], "(point positions differ)");
    assert!(!d.path().join("o/r-pixelSearch.parquet").exists());
    // The same grid merges.
    dvc(&strs(&ps("10", &["--shard", "1/2"])));
    dvc(&["merge", &s(&d.path().join("o/r-pixelSearch.parts"))]);
}

fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}
