//! Bounded mutation fuzzing (issue 15's standing check): a few hundred deterministic mutants
//! of the seed corpus in `tests/data/fuzz/` (a raw TIFF, an LZW TIFF, a Deflate BigTIFF, a
//! Zarr store's metadata, spam TSV fields and a Parquet table) run through the commands that
//! read them. Every run must end with status 0 or 2, never a panic (101), an abort (134), a
//! signal or a hang, and a status 2 with exactly one line on stderr.
//!
//! Mutants are seeded, so a failure names the mutant and is reproduced by rerunning; the
//! failing input is kept in `target/fuzz-failures/`. `FUZZ_MUTANTS=N` scales the number of
//! mutants per seed (default 1 = the CI size). The seeds are made by `make_seed_corpus`
//! (ignored; run it with `--ignored` to regenerate them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest a single run may take (debug build, shared CI cores) before it counts as a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
fn seeds() -> PathBuf {
    repo().join("tests/data/fuzz")
}
fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// splitmix64: a small deterministic generator, so mutants are the same on every machine.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Values that break size and offset arithmetic, as 8 little-endian bytes.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    0xffff_ffff_ffff_fe00,
    u64::MAX,
    1 << 20,
];

/// A mutant of a binary file: byte flips, truncation, inserted bytes, or a 1–8 byte field
/// overwritten with a value from [`INTERESTING`].
fn mutate_bytes(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        if b.is_empty() {
            break;
        }
        match rng.below(6) {
            0 | 1 => {
                let i = rng.below(b.len());
                b[i] ^= 1 + rng.below(255) as u8;
            }
            2 => {
                let n = rng.below(b.len());
                b.truncate(n);
            }
            3 => {
                let i = rng.below(b.len() + 1);
                let n = 1 + rng.below(16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, ins);
            }
            _ => {
                let v = rng.pick(&INTERESTING).to_le_bytes();
                let width = *rng.pick(&[1usize, 2, 4, 8]);
                // Offsets in TIFF headers and IFDs sit at even positions.
                let i = rng.below(b.len()) & !1;
                for k in 0..width {
                    if i + k < b.len() {
                        b[i + k] = v[k];
                    }
                }
            }
        }
    }
    b
}

/// Text values that break parsers and what reads them.
const BAD_NUMBERS: [&str; 16] = [
    "nan", "inf", "-inf", "1e300", "-1e300", "0", "-1", "18446744073709551616", "", "abc", "1e-320", "99999999", "-0", "4.5", "1e19", "NaN",
];

/// A mutant of a spam TSV: numeric fields replaced by [`BAD_NUMBERS`], lines dropped,
/// repeated or swapped, the file cut short, or a byte flipped.
fn mutate_tsv(seed: &str, rng: &mut Rng) -> Vec<u8> {
    let mut lines: Vec<String> = seed.lines().map(String::from).collect();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        if lines.is_empty() {
            break;
        }
        match rng.below(8) {
            0..=3 => {
                let l = rng.below(lines.len());
                let mut f: Vec<String> = lines[l].split('\t').map(String::from).collect();
                let k = rng.below(f.len());
                f[k] = rng.pick(&BAD_NUMBERS).to_string();
                lines[l] = f.join("\t");
            }
            4 => {
                let l = rng.below(lines.len());
                lines.remove(l);
            }
            5 => {
                let l = rng.below(lines.len());
                let c = lines[l].clone();
                lines.insert(l, c);
            }
            6 => {
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
            }
            _ => {
                let mut t = lines.join("\n").into_bytes();
                let out = mutate_bytes(&t, rng);
                t = out;
                return t;
            }
        }
    }
    (lines.join("\n") + "\n").into_bytes()
}

/// A mutant of a zarr.json: numbers replaced by extreme ones (shape, chunk shape, fill value,
/// codec levels), keys dropped, the text cut short, or a byte flipped.
fn mutate_json(seed: &str, rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => mutate_bytes(seed.as_bytes(), rng),
        1 => {
            let n = rng.below(seed.len());
            seed.as_bytes()[..n].to_vec()
        }
        _ => {
            let mut v: serde_json::Value = serde_json::from_str(seed).unwrap();
            let mut numbers = Vec::new();
            collect_numbers(&v, String::new(), &mut numbers);
            let rounds = 1 + rng.below(2);
            for _ in 0..rounds {
                if numbers.is_empty() {
                    break;
                }
                let ptr = rng.pick(&numbers).clone();
                // Claims past what any volume may hold (2^48 voxels) must be refused; claims
                // below it, such as a shape of [2^32, 8, 8] over a few stored chunks, are a
                // valid sparse array whose reading takes as long as the claim, so they are
                // not made here.
                let new: serde_json::Value = match rng.below(8) {
                    0 => serde_json::json!(u64::MAX),
                    1 => serde_json::json!(0),
                    2 => serde_json::json!(-1),
                    3 => serde_json::json!(1u64 << 60),
                    4 => serde_json::json!(1.5),
                    5 => serde_json::json!(3),
                    6 => serde_json::json!("x"),
                    _ => serde_json::json!(null),
                };
                if let Some(slot) = v.pointer_mut(&ptr) {
                    *slot = new;
                }
            }
            serde_json::to_vec(&v).unwrap()
        }
    }
}

fn collect_numbers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Number(_) => out.push(at),
        serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| collect_numbers(x, format!("{at}/{i}"), out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| collect_numbers(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        _ => {}
    }
}

/// One run of a command on a mutant.
struct Case {
    name: String,
    args: Vec<String>,
    /// The mutated input, kept when the run fails.
    input: PathBuf,
}

/// What went wrong in a run, if anything, and its exit status.
fn run_case(case: &Case) -> (Option<i32>, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvc-stream"))
        .args(&case.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut e = String::new();
        use std::io::Read;
        let _ = std::io::BufReader::new(stderr).take(1 << 20).read_to_string(&mut e);
        e
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t0.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = reader.join().unwrap_or_default();
    let Some(status) = status else { return (None, Some(format!("hung (killed after {RUN_TIMEOUT:?})"))) };
    // The panic or abort line says where; the last lines say what was printed.
    let summary = err
        .lines()
        .filter(|l| l.contains("panicked at") || l.contains("memory allocation"))
        .take(2)
        .chain(err.lines().rev().take(2))
        .collect::<Vec<_>>()
        .join(" | ");
    let why = match status.code() {
        Some(0) => None,
        Some(2) if err.trim_end().lines().count() == 1 => None,
        Some(2) => Some(format!("exit 2 with {} lines on stderr: {}", err.trim_end().lines().count(), err.trim_end())),
        Some(c) => Some(format!("exit {c}: {summary}")),
        None => {
            use std::os::unix::process::ExitStatusExt;
            Some(format!("killed by signal {:?}: {summary}", status.signal()))
        }
    };
    (status.code(), why)
}

/// Runs every case on two workers and returns the failures and how many runs ended with
/// status 0 and with status 2.
fn run_all(cases: Vec<Case>) -> (Vec<String>, [usize; 2]) {
    let queue = Mutex::new(cases.into_iter().enumerate().collect::<Vec<_>>());
    let failures = Mutex::new(Vec::new());
    let counts = Mutex::new([0usize; 2]);
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| loop {
                let Some((i, case)) = queue.lock().unwrap().pop() else { break };
                let (code, why) = run_case(&case);
                match code {
                    Some(0) => counts.lock().unwrap()[0] += 1,
                    Some(2) => counts.lock().unwrap()[1] += 1,
                    _ => {}
                }
                if let Some(why) = why {
                    let keep = repo().join("target/fuzz-failures");
                    let _ = std::fs::create_dir_all(&keep);
                    let kept = keep.join(format!("{}-{}", i, case.input.file_name().unwrap().to_string_lossy()));
                    let _ = copy_any(&case.input, &kept);
                    failures.lock().unwrap().push(format!("{}: {why}\n    dvc-stream {}\n    input kept as {}", case.name, case.args.join(" "), kept.display()));
                }
            });
        }
    });
    (failures.into_inner().unwrap(), counts.into_inner().unwrap())
}

fn copy_any(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_any(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

fn scale() -> usize {
    std::env::var("FUZZ_MUTANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

fn spam_image(name: &str) -> String {
    s(&repo().join("tests/data/spam-0.9.1/inputs").join(name))
}

#[test]
fn mutants_end_with_status_0_or_2_and_one_line() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let out = w.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let od = s(&out);
    let reg = s(&seeds().join("registration.tsv"));
    let mut cases = Vec::new();
    let mut seed_cases = Vec::new();
    let k = scale();

    // TIFFs: stats reads every page; a few go through ldic and reg.
    for (t, tif) in ["raw.tif", "lzw.tif", "deflate-big.tif"].iter().enumerate() {
        let seed = std::fs::read(seeds().join(tif)).unwrap();
        let mut rng = Rng(0x7100 + t as u64);
        for m in 0..40 * k {
            let p = w.join(format!("m{m}-{tif}"));
            std::fs::write(&p, mutate_bytes(&seed, &mut rng)).unwrap();
            let name = format!("{tif} mutant {m}");
            cases.push(Case { name: name.clone(), args: vec!["stats".into(), s(&p), "-q".into()], input: p.clone() });
            match m % 8 {
                0 => cases.push(Case {
                    name,
                    args: ["ldic", &s(&p), &s(&p), "-hws", "1", "-ns", "3", "-m", "1", "-np", "1", "-od", &od, "-pre", &format!("t{t}m{m}"), "-q", "--no-tsv"]
                        .map(String::from)
                        .to_vec(),
                    input: p,
                }),
                4 => cases.push(Case {
                    name,
                    args: ["deform-image", &s(&p), "-pf", &reg, "--output", &s(&out.join(format!("t{t}m{m}.zarr"))), "-q"].map(String::from).to_vec(),
                    input: p,
                }),
                _ => {}
            }
        }
    }

    // Zarr metadata: the array's and the group's zarr.json of a small OME-Zarr store.
    for (j, which) in ["0/zarr.json", "zarr.json"].iter().enumerate() {
        let text = std::fs::read_to_string(seeds().join("vol.zarr").join(which)).unwrap();
        let mut rng = Rng(0x2a00 + j as u64);
        for m in 0..(if j == 0 { 40 } else { 15 }) * k {
            let store = w.join(format!("z{j}m{m}.zarr"));
            copy_any(&seeds().join("vol.zarr"), &store).unwrap();
            std::fs::write(store.join(which), mutate_json(&text, &mut rng)).unwrap();
            let name = format!("vol.zarr/{which} mutant {m}");
            cases.push(Case { name: name.clone(), args: vec!["stats".into(), s(&store), "-q".into()], input: store.clone() });
            if m % 3 == 0 {
                cases.push(Case {
                    name,
                    args: ["deform-image", &s(&store), "-pf", &reg, "--output", &s(&out.join(format!("z{j}m{m}-def.zarr"))), "-q"].map(String::from).to_vec(),
                    input: store,
                });
            }
        }
    }

    // Fields: the ldic TSV, the registration TSV and the Parquet table, each through the
    // commands that read fields.
    let field_commands = |f: &str, tag: &str| -> Vec<Vec<String>> {
        vec![
            vec!["convert-field".into(), f.into(), s(&out.join(format!("{tag}.tsv")))],
            vec!["convert-field".into(), f.into(), s(&out.join(format!("{tag}.parquet")))],
            ["regular-strain", "-pf", f, "-od", &od, "-pre", tag, "-q"].map(String::from).to_vec(),
            ["filter-phi-field", "-pf", f, "-srs", "-cint", "-od", &od, "-pre", tag].map(String::from).to_vec(),
            ["filter-phi-field", "-pf", f, "-fm", "-od", &od, "-pre", &format!("{tag}fm")].map(String::from).to_vec(),
            ["pass-phi-field", "-pf", f, "-ns", "20", "-im1shape", "60", "60", "60", "-od", &od, "-pre", tag].map(String::from).to_vec(),
            [
                "ldic", &spam_image("im1.tif"), &spam_image("im2.tif"), "-hws", "3", "-m", "1", "-pf", f, "-np", "1", "-od", &od, "-pre", tag, "-q", "--no-tsv",
            ]
            .map(String::from)
            .to_vec(),
        ]
    };
    let registration_commands = |f: &str, tag: &str| -> Vec<Vec<String>> {
        vec![
            vec!["convert-field".into(), f.into(), s(&out.join(format!("{tag}.parquet")))],
            ["pass-phi-field", "-pf", f, "-ns", "20", "-im1shape", "60", "60", "60", "-od", &od, "-pre", tag].map(String::from).to_vec(),
            ["deform-image", &s(&seeds().join("raw.tif")), "-pf", f, "--output", &s(&out.join(format!("{tag}-def.zarr"))), "-q"].map(String::from).to_vec(),
            ["ldic", &s(&seeds().join("raw.tif")), &s(&seeds().join("raw.tif")), "-hws", "1", "-ns", "3", "-m", "1", "-pf", f, "-np", "1", "-od", &od, "-pre", tag, "-q"]
                .map(String::from)
                .to_vec(),
        ]
    };
    for (j, (seed_name, count)) in [("ldic.tsv", 70), ("registration.tsv", 25), ("ldic.parquet", 50)].iter().enumerate() {
        let seed = std::fs::read(seeds().join(seed_name)).unwrap();
        let commands_for = |f: &str, tag: &str| if *seed_name == "registration.tsv" { registration_commands(f, tag) } else { field_commands(f, tag) };
        // The seed itself must pass every command, or its mutants test nothing.
        for c in commands_for(&s(&seeds().join(seed_name)), &format!("seed{j}")) {
            seed_cases.push(Case { name: format!("{seed_name} (the seed)"), args: c, input: seeds().join(seed_name) });
        }
        let mut rng = Rng(0xf100 + j as u64);
        for m in 0..count * k {
            let p = w.join(format!("f{j}m{m}-{seed_name}"));
            let bytes = if seed_name.ends_with(".tsv") { mutate_tsv(std::str::from_utf8(&seed).unwrap(), &mut rng) } else { mutate_bytes(&seed, &mut rng) };
            std::fs::write(&p, bytes).unwrap();
            let tag = format!("f{j}m{m}");
            let commands = commands_for(&s(&p), &tag);
            // Every mutant is converted; one other reader each, in turn.
            for c in [0, 1 + m % (commands.len() - 1)] {
                cases.push(Case { name: format!("{seed_name} mutant {m}"), args: commands[c].clone(), input: p.clone() });
            }
        }
    }
    for (t, tif) in ["raw.tif", "lzw.tif", "deflate-big.tif"].iter().enumerate() {
        let p = s(&seeds().join(tif));
        for args in [
            vec!["stats".to_string(), p.clone(), "-q".into()],
            ["ldic", &p, &p, "-hws", "1", "-ns", "3", "-m", "1", "-np", "1", "-od", &od, "-pre", &format!("seed{t}"), "-q", "--no-tsv"].map(String::from).to_vec(),
            ["deform-image", &p, "-pf", &reg, "--output", &s(&out.join(format!("seed{t}.zarr"))), "-q"].map(String::from).to_vec(),
        ] {
            seed_cases.push(Case { name: format!("{tif} (the seed)"), args, input: seeds().join(tif) });
        }
    }
    let store = s(&seeds().join("vol.zarr"));
    for args in [vec!["stats".to_string(), store.clone(), "-q".into()], ["deform-image", &store, "-pf", &reg, "--output", &s(&out.join("seed-vol-def.zarr")), "-q"].map(String::from).to_vec()] {
        seed_cases.push(Case { name: "vol.zarr (the seed)".into(), args, input: seeds().join("vol.zarr") });
    }
    let seed_runs = seed_cases.len();
    let (seed_failures, [seed_ok, _]) = run_all(seed_cases);
    assert!(seed_failures.is_empty() && seed_ok == seed_runs, "seeds must pass: {seed_ok} of {seed_runs} did\n{}", seed_failures.join("\n"));

    let n = cases.len();
    let t0 = Instant::now();
    let (failures, [ok, refused]) = run_all(cases);
    eprintln!("fuzz: {n} runs in {:.1} s: {ok} exit 0, {refused} refused (exit 2), {} failures", t0.elapsed().as_secs_f64(), failures.len());
    // Mutants must reach both outcomes, or the corpus or the commands are broken.
    assert!(ok > n / 20 && refused > n / 20, "{ok} runs exited 0 and {refused} exited 2 of {n}");
    assert!(failures.is_empty(), "{} of {n} runs failed:\n{}", failures.len(), failures.join("\n"));
}

/// Regenerates `tests/data/fuzz/` (run with `cargo test --test fuzz -- --ignored`).
#[test]
#[ignore]
fn make_seed_corpus() {
    use dvc_stream::store::dtype::TypedBuf;
    use tiff::encoder::{colortype, compression::DeflateLevel, Compression, TiffEncoder};
    let d = seeds();
    std::fs::create_dir_all(&d).unwrap();
    let shape = [6usize, 8, 8];
    let n = shape.iter().product::<usize>();
    let values: Vec<u8> = (0..n).map(|i| (dvc_stream::synth::texture::mix64(i as u64) % 251) as u8).collect();
    dvc_stream::store::tiff_write::write_tiff(&d.join("raw.tif"), shape, &TypedBuf::U8(values.clone())).unwrap();
    let plane = shape[1] * shape[2];
    {
        let f = std::fs::File::create(d.join("lzw.tif")).unwrap();
        let mut enc = TiffEncoder::new(f).unwrap().with_compression(Compression::Lzw);
        for z in 0..shape[0] {
            let v: Vec<u16> = values[z * plane..(z + 1) * plane].iter().map(|&a| a as u16 * 100).collect();
            enc.write_image::<colortype::Gray16>(8, 8, &v).unwrap();
        }
    }
    {
        let f = std::fs::File::create(d.join("deflate-big.tif")).unwrap();
        let mut enc = TiffEncoder::new_big(f).unwrap().with_compression(Compression::Deflate(DeflateLevel::Balanced));
        for z in 0..shape[0] {
            let v: Vec<f32> = values[z * plane..(z + 1) * plane].iter().map(|&a| a as f32 / 7.0).collect();
            enc.write_image::<colortype::Gray32Float>(8, 8, &v).unwrap();
        }
    }
    let store = d.join("vol.zarr");
    let _ = std::fs::remove_dir_all(&store);
    let opts = dvc_stream::store::convert::ConvertOptions {
        layout: dvc_stream::store::zarr::ArrayLayout { chunk: [4, 4, 4], codec: dvc_stream::store::zarr::Codec::Zstd(1), shard: None },
        levels: Some(2),
        voxel_size: None,
        labels: false,
        overwrite: true,
        progress: false,
    };
    dvc_stream::store::convert::tiff_to_zarr(&d.join("raw.tif"), &store, &opts).unwrap();
    let ex = repo().join("tests/data/spam-0.9.1");
    std::fs::copy(ex.join("ldic/im1-im2-ldic.tsv"), d.join("ldic.tsv")).unwrap();
    std::fs::copy(ex.join("reg/im1-im2-registration.tsv"), d.join("registration.tsv")).unwrap();
    let field = dvc_stream::field::PhiField::read(&d.join("ldic.tsv")).unwrap();
    let meta = dvc_stream::field::parquet::FieldMeta::for_command("make_seed_corpus", serde_json::json!({}));
    dvc_stream::field::parquet::write_field(&d.join("ldic.parquet"), &field, &meta).unwrap();
}
