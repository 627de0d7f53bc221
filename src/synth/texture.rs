//! A speckle texture that can be evaluated at any continuous point.
//!
//! One smooth bump (a compact `(1 − r²/R²)³` kernel, twice differentiable) per lattice cell,
//! with centre, radius and amplitude drawn from a hash of the cell index and the seed. Any
//! point sees only the bumps of the neighbouring cells, so evaluation costs the same at any
//! volume size and any chunk can be generated independently: the deformed image is the
//! texture sampled at Φ⁻¹(x), with no interpolation error.

/// Deterministic 64-bit mix (splitmix64 finaliser).
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Uniform number in [0, 1) from a hash.
#[inline]
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[inline]
fn cell_hash(seed: u64, c: [i64; 3]) -> u64 {
    let mut h = mix64(seed ^ 0x5EED);
    for v in c {
        h = mix64(h ^ (v as u64));
    }
    h
}

/// The speckle texture.
///
/// Like real microstructures it has structure at several scales: octave k uses cells
/// 4^k times the finest one with half the contrast, so binned pyramid levels still show
/// features that a coarse registration can lock on to.
#[derive(Clone, Debug)]
pub struct Texture {
    pub seed: u64,
    /// Finest lattice cell size in voxels (≈ speckle size).
    pub cell: f64,
    /// Number of scales (1 = a single speckle size).
    pub octaves: u32,
    /// Grey level where there is no bump.
    pub base: f64,
    /// Grey level added by a full-amplitude bump of the finest scale.
    pub contrast: f64,
}

impl Texture {
    pub fn new(seed: u64) -> Texture {
        Texture { seed, cell: 3.0, octaves: 3, base: 10000.0, contrast: 20000.0 }
    }

    /// The texture's value at `p` (Z, Y, X, in voxels).
    #[inline]
    pub fn eval(&self, p: [f64; 3]) -> f64 {
        let mut v = self.base;
        let mut cell = self.cell;
        let mut amp = self.contrast;
        for k in 0..self.octaves.max(1) {
            v += amp * self.bumps(p, cell, self.seed.wrapping_add(k as u64 * 0x1000_0001));
            cell *= 4.0;
            amp *= 0.5;
        }
        v
    }

    /// The bump of lattice cell `c` (cell size `s`): centre, radius and amplitude.
    #[inline]
    fn bump(seed: u64, c: [i64; 3], s: f64) -> ([f64; 3], f64, f64) {
        let h = cell_hash(seed, c);
        let centre = [
            (c[0] as f64 + unit(mix64(h ^ 1))) * s,
            (c[1] as f64 + unit(mix64(h ^ 2))) * s,
            (c[2] as f64 + unit(mix64(h ^ 3))) * s,
        ];
        (centre, s * (0.6 + 0.4 * unit(mix64(h ^ 4))), 0.25 + 0.75 * unit(mix64(h ^ 5)))
    }

    /// Adds the texture, sampled at `map(x)` for every voxel x of the box `lo + [0, dims)`, to
    /// `out` (Z-major), where `map` is the affine map X = K·x + k (rows of `k_mat`). Each bump is
    /// visited once and splatted onto the voxels it covers, instead of every voxel visiting its
    /// 27 neighbouring cells per octave; the values equal [`eval`](Self::eval)'s up to the
    /// order of the sums.
    pub fn splat_affine(&self, lo: [usize; 3], dims: [usize; 3], k_mat: &[[f64; 4]; 3], out: &mut [f64]) {
        // The forward map (reference → box) to find each bump's footprint in the box.
        let m = nalgebra::Matrix4::new(
            k_mat[0][0], k_mat[0][1], k_mat[0][2], k_mat[0][3],
            k_mat[1][0], k_mat[1][1], k_mat[1][2], k_mat[1][3],
            k_mat[2][0], k_mat[2][1], k_mat[2][2], k_mat[2][3],
            0.0, 0.0, 0.0, 1.0,
        );
        let fwd = m.try_inverse().expect("an invertible affine map");
        // Reference-space bounding box of the output box.
        let (mut rlo, mut rhi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
        for &z in &[lo[0] as f64, (lo[0] + dims[0]) as f64 - 1.0] {
            for &y in &[lo[1] as f64, (lo[1] + dims[1]) as f64 - 1.0] {
                for &x in &[lo[2] as f64, (lo[2] + dims[2]) as f64 - 1.0] {
                    for a in 0..3 {
                        let v = k_mat[a][0] * z + k_mat[a][1] * y + k_mat[a][2] * x + k_mat[a][3];
                        rlo[a] = rlo[a].min(v);
                        rhi[a] = rhi[a].max(v);
                    }
                }
            }
        }
        // Half-extent in the box of a reference-space ball of radius 1 along each axis.
        let reach: [f64; 3] = std::array::from_fn(|a| (fwd[(a, 0)].powi(2) + fwd[(a, 1)].powi(2) + fwd[(a, 2)].powi(2)).sqrt());
        let mut cell = self.cell;
        let mut amp = self.contrast;
        for k in 0..self.octaves.max(1) {
            let seed = self.seed.wrapping_add(k as u64 * 0x1000_0001);
            let c0: [i64; 3] = std::array::from_fn(|a| ((rlo[a] - cell) / cell).floor() as i64);
            let c1: [i64; 3] = std::array::from_fn(|a| ((rhi[a] + cell) / cell).floor() as i64);
            for i in c0[0]..=c1[0] {
                for j in c0[1]..=c1[1] {
                    for l in c0[2]..=c1[2] {
                        let (c, r, a) = Self::bump(seed, [i, j, l], cell);
                        let r2 = r * r;
                        // Centre in box coordinates and the footprint's bounding box.
                        let cb: [f64; 3] = std::array::from_fn(|d| fwd[(d, 0)] * c[0] + fwd[(d, 1)] * c[1] + fwd[(d, 2)] * c[2] + fwd[(d, 3)]);
                        let b0: [i64; 3] = std::array::from_fn(|d| ((cb[d] - r * reach[d]).floor() as i64).max(lo[d] as i64));
                        let b1: [i64; 3] = std::array::from_fn(|d| ((cb[d] + r * reach[d]).ceil() as i64).min((lo[d] + dims[d]) as i64 - 1));
                        if (0..3).any(|d| b1[d] < b0[d]) {
                            continue;
                        }
                        for z in b0[0]..=b1[0] {
                            for y in b0[1]..=b1[1] {
                                let row = ((z as usize - lo[0]) * dims[1] + (y as usize - lo[1])) * dims[2];
                                for x in b0[2]..=b1[2] {
                                    let (zf, yf, xf) = (z as f64, y as f64, x as f64);
                                    let mut d2 = 0.0;
                                    for d in 0..3 {
                                        let v = k_mat[d][0] * zf + k_mat[d][1] * yf + k_mat[d][2] * xf + k_mat[d][3];
                                        d2 += (v - c[d]) * (v - c[d]);
                                    }
                                    if d2 < r2 {
                                        let w = 1.0 - d2 / r2;
                                        out[row + (x as usize - lo[2])] += amp * a * w * w * w;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            cell *= 4.0;
            amp *= 0.5;
        }
    }

    /// Sum of the bumps of one lattice of cell size `s`.
    #[inline]
    fn bumps(&self, p: [f64; 3], s: f64, seed: u64) -> f64 {
        // Bump radii are at most one cell, so only cells within one cell of p matter.
        let lo: [i64; 3] = std::array::from_fn(|a| ((p[a] - s) / s).floor() as i64);
        let hi: [i64; 3] = std::array::from_fn(|a| ((p[a] + s) / s).floor() as i64);
        let mut sum = 0.0;
        for i in lo[0]..=hi[0] {
            for j in lo[1]..=hi[1] {
                for k in lo[2]..=hi[2] {
                    let h = cell_hash(seed, [i, j, k]);
                    let h1 = mix64(h ^ 1);
                    let h2 = mix64(h ^ 2);
                    let h3 = mix64(h ^ 3);
                    let h4 = mix64(h ^ 4);
                    let h5 = mix64(h ^ 5);
                    let cz = (i as f64 + unit(h1)) * s;
                    let cy = (j as f64 + unit(h2)) * s;
                    let cx = (k as f64 + unit(h3)) * s;
                    let r = s * (0.6 + 0.4 * unit(h4));
                    let d2 = (p[0] - cz).powi(2) + (p[1] - cy).powi(2) + (p[2] - cx).powi(2);
                    let r2 = r * r;
                    if d2 < r2 {
                        let w = 1.0 - d2 / r2;
                        sum += (0.25 + 0.75 * unit(h5)) * w * w * w;
                    }
                }
            }
        }
        sum
    }
}

/// Gaussian noise for voxel `index` of image `image`, deterministic (Box–Muller on hashes).
#[inline]
pub fn noise(seed: u64, image: u64, index: u64) -> f64 {
    let h = mix64(mix64(seed ^ 0xA0B1_C2D3) ^ mix64(image) ^ index.wrapping_mul(0x9E37_79B9));
    let u1 = unit(mix64(h ^ 11)).max(1e-300);
    let u2 = unit(mix64(h ^ 12));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_textured() {
        let t = Texture::new(7);
        let a = t.eval([10.3, 4.2, 7.9]);
        assert_eq!(a, Texture::new(7).eval([10.3, 4.2, 7.9]));
        assert_ne!(a, Texture::new(8).eval([10.3, 4.2, 7.9]));
        let vals: Vec<f64> = (0..1000).map(|i| t.eval([i as f64 * 0.37, 1.0, 2.0])).collect();
        let mean = vals.iter().sum::<f64>() / 1000.0;
        let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 1000.0).sqrt();
        assert!(sd > 1000.0, "texture has contrast: sd {sd}");
        assert!(vals.iter().cloned().fold(0.0, f64::max) < 65535.0, "fits uint16");
    }

    #[test]
    fn smooth() {
        let t = Texture::new(3);
        let p = [5.5, 6.25, 7.125];
        let h = 1e-4;
        let a = t.eval(p);
        let b = t.eval([p[0] + h, p[1], p[2]]);
        assert!((a - b).abs() < 40000.0 * 10.0 * h);
    }
}
