//! `dvc-stream ereg IM1 IM2 [-pf GUESS]`: eye registration (spam-ereg) as a local web page:
//! slices of both images and their comparison (signed or absolute difference, checkerboard)
//! under the Φ set by hand (translation, rotation, stretch per axis, in steps as spam-ereg's
//! buttons), a Save button that writes the registration TSV and Parquet for `-pf`, and
//! "save deformed image 1".

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nalgebra::Vector3;

use super::output_names::{open_matching, out_dir, read_registration, stem};
use super::ReadOpts;
use crate::phi;
use crate::store::Volume;
use crate::view::render::{default_contrast, PairView};
use crate::view::server::{serve, EregState, Moves};

#[derive(Args, Debug)]
pub struct EregArgs {
    /// Reference image (TIFF or Zarr store).
    pub im1: PathBuf,
    /// Image moved by hand onto the reference.
    pub im2: PathBuf,
    /// Start from this registration [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: Option<PathBuf>,
    /// Show a pyramid level (binning 2, 4, …) for speed; translations stay in full-resolution voxels [spam: -bin].
    #[arg(long, default_value_t = 1)]
    pub bin: usize,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on. The default serves this machine only; reach it from elsewhere
    /// through an SSH tunnel (`ssh -L 8000:127.0.0.1:PORT host`) rather than opening it
    /// (another address works, with a warning: the token then crosses the network in clear).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Let "save deformed image 1" replace an image it saved before (it refuses otherwise).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub out: super::OutputOpts,
    #[command(flatten)]
    pub read: ReadOpts,
}

/// The URL is the output, on stdout; the server runs until stopped.
pub fn run(a: EregArgs) -> Result<super::Summary> {
    let cache = a.read.cache()?;
    let im1 = Volume::open(&a.im1, cache.clone())?;
    let im2 = open_matching(&a.im2, &cache, im1.shape(), "image")?;
    let view = PairView::new(&im1, &im2, a.bin)?;
    let initial = match &a.phi_file {
        Some(p) => {
            let f = read_registration(p, 1.0)?;
            let s = im1.shape();
            let c = Vector3::new((s[0] as f64 - 1.0) / 2.0, (s[1] as f64 - 1.0) / 2.0, (s[2] as f64 - 1.0) / 2.0);
            // The file's Φ about its own centre, expressed about this image's centre; the
            // stretches are the diagonal of its right stretch tensor (shears are dropped, as
            // spam-ereg drops them).
            let (t, d) = phi::decompose_phi(&f.phis[0], &f.positions[0], &c);
            if !(t.iter().all(|v| v.is_finite()) && d.r.iter().chain(d.z.iter()).all(|v| v.is_finite())) {
                anyhow::bail!("{}: its Φ is not an invertible registration", p.display());
            }
            Moves { t: [t[0], t[1], t[2]], r: [d.r[0], d.r[1], d.r[2]], z: [d.z[0], d.z[1], d.z[2]] }
        }
        None => Moves::default(),
    };
    let contrast = default_contrast(&view)?;
    let params = serde_json::json!({"im1": a.im1, "im2": a.im2, "phi_file": a.phi_file, "bin": a.bin});
    let state = EregState {
        view,
        im1_full: im1.clone(),
        full_shape: im1.shape(),
        initial,
        contrast,
        overwrite: a.overwrite,
        out_dir: out_dir(&a.out.out_dir, &a.im1)?,
        prefix: a.out.prefix.clone().unwrap_or_else(|| format!("{}-{}-ereg", stem(&a.im1), stem(&a.im2))),
        params,
    };
    serve(&state, &format!("{}:{}", a.bind, a.port), |url, bound| {
        if !bound.ip().is_loopback() {
            eprintln!(
                "ereg: WARNING: listening on {bound}, not on this machine only: anyone who can reach it and learns the URL \
                 (it travels unencrypted) can read both images and overwrite the saved registration; prefer an SSH tunnel"
            );
        }
        println!("ereg: open {url} in a browser (Ctrl-C to stop)");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(None)
}
