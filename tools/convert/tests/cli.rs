//! tiff2zarr / zarr2tiff as a user runs them: good input converts both ways, bad input gets
//! one clear line naming the file, exit status 2, and no output that looks complete.

use std::path::Path;
use std::process::Command;

use dvc_stream::store::dtype::{DType, TypedBuf};
use dvc_stream::store::tiff_write::write_tiff;

fn tiff2zarr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tiff2zarr")).args(args).arg("-q").output().unwrap()
}

fn zarr2tiff(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zarr2tiff")).args(args).arg("-q").output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn assert_fails_cleanly(out: &std::process::Output, mentions: &str, message: &str, output: &Path) {
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(mentions), "names the file {mentions}: {err}");
    assert!(err.contains(message), "says '{message}': {err}");
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    assert!(!Path::new(&partial).exists(), "no partial output left");
}

#[test]
fn round_trip_through_both_tools() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [10, 12, 14];
    let data = TypedBuf::U16((0..shape.iter().product::<usize>()).map(|i| (i * 37 % 65536) as u16).collect());
    let tif = dir.path().join("in.tif");
    write_tiff(&tif, shape, &data).unwrap();
    let zarr = dir.path().join("out.zarr");
    let out = tiff2zarr(&[s(&tif), s(&zarr), "--chunk3", "4", "5", "6", "--levels", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back = dir.path().join("back.tif");
    let out = zarr2tiff(&[s(&zarr), s(&back)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&tif).unwrap(), std::fs::read(&back).unwrap(), "same TIFF bytes back");
    let lvl = dir.path().join("level1.tif");
    assert!(zarr2tiff(&[s(&zarr), s(&lvl), "--level", "1"]).status.success());
    let v = dvc_stream::store::Volume::open(&lvl, dvc_stream::store::ChunkCache::new(1 << 20)).unwrap();
    assert_eq!(v.shape(), [5, 6, 7]);
    assert_eq!(v.dtype(), DType::U16);
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out_zarr = dir.path().join("o.zarr");

    let not_tiff = dir.path().join("notes.tif");
    std::fs::write(&not_tiff, b"hello, this is not an image").unwrap();
    assert_fails_cleanly(&tiff2zarr(&[s(&not_tiff), s(&out_zarr)]), "notes.tif", "not a TIFF", &out_zarr);

    let shape = [6, 8, 8];
    let data = TypedBuf::U16(vec![7; 384]);
    let good = dir.path().join("good.tif");
    write_tiff(&good, shape, &data).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.tif");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = tiff2zarr(&[s(&truncated), s(&out_zarr)]);
    assert_fails_cleanly(&out, "truncated.tif", "", &out_zarr);
    assert!(!out_zarr.exists());

    let flat = dir.path().join("flat.tif");
    write_tiff(&flat, [1, 8, 8], &TypedBuf::U16(vec![1; 64])).unwrap();
    assert_fails_cleanly(&tiff2zarr(&[s(&flat), s(&out_zarr)]), "flat.tif", "is 2D", &out_zarr);

    let u32tif = dir.path().join("wide.tif");
    write_tiff(&u32tif, [2, 4, 4], &TypedBuf::F64(vec![1.0; 32])).unwrap();
    let out = tiff2zarr(&[s(&u32tif), s(&out_zarr)]);
    assert!(out.status.success(), "float64 is read: {}", String::from_utf8_lossy(&out.stderr));
    // An existing output is kept unless --overwrite.
    let out = tiff2zarr(&[s(&good), s(&out_zarr)]);
    assert_fails_cleanly(&out, "o.zarr", "already exists", &out_zarr);
    assert!(tiff2zarr(&[s(&good), s(&out_zarr), "--overwrite"]).status.success());

    let slices = dir.path().join("slices");
    std::fs::create_dir(&slices).unwrap();
    write_tiff(&slices.join("s1.tif"), [1, 8, 8], &TypedBuf::U16(vec![1; 64])).unwrap();
    write_tiff(&slices.join("s2.tif"), [1, 8, 9], &TypedBuf::U16(vec![1; 72])).unwrap();
    let o2 = dir.path().join("o2.zarr");
    assert_fails_cleanly(&tiff2zarr(&[s(&slices), s(&o2)]), "s2.tif", "8x8", &o2);
    std::fs::remove_file(slices.join("s2.tif")).unwrap();
    write_tiff(&slices.join("s2.tif"), [1, 8, 8], &TypedBuf::U8(vec![1; 64])).unwrap();
    assert_fails_cleanly(&tiff2zarr(&[s(&slices), s(&o2)]), "s2.tif", "uint8", &o2);

    let unwritable = Path::new("/proc/definitely/not/here.zarr");
    let out = tiff2zarr(&[s(&good), s(unwritable)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("here.zarr") || String::from_utf8_lossy(&out.stderr).contains("/proc"));

    assert_fails_cleanly(&tiff2zarr(&[s(&good), s(&o2), "--codec", "lz77"]), "--codec", "unknown codec", &o2);
    assert_fails_cleanly(&zarr2tiff(&[s(&good), s(&dir.path().join("x.tif"))]), "good.tif", "not a Zarr store", &dir.path().join("x.tif"));
}
