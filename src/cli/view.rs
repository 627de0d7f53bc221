//! `dvc-stream view TABLE IM1 [IM2]`: a run's table (a Φ field from ldic, pixel-search or
//! propagate, a strain table, a ddic labels table) over its images in the browser, served on
//! this machine by the same server as `ereg` (see `view::viewer` for what the page can ask).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::ReadOpts;
use crate::view::server::serve;
use crate::view::viewer;

#[derive(Args, Debug)]
pub struct ViewArgs {
    /// The table: Parquet or spam TSV, with Zpos, Ypos, Xpos columns.
    pub table: PathBuf,
    /// The reference image the table was measured on (TIFF or Zarr store).
    pub im1: PathBuf,
    /// The deformed image: with it, the residual |im1 − im2(Φx)| of the field can be shown.
    pub im2: Option<PathBuf>,
    /// Show a pyramid level (binning 2, 4, …); positions stay in full-resolution voxels.
    #[arg(long, default_value_t = 1, value_parser = super::values::power_of_two)]
    pub bin: usize,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on. The default serves this machine only; reach it from elsewhere
    /// through an SSH tunnel (`ssh -L 8000:127.0.0.1:PORT host`).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    #[command(flatten)]
    pub read: ReadOpts,
}

/// The URL is the output, on stdout; the server runs until stopped.
pub fn run(a: ViewArgs) -> Result<super::Summary> {
    let cache = a.read.cache()?;
    let state = viewer::open(&a.table, &a.im1, a.im2.as_deref(), a.bin, &cache)?;
    serve(&state, &format!("{}:{}", a.bind, a.port), |url, bound| {
        if !bound.ip().is_loopback() {
            eprintln!(
                "view: WARNING: listening on {bound}, not on this machine only: anyone who can reach it and learns the URL \
                 (it travels unencrypted) can read the images and the table; prefer an SSH tunnel"
            );
        }
        println!("view: open {url} in a browser (Ctrl-C to stop)");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(None)
}
