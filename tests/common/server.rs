//! A running `dvc-stream ereg` or `view` for the server tests: started with its arguments, the
//! address and token read from the URL it prints, stopped when dropped; and raw HTTP exchanges.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// A running server, stopped when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The child process (to check it is still running).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Starts `dvc-stream COMMAND ARGS…` and reads the URL it prints: a loopback address and a
/// 128-bit token in hex.
pub fn start(command: &str, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvc-stream")).arg(command).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let mut srv = Server { child, addr: String::new(), token: String::new() }; // stopped if what follows fails
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no URL in '{line}'"));
    let (addr, token) = url.trim_start_matches("http://").split_once("/?token=").unwrap_or_else(|| panic!("no token in '{url}'"));
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()), "a 128-bit token in hex: {token}");
    (srv.addr, srv.token) = (addr.to_string(), token.to_string());
    srv
}

/// (status, body) of the answer to `text` sent as it is.
pub fn exchange(addr: &str, text: &str) -> (u16, Vec<u8>) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(text.as_bytes()).unwrap();
    answer(&mut c)
}

/// (status, body) of the answer read to the end from `c`.
pub fn answer(c: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no header in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}
