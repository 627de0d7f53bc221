//! `zarr2tiff STORE OUT.tif [--level N]`: one level of a Zarr store as a multi-page TIFF
//! (BigTIFF when large) for Fiji, written slab by slab in the stored type.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use dvc_stream::store::convert::zarr_to_tiff;

#[derive(Parser, Debug)]
#[command(name = "zarr2tiff", version, about = "Export one level of a Zarr store as a multi-page TIFF")]
struct Args {
    /// Zarr array or OME-Zarr store.
    store: PathBuf,
    /// Output TIFF (written as OUT.partial, renamed when complete).
    output: PathBuf,
    /// Pyramid level (0 = full resolution).
    #[arg(long, default_value_t = 0)]
    level: usize,
    /// Replace an existing output.
    #[arg(long)]
    overwrite: bool,
    /// No progress: only errors and the final one-line summary, on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn run(a: Args) -> Result<()> {
    let r = zarr_to_tiff(&a.store, &a.output, a.level, a.overwrite, !a.quiet)?;
    // The one-line summary, with --quiet too.
    eprintln!("zarr2tiff: {}: {}×{}×{} {}", r.output.display(), r.shape[0], r.shape[1], r.shape[2], r.dtype);
    Ok(())
}

fn main() {
    dvc_stream::init_process();
    if let Err(e) = run(Args::parse()) {
        eprintln!("zarr2tiff: error: {}", dvc_stream::cli::one_line(&e));
        std::process::exit(2);
    }
}
