//! The comparison pictures of `ereg` (spam-ereg's three: im1 − im2(Φx) signed, its absolute
//! value, and a checkerboard of both), and the PNG encoders the viewer's overlays use.
//!
//! Why a module of its own: `render.rs` holds the slices the figures share (a plane of one
//! image, image 2 warped by Φ); what only the pages draw lives here.

use anyhow::{bail, Result};
use ndarray::Array2;

use super::render::{encode_grey, PairView, Picture, SliceRequest};
use crate::phi::Phi;

/// How image 1 and image 2 moved by Φ are compared on one slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// im1 − im2(Φx): mid grey where they agree, darker where image 2 is brighter.
    Signed,
    /// |im1 − im2(Φx)|: black where they agree.
    Absolute,
    /// Squares of image 1 and of image 2(Φx) alternating, this many across each side.
    Checker(usize),
}

/// The most squares a checkerboard has across a side: beyond, a square is smaller than a voxel
/// on any slice worth looking at.
pub const MAX_SQUARES: usize = 256;

impl Comparison {
    /// `signed`, `abs` (or `diff`, the older name), `checker` with `squares` per side.
    pub fn parse(name: &str, squares: Option<usize>) -> Result<Comparison> {
        Ok(match name {
            "signed" => Comparison::Signed,
            "abs" | "diff" => Comparison::Absolute,
            "checker" => {
                let n = squares.unwrap_or(8);
                if !(1..=MAX_SQUARES).contains(&n) {
                    bail!("squares: {n} is not within 1..={MAX_SQUARES}");
                }
                Comparison::Checker(n)
            }
            other => bail!("comparison '{other}': signed, abs or checker"),
        })
    }
}

/// Values of image 1 and of image 2 at Φ(x) on one slice (NaN where Φ(x) leaves image 2).
fn pair_planes(view: &PairView, axis: usize, index: usize, phi_full: &Phi) -> Result<(Array2<f32>, Array2<f32>)> {
    let req = SliceRequest { picture: Picture::Image1, axis, index, phi: *phi_full, lo: 0.0, hi: 1.0 };
    let one = view.values(&req)?;
    let two = view.warped_plane(axis, index, &view.level_phi(phi_full))?;
    Ok((one, two))
}

/// The comparison of one slice of image 1 with image 2 moved by Φ (full-resolution
/// translation), as grey values: grey levels `lo..hi` of the images map to 0..255; a signed
/// difference maps −(hi − lo)..(hi − lo) to 0..255 (0 is mid grey), an absolute one
/// 0..(hi − lo). Where image 2 moved out of view the picture is black.
pub fn comparison_values(view: &PairView, axis: usize, index: usize, phi_full: &Phi, how: Comparison, lo: f32, hi: f32) -> Result<(Array2<f32>, f32, f32)> {
    let (one, two) = pair_planes(view, axis, index, phi_full)?;
    let span = hi - lo;
    Ok(match how {
        Comparison::Signed => (ndarray::Zip::from(&one).and(&two).map_collect(|p, q| p - q), -span, span),
        Comparison::Absolute => (ndarray::Zip::from(&one).and(&two).map_collect(|p, q| (p - q).abs()), 0.0, span),
        Comparison::Checker(n) => {
            let (h, w) = one.dim();
            let square = |i: usize, len: usize| i * n / len.max(1);
            let v = Array2::from_shape_fn((h, w), |(r, c)| if (square(r, h) + square(c, w)) % 2 == 0 { one[(r, c)] } else { two[(r, c)] });
            (v, lo, hi)
        }
    })
}

/// [`comparison_values`] as an 8-bit grey PNG.
pub fn comparison_png(view: &PairView, axis: usize, index: usize, phi_full: &Phi, how: Comparison, lo: f32, hi: f32) -> Result<Vec<u8>> {
    let (v, a, b) = comparison_values(view, axis, index, phi_full, how, lo, hi)?;
    encode_grey(&v, a, b)
}

/// An 8-bit RGBA PNG of `rows × columns` pixels given as RGBA quadruplets.
pub fn encode_rgba(width: usize, height: usize, rgba: &[u8]) -> Result<Vec<u8>> {
    if rgba.len() != width * height * 4 {
        bail!("RGBA picture: {} bytes for {width} × {height} pixels", rgba.len());
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| anyhow::anyhow!("PNG: {e}"))?;
        writer.write_image_data(rgba).map_err(|e| anyhow::anyhow!("PNG: {e}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{memory::MemorySource, ChunkCache, Volume};
    use std::sync::Arc;

    fn pair() -> PairView {
        let values = |add: f32| -> Vec<f32> { (0..6 * 8 * 10).map(|i| ((i / 80) * 100 + ((i / 10) % 8) * 10 + i % 10) as f32 + add).collect() };
        let cache = ChunkCache::new(1 << 20);
        let vol = |add: f32| Volume::new(Arc::new(MemorySource { path: "m".into(), shape: [6, 8, 10], chunk: [4; 3], data: Arc::new(values(add)) }), cache.clone());
        PairView::new(&vol(0.0), &vol(1.0), 1).unwrap()
    }

    #[test]
    fn signed_absolute_and_checker_values() {
        let p = pair();
        let id = Phi::identity();
        let (s, lo, hi) = comparison_values(&p, 0, 3, &id, Comparison::Signed, 0.0, 10.0).unwrap();
        assert_eq!((lo, hi), (-10.0, 10.0));
        // Image 2 is image 1 + 1: the signed difference is −1 inside (NaN at the far border).
        assert_eq!(s[(2, 2)], -1.0);
        let (a, ..) = comparison_values(&p, 0, 3, &id, Comparison::Absolute, 0.0, 10.0).unwrap();
        assert_eq!(a[(2, 2)], 1.0);
        let (c, ..) = comparison_values(&p, 0, 3, &id, Comparison::Checker(2), 0.0, 10.0).unwrap();
        // 8 × 10 pixels, 2 squares a side: (0, 0) is image 1, (0, 6) image 2, (5, 6) image 1.
        assert_eq!(c[(0, 0)], 300.0);
        assert_eq!(c[(0, 6)], 307.0);
        assert_eq!(c[(5, 6)], 356.0);
        assert!(Comparison::parse("checker", Some(0)).is_err() && Comparison::parse("x", None).is_err());
    }
}
