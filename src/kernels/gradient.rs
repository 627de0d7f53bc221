//! Image gradients as NumPy's `gradient` computes them (spam's default
//! `finite_differences`): central differences inside, one-sided at the first and last voxel,
//! in f32.

use ndarray::{Array3, ArrayView3};

/// (∂/∂z, ∂/∂y, ∂/∂x) of `im`.
pub fn gradient(im: &ArrayView3<f32>) -> [Array3<f32>; 3] {
    if let Some(data) = im.as_slice() {
        let d = im.dim();
        return gradient_slice(data, [d.0, d.1, d.2]);
    }
    gradient_generic(im)
}

/// The same on a contiguous array, axis by axis over whole lines.
fn gradient_slice(data: &[f32], n: [usize; 3]) -> [Array3<f32>; 3] {
    let len = n[0] * n[1] * n[2];
    let strides = [n[1] * n[2], n[2], 1];
    std::array::from_fn(|axis| {
        let mut out = vec![0f32; len];
        let m = n[axis];
        let s = strides[axis];
        if m >= 2 {
            for (i, o) in out.iter_mut().enumerate() {
                let k = (i / s) % m;
                *o = if k == 0 {
                    data[i + s] - data[i]
                } else if k == m - 1 {
                    data[i] - data[i - s]
                } else {
                    (data[i + s] - data[i - s]) / 2.0
                };
            }
        }
        Array3::from_shape_vec((n[0], n[1], n[2]), out).expect("shape matches")
    })
}

/// NumPy's gradient of `im` at the voxels of the box `origin + [0, dims)` only, as
/// (∂/∂z, ∂/∂y, ∂/∂x) per voxel in Z-major order: what a registration needs of its crop,
/// without computing and cropping three whole arrays.
pub fn gradient_in_box(im: &ArrayView3<f32>, origin: [usize; 3], dims: [usize; 3]) -> Vec<[f32; 3]> {
    let d = im.dim();
    let n = [d.0, d.1, d.2];
    let mut out = Vec::with_capacity(dims[0] * dims[1] * dims[2]);
    let diff = |get: &dyn Fn(usize) -> f32, i: usize, len: usize| -> f32 {
        if len < 2 {
            0.0
        } else if i == 0 {
            get(1) - get(0)
        } else if i == len - 1 {
            get(len - 1) - get(len - 2)
        } else {
            (get(i + 1) - get(i - 1)) / 2.0
        }
    };
    match im.as_slice() {
        Some(data) => {
            let s = [n[1] * n[2], n[2]];
            for z in origin[0]..origin[0] + dims[0] {
                for y in origin[1]..origin[1] + dims[1] {
                    let row = z * s[0] + y * s[1];
                    for x in origin[2]..origin[2] + dims[2] {
                        let i = row + x;
                        // Interior voxels (every voxel of a crop with a margin): central
                        // differences straight from the slice.
                        if z > 0 && z + 1 < n[0] && y > 0 && y + 1 < n[1] && x > 0 && x + 1 < n[2] {
                            out.push([(data[i + s[0]] - data[i - s[0]]) / 2.0, (data[i + s[1]] - data[i - s[1]]) / 2.0, (data[i + 1] - data[i - 1]) / 2.0]);
                        } else {
                            let (yz, xz) = (y * s[1], x);
                            out.push([
                                diff(&|k| data[k * s[0] + yz + xz], z, n[0]),
                                diff(&|k| data[z * s[0] + k * s[1] + xz], y, n[1]),
                                diff(&|k| data[row + k], x, n[2]),
                            ]);
                        }
                    }
                }
            }
        }
        None => {
            for z in origin[0]..origin[0] + dims[0] {
                for y in origin[1]..origin[1] + dims[1] {
                    for x in origin[2]..origin[2] + dims[2] {
                        out.push([
                            diff(&|k| im[[k, y, x]], z, n[0]),
                            diff(&|k| im[[z, k, x]], y, n[1]),
                            diff(&|k| im[[z, y, k]], x, n[2]),
                        ]);
                    }
                }
            }
        }
    }
    out
}

/// [`gradient_in_box`] as three arrays (∂/∂z, ∂/∂y, ∂/∂x), rows padded to `w ≥ dims[2]`
/// voxels with zeros: the layout of the fused registration pass. A box strictly inside a
/// contiguous image (every crop with a margin) takes central differences a row at a time,
/// which the compiler vectorises; the same values as [`gradient_in_box`].
pub fn gradient_in_box_rows(im: &ArrayView3<f32>, origin: [usize; 3], dims: [usize; 3], w: usize) -> [Vec<f32>; 3] {
    assert!(w >= dims[2], "padded row shorter than the box");
    let d = im.dim();
    let n = [d.0, d.1, d.2];
    let rows = dims[0] * dims[1];
    let mut out: [Vec<f32>; 3] = std::array::from_fn(|_| vec![0f32; rows * w]);
    let interior = (0..3).all(|a| origin[a] >= 1 && origin[a] + dims[a] < n[a]);
    match (interior, im.as_slice()) {
        (true, Some(data)) => {
            let s = [n[1] * n[2], n[2]];
            let [gz, gy, gx] = &mut out;
            for z in 0..dims[0] {
                for y in 0..dims[1] {
                    let c = (origin[0] + z) * s[0] + (origin[1] + y) * s[1] + origin[2];
                    let r = (z * dims[1] + y) * w;
                    let at = |o: usize| &data[o..o + dims[2]];
                    let (zp, zm, yp, ym, xp, xm) = (at(c + s[0]), at(c - s[0]), at(c + s[1]), at(c - s[1]), at(c + 1), at(c - 1));
                    for x in 0..dims[2] {
                        gz[r + x] = (zp[x] - zm[x]) / 2.0;
                        gy[r + x] = (yp[x] - ym[x]) / 2.0;
                        gx[r + x] = (xp[x] - xm[x]) / 2.0;
                    }
                }
            }
        }
        _ => {
            for (k, g) in gradient_in_box(im, origin, dims).into_iter().enumerate() {
                let (r, x) = (k / dims[2], k % dims[2]);
                for a in 0..3 {
                    out[a][r * w + x] = g[a];
                }
            }
        }
    }
    out
}

/// [`gradient_in_box_rows`] with 4th-order central differences, (8(f₊₁ − f₋₁) − (f₊₂ − f₋₂))/12,
/// where both neighbours on each side are inside the image, and the 2nd-order ones of
/// [`gradient_in_box_rows`] elsewhere. The cubic registration's Jacobian: the 2nd-order
/// difference underestimates the slope of a speckle (by sin ω/ω, 16 % at ω = 1 rad/voxel),
/// so each Gauss–Newton step overshot by as much and took more iterations to settle; the
/// 4th-order one is within 3 % there (OpenCorr uses it for the same reason).
pub fn gradient4_in_box_rows(im: &ArrayView3<f32>, origin: [usize; 3], dims: [usize; 3], w: usize) -> [Vec<f32>; 3] {
    let mut out = gradient_in_box_rows(im, origin, dims, w);
    let d = im.dim();
    let n = [d.0, d.1, d.2];
    // A strided view is copied once, so the order of the difference never depends on layout.
    let standard = im.as_standard_layout();
    let data = standard.as_slice().expect("standard layout is contiguous");
    let s = [n[1] * n[2], n[2], 1];
    // Where along X the 4th-order difference applies: 2 ≤ x < N − 2.
    let (x_lo, x_hi) = (origin[2].max(2), (origin[2] + dims[2]).min(n[2].saturating_sub(2)));
    let xs = if x_lo < x_hi { x_lo..x_hi } else { 0..0 };
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            let p = [origin[0] + z, origin[1] + y];
            let r = (z * dims[1] + y) * w;
            for (a, g) in out.iter_mut().enumerate() {
                // Z and Y: the whole row or none of it; X: the columns two voxels from the edges.
                let cols = match a {
                    2 => xs.clone(),
                    _ if p[a] >= 2 && p[a] + 2 < n[a] => origin[2]..origin[2] + dims[2],
                    _ => continue,
                };
                if cols.is_empty() {
                    continue;
                }
                let (st, c) = (s[a], p[0] * s[0] + p[1] * s[1] + cols.start);
                let len = cols.len();
                let at = |o: usize| &data[o..o + len];
                let (pp, p1, m1, mm) = (at(c + 2 * st), at(c + st), at(c - st), at(c - 2 * st));
                let dst = &mut g[r + cols.start - origin[2]..r + cols.end - origin[2]];
                for x in 0..len {
                    dst[x] = (8.0 * (p1[x] - m1[x]) - (pp[x] - mm[x])) / 12.0;
                }
            }
        }
    }
    out
}

fn gradient_generic(im: &ArrayView3<f32>) -> [Array3<f32>; 3] {
    let d = im.dim();
    let n = [d.0, d.1, d.2];
    std::array::from_fn(|axis| {
        Array3::from_shape_fn(d, |(z, y, x)| {
            let p = [z, y, x];
            let len = n[axis];
            if len < 2 {
                return 0.0;
            }
            let at = |k: usize| {
                let mut q = p;
                q[axis] = k;
                im[[q[0], q[1], q[2]]]
            };
            let i = p[axis];
            if i == 0 {
                at(1) - at(0)
            } else if i == len - 1 {
                at(len - 1) - at(len - 2)
            } else {
                (at(i + 1) - at(i - 1)) / 2.0
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 4th-order rows against the formula voxel by voxel: 4th order two voxels from the
    /// image's edges, spam's differences nearer, on a box touching the edges and one inside.
    #[test]
    fn fourth_order_rows_follow_their_definition() {
        let im = Array3::from_shape_fn((7, 8, 9), |(z, y, x)| ((z * 31 + y * 17 + x * 7) % 13) as f32 * 1.7 + (x as f32 * 0.9).sin() * 5.0);
        let n = [7usize, 8, 9];
        for (origin, dims) in [([0usize, 0, 0], [7usize, 8, 9]), ([1, 2, 1], [5, 4, 7])] {
            let w = dims[2] + 3;
            let got = gradient4_in_box_rows(&im.view(), origin, dims, w);
            let spam = gradient_in_box(&im.view(), origin, dims);
            let mut k = 0;
            for z in 0..dims[0] {
                for y in 0..dims[1] {
                    for x in 0..dims[2] {
                        let p = [origin[0] + z, origin[1] + y, origin[2] + x];
                        for a in 0..3 {
                            let at = |d: isize| {
                                let mut q = p;
                                q[a] = (p[a] as isize + d) as usize;
                                im[[q[0], q[1], q[2]]]
                            };
                            let want = if p[a] >= 2 && p[a] + 2 < n[a] { (8.0 * (at(1) - at(-1)) - (at(2) - at(-2))) / 12.0 } else { spam[k][a] };
                            assert!((got[a][(z * dims[1] + y) * w + x] - want).abs() <= 1e-5 * want.abs().max(1.0), "{origin:?} ({z}, {y}, {x}) axis {a}");
                        }
                        k += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn like_numpy_gradient() {
        let im = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * z) as f32 + 2.0 * y as f32 + (x * x * x) as f32);
        let g = gradient(&im.view());
        assert_eq!(g[0][[0, 1, 1]], 1.0); // f[1] - f[0]
        assert_eq!(g[0][[1, 1, 1]], 2.0); // (4 - 0) / 2
        assert_eq!(g[0][[2, 1, 1]], 3.0); // 4 - 1
        assert_eq!(g[1][[1, 2, 1]], 2.0);
        assert_eq!(g[2][[0, 0, 2]], (27.0 - 1.0) / 2.0);
        assert_eq!(g[2][[0, 0, 4]], 64.0 - 27.0);
        // The box version equals the whole arrays at every voxel, borders included, on
        // contiguous and strided views.
        let noisy = Array3::from_shape_fn((6, 7, 8), |(z, y, x)| ((z * 31 + y * 17 + x * 7) % 13) as f32 * 1.7 - (x as f32).sqrt());
        for view in [noisy.view(), noisy.slice(ndarray::s![.., ..;2, ..])] {
            let full = gradient(&view);
            let d = view.dim();
            let boxed = gradient_in_box(&view, [0, 1, 2], [d.0, d.1 - 1, d.2 - 3]);
            let mut i = 0;
            for z in 0..d.0 {
                for y in 1..d.1 {
                    for x in 2..d.2 - 1 {
                        assert_eq!(boxed[i], [full[0][[z, y, x]], full[1][[z, y, x]], full[2][[z, y, x]]], "({z}, {y}, {x})");
                        i += 1;
                    }
                }
            }
        }
        // The padded row layout: the same values, interior fast path and border path alike.
        for (origin, dims) in [([1usize, 1, 1], [4usize, 5, 6]), ([0, 1, 2], [6, 6, 5])] {
            let rows = gradient_in_box_rows(&noisy.view(), origin, dims, 8);
            let flat = gradient_in_box(&noisy.view(), origin, dims);
            for (k, g) in flat.iter().enumerate() {
                let (r, x) = (k / dims[2], k % dims[2]);
                assert_eq!([rows[0][r * 8 + x], rows[1][r * 8 + x], rows[2][r * 8 + x]], *g, "{origin:?} voxel {k}");
            }
            assert!(rows.iter().all(|a| a.len() == dims[0] * dims[1] * 8 && (0..dims[0] * dims[1]).all(|r| a[r * 8 + dims[2]..(r + 1) * 8].iter().all(|v| *v == 0.0))));
        }
    }
}

/// How a registration takes image gradients: spam's `-gm finite_differences` (NumPy's
/// `gradient`, the default) or `-gm gaussian` with `-gs σ` (SciPy's `gaussian_filter` with a
/// first-order derivative along one axis, `mode="nearest"`, truncated at 4σ).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub enum GradientMethod {
    #[default]
    FiniteDifferences,
    Gaussian { sigma: f64 },
}

impl GradientMethod {
    /// Voxels beyond a box that the gradient on the box reads.
    pub fn reach(&self) -> usize {
        match *self {
            GradientMethod::FiniteDifferences => 1,
            GradientMethod::Gaussian { sigma } => gaussian_radius(sigma),
        }
    }

    pub fn is_default(&self) -> bool {
        *self == GradientMethod::FiniteDifferences
    }
}

/// SciPy's kernel radius: `int(truncate·σ + 0.5)` with truncate = 4.
fn gaussian_radius(sigma: f64) -> usize {
    (4.0 * sigma + 0.5) as usize
}

/// SciPy's `_gaussian_kernel1d(σ, order, r)` reversed, as `correlate1d` applies it:
/// out[i] = Σ_k w[k]·in[i + k − r]. Order 0: the normalised Gaussian; order 1: x/σ²·φ(x).
fn gaussian_weights(sigma: f64, order: usize) -> Vec<f64> {
    let r = gaussian_radius(sigma) as i64;
    let s2 = sigma * sigma;
    let phi: Vec<f64> = (-r..=r).map(|x| (-0.5 / s2 * (x * x) as f64).exp()).collect();
    let sum: f64 = phi.iter().sum();
    let kernel: Vec<f64> = (-r..=r).zip(&phi).map(|(x, p)| if order == 0 { p / sum } else { -(x as f64) / s2 * (p / sum) }).collect();
    kernel.into_iter().rev().collect()
}

/// The gradient (∂/∂z, ∂/∂y, ∂/∂x) at the voxels `[lo, hi)` of an image of shape `n` of which
/// `src` holds the box starting at `src_lo`; the box must cover `[lo − reach, hi + reach)`
/// clipped to the image. Equal to the gradient of the whole image (NumPy's, or SciPy's
/// Gaussian derivative with nearest-voxel extension at the image's faces) cropped to the box,
/// which is what lets a streamed registration take it block by block.
pub fn gradient_on_box(src: &ArrayView3<f32>, src_lo: [usize; 3], n: [usize; 3], lo: [usize; 3], hi: [usize; 3], method: GradientMethod) -> [Array3<f32>; 3] {
    let dims: [usize; 3] = std::array::from_fn(|a| hi[a] - lo[a]);
    let at = |p: [i64; 3]| -> f32 {
        let q: [usize; 3] = std::array::from_fn(|a| p[a].clamp(0, n[a] as i64 - 1) as usize - src_lo[a]);
        src[q]
    };
    match method {
        GradientMethod::FiniteDifferences => std::array::from_fn(|axis| {
            Array3::from_shape_fn((dims[0], dims[1], dims[2]), |(z, y, x)| {
                let p = [(lo[0] + z) as i64, (lo[1] + y) as i64, (lo[2] + x) as i64];
                let m = n[axis] as i64;
                let step = |d: i64| {
                    let mut q = p;
                    q[axis] += d;
                    at(q)
                };
                if m < 2 {
                    0.0
                } else if p[axis] == 0 {
                    step(1) - step(0)
                } else if p[axis] == m - 1 {
                    step(0) - step(-1)
                } else {
                    (step(1) - step(-1)) / 2.0
                }
            })
        }),
        GradientMethod::Gaussian { sigma } => {
            let r = gaussian_radius(sigma);
            // The box grown by r on every side, faces extended by their nearest voxel.
            let ext = Array3::from_shape_fn((dims[0] + 2 * r, dims[1] + 2 * r, dims[2] + 2 * r), |(z, y, x)| {
                at([(lo[0] + z) as i64 - r as i64, (lo[1] + y) as i64 - r as i64, (lo[2] + x) as i64 - r as i64])
            });
            let (w0, w1) = (gaussian_weights(sigma, 0), gaussian_weights(sigma, 1));
            std::array::from_fn(|component| {
                // SciPy filters axis 0, then 1, then 2, each pass in f64 stored as f32.
                let mut cur = ext.clone();
                for axis in 0..3 {
                    let w = if axis == component { &w1 } else { &w0 };
                    let d = cur.dim();
                    let mut sh = [d.0, d.1, d.2];
                    sh[axis] -= 2 * r;
                    cur = Array3::from_shape_fn((sh[0], sh[1], sh[2]), |(z, y, x)| {
                        let mut acc = 0f64;
                        let mut q = [z, y, x];
                        let base = q[axis];
                        for (k, &wk) in w.iter().enumerate() {
                            q[axis] = base + k;
                            acc += wk * cur[q] as f64;
                        }
                        acc as f32
                    });
                }
                cur
            })
        }
    }
}

/// Spam's shift-DVC offset (Wantz et al. 2025) of voxel `p` in an image of shape `n`: the
/// flat index modulo 8 picks a corner of the cube ±0.25 voxel (Z from bit 2, Y from bit 1,
/// X from bit 0), so every 8 consecutive voxels sum to zero; the voxels past the last whole
/// group of 8 are not moved (spam's `build_offsets`).
pub fn shift_offset(p: [usize; 3], n: [usize; 3]) -> [f32; 3] {
    let total = n[0] * n[1] * n[2];
    let i = (p[0] * n[1] + p[1]) * n[2] + p[2];
    if i >= 8 * (total / 8) {
        return [0.0; 3];
    }
    let k = i % 8;
    [(((k >> 2) & 1) as f32 - 0.5) / 2.0, (((k >> 1) & 1) as f32 - 0.5) / 2.0, ((k & 1) as f32 - 0.5) / 2.0]
}

/// Trilinear sample of a field known on the box starting at `lo` (global) at the global
/// point `q`, as SciPy's `map_coordinates(order=1)` inside the image.
pub fn trilinear_in_box(f: &ArrayView3<f32>, lo: [usize; 3], q: [f32; 3]) -> f32 {
    let d = f.dim();
    let d = [d.0, d.1, d.2];
    let mut i0 = [0usize; 3];
    let mut t = [0f64; 3];
    for a in 0..3 {
        let v = q[a] as f64 - lo[a] as f64;
        let fl = v.floor().clamp(0.0, (d[a].max(2) - 2) as f64);
        i0[a] = fl as usize;
        t[a] = v - fl;
    }
    let mut acc = 0f64;
    for c in 0..8 {
        let o = [(c >> 2) & 1, (c >> 1) & 1, c & 1];
        let mut w = 1.0;
        for a in 0..3 {
            w *= if o[a] == 1 { t[a] } else { 1.0 - t[a] };
        }
        if w != 0.0 {
            acc += w * f[[(i0[0] + o[0]).min(d[0] - 1), (i0[1] + o[1]).min(d[1] - 1), (i0[2] + o[2]).min(d[2] - 1)]] as f64;
        }
    }
    acc as f32
}
