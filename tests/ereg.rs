//! `dvc-stream ereg`: the HTTP API answers with the right slices of known volumes, refuses bad
//! requests with 400 without stopping, saves the Φ it was given, and listens on 127.0.0.1; it
//! answers only requests with the printed URL's token, a loopback Host and no foreign Origin,
//! and a slow client holds up no one else.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dvc_stream::field::PhiField;
use dvc_stream::store::{ChunkCache, Volume};
use dvc_stream::view::render::grey;

mod common;
use common::{dvc, s};

use common::server::{answer, exchange, Server};

fn start(args: &[&str]) -> Server {
    common::server::start("ereg", args)
}

/// `path` with the server's token added to its query.
fn with_token(srv: &Server, path: &str) -> String {
    format!("{path}{}token={}", if path.contains('?') { '&' } else { '?' }, srv.token)
}

/// (status, body) of one request as the page sends it: token, Host, and a JSON body.
fn request(srv: &Server, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let (addr, path) = (&srv.addr, with_token(srv, path));
    exchange(addr, &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()))
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

    let (st, info) = request(&srv, "GET", "/info", "");
    assert_eq!(st, 200);
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(info["shape"], serde_json::json!([24, 32, 40]));
    let (st, page) = request(&srv, "GET", "/", "");
    assert!(st == 200 && String::from_utf8_lossy(&page).contains("id=\"save\""));
    assert!(!String::from_utf8_lossy(&page).contains("https://"), "no external asset");

    // Slices of image 1 along each axis: every pixel is the stored voxel's grey level.
    let vol = Volume::open(&dir.join("im1.zarr"), ChunkCache::new(64 << 20)).unwrap();
    let all = vol.read_all().unwrap();
    let (lo, hi) = (12000.0f32, 30000.0f32);
    for (axis, index) in [(0usize, 7usize), (1, 20), (2, 33)] {
        let (st, body) = request(&srv, "GET", &format!("/slice?picture=1&axis={axis}&index={index}&lo={lo}&hi={hi}"), "");
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
        let (st, body) = request(&srv, "GET", &format!("/slice?picture=diff&axis=0&index=12&t={t}&lo={lo}&hi={hi}"), "");
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
        let (st, body) = request(&srv, "GET", bad, "");
        assert_eq!(st, 400, "{bad}: {}", String::from_utf8_lossy(&body));
        assert!(!body.is_empty());
    }
    for bad in ["not json", r#"{"t": [1, 2], "r": [0, 0, 0]}"#, r#"{"t": [1, 2, 3]}"#] {
        assert_eq!(request(&srv, "POST", "/save", bad).0, 400, "{bad}");
    }
    assert!(!out.join("im1-im2-ereg-registration.tsv").exists(), "nothing saved by bad requests");

    // Save: the TSV holds exactly the Φ that was set, about the image centre.
    let (st, body) = request(&srv, "POST", "/save", r#"{"t": [2, -1, 0.25], "r": [0, 0, 3]}"#);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let f = PhiField::read(&out.join("im1-im2-ereg-registration.tsv")).unwrap();
    let want = dvc_stream::view::server::phi_of([2.0, -1.0, 0.25], [0.0, 0.0, 3.0], [1.0; 3]);
    assert!((f.phis[0] - want).abs().max() < 1e-6, "{} vs {}", f.phis[0], want);
    assert_eq!(f.positions[0], nalgebra::Vector3::new(11.5, 15.5, 19.5));
    assert!(out.join("im1-im2-ereg-registration.parquet").exists());
    // … and a saved registration is a guess ereg itself starts from.
    drop(srv);
    let again = start(&[&im1, &im2, "-od", &s(&out), "-pf", &s(&out.join("im1-im2-ereg-registration.tsv")), "--bin", "2"]);
    let info: serde_json::Value = serde_json::from_slice(&request(&again, "GET", "/info", "").1).unwrap();
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
    assert_eq!(request(&fixed, "GET", "/info", "").0, 200);
    drop(fixed);
    // Bad addresses and images that do not match: one line, exit 2.
    common::fails(&["ereg", &im1, &im2, "-od", &s(&out), "--bind", "not-an-address"], "cannot listen on not-an-address");
    let other = d.path().join("o");
    dvc(&["synth", &s(&other), "--shape", "20", "-q"]);
    common::fails(&["ereg", &im1, &s(&other.join("im2.zarr")), "-od", &s(&out)], "im2.zarr");
}

#[test]
fn only_the_printed_url_gets_in_and_a_slow_client_holds_up_no_one() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    dvc(&["synth", &s(&dir), "--shape", "16", "--chunk", "16", "-q"]);
    let out = d.path().join("out");
    let srv = start(&[&s(&dir.join("im1.zarr")), &s(&dir.join("im2.zarr")), "-od", &s(&out)]);
    let addr = srv.addr.clone();
    let port = addr.rsplit_once(':').unwrap().1;
    let saved = out.join("im1-im2-ereg-registration.tsv");

    // A client that declares a body and sends 10 bytes of it: answered 408 after the
    // request timeout, while everyone else is served meanwhile.
    let slow = {
        let (addr, path) = (addr.clone(), with_token(&srv, "/save"));
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut c = TcpStream::connect(&addr).unwrap();
            write!(c, "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"t\": [0, ").unwrap();
            let (st, _) = answer(&mut c);
            (st, t0.elapsed())
        })
    };
    // … and a few connections that send nothing at all.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    assert_eq!(request(&srv, "GET", "/info", "").0, 200);
    assert!(t0.elapsed() < Duration::from_secs(2), "answered while a slow client is being read: {:?}", t0.elapsed());
    // A body larger than accepted is refused before it is read.
    let t0 = Instant::now();
    let (st, body) = exchange(&addr, &format!("POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n0123456789", with_token(&srv, "/save")));
    assert_eq!(st, 413, "{}", String::from_utf8_lossy(&body));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    // No token, a wrong one, a token of another length: 403 on every path.
    let wrong: String = srv.token.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    for path in ["/", "/info", "/slice?picture=1&axis=0&index=3", "/page.html"] {
        let sep = if path.contains('?') { '&' } else { '?' };
        for target in [path.to_string(), format!("{path}{sep}token={wrong}"), format!("{path}{sep}token={}", &srv.token[..31]), format!("{path}{sep}token=")] {
            let (st, body) = exchange(&addr, &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
            assert_eq!(st, 403, "{target}: {}", String::from_utf8_lossy(&body));
            assert!(String::from_utf8_lossy(&body).contains("token"), "says why: {}", String::from_utf8_lossy(&body));
        }
    }
    // With the token: a loopback Host by any name or port (an ssh -L tunnel changes the port)…
    for host in [addr.clone(), format!("localhost:{port}"), format!("[::1]:{port}"), "localhost:8000".into(), "127.0.0.1".into()] {
        let (st, body) = exchange(&addr, &format!("GET {} HTTP/1.1\r\nHost: {host}\r\n\r\n", with_token(&srv, "/info")));
        assert_eq!(st, 200, "Host {host}: {}", String::from_utf8_lossy(&body));
    }
    // … but no other name (DNS rebinding), and no Host at all.
    for path in ["/", "/info", "/slice?picture=1&axis=0&index=3"] {
        for host in [format!("attacker.example:{port}"), format!("localhost.attacker.example:{port}"), "127.0.0.1.nip.io".into(), format!("10.1.2.3:{port}")] {
            let (st, body) = exchange(&addr, &format!("GET {} HTTP/1.1\r\nHost: {host}\r\n\r\n", with_token(&srv, path)));
            assert_eq!(st, 403, "{path} Host {host}: {}", String::from_utf8_lossy(&body));
        }
        assert_eq!(exchange(&addr, &format!("GET {} HTTP/1.0\r\n\r\n", with_token(&srv, path))).0, 403, "{path} without Host");
    }
    // Another page's requests, even with the token: a foreign Origin, or marked cross-site.
    let good = r#"{"t": [1, 0, 0], "r": [0, 0, 0]}"#;
    let post = |headers: &str, body: &str| {
        exchange(&addr, &format!("POST {} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n{body}", with_token(&srv, "/save"), body.len()))
    };
    for headers in [
        "Origin: http://attacker.example\r\nContent-Type: text/plain\r\n".to_string(),
        "Origin: http://attacker.example\r\nContent-Type: application/json\r\n".into(),
        format!("Origin: http://127.0.0.1:{}\r\nContent-Type: application/json\r\n", port.parse::<u16>().unwrap() + 1),
        "Origin: null\r\nContent-Type: application/json\r\n".into(),
        "Sec-Fetch-Site: cross-site\r\nContent-Type: application/json\r\n".into(),
    ] {
        let (st, body) = post(&headers, good);
        assert_eq!(st, 403, "{headers}: {}", String::from_utf8_lossy(&body));
    }
    let (st, body) = exchange(&addr, &format!("GET {} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://attacker.example\r\n\r\n", with_token(&srv, "/slice?picture=1&axis=0&index=3")));
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&body));
    // A body that is not declared JSON (what a no-cors fetch can send) is not saved either.
    assert_eq!(post("Content-Type: text/plain\r\n", good).0, 415);
    assert!(!saved.exists(), "nothing saved by refused requests");

    // The page's own save: its Origin, JSON.
    let (st, body) = post(&format!("Origin: http://{addr}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/json\r\n"), good);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let before = std::fs::read(&saved).unwrap();
    // Values no registration has (r = 1e308 made Φ NaN): 400 with the reason, nothing written.
    for bad in [
        r#"{"t": [0, 0, 0], "r": [1e308, 0, 0]}"#,
        r#"{"t": [0, 0, 0], "r": [0, 361, 0]}"#,
        r#"{"t": [1e308, 0, 0], "r": [0, 0, 0]}"#,
        r#"{"t": [0, -33, 0], "r": [0, 0, 0]}"#,
        r#"{"t": [0, 0, 0], "r": [0, 0, null]}"#,
    ] {
        let (st, body) = request(&srv, "POST", "/save", bad);
        let why = String::from_utf8_lossy(&body);
        assert_eq!(st, 400, "{bad}: {why}");
        assert!(why.trim_end().lines().count() == 1 && (why.contains("'t'") || why.contains("'r'") || why.contains("t =") || why.contains("r =")), "{bad}: {why}");
    }
    assert_eq!(request(&srv, "GET", "/slice?picture=diff&axis=0&index=3&r=1e308,0,0", "").0, 400);
    assert_eq!(std::fs::read(&saved).unwrap(), before, "the saved registration is unchanged");
    assert!(!std::fs::read_dir(&out).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("partial")));

    let (st, took) = slow.join().unwrap();
    assert_eq!(st, 408, "the slow request fails");
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(20), "after the request timeout: {took:?}");
    drop(idle);
    assert_eq!(request(&srv, "GET", "/info", "").0, 200, "still serving");
}

#[test]
fn stretch_comparisons_live_phi_and_the_deformed_image() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    dvc(&["synth", &s(&dir), "--shape", "24", "--chunk", "16", "--speckle", "4", "--translate", "2", "0", "0", "--format", "tiff", "-q"]);
    let (im1, im2) = (s(&dir.join("im1.tif")), s(&dir.join("im2.tif")));
    let out = d.path().join("out");
    let srv = start(&[&im1, &im2, "-od", &s(&out)]);

    // /phi: spam's computePhi of t, r and the stretches z (F = R · diag(z)).
    let (st, body) = request(&srv, "GET", "/phi?t=1,2,3&r=0,0,0&z=1.1,0.9,1", "");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["phi"], serde_json::json!([[1.1, 0.0, 0.0, 1.0], [0.0, 0.9, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]]));
    // Escaped values, and the `+` of an exponent as a browser writes it, are numbers.
    for q in ["t=1e%2B1%2C0%2C0", "t=1e+1,0,0", "t=10,0,0&r=0%2C0%2C0"] {
        let v: serde_json::Value = serde_json::from_slice(&request(&srv, "GET", &format!("/phi?{q}"), "").1).unwrap();
        assert_eq!(v["phi"][0][3], 10.0, "{q}");
    }
    for bad in ["/phi?z=0,1,1", "/phi?z=1,1,11", "/phi?z=1,nan,1", "/phi?r=400,0,0", "/slice?picture=checker&axis=0&index=3&squares=0", "/slice?picture=signed&axis=0&index=24", "/slice?picture=odd&axis=0&index=3"] {
        let (st, body) = request(&srv, "GET", bad, "");
        assert_eq!(st, 400, "{bad}: {}", String::from_utf8_lossy(&body));
    }

    // The comparisons under the true translation: signed is mid grey inside, absolute black,
    // the checkerboard shows image 1 in its first square and image 2 moved in the next.
    let inner_mean = |picture: &str| -> f64 {
        let (st, body) = request(&srv, "GET", &format!("/slice?picture={picture}&axis=0&index=12&t=2,0,0&lo=10000&hi=30000&squares=2"), "");
        assert_eq!(st, 200, "{picture}: {}", String::from_utf8_lossy(&body));
        let (h, w, px) = decode(&body);
        let inner: Vec<f64> = (4..h - 4).flat_map(|r| (4..w - 4).map(move |c| (r, c))).map(|(r, c)| px[r * w + c] as f64).collect();
        inner.iter().sum::<f64>() / inner.len() as f64
    };
    assert!((inner_mean("signed") - 127.5).abs() < 1.0, "{}", inner_mean("signed"));
    assert!(inner_mean("abs") < 0.5);
    let (_, one) = request(&srv, "GET", "/slice?picture=1&axis=0&index=12&lo=10000&hi=30000", "");
    let (_, checker) = request(&srv, "GET", "/slice?picture=checker&axis=0&index=12&t=2,0,0&lo=10000&hi=30000&squares=2", "");
    let ((_, w, a), (_, _, b)) = (decode(&one), decode(&checker));
    assert_eq!(a[3 * w + 3], b[3 * w + 3], "first square: image 1");

    // Save with a stretch: the TSV holds it.
    let (st, body) = request(&srv, "POST", "/save", r#"{"t": [2, 0, 0], "r": [0, 0, 0], "z": [1.01, 1, 0.99]}"#);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let f = PhiField::read(&out.join("im1-im2-ereg-registration.tsv")).unwrap();
    assert!((f.phis[0] - dvc_stream::view::server::phi_of([2.0, 0.0, 0.0], [0.0; 3], [1.01, 1.0, 0.99])).abs().max() < 1e-7);

    // Save deformed image 1: image 1 moved by Φ lies on image 2.
    let def = out.join("im1-im2-ereg-def.tif");
    let (st, body) = request(&srv, "POST", "/save-deformed", r#"{"t": [2, 0, 0], "r": [0, 0, 0]}"#);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let cache = ChunkCache::new(64 << 20);
    let got = Volume::open(&def, cache.clone()).unwrap().read_all().unwrap();
    let two = Volume::open(&dir.join("im2.tif"), cache).unwrap().read_all().unwrap();
    let inner = got.slice(ndarray::s![4..20, 4..20, 4..20]).to_owned() - two.slice(ndarray::s![4..20, 4..20, 4..20]);
    assert!(inner.iter().all(|x| x.abs() < 1e-2), "deformed image 1 = image 2 inside: {}", inner.iter().fold(0f32, |m, x| m.max(x.abs())));
    // A second save does not replace it without --overwrite; nothing is left behind.
    let before = std::fs::read(&def).unwrap();
    let (st, body) = request(&srv, "POST", "/save-deformed", r#"{"t": [1, 0, 0], "r": [0, 0, 0]}"#);
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("overwrite"), "{}", String::from_utf8_lossy(&body));
    assert_eq!(std::fs::read(&def).unwrap(), before);
    assert!(!std::fs::read_dir(&out).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("partial")));
    drop(srv);
    let again = start(&[&im1, &im2, "-od", &s(&out), "--overwrite"]);
    assert_eq!(request(&again, "POST", "/save-deformed", r#"{"t": [1, 0, 0], "r": [0, 0, 0]}"#).0, 200);
    assert_ne!(std::fs::read(&def).unwrap(), before, "--overwrite replaces it");

    // The new routes refuse what the old ones refuse: no token, a foreign Origin or Host.
    let addr = again.addr.clone();
    for (method, path) in [("GET", "/phi?t=1,0,0".to_string()), ("POST", "/save-deformed".to_string())] {
        let body = r#"{"t": [0, 0, 0], "r": [0, 0, 0]}"#;
        let head = |target: &str, extra: &str| format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        assert_eq!(exchange(&addr, &head(&path, "")).0, 403, "{path} without token");
        let with = with_token(&again, &path);
        assert_eq!(exchange(&addr, &head(&with, "Origin: http://attacker.example\r\n")).0, 403, "{path} foreign Origin");
        let rebound = format!("{method} {with} HTTP/1.1\r\nHost: attacker.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        assert_eq!(exchange(&addr, &rebound).0, 403, "{path} foreign Host");
    }
}
