//! Hostile inputs (issue 15, items 6, 9, 10, 11): files whose sizes, offsets or values are
//! crafted to overflow, exhaust memory or be read as data. Each must be refused with one
//! line naming the file and exit status 2, never a panic (101), an abort (134) or a result.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{dvc, examples, s};

/// Runs dvc-stream and asserts a clean refusal: status 2, one line on stderr, containing
/// every piece of `says`.
fn refused(args: &[&str], says: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).args(args).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?} exited {:?}: {e}", out.status);
    assert_eq!(e.trim_end().lines().count(), 1, "{args:?}: {e}");
    for w in says {
        assert!(e.contains(w), "'{w}' in {e}");
    }
    e
}

// ---- TIFF ----

/// One IFD entry: tag, TIFF type (3 SHORT, 4 LONG, 16 LONG8) and values.
struct Entry(u16, u16, Vec<u64>);

/// A little-endian BigTIFF whose pages have the given entries; `data` is placed right after
/// the 16-byte header (so at offset 16).
fn bigtiff(data: &[u8], pages: &[Vec<Entry>]) -> Vec<u8> {
    let mut f = vec![0x49, 0x49, 43, 0, 8, 0, 0, 0];
    f.extend(0u64.to_le_bytes()); // first IFD offset, patched below
    f.extend_from_slice(data);
    let mut link_at = 8usize;
    for entries in pages {
        while f.len() % 8 != 0 {
            f.push(0);
        }
        let ifd = f.len() as u64;
        f[link_at..link_at + 8].copy_from_slice(&ifd.to_le_bytes());
        // Values too long for the entry go after the IFD.
        let ifd_len = 8 + entries.len() * 20 + 8;
        let mut extra: Vec<u8> = Vec::new();
        let mut body: Vec<u8> = (entries.len() as u64).to_le_bytes().to_vec();
        for Entry(tag, ty, values) in entries {
            let size = match ty {
                3 => 2,
                4 => 4,
                _ => 8,
            };
            let mut bytes = Vec::new();
            for v in values {
                bytes.extend_from_slice(&v.to_le_bytes()[..size]);
            }
            body.extend(tag.to_le_bytes());
            body.extend(ty.to_le_bytes());
            body.extend((values.len() as u64).to_le_bytes());
            if bytes.len() <= 8 {
                bytes.resize(8, 0);
                body.extend(bytes);
            } else {
                let at = ifd + ifd_len as u64 + extra.len() as u64;
                body.extend(at.to_le_bytes());
                extra.extend(bytes);
                while !extra.len().is_multiple_of(8) {
                    extra.push(0);
                }
            }
        }
        link_at = f.len() + body.len();
        body.extend(0u64.to_le_bytes());
        f.extend(body);
        f.extend(extra);
    }
    f
}

/// The entries of a grey 8-bit page.
fn page(w: u64, h: u64, compression: u64, offsets: Vec<u64>, counts: Vec<u64>, rows_per_strip: u64) -> Vec<Entry> {
    vec![
        Entry(256, 4, vec![w]),
        Entry(257, 4, vec![h]),
        Entry(258, 3, vec![8]),
        Entry(259, 3, vec![compression]),
        Entry(262, 3, vec![1]),
        Entry(273, 16, offsets),
        Entry(277, 3, vec![1]),
        Entry(278, 4, vec![rows_per_strip]),
        Entry(279, 16, counts),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn the_bigtiff_builder_makes_readable_files() {
    // The crafted files below differ from this one only in the field under test.
    let d = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..32).collect();
    let pages = vec![page(4, 4, 1, vec![16], vec![16], 4), page(4, 4, 1, vec![32], vec![16], 4)];
    let p = write(d.path(), "ok.tif", &bigtiff(&data, &pages));
    let out = dvc(&["stats", &s(&p)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2") && text.contains("4"), "{text}");
}

#[test]
fn a_strip_offset_near_2_to_the_64_is_refused_not_overflowed() {
    let d = tempfile::tempdir().unwrap();
    // A 32x32 page: offset + 1024 bytes passes 2^64.
    let p = write(d.path(), "far.tif", &bigtiff(&[0; 16], &[page(32, 32, 1, vec![u64::MAX - 511], vec![1024], 32), page(32, 32, 1, vec![u64::MAX - 511], vec![1024], 32)]));
    refused(&["stats", &s(&p)], &["far.tif", "strip 0"]);
    let d2 = tempfile::tempdir().unwrap();
    refused(&["reg", &s(&p), &s(&p), "-od", &s(d2.path())], &["far.tif"]);
    refused(&["ldic", &s(&p), &s(&p), "-hws", "1", "-ns", "2", "-od", &s(d2.path())], &["far.tif"]);
}

#[test]
fn fewer_strips_than_rows_need_is_refused() {
    // One strip of one row for a page of four rows: the reader would index strip 3.
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "short.tif", &bigtiff(&[0; 16], &[page(4, 4, 1, vec![16], vec![4], 1), page(4, 4, 1, vec![16], vec![4], 1)]));
    refused(&["stats", &s(&p)], &["short.tif"]);
}

#[test]
fn a_tiny_bigtiff_claiming_64_huge_pages_is_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let big = 1u64 << 20;
    // Compressed (LZW) pages of 2^20 x 2^20 pixels whose one strip is 8 bytes.
    let pages: Vec<Vec<Entry>> = (0..64).map(|_| page(big, big, 5, vec![16], vec![8], big)).collect();
    let p = write(d.path(), "claims.tif", &bigtiff(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &pages));
    assert!(std::fs::metadata(&p).unwrap().len() < 20_000);
    refused(&["stats", &s(&p)], &["claims.tif", "page 0"]);
    let d2 = tempfile::tempdir().unwrap();
    refused(&["reg", &s(&p), &s(&p), "-od", &s(d2.path())], &["claims.tif"]);
    refused(&["ldic", &s(&p), &s(&p), "-hws", "1", "-ns", "2", "-od", &s(d2.path())], &["claims.tif"]);
    // Uncompressed, the strips would have to be in the file.
    let pages: Vec<Vec<Entry>> = (0..64).map(|_| page(big, big, 1, vec![16], vec![big * big], big)).collect();
    let p = write(d.path(), "raw-claims.tif", &bigtiff(&[0; 16], &pages));
    refused(&["stats", &s(&p)], &["raw-claims.tif", "page 0"]);
}

#[test]
fn a_2_to_the_31_square_lzw_page_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let n = 1u64 << 31;
    let p = write(d.path(), "wide.tif", &bigtiff(&[0x80; 16], &[page(n, n, 5, vec![16], vec![16], n), page(n, n, 5, vec![16], vec![16], n)]));
    refused(&["stats", &s(&p)], &["wide.tif"]);
}

// ---- Zarr ----

fn zarr_array(dir: &Path, name: &str, shape: &str, chunk: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    let meta = format!(
        r#"{{"zarr_format":3,"node_type":"array","shape":{shape},"data_type":"uint8","chunk_grid":{{"name":"regular","configuration":{{"chunk_shape":{chunk}}}}},"chunk_key_encoding":{{"name":"default","configuration":{{"separator":"/"}}}},"fill_value":0,"codecs":[{{"name":"bytes"}}]}}"#
    );
    std::fs::write(p.join("zarr.json"), meta).unwrap();
    p
}

#[test]
fn the_zarr_builder_makes_readable_stores() {
    let d = tempfile::tempdir().unwrap();
    let p = zarr_array(d.path(), "ok.zarr", "[4,5,6]", "[2,2,2]");
    dvc(&["stats", &s(&p)]);
}

#[test]
fn zarr_shapes_beyond_any_volume_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let reg = examples().join("reg/im1-im2-registration.tsv");
    for (name, shape) in [("cube.zarr", "[1099511627776,1099511627776,1099511627776]"), ("line.zarr", "[18446744073709551615,1,1]")] {
        let p = zarr_array(d.path(), name, shape, "[64,64,64]");
        refused(&["stats", &s(&p)], &[name, "voxels"]);
        let out = d.path().join(format!("out-{name}"));
        refused(&["deform-image", &s(&p), "-pf", &s(&reg), "--output", &s(&out)], &[name, "voxels"]);
        assert!(!out.exists());
    }
}

#[test]
fn a_chunk_of_2_to_the_64_voxels_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = zarr_array(d.path(), "chunky.zarr", "[4,4,4]", "[18446744073709551615,1,1]");
    refused(&["stats", &s(&p)], &["chunky.zarr", "chunk shape"]);
}

#[test]
fn a_truncated_root_zarr_json_is_named_with_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("synth");
    dvc(&["synth", &s(&out), "--shape", "16", "-q"]);
    let store = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).find(|p| p.join("zarr.json").is_file()).unwrap();
    let meta = store.join("zarr.json");
    let text = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, &text[..text.len() / 2]).unwrap();
    refused(&["stats", &s(&store)], &["zarr.json", "truncated or corrupt"]);
    // A document of the wrong kind.
    std::fs::write(&meta, br#"{"zarr_format":3,"node_type":"arr"}"#).unwrap();
    refused(&["stats", &s(&store)], &["zarr.json", "node_type"]);
}

// ---- fields ----

/// spam's ldic field of im1-im2 (3x3x3 nodes) with `edit` applied to its data lines.
fn edited_ldic_field(dir: &Path, name: &str, edit: impl Fn(&mut Vec<String>)) -> PathBuf {
    let text = std::fs::read_to_string(examples().join("ldic/im1-im2-ldic.tsv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let head = lines.remove(0);
    edit(&mut lines);
    lines.insert(0, head);
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn ldic_with_guess(guess: &Path, out: &Path) -> Vec<String> {
    let ex = examples();
    vec![
        "ldic".into(),
        s(&ex.join("inputs/im1.tif")),
        s(&ex.join("inputs/im2.tif")),
        "-hws".into(),
        "5".into(),
        "-pf".into(),
        s(guess),
        "-od".into(),
        s(out),
        "-q".into(),
    ]
}

#[test]
fn an_ldic_guess_field_missing_a_row_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = edited_ldic_field(d.path(), "missing.tsv", |l| {
        l.remove(13);
    });
    let out = d.path().join("out");
    let args = ldic_with_guess(&f, &out);
    refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), &["missing.tsv", "whole grid"]);
    assert!(!out.join("im1-im2-ldic.tsv").exists() && !out.join("im1-im2-ldic.parquet").exists());
}

#[test]
fn an_ldic_guess_field_with_nan_inf_or_huge_positions_is_refused() {
    let d = tempfile::tempdir().unwrap();
    for (k, bad) in ["nan", "inf", "-inf", "1e300", "4000"].iter().enumerate() {
        for col in 1..=3 {
            let name = format!("bad{k}-{col}.tsv");
            let f = edited_ldic_field(d.path(), &name, |l| {
                let mut v: Vec<String> = l[5].split('\t').map(String::from).collect();
                v[col] = bad.to_string();
                l[5] = v.join("\t");
            });
            let args = ldic_with_guess(&f, &d.path().join("out"));
            // Non-finite or beyond any volume: refused as read; 4000 breaks the grid.
            let why = if *bad == "4000" { "whole grid" } else { "row 6" };
            refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[&name, why]);
        }
    }
    // Rows swapped: the grid order the tiles and the VTK rely on is gone.
    let f = edited_ldic_field(d.path(), "swapped.tsv", |l| l.swap(2, 7));
    let args = ldic_with_guess(&f, &d.path().join("out"));
    refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), &["swapped.tsv", "Z-major"]);
    // A whole, ordered field still guides ldic.
    let f = edited_ldic_field(d.path(), "whole.tsv", |_| {});
    let args = ldic_with_guess(&f, &d.path().join("out"));
    dvc(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_flipped_byte_in_a_parquet_data_page_is_refused() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let d = tempfile::tempdir().unwrap();
    let table = d.path().join("field.parquet");
    dvc(&["convert-field", &s(&examples().join("ldic/im1-im2-ldic.tsv")), &s(&table)]);
    dvc_stream::field::PhiField::read(&table).unwrap();
    let good = std::fs::read(&table).unwrap();
    // Where column Fzz's pages are.
    let reader = SerializedFileReader::new(std::fs::File::open(&table).unwrap()).unwrap();
    let rg = reader.metadata().row_group(0);
    let col = (0..rg.num_columns()).find(|&c| rg.column(c).column_path().string() == "Fzz").unwrap();
    let start = rg.column(col).data_page_offset() as usize;
    let len = rg.column(col).compressed_size() as usize;
    // Every byte of the column chunk's last half (page payload, past the page header),
    // flipped in turn: none may be read as data.
    let mut wrong = Vec::new();
    for at in start + len / 2..start + len {
        let mut bytes = good.clone();
        bytes[at] ^= 0x5a;
        std::fs::write(&table, &bytes).unwrap();
        match dvc_stream::field::PhiField::read(&table) {
            Ok(_) => wrong.push(at),
            Err(e) => assert!(format!("{e:#}").contains("field.parquet"), "{e:#}"),
        }
    }
    assert!(wrong.is_empty(), "flips read as data at bytes {wrong:?}");
    let mut bytes = good.clone();
    bytes[start + len - 3] ^= 0x5a;
    std::fs::write(&table, &bytes).unwrap();
    refused(&["convert-field", &s(&table), &s(&d.path().join("back.tsv"))], &["field.parquet", "corrupt"]);
}

// ---- sizes computed from arguments ----

#[test]
fn ldic_windows_or_margins_larger_than_the_image_are_refused_before_any_output() {
    let ex = examples();
    let d = tempfile::tempdir().unwrap();
    let (im1, im2) = (s(&ex.join("inputs/im1.tif")), s(&ex.join("inputs/im2.tif")));
    let od = d.path().join("out");
    refused(&["ldic", &im1, &im2, "-hws", "1000", "-ns", "10", "-od", &s(&od)], &["--half-window-size 1000"]);
    refused(&["ldic", &im1, &im2, "-hws", "5", "-m", "1000", "-ns", "10", "-od", &s(&od)], &["--margin 1000"]);
    let left: Vec<_> = std::fs::read_dir(&od).map(|r| r.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_median_radius_beyond_the_grid_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = examples().join("ldic/im1-im2-ldic.tsv");
    refused(&["filter-phi-field", "-pf", &s(&f), "-fm", "-fmr", "1000", "-od", &s(d.path())], &["--filter-median-radius 1000"]);
}

#[test]
fn a_grid_of_10_to_the_15_nodes_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = examples().join("reg/im1-im2-registration.tsv");
    refused(
        &["pass-phi-field", "-pf", &s(&f), "-ns", "1", "-im1shape", "100000", "100000", "100000", "-od", &s(d.path())],
        &["grid of"],
    );
}

#[test]
fn pixel_search_windows_and_ranges_and_ddic_margins_beyond_the_image_are_refused() {
    let ex = examples().join("inputs");
    let d = tempfile::tempdir().unwrap();
    let (im1, im2, lab1) = (s(&ex.join("im1.tif")), s(&ex.join("im2.tif")), s(&ex.join("lab1.tif")));
    let od = s(d.path());
    refused(&["pixel-search", &im1, &im2, "-hws", "1000", "-ns", "15", "-od", &od, "-q"], &["--half-window-size 1000"]);
    refused(&["pixel-search", &im1, &im2, "-hws", "5", "-ns", "15", "-sr", "-1000", "1000", "-1", "1", "-1", "1", "-od", &od, "-q"], &["--search-range"]);
    refused(&["ddic", &im1, &lab1, &im2, "-m", "1000", "-od", &od, "-q"], &["--margin 1000"]);
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing written");
}
