//! `tiff2zarr INPUT OUTPUT.zarr`: a 3D TIFF/BigTIFF or a folder of 2D slices to a chunked,
//! compressed OME-Zarr 0.5 store with a multiscale pyramid. The streaming engine lives in
//! `dvc_stream::store::convert`; this file only parses the command line.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use dvc_stream::store::convert::{tiff_to_zarr, ConvertOptions};
use dvc_stream::store::voxel_size::{ngff_unit, VoxelSize};
use dvc_stream::store::zarr::{ArrayLayout, Codec};

#[derive(Parser, Debug)]
#[command(name = "tiff2zarr", version, about = "Convert a TIFF stack (or a folder of slices) to an OME-Zarr store with a pyramid")]
struct Args {
    /// 3D TIFF/BigTIFF, or a folder of 2D TIFF slices (natural order: 2 before 10).
    input: PathBuf,
    /// Output store (written as OUTPUT.partial, renamed when complete).
    output: PathBuf,
    /// Cubic chunk size.
    #[arg(long, default_value_t = 64)]
    chunk: usize,
    /// Chunk shape Z Y X (overrides --chunk).
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"])]
    chunk3: Option<Vec<usize>>,
    /// zstd[:level], blosc or none.
    #[arg(long, default_value = "zstd:1")]
    codec: String,
    /// Shard edge in voxels, a multiple of the chunk (Zarr sharding: one file holds the
    /// chunks of an N×N×N block, read chunk by chunk; as zarr-python's `shards=`). Clamped to
    /// the volume.
    #[arg(long, value_name = "VOXELS")]
    shard: Option<usize>,
    /// Number of levels including full resolution (default: down to about 64³).
    #[arg(long)]
    levels: Option<usize>,
    /// Voxel size Z Y X recorded in the OME metadata (default: what the TIFF's ImageJ or
    /// OME-XML metadata says, else 1 with no unit).
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"])]
    voxel_size: Option<Vec<f64>>,
    /// Unit of --voxel-size (an OME-NGFF unit such as micrometer; µm, um and micron are
    /// understood).
    #[arg(long, requires = "voxel_size")]
    unit: Option<String>,
    /// The TIFF is a segmentation (integer labels): write an OME-Zarr image-label, whose
    /// levels take the nearest label instead of averaging (viewers open it as labels).
    #[arg(long)]
    labels: bool,
    /// Replace an existing output.
    #[arg(long)]
    overwrite: bool,
    /// No progress: only errors and the final one-line summary, on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// `--voxel-size` and `--unit`, checked: positive sizes and a known unit.
fn voxel_size(a: &Args) -> Result<Option<VoxelSize>> {
    let Some(v) = &a.voxel_size else { return Ok(None) };
    if v.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        bail!("--voxel-size: sizes must be positive numbers (got {v:?})");
    }
    let unit = match &a.unit {
        None => None,
        Some(u) => Some(ngff_unit(u).ok_or_else(|| anyhow::anyhow!("--unit: '{u}' is not a length unit (e.g. micrometer, nanometer, millimeter)"))?),
    };
    Ok(Some(VoxelSize { zyx: [v[0], v[1], v[2]], unit }))
}

fn run(a: Args) -> Result<()> {
    let chunk = match &a.chunk3 {
        Some(c) => [c[0], c[1], c[2]],
        None => [a.chunk; 3],
    };
    if chunk.contains(&0) {
        bail!("--chunk must be positive");
    }
    // Chunks per shard along each axis (clamped to the volume when its shape is known).
    let shard = match a.shard {
        None => None,
        Some(n) if n == 0 || (0..3).any(|k| n % chunk[k] != 0) => {
            bail!("--shard {n}: a shard is a whole number of chunks per axis ({chunk:?} voxels): use a multiple of the chunk")
        }
        Some(n) => Some(std::array::from_fn(|k| n / chunk[k])),
    };
    let opts = ConvertOptions {
        layout: ArrayLayout { chunk, codec: Codec::parse(&a.codec).map_err(|e| anyhow::anyhow!("--codec: {e}"))?, shard },
        levels: a.levels,
        voxel_size: voxel_size(&a)?,
        labels: a.labels,
        overwrite: a.overwrite,
        progress: !a.quiet,
    };
    let r = tiff_to_zarr(&a.input, &a.output, &opts)?;
    // The one-line summary, with --quiet too.
    eprintln!(
        "tiff2zarr: {}: {}×{}×{} {} in {} levels, {:.1} MB/s",
        r.output.display(),
        r.shape[0],
        r.shape[1],
        r.shape[2],
        r.dtype,
        r.levels,
        r.bytes as f64 / 1e6 / r.seconds.max(1e-9)
    );
    Ok(())
}

fn main() {
    dvc_stream::init_process();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("tiff2zarr: error: {}", dvc_stream::cli::one_line(&e));
        std::process::exit(2);
    }
}
