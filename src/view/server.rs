//! The HTTP side of `dvc-stream ereg`: one page, and a small API it calls.
//!
//! - `GET /` — the page (HTML, CSS and script in one file, compiled in; no external asset).
//! - `GET /info` — JSON: shape of the viewed level, bin, the initial t and r, the default
//!   contrast.
//! - `GET /slice?picture=1|2|diff&axis=0|1|2&index=N&t=Z,Y,X&r=Z,Y,X&lo=L&hi=H` — a PNG.
//! - `POST /save` with `{"t": [Z, Y, X], "r": [Z, Y, X]}` — writes the registration TSV and
//!   Parquet that `reg`, `pixel-search` and `ldic` take as `-pf`; answers with their paths.
//!
//! t is in full-resolution voxels, r a rotation vector in degrees (spam's computePhi), Φ acts
//! about the image centre. Bad requests (unknown path, a slice out of range, a malformed
//! number) get 400 with a one-line reason; the server never stops on them.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use nalgebra::Vector3;

use super::render::{PairView, Picture, SliceRequest};
use crate::field::parquet::{self, FieldMeta};
use crate::field::{tsv, FieldKind, FieldRow, Layout, PhiField};
use crate::phi::{self, Phi, PhiComponents};

const PAGE: &str = include_str!("page.html");

/// What the server needs besides the volumes.
pub struct EregState {
    pub view: PairView,
    /// Full-resolution shape (for the saved registration's centre).
    pub full_shape: [usize; 3],
    pub initial_t: [f64; 3],
    pub initial_r: [f64; 3],
    pub contrast: (f32, f32),
    pub out_dir: PathBuf,
    pub prefix: String,
    pub params: serde_json::Value,
}

/// Φ of a translation (full-resolution voxels) and a rotation vector (degrees).
pub fn phi_of(t: [f64; 3], r: [f64; 3]) -> Phi {
    phi::compute_phi(&PhiComponents { t: Some(t), r: Some(r), ..Default::default() })
}

fn query(url: &str) -> (String, HashMap<String, String>) {
    let (path, q) = url.split_once('?').unwrap_or((url, ""));
    let map = q.split('&').filter(|kv| !kv.is_empty()).map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k.to_string(), v.replace("%2C", ",").replace("%2c", ","))
    });
    (path.to_string(), map.collect())
}

fn three(q: &HashMap<String, String>, key: &str, default: [f64; 3]) -> Result<[f64; 3]> {
    let Some(v) = q.get(key) else { return Ok(default) };
    let vals: Vec<f64> = v.split(',').map(|x| x.trim().parse::<f64>().map_err(|_| anyhow!("{key}: '{x}' is not a number"))).collect::<Result<_>>()?;
    match vals.as_slice() {
        [a, b, c] if vals.iter().all(|x| x.is_finite()) => Ok([*a, *b, *c]),
        _ => bail!("{key}: three finite numbers Z,Y,X are needed, got '{v}'"),
    }
}

fn number<T: std::str::FromStr>(q: &HashMap<String, String>, key: &str) -> Result<T> {
    let v = q.get(key).ok_or_else(|| anyhow!("{key} is missing"))?;
    v.parse().map_err(|_| anyhow!("{key}: '{v}' is not a valid value"))
}

/// One answer: status, content type, body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    fn bad(e: anyhow::Error) -> Reply {
        Reply { status: 400, content_type: "text/plain; charset=utf-8", body: format!("{e:#}\n").into_bytes() }
    }
    fn json(v: serde_json::Value) -> Reply {
        Reply { status: 200, content_type: "application/json", body: v.to_string().into_bytes() }
    }
}

impl EregState {
    /// Answers one request (method, URL with query, body).
    pub fn handle(&self, method: &str, url: &str, body: &[u8]) -> Reply {
        let (path, q) = query(url);
        let r = match (method, path.as_str()) {
            ("GET", "/") => Ok(Reply { status: 200, content_type: "text/html; charset=utf-8", body: PAGE.as_bytes().to_vec() }),
            ("GET", "/info") => Ok(Reply::json(serde_json::json!({
                "shape": self.view.shape(), "bin": self.view.bin, "t": self.initial_t, "r": self.initial_r,
                "lo": self.contrast.0, "hi": self.contrast.1,
            }))),
            ("GET", "/slice") => self.slice(&q),
            ("POST", "/save") => self.save(body),
            _ => Err(anyhow!("no such request: {method} {path}")),
        };
        r.unwrap_or_else(Reply::bad)
    }

    fn slice(&self, q: &HashMap<String, String>) -> Result<Reply> {
        let picture = q.get("picture").and_then(|p| Picture::parse(p)).ok_or_else(|| anyhow!("picture must be 1, 2 or diff"))?;
        let t = three(q, "t", [0.0; 3])?;
        let r = three(q, "r", [0.0; 3])?;
        let lo: f32 = q.get("lo").map(|_| number(q, "lo")).transpose()?.unwrap_or(self.contrast.0);
        let hi: f32 = q.get("hi").map(|_| number(q, "hi")).transpose()?.unwrap_or(self.contrast.1);
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            bail!("contrast: lo < hi are needed, got {lo} and {hi}");
        }
        let req = SliceRequest { picture, axis: number(q, "axis")?, index: number(q, "index")?, phi: phi_of(t, r), lo, hi };
        Ok(Reply { status: 200, content_type: "image/png", body: self.view.png(&req)? })
    }

    fn save(&self, body: &[u8]) -> Result<Reply> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| anyhow!("the body is not JSON ({e})"))?;
        let get = |k: &str| -> Result<[f64; 3]> {
            let a = v[k].as_array().filter(|a| a.len() == 3).ok_or_else(|| anyhow!("'{k}' must be [Z, Y, X]"))?;
            let n: Vec<f64> = a.iter().map(|x| x.as_f64().filter(|x| x.is_finite()).ok_or_else(|| anyhow!("'{k}' holds a value that is not a finite number"))).collect::<Result<_>>()?;
            Ok([n[0], n[1], n[2]])
        };
        let (t, r) = (get("t")?, get("r")?);
        let phi = phi_of(t, r);
        let c = self.full_shape.map(|n| (n as f64 - 1.0) / 2.0);
        let mut field = PhiField::new(FieldKind::Registration, Layout::Registration);
        field.push(FieldRow::truth(1, Vector3::new(c[0], c[1], c[2]), phi));
        let tsv_path = self.out_dir.join(format!("{}-registration.tsv", self.prefix));
        // Both files of the registration are renamed into place together.
        let mut outs = crate::store::output::OutputSet::new(crate::store::output::Existing::Replace);
        tsv::write_field(&outs.file(&tsv_path)?, &field)?;
        let pq_path = self.out_dir.join(format!("{}-registration.parquet", self.prefix));
        let mut params = self.params.clone();
        params["t"] = serde_json::json!(t);
        params["r"] = serde_json::json!(r);
        parquet::write_field(&outs.file(&pq_path)?, &field, &FieldMeta::for_command("ereg", params))?;
        outs.commit()?;
        Ok(Reply::json(serde_json::json!({"tsv": tsv_path, "parquet": pq_path, "phi": (0..3).map(|i| (0..4).map(|j| phi[(i, j)]).collect::<Vec<_>>()).collect::<Vec<_>>()})))
    }
}

/// Serves `state` at `addr` (e.g. 127.0.0.1:0) until the process ends; `ready` gets the URL
/// once the socket listens.
pub fn serve(state: &EregState, addr: &str, ready: impl FnOnce(&str)) -> Result<()> {
    let server = tiny_http::Server::http(addr).map_err(|e| anyhow!("cannot listen on {addr} ({e})"))?;
    let bound = server.server_addr().to_ip().ok_or_else(|| anyhow!("{addr}: not an IP address"))?;
    ready(&format!("http://{bound}/"));
    for mut request in server.incoming_requests() {
        let mut body = Vec::new();
        let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
        let method = request.method().as_str().to_string();
        let reply = state.handle(&method, request.url(), &body);
        let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes()).expect("a valid header");
        let response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status).with_header(header);
        // A client that went away is not the server's problem.
        let _ = request.respond(response);
    }
    Ok(())
}
