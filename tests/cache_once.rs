//! Every chunk once: ldic through a chunk cache far smaller than the pair decodes each chunk
//! it touches once, as long as the budget holds the chunks of one layer of tiles (what
//! `--stats` reports as the budget to decode each chunk once); below it, chunks are decoded
//! again and the run says so.

mod common;
use common::{dvc, s};

/// (chunks decoded, distinct chunks touched, budget for once in bytes) from a `--stats` line.
fn counts(stderr: &str) -> (u64, u64, f64) {
    let line = stderr.lines().find(|l| l.starts_with("chunk cache:")).unwrap_or_else(|| panic!("no stats in {stderr}"));
    let num_before = |word: &str| -> u64 {
        let i = line.find(word).unwrap_or_else(|| panic!("'{word}' in {line}"));
        line[..i].split_whitespace().last().unwrap().parse().unwrap()
    };
    let decoded = num_before(" chunks decoded");
    let distinct = num_before(" distinct touched");
    let once = line.split("budget to decode each chunk once ").nth(1).unwrap_or_else(|| panic!("no budget in {line}"));
    let mut w = once.split_whitespace();
    let v: f64 = w.next().unwrap().parse().unwrap();
    let unit = match w.next().unwrap().trim_end_matches(',') {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        u => panic!("unit {u}"),
    };
    (decoded, distinct, v * unit)
}

/// Chunk buffers allocated, from a `--stats` line.
fn buffers_allocated(stderr: &str) -> u64 {
    let line = stderr.lines().find(|l| l.starts_with("chunk cache:")).unwrap();
    let i = line.find(" chunk buffers allocated").unwrap_or_else(|| panic!("no buffer counts in {line}"));
    line[..i].split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn ldic_decodes_each_chunk_once_when_a_layer_fits_the_budget() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("pair");
    let g = s(&dir);
    // 96³ uint16 in 16³ chunks: 216 chunks of 8 KiB per image, 3.4 MiB for the pair.
    dvc(&["synth", &g, "--shape", "96", "--speckle", "4", "--translate", "1.5", "-0.5", "2", "--dtype", "uint16", "--chunk", "16", "--levels", "1", "-q"]);
    let (im1, im2) = (s(&dir.join("im1.zarr")), s(&dir.join("im2.zarr")));
    let run = |pre: &str, budget: &str| {
        let out = dvc(&["ldic", &im1, &im2, "-hws", "5", "-ns", "12", "-od", &g, "-pre", pre, "--cache-bytes", budget, "--stats", "-np", "2", "-q"]);
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let big = run("big", "1G");
    let (decoded, distinct, once) = counts(&big);
    assert_eq!(decoded, distinct, "a budget holding everything: {big}");
    assert!(distinct > 300, "both images' chunks are touched: {big}");
    // The budget for once is about a layer of tiles of both images, far below the pair.
    assert!(once < 0.5 * 2.0 * 96f64.powi(3) * 2.0, "{once} bytes for once: {big}");
    assert!(!big.contains("warning"), "{big}");

    let fits = format!("{}", (once * 1.05) as u64 + 1024);
    let small = run("fits", &fits);
    let (decoded, distinct, _) = counts(&small);
    assert!(decoded as f64 <= 1.05 * distinct as f64, "budget {fits}: {decoded} decodes of {distinct} chunks: {small}");
    assert!(!small.contains("warning"), "{small}");
    assert_eq!(std::fs::read(dir.join("big-ldic.tsv")).unwrap(), std::fs::read(dir.join("fits-ldic.tsv")).unwrap(), "same bytes through the small cache");

    // A quarter of it: chunks come back, and the run says why.
    let starved = format!("{}", (once / 4.0) as u64);
    let low = run("low", &starved);
    let (decoded, distinct, _) = counts(&low);
    assert!(decoded as f64 > 1.2 * distinct as f64, "budget {starved}: {decoded} decodes of {distinct} chunks: {low}");
    assert_eq!(low.lines().filter(|l| l.starts_with("warning: --cache-bytes")).count(), 1, "{low}");
    // Chunk buffers are recycled (the pool): the starved run, decoding chunks again and again,
    // allocates about what its budget holds (chunks of 8 KiB, plus the pool's sixteenth of
    // slack and the chunks in transit between threads), not a buffer per decode.
    let allocated = buffers_allocated(&low);
    let held = (once / 4.0 * (1.0 + 1.0 / 16.0) / 8192.0) as u64;
    assert!(allocated <= held + 16 && allocated * 2 < decoded, "{allocated} buffers allocated for {decoded} decodes, the budget holds {held}: {low}");
    assert_eq!(std::fs::read(dir.join("big-ldic.tsv")).unwrap(), std::fs::read(dir.join("low-ldic.tsv")).unwrap());
}
