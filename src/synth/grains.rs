//! Exact synthetic granular pairs: non-overlapping grains, each moved by its own known rigid
//! motion, and the label volume of image 1.
//!
//! Discrete DVC measures one Φ per grain, so its test data must have grains whose motion is
//! known exactly. Each grain is an ellipsoid (or a sphere) with its own speckle texture
//! attached to the grain, so that a rotation moves the texture with it and can be measured. The
//! grey value of a voxel is a continuous function of the point: the texture evaluated in the
//! grain's own frame, blended into a uniform background by a one-voxel partial-volume ramp
//! of the (first-order) signed distance to the surface. Image 2 evaluates the same function
//! at each grain's inverse motion, so there is no interpolation error at any size, and the
//! images are generated slab by slab like the other synthetic volumes.

use nalgebra::{Matrix3, Vector3};
use rand_like::Rng;
use rayon::prelude::*;

use super::texture::Texture;
use crate::field::{FieldKind, FieldRow, Layout, PhiField};
use crate::phi::{self, Phi};
use crate::store::dtype::{DType, TypedBuf};

/// A tiny deterministic generator over [`super::texture::mix64`] (no extra dependency).
mod rand_like {
    use super::super::texture::{mix64, unit};

    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(mix64(seed ^ 0x6A41_4E53))
        }
        /// Uniform in [0, 1).
        pub fn next(&mut self) -> f64 {
            self.0 = mix64(self.0);
            unit(self.0)
        }
        pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.next()
        }
        /// A uniform direction on the unit sphere.
        pub fn direction(&mut self) -> [f64; 3] {
            let z = self.range(-1.0, 1.0);
            let a = self.range(0.0, std::f64::consts::TAU);
            let s = (1.0 - z * z).sqrt();
            [z, s * a.sin(), s * a.cos()]
        }
    }
}

/// The shape of the grains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrainShape {
    /// Semi-axes drawn independently in the radius range, random orientation.
    Ellipsoid,
    /// One radius drawn in the range.
    Sphere,
}

/// What fills a grain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrainFill {
    /// A speckle texture attached to the grain (rotations are measurable).
    Speckle,
    /// A uniform grey (a sphere's rotation is then unobservable).
    Uniform,
}

/// How to draw a granular pair.
#[derive(Clone, Debug)]
pub struct GranularParams {
    pub shape: [usize; 3],
    pub count: usize,
    pub radius: [f64; 2],
    pub max_translation: f64,
    /// Largest rotation angle in degrees (0 = translations only).
    pub max_rotation: f64,
    pub grain_shape: GrainShape,
    pub fill: GrainFill,
    /// Speckle size inside grains (voxels).
    pub speckle: f64,
    pub seed: u64,
    /// Smallest distance between the bounding spheres of two grains, in both images:
    /// [`GAP`] keeps their blurred edges apart; 0 lets grains touch (their edges blend, as
    /// grains in contact do in a scan).
    pub gap: f64,
}

/// One grain: its geometry in image 1 and its motion.
#[derive(Clone, Debug)]
pub struct Grain {
    pub centre: Vector3<f64>,
    pub semi_axes: [f64; 3],
    /// Columns are the ellipsoid's axes in (Z, Y, X).
    pub orientation: Matrix3<f64>,
    /// Rotation about the centre (image 1 → image 2).
    pub rotation: Matrix3<f64>,
    pub translation: Vector3<f64>,
    pub texture: Texture,
}

impl Grain {
    /// The largest distance from the centre to the surface.
    pub fn bounding_radius(&self) -> f64 {
        self.semi_axes.iter().cloned().fold(0.0, f64::max)
    }

    /// Φ of the grain about its centre: x = c + R (X − c) + t.
    pub fn phi(&self) -> Phi {
        phi::from_f_t(&self.rotation, &self.translation)
    }

    /// First-order signed distance (voxels, negative inside) of a point given relative to
    /// the centre in image 1's frame; exact for spheres.
    #[inline]
    fn signed_distance(&self, rel: &Vector3<f64>) -> f64 {
        let y = self.orientation.transpose() * rel;
        let a = &self.semi_axes;
        let k = ((y[0] / a[0]).powi(2) + (y[1] / a[1]).powi(2) + (y[2] / a[2]).powi(2)).sqrt();
        if k < 1e-9 {
            return -a.iter().cloned().fold(f64::INFINITY, f64::min);
        }
        let g = Vector3::new(y[0] / (a[0] * a[0]), y[1] / (a[1] * a[1]), y[2] / (a[2] * a[2])) / k;
        (k - 1.0) / g.norm()
    }
}

/// Half-width of a grain's edge, voxels.
pub const EDGE_HALF_WIDTH: f64 = 1.5;

/// How much of a voxel at signed distance `s` from the surface shows the grain: a smooth
/// (C²) step over 2·EDGE_HALF_WIDTH voxels, the partial volume of the voxel blurred by the
/// scanner's point-spread function. A sharp one-voxel step is not band-limited: every
/// interpolator aliases on it, and since a grain's surface is what shows its rotation, that
/// aliasing alone biased measured rotations by tenths of a degree.
#[inline]
pub fn coverage(s: f64) -> f64 {
    let u = (0.5 - s / (2.0 * EDGE_HALF_WIDTH)).clamp(0.0, 1.0);
    u * u * u * (u * (6.0 * u - 15.0) + 10.0)
}

/// Grey level between grains.
pub const BACKGROUND: f64 = 5000.0;

/// A set of grains in a box and how to render them.
#[derive(Clone, Debug)]
pub struct Granular {
    pub shape: [usize; 3],
    pub grains: Vec<Grain>,
    pub fill: GrainFill,
    /// Grains overlapping each plane, per image (index 0: image 1, 1: image 2).
    planes: [Vec<Vec<u32>>; 2],
}

/// The default gap between grain bounding spheres, in both images: the edges of two grains
/// never overlap (each reaches EDGE_HALF_WIDTH outside its surface).
pub const GAP: f64 = 2.0 * EDGE_HALF_WIDTH + 0.5;

impl Granular {
    /// Places `count` grains by random sequential addition (each grain whole inside the box
    /// in both images, bounding spheres `p.gap` apart in both images).
    pub fn generate(p: &GranularParams) -> anyhow::Result<Granular> {
        if !(p.radius[0] >= 1.0 && p.radius[1] >= p.radius[0]) {
            anyhow::bail!("--grain-radius: need 1 ≤ min ≤ max (got {:?})", p.radius);
        }
        if !(p.gap >= 0.0 && p.gap.is_finite()) {
            anyhow::bail!("--grain-gap: need a gap ≥ 0 voxels (got {})", p.gap);
        }
        let mut rng = Rng::new(p.seed);
        let cell = 2.0 * p.radius[1] + p.gap + 2.0 * p.max_translation;
        let dims: [usize; 3] = std::array::from_fn(|a| ((p.shape[a] as f64 / cell).ceil() as usize).max(1));
        let mut hash: Vec<Vec<u32>> = vec![Vec::new(); dims[0] * dims[1] * dims[2]];
        let cell_of = |c: &Vector3<f64>| -> [usize; 3] { std::array::from_fn(|a| ((c[a] / cell).max(0.0) as usize).min(dims[a] - 1)) };
        let mut grains: Vec<Grain> = Vec::with_capacity(p.count);
        let attempts = 200 * p.count + 1000;
        for _ in 0..attempts {
            if grains.len() == p.count {
                break;
            }
            let semi_axes = match p.grain_shape {
                GrainShape::Sphere => [rng.range(p.radius[0], p.radius[1]); 3],
                GrainShape::Ellipsoid => std::array::from_fn(|_| rng.range(p.radius[0], p.radius[1])),
            };
            let rb = semi_axes.iter().cloned().fold(0.0, f64::max);
            let t = Vector3::from(rng.direction()) * p.max_translation * rng.next().cbrt();
            let lo: [f64; 3] = std::array::from_fn(|a| rb + 2.0 + t[a].abs().max(0.0));
            let hi: [f64; 3] = std::array::from_fn(|a| p.shape[a] as f64 - 1.0 - rb - 2.0 - t[a].abs());
            if (0..3).any(|a| hi[a] <= lo[a]) {
                continue;
            }
            let c = Vector3::new(rng.range(lo[0], hi[0]), rng.range(lo[1], hi[1]), rng.range(lo[2], hi[2]));
            let k = cell_of(&c);
            let mut free = true;
            'scan: for z in k[0].saturating_sub(1)..(k[0] + 2).min(dims[0]) {
                for y in k[1].saturating_sub(1)..(k[1] + 2).min(dims[1]) {
                    for x in k[2].saturating_sub(1)..(k[2] + 2).min(dims[2]) {
                        for &j in &hash[(z * dims[1] + y) * dims[2] + x] {
                            let g = &grains[j as usize];
                            let need = rb + g.bounding_radius() + p.gap;
                            if (g.centre - c).norm() < need || (g.centre + g.translation - c - t).norm() < need {
                                free = false;
                                break 'scan;
                            }
                        }
                    }
                }
            }
            if !free {
                continue;
            }
            let orientation = match p.grain_shape {
                GrainShape::Sphere => Matrix3::identity(),
                GrainShape::Ellipsoid => {
                    let d = Vector3::from(rng.direction()) * rng.range(0.0, 180.0);
                    phi::rotation_matrix(&d)
                }
            };
            let angle = p.max_rotation * rng.next();
            let rotation = phi::rotation_matrix(&(Vector3::from(rng.direction()) * angle));
            let mut texture = Texture::new(p.seed.wrapping_mul(0x9E37).wrapping_add(grains.len() as u64 + 1));
            texture.cell = p.speckle;
            texture.octaves = 2;
            texture.base = 20000.0;
            texture.contrast = 25000.0;
            hash[(k[0] * dims[1] + k[1]) * dims[2] + k[2]].push(grains.len() as u32);
            grains.push(Grain { centre: c, semi_axes, orientation, rotation, translation: t, texture });
        }
        if grains.len() < p.count {
            anyhow::bail!(
                "only {} of {} grains fit in {:?} with radii {:?} and translations up to {}; use a larger --shape or fewer --grains",
                grains.len(),
                p.count,
                p.shape,
                p.radius,
                p.max_translation
            );
        }
        Ok(Granular::new(p.shape, grains, p.fill))
    }

    pub fn new(shape: [usize; 3], grains: Vec<Grain>, fill: GrainFill) -> Granular {
        let mut planes = [vec![Vec::new(); shape[0]], vec![Vec::new(); shape[0]]];
        for (i, g) in grains.iter().enumerate() {
            for (im, list) in planes.iter_mut().enumerate() {
                let cz = g.centre[0] + if im == 1 { g.translation[0] } else { 0.0 };
                let r = g.bounding_radius() + EDGE_HALF_WIDTH + 1.0;
                let z0 = (cz - r).floor().max(0.0) as usize;
                let z1 = ((cz + r).ceil() as usize).min(shape[0] - 1);
                for z in z0..=z1 {
                    list[z].push(i as u32);
                }
            }
        }
        Granular { shape, grains, fill, planes }
    }

    /// The bounding box (inclusive lo, exclusive hi) of grain `g` in image `image`, within
    /// the planes `[z0, z1)` and the volume.
    fn grain_box(&self, g: &Grain, image: u8, z0: usize, z1: usize) -> Option<([usize; 3], [usize; 3])> {
        let c = if image == 2 { g.centre + g.translation } else { g.centre };
        let r = g.bounding_radius() + EDGE_HALF_WIDTH + 1.0;
        let lo: [usize; 3] = std::array::from_fn(|a| (c[a] - r).floor().max(0.0) as usize);
        let mut hi: [usize; 3] = std::array::from_fn(|a| ((c[a] + r).ceil() as usize + 1).min(self.shape[a]));
        let lo = [lo[0].max(z0), lo[1], lo[2]];
        hi[0] = hi[0].min(z1);
        if (0..3).any(|a| hi[a] <= lo[a]) {
            None
        } else {
            Some((lo, hi))
        }
    }

    /// Grey levels of planes `[z0, z1)` of image `image` (1 or 2), Z-major, exact (no noise).
    pub fn grey_planes(&self, image: u8, z0: usize, z1: usize) -> Vec<f64> {
        let (ny, nx) = (self.shape[1], self.shape[2]);
        let mut out = vec![BACKGROUND; (z1 - z0) * ny * nx];
        for gi in self.grains_in(image, z0, z1) {
            let g = &self.grains[gi];
            let Some((lo, hi)) = self.grain_box(g, image, z0, z1) else { continue };
            let d = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
            // Voxel x of this image ↦ point of the grain in image 1 relative to its centre:
            // image 1: x − c; image 2: Rᵀ (x − c − t).
            let (rot_t, shift) = if image == 2 { (g.rotation.transpose(), g.centre + g.translation) } else { (Matrix3::identity(), g.centre) };
            let mut tex = vec![0f64; d[0] * d[1] * d[2]];
            if self.fill == GrainFill::Speckle {
                // Texture coordinates: the grain-relative point, offset so that every grain's
                // texture starts from a different place of the (seeded) lattice.
                let off = rot_t * shift;
                let k: [[f64; 4]; 3] = std::array::from_fn(|i| [rot_t[(i, 0)], rot_t[(i, 1)], rot_t[(i, 2)], 1000.0 - off[i]]);
                tex.iter_mut().for_each(|v| *v = g.texture.base);
                g.texture.splat_affine(lo, d, &k, &mut tex);
            } else {
                tex.iter_mut().for_each(|v| *v = g.texture.base + 0.5 * g.texture.contrast);
            }
            let mut i = 0;
            for z in lo[0]..hi[0] {
                for y in lo[1]..hi[1] {
                    for x in lo[2]..hi[2] {
                        let rel = rot_t * (Vector3::new(z as f64, y as f64, x as f64) - shift);
                        let w = coverage(g.signed_distance(&rel));
                        if w > 0.0 {
                            out[((z - z0) * ny + y) * nx + x] += w * (tex[i] - BACKGROUND);
                        }
                        i += 1;
                    }
                }
            }
        }
        out
    }

    /// Planes `[z0, z1)` of image `image` as stored: the exact grey levels plus Gaussian
    /// noise of standard deviation `noise` (independent per image), rounded for integer types.
    pub fn planes(&self, image: u8, z0: usize, z1: usize, noise: f64, seed: u64, dtype: DType) -> TypedBuf {
        let plane = self.shape[1] * self.shape[2];
        let mut vals = vec![0f32; (z1 - z0) * plane];
        vals.par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
            let z = z0 + i;
            for (j, (o, v)) in out.iter_mut().zip(self.grey_planes(image, z, z + 1)).enumerate() {
                *o = super::stored_value(v, noise, seed, image, (z * plane + j) as u64, dtype) as f32;
            }
        });
        TypedBuf::from_f32(dtype, &vals)
    }

    /// The stored type of the label volume: uint16 while the labels fit, else uint32.
    pub fn label_dtype(&self) -> DType {
        if self.grains.len() < u16::MAX as usize { DType::U16 } else { DType::U32 }
    }

    /// The truth in spam's ddic layout: row k = grain k (row 0 the background, Φ = I), Φ of
    /// each grain about its centre (position = the centre, not the centre of mass of its
    /// voxels: move it with `phi::move_to` to compare at another point).
    pub fn truth(&self) -> PhiField {
        let mut f = PhiField::new(FieldKind::Labels, Layout::Ddic);
        let row = |id: usize, position: Vector3<f64>, phi: Phi| FieldRow::truth(id as i64, position, phi);
        f.push(FieldRow { return_status: crate::field::Status::NotRun, ..row(0, Vector3::zeros(), Phi::identity()) });
        for (i, g) in self.grains.iter().enumerate() {
            f.push(row(i + 1, g.centre, g.phi()));
        }
        f
    }

    /// Labels of planes `[z0, z1)` of image 1: grain k (1-based) where the voxel centre is
    /// inside it.
    pub fn label_planes(&self, z0: usize, z1: usize) -> Vec<f32> {
        let (ny, nx) = (self.shape[1], self.shape[2]);
        let mut out = vec![0f32; (z1 - z0) * ny * nx];
        for gi in self.grains_in(1, z0, z1) {
            let g = &self.grains[gi];
            let Some((lo, hi)) = self.grain_box(g, 1, z0, z1) else { continue };
            for z in lo[0]..hi[0] {
                for y in lo[1]..hi[1] {
                    for x in lo[2]..hi[2] {
                        if g.signed_distance(&(Vector3::new(z as f64, y as f64, x as f64) - g.centre)) <= 0.0 {
                            out[((z - z0) * ny + y) * nx + x] = (gi + 1) as f32;
                        }
                    }
                }
            }
        }
        out
    }

    /// The grey level of image `image` at any point (slow: every grain is visited); the
    /// plane renderer computes the same function faster.
    pub fn value_at(&self, image: u8, x: &Vector3<f64>) -> f64 {
        let mut v = BACKGROUND;
        for g in &self.grains {
            let (rot_t, shift) = if image == 2 { (g.rotation.transpose(), g.centre + g.translation) } else { (Matrix3::identity(), g.centre) };
            let rel = rot_t * (x - shift);
            let w = coverage(g.signed_distance(&rel));
            if w > 0.0 {
                let t = match self.fill {
                    GrainFill::Speckle => g.texture.eval([rel[0] + 1000.0, rel[1] + 1000.0, rel[2] + 1000.0]),
                    GrainFill::Uniform => g.texture.base + 0.5 * g.texture.contrast,
                };
                v += w * (t - BACKGROUND);
            }
        }
        v
    }

    fn grains_in(&self, image: u8, z0: usize, z1: usize) -> Vec<usize> {
        let list = &self.planes[(image == 2) as usize];
        let mut v: Vec<usize> = (z0..z1.min(self.shape[0])).flat_map(|z| list[z].iter().map(|&g| g as usize)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GranularParams {
        GranularParams {
            shape: [48, 50, 52],
            count: 6,
            radius: [4.0, 6.0],
            max_translation: 2.0,
            max_rotation: 10.0,
            grain_shape: GrainShape::Ellipsoid,
            fill: GrainFill::Speckle,
            speckle: 3.0,
            seed: 7,
            gap: GAP,
        }
    }

    #[test]
    fn grains_keep_apart_and_inside_in_both_images() {
        let g = Granular::generate(&params()).unwrap();
        assert_eq!(g.grains.len(), 6);
        for (i, a) in g.grains.iter().enumerate() {
            for b in &g.grains[i + 1..] {
                let need = a.bounding_radius() + b.bounding_radius() + GAP;
                assert!((a.centre - b.centre).norm() >= need);
                assert!((a.centre + a.translation - b.centre - b.translation).norm() >= need);
            }
            assert!(a.translation.norm() <= 2.0 + 1e-12);
        }
        let mut p = params();
        p.count = 10_000;
        assert!(Granular::generate(&p).unwrap_err().to_string().contains("grains fit"));
    }

    #[test]
    fn image2_is_image1_moved_by_each_grain_and_slabs_agree() {
        let g = Granular::generate(&params()).unwrap();
        let n = g.shape;
        let im1 = g.grey_planes(1, 0, n[0]);
        let im2 = g.grey_planes(2, 0, n[0]);
        // A slab on its own equals the same planes of the whole volume.
        let part = g.grey_planes(2, 17, 29);
        assert_eq!(&im2[17 * n[1] * n[2]..29 * n[1] * n[2]], &part[..]);
        // Image 2 at voxel x is image 1's continuous function at each grain's inverse motion
        // (and image 1 itself is that function at its voxels): no interpolation anywhere.
        for gr in &g.grains {
            let c2 = (gr.centre + gr.translation).map(|v| v.round());
            for o in [[0.0, 0.0, 0.0], [2.0, -3.0, 1.0], [-4.0, 1.0, 3.0]] {
                let x = c2 + Vector3::from(o);
                let back = gr.centre + gr.rotation.transpose() * (x - gr.centre - gr.translation);
                let got = im2[(x[0] as usize * n[1] + x[1] as usize) * n[2] + x[2] as usize];
                assert!((got - g.value_at(1, &back)).abs() < 1e-6, "{got} vs {}", g.value_at(1, &back));
                let x1 = gr.centre.map(|v| v.round()) + Vector3::from(o);
                let v1 = im1[(x1[0] as usize * n[1] + x1[1] as usize) * n[2] + x1[2] as usize];
                assert!((v1 - g.value_at(1, &x1)).abs() < 1e-6);
            }
        }
        // Uniform fill: the grey level depends on the shape only, checked exactly.
        let mut p = params();
        p.fill = GrainFill::Uniform;
        let u = Granular::generate(&p).unwrap();
        let u2 = u.grey_planes(2, 0, n[0]);
        for gr in &u.grains {
            let x = (gr.centre + gr.translation).map(|v| v.round());
            let rel = gr.rotation.transpose() * (x - gr.centre - gr.translation);
            let want = BACKGROUND + coverage(gr.signed_distance(&rel)) * (gr.texture.base + 0.5 * gr.texture.contrast - BACKGROUND);
            let got = u2[(x[0] as usize * n[1] + x[1] as usize) * n[2] + x[2] as usize];
            assert!((want - got).abs() < 1e-9);
        }
        assert!(im1.iter().any(|v| *v > 30000.0) && im1.contains(&BACKGROUND));
    }

    #[test]
    fn labels_mark_voxels_inside_each_grain() {
        let g = Granular::generate(&params()).unwrap();
        let n = g.shape;
        let lab = g.label_planes(0, n[0]);
        for (i, gr) in g.grains.iter().enumerate() {
            let c = gr.centre.map(|v| v.round() as usize);
            assert_eq!(lab[(c[0] * n[1] + c[1]) * n[2] + c[2]], (i + 1) as f32);
            let count = lab.iter().filter(|&&v| v == (i + 1) as f32).count() as f64;
            let vol = 4.0 / 3.0 * std::f64::consts::PI * gr.semi_axes.iter().product::<f64>();
            assert!((count / vol - 1.0).abs() < 0.1, "grain {i}: {count} voxels for a volume {vol}");
        }
    }
}
