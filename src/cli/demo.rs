//! `dvc-stream demo`: the first command to run. Makes a synthetic pair in a temporary
//! folder, converts it with tiff2zarr's engine, runs the pipeline and compares with the truth.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::store::convert::{tiff_to_zarr, ConvertOptions};
use crate::store::zarr::{ArrayLayout, Codec};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the outputs in this folder instead of a temporary one.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Cube size of the synthetic pair.
    #[arg(long, default_value_t = 128)]
    pub shape: usize,
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(a: DemoArgs) -> Result<()> {
    // Outputs are kept so that users can look at them afterwards.
    let dir = match &a.out_dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new().prefix("dvc-stream-demo-").tempdir()?.keep(),
    };
    println!("dvc-stream demo: working in {}", dir.display());
    let synth = super::synth::SynthArgs {
        out_dir: dir.clone(),
        shape: a.shape,
        shape3: None,
        seed: 1,
        translate: Some(vec![1.3, -2.7, 0.4]),
        rotate: Some(vec![2.0, 1.0, -1.5]),
        zoom: Some(vec![1.01, 1.01, 1.01]),
        fields: vec![],
        noise: 0.0,
        speckle: 3.0,
        dtype: "uint16".into(),
        format: "tiff".into(),
        chunk: 64,
        codec: "zstd:1".into(),
        levels: None,
        truth_ns: 16,
        overwrite: true,
        quiet: a.quiet,
    };
    let (t1, t2) = super::synth::write_pair(&synth)?;
    println!("1. synth: wrote a {}³ uint16 pair as TIFF: {} {}", a.shape, t1.display(), t2.display());
    let opts = ConvertOptions {
        layout: ArrayLayout { chunk: [64; 3], codec: Codec::Zstd(1), shard: None },
        levels: None,
        voxel_size: [1.0; 3],
        unit: "pixel".into(),
        overwrite: true,
        progress: !a.quiet,
    };
    let mut stores = Vec::new();
    for t in [&t1, &t2] {
        let out = t.with_extension("zarr");
        let r = tiff_to_zarr(t, &out, &opts)?;
        println!(
            "2. tiff2zarr: {} -> {} ({} levels, {:.1} MB/s)",
            t.display(),
            r.output.display(),
            r.levels,
            r.bytes as f64 / 1e6 / r.seconds.max(1e-9)
        );
        stores.push(r.output);
    }
    println!("3. truth: {} (true Φ at grid nodes), {}", dir.join("truth.tsv").display(), dir.join("truth-registration.tsv").display());
    println!("   (registration and local DVC arrive with their issues; this demo grows with them)");
    Ok(())
}
