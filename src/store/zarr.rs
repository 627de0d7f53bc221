//! Zarr back end: reading v3 (and zarrs-readable v2) arrays and OME-Zarr multiscale groups,
//! and writing chunked, compressed (optionally sharded) v3 arrays.
//!
//! Everything goes through `zarrs`: this module only maps stores onto the [`VolumeSource`]
//! interface (chunk = the array's chunk, or the inner chunk of a sharded array so that a
//! box read touches no more than it needs) and writes the OME-Zarr 0.5 metadata that
//! tiff2zarr, synth and deform-image produce.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use zarrs::array::codec::{BloscCodec, ZstdCodec};
use zarrs::array::{data_type, Array, ArrayBuilder, ArrayBytes, ArrayShardedExt, ArrayShardedReadableExt, ArrayShardedReadableExtCache};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::{Group, GroupBuilder};
use zarrs::storage::ReadableListableStorageTraits;

use super::dtype::{DType, TypedBuf};
use super::source::{chunk_extent, VolumeSource};
use super::voxel_size::VoxelSize;

/// The most inner chunks a shard may hold (its index is read whole).
const MAX_CHUNKS_PER_SHARD: u64 = 1 << 24;

/// A store to read from: a folder, or object storage (`super::remote`).
type Store = dyn ReadableListableStorageTraits;

/// True when `path` is a Zarr array or group (v3 `zarr.json` or v2 `.zarray`/`.zgroup`), or
/// a store in object storage (whose kind is found when it is opened).
pub fn is_zarr(path: &Path) -> bool {
    super::remote::is_remote(path) || path.join("zarr.json").is_file() || path.join(".zarray").is_file() || path.join(".zgroup").is_file()
}

fn zarr_dtype(array: &Array<Store>, path: &Path) -> Result<DType> {
    let dt = array.data_type();
    Ok(if *dt == data_type::uint8() {
        DType::U8
    } else if *dt == data_type::uint16() {
        DType::U16
    } else if *dt == data_type::int16() {
        DType::I16
    } else if *dt == data_type::uint32() {
        DType::U32
    } else if *dt == data_type::float32() {
        DType::F32
    } else if *dt == data_type::float64() {
        DType::F64
    } else {
        bail!("{}: unsupported Zarr data type {dt} (supported: uint8, uint16, int16, uint32, float32, float64)", path.display())
    })
}

/// Reads the metadata documents of the local node at `dir` as JSON first, so that a
/// truncated or hand-damaged `zarr.json` is reported with its name and what is wrong rather
/// than by a bare decoding message from deep inside the Zarr library.
fn check_metadata_files(dir: &Path) -> Result<()> {
    if super::remote::is_remote(dir) {
        return Ok(());
    }
    for name in ["zarr.json", ".zarray", ".zgroup"] {
        let file = dir.join(name);
        if !file.is_file() {
            continue;
        }
        let text = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
        let doc: Value = serde_json::from_slice(&text)
            .map_err(|e| anyhow!("{}: truncated or corrupt Zarr metadata: not valid JSON ({e})", file.display()))?;
        if !doc.is_object() {
            bail!("{}: corrupt Zarr metadata: not a JSON object", file.display());
        }
        if name == "zarr.json" {
            match doc.get("node_type").and_then(|v| v.as_str()) {
                Some("array") | Some("group") => {}
                Some(other) => bail!("{}: corrupt Zarr metadata: node_type is \"{other}\", not \"array\" or \"group\"", file.display()),
                None => bail!("{}: corrupt Zarr metadata: no node_type (\"array\" or \"group\")", file.display()),
            }
        }
    }
    Ok(())
}

fn store_at(path: &Path) -> Result<Arc<Store>> {
    if super::remote::is_remote(path) {
        return super::remote::open_s3(path);
    }
    // zarrs reports unreadable metadata without the file ("expected string \"array\""): a root
    // zarr.json that is not JSON is named here.
    let root = path.join("zarr.json");
    if let Ok(text) = std::fs::read(&root) {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&text) {
            bail!("{}: is not valid JSON ({e}); the store's metadata is damaged", root.display());
        }
    }
    Ok(Arc::new(FilesystemStore::new(path).map_err(|e| anyhow!("{}: cannot open Zarr store ({e})", path.display()))?))
}

/// One pyramid level of a multiscale group.
#[derive(Clone, Debug)]
struct Level {
    path: String,
    bin: usize,
}

/// A 3D Zarr array, possibly one level of an OME-Zarr pyramid.
pub struct ZarrSource {
    path: PathBuf,
    array: Array<Store>,
    shape: [usize; 3],
    chunk: [usize; 3],
    dtype: DType,
    bin: usize,
    shard_cache: Option<ArrayShardedReadableExtCache>,
    /// The group root and its levels, when opened through a multiscale group.
    pyramid: Option<(Arc<Store>, PathBuf, Vec<Level>)>,
    /// The voxel size of level 0 (the group's first scale and its axes' unit), when known.
    voxel_size: Option<VoxelSize>,
}

impl ZarrSource {
    fn open_array(store: Arc<Store>, root: &Path, array_path: &str, bin: usize) -> Result<ZarrSource> {
        let shown = if array_path == "/" { root.to_path_buf() } else { root.join(array_path.trim_start_matches('/')) };
        check_metadata_files(&shown)?;
        let array = Array::open(store, array_path).map_err(|e| anyhow!("{}: cannot open Zarr array ({e})", shown.display()))?;
        let shape_u64 = array.shape().to_vec();
        if shape_u64.len() != 3 {
            bail!("{}: Zarr array has {} dimensions, 3 are needed (Z, Y, X)", shown.display(), shape_u64.len());
        }
        let dtype = zarr_dtype(&array, &shown)?;
        let shape = super::source::check_shape(&shown, &shape_u64)?;
        let (chunk, shard_cache) = if array.is_sharded() {
            let inner = array
                .effective_subchunk_shape()
                .ok_or_else(|| anyhow!("{}: sharded array without an inner chunk shape", shown.display()))?;
            let c: Vec<u64> = inner.iter().map(|v| v.get()).collect();
            let inner = super::source::check_chunk_shape(&shown, &c, dtype)?;
            // The shard index holds one entry per inner chunk: bound it before it is read.
            let outer = array
                .chunk_shape(&[0, 0, 0])
                .map_err(|e| anyhow!("{}: irregular chunk grid ({e})", shown.display()))?;
            let per_shard = outer.iter().zip(&c).try_fold(1u64, |n, (o, i)| n.checked_mul(o.get().div_ceil(*i)));
            if per_shard.is_none_or(|n| n > MAX_CHUNKS_PER_SHARD) {
                bail!(
                    "{}: corrupt Zarr metadata: shards of {:?} voxels in chunks of {:?} make more than {MAX_CHUNKS_PER_SHARD} chunks per shard",
                    shown.display(),
                    outer.iter().map(|v| v.get()).collect::<Vec<_>>(),
                    c
                );
            }
            (inner, Some(ArrayShardedReadableExtCache::new(&array)))
        } else {
            let c = array
                .chunk_shape(&[0, 0, 0])
                .map_err(|e| anyhow!("{}: irregular chunk grid ({e})", shown.display()))?;
            let c: Vec<u64> = c.iter().map(|v| v.get()).collect();
            (super::source::check_chunk_shape(&shown, &c, dtype)?, None)
        };
        // The chunk cache keys chunks by 32-bit grid indices.
        if (0..3).any(|a| shape[a].div_ceil(chunk[a]) > u32::MAX as usize) {
            bail!("{}: {:?} voxels in chunks of {:?} make more than 2^32 chunks along an axis", shown.display(), shape, chunk);
        }
        Ok(ZarrSource { path: shown, array, shape, chunk, dtype, bin, shard_cache, pyramid: None, voxel_size: None })
    }
}

/// Opens a Zarr array, or the full-resolution level of an OME-Zarr multiscale group.
pub fn open_zarr_source(path: &Path) -> Result<Arc<dyn VolumeSource>> {
    check_metadata_files(path)?;
    let store = store_at(path)?;
    if let Ok(group) = Group::open(store.clone(), "/") {
        let levels = multiscale_levels(group.attributes())
            .with_context(|| format!("{}: Zarr group is not an OME-Zarr multiscale image", path.display()))?;
        let first = &levels[0];
        let mut src = ZarrSource::open_array(store.clone(), path, &format!("/{}", first.path), first.bin)?;
        src.pyramid = Some((store, path.to_path_buf(), levels));
        src.voxel_size = multiscale_voxel_size(group.attributes());
        return Ok(Arc::new(src));
    }
    Ok(Arc::new(ZarrSource::open_array(store, path, "/", 1)?))
}

/// The voxel size of level 0 of an OME-Zarr multiscale image: its first dataset's scale and
/// the unit of its space axes. `None` when neither says anything (scale 1, no unit).
fn multiscale_voxel_size(attrs: &Map<String, Value>) -> Option<VoxelSize> {
    let ms = attrs.get("ome").and_then(|o| o.get("multiscales")).or_else(|| attrs.get("multiscales"))?.get(0)?;
    let scale: Vec<f64> = ms
        .get("datasets")?
        .get(0)?
        .get("coordinateTransformations")?
        .as_array()?
        .iter()
        .find(|t| t.get("type").and_then(|v| v.as_str()) == Some("scale"))?
        .get("scale")?
        .as_array()?
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    if scale.len() != 3 || scale.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    let unit = ms.get("axes").and_then(|a| a.as_array()).and_then(|axes| {
        axes.iter().find_map(|a| a.get("unit").and_then(|u| u.as_str()).and_then(super::voxel_size::ngff_unit))
    });
    let vs = VoxelSize { zyx: [scale[0], scale[1], scale[2]], unit };
    vs.is_known().then_some(vs)
}

/// The datasets of an OME-Zarr 0.4/0.5 `multiscales` block, with their bin factors.
fn multiscale_levels(attrs: &Map<String, Value>) -> Result<Vec<Level>> {
    let ms = attrs
        .get("ome")
        .and_then(|o| o.get("multiscales"))
        .or_else(|| attrs.get("multiscales"))
        .and_then(|m| m.get(0))
        .ok_or_else(|| anyhow!("no 'multiscales' attribute"))?;
    let datasets = ms.get("datasets").and_then(|d| d.as_array()).ok_or_else(|| anyhow!("no datasets"))?;
    let scale_of = |d: &Value| -> Option<f64> {
        d.get("coordinateTransformations")?
            .as_array()?
            .iter()
            .find(|t| t.get("type").and_then(|v| v.as_str()) == Some("scale"))?
            .get("scale")?
            .as_array()?
            .first()?
            .as_f64()
    };
    let s0 = datasets.first().and_then(scale_of).unwrap_or(1.0);
    let mut levels = Vec::new();
    for (i, d) in datasets.iter().enumerate() {
        let path = d.get("path").and_then(|p| p.as_str()).ok_or_else(|| anyhow!("dataset {i} has no path"))?;
        let bin = scale_of(d).map(|s| (s / s0).round() as usize).unwrap_or(1 << i).max(1);
        levels.push(Level { path: path.to_string(), bin });
    }
    if levels.is_empty() {
        bail!("empty datasets list");
    }
    Ok(levels)
}

impl VolumeSource for ZarrSource {
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn chunk_shape(&self) -> [usize; 3] {
        self.chunk
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn bin(&self) -> usize {
        self.bin
    }
    fn voxel_size(&self) -> Option<VoxelSize> {
        // Level 0's size times this level's bin factor.
        let first = self.pyramid.as_ref().and_then(|p| p.2.first()).map_or(1, |l| l.bin);
        self.voxel_size.as_ref().map(|v| v.binned((self.bin / first.max(1)).max(1)))
    }
    fn stored_bins(&self) -> Vec<usize> {
        match &self.pyramid {
            Some((_, _, levels)) => levels.iter().map(|l| l.bin).collect(),
            None => vec![1],
        }
    }
    fn level(&self, bin: usize) -> Result<Option<Arc<dyn VolumeSource>>> {
        let Some((store, root, levels)) = &self.pyramid else { return Ok(None) };
        let Some(l) = levels.iter().find(|l| l.bin == bin) else { return Ok(None) };
        let mut src = ZarrSource::open_array(store.clone(), root, &format!("/{}", l.path), l.bin)?;
        src.pyramid = self.pyramid.clone();
        src.voxel_size = self.voxel_size.clone();
        Ok(Some(Arc::new(src)))
    }
    fn read_chunk(&self, idx: [usize; 3]) -> Result<(Vec<f32>, u64)> {
        let (values, bytes) = self.read_chunk_stored(idx)?;
        Ok((values.to_f32_vec(), bytes))
    }
    fn read_chunk_into(&self, idx: [usize; 3], buf: Option<TypedBuf>) -> Result<(TypedBuf, u64)> {
        if self.dtype == DType::F64 {
            // Narrowed to f32 on the way: no buffer of the stored type to fill.
            return self.read_chunk_stored(idx);
        }
        let ext = chunk_extent(self.shape, self.chunk, idx);
        let i = [idx[0] as u64, idx[1] as u64, idx[2] as u64];
        let opts = zarrs::array::CodecOptions::default();
        // The decoded bytes (zarrs' own buffer, freed at once) are copied into the recycled
        // buffer, cropped to the volume: the same one copy as converting them to a Vec.
        let decoded = match &self.shard_cache {
            Some(c) => self.array.retrieve_subchunk_opt::<ArrayBytes<'static>>(c, &i, &opts),
            None => self.array.retrieve_chunk_opt::<ArrayBytes<'static>>(&i, &opts),
        }
        .map_err(|e| anyhow!("{}: chunk {:?}: {e}", self.path.display(), idx))?;
        let raw = decoded.into_fixed().map_err(|e| anyhow!("{}: chunk {:?}: {e}", self.path.display(), idx))?;
        let es = self.dtype.size();
        let c = self.chunk;
        if raw.len() != c[0] * c[1] * c[2] * es {
            bail!("{}: chunk {:?} decoded to {} bytes, expected {}", self.path.display(), idx, raw.len(), c[0] * c[1] * c[2] * es);
        }
        let e = [ext[0].len(), ext[1].len(), ext[2].len()];
        let mut out = match buf {
            Some(b) if b.dtype() == self.dtype => b,
            _ => TypedBuf::zeros(self.dtype, 0),
        };
        out.resize(e[0] * e[1] * e[2]);
        let dst = out.as_bytes_mut();
        let row = e[2] * es;
        for z in 0..e[0] {
            for y in 0..e[1] {
                let s = ((z * c[1] + y) * c[2]) * es;
                let d = (z * e[1] + y) * row;
                dst[d..d + row].copy_from_slice(&raw[s..s + row]);
            }
        }
        let bytes = (out.len() * es) as u64;
        Ok((out, bytes))
    }
    fn read_chunk_stored(&self, idx: [usize; 3]) -> Result<(TypedBuf, u64)> {
        if self.dtype != DType::F64 {
            return self.read_chunk_into(idx, None);
        }
        let ext = chunk_extent(self.shape, self.chunk, idx);
        let i = [idx[0] as u64, idx[1] as u64, idx[2] as u64];
        let opts = zarrs::array::CodecOptions::default();
        // A sharded array is read inner chunk by inner chunk: the shard's index (cached per
        // shard) gives the byte range of the one inner chunk asked for, and only that range is
        // read and decoded.
        macro_rules! get {
            ($t:ty) => {{
                let v: Vec<$t> = match &self.shard_cache {
                    Some(c) => self.array.retrieve_subchunk_opt::<Vec<$t>>(c, &i, &opts),
                    None => self.array.retrieve_chunk::<Vec<$t>>(&i),
                }
                .map_err(|e| anyhow!("{}: chunk {:?}: {e}", self.path.display(), idx))?;
                crop_chunk(v, self.chunk, &ext)
            }};
        }
        let out = match self.dtype {
            DType::U8 => TypedBuf::U8(get!(u8)),
            DType::U16 => TypedBuf::U16(get!(u16)),
            DType::I16 => TypedBuf::I16(get!(i16)),
            DType::U32 => TypedBuf::U32(get!(u32)),
            DType::F32 => TypedBuf::F32(get!(f32)),
            // Held as f32, what every kernel reads: half the bytes, the same values.
            DType::F64 => TypedBuf::F32(get!(f64).iter().map(|&v| v as f32).collect()),
        };
        let bytes = (out.len() * self.dtype.size()) as u64;
        Ok((out, bytes))
    }
}

/// The part of a full (padded) chunk that lies inside the volume, in its stored type (the
/// chunk itself, without a copy, when it lies wholly inside).
fn crop_chunk<T: Copy>(v: Vec<T>, chunk: [usize; 3], ext: &[std::ops::Range<usize>; 3]) -> Vec<T> {
    let e = [ext[0].len(), ext[1].len(), ext[2].len()];
    if e == chunk {
        return v;
    }
    let mut out = Vec::with_capacity(e[0] * e[1] * e[2]);
    for z in 0..e[0] {
        for y in 0..e[1] {
            let o = (z * chunk[1] + y) * chunk[2];
            out.extend_from_slice(&v[o..o + e[2]]);
        }
    }
    out
}

/// Compression of written arrays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Codec {
    None,
    Zstd(i32),
    Blosc,
}

impl Codec {
    /// Parses `zstd[:level]`, `blosc` or `none`.
    pub fn parse(s: &str) -> Result<Codec> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        match name {
            "none" => Ok(Codec::None),
            "blosc" => Ok(Codec::Blosc),
            "zstd" => {
                let l = match level {
                    Some(l) => l.parse().map_err(|_| anyhow!("zstd level '{l}' is not an integer"))?,
                    None => 1,
                };
                if !(-7..=22).contains(&l) {
                    bail!("zstd level {l} is outside -7..22");
                }
                Ok(Codec::Zstd(l))
            }
            other => bail!("unknown codec '{other}' (use zstd[:level], blosc or none)"),
        }
    }
}

/// How arrays are laid out on disk.
#[derive(Clone, Copy, Debug)]
pub struct ArrayLayout {
    /// Chunk shape (the inner chunk when sharded).
    pub chunk: [usize; 3],
    pub codec: Codec,
    /// Chunks per shard along each axis, when sharded.
    pub shard: Option<[usize; 3]>,
}

impl ArrayLayout {
    /// The unit that is written at once: a shard when sharded, else a chunk.
    pub fn write_block(&self) -> [usize; 3] {
        let k = self.shard.unwrap_or([1; 3]);
        std::array::from_fn(|a| self.chunk[a] * k[a])
    }

    /// The layout with no shard larger than a volume of `shape` needs.
    pub fn clamped_to(&self, shape: [usize; 3]) -> ArrayLayout {
        let shard = self.shard.map(|k| std::array::from_fn(|a| k[a].min(shape[a].div_ceil(self.chunk[a].max(1))).max(1)));
        ArrayLayout { shard, ..*self }
    }
}

fn zarr_data_type(d: DType) -> zarrs::array::DataType {
    match d {
        DType::U8 => data_type::uint8(),
        DType::U16 => data_type::uint16(),
        DType::I16 => data_type::int16(),
        DType::U32 => data_type::uint32(),
        DType::F32 => data_type::float32(),
        DType::F64 => data_type::float64(),
    }
}

/// Refuses a layout whose write unit (a shard, or a chunk) cannot be held: every block is
/// assembled whole in memory (edge blocks padded), one per worker thread.
fn check_write_block(shape: [usize; 3], dtype: DType, layout: &ArrayLayout) -> Result<()> {
    let k = layout.shard.unwrap_or([1; 3]);
    let block: Vec<u128> = (0..3).map(|a| layout.chunk[a] as u128 * k[a] as u128).collect();
    let voxels = block.iter().try_fold(1u128, |n, &b| n.checked_mul(b));
    let bytes = voxels.and_then(|v| v.checked_mul(dtype.size() as u128 * rayon::current_num_threads() as u128));
    let what = match layout.shard {
        Some(_) => format!("--shard: shards of {}x{}x{} voxels for the {:?} volume", block[0], block[1], block[2], shape),
        None => format!("chunks of {:?} voxels", layout.chunk),
    };
    super::source::check_memory(&what, bytes)
}

/// A Zarr v3 array being written block by block (flushed to disk by
/// [`super::bulk_store::sync`] before the output is renamed into place).
pub struct ArrayWriter {
    array: Array<super::bulk_store::BulkWriteStore>,
    shape: [usize; 3],
    block: [usize; 3],
    dtype: DType,
}

impl ArrayWriter {
    /// Creates the array `name` ("/" for a bare array) inside the store at `root`.
    pub fn create(
        root: &Path,
        name: &str,
        shape: [usize; 3],
        dtype: DType,
        layout: &ArrayLayout,
        attributes: Map<String, Value>,
    ) -> Result<ArrayWriter> {
        check_write_block(shape, dtype, layout)?;
        let store = Arc::new(
            super::bulk_store::BulkWriteStore::new(root).map_err(|e| anyhow!("{}: cannot open Zarr store ({e})", root.display()))?,
        );
        let block = layout.write_block();
        let block_shape: Vec<u64> = block.iter().map(|&v| v.max(1) as u64).collect();
        let fill: zarrs::array::FillValue = match dtype {
            DType::U8 => 0u8.into(),
            DType::U16 => 0u16.into(),
            DType::I16 => 0i16.into(),
            DType::U32 => 0u32.into(),
            DType::F32 => 0f32.into(),
            DType::F64 => 0f64.into(),
        };
        let mut b = ArrayBuilder::new(
            shape.iter().map(|&v| v as u64).collect::<Vec<_>>(),
            block_shape,
            zarr_data_type(dtype),
            fill,
        );
        let codecs: Vec<Arc<dyn zarrs::array::BytesToBytesCodecTraits>> = match layout.codec {
            Codec::None => vec![],
            Codec::Zstd(l) => vec![Arc::new(ZstdCodec::new(l, false))],
            Codec::Blosc => {
                use zarrs::array::codec::bytes_to_bytes::blosc::{BloscCompressionLevel, BloscCompressor, BloscShuffleMode};
                vec![Arc::new(
                    BloscCodec::new(
                        BloscCompressor::Zstd,
                        BloscCompressionLevel::try_from(3u8).unwrap(),
                        None,
                        BloscShuffleMode::Shuffle,
                        Some(dtype.size()),
                    )
                    .map_err(|e| anyhow!("blosc: {e}"))?,
                )]
            }
        };
        b.bytes_to_bytes_codecs(codecs);
        if layout.shard.is_some() {
            b.subchunk_shape(layout.chunk.iter().map(|&v| v.max(1) as u64).collect::<Vec<_>>());
        }
        b.dimension_names(Some(["z", "y", "x"]));
        b.attributes(attributes);
        let array = b
            .build(store, name)
            .map_err(|e| anyhow!("{}: cannot create Zarr array ({e})", root.display()))?;
        array
            .store_metadata()
            .map_err(|e| anyhow!("{}: cannot write Zarr metadata ({e})", root.display()))?;
        Ok(ArrayWriter { array, shape, block, dtype })
    }

    /// The write unit (shard or chunk) shape.
    pub fn block(&self) -> [usize; 3] {
        self.block
    }
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Writes block `idx` from `data`, the values inside the volume only (clipped at edges),
    /// Z-major. Edge blocks are padded with zeros as the Zarr format requires.
    pub fn write_block(&self, idx: [usize; 3], data: &TypedBuf) -> Result<()> {
        let ext = chunk_extent(self.shape, self.block, idx);
        let e = [ext[0].len(), ext[1].len(), ext[2].len()];
        if data.len() != e[0] * e[1] * e[2] {
            bail!("internal: block {:?} has {} values, expected {}", idx, data.len(), e[0] * e[1] * e[2]);
        }
        let i = [idx[0] as u64, idx[1] as u64, idx[2] as u64];
        let full = e == self.block;
        macro_rules! put {
            ($v:expr, $zero:expr) => {{
                let res = if full {
                    self.array.store_chunk(&i, $v.as_slice())
                } else {
                    let bl = self.block;
                    let mut padded = vec![$zero; bl[0] * bl[1] * bl[2]];
                    for z in 0..e[0] {
                        for y in 0..e[1] {
                            let s = (z * e[1] + y) * e[2];
                            let d = (z * bl[1] + y) * bl[2];
                            padded[d..d + e[2]].copy_from_slice(&$v[s..s + e[2]]);
                        }
                    }
                    self.array.store_chunk(&i, padded.as_slice())
                };
                res.map_err(|e| anyhow!("writing chunk {:?}: {e}", idx))
            }};
        }
        match data {
            TypedBuf::U8(v) => put!(v, 0u8),
            TypedBuf::U16(v) => put!(v, 0u16),
            TypedBuf::I16(v) => put!(v, 0i16),
            TypedBuf::U32(v) => put!(v, 0u32),
            TypedBuf::F32(v) => put!(v, 0f32),
            TypedBuf::F64(v) => put!(v, 0f64),
        }
    }
}

/// Voxel size and provenance recorded in an OME-Zarr group.
#[derive(Clone, Debug)]
pub struct ImageMeta {
    pub name: String,
    /// Written as the scale of level 0 and the axes' unit (no unit when unknown, as
    /// OME-NGFF asks: "pixel" is not a unit).
    pub voxel_size: VoxelSize,
    /// A label image (a segmentation): written as an OME-Zarr `image-label`, its levels
    /// picked by nearest neighbour rather than averaged.
    pub labels: bool,
    /// Free-form provenance stored under the `dvc_stream` attribute.
    pub extra: Map<String, Value>,
}

/// Writes the root group of an OME-Zarr 0.5 image whose levels are the arrays "0", "1", ...
/// with the given bin factors and dropped leading voxels (spam's binning offsets).
pub fn write_multiscale_group(root: &Path, meta: &ImageMeta, levels: &[(usize, [usize; 3])]) -> Result<()> {
    let store = Arc::new(FilesystemStore::new(root).map_err(|e| anyhow!("{}: cannot open Zarr store ({e})", root.display()))?);
    let datasets: Vec<Value> = levels
        .iter()
        .enumerate()
        .map(|(i, (bin, top))| {
            let b = *bin as f64;
            let scale: Vec<f64> = meta.voxel_size.zyx.iter().map(|v| v * b).collect();
            let translation: Vec<f64> =
                (0..3).map(|a| meta.voxel_size.zyx[a] * (top[a] as f64 + (b - 1.0) / 2.0)).collect();
            json!({
                "path": i.to_string(),
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation}
                ]
            })
        })
        .collect();
    let axes: Vec<Value> = ["z", "y", "x"]
        .iter()
        .map(|n| match &meta.voxel_size.unit {
            Some(u) => json!({"name": n, "type": "space", "unit": u}),
            None => json!({"name": n, "type": "space"}),
        })
        .collect();
    let mut extra = meta.extra.clone();
    extra.insert("voxel_size".into(), json!(meta.voxel_size.zyx));
    extra.insert("bins".into(), json!(levels.iter().map(|l| l.0).collect::<Vec<_>>()));
    extra.insert(
        "binning".into(),
        json!(if meta.labels {
            "level k takes from level 0 the voxel at offset 2^(k-1) of each 2^k block (nearest neighbour), after spam's (N mod b)//2 voxels dropped at the start"
        } else {
            "level k is spam's binning of level 0 by 2^k: (N mod b)//2 voxels dropped at the start, block mean, integer floor mean for integer types"
        }),
    );
    let mut ome = json!({
        "version": "0.5",
        "multiscales": [{
            "name": meta.name,
            "axes": axes,
            "datasets": datasets,
            "type": if meta.labels { "nearest" } else { "mean" },
        }]
    });
    if meta.labels {
        // OME-Zarr's label image: viewers (napari-ome-zarr) open it as labels, not grey levels.
        ome["image-label"] = json!({ "version": "0.5" });
    }
    let attrs = json!({ "ome": ome, "dvc_stream": extra });
    let mut gb = GroupBuilder::new();
    gb.attributes(attrs.as_object().unwrap().clone());
    let group = gb.build(store, "/").map_err(|e| anyhow!("{}: cannot create Zarr group ({e})", root.display()))?;
    group
        .store_metadata()
        .map_err(|e| anyhow!("{}: cannot write Zarr group metadata ({e})", root.display()))?;
    Ok(())
}

/// Opens level `level` (0 = full resolution) of a Zarr store for reading in its stored type.
pub struct NativeReader {
    array: Array<Store>,
    pub shape: [usize; 3],
    pub dtype: DType,
    pub chunk_depth: usize,
    /// The level's voxel size, when the group records one.
    pub voxel_size: Option<VoxelSize>,
    shown: PathBuf,
}

impl NativeReader {
    pub fn open(path: &Path, level: usize) -> Result<NativeReader> {
        if !is_zarr(path) {
            bail!("{}: not a Zarr store", path.display());
        }
        check_metadata_files(path)?;
        let store = store_at(path)?;
        let mut voxel_size = None;
        let array_path = match Group::open(store.clone(), "/") {
            Ok(g) => {
                voxel_size = multiscale_voxel_size(g.attributes()).map(|v| v.binned(1 << level));
                let levels = multiscale_levels(g.attributes())
                    .with_context(|| format!("{}: Zarr group is not an OME-Zarr multiscale image", path.display()))?;
                let l = levels.get(level).ok_or_else(|| {
                    anyhow!("{}: has {} levels; --level {level} does not exist", path.display(), levels.len())
                })?;
                format!("/{}", l.path)
            }
            Err(_) => {
                if level != 0 {
                    bail!("{}: a single array has only level 0", path.display());
                }
                "/".to_string()
            }
        };
        let src = ZarrSource::open_array(store, path, &array_path, 1 << level)?;
        Ok(NativeReader { chunk_depth: src.chunk[0], shape: src.shape, dtype: src.dtype, voxel_size, shown: src.path, array: src.array })
    }

    /// Whole planes `[z0, z1)` in the stored type.
    pub fn read_slab(&self, z0: usize, z1: usize) -> Result<TypedBuf> {
        let subset = [z0 as u64..z1 as u64, 0..self.shape[1] as u64, 0..self.shape[2] as u64];
        macro_rules! get {
            ($t:ty, $v:ident) => {
                TypedBuf::$v(
                    self.array
                        .retrieve_array_subset::<Vec<$t>>(&subset)
                        .map_err(|e| anyhow!("{}: planes {z0}..{z1}: {e}", self.shown.display()))?,
                )
            };
        }
        Ok(match self.dtype {
            DType::U8 => get!(u8, U8),
            DType::U16 => get!(u16, U16),
            DType::I16 => get!(i16, I16),
            DType::U32 => get!(u32, U32),
            DType::F32 => get!(f32, F32),
            DType::F64 => get!(f64, F64),
        })
    }
}
