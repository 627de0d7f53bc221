//! `dvc-stream view`: on a real run (synth + ldic) its routes answer with the stored slice,
//! the table's rows and a residual that is small under the measured field and large without
//! it; and, sharing ereg's server core, it answers only requests with the printed URL's token,
//! a loopback Host and no foreign Origin, on 127.0.0.1.


use dvc_stream::store::{ChunkCache, Volume};
use dvc_stream::view::render::grey;

mod common;
use common::{dvc, s};

use common::server::{exchange, Server};

fn start(args: &[&str]) -> Server {
    common::server::start("view", args)
}

fn get(srv: &Server, path: &str) -> (u16, Vec<u8>) {
    let sep = if path.contains('?') { '&' } else { '?' };
    exchange(&srv.addr, &format!("GET {path}{sep}token={} HTTP/1.1\r\nHost: {}\r\n\r\n", srv.token, srv.addr))
}

fn json(srv: &Server, path: &str) -> serde_json::Value {
    let (st, body) = get(srv, path);
    assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// (height, width, channels, pixels) of a PNG answer.
fn decode(png_bytes: &[u8]) -> (usize, usize, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgba => 4,
        other => panic!("{other:?}"),
    };
    (info.height as usize, info.width as usize, channels, buf[..info.buffer_size()].to_vec())
}

/// A pair moved by (2, 0, 0) and ldic's field on it.
fn run(d: &std::path::Path) -> (String, String, String) {
    let dir = d.join("s");
    dvc(&["synth", &s(&dir), "--shape", "48", "--chunk", "16", "--speckle", "4", "--translate", "2", "0", "0", "-q"]);
    let out = d.join("out");
    dvc(&["ldic", &s(&dir.join("im1.zarr")), &s(&dir.join("im2.zarr")), "--half-window-size", "6", "--node-spacing", "8", "--out-dir", &s(&out), "-q"]);
    (s(&out.join("im1-im2-ldic.parquet")), s(&dir.join("im1.zarr")), s(&dir.join("im2.zarr")))
}

#[test]
fn slices_rows_overlays_and_residual_of_a_real_run() {
    let d = tempfile::tempdir().unwrap();
    let (table, im1, im2) = run(d.path());
    let srv = start(&[&table, &im1, &im2]);
    assert!(srv.addr.starts_with("127.0.0.1:"), "{}", srv.addr);
    let info = json(&srv, "/info");
    assert_eq!(info["shape"], serde_json::json!([48, 48, 48]));
    assert_eq!(info["grid"], true);
    assert_eq!(info["residual"], true);
    assert_eq!(info["rows"], 125);
    // The colour range of Zdisp comes from the converged rows: around the true 2.
    let r = &info["ranges"]["Zdisp"];
    assert!((r[0].as_f64().unwrap() - 2.0).abs() < 0.05 && (r[1].as_f64().unwrap() - 2.0).abs() < 0.05, "{r}");

    // Image 1's slice is the stored voxels.
    let vol = Volume::open(std::path::Path::new(&im1), ChunkCache::new(64 << 20)).unwrap();
    let all = vol.read_all().unwrap();
    let (st, body) = get(&srv, "/slice?axis=1&index=20&lo=10000&hi=30000");
    assert_eq!(st, 200);
    let (h, w, _, px) = decode(&body);
    let plane = all.index_axis(ndarray::Axis(1), 20);
    assert_eq!((h, w), plane.dim());
    assert!(plane.indexed_iter().all(|((r, c), v)| px[r * w + c] == grey(*v, 10000.0, 30000.0)));

    // The rows near slice Z = 25 are the node plane Z = 24, and /row gives each as the table has it.
    let points = json(&srv, "/points?axis=0&index=25&column=Zdisp");
    let points = points["points"].as_array().unwrap();
    assert_eq!(points.len(), 25);
    let f = dvc_stream::field::PhiField::read(std::path::Path::new(&table)).unwrap();
    for p in points {
        let i = p["row"].as_u64().unwrap() as usize;
        assert_eq!(f.positions[i][0], 24.0);
        assert_eq!((p["u"].as_f64().unwrap(), p["v"].as_f64().unwrap()), (f.positions[i][1], f.positions[i][2]));
        let row = json(&srv, &format!("/row?i={i}"));
        let names: Vec<String> = serde_json::from_value(row["names"].clone()).unwrap();
        let zd = names.iter().position(|n| n == "Zdisp").unwrap();
        assert_eq!(row["values"][zd].as_f64().unwrap(), f.phis[i][(0, 3)]);
        assert_eq!(p["value"].as_f64().unwrap(), f.phis[i][(0, 3)]);
    }

    // Per node: the pixel at a node has that node's colour; beyond the grid nothing is drawn.
    let (st, body) = get(&srv, "/overlay?axis=0&index=24&column=Zdisp&mode=nodes&lo=1.9&hi=2.1");
    assert_eq!(st, 200);
    let (h, w, ch, px) = decode(&body);
    assert_eq!((h, w, ch), (48, 48, 4));
    assert_eq!(px[(w + 1) * 4 + 3], 0, "no node near (1, 1): transparent");
    assert_eq!(px[(24 * w + 24) * 4 + 3], 255);
    // The status map colours every node of the plane.
    let (_, body) = get(&srv, "/overlay?axis=0&index=24&mode=status");
    let (.., px) = decode(&body);
    assert_eq!(px[(24 * w + 24) * 4..][..4], [40, 180, 70, 255], "a converged node is green");

    // The residual under the measured field is far below the one without it (a field of zeros).
    let mean = |srv: &Server| -> f64 {
        let (st, body) = get(srv, "/residual?axis=0&index=24&lo=0&hi=2000");
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let (h, w, _, px) = decode(&body);
        let inner: Vec<f64> = (8..h - 8).flat_map(|r| (8..w - 8).map(move |c| (r, c))).map(|(r, c)| px[r * w + c] as f64).collect();
        inner.iter().sum::<f64>() / inner.len() as f64
    };
    let measured = mean(&srv);
    let zero = d.path().join("zero.tsv");
    let text = std::fs::read_to_string(d.path().join("s/truth.tsv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let zd = head.iter().position(|c| *c == "Zdisp").unwrap();
    let zeroed: Vec<String> = lines.map(|l| l.split('\t').enumerate().map(|(k, v)| if k == zd { "0.0" } else { v }).collect::<Vec<_>>().join("\t")).collect();
    std::fs::write(&zero, format!("{}\n{}\n", head.join("\t"), zeroed.join("\n"))).unwrap();
    let still = start(&[&s(&zero), &im1, &im2]);
    let unmoved = mean(&still);
    assert!(measured < 5.0 && unmoved > 40.0, "residual: {measured} under the field, {unmoved} without it");

    // Bad requests: 400 with a reason.
    for bad in [
        "/slice?axis=3&index=0",
        "/slice?axis=0&index=48",
        "/overlay?axis=0&index=1&column=nothing",
        "/overlay?axis=0&index=1&column=Zdisp&mode=odd",
        "/overlay?axis=0&index=1&column=Zdisp&lo=2&hi=1",
        "/points?axis=0&index=1",
        "/row?i=125",
        "/row?i=-1",
        "/nothing",
    ] {
        let (st, body) = get(&srv, bad);
        assert_eq!(st, 400, "{bad}: {}", String::from_utf8_lossy(&body));
        assert!(!body.is_empty());
    }
    drop(still);
    // A table of another image, and a table without positions: one line, exit 2.
    let other = d.path().join("o");
    dvc(&["synth", &s(&other), "--shape", "20", "-q"]);
    common::fails(&["view", &table, &s(&other.join("im1.zarr"))], "outside image 1");
    let bare = d.path().join("bare.tsv");
    std::fs::write(&bare, "a\tb\n1\t2\n").unwrap();
    common::fails(&["view", &s(&bare), &im1], "Zpos");
}

#[test]
fn only_the_printed_url_gets_in() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    dvc(&["synth", &s(&dir), "--shape", "16", "--chunk", "16", "-q"]);
    let srv = start(&[&s(&dir.join("truth.tsv")), &s(&dir.join("im1.zarr")), &s(&dir.join("im2.zarr"))]);
    let addr = srv.addr.clone();
    let port = addr.rsplit_once(':').unwrap().1;
    let wrong: String = srv.token.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    let routes = ["/", "/info", "/slice?axis=0&index=3", "/overlay?axis=0&index=3&mode=status", "/points?axis=0&index=3&column=Zdisp", "/row?i=0", "/residual?axis=0&index=3"];
    for path in routes {
        let sep = if path.contains('?') { '&' } else { '?' };
        for target in [path.to_string(), format!("{path}{sep}token={wrong}"), format!("{path}{sep}token=")] {
            let (st, body) = exchange(&addr, &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
            assert_eq!(st, 403, "{target}: {}", String::from_utf8_lossy(&body));
            assert!(String::from_utf8_lossy(&body).contains("dvc-stream view"), "names the command: {}", String::from_utf8_lossy(&body));
        }
        let with = format!("{path}{sep}token={}", srv.token);
        for host in [format!("attacker.example:{port}"), "127.0.0.1.nip.io".into(), format!("10.1.2.3:{port}")] {
            let (st, _) = exchange(&addr, &format!("GET {with} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            assert_eq!(st, 403, "{path} Host {host}");
        }
        assert_eq!(exchange(&addr, &format!("GET {with} HTTP/1.0\r\n\r\n")).0, 403, "{path} without Host");
        // (A link from another site may open the page itself, not ask it for data.)
        let cross_site = if path == "/" { vec![] } else { vec!["Sec-Fetch-Site: cross-site\r\n".to_string()] };
        for headers in ["Origin: http://attacker.example\r\n".to_string(), format!("Origin: http://127.0.0.1:{}\r\n", port.parse::<u16>().unwrap() + 1)].into_iter().chain(cross_site) {
            let (st, _) = exchange(&addr, &format!("GET {with} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n"));
            assert_eq!(st, 403, "{path} {headers}");
        }
        // … and with everything right, it answers.
        let (st, body) = exchange(&addr, &format!("GET {with} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nSec-Fetch-Site: same-origin\r\n\r\n"));
        assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
    }
    // view writes nothing: a POST is no request it knows, and a body that is not JSON is refused first.
    let (st, _) = exchange(&addr, &format!("POST /row?token={} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi", srv.token));
    assert_eq!(st, 415);
}

#[test]
fn a_ddic_labels_table_is_drawn_per_grain() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("g");
    dvc(&["synth", &s(&g), "--shape", "64", "--grains", "6", "-q"]);
    let out = d.path().join("out");
    dvc(&["ddic", &s(&g.join("im1.zarr")), &s(&g.join("lab1.zarr")), &s(&g.join("im2.zarr")), "--out-dir", &s(&out), "-q"]);
    let table = out.join("im1-im2-ddic.parquet");
    let srv = start(&[&s(&table), &s(&g.join("im1.zarr")), &s(&g.join("im2.zarr"))]);
    let info = json(&srv, "/info");
    assert_eq!(info["grid"], false);
    assert_eq!(info["rows"], 7);
    let f = dvc_stream::field::PhiField::read(&table).unwrap();
    // Each grain is listed on the slice through its centre, and drawn there; the background
    // (label 0) never is.
    for i in 1..f.len() {
        let c = f.positions[i];
        let z = c[0].round() as usize;
        let points = json(&srv, &format!("/points?axis=0&index={z}&column=Zdisp"));
        let rows: Vec<u64> = points["points"].as_array().unwrap().iter().map(|p| p["row"].as_u64().unwrap()).collect();
        assert!(rows.contains(&(i as u64)) && !rows.contains(&0), "slice {z}: {rows:?}");
        let (st, body) = get(&srv, &format!("/overlay?axis=0&index={z}&column=Zdisp&mode=status"));
        assert_eq!(st, 200);
        let (_, w, _, px) = decode(&body);
        let (u, v) = (c[1].round() as usize, c[2].round() as usize);
        assert_eq!(px[(u * w + v) * 4 + 3], 255, "grain {i} drawn at its centre");
    }
}
