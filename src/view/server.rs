//! The local HTTP server of `dvc-stream ereg` and `dvc-stream view`: the connection core and
//! access checks both share ([`serve`] with an [`App`]), and ereg's page and API.
//!
//! ereg's requests:
//! - `GET /` — the page (HTML, CSS and script in one file, compiled in; no external asset).
//! - `GET /info` — JSON: shape of the viewed level, bin, the initial t, r and z, the default
//!   contrast.
//! - `GET /slice?picture=1|2|signed|abs|checker&axis=0|1|2&index=N&t=Z,Y,X&r=Z,Y,X&z=Z,Y,X&lo=L&hi=H&squares=S`
//!   — a PNG (`diff` is the older name of `abs`).
//! - `GET /phi?t=…&r=…&z=…` — JSON: Φ's three rows, as the page shows it live.
//! - `POST /save` with `{"t": [Z, Y, X], "r": [Z, Y, X], "z": [Z, Y, X]}` (`z` optional;
//!   `Content-Type: application/json`) — writes the registration TSV and Parquet that `reg`,
//!   `pixel-search` and `ldic` take as `-pf`; answers with their paths.
//! - `POST /save-deformed` with the same body — image 1 warped by Φ, `<prefix>-def.tif`.
//!
//! t is in full-resolution voxels, r a rotation vector in degrees, z the stretch per axis
//! (spam's computePhi, F = R · diag(z)); Φ acts about the image centre. Bad requests (unknown
//! path, a slice out of range, a malformed number, a Φ out of bounds) get 400 with a one-line
//! reason; the server never stops on them.
//!
//! Why the access checks: any web page the user visits can send requests to 127.0.0.1, and
//! `/save` rewrites the file the next `ldic -pf` reads. So every request must carry the random
//! token of the printed URL (`?token=`); a Host that is not a loopback name or an address is
//! refused (DNS rebinding: a name the attacker controls, resolved to 127.0.0.1); an Origin
//! other than the server's own, or a fetch marked cross-site, is refused; a POST takes only
//! `application/json` (which another origin cannot send without a preflight). Each connection
//! is served on its own thread, its request read within a size limit and a deadline, so one
//! slow or stuck client holds nothing but its own thread; answers are bounded too.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use nalgebra::Vector3;

use super::render::{PairView, Picture, SliceRequest};
use super::slices::{comparison_png, Comparison, MAX_SQUARES};
use crate::store::output::{Existing, OutputSet};
use crate::field::parquet::{self, FieldMeta};
use crate::field::{tsv, FieldKind, FieldRow, Layout, PhiField};
use crate::phi::{self, Phi, PhiComponents};

const PAGE: &str = include_str!("page.html");

/// What the server needs besides the volumes.
pub struct EregState {
    pub view: PairView,
    /// Image 1 at full resolution: what "save deformed image 1" warps.
    pub im1_full: crate::store::Volume,
    /// Full-resolution shape (for the saved registration's centre).
    pub full_shape: [usize; 3],
    pub initial: Moves,
    pub contrast: (f32, f32),
    pub out_dir: PathBuf,
    pub prefix: String,
    /// Whether "save deformed image 1" may replace an existing image (`--overwrite`).
    pub overwrite: bool,
    pub params: serde_json::Value,
}

/// The hand-set parts of Φ: a translation (full-resolution voxels), a rotation vector
/// (degrees) and a stretch per axis (spam-ereg's "zoom"), in Z, Y, X order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moves {
    pub t: [f64; 3],
    pub r: [f64; 3],
    pub z: [f64; 3],
}

impl Default for Moves {
    fn default() -> Moves {
        Moves { t: [0.0; 3], r: [0.0; 3], z: [1.0; 3] }
    }
}

/// Φ of a translation (full-resolution voxels), a rotation vector (degrees) and a stretch per
/// axis: spam's computePhi, F = R · diag(z).
pub fn phi_of(t: [f64; 3], r: [f64; 3], z: [f64; 3]) -> Phi {
    phi::compute_phi(&PhiComponents { t: Some(t), r: Some(r), z: Some(z), ..Default::default() })
}

/// The value of one `%XX`-escaped query component (a `+` stays a `+`: it is how a browser
/// writes 1e+308, and the pages send no spaces).
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn query(url: &str) -> (String, HashMap<String, String>) {
    let (path, q) = url.split_once('?').unwrap_or((url, ""));
    let map = q.split('&').filter(|kv| !kv.is_empty()).map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (unescape(k), unescape(v))
    });
    (path.to_string(), map.collect())
}

pub(crate) fn three(q: &HashMap<String, String>, key: &str, default: [f64; 3]) -> Result<[f64; 3]> {
    let Some(v) = q.get(key) else { return Ok(default) };
    let vals: Vec<f64> = v.split(',').map(|x| x.trim().parse::<f64>().map_err(|_| anyhow!("{key}: '{x}' is not a number"))).collect::<Result<_>>()?;
    match vals.as_slice() {
        [a, b, c] if vals.iter().all(|x| x.is_finite()) => Ok([*a, *b, *c]),
        _ => bail!("{key}: three finite numbers Z,Y,X are needed, got '{v}'"),
    }
}

pub(crate) fn number<T: std::str::FromStr>(q: &HashMap<String, String>, key: &str) -> Result<T> {
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
    pub fn bad(e: anyhow::Error) -> Reply {
        Reply { status: 400, content_type: "text/plain; charset=utf-8", body: format!("{e:#}\n").into_bytes() }
    }
    pub fn refused(status: u16, why: String) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: format!("{why}\n").into_bytes() }
    }
    pub fn json(v: serde_json::Value) -> Reply {
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
                "shape": self.view.shape(), "bin": self.view.bin, "t": self.initial.t, "r": self.initial.r, "z": self.initial.z,
                "lo": self.contrast.0, "hi": self.contrast.1, "max_squares": MAX_SQUARES,
            }))),
            ("GET", "/slice") => self.slice(&q),
            ("GET", "/phi") => self.moves_of_query(&q).map(|m| Reply::json(serde_json::json!({"phi": rows_of(&phi_of(m.t, m.r, m.z))}))),
            ("POST", "/save") => self.save(body),
            ("POST", "/save-deformed") => self.save_deformed(body),
            _ => Err(anyhow!("no such request: {method} {path}")),
        };
        r.unwrap_or_else(Reply::bad)
    }

    /// Refuses a translation, rotation or stretch that no registration of these images can
    /// have: a translation beyond twice the largest side moves image 2 off image 1 altogether,
    /// a rotation beyond a full turn is another way to write a smaller one, a stretch outside
    /// 0.1..10 squeezes an image to a few voxels, and huge values (1e308) overflow Φ to NaN.
    fn check_moves(&self, m: &Moves) -> Result<Phi> {
        let t_max = 2.0 * self.full_shape.iter().copied().max().unwrap_or(1) as f64;
        for (name, v, max, unit) in [("t", m.t, t_max, " voxels (twice the largest side)"), ("r", m.r, 360.0, "°")] {
            if let Some(x) = v.iter().find(|x| !(x.is_finite() && x.abs() <= max)) {
                bail!("{name} = {x:?}: each component must be a finite number within ±{max}{unit}");
            }
        }
        if let Some(x) = m.z.iter().find(|x| !(x.is_finite() && (0.1..=10.0).contains(*x))) {
            bail!("z = {x:?}: each stretch must be within 0.1..10");
        }
        let phi = phi_of(m.t, m.r, m.z);
        if phi.iter().any(|x| !x.is_finite()) {
            bail!("Φ of t = {:?}, r = {:?}, z = {:?} is not finite", m.t, m.r, m.z);
        }
        Ok(phi)
    }

    fn moves_of_query(&self, q: &HashMap<String, String>) -> Result<Moves> {
        let m = Moves { t: three(q, "t", [0.0; 3])?, r: three(q, "r", [0.0; 3])?, z: three(q, "z", [1.0; 3])? };
        self.check_moves(&m)?;
        Ok(m)
    }

    fn slice(&self, q: &HashMap<String, String>) -> Result<Reply> {
        let name = q.get("picture").map(String::as_str).unwrap_or("");
        let m = self.moves_of_query(q)?;
        let phi = phi_of(m.t, m.r, m.z);
        let lo: f32 = q.get("lo").map(|_| number(q, "lo")).transpose()?.unwrap_or(self.contrast.0);
        let hi: f32 = q.get("hi").map(|_| number(q, "hi")).transpose()?.unwrap_or(self.contrast.1);
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            bail!("contrast: lo < hi are needed, got {lo} and {hi}");
        }
        let (axis, index): (usize, usize) = (number(q, "axis")?, number(q, "index")?);
        let s = self.view.shape();
        if axis < 3 {
            let (a, b) = super::render::other_axes(axis);
            if s[a] * s[b] > super::viewer::MAX_SLICE_PIXELS {
                bail!("a slice of {} × {} voxels is more than the {} pixels sent: view a pyramid level (--bin)", s[a], s[b], super::viewer::MAX_SLICE_PIXELS);
            }
        }
        let body = match name {
            "1" | "2" => {
                let picture = Picture::parse(name).expect("1 or 2");
                self.view.png(&SliceRequest { picture, axis, index, phi, lo, hi })?
            }
            "diff" | "abs" | "signed" | "checker" => {
                let squares = q.get("squares").map(|_| number::<usize>(q, "squares")).transpose()?;
                // Checked here as well as in the renderer: an index past the end is a 400.
                self.view.values(&SliceRequest { picture: Picture::Image1, axis, index, phi, lo, hi }).map(|_| ())?;
                comparison_png(&self.view, axis, index, &phi, Comparison::parse(name, squares)?, lo, hi)?
            }
            _ => bail!("picture must be 1, 2, diff, abs, signed or checker"),
        };
        Ok(Reply { status: 200, content_type: "image/png", body })
    }

    /// The moves of a saving request's JSON body: `t` and `r` required, `z` optional (1, 1, 1).
    fn moves_of_body(&self, body: &[u8]) -> Result<(Moves, Phi)> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| anyhow!("the body is not JSON ({e})"))?;
        let get = |k: &str| -> Result<[f64; 3]> {
            let a = v[k].as_array().filter(|a| a.len() == 3).ok_or_else(|| anyhow!("'{k}' must be [Z, Y, X]"))?;
            let n: Vec<f64> = a.iter().map(|x| x.as_f64().filter(|x| x.is_finite()).ok_or_else(|| anyhow!("'{k}' holds a value that is not a finite number"))).collect::<Result<_>>()?;
            Ok([n[0], n[1], n[2]])
        };
        let z = if v.get("z").is_some() { get("z")? } else { [1.0; 3] };
        let m = Moves { t: get("t")?, r: get("r")?, z };
        let phi = self.check_moves(&m)?;
        Ok((m, phi))
    }

    fn centre(&self) -> [f64; 3] {
        self.full_shape.map(|n| (n as f64 - 1.0) / 2.0)
    }

    fn save(&self, body: &[u8]) -> Result<Reply> {
        let (m, phi) = self.moves_of_body(body)?;
        let c = self.centre();
        let mut field = PhiField::new(FieldKind::Registration, Layout::Registration);
        field.push(FieldRow::truth(1, Vector3::new(c[0], c[1], c[2]), phi));
        let tsv_path = self.out_dir.join(format!("{}-registration.tsv", self.prefix));
        // Both files of the registration are renamed into place together; Save replaces the
        // registration it saved before, as spam-ereg does.
        let mut outs = OutputSet::new(Existing::Replace);
        tsv::write_field(&outs.file(&tsv_path)?, &field)?;
        let pq_path = self.out_dir.join(format!("{}-registration.parquet", self.prefix));
        let mut params = self.params.clone();
        params["t"] = serde_json::json!(m.t);
        params["r"] = serde_json::json!(m.r);
        params["z"] = serde_json::json!(m.z);
        parquet::write_field(&outs.file(&pq_path)?, &field, &FieldMeta::for_command("ereg", params))?;
        outs.commit()?;
        Ok(Reply::json(serde_json::json!({"tsv": tsv_path, "parquet": pq_path, "phi": rows_of(&phi)})))
    }

    /// Image 1 deformed by Φ at full resolution (spam-ereg's "save deformed image"; material
    /// at x appears at Φ(x), so it lies on image 2 when Φ is right), written as
    /// `<prefix>-def.tif` through the run's output rules: `.partial`, then renamed; an existing
    /// image is kept unless ereg was started with --overwrite.
    fn save_deformed(&self, body: &[u8]) -> Result<Reply> {
        let (_, phi) = self.moves_of_body(body)?;
        let path = self.out_dir.join(format!("{}-def.tif", self.prefix));
        let mut outs = OutputSet::new(Existing::overwrite_if(self.overwrite));
        outs.inputs([self.im1_full.path()]);
        crate::run::deform_image::deform_to(&self.im1_full, &phi, self.centre(), 1, &mut outs, &path, false)?;
        outs.commit()?;
        Ok(Reply::json(serde_json::json!({"image": path, "phi": rows_of(&phi)})))
    }
}

/// The three rows of Φ's upper 3 × 4 block.
fn rows_of(phi: &Phi) -> Vec<Vec<f64>> {
    (0..3).map(|i| (0..4).map(|j| phi[(i, j)]).collect()).collect()
}


/// The largest request head and body accepted: the page's own requests are a few hundred bytes.
const MAX_HEAD: usize = 16 << 10;
const MAX_BODY: usize = 64 << 10;
/// The largest answer sent: a 4096 × 4096 RGBA slice is 64 MiB before compression; a larger
/// picture is refused, and a pyramid level (--bin) shown instead.
const MAX_REPLY: usize = 64 << 20;
/// Time a client has to send its whole request, head and body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; beyond them a new one is answered 503 at once.
const MAX_CONNECTIONS: usize = 64;

/// A random 128-bit token, in hex, from the operating system's generator.
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow!("cannot read /dev/urandom for the access token ({e})"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equality that takes the same time wherever the first difference is, so the token cannot
/// be found a byte at a time by timing answers.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The host name of a Host header (`[::1]:8000` → `::1`, `localhost:8000` → `localhost`);
/// None when the header is malformed.
fn host_name(authority: &str) -> Option<&str> {
    let port_ok = |p: &str| p.parse::<u16>().is_ok();
    if let Some(rest) = authority.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        (after.is_empty() || after.strip_prefix(':').is_some_and(port_ok)).then_some(name)
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) => port_ok(port).then_some(name),
            None => Some(authority),
        }
    }
}

/// What a server answers: `ereg`'s registration page or `view`'s results viewer. The
/// connection handling, the access checks and the limits below are the same for both.
pub trait App: Sync {
    /// The command whose URL the refusals point to ("dvc-stream ereg").
    fn command(&self) -> &'static str;
    /// Answers one request that passed the access checks (method, URL with query, body).
    fn handle(&self, method: &str, url: &str, body: &[u8]) -> Reply;
}

impl App for EregState {
    fn command(&self) -> &'static str {
        "dvc-stream ereg"
    }
    fn handle(&self, method: &str, url: &str, body: &[u8]) -> Reply {
        EregState::handle(self, method, url, body)
    }
}

/// Who may talk to the server.
struct Access {
    command: &'static str,
    token: String,
    /// The address listened on: when it is not loopback (`--bind`), a Host that is this
    /// address (any address, for 0.0.0.0) is accepted too.
    bound_ip: IpAddr,
}

/// The parts of a request the server looks at.
struct Head {
    method: String,
    target: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    /// Bytes read past the head: the start of the body.
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Access {
    /// Whether a browser that sends this Host reached the server by a name DNS rebinding
    /// cannot give it: a loopback name or address, or the address listened on. Any port: an
    /// `ssh -L 8000:127.0.0.1:PORT` tunnel changes it, and a rebound name is refused anyway.
    fn host_allowed(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else { return false };
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip == self.bound_ip || self.bound_ip.is_unspecified())
    }

    /// The reason to refuse a request (403), or None.
    fn refusal(&self, head: &Head, path: &str, q: &HashMap<String, String>) -> Option<String> {
        let Some(host) = head.header("host") else { return Some("a Host header is required".into()) };
        if !self.host_allowed(host) {
            return Some(format!("Host '{host}' is not this machine's loopback address: open the URL that {} printed", self.command));
        }
        if let Some(origin) = head.header("origin") {
            if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
                return Some(format!("requests from another web page (Origin '{origin}') are refused"));
            }
        }
        // Browsers mark a request by which site made it; the page itself loads from a link or
        // the address bar ("none"), its requests are "same-origin".
        if let Some(site) = head.header("sec-fetch-site") {
            if path != "/" && site != "same-origin" && site != "none" {
                return Some(format!("requests from another web page (Sec-Fetch-Site '{site}') are refused"));
            }
        }
        match q.get("token") {
            Some(t) if same_secret(t, &self.token) => None,
            Some(_) => Some(format!("wrong access token: open the URL that {} printed", self.command)),
            None => Some(format!("no access token: open the URL that {} printed (…/?token=…)", self.command)),
        }
    }
}

/// Why a request got no answer from the API.
enum Unserved {
    /// The client closed the connection, or sent nothing in time.
    Gone,
    /// An answer of this status and one-line reason.
    Refused(u16, String),
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One read that returns by `deadline`.
fn read_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    stream.read(buf)
}

fn late() -> Unserved {
    Unserved::Refused(408, format!("the request was not received within {} s", REQUEST_TIMEOUT.as_secs()))
}

fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Head, Unserved> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match read_by(stream, &mut chunk, deadline) {
            Ok(0) => return Err(Unserved::Gone),
            Ok(n) => n,
            // A connection opened ahead of time and never used is simply closed.
            Err(e) if timed_out(&e) && !buf.is_empty() => return Err(late()),
            Err(_) => return Err(Unserved::Gone),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = Head {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    headers: req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_string())).collect(),
                    rest: buf[len..].to_vec(),
                };
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(Unserved::Refused(431, format!("the request head is larger than {} KiB or has too many headers", MAX_HEAD >> 10)))
            }
            Err(e) => return Err(Unserved::Refused(400, format!("malformed request ({e})"))),
        }
    }
}

fn read_body(stream: &mut TcpStream, head: Head, deadline: Instant) -> Result<Vec<u8>, Unserved> {
    if head.header("transfer-encoding").is_some() {
        return Err(Unserved::Refused(411, "a request body needs a Content-Length (chunked bodies are not accepted)".into()));
    }
    let len = match head.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| Unserved::Refused(400, format!("Content-Length '{v}' is not a number")))?,
    };
    if len > MAX_BODY {
        return Err(Unserved::Refused(413, format!("a request body of {len} bytes is more than the {} KiB accepted", MAX_BODY >> 10)));
    }
    let mut body = head.rest;
    let mut chunk = [0u8; 4096];
    while body.len() < len {
        match read_by(stream, &mut chunk, deadline) {
            Ok(0) => return Err(Unserved::Gone),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if timed_out(&e) => return Err(late()),
            Err(_) => return Err(Unserved::Gone),
        }
    }
    body.truncate(len);
    Ok(body)
}

/// Reads one request from `stream`, checks who sent it, and answers it through `state`.
fn exchange(app: &dyn App, access: &Access, saving: &Mutex<()>, stream: &mut TcpStream) -> Result<Reply, Unserved> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let head = read_head(stream, deadline)?;
    let (path, q) = query(&head.target);
    if let Some(why) = access.refusal(&head, &path, &q) {
        return Err(Unserved::Refused(403, why));
    }
    // Every POST writes files: it takes only JSON, which another origin cannot send without a
    // preflight that the Origin check refuses.
    let is_save = head.method == "POST";
    if is_save && !head.header("content-type").is_some_and(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))) {
        return Err(Unserved::Refused(415, format!("{path} takes Content-Type: application/json")));
    }
    let (method, target) = (head.method.clone(), head.target.clone());
    let body = read_body(stream, head, deadline)?;
    // Two saves at once would interleave their writes of the same files.
    let _one_save = is_save.then(|| saving.lock().unwrap_or_else(|e| e.into_inner()));
    let reply = app.handle(&method, &target, &body);
    if reply.body.len() > MAX_REPLY {
        return Err(Unserved::Refused(500, format!("the answer to {path} would be {} MiB, more than the {} MiB sent: view a pyramid level (--bin)", reply.body.len() >> 20, MAX_REPLY >> 20)));
    }
    Ok(reply)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_reply(stream: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    // no-store: slices and answers depend on the token-bearing URL only, and must not be kept;
    // frame-ancestors: no other page may show this one in a frame and click Save through it.
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nContent-Security-Policy: frame-ancestors 'none'\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

/// Answers `reply`, then closes so that the client reads it: closing with unread request
/// bytes pending makes the system reset the connection, and the answer can be lost.
fn answer_and_close(stream: &mut TcpStream, reply: &Reply) {
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let _ = write_reply(stream, reply);
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 2 * MAX_BODY {
        match read_by(stream, &mut sink, deadline) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn serve_connection(app: &dyn App, access: &Access, saving: &Mutex<()>, mut stream: TcpStream) {
    let reply = match exchange(app, access, saving, &mut stream) {
        Ok(reply) => reply,
        Err(Unserved::Gone) => return,
        Err(Unserved::Refused(status, why)) => Reply::refused(status, why),
    };
    answer_and_close(&mut stream, &reply);
}

/// Serves `app` at `addr` (e.g. 127.0.0.1:0) until the process ends, one thread per
/// connection; `ready` gets the URL to open (with the access token) and the address listened
/// on, once the socket listens.
pub fn serve(app: &dyn App, addr: &str, ready: impl FnOnce(&str, SocketAddr)) -> Result<()> {
    let listener = TcpListener::bind(addr).map_err(|e| anyhow!("cannot listen on {addr} ({e})"))?;
    let bound = listener.local_addr().map_err(|e| anyhow!("{addr}: no local address ({e})"))?;
    let access = Access { command: app.command(), token: new_token()?, bound_ip: bound.ip() };
    ready(&format!("http://{bound}/?token={}", access.token), bound);
    let open = AtomicUsize::new(0);
    let saving = Mutex::new(());
    std::thread::scope(|scope| {
        for stream in listener.incoming() {
            let mut stream = match stream {
                Ok(s) => s,
                // Out of file descriptors, or a client gone before accept: wait, go on.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::SeqCst);
                // Answered from the accepting thread: no lingering here, which would hold up accepting.
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = write_reply(&mut stream, &Reply::refused(503, format!("more than {MAX_CONNECTIONS} connections at once")));
                continue;
            }
            let (access, saving, open) = (&access, &saving, &open);
            let spawned = std::thread::Builder::new().name("ereg-http".into()).spawn_scoped(scope, move || {
                serve_connection(app, access, saving, stream);
                open.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                open.fetch_sub(1, Ordering::SeqCst);
            }
        }
    });
    Ok(())
}
