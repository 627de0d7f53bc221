//! Orthogonal slices of a volume, and of the difference im1 − im2(Φx), as 8-bit grey PNG.
//!
//! Φ acts as in a registration (spam-compat.md §3.2): image 2 is sampled at c + F(x − c) + t
//! about the image centre c, so the difference is small when Φ is the registration of the
//! pair. On a pyramid level of bin b the translation is divided by b.

use anyhow::{bail, Result};
use ndarray::Array2;

use crate::phi::{self, Phi};
use crate::store::Volume;

/// Which picture of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Picture {
    Image1,
    Image2,
    /// |im1 − im2(Φx)|.
    Difference,
}

impl Picture {
    pub fn parse(s: &str) -> Option<Picture> {
        Some(match s {
            "1" | "im1" => Picture::Image1,
            "2" | "im2" => Picture::Image2,
            "diff" => Picture::Difference,
            _ => return None,
        })
    }
}

/// One slice to render: `axis` 0, 1, 2 = Z, Y, X; grey levels `lo..hi` map to 0..255
/// (the difference maps 0..hi − lo).
#[derive(Clone, Debug)]
pub struct SliceRequest {
    pub picture: Picture,
    pub axis: usize,
    pub index: usize,
    pub phi: Phi,
    pub lo: f32,
    pub hi: f32,
}

/// The two volumes at the level being viewed.
pub struct PairView {
    pub im1: Volume,
    pub im2: Volume,
    pub bin: usize,
}

impl PairView {
    pub fn new(im1: &Volume, im2: &Volume, bin: usize) -> Result<PairView> {
        if im1.shape() != im2.shape() {
            bail!("{} and {} differ in shape ({:?} and {:?})", im1.path().display(), im2.path().display(), im1.shape(), im2.shape());
        }
        Ok(PairView { im1: im1.level(bin)?, im2: im2.level(bin)?, bin })
    }

    /// Shape of the viewed level.
    pub fn shape(&self) -> [usize; 3] {
        self.im1.shape()
    }

    /// Φ (full-resolution translation) as it acts on this level.
    pub fn level_phi(&self, phi_full: &Phi) -> Phi {
        let mut p = *phi_full;
        for i in 0..3 {
            p[(i, 3)] /= self.bin as f64;
        }
        p
    }

    /// The slice's values: rows and columns are the two other axes in Z, Y, X order.
    pub fn values(&self, req: &SliceRequest) -> Result<Array2<f32>> {
        let s = self.shape();
        if req.axis > 2 {
            bail!("axis {} does not exist (0, 1, 2 = Z, Y, X)", req.axis);
        }
        if req.index >= s[req.axis] {
            bail!("slice {} is outside 0..{} on axis {}", req.index, s[req.axis], req.axis);
        }
        let (a, b) = other_axes(req.axis);
        let plane = |v: &Volume| -> Result<Array2<f32>> {
            let mut lo = [0i64; 3];
            let mut hi = [s[0] as i64, s[1] as i64, s[2] as i64];
            lo[req.axis] = req.index as i64;
            hi[req.axis] = req.index as i64 + 1;
            let bx = v.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
            Ok(bx.into_shape_with_order((s[a], s[b])).expect("one voxel thick"))
        };
        match req.picture {
            Picture::Image1 => plane(&self.im1),
            Picture::Image2 => plane(&self.im2),
            Picture::Difference => {
                let one = plane(&self.im1)?;
                let two = self.warped_plane(req.axis, req.index, &self.level_phi(&req.phi))?;
                Ok(ndarray::Zip::from(&one).and(&two).map_collect(|p, q| (p - q).abs()))
            }
        }
    }

    /// Image 2 sampled at Φ(x) for every x of the slice (NaN where Φ(x) leaves the image):
    /// only the box of image 2 that the slice maps into is read.
    pub(crate) fn warped_plane(&self, axis: usize, index: usize, phi: &Phi) -> Result<Array2<f32>> {
        let s = self.shape();
        let (a, b) = other_axes(axis);
        let c: [f64; 3] = std::array::from_fn(|k| (s[k] as f64 - 1.0) / 2.0);
        let map = |x: [f64; 3]| -> [f64; 3] {
            std::array::from_fn(|i| c[i] + (0..3).map(|j| phi[(i, j)] * (x[j] - c[j])).sum::<f64>() + phi[(i, 3)])
        };
        let point = |u: usize, v: usize| -> [f64; 3] {
            let mut x = [0.0; 3];
            x[axis] = index as f64;
            x[a] = u as f64;
            x[b] = v as f64;
            x
        };
        // An affine map sends the slice's rectangle to a parallelogram: its corners bound it.
        let corners = [point(0, 0), point(s[a] - 1, 0), point(0, s[b] - 1), point(s[a] - 1, s[b] - 1)].map(map);
        let lo: [i64; 3] = std::array::from_fn(|k| corners.iter().map(|q| q[k].floor() as i64).min().unwrap().max(0));
        let hi: [i64; 3] = std::array::from_fn(|k| (corners.iter().map(|q| q[k].floor() as i64).max().unwrap() + 2).min(s[k] as i64));
        let mut out = Array2::from_elem((s[a], s[b]), f32::NAN);
        if !phi::is_finite(phi) || (0..3).any(|k| hi[k] <= lo[k]) {
            return Ok(out);
        }
        let bx = self.im2.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
        let d = bx.dim();
        let n = [d.0, d.1, d.2];
        let view = bx.view();
        for ((u, v), o) in out.indexed_iter_mut() {
            let q = map(point(u, v));
            let l: [f32; 3] = std::array::from_fn(|k| (q[k] - lo[k] as f64) as f32);
            // Both neighbours inside the box on every axis (the box holds every sampled one).
            if (0..3).all(|k| l[k] >= 0.0 && (l[k].floor() as usize) + 1 < n[k]) {
                *o = crate::kernels::interp::trilinear(&view, l);
            }
        }
        Ok(out)
    }

    /// The slice as a PNG (8-bit grey).
    pub fn png(&self, req: &SliceRequest) -> Result<Vec<u8>> {
        let v = self.values(req)?;
        let (lo, hi) = match req.picture {
            Picture::Difference => (0.0, req.hi - req.lo),
            _ => (req.lo, req.hi),
        };
        encode_grey(&v, lo, hi)
    }
}

/// The two axes of a slice across `axis`, in Z, Y, X order.
pub fn other_axes(axis: usize) -> (usize, usize) {
    match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    }
}

/// The grey level of a value: `lo..hi` → 0..255, clamped; NaN is 0.
pub fn grey(v: f32, lo: f32, hi: f32) -> u8 {
    if v.is_nan() {
        return 0;
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    (((v - lo) / span * 255.0).round().clamp(0.0, 255.0)) as u8
}

/// An 8-bit grey PNG of `values` (rows × columns).
pub fn encode_grey(values: &Array2<f32>, lo: f32, hi: f32) -> Result<Vec<u8>> {
    let (h, w) = values.dim();
    let pixels: Vec<u8> = values.iter().map(|&v| grey(v, lo, hi)).collect();
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| anyhow::anyhow!("PNG: {e}"))?;
        writer.write_image_data(&pixels).map_err(|e| anyhow::anyhow!("PNG: {e}"))?;
    }
    Ok(out)
}

/// Grey levels between the 0.5th and 99.5th percentiles of image 1's middle Z slice: a
/// contrast that suits most CT scans.
pub fn default_contrast(view: &PairView) -> Result<(f32, f32)> {
    let s = view.shape();
    let req = SliceRequest { picture: Picture::Image1, axis: 0, index: s[0] / 2, phi: Phi::identity(), lo: 0.0, hi: 1.0 };
    let mut v: Vec<f32> = view.values(&req)?.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Ok((0.0, 1.0));
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (at(0.005), at(0.995));
    Ok(if hi > lo { (lo, hi) } else { (lo, lo + 1.0) })
}
