//! Exact synthetic test volumes of any size, generated chunk by chunk.
//!
//! Image 1 is the [`texture::Texture`] at integer points; image 2 is the texture at the
//! reference point of each voxel under a known [`deformation::Deformation`], so the truth
//! (written as a Φ field at grid nodes) has no interpolation error. Optional Gaussian noise
//! is drawn independently for each image, as in real scans.

pub mod deformation;
pub mod grains;
pub mod texture;

use std::path::Path;

use anyhow::Result;
use nalgebra::Vector3;
use rayon::prelude::*;

use crate::field::{make_grid, FieldKind, FieldRow, Layout, PhiField};
use crate::store::convert::PyramidWriter;
use crate::store::dtype::{DType, TypedBuf};
use crate::store::tiff_write::TiffStackWriter;
use crate::store::zarr::{ArrayLayout, ImageMeta};
use deformation::Deformation;
use texture::Texture;

/// Everything that defines a synthetic pair.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub shape: [usize; 3],
    pub texture: Texture,
    pub deformation: Deformation,
    /// Standard deviation of additive Gaussian noise (grey levels); 0 = none.
    pub noise: f64,
    pub dtype: DType,
}

/// Where a synthetic volume goes.
#[derive(Clone, Debug)]
pub enum SynthFormat {
    /// `labels`: an OME-Zarr image-label (segmentation), its pyramid by nearest neighbour.
    Zarr { layout: ArrayLayout, levels: usize, labels: bool },
    Tiff,
}

impl SynthSpec {
    /// The exact (noise-free, unquantised) grey value of image `image` (1 or 2) at voxel `p`.
    pub fn exact_value(&self, image: u8, p: [f64; 3]) -> f64 {
        let x = Vector3::new(p[0], p[1], p[2]);
        let r = if image == 1 { x } else { self.deformation.inverse(&x) };
        self.texture.eval([r[0], r[1], r[2]])
    }

    /// The stored value of voxel `p`: exact value plus noise, rounded for integer types.
    pub fn voxel(&self, image: u8, p: [usize; 3]) -> f64 {
        self.finish_voxel(image, p, self.exact_value(image, [p[0] as f64, p[1] as f64, p[2] as f64]))
    }

    /// Planes `[z0, z1)` of image `image` in the stored type.
    pub fn planes(&self, image: u8, z0: usize, z1: usize) -> TypedBuf {
        let (ny, nx) = (self.shape[1], self.shape[2]);
        let vals: Vec<f32> = if self.deformation.fields.is_empty() {
            // Affine (or no) deformation: splat bumps plane by plane, in parallel.
            let k = self.reference_map(image);
            let mut vals = vec![0f32; (z1 - z0) * ny * nx];
            vals.par_chunks_mut(ny * nx).enumerate().for_each(|(i, plane)| {
                let z = z0 + i;
                let mut buf = vec![self.texture.base; 64 * nx];
                for y in (0..ny).step_by(64) {
                    let rows = 64.min(ny - y);
                    let b = &mut buf[..rows * nx];
                    b.iter_mut().for_each(|v| *v = self.texture.base);
                    self.texture.splat_affine([z, y, 0], [1, rows, nx], &k, b);
                    for (j, v) in b.iter().enumerate() {
                        plane[y * nx + j] = self.finish_voxel(image, [z, y + j / nx, j % nx], *v) as f32;
                    }
                }
            });
            vals
        } else {
            let rows: Vec<(usize, usize)> = (z0..z1).flat_map(|z| (0..ny).map(move |y| (z, y))).collect();
            rows.par_iter().flat_map_iter(|&(z, y)| (0..nx).map(move |x| self.voxel(image, [z, y, x]) as f32)).collect()
        };
        TypedBuf::from_f32(self.dtype, &vals)
    }

    /// The affine map from voxel x of image `image` to its reference point (identity for image 1).
    fn reference_map(&self, image: u8) -> [[f64; 4]; 3] {
        let inv = if image == 1 { crate::phi::identity() } else { self.deformation.phi.try_inverse().expect("invertible Φ") };
        let c = self.deformation.centre;
        // X = c + K (x − c) + k  =  K x + (c − K c + k)
        std::array::from_fn(|i| {
            let ki = [inv[(i, 0)], inv[(i, 1)], inv[(i, 2)]];
            let off = c[i] - (ki[0] * c[0] + ki[1] * c[1] + ki[2] * c[2]) + inv[(i, 3)];
            [ki[0], ki[1], ki[2], off]
        })
    }

    /// Noise and rounding applied to an exact value.
    fn finish_voxel(&self, image: u8, p: [usize; 3], exact: f64) -> f64 {
        let idx = ((p[0] * self.shape[1] + p[1]) * self.shape[2] + p[2]) as u64;
        stored_value(exact, self.noise, self.texture.seed, image, idx, self.dtype)
    }

    /// Writes image `image` to `path` (created; callers handle `.partial` naming).
    pub fn write(&self, image: u8, path: &Path, format: &SynthFormat, progress: bool) -> Result<()> {
        write_volume(self.shape, self.dtype, path, format, &format!("im{image}"), progress, |z0, z1| self.planes(image, z0, z1))
    }

    /// The true Φ at spam's grid nodes (`makeGrid` with spacing `ns`), in the ldic layout.
    pub fn truth(&self, ns: [usize; 3]) -> PhiField {
        let (nodes, dims) = make_grid(self.shape, ns);
        let mut f = PhiField::new(FieldKind::Grid { dims, spacing: ns.map(|v| v as f64) }, Layout::Ldic);
        for (i, p) in nodes.iter().enumerate() {
            f.push(FieldRow { cc: 1.0, ..FieldRow::truth(i as i64, *p, self.deformation.phi_at(p)) });
        }
        f
    }
}

/// What a synthetic voxel stores: its exact value (scaled to the type's range, see
/// [`grey_scale`]) plus Gaussian noise of standard deviation `noise` in stored grey levels
/// (drawn from the seed, the image and the voxel's flat index, so any slab can be made
/// alone), rounded for integer types.
pub fn stored_value(exact: f64, noise: f64, seed: u64, image: u8, index: u64, dtype: DType) -> f64 {
    let mut v = exact * grey_scale(dtype);
    if noise > 0.0 {
        v += noise * texture::noise(seed, image as u64, index);
    }
    if dtype.is_integer() {
        v = v.round();
    }
    v
}

/// The textures are made for 16-bit grey levels (tens of thousands); a narrower integer type
/// gets them scaled to its range, so uint8 images have contrast instead of 255 everywhere.
pub fn grey_scale(dtype: DType) -> f64 {
    match dtype {
        DType::U8 => u8::MAX as f64 / u16::MAX as f64,
        DType::I16 => i16::MAX as f64 / u16::MAX as f64,
        _ => 1.0,
    }
}

/// Writes a volume generated slab by slab: `planes(z0, z1)` gives planes `[z0, z1)` in
/// `dtype`. Zarr output carries the pyramid and OME metadata; TIFF is written page by page.
pub fn write_volume(
    shape: [usize; 3],
    dtype: DType,
    path: &Path,
    format: &SynthFormat,
    name: &str,
    progress: bool,
    planes: impl Fn(usize, usize) -> TypedBuf,
) -> Result<()> {
    let bar = crate::progress::bar(shape[0] as u64, &format!("synth {name}"), progress);
    match format {
        SynthFormat::Zarr { layout, levels, labels } => {
            std::fs::create_dir_all(path)?;
            let mut extra = serde_json::Map::new();
            extra.insert("tool".into(), serde_json::json!(format!("dvc-stream synth {}", env!("CARGO_PKG_VERSION"))));
            let meta = ImageMeta { name: name.to_string(), voxel_size: crate::store::voxel_size::VoxelSize::unknown(), labels: *labels, extra };
            let mut w = PyramidWriter::create(path, &meta, shape, dtype, layout, *levels)?;
            let d = w.slab_depth();
            for z0 in (0..shape[0]).step_by(d) {
                let z1 = (z0 + d).min(shape[0]);
                w.write_planes(planes(z0, z1))?;
                bar.inc((z1 - z0) as u64);
            }
            w.finish()?;
        }
        SynthFormat::Tiff => {
            let mut w = TiffStackWriter::create(path, shape, dtype, false)?;
            for z0 in (0..shape[0]).step_by(16) {
                let z1 = (z0 + 16).min(shape[0]);
                w.write_pages(&planes(z0, z1))?;
                bar.inc((z1 - z0) as u64);
            }
            w.finish()?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phi::{compute_phi, PhiComponents};

    #[test]
    fn image2_is_texture_at_inverse() {
        let phi = compute_phi(&PhiComponents { t: Some([1.3, -2.7, 0.4]), r: Some([5.0, 0.0, 0.0]), ..Default::default() });
        let spec = SynthSpec {
            shape: [20, 20, 20],
            texture: Texture::new(1),
            deformation: Deformation::affine(phi, Vector3::new(9.5, 9.5, 9.5)),
            noise: 0.0,
            dtype: DType::F32,
        };
        let p = [7usize, 11, 3];
        let x = Vector3::new(7.0, 11.0, 3.0);
        let back = spec.deformation.inverse(&x);
        assert!((spec.voxel(2, p) - spec.texture.eval([back[0], back[1], back[2]])).abs() < 1e-9);
        assert_eq!(spec.voxel(1, p), spec.texture.eval([7.0, 11.0, 3.0]));
    }
}
