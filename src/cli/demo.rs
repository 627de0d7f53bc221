//! `dvc-stream demo`: the first command to run. Makes a synthetic pair in a temporary
//! folder, converts it with tiff2zarr's engine, runs the pipeline and compares with the truth.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::distribute::RunOptions;
use crate::kernels::local::LocalOptions;
use crate::kernels::register::RegisterOptions;
use crate::phi::ApplyF;
use crate::run::ldic::{GuessSource, LdicFiles, LdicJob, LdicPair};
use crate::run::reg::RegJob;
use crate::store::cache::{default_cache_bytes, ChunkCache};
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
}

/// A step's line on stdout, unless `--quiet`.
macro_rules! step {
    ($quiet:expr, $($arg:tt)*) => {
        if !$quiet {
            println!($($arg)*);
        }
    };
}

pub fn run(a: DemoArgs) -> Result<super::Summary> {
    let quiet = crate::say::quiet();
    // Outputs are kept so that users can look at them afterwards.
    let dir = match &a.out_dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new().prefix("dvc-stream-demo-").tempdir()?.keep(),
    };
    step!(quiet, "dvc-stream demo: working in {}", dir.display());
    let (t1, t2) = super::synth::write_pair(&synth_args(&dir, a.shape))?;
    step!(quiet, "1. synth: wrote a {}³ uint16 pair as TIFF: {} {}", a.shape, t1.display(), t2.display());
    let stores = to_zarr(&[&t1, &t2], quiet)?;
    register(&stores, &dir, quiet)?;
    let (converged, total, median) = local_dvc(&stores, &dir, quiet)?;
    step!(quiet, "   outputs in {}: demo-ldic.parquet (pandas, DuckDB), demo-ldic.tsv (spam), truth.tsv", dir.display());
    Ok(Some(format!("demo: {converged} of {total} points converged, |u − truth| median {median:.4} voxel; outputs in {}", dir.display())))
}

/// The demo's pair: a speckle cube translated, rotated and zoomed a little, with its truth.
fn synth_args(dir: &Path, shape: usize) -> super::synth::SynthArgs {
    super::synth::SynthArgs {
        out_dir: dir.to_path_buf(),
        shape,
        shape3: None,
        two_d: false,
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
        grains: None,
        grain_radius: vec![6.0, 12.0],
        grain_shape: "ellipsoid".into(),
        grain_fill: "speckle".into(),
        grain_max_translation: 5.0,
        grain_max_rotation: 10.0,
        grain_gap: crate::synth::grains::GAP,
        overwrite: true,
    }
}

/// Step 2: each TIFF converted to an OME-Zarr store with its pyramid (tiff2zarr's engine).
fn to_zarr(tiffs: &[&Path], quiet: bool) -> Result<Vec<PathBuf>> {
    let opts = ConvertOptions {
        layout: ArrayLayout { chunk: [64; 3], codec: Codec::Zstd(1), shard: None },
        levels: None,
        voxel_size: None,
        labels: false,
        overwrite: true,
        progress: !quiet,
    };
    let mut stores = Vec::new();
    for t in tiffs {
        let r = tiff_to_zarr(t, &t.with_extension("zarr"), &opts)?;
        step!(quiet, "2. tiff2zarr: {} -> {} ({} levels, {:.1} MB/s)", t.display(), r.output.display(), r.levels, r.bytes as f64 / 1e6 / r.seconds.max(1e-9));
        stores.push(r.output);
    }
    Ok(stores)
}

/// Step 3: the registration from the stored pyramid (bins 2 → 1), against the truth.
fn register(stores: &[PathBuf], dir: &Path, quiet: bool) -> Result<()> {
    let t0 = std::time::Instant::now();
    let mut job = RegJob::new(&stores[0], &stores[1], dir, "demo");
    job.options.bin_start = 2;
    let cache = ChunkCache::new(default_cache_bytes());
    let reg = crate::run::reg::run(&job, &cache, false).map_err(|e| anyhow::anyhow!("registration failed: {e:#}"))?;
    let truth = crate::field::PhiField::read(&dir.join("truth-registration.tsv"))?;
    let dt = (crate::phi::translation(&reg.result.phi) - crate::phi::translation(&truth.phis[0])).norm();
    let df = (crate::phi::f_block(&reg.result.phi) - crate::phi::f_block(&truth.phis[0])).abs().max();
    step!(
        quiet,
        "3. reg: returnStatus {} in {:.2} s; |t − truth| = {dt:.4} voxel, max |F − truth| = {df:.1e}",
        reg.result.return_status,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Step 4: local DVC guided by the registration (hws 8, ns 16, cubic), run as a resolved job
/// through the library; returns the points converged, the points, and the median error
/// against the truth.
fn local_dvc(stores: &[PathBuf], dir: &Path, quiet: bool) -> Result<(usize, usize, f64)> {
    let t0 = std::time::Instant::now();
    let cache = ChunkCache::new(default_cache_bytes());
    let shape = crate::store::Volume::open(&stores[0], cache.clone())?.shape();
    let job = ldic_job(stores, dir, shape)?;
    let ctx = crate::run::pipeline::Context { cache: cache.clone(), threads: rayon::current_num_threads(), progress: !quiet };
    crate::run::ldic::run(&job, &ctx).map_err(|e| anyhow::anyhow!("ldic failed: {e:#}"))?;
    if !quiet {
        eprintln!("{}", cache.stats());
    }
    let field = crate::field::PhiField::read(&dir.join("demo-ldic.parquet"))?;
    let truth = crate::field::PhiField::read(&dir.join("truth.parquet"))?;
    let mut errs: Vec<f64> = (0..field.len())
        .filter(|&i| field.return_status[i] == crate::field::Status::Converged)
        .map(|i| (crate::phi::translation(&field.phis[i]) - crate::phi::translation(&truth.phis[i])).norm())
        .collect();
    errs.sort_by(f64::total_cmp);
    let median = errs.get(errs.len() / 2).copied().unwrap_or(f64::NAN);
    step!(
        quiet,
        "4. ldic (hws 8, ns 16, cubic): {} of {} points converged in {:.2} s; |u − truth| median {median:.4}, max {:.4} voxel",
        errs.len(),
        field.len(),
        t0.elapsed().as_secs_f64(),
        errs.last().copied().unwrap_or(f64::NAN)
    );
    Ok((errs.len(), field.len(), median))
}

/// The demo's ldic job: a 16-voxel grid of 8-voxel half windows, each node's guess the
/// registration's Φ at the node, spam's solver with the cubic interpolation.
fn ldic_job(stores: &[PathBuf], dir: &Path, shape: [usize; 3]) -> Result<LdicJob> {
    let guess = dir.join("demo-registration.tsv");
    let plan = super::grid_plan::plan(&Some(guess.clone()), 1.0, ApplyF::All, Some([16; 3]), shape, false)?;
    let register = RegisterOptions { margin: Some([1; 3]), max_iterations: 50, delta_phi_min: 0.001, order: 3, ..RegisterOptions::default() };
    let options = LocalOptions { hws: [8; 3], margin: [3; 3], mask_coverage: 0.5, grey_low: f64::NEG_INFINITY, grey_high: f64::INFINITY, register };
    super::grid_plan::check_windows(options.hws, options.margin, shape)?;
    Ok(LdicJob {
        pairs: vec![LdicPair { im1: stores[0].clone(), im2: stores[1].clone(), dir: dir.to_path_buf(), prefix: "demo".into() }],
        mask1: None,
        guess: GuessSource { phi_file: Some(guess), bin_ratio: 1.0, apply_f: ApplyF::All },
        nodes: plan.nodes,
        guesses: plan.guesses,
        dims: plan.dims,
        spacing: plan.spacing,
        skip: false,
        kept: None,
        options,
        files: LdicFiles { tsv: true, vtk: false, tiff: false, png: false },
        run: RunOptions { shard: None, resume: false, checkpoint_every: std::time::Duration::from_secs(30) },
    })
}
