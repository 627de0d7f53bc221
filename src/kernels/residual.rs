//! The pass a registration repeats at every iteration, fused: image 2 warped by Φ and, in
//! the same loop, the residual sums A = Σ (im1 − im2def)·J and Σ (im1 − im2def)², without
//! writing the warped crop out and reading it back.
//!
//! Why it exists: warping and summing were two passes over the crop and together took 70 %
//! of ldic's time. Here 8 voxels go through at once in f32 lanes: source coordinates in
//! spam's f32 order (so the same voxels are sampled, and the same ones fall outside), the
//! trilinear weights and sums in f32 with fused multiply-adds where spam's C kernel uses
//! f64. A warped value then differs from spam's by about one f32 rounding (10⁻⁷ of the grey
//! level, far below any image noise); sums are accumulated in f32 along a row and in f64
//! across rows. The pass serves evaluations that need no new gradient, on boxes whose image
//! 2 holds no NaN; masked voxels of image 1 (NaN) are left out of every sum, as in the
//! two-pass path that the caller keeps for the other cases and for processors without
//! AVX2 and FMA. Results are identical on every processor that takes this pass.

use nalgebra::SMatrix;
use ndarray::ArrayView3;

use super::gradient::gradient_in_box_rows;
use super::interp::BackwardMap;

/// What [`ResidualPass::evaluate`] gives: A (12 components, Φ row-major) and Σ d².
pub(crate) struct ResidualSums {
    pub a: [f64; 12],
    pub sum_sq: f64,
}

/// Voxels per step of the pass.
const LANES: usize = 8;

/// The crop of image 1 and its gradient, laid out once per registration for the fused pass:
/// rows padded to a multiple of 8 voxels, gradient components in separate arrays, a keep
/// mask that is false on padding and on masked (NaN) voxels; with M and Σ im1, which do not
/// change between iterations.
pub(crate) struct ResidualPass {
    nc: [usize; 3],
    /// Padded row length.
    w: usize,
    r1: Vec<f32>,
    keep: Vec<u32>,
    /// Gradient of image 1, 0 where not kept.
    g: [Vec<f32>; 3],
    /// Z and Y coordinates of the crop voxels about the crop centre, and X padded.
    cz: Vec<f64>,
    cy: Vec<f64>,
    cx: Vec<f32>,
    /// Σ im1 over kept voxels: the denominator of spam's error.
    pub den: f64,
    /// Number of kept voxels (the N of the residual's variance).
    pub kept: usize,
    /// M = Σ J Jᵀ over kept voxels (Φ row-major), which depends on image 1 alone.
    pub m: SMatrix<f64, 12, 12>,
}

impl ResidualPass {
    /// Whether this processor can run the fused pass.
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The crop `origin + [0, nc)` of image 1, NaN or false in `mask1` meaning masked, and
    /// `coords`, the crop coordinates about its centre per axis.
    /// With `fourth_order`, the gradient of image 1 takes 4th-order central differences where
    /// it can ([`super::gradient::gradient4_in_box_rows`]), else spam's.
    pub fn new(im1: &ArrayView3<f32>, mask1: Option<&ArrayView3<bool>>, origin: [usize; 3], nc: [usize; 3], coords: &[Vec<f64>; 3], fourth_order: bool) -> ResidualPass {
        assert!(Self::available(), "the fused pass needs AVX2 and FMA");
        let w = nc[2].div_ceil(LANES) * LANES;
        let rows = nc[0] * nc[1];
        let mut g = if fourth_order { super::gradient::gradient4_in_box_rows(im1, origin, nc, w) } else { gradient_in_box_rows(im1, origin, nc, w) };
        let mut r1 = vec![0f32; rows * w];
        let mut keep = vec![0u32; rows * w];
        let (mut den, mut kept) = (0f64, 0usize);
        for z in 0..nc[0] {
            for y in 0..nc[1] {
                let r = (z * nc[1] + y) * w;
                let (zi, yi) = (origin[0] + z, origin[1] + y);
                for x in 0..nc[2] {
                    let xi = origin[2] + x;
                    let v = im1[[zi, yi, xi]];
                    if v.is_nan() || mask1.is_some_and(|m| !m[[zi, yi, xi]]) {
                        g.iter_mut().for_each(|c| c[r + x] = 0.0);
                        continue;
                    }
                    den += v as f64;
                    kept += 1;
                    r1[r + x] = v;
                    keep[r + x] = u32::MAX;
                }
            }
        }
        let mut p = ResidualPass {
            nc,
            w,
            r1,
            keep,
            g,
            cz: coords[0].clone(),
            cy: coords[1].clone(),
            cx: (0..w).map(|x| coords[2].get(x).copied().unwrap_or(0.0) as f32).collect(),
            den,
            kept,
            m: SMatrix::zeros(),
        };
        // SAFETY: AVX2 and FMA are present (asserted above).
        #[cfg(target_arch = "x86_64")]
        {
            p.m = unsafe { p.normal_matrix_avx2() };
        }
        p
    }

    /// M = Σ J Jᵀ with J[4i + j] = g_i·X_j, X = (z, y, x, 1). For each pair of gradient
    /// components, the sums of g_i g_k x⁰, x¹, x² along rows are weighted by y⁰, y¹, y² over
    /// a slab in f32 lanes, and z multiplied in once per slab in f64.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn normal_matrix_avx2(&self) -> SMatrix<f64, 12, 12> {
        // SAFETY: the caller guarantees what this function's doc states (AVX2/FMA present,
        // pointers and offsets inside the buffers); every unsafe operation below relies on it.
        unsafe {
            use std::arch::x86_64::*;
            const PAIRS: [(usize, usize); 6] = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)];
            let (nc, w) = (self.nc, self.w);
            let mut m = [[0f64; 12]; 12];
            for z in 0..nc[0] {
                // Per pair: Σ s0, Σ y·s0, Σ y²·s0, Σ s1, Σ y·s1, Σ s2 over the slab's rows, where
                // s0, s1, s2 are a row's sums of g_i g_k, g_i g_k x and g_i g_k x².
                let mut slab = [[_mm256_setzero_ps(); 6]; 6];
                for y in 0..nc[1] {
                    let row = (z * nc[1] + y) * w;
                    let cy = _mm256_set1_ps(self.cy[y] as f32);
                    for (t, &(i, j)) in slab.iter_mut().zip(&PAIRS) {
                        let (mut s0, mut s1, mut s2) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
                        for x in (0..w).step_by(LANES) {
                            let gg = _mm256_mul_ps(_mm256_loadu_ps(self.g[i].as_ptr().add(row + x)), _mm256_loadu_ps(self.g[j].as_ptr().add(row + x)));
                            let xv = _mm256_loadu_ps(self.cx.as_ptr().add(x));
                            let ggx = _mm256_mul_ps(gg, xv);
                            s0 = _mm256_add_ps(s0, gg);
                            s1 = _mm256_add_ps(s1, ggx);
                            s2 = _mm256_fmadd_ps(ggx, xv, s2);
                        }
                        let s0y = _mm256_mul_ps(s0, cy);
                        t[0] = _mm256_add_ps(t[0], s0);
                        t[1] = _mm256_add_ps(t[1], s0y);
                        t[2] = _mm256_fmadd_ps(s0y, cy, t[2]);
                        t[3] = _mm256_add_ps(t[3], s1);
                        t[4] = _mm256_fmadd_ps(s1, cy, t[4]);
                        t[5] = _mm256_add_ps(t[5], s2);
                    }
                }
                let cz = self.cz[z];
                for (t, &(i, j)) in slab.iter().zip(&PAIRS) {
                    let [t0, t0y, t0yy, t1, t1y, t2] = t.map(|v| hsum(v));
                    // Σ X_p X_q g_i g_k over the slab, X = (z, y, x, 1), symmetric in (p, q).
                    let v = [[cz * cz * t0, cz * t0y, cz * t1, cz * t0], [cz * t0y, t0yy, t1y, t0y], [cz * t1, t1y, t2, t1], [cz * t0, t0y, t1, t0]];
                    for p in 0..4 {
                        for q in 0..4 {
                            m[4 * i + p][4 * j + q] += v[p][q];
                        }
                    }
                }
            }
            // Blocks (i, k) with i ≤ k were summed; the rest is their transpose.
            SMatrix::<f64, 12, 12>::from_fn(|r, c| if r / 4 <= c / 4 { m[r][c] } else { m[c][r] })
        }
    }

    /// The sums for image 2 (`data`, contiguous Z-major of shape `n`, no NaN) sampled through
    /// `map` at the voxels `origin + [0, nc)`, 0 where spam's bounds test `1 ≤ q < N − 1`
    /// fails (as in the two-pass path).
    pub fn evaluate(&self, data: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3]) -> ResidualSums {
        assert_eq!(data.len(), n[0] * n[1] * n[2], "source shape");
        assert!(n.iter().all(|&v| v >= 3) && data.len() < i32::MAX as usize, "box too small or too large for the fused pass");
        assert!(Self::available(), "the fused pass needs AVX2 and FMA");
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: AVX2 and FMA are present and the shapes are as required (checked above).
            unsafe { self.evaluate_avx2(data, n, map, origin) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (map, origin);
            unreachable!()
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn evaluate_avx2(&self, data: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3]) -> ResidualSums {
        // SAFETY: the caller guarantees what this function's doc states (AVX2/FMA present,
        // pointers and offsets inside the buffers); every unsafe operation below relies on it.
        unsafe {
            use std::arch::x86_64::*;
            let (nc, w) = (self.nc, self.w);
            let stride = [n[1] * n[2], n[2]];
            let hi = [n[0] as f32 - 1.0, n[1] as f32 - 1.0, n[2] as f32 - 1.0];
            let (k, cc) = (map.k, map.c);
            // X offsets about the centre of image 2, one per (padded) voxel of a row.
            let dxs: Vec<f32> = (0..w).map(|x| (origin[2] + x) as f32 - cc[2]).collect();
            let base = data.as_ptr();
            let (k2, k3, c) = (k.map(|r| _mm256_set1_ps(r[2])), k.map(|r| _mm256_set1_ps(r[3])), cc.map(|v| _mm256_set1_ps(v)));
            let mut taps = RowTaps { offset: vec![0; w], r: std::array::from_fn(|_| vec![0.0; w]), ok: vec![0.0; w] };
            let mut a = [0f64; 12];
            let mut sum_sq = 0f64;
            for z in 0..nc[0] {
                let dz = (origin[0] + z) as f32 - cc[0];
                for y in 0..nc[1] {
                    let dy = (origin[1] + y) as f32 - cc[1];
                    // spam's order: (K0·dz + K1·dy) + K2·dx + K3 + c, all f32, no fused operations.
                    let row_part: [__m256; 3] = std::array::from_fn(|i| _mm256_set1_ps(k[i][0] * dz + k[i][1] * dy));
                    let row = (z * nc[1] + y) * w;
                    // First where every voxel of the row samples, then the samples: the tap loads
                    // of one step then no longer wait on its own coordinate arithmetic.
                    for x in (0..w).step_by(LANES) {
                        let dx = _mm256_loadu_ps(dxs.as_ptr().add(x));
                        let q: [__m256; 3] = std::array::from_fn(|i| _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(row_part[i], _mm256_mul_ps(k2[i], dx)), k3[i]), c[i]));
                        let (offset, r, ok) = sample_points(stride, hi, q);
                        _mm256_storeu_si256(taps.offset.as_mut_ptr().add(x) as *mut __m256i, offset);
                        for i in 0..3 {
                            _mm256_storeu_ps(taps.r[i].as_mut_ptr().add(x), r[i]);
                        }
                        _mm256_storeu_ps(taps.ok.as_mut_ptr().add(x), ok);
                    }
                    let (mut s0, mut s1, mut sq) = ([_mm256_setzero_ps(); 3], [_mm256_setzero_ps(); 3], _mm256_setzero_ps());
                    for x in (0..w).step_by(LANES) {
                        let v = trilinear8(base, stride, &taps, x);
                        let keep = _mm256_castsi256_ps(_mm256_loadu_si256(self.keep.as_ptr().add(row + x) as *const __m256i));
                        let d = _mm256_and_ps(_mm256_sub_ps(_mm256_loadu_ps(self.r1.as_ptr().add(row + x)), v), keep);
                        sq = _mm256_fmadd_ps(d, d, sq);
                        let xv = _mm256_loadu_ps(self.cx.as_ptr().add(x));
                        for i in 0..3 {
                            let t = _mm256_mul_ps(d, _mm256_loadu_ps(self.g[i].as_ptr().add(row + x)));
                            s0[i] = _mm256_add_ps(s0[i], t);
                            s1[i] = _mm256_fmadd_ps(t, xv, s1[i]);
                        }
                    }
                    // Σ over the row of d·g_i·X_j: X = (z, y, x, 1), x inside the weighted sum.
                    let (cz, cy) = (self.cz[z], self.cy[y]);
                    for i in 0..3 {
                        let (r0, r1) = (hsum(s0[i]), hsum(s1[i]));
                        a[4 * i] += cz * r0;
                        a[4 * i + 1] += cy * r0;
                        a[4 * i + 2] += r1;
                        a[4 * i + 3] += r0;
                    }
                    sum_sq += hsum(sq);
                }
            }
            ResidualSums { a, sum_sq }
        }
    }

    /// [`Self::evaluate`] for the cubic B-spline: `coef` holds image 2's B-spline
    /// coefficients (contiguous Z-major of shape `n`, at least 4 voxels on every axis, no NaN),
    /// sampled where the taps are inside the box, `1 ≤ q < N − 2`, 0 elsewhere. The same
    /// voxels and values as [`super::interp::tricubic_rows`] to f32 rounding.
    pub fn evaluate_cubic(&self, coef: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3]) -> ResidualSums {
        assert_eq!(coef.len(), n[0] * n[1] * n[2], "source shape");
        assert!(n.iter().all(|&v| v >= 4) && coef.len() < i32::MAX as usize, "box too small or too large for the fused pass");
        assert!(Self::available(), "the fused pass needs AVX2 and FMA");
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: AVX2 and FMA are present and the shapes are as required (checked above).
            unsafe { self.evaluate_cubic_avx2(coef, n, map, origin) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (map, origin);
            unreachable!()
        }
    }

    /// Per row: coordinates, bounds, first-tap offsets and the 12 B-spline weights of 8 voxels
    /// at a time (f32 lanes); then each voxel's 64 taps as 16 rows of 4 X-neighbours (one
    /// 128-bit load each) weighted by Y, then Z, then X; then the residual sums as in the
    /// trilinear pass.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn evaluate_cubic_avx2(&self, coef: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3]) -> ResidualSums {
        // SAFETY: the caller guarantees what this function's doc states (AVX2/FMA present,
        // shapes checked); every offset read below is inside `coef` (see the notes there).
        unsafe {
            use std::arch::x86_64::*;
            let (nc, w) = (self.nc, self.w);
            let (sz, sy) = (n[1] * n[2], n[2]);
            let (k, cc) = (map.k, map.c);
            let dxs: Vec<f32> = (0..w).map(|x| (origin[2] + x) as f32 - cc[2]).collect();
            let base = coef.as_ptr();
            let (k2, k3, c) = (k.map(|r| _mm256_set1_ps(r[2])), k.map(|r| _mm256_set1_ps(r[3])), cc.map(|v| _mm256_set1_ps(v)));
            let (lo, hi) = (_mm256_set1_ps(1.0), n.map(|v| _mm256_set1_ps(v as f32 - 2.0)));
            let (one, half, sixth, two_thirds) = (_mm256_set1_ps(1.0), _mm256_set1_ps(0.5), _mm256_set1_ps(1.0 / 6.0), _mm256_set1_ps(2.0 / 3.0));
            // Per voxel of a row: first-tap offset, weights of Z and Y (tap-major), of X
            // (voxel-major, 4 per voxel for one 128-bit load), bounds mask, and the sample.
            let mut offset = vec![0i32; w];
            let mut wz = [vec![0f32; w], vec![0f32; w], vec![0f32; w], vec![0f32; w]];
            let mut wy = wz.clone();
            let mut wx = vec![0f32; 4 * w];
            let mut ok = vec![0f32; w];
            let mut value = vec![0f32; w];
            let mut a = [0f64; 12];
            let mut sum_sq = 0f64;
            let weights = |t: __m256| -> [__m256; 4] {
                // bspline_weights_f32, lane by lane, the same operations.
                let t2 = _mm256_mul_ps(t, t);
                let t3 = _mm256_mul_ps(t2, t);
                let u = _mm256_sub_ps(one, t);
                let w0 = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(u, u), u), sixth);
                let w1 = _mm256_add_ps(_mm256_sub_ps(_mm256_mul_ps(half, t3), t2), two_thirds);
                let w2 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(-0.5), t3), _mm256_mul_ps(half, t2)), _mm256_mul_ps(half, t)), sixth);
                [w0, w1, w2, _mm256_mul_ps(t3, sixth)]
            };
            for z in 0..nc[0] {
                let dz = (origin[0] + z) as f32 - cc[0];
                for y in 0..nc[1] {
                    let dy = (origin[1] + y) as f32 - cc[1];
                    // spam's order: (K0·dz + K1·dy) + K2·dx + K3 + c, all f32, no fused operations.
                    let row_part: [__m256; 3] = std::array::from_fn(|i| _mm256_set1_ps(k[i][0] * dz + k[i][1] * dy));
                    for x in (0..w).step_by(LANES) {
                        let dx = _mm256_loadu_ps(dxs.as_ptr().add(x));
                        let q: [__m256; 3] = std::array::from_fn(|i| _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(row_part[i], _mm256_mul_ps(k2[i], dx)), k3[i]), c[i]));
                        // 1 ≤ q < N − 2 on every axis (ordered comparisons: NaN fails);
                        // out-of-bounds lanes sample at q = 1, taps 0..3, inside any box of 4.
                        let inb = |v: __m256, h: __m256| _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(v, lo), _mm256_cmp_ps::<_CMP_LT_OQ>(v, h));
                        let m = _mm256_and_ps(_mm256_and_ps(inb(q[0], hi[0]), inb(q[1], hi[1])), inb(q[2], hi[2]));
                        let qs = q.map(|v| _mm256_blendv_ps(lo, v, m));
                        let i = qs.map(|v| _mm256_cvttps_epi32(v));
                        let t: [__m256; 3] = std::array::from_fn(|a| _mm256_sub_ps(qs[a], _mm256_cvtepi32_ps(i[a])));
                        let im1 = i.map(|v| _mm256_sub_epi32(v, _mm256_set1_epi32(1)));
                        let off = _mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(im1[0], _mm256_set1_epi32(sz as i32)), _mm256_mullo_epi32(im1[1], _mm256_set1_epi32(sy as i32))), im1[2]);
                        _mm256_storeu_si256(offset.as_mut_ptr().add(x) as *mut __m256i, off);
                        _mm256_storeu_ps(ok.as_mut_ptr().add(x), m);
                        let (w_z, w_y, w_x) = (weights(t[0]), weights(t[1]), weights(t[2]));
                        for tap in 0..4 {
                            _mm256_storeu_ps(wz[tap].as_mut_ptr().add(x), w_z[tap]);
                            _mm256_storeu_ps(wy[tap].as_mut_ptr().add(x), w_y[tap]);
                        }
                        // X weights voxel-major: two 4×4 transposes (one per 128-bit half).
                        let t01l = _mm256_unpacklo_ps(w_x[0], w_x[1]);
                        let t01h = _mm256_unpackhi_ps(w_x[0], w_x[1]);
                        let t23l = _mm256_unpacklo_ps(w_x[2], w_x[3]);
                        let t23h = _mm256_unpackhi_ps(w_x[2], w_x[3]);
                        let v0 = _mm256_shuffle_ps::<0x44>(t01l, t23l);
                        let v1 = _mm256_shuffle_ps::<0xEE>(t01l, t23l);
                        let v2 = _mm256_shuffle_ps::<0x44>(t01h, t23h);
                        let v3 = _mm256_shuffle_ps::<0xEE>(t01h, t23h);
                        let dst = wx.as_mut_ptr().add(4 * x);
                        for (lane, v) in [v0, v1, v2, v3].into_iter().enumerate() {
                            _mm_storeu_ps(dst.add(4 * lane), _mm256_castps256_ps128(v));
                            _mm_storeu_ps(dst.add(4 * (lane + 4)), _mm256_extractf128_ps::<1>(v));
                        }
                    }
                    for x in 0..w {
                        // SAFETY: in-bounds voxels have 0 ≤ floor(q) − 1 and floor(q) + 2 ≤ N − 1
                        // on every axis, so the 4×4×4 taps from `offset` lie inside `coef`; the
                        // others read taps 0..3 of a box of at least 4 voxels.
                        let p = base.add(offset[x] as usize);
                        let w_y = [_mm_set1_ps(wy[0][x]), _mm_set1_ps(wy[1][x]), _mm_set1_ps(wy[2][x]), _mm_set1_ps(wy[3][x])];
                        let w_z = [_mm_set1_ps(wz[0][x]), _mm_set1_ps(wz[1][x]), _mm_set1_ps(wz[2][x]), _mm_set1_ps(wz[3][x])];
                        let v = _mm_mul_ps(cubic_taps(p, [sz, sy], w_z, w_y), _mm_loadu_ps(wx.as_ptr().add(4 * x)));
                        // (v0 + v1) + (v2 + v3), as tricubic_slice.
                        let s = _mm_add_ps(v, _mm_movehdup_ps(v));
                        value[x] = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehl_ps(s, s)));
                    }
                    let row = (z * nc[1] + y) * w;
                    let (mut s0, mut s1, mut sq) = ([_mm256_setzero_ps(); 3], [_mm256_setzero_ps(); 3], _mm256_setzero_ps());
                    for x in (0..w).step_by(LANES) {
                        let v = _mm256_and_ps(_mm256_loadu_ps(value.as_ptr().add(x)), _mm256_loadu_ps(ok.as_ptr().add(x)));
                        let keep = _mm256_castsi256_ps(_mm256_loadu_si256(self.keep.as_ptr().add(row + x) as *const __m256i));
                        let d = _mm256_and_ps(_mm256_sub_ps(_mm256_loadu_ps(self.r1.as_ptr().add(row + x)), v), keep);
                        sq = _mm256_fmadd_ps(d, d, sq);
                        let xv = _mm256_loadu_ps(self.cx.as_ptr().add(x));
                        for i in 0..3 {
                            let t = _mm256_mul_ps(d, _mm256_loadu_ps(self.g[i].as_ptr().add(row + x)));
                            s0[i] = _mm256_add_ps(s0[i], t);
                            s1[i] = _mm256_fmadd_ps(t, xv, s1[i]);
                        }
                    }
                    let (cz, cy) = (self.cz[z], self.cy[y]);
                    for i in 0..3 {
                        let (r0, r1) = (hsum(s0[i]), hsum(s1[i]));
                        a[4 * i] += cz * r0;
                        a[4 * i + 1] += cy * r0;
                        a[4 * i + 2] += r1;
                        a[4 * i + 3] += r0;
                    }
                    sum_sq += hsum(sq);
                }
            }
            ResidualSums { a, sum_sq }
        }
    }
}

/// The 64 taps of one cubic sample from `p` (its first tap), weighted along Z and Y: the 4
/// X-neighbours still to be weighted by X. Sums as pairs of pairs, (t0 + t1) + (t2 + t3), not
/// one chain, so that the loop is not bound by the latency of its multiply-adds.
///
/// # Safety
/// AVX2 and FMA are present; `p + a·sz + b·sy + c` is inside the box for a, b, c in 0..4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn cubic_taps(p: *const f32, stride: [usize; 2], wz: [std::arch::x86_64::__m128; 4], wy: [std::arch::x86_64::__m128; 4]) -> std::arch::x86_64::__m128 {
    // SAFETY: the caller guarantees what this function's doc states.
    unsafe {
        use std::arch::x86_64::*;
        let [sz, sy] = stride;
        let (q0, q1, q2, q3) = (cubic_plane(p, sy, wy), cubic_plane(p.add(sz), sy, wy), cubic_plane(p.add(2 * sz), sy, wy), cubic_plane(p.add(3 * sz), sy, wy));
        _mm_add_ps(_mm_fmadd_ps(wz[1], q1, _mm_mul_ps(wz[0], q0)), _mm_fmadd_ps(wz[3], q3, _mm_mul_ps(wz[2], q2)))
    }
}

/// One Z-plane of [`cubic_taps`]: 4 rows of 4 X-neighbours from `pz`, weighted along Y.
///
/// # Safety
/// As [`cubic_taps`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn cubic_plane(pz: *const f32, sy: usize, wy: [std::arch::x86_64::__m128; 4]) -> std::arch::x86_64::__m128 {
    // SAFETY: the caller guarantees what this function's doc states.
    unsafe {
        use std::arch::x86_64::*;
        let p01 = _mm_fmadd_ps(wy[1], _mm_loadu_ps(pz.add(sy)), _mm_mul_ps(wy[0], _mm_loadu_ps(pz)));
        let p23 = _mm_fmadd_ps(wy[3], _mm_loadu_ps(pz.add(3 * sy)), _mm_mul_ps(wy[2], _mm_loadu_ps(pz.add(2 * sy))));
        _mm_add_ps(p01, p23)
    }
}

/// The sum of the 8 f32 lanes, in f64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn hsum(v: std::arch::x86_64::__m256) -> f64 {
    use std::arch::x86_64::*;
    let d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
    let s = _mm_add_pd(_mm256_castpd256_pd128(d), _mm256_extractf128_pd::<1>(d));
    _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
}

/// Where the voxels of one row sample image 2: the offset of each voxel's first tap, the
/// fractional parts (Z, Y, X) and whether spam's bounds test `1 ≤ q < N − 1` passed (all
/// bits set) or failed (0).
struct RowTaps {
    offset: Vec<i32>,
    r: [Vec<f32>; 3],
    ok: Vec<f32>,
}

/// [`RowTaps`] of 8 voxels at q (f32 lanes). Out-of-bounds lanes point at voxel (1, 1, 1).
///
/// # Safety
/// AVX2 is present; the image has strides `(sz, sy)`, at least 3 voxels on every axis and
/// fewer than `i32::MAX` in all, and `hi` is its shape minus one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn sample_points(stride: [usize; 2], hi: [f32; 3], q: [std::arch::x86_64::__m256; 3]) -> (std::arch::x86_64::__m256i, [std::arch::x86_64::__m256; 3], std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let one = _mm256_set1_ps(1.0);
    // Ordered comparisons: NaN fails.
    let inb = |v: __m256, h: f32| _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(v, one), _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_set1_ps(h)));
    let ok = _mm256_and_ps(_mm256_and_ps(inb(q[0], hi[0]), inb(q[1], hi[1])), inb(q[2], hi[2]));
    let safe = |v: __m256| _mm256_blendv_ps(one, v, ok);
    let qs = [safe(q[0]), safe(q[1]), safe(q[2])];
    let i = qs.map(|v| _mm256_cvttps_epi32(v));
    let r = std::array::from_fn(|a| _mm256_sub_ps(qs[a], _mm256_cvtepi32_ps(i[a])));
    let offset = _mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(i[0], _mm256_set1_epi32(stride[0] as i32)), _mm256_mullo_epi32(i[1], _mm256_set1_epi32(stride[1] as i32))), i[2]);
    (offset, r, ok)
}

/// Eight trilinear samples, voxels `x .. x + 8` of `taps`, 0 where out of bounds.
///
/// # Safety
/// AVX2 and FMA are present; `base` points at the image `taps` was computed for (by
/// [`sample_points`]) and `x + 8` is within the row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn trilinear8(base: *const f32, stride: [usize; 2], taps: &RowTaps, x: usize) -> std::arch::x86_64::__m256 {
    // SAFETY: the caller guarantees what this function's doc states (AVX2/FMA present,
    // pointers and offsets inside the buffers); every unsafe operation below relies on it.
    unsafe {
        use std::arch::x86_64::*;
        let [sz, sy] = stride;
        let lanes = &taps.offset[x..x + LANES];
        // Each voxel's taps are 4 pairs of X-neighbours, read with one 64-bit load per pair and
        // voxel (gathers are slow on many processors). With A = [p0 p1 | p4 p5] and
        // B = [p2 p3 | p6 p7], one shuffle gives the 8 left taps in voxel order, another the right.
        // SAFETY: in-bounds lanes read offset .. offset + sz + sy + 1 < N (1 ≤ q < N − 1 on every
        // axis); the others read around voxel (1, 1, 1).
        let pair = |o: usize| -> (__m256, __m256) {
            let p = |l: usize| base.add(lanes[l] as usize + o) as *const f64;
            let two = |l: usize, m: usize| _mm_loadh_pd(_mm_load_sd(p(l)), p(m));
            let a = _mm256_castpd_ps(_mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(two(0, 1)), two(4, 5)));
            let b = _mm256_castpd_ps(_mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(two(2, 3)), two(6, 7)));
            (_mm256_shuffle_ps::<0x88>(a, b), _mm256_shuffle_ps::<0xDD>(a, b))
        };
        let [rz, ry, rx] = std::array::from_fn(|a| _mm256_loadu_ps(taps.r[a].as_ptr().add(x)));
        let lerp = |a: __m256, c: __m256, r: __m256| _mm256_fmadd_ps(r, _mm256_sub_ps(c, a), a);
        let row_lerp = |o: usize| {
            let (l, r) = pair(o);
            lerp(l, r, rx)
        };
        let y0 = lerp(row_lerp(0), row_lerp(sy), ry);
        let y1 = lerp(row_lerp(sz), row_lerp(sz + sy), ry);
        _mm256_and_ps(lerp(y0, y1, rz), _mm256_loadu_ps(taps.ok.as_ptr().add(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::interp::{trilinear_rows, BackwardMap};

    /// The fused cubic pass against its scalar twin (`tricubic_rows` then the sums voxel by
    /// voxel in f64) on the same f32 coefficients: part of the crop maps outside the order-3
    /// bounds and some voxels are masked; A and Σ d² agree to f32 rounding, and so do the
    /// warped values (checked through Σ d², whose terms are each voxel's difference).
    #[test]
    fn fused_cubic_pass_matches_scalar_path() {
        if !ResidualPass::available() {
            return;
        }
        let n = [17usize, 19, 23];
        let grey: Vec<f32> = (0..n[0] * n[1] * n[2]).map(|i| 1000.0 + ((i * 7919) % 1013) as f32 * 3.7 + (i as f32 * 0.3).sin() * 100.0).collect();
        let coef = crate::kernels::interp::bspline_coefficients_f32(&grey, n);
        let nc = [13usize, 15, 19];
        let (origin1, origin2) = ([1usize, 1, 1], [2usize, 2, 2]);
        let im1 = ndarray::Array3::from_shape_fn((nc[0] + 2, nc[1] + 2, nc[2] + 2), |(z, y, x)| 900.0 + ((z * 31 + y * 17 + x * 7) % 211) as f32 + (x as f32 * 0.7).cos() * 40.0);
        let mask = ndarray::Array3::from_shape_fn(im1.dim(), |(z, y, x)| (z + 2 * y + 3 * x) % 41 != 3);
        let coords: [Vec<f64>; 3] = std::array::from_fn(|a| (0..nc[a]).map(|i| i as f64 - (nc[a] as f64 - 1.0) / 2.0).collect());
        let phi = crate::phi::compute_phi(&crate::phi::PhiComponents { t: Some([0.37, -1.21, 1.6]), r: Some([4.0, -3.0, 6.0]), z: Some([1.03, 0.97, 1.01]), ..Default::default() });
        let map = BackwardMap::from_phi(&phi, std::array::from_fn(|a| (n[a] as f64 - 1.0) / 2.0));
        let mut def = vec![0f32; nc.iter().product()];
        crate::kernels::interp::tricubic_rows(&coef, n, &map, origin2, nc, &mut def);
        let zeros = def.iter().filter(|v| **v == 0.0).count();
        assert!(zeros > 20 && zeros < def.len() / 2, "part of the crop must fall outside the box ({zeros})");
        let grad = crate::kernels::gradient::gradient_in_box(&im1.view(), origin1, nc);
        let (mut a, mut sq) = ([0f64; 12], 0f64);
        let mut i = 0;
        for z in 0..nc[0] {
            for y in 0..nc[1] {
                for x in 0..nc[2] {
                    let p = im1[[z + 1, y + 1, x + 1]];
                    if mask[[z + 1, y + 1, x + 1]] {
                        let d = (p - def[i]) as f64;
                        sq += d * d;
                        let xs = [coords[0][z], coords[1][y], coords[2][x], 1.0];
                        for r in 0..12 {
                            a[r] += d * grad[i][r / 4] as f64 * xs[r % 4];
                        }
                    }
                    i += 1;
                }
            }
        }
        let pass = ResidualPass::new(&im1.view(), Some(&mask.view()), origin1, nc, &coords, false);
        let got = pass.evaluate_cubic(&coef, n, &map, origin2);
        assert!((got.sum_sq - sq).abs() <= 1e-5 * sq, "{} vs {}", got.sum_sq, sq);
        let scale = a.iter().map(|v| v.abs()).fold(0.0, f64::max);
        for c in 0..12 {
            assert!((got.a[c] - a[c]).abs() <= 1e-5 * scale, "A[{c}]: {} vs {}", got.a[c], a[c]);
        }
    }

    /// The fused pass against the definitions, summed voxel by voxel in f64: the warp with
    /// spam's f64 kernel, the gradient of image 1, J = g_i·X_j. Parts of the crop map outside
    /// image 2 and some voxels are masked: A, Σ d², Σ im1 and M agree to f32 rounding.
    #[test]
    fn fused_pass_matches_its_definition() {
        if !ResidualPass::available() {
            return;
        }
        let n = [17usize, 19, 23];
        let data: Vec<f32> = (0..n[0] * n[1] * n[2]).map(|i| 1000.0 + ((i * 7919) % 1013) as f32 * 3.7 + (i as f32 * 0.3).sin() * 100.0).collect();
        let nc = [13usize, 15, 19];
        let (origin1, origin2) = ([1usize, 1, 1], [2usize, 2, 2]);
        let im1 = ndarray::Array3::from_shape_fn((nc[0] + 2, nc[1] + 2, nc[2] + 2), |(z, y, x)| 900.0 + ((z * 31 + y * 17 + x * 7) % 211) as f32 + (x as f32 * 0.7).cos() * 40.0);
        let mask = ndarray::Array3::from_shape_fn(im1.dim(), |(z, y, x)| (z + 2 * y + 3 * x) % 41 != 3);
        let coords: [Vec<f64>; 3] = std::array::from_fn(|a| (0..nc[a]).map(|i| i as f64 - (nc[a] as f64 - 1.0) / 2.0).collect());
        let phi = crate::phi::compute_phi(&crate::phi::PhiComponents { t: Some([0.37, -3.21, 2.6]), r: Some([4.0, -3.0, 6.0]), z: Some([1.03, 0.97, 1.01]), ..Default::default() });
        let map = BackwardMap::from_phi(&phi, std::array::from_fn(|a| (n[a] as f64 - 1.0) / 2.0));
        let mut def = vec![0f32; nc.iter().product()];
        trilinear_rows(&data, n, &map, origin2, nc, &mut def);
        assert!(def.iter().filter(|v| **v == 0.0).count() > 50, "part of the crop must fall outside image 2");
        let grad = crate::kernels::gradient::gradient_in_box(&im1.view(), origin1, nc);
        let (mut a, mut sq, mut den, mut m) = ([0f64; 12], 0f64, 0f64, [[0f64; 12]; 12]);
        let (mut i, mut kept) = (0, 0);
        for z in 0..nc[0] {
            for y in 0..nc[1] {
                for x in 0..nc[2] {
                    let p = im1[[z + 1, y + 1, x + 1]];
                    if !p.is_nan() && mask[[z + 1, y + 1, x + 1]] {
                        kept += 1;
                        let d = (p - def[i]) as f64;
                        den += p as f64;
                        sq += d * d;
                        let xs = [coords[0][z], coords[1][y], coords[2][x], 1.0];
                        let j: Vec<f64> = (0..12).map(|k| grad[i][k / 4] as f64 * xs[k % 4]).collect();
                        for r in 0..12 {
                            a[r] += d * j[r];
                            for c in 0..12 {
                                m[r][c] += j[r] * j[c];
                            }
                        }
                    }
                    i += 1;
                }
            }
        }
        assert!(kept < i - 40, "the test must mask voxels");
        let pass = ResidualPass::new(&im1.view(), Some(&mask.view()), origin1, nc, &coords, false);
        let got = pass.evaluate(&data, n, &map, origin2);
        assert!((got.sum_sq - sq).abs() <= 1e-5 * sq, "{} vs {}", got.sum_sq, sq);
        assert!((pass.den - den).abs() <= 1e-9 * den, "{} vs {}", pass.den, den);
        let scale = a.iter().map(|v| v.abs()).fold(0.0, f64::max);
        for c in 0..12 {
            assert!((got.a[c] - a[c]).abs() <= 1e-5 * scale, "A[{c}]: {} vs {}", got.a[c], a[c]);
        }
        let mscale = m.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max);
        for r in 0..12 {
            for c in 0..12 {
                assert!((pass.m[(r, c)] - m[r][c]).abs() <= 1e-5 * mscale, "M[{r}][{c}]: {} vs {}", pass.m[(r, c)], m[r][c]);
            }
        }
    }
}
