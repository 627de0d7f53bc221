//! `dvc-stream ereg`: the HTTP API answers with the right slices of known volumes, refuses bad
//! requests with 400 without stopping, saves the Φ it was given, and listens on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use dvc_stream::field::PhiField;
use dvc_stream::store::{ChunkCache, Volume};
use dvc_stream::view::render::grey;

mod common;
use common::{dvc, s};

/// A running server, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).arg("ereg").args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no URL in '{line}'"));
    Server { child, addr: url.trim_start_matches("http://").trim_end_matches('/').to_string() }
}

/// (status, body) of one request.
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(c, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

fn decode(png_bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    (info.height as usize, info.width as usize, buf[..info.buffer_size()].to_vec())
}

#[test]
fn api_slices_bad_requests_and_save() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    dvc(&["synth", &s(&dir), "--shape3", "24", "32", "40", "--chunk", "16", "--speckle", "4", "--translate", "2", "-1", "0", "-q"]);
    let (im1, im2) = (s(&dir.join("im1.zarr")), s(&dir.join("im2.zarr")));
    let out = d.path().join("out");
    let srv = start(&[&im1, &im2, "-od", &s(&out)]);
    assert!(srv.addr.starts_with("127.0.0.1:"), "listens on this machine only by default: {}", srv.addr);

    let (st, info) = request(&srv.addr, "GET", "/info", "");
    assert_eq!(st, 200);
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(info["shape"], serde_json::json!([24, 32, 40]));
    let (st, page) = request(&srv.addr, "GET", "/", "");
    assert!(st == 200 && String::from_utf8_lossy(&page).contains("id=\"save\""));
    assert!(!String::from_utf8_lossy(&page).contains("https://"), "no external asset");

    // Slices of image 1 along each axis: every pixel is the stored voxel's grey level.
    let vol = Volume::open(&dir.join("im1.zarr"), ChunkCache::new(64 << 20)).unwrap();
    let all = vol.read_all().unwrap();
    let (lo, hi) = (12000.0f32, 30000.0f32);
    for (axis, index) in [(0usize, 7usize), (1, 20), (2, 33)] {
        let (st, body) = request(&srv.addr, "GET", &format!("/slice?picture=1&axis={axis}&index={index}&lo={lo}&hi={hi}"), "");
        assert_eq!(st, 200);
        let (h, w, px) = decode(&body);
        let plane = all.index_axis(ndarray::Axis(axis), index);
        assert_eq!((h, w), plane.dim());
        for ((r, c), v) in plane.indexed_iter() {
            assert_eq!(px[r * w + c], grey(*v, lo, hi), "axis {axis} ({r}, {c})");
        }
    }
    // The difference under the true translation is black inside; without it, it is not.
    let mean = |t: &str| -> f64 {
        let (st, body) = request(&srv.addr, "GET", &format!("/slice?picture=diff&axis=0&index=12&t={t}&lo={lo}&hi={hi}"), "");
        assert_eq!(st, 200);
        let (h, w, px) = decode(&body);
        // Away from the border, where image 2 moved in from outside.
        let inner: Vec<f64> = (4..h - 4).flat_map(|r| (4..w - 4).map(move |c| (r, c))).map(|(r, c)| px[r * w + c] as f64).collect();
        inner.iter().sum::<f64>() / inner.len() as f64
    };
    let (aligned, off) = (mean("2,-1,0"), mean("0,0,0"));
    assert!(aligned < 0.5 && off > 20.0, "difference image: {aligned} aligned, {off} not");
    assert!(mean("2,-1,0.5") > aligned, "moving a translation changes the difference image");

    // Bad requests: 400 with a reason, and the server goes on.
    for bad in [
        "/slice?picture=1&axis=3&index=0",
        "/slice?picture=1&axis=0&index=24",
        "/slice?picture=x&axis=0&index=0",
        "/slice?picture=diff&axis=0&index=1&t=1,2",
        "/slice?picture=diff&axis=0&index=1&r=a,b,c",
        "/slice?picture=1&axis=0&index=1&lo=5&hi=5",
        "/nothing",
    ] {
        let (st, body) = request(&srv.addr, "GET", bad, "");
        assert_eq!(st, 400, "{bad}: {}", String::from_utf8_lossy(&body));
        assert!(!body.is_empty());
    }
    for bad in ["not json", r#"{"t": [1, 2], "r": [0, 0, 0]}"#, r#"{"t": [1, 2, 3]}"#] {
        assert_eq!(request(&srv.addr, "POST", "/save", bad).0, 400, "{bad}");
    }
    assert!(!out.join("im1-im2-ereg-registration.tsv").exists(), "nothing saved by bad requests");

    // Save: the TSV holds exactly the Φ that was set, about the image centre.
    let (st, body) = request(&srv.addr, "POST", "/save", r#"{"t": [2, -1, 0.25], "r": [0, 0, 3]}"#);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let f = PhiField::read(&out.join("im1-im2-ereg-registration.tsv")).unwrap();
    let want = dvc_stream::view::server::phi_of([2.0, -1.0, 0.25], [0.0, 0.0, 3.0]);
    assert!((f.phis[0] - want).abs().max() < 1e-6, "{} vs {}", f.phis[0], want);
    assert_eq!(f.positions[0], nalgebra::Vector3::new(11.5, 15.5, 19.5));
    assert!(out.join("im1-im2-ereg-registration.parquet").exists());
    // … and a saved registration is a guess ereg itself starts from.
    drop(srv);
    let again = start(&[&im1, &im2, "-od", &s(&out), "-pf", &s(&out.join("im1-im2-ereg-registration.tsv")), "--bin", "2"]);
    let info: serde_json::Value = serde_json::from_slice(&request(&again.addr, "GET", "/info", "").1).unwrap();
    assert_eq!(info["shape"], serde_json::json!([12, 16, 20]), "--bin 2 shows the pyramid level");
    let t: Vec<f64> = serde_json::from_value(info["t"].clone()).unwrap();
    let r: Vec<f64> = serde_json::from_value(info["r"].clone()).unwrap();
    assert!((t[0] - 2.0).abs() < 1e-6 && (t[1] + 1.0).abs() < 1e-6 && (t[2] - 0.25).abs() < 1e-6, "{t:?}");
    assert!((r[2] - 3.0).abs() < 1e-5, "{r:?}"); // the TSV holds F to 7 decimals
    drop(again);

    // --port: the port asked for (a free one found here).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fixed = start(&[&im1, &im2, "-od", &s(&out), "--port", &port.to_string()]);
    assert_eq!(fixed.addr, format!("127.0.0.1:{port}"));
    assert_eq!(request(&fixed.addr, "GET", "/info", "").0, 200);
    drop(fixed);
    // Bad addresses and images that do not match: one line, exit 2.
    common::fails(&["ereg", &im1, &im2, "-od", &s(&out), "--bind", "not-an-address"], "cannot listen on not-an-address");
    let other = d.path().join("o");
    dvc(&["synth", &s(&other), "--shape", "20", "-q"]);
    common::fails(&["ereg", &im1, &s(&other.join("im2.zarr")), "-od", &s(&out)], "im2.zarr");
}
