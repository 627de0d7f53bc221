//! TIFF back ends: a 3D multi-page TIFF/BigTIFF, or a folder of 2D slices.
//!
//! Small jobs should not need a conversion step, so TIFFs are read in place without loading
//! the whole file: uncompressed strip-organised files are memory-mapped and a chunk is copied
//! straight from the pages' strips; compressed (LZW, Deflate, zstd) or tiled files are decoded
//! a page at a time with the `tiff` crate, through a small pool of decoders that remember
//! where every page starts. Pages must all share one size and one sample type.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use rayon::prelude::*;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;
use tiff::ColorType;

use super::dtype::{DType, TypedBuf};
use super::source::{chunk_extent, VolumeSource};
use super::voxel_size::VoxelSize;

/// True for the four magic bytes of a classic TIFF or a BigTIFF, either byte order.
pub fn is_tiff_magic(m: &[u8; 4]) -> bool {
    matches!(m, [0x49, 0x49, 42, 0] | [0x4d, 0x4d, 0, 42] | [0x49, 0x49, 43, 0] | [0x4d, 0x4d, 0, 43])
}

/// Where one page's pixels are, when they can be read without decoding.
#[derive(Clone, Debug)]
struct RawPage {
    strip_offsets: Vec<u64>,
    rows_per_strip: usize,
}

/// Plane size in voxels below which decoded chunks group several pages.
const TARGET_CHUNK_BYTES: usize = 16 << 20;

/// The most pixels of a page that has to be decoded whole (compressed or tiled pages): the
/// decoder holds the page and a chunk of it as f32, so a page claiming more is refused
/// before anything is allocated (a 1 KB file can claim pages of 2^40 pixels).
pub const MAX_DECODED_PAGE_PIXELS: u64 = 1 << 30;

fn open_decoder(path: &Path) -> Result<Decoder<BufReader<File>>> {
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let file_len = f.metadata().with_context(|| format!("{}: cannot read", path.display()))?.len();
    let d = Decoder::new(BufReader::new(f))
        .map_err(|e| anyhow!("{}: not a readable TIFF ({e})", path.display()))?
        .with_limits(decoder_limits(file_len));
    Ok(d)
}

/// Limits that keep the decoder's allocations to what the file can hold: tag values and
/// compressed segments lie inside the file, a decoded page is at most
/// [`MAX_DECODED_PAGE_PIXELS`] of 8 bytes.
fn decoder_limits(file_len: u64) -> Limits {
    let mut l = Limits::default();
    let page = (MAX_DECODED_PAGE_PIXELS * 8) as usize;
    l.decoding_buffer_size = page;
    l.intermediate_buffer_size = page;
    l.ifd_value_size = usize::try_from(file_len).unwrap_or(usize::MAX).max(1 << 20);
    l
}

/// Checks that every segment (strip or tile) of the current page lies inside the file, with
/// arithmetic that cannot overflow: offsets and byte counts come from the file itself.
/// Returns the page's stored bytes.
fn check_segments(d: &mut Decoder<BufReader<File>>, path: &Path, page: usize, file_len: u64) -> Result<u64> {
    let tiled = d.find_tag(Tag::TileWidth).ok().flatten().is_some();
    let (off_tag, count_tag, what) =
        if tiled { (Tag::TileOffsets, Tag::TileByteCounts, "tile") } else { (Tag::StripOffsets, Tag::StripByteCounts, "strip") };
    let offsets: Vec<u64> = d
        .find_tag_unsigned_vec(off_tag)
        .map_err(|e| anyhow!("{}: page {page}: unreadable {what} offsets ({e})", path.display()))?
        .ok_or_else(|| anyhow!("{}: page {page} has no {what} offsets", path.display()))?;
    let counts: Vec<u64> = d
        .find_tag_unsigned_vec(count_tag)
        .map_err(|e| anyhow!("{}: page {page}: unreadable {what} byte counts ({e})", path.display()))?
        .ok_or_else(|| anyhow!("{}: page {page} has no {what} byte counts", path.display()))?;
    if offsets.len() != counts.len() {
        bail!("{}: corrupt: page {page} has {} {what} offsets but {} byte counts", path.display(), offsets.len(), counts.len());
    }
    let mut stored = 0u64;
    for (s, (&o, &c)) in offsets.iter().zip(&counts).enumerate() {
        stored = stored.saturating_add(c);
        if o.checked_add(c).is_none_or(|end| end > file_len) {
            bail!(
                "{}: truncated or corrupt: page {page} {what} {s} claims bytes {o}..{} but the file has {file_len}",
                path.display(),
                o as u128 + c as u128
            );
        }
    }
    Ok(stored)
}

/// No codec TIFF uses (LZW, Deflate, zstd, PackBits) expands data more than this, so a page
/// whose decoded size exceeds its stored bytes by more is corrupt, however small it claims.
const MAX_EXPANSION: u64 = 1 << 16;

/// Checks that a page of `w`×`h` pixels that must be decoded whole can be held.
fn check_decoded_page(path: &Path, page: usize, w: u32, h: u32, dtype: DType, stored: u64) -> Result<()> {
    let pixels = w as u64 * h as u64;
    let bytes = pixels * dtype.size() as u64;
    if bytes > stored.saturating_mul(MAX_EXPANSION).saturating_add(1 << 20) {
        bail!(
            "{}: truncated or corrupt: page {page} claims {w}x{h} pixels ({bytes} bytes) from {stored} stored bytes",
            path.display()
        );
    }
    if pixels > MAX_DECODED_PAGE_PIXELS {
        bail!(
            "{}: page {page} is {w}x{h} pixels, compressed or tiled; pages decoded whole are limited to {} pixels (store it uncompressed in strips, or as slices)",
            path.display(),
            MAX_DECODED_PAGE_PIXELS
        );
    }
    Ok(())
}

/// The sample type of the current page.
fn page_dtype(d: &mut Decoder<BufReader<File>>, path: &Path, page: usize) -> Result<DType> {
    let ct = d.colortype().map_err(|e| anyhow!("{}: page {page}: {e}", path.display()))?;
    let bits = match ct {
        ColorType::Gray(b) => b,
        other => bail!("{}: page {page} has {other:?} pixels; only single-channel (grey) images are supported", path.display()),
    };
    let fmt: u16 = d.find_tag_unsigned(Tag::SampleFormat).ok().flatten().unwrap_or(1);
    Ok(match (fmt, bits) {
        (1, 8) => DType::U8,
        (1, 16) => DType::U16,
        (2, 16) => DType::I16,
        (1, 32) => DType::U32,
        (3, 32) => DType::F32,
        (3, 64) => DType::F64,
        (f, b) => bail!(
            "{}: page {page} has an unsupported sample type ({} {b}-bit); supported: uint8, uint16, int16, uint32, float32, float64",
            path.display(),
            match f { 1 => "unsigned", 2 => "signed", 3 => "float", _ => "unknown" }
        ),
    })
}

/// Converts a decoded page to the volume's type.
fn decoded_to_typed(r: DecodingResult, path: &Path, page: usize) -> Result<TypedBuf> {
    Ok(match r {
        DecodingResult::U8(v) => TypedBuf::U8(v),
        DecodingResult::U16(v) => TypedBuf::U16(v),
        DecodingResult::I16(v) => TypedBuf::I16(v),
        DecodingResult::U32(v) => TypedBuf::U32(v),
        DecodingResult::F32(v) => TypedBuf::F32(v),
        DecodingResult::F64(v) => TypedBuf::F64(v),
        _ => bail!("{}: page {page}: unsupported sample type", path.display()),
    })
}

/// A 3D multi-page TIFF or BigTIFF.
pub struct TiffSource {
    path: PathBuf,
    shape: [usize; 3],
    dtype: DType,
    chunk: [usize; 3],
    big_endian: bool,
    /// Set when every page is uncompressed and strip-organised.
    raw: Option<(Mmap, Vec<RawPage>)>,
    decoders: Mutex<Vec<Decoder<BufReader<File>>>>,
    /// From the first page's ImageJ or OME-XML metadata.
    voxel_size: Option<VoxelSize>,
}

impl TiffSource {
    pub fn open(path: &Path) -> Result<TiffSource> {
        let mut d = open_decoder(path)?;
        let voxel_size = super::voxel_size::from_tiff(&mut d);
        let (w, h) = d.dimensions().map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if w == 0 || h == 0 {
            bail!("{}: page 0 is {w}x{h} pixels: no image", path.display());
        }
        let dtype = page_dtype(&mut d, path, 0)?;
        let big_endian = matches!(d.byte_order(), tiff::tags::ByteOrder::BigEndian);
        let file_len = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?.len();
        let mut raw_pages = Vec::new();
        let mut all_raw = true;
        let mut page = 0usize;
        loop {
            let (pw, ph) = d.dimensions().map_err(|e| anyhow!("{}: page {page}: {e}", path.display()))?;
            if (pw, ph) != (w, h) {
                bail!("{}: page {page} is {pw}x{ph} pixels but page 0 is {w}x{h}", path.display());
            }
            let pt = page_dtype(&mut d, path, page)?;
            if pt != dtype {
                bail!("{}: page {page} is {pt} but page 0 is {dtype}", path.display());
            }
            let stored = check_segments(&mut d, path, page, file_len)?;
            let compression: u16 = d.find_tag_unsigned(Tag::Compression).ok().flatten().unwrap_or(1);
            let predictor: u16 = d.find_tag_unsigned(Tag::Predictor).ok().flatten().unwrap_or(1);
            let tiled = d.find_tag(Tag::TileWidth).ok().flatten().is_some();
            if compression != 1 || predictor != 1 || tiled {
                all_raw = false;
            }
            if !all_raw {
                check_decoded_page(path, page, w, h, dtype, stored)?;
            } else {
                let offsets: Vec<u64> = d.find_tag_unsigned_vec(Tag::StripOffsets).ok().flatten().unwrap_or_default();
                let counts: Vec<u64> = d.find_tag_unsigned_vec(Tag::StripByteCounts).ok().flatten().unwrap_or_default();
                let rps: u64 = d.find_tag_unsigned(Tag::RowsPerStrip).ok().flatten().unwrap_or(h as u64);
                let rps = rps.clamp(1, (h as u64).max(1));
                // Every row of the page must be in a strip the file holds: the chunk reader
                // indexes strips by row.
                let strips = (h as u64).div_ceil(rps);
                if (offsets.len() as u64) < strips || counts.len() < offsets.len() {
                    bail!(
                        "{}: corrupt: page {page} has {} rows in strips of {rps} but {} strip offsets and {} byte counts",
                        path.display(),
                        h,
                        offsets.len(),
                        counts.len()
                    );
                }
                let row_bytes = w as u64 * dtype.size() as u64;
                for s in 0..strips as usize {
                    let (o, c) = (offsets[s], counts[s]);
                    let rows = (h as u64 - s as u64 * rps).min(rps);
                    let need = rows * row_bytes;
                    if c < need || o.checked_add(need).is_none_or(|end| end > file_len) {
                        bail!(
                            "{}: truncated or corrupt: page {page} strip {s} needs bytes {o}..{} but the file has {file_len}",
                            path.display(),
                            o as u128 + need as u128
                        );
                    }
                }
                raw_pages.push(RawPage { strip_offsets: offsets, rows_per_strip: rps as usize });
            }
            page += 1;
            if !d.more_images() {
                break;
            }
            d.next_image().map_err(|e| anyhow!("{}: truncated or corrupt after page {}: {e}", path.display(), page - 1))?;
        }
        let shape = [page, h as usize, w as usize];
        let raw = if all_raw {
            let f = File::open(path)?;
            // SAFETY: the file is opened read-only; dvc-stream never writes its inputs. If
            // another process truncates it meanwhile, reads may fault, as with any mmap reader.
            let mmap = unsafe { Mmap::map(&f) }.with_context(|| format!("{}: cannot memory-map", path.display()))?;
            Some((mmap, raw_pages))
        } else {
            None
        };
        let plane = shape[1] * shape[2] * 4;
        let chunk = if raw.is_some() {
            [64.min(shape[0]).max(1), 64.min(shape[1]).max(1), 64.min(shape[2]).max(1)]
        } else {
            [(TARGET_CHUNK_BYTES / plane.max(1)).clamp(1, 64).min(shape[0]), shape[1], shape[2]]
        };
        Ok(TiffSource {
            path: path.to_path_buf(),
            shape,
            dtype,
            chunk,
            big_endian,
            raw,
            decoders: Mutex::new(vec![d]),
            voxel_size,
        })
    }

    /// Whether pages are read through the memory map (uncompressed strips).
    pub fn is_memory_mapped(&self) -> bool {
        self.raw.is_some()
    }

    fn with_decoder<T>(&self, f: impl FnOnce(&mut Decoder<BufReader<File>>) -> Result<T>) -> Result<T> {
        let d = self.decoders.lock().unwrap().pop();
        let mut d = match d {
            Some(d) => d,
            None => open_decoder(&self.path)?,
        };
        let r = f(&mut d);
        self.decoders.lock().unwrap().push(d);
        r
    }

    /// Decodes page `z` whole.
    fn decode_page(&self, z: usize) -> Result<TypedBuf> {
        self.with_decoder(|d| {
            d.seek_to_image(z).map_err(|e| anyhow!("{}: page {z}: {e}", self.path.display()))?;
            let r = d.read_image().map_err(|e| anyhow!("{}: page {z}: truncated or corrupt ({e})", self.path.display()))?;
            let t = decoded_to_typed(r, &self.path, z)?;
            if t.len() != self.shape[1] * self.shape[2] {
                bail!("{}: page {z} decoded to {} pixels, expected {}", self.path.display(), t.len(), self.shape[1] * self.shape[2]);
            }
            Ok(t)
        })
    }

    /// Reads `n` elements of the raw (memory-mapped) file at byte offset `off` as f32.
    fn raw_row_f32(&self, mmap: &[u8], off: usize, n: usize, out: &mut Vec<f32>) {
        let b = &mmap[off..off + n * self.dtype.size()];
        let be = self.big_endian;
        match self.dtype {
            DType::U8 => out.extend(b.iter().map(|&v| v as f32)),
            DType::U16 => out.extend(b.chunks_exact(2).map(|c| {
                let a = [c[0], c[1]];
                (if be { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) }) as f32
            })),
            DType::I16 => out.extend(b.chunks_exact(2).map(|c| {
                let a = [c[0], c[1]];
                (if be { i16::from_be_bytes(a) } else { i16::from_le_bytes(a) }) as f32
            })),
            DType::U32 => out.extend(b.chunks_exact(4).map(|c| {
                let a = [c[0], c[1], c[2], c[3]];
                (if be { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) }) as f32
            })),
            DType::F32 => out.extend(b.chunks_exact(4).map(|c| {
                let a = [c[0], c[1], c[2], c[3]];
                if be { f32::from_be_bytes(a) } else { f32::from_le_bytes(a) }
            })),
            DType::F64 => out.extend(b.chunks_exact(8).map(|c| {
                let a: [u8; 8] = c.try_into().unwrap();
                (if be { f64::from_be_bytes(a) } else { f64::from_le_bytes(a) }) as f32
            })),
        }
    }

    /// Reads whole pages `[z0, z1)` in the stored type (used by tiff2zarr). Uncompressed
    /// pages are read with positioned reads, one per run of contiguous strips, rather than
    /// through the memory map: a sequential pass then costs a few large reads instead of a
    /// page fault per 4 KiB, and the file's pages are not charged to the process.
    pub fn read_pages(&self, z0: usize, z1: usize) -> Result<TypedBuf> {
        let plane = self.shape[1] * self.shape[2];
        let Some((_, raw)) = &self.raw else {
            let pages: Vec<TypedBuf> = (z0..z1).into_par_iter().map(|z| self.decode_page(z)).collect::<Result<_>>()?;
            return Ok(concat_typed(self.dtype, pages));
        };
        let mut slab = TypedBuf::zeros(self.dtype, (z1 - z0) * plane);
        let page_bytes = plane * self.dtype.size();
        let row_bytes = self.shape[2] * self.dtype.size();
        let bytes: &mut [u8] = match &mut slab {
            TypedBuf::U8(v) => v.as_mut_slice(),
            TypedBuf::U16(v) => bytemuck::cast_slice_mut(v.as_mut_slice()),
            TypedBuf::I16(v) => bytemuck::cast_slice_mut(v.as_mut_slice()),
            TypedBuf::U32(v) => bytemuck::cast_slice_mut(v.as_mut_slice()),
            TypedBuf::F32(v) => bytemuck::cast_slice_mut(v.as_mut_slice()),
            TypedBuf::F64(v) => bytemuck::cast_slice_mut(v.as_mut_slice()),
        };
        bytes.par_chunks_mut(page_bytes).enumerate().try_for_each(|(i, page)| -> Result<()> {
            use std::os::unix::fs::FileExt;
            let z = z0 + i;
            let p = &raw[z];
            let f = File::open(&self.path).with_context(|| format!("{}: cannot open", self.path.display()))?;
            let mut y = 0;
            while y < self.shape[1] {
                // One read per run of strips that follow each other in the file.
                let s0 = y / p.rows_per_strip;
                let mut s1 = s0 + 1;
                while s1 * p.rows_per_strip < self.shape[1]
                    && p.strip_offsets[s1] == p.strip_offsets[s1 - 1] + (p.rows_per_strip * row_bytes) as u64
                {
                    s1 += 1;
                }
                let rows = (s1 * p.rows_per_strip).min(self.shape[1]) - y;
                f.read_exact_at(&mut page[y * row_bytes..(y + rows) * row_bytes], p.strip_offsets[s0])
                    .with_context(|| format!("{}: page {z}: cannot read", self.path.display()))?;
                y += rows;
            }
            Ok(())
        })?;
        // Samples were copied as stored; the host is little-endian, so swap big-endian files.
        if self.big_endian && cfg!(target_endian = "little") {
            match &mut slab {
                TypedBuf::U8(_) => {}
                TypedBuf::U16(v) => v.iter_mut().for_each(|a| *a = a.swap_bytes()),
                TypedBuf::I16(v) => v.iter_mut().for_each(|a| *a = a.swap_bytes()),
                TypedBuf::U32(v) => v.iter_mut().for_each(|a| *a = a.swap_bytes()),
                TypedBuf::F32(v) => v.iter_mut().for_each(|a| *a = f32::from_bits(a.to_bits().swap_bytes())),
                TypedBuf::F64(v) => v.iter_mut().for_each(|a| *a = f64::from_bits(a.to_bits().swap_bytes())),
            }
        }
        Ok(slab)
    }
}

/// Appends the (Y, X) part of `ext` of a decoded page of width `nx` to `out`, as f32.
fn push_page_box(page: &TypedBuf, nx: usize, ext: &[std::ops::Range<usize>; 3], out: &mut Vec<f32>) {
    for y in ext[1].clone() {
        let row = y * nx;
        out.extend(ext[2].clone().map(|x| page.get_f64(row + x) as f32));
    }
}


/// Concatenates page buffers of one type.
pub fn concat_typed(dtype: DType, pages: Vec<TypedBuf>) -> TypedBuf {
    let mut out = TypedBuf::zeros(dtype, 0);
    for p in pages {
        match (&mut out, p) {
            (TypedBuf::U8(o), TypedBuf::U8(v)) => o.extend(v),
            (TypedBuf::U16(o), TypedBuf::U16(v)) => o.extend(v),
            (TypedBuf::I16(o), TypedBuf::I16(v)) => o.extend(v),
            (TypedBuf::U32(o), TypedBuf::U32(v)) => o.extend(v),
            (TypedBuf::F32(o), TypedBuf::F32(v)) => o.extend(v),
            (TypedBuf::F64(o), TypedBuf::F64(v)) => o.extend(v),
            _ => unreachable!("pages of one volume share a type"),
        }
    }
    out
}

impl VolumeSource for TiffSource {
    fn voxel_size(&self) -> Option<VoxelSize> {
        self.voxel_size.clone()
    }
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
    fn read_chunk(&self, idx: [usize; 3]) -> Result<(Vec<f32>, u64)> {
        let ext = chunk_extent(self.shape, self.chunk, idx);
        let n = ext[0].len() * ext[1].len() * ext[2].len();
        let mut out = Vec::with_capacity(n);
        if let Some((mmap, raw)) = &self.raw {
            let es = self.dtype.size();
            let row_bytes = self.shape[2] * es;
            for z in ext[0].clone() {
                let p = &raw[z];
                for y in ext[1].clone() {
                    let off = p.strip_offsets[y / p.rows_per_strip] as usize
                        + (y % p.rows_per_strip) * row_bytes
                        + ext[2].start * es;
                    self.raw_row_f32(mmap, off, ext[2].len(), &mut out);
                }
            }
        } else {
            for z in ext[0].clone() {
                push_page_box(&self.decode_page(z)?, self.shape[2], &ext, &mut out);
            }
        }
        Ok((out, (n * self.dtype.size()) as u64))
    }
}

/// A folder of 2D TIFF slices, stacked in natural name order (2 before 10).
pub struct TiffSlicesSource {
    path: PathBuf,
    files: Vec<PathBuf>,
    shape: [usize; 3],
    dtype: DType,
    chunk: [usize; 3],
    /// From the first slice's metadata.
    voxel_size: Option<VoxelSize>,
}

/// The TIFF files of a folder in natural order.
pub fn list_slices(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"))
        })
        .collect();
    files.sort_by(|a, b| {
        natord::compare(
            &a.file_name().unwrap_or_default().to_string_lossy(),
            &b.file_name().unwrap_or_default().to_string_lossy(),
        )
    });
    if files.is_empty() {
        bail!("{}: folder holds no .tif/.tiff slices and is not a Zarr store", dir.display());
    }
    Ok(files)
}

impl TiffSlicesSource {
    pub fn open(dir: &Path) -> Result<TiffSlicesSource> {
        let files = list_slices(dir)?;
        let mut first: Option<(u32, u32, DType)> = None;
        for f in &files {
            let mut d = open_decoder(f)?;
            let (w, h) = d.dimensions().map_err(|e| anyhow!("{}: {e}", f.display()))?;
            let t = page_dtype(&mut d, f, 0)?;
            let file_len = std::fs::metadata(f).with_context(|| format!("{}: cannot read", f.display()))?.len();
            let stored = check_segments(&mut d, f, 0, file_len)?;
            check_decoded_page(f, 0, w, h, t, stored)?;
            if d.more_images() {
                bail!("{}: slice has several pages; a slice folder needs 2D files", f.display());
            }
            match first {
                None => first = Some((w, h, t)),
                Some((w0, h0, t0)) => {
                    if (w, h) != (w0, h0) {
                        bail!("{}: slice is {w}x{h} pixels but {} is {w0}x{h0}", f.display(), files[0].display());
                    }
                    if t != t0 {
                        bail!("{}: slice is {t} but {} is {t0}", f.display(), files[0].display());
                    }
                }
            }
        }
        let (w, h, dtype) = first.unwrap();
        let shape = [files.len(), h as usize, w as usize];
        let plane = shape[1] * shape[2] * 4;
        let chunk = [(TARGET_CHUNK_BYTES / plane.max(1)).clamp(1, 64).min(shape[0]), shape[1], shape[2]];
        let voxel_size = files.first().and_then(|f| open_decoder(f).ok()).and_then(|mut d| super::voxel_size::from_tiff(&mut d));
        Ok(TiffSlicesSource { path: dir.to_path_buf(), files, shape, dtype, chunk, voxel_size })
    }

    fn decode(&self, z: usize) -> Result<TypedBuf> {
        let f = &self.files[z];
        let mut d = open_decoder(f)?;
        let r = d.read_image().map_err(|e| anyhow!("{}: truncated or corrupt ({e})", f.display()))?;
        let t = decoded_to_typed(r, f, 0)?;
        if t.dtype() != self.dtype || t.len() != self.shape[1] * self.shape[2] {
            bail!("{}: slice does not match the first slice's size and type", f.display());
        }
        Ok(t)
    }

    /// Reads whole slices `[z0, z1)` in the stored type (used by tiff2zarr).
    pub fn read_pages(&self, z0: usize, z1: usize) -> Result<TypedBuf> {
        let pages: Vec<TypedBuf> = (z0..z1).into_par_iter().map(|z| self.decode(z)).collect::<Result<_>>()?;
        Ok(concat_typed(self.dtype, pages))
    }
}

impl VolumeSource for TiffSlicesSource {
    fn voxel_size(&self) -> Option<VoxelSize> {
        self.voxel_size.clone()
    }
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
    fn read_chunk(&self, idx: [usize; 3]) -> Result<(Vec<f32>, u64)> {
        let ext = chunk_extent(self.shape, self.chunk, idx);
        let n = ext[0].len() * ext[1].len() * ext[2].len();
        let mut out = Vec::with_capacity(n);
        for z in ext[0].clone() {
            push_page_box(&self.decode(z)?, self.shape[2], &ext, &mut out);
        }
        Ok((out, (n * self.dtype.size()) as u64))
    }
}

/// Anything tiff2zarr can read page by page.
pub enum PageInput {
    Stack(TiffSource),
    Slices(TiffSlicesSource),
}

impl PageInput {
    pub fn open(path: &Path) -> Result<PageInput> {
        if path.is_dir() {
            Ok(PageInput::Slices(TiffSlicesSource::open(path)?))
        } else {
            let mut magic = [0u8; 4];
            use std::io::Read;
            let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
            let n = f.read(&mut magic).unwrap_or(0);
            if n < 4 || !is_tiff_magic(&magic) {
                bail!("{}: not a TIFF file", path.display());
            }
            Ok(PageInput::Stack(TiffSource::open(path)?))
        }
    }
    pub fn shape(&self) -> [usize; 3] {
        match self {
            PageInput::Stack(s) => s.shape,
            PageInput::Slices(s) => s.shape,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            PageInput::Stack(s) => s.dtype,
            PageInput::Slices(s) => s.dtype,
        }
    }
    /// The voxel size the TIFF metadata records, if any.
    pub fn voxel_size(&self) -> Option<VoxelSize> {
        match self {
            PageInput::Stack(s) => s.voxel_size.clone(),
            PageInput::Slices(s) => s.voxel_size.clone(),
        }
    }
    pub fn read_pages(&self, z0: usize, z1: usize) -> Result<TypedBuf> {
        match self {
            PageInput::Stack(s) => s.read_pages(z0, z1),
            PageInput::Slices(s) => s.read_pages(z0, z1),
        }
    }
}
