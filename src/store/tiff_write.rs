//! Writing 3D TIFF stacks page by page (zarr2tiff, deformed images, field TIFFs).
//!
//! Pages are appended one at a time, so a stack larger than RAM can be written from a
//! stream of slabs. BigTIFF is used automatically when the data would not fit a classic
//! TIFF's 32-bit offsets.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};
use tiff::encoder::{colortype, Rational, TiffEncoder, TiffKind, TiffKindBig, TiffKindStandard};
use tiff::tags::Tag;

use super::dtype::{DType, TypedBuf};
use super::voxel_size::{imagej_description, resolution, VoxelSize};

/// The file under the encoder's buffer, keeping the first write error: the buffer's last
/// flush happens when the encoder is dropped, where an error (a full disk) would be lost.
struct Kept {
    file: File,
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl Write for Kept {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf).inspect_err(|e| {
            let mut k = self.error.lock().unwrap();
            if k.is_none() {
                *k = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Kept {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

enum Enc {
    Standard(TiffEncoder<BufWriter<Kept>, TiffKindStandard>),
    Big(TiffEncoder<BufWriter<Kept>, TiffKindBig>),
}

/// A multi-page grey TIFF being written (at a partial name of the run's output set); call
/// [`TiffStackWriter::finish`] to learn whether all of it reached the file.
pub struct TiffStackWriter {
    path: PathBuf,
    error: Arc<Mutex<Option<std::io::Error>>>,
    enc: Enc,
    width: u32,
    height: u32,
    dtype: DType,
    pages: usize,
    total_pages: usize,
    tags: Option<PageTags>,
}

/// What every page of a stack carries beside its pixels: ImageJ's resolution tags and, on
/// the first page, its description (`spacing=`, `unit=`), so Fiji and tifffile read the voxel
/// size back.
struct PageTags {
    x: Rational,
    y: Rational,
    description: String,
}

fn write_page<W: Write + Seek, K: TiffKind>(enc: &mut TiffEncoder<W, K>, w: u32, h: u32, page: &TypedBuf, tags: Option<&PageTags>, first: bool) -> Result<()> {
    macro_rules! put {
        ($c:ty, $v:expr) => {{
            let mut img = enc.new_image::<$c>(w, h).map_err(|e| anyhow!("{e}"))?;
            if let Some(t) = tags {
                let d = img.encoder();
                d.write_tag(Tag::XResolution, t.x.clone()).map_err(|e| anyhow!("{e}"))?;
                d.write_tag(Tag::YResolution, t.y.clone()).map_err(|e| anyhow!("{e}"))?;
                // No absolute unit: ImageJ's unit is in the description.
                d.write_tag(Tag::ResolutionUnit, 1u16).map_err(|e| anyhow!("{e}"))?;
                if first {
                    d.write_tag(Tag::ImageDescription, t.description.as_str()).map_err(|e| anyhow!("{e}"))?;
                }
            }
            img.write_data($v).map_err(|e| anyhow!("{e}"))
        }};
    }
    match page {
        TypedBuf::U8(v) => put!(colortype::Gray8, v),
        TypedBuf::U16(v) => put!(colortype::Gray16, v),
        TypedBuf::I16(v) => put!(colortype::GrayI16, v),
        TypedBuf::U32(v) => put!(colortype::Gray32, v),
        TypedBuf::F32(v) => put!(colortype::Gray32Float, v),
        TypedBuf::F64(v) => put!(colortype::Gray64Float, v),
    }
}

impl TiffStackWriter {
    /// Creates `path` for `shape[0]` pages of `shape[1] × shape[2]` pixels.
    pub fn create(path: &Path, shape: [usize; 3], dtype: DType, force_big: bool) -> Result<TiffStackWriter> {
        let f = File::create(path).map_err(|e| anyhow!("{}: cannot create ({e})", path.display()))?;
        let total = shape.iter().product::<usize>() as u64 * dtype.size() as u64;
        let big = force_big || total > (3u64 << 30);
        let error = Arc::new(Mutex::new(None));
        let w = BufWriter::with_capacity(1 << 20, Kept { file: f, error: error.clone() });
        let enc = if big {
            Enc::Big(TiffEncoder::new_big(w).map_err(|e| anyhow!("{}: {e}", path.display()))?)
        } else {
            Enc::Standard(TiffEncoder::new(w).map_err(|e| anyhow!("{}: {e}", path.display()))?)
        };
        Ok(TiffStackWriter { path: path.to_path_buf(), error, enc, width: shape[2] as u32, height: shape[1] as u32, dtype, pages: 0, total_pages: shape[0], tags: None })
    }

    /// Records the voxel size in every page (call before the first page; `None` writes no
    /// resolution tags).
    pub fn set_voxel_size(&mut self, voxel_size: Option<VoxelSize>) {
        self.tags = voxel_size.map(|v| {
            let ((xn, xd), (yn, yd)) = (resolution(v.zyx[2]), resolution(v.zyx[1]));
            PageTags { x: Rational { n: xn, d: xd }, y: Rational { n: yn, d: yd }, description: imagej_description(self.total_pages, &v) }
        });
    }

    /// Appends pages (a whole number of planes).
    pub fn write_pages(&mut self, data: &TypedBuf) -> Result<()> {
        if data.dtype() != self.dtype {
            bail!("internal: writing {} pages into a {} TIFF", data.dtype(), self.dtype);
        }
        let plane = self.width as usize * self.height as usize;
        if plane == 0 || !data.len().is_multiple_of(plane) {
            bail!("internal: {} values is not a whole number of {}x{} pages", data.len(), self.width, self.height);
        }
        for p in 0..data.len() / plane {
            let page = slice_typed(data, p * plane, (p + 1) * plane);
            let first = self.pages == 0;
            let r = match &mut self.enc {
                Enc::Standard(e) => write_page(e, self.width, self.height, &page, self.tags.as_ref(), first),
                Enc::Big(e) => write_page(e, self.width, self.height, &page, self.tags.as_ref(), first),
            };
            r.map_err(|e| anyhow!("{}: cannot write ({e})", self.path.display()))?;
            self.pages += 1;
        }
        Ok(())
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Writes out what is buffered; fails, naming the file, if any of it did not reach it.
    pub fn finish(self) -> Result<()> {
        let TiffStackWriter { path, error, enc, .. } = self;
        drop(enc);
        if let Some(e) = error.lock().unwrap().take() {
            bail!("{}: cannot write ({e})", path.display());
        }
        Ok(())
    }
}

/// A copy of `[a, b)` of a typed buffer.
pub fn slice_typed(t: &TypedBuf, a: usize, b: usize) -> TypedBuf {
    match t {
        TypedBuf::U8(v) => TypedBuf::U8(v[a..b].to_vec()),
        TypedBuf::U16(v) => TypedBuf::U16(v[a..b].to_vec()),
        TypedBuf::I16(v) => TypedBuf::I16(v[a..b].to_vec()),
        TypedBuf::U32(v) => TypedBuf::U32(v[a..b].to_vec()),
        TypedBuf::F32(v) => TypedBuf::F32(v[a..b].to_vec()),
        TypedBuf::F64(v) => TypedBuf::F64(v[a..b].to_vec()),
    }
}

/// Writes a whole (small) volume as a TIFF stack in one go.
pub fn write_tiff(path: &Path, shape: [usize; 3], data: &TypedBuf) -> Result<()> {
    let mut w = TiffStackWriter::create(path, shape, data.dtype(), false)?;
    w.write_pages(data)?;
    w.finish()
}
