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
    // 3. Multiscale registration from the stored pyramid, compared with the truth.
    let cache = crate::store::ChunkCache::new(512 << 20);
    let im1 = crate::store::Volume::open(&stores[0], cache.clone())?;
    let im2 = crate::store::Volume::open(&stores[1], cache.clone())?;
    let o = crate::kernels::register::MultiscaleOptions {
        bin_start: 2,
        bin_stop: 1,
        margin: None,
        single: crate::kernels::register::RegisterOptions::default(),
    };
    let t0 = std::time::Instant::now();
    let r = crate::kernels::register::register_multiscale(&im1, &im2, None, None, 1.0, &o)?;
    let truth = crate::field::PhiField::read(&dir.join("truth-registration.tsv"))?;
    let (dt, df) = (
        (crate::phi::translation(&r.phi) - crate::phi::translation(&truth.phis[0])).norm(),
        (crate::phi::f_block(&r.phi) - crate::phi::f_block(&truth.phis[0])).abs().max(),
    );
    println!(
        "3. reg (bin 2 → 1, {:.2} s): returnStatus {}, |t − truth| = {:.4} voxel, max |F − truth| = {:.2e}",
        t0.elapsed().as_secs_f64(),
        r.return_status,
        dt,
        df
    );
    println!("   truth: {} (true Φ at grid nodes), {}", dir.join("truth.tsv").display(), dir.join("truth-registration.tsv").display());
    println!("   local DVC (ldic) joins this demo with its issue");
    Ok(())
}
