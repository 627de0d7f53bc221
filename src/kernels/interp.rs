//! Interpolation and image warping with spam's exact conventions.
//!
//! Trilinear (order 1) is spam's C kernel to the bit where it matters: transformed
//! coordinates evaluated in f32, weights in f64, and a voxel written only when every
//! coordinate satisfies `1 ≤ q < N − 1` (else 0). Order 3 is the cubic B-spline that spam's
//! Python path uses (SciPy's `map_coordinates(order=3)`): the box is first turned into
//! spline coefficients by the recursive prefilter (Unser's pole z = √3 − 2, mirror
//! boundaries), then sampled with 4 taps per axis. The prefilter is what makes it accurate:
//! we measured the Keys convolution kernel, which needs none, leaving a sub-voxel bias as
//! large as trilinear's on speckle images.

use ndarray::{Array3, ArrayView3};

use crate::phi::Phi;

/// Trilinear value at q, assuming `0 ≤ floor(q_i)` and `floor(q_i) + 1 < N_i`.
#[inline]
pub fn trilinear(im: &ArrayView3<f32>, q: [f32; 3]) -> f32 {
    match im.as_slice() {
        Some(data) => {
            let d = im.dim();
            trilinear_slice(data, [d.1 * d.2, d.2], q)
        }
        None => {
            let f = [q[0].floor(), q[1].floor(), q[2].floor()];
            let i = [f[0] as usize, f[1] as usize, f[2] as usize];
            let r = [(q[0] - f[0]) as f64, (q[1] - f[1]) as f64, (q[2] - f[2]) as f64];
            let mut acc = 0f64;
            for dz in 0..2 {
                let wz = if dz == 1 { r[0] } else { 1.0 - r[0] };
                for dy in 0..2 {
                    let wy = if dy == 1 { r[1] } else { 1.0 - r[1] };
                    for dx in 0..2 {
                        let wx = if dx == 1 { r[2] } else { 1.0 - r[2] };
                        acc += im[[i[0] + dz, i[1] + dy, i[2] + dx]] as f64 * wz * wy * wx;
                    }
                }
            }
            acc as f32
        }
    }
}

/// Trilinear value at q (all coordinates ≥ 0, in bounds) in a contiguous Z-major array with
/// strides (Z, Y). The hot loop of every registration: no bounds checks beyond the slice's,
/// truncation instead of `floor` (q ≥ 0), weights and sum in f64 as spam's kernel.
#[inline(always)]
pub fn trilinear_slice(data: &[f32], stride: [usize; 2], q: [f32; 3]) -> f32 {
    let (iz, iy, ix) = (q[0] as usize, q[1] as usize, q[2] as usize);
    let rz = (q[0] - iz as f32) as f64;
    let ry = (q[1] - iy as f32) as f64;
    let rx = (q[2] - ix as f32) as f64;
    let (sz, sy) = (stride[0], stride[1]);
    let b = iz * sz + iy * sy + ix;
    assert!(b + sz + sy + 1 < data.len(), "trilinear sample outside its box");
    // SAFETY: the largest offset read is b + sz + sy + 1, checked just above.
    let c = |o: usize| unsafe { *data.get_unchecked(b + o) } as f64;
    let x00 = c(0) * (1.0 - rx) + c(1) * rx;
    let x01 = c(sy) * (1.0 - rx) + c(sy + 1) * rx;
    let x10 = c(sz) * (1.0 - rx) + c(sz + 1) * rx;
    let x11 = c(sz + sy) * (1.0 - rx) + c(sz + sy + 1) * rx;
    let y0 = x00 * (1.0 - ry) + x01 * ry;
    let y1 = x10 * (1.0 - ry) + x11 * ry;
    (y0 * (1.0 - rz) + y1 * rz) as f32
}

/// The hot loop of every registration: `out` (Z-major, `dims`) gets the source `data` (shape
/// `n`) sampled trilinearly through `map` at the voxels `origin + [0, dims)`, 0 where spam's
/// bounds test `1 ≤ q < N − 1` fails. Coordinates are evaluated in f32 in spam's order
/// (K0·dz + K1·dy, then + K2·dx + K3 + c) a whole row at a time, which the compiler
/// vectorises; the AVX2 build of the same code is taken when the processor has it (f32
/// products and sums round the same in every width, so results are identical).
pub fn trilinear_rows(data: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3], dims: [usize; 3], out: &mut [f32]) {
    assert_eq!(data.len(), n[0] * n[1] * n[2], "source shape");
    assert_eq!(out.len(), dims[0] * dims[1] * dims[2], "output shape");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2, checked just above.
            return unsafe { trilinear_rows_avx2(data, n, map, origin, dims, out) };
        }
    }
    trilinear_rows_body(data, n, map, origin, dims, out)
}

/// Four voxels at a time: coordinates as in the scalar body, the taps gathered, weights and
/// sums in f64 lanes with the scalar body's operations in the same order (separate
/// multiplies and adds, no fused multiply-add), so every value is bit-identical to it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn trilinear_rows_avx2(data: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3], dims: [usize; 3], out: &mut [f32]) {
    // SAFETY: the caller guarantees what this function's doc states (AVX2/FMA present,
    // pointers and offsets inside the buffers); every unsafe operation below relies on it.
    unsafe {
        use std::arch::x86_64::*;
        // Gather offsets are i32: the box must be small enough (always true for windows and
        // labels; whole-volume warps with update-gradient may be larger).
        if n[0] * n[1] * n[2] >= i32::MAX as usize {
            return trilinear_rows_body(data, n, map, origin, dims, out);
        }
        let (sz, sy) = (n[1] * n[2], n[2]);
        let hi = [n[0] as f32 - 1.0, n[1] as f32 - 1.0, n[2] as f32 - 1.0];
        let cc = map.c;
        let dxs: Vec<f32> = (0..dims[2]).map(|x| (origin[2] + x) as f32 - cc[2]).collect();
        let mut q = [vec![0f32; dims[2]], vec![0f32; dims[2]], vec![0f32; dims[2]]];
        let base = data.as_ptr();
        for (z, slab) in out.chunks_exact_mut(dims[1] * dims[2]).enumerate() {
            let dz = (origin[0] + z) as f32 - cc[0];
            for (y, row) in slab.chunks_exact_mut(dims[2]).enumerate() {
                let dy = (origin[1] + y) as f32 - cc[1];
                row_coordinates(map, dz, dy, &dxs, &mut q);
                let mut x = 0;
                while x + 4 <= dims[2] {
                    let qz = _mm_loadu_ps(q[0].as_ptr().add(x));
                    let qy = _mm_loadu_ps(q[1].as_ptr().add(x));
                    let qx = _mm_loadu_ps(q[2].as_ptr().add(x));
                    _mm_storeu_ps(row.as_mut_ptr().add(x), trilinear4_avx2(base, [sz, sy], hi, [qz, qy, qx]));
                    x += 4;
                }
                // The last voxels of the row, one at a time.
                for x in x..dims[2] {
                    row[x] = 0.0;
                    let (qz, qy, qx) = (q[0][x], q[1][x], q[2][x]);
                    if qz >= 1.0 && qz < hi[0] && qy >= 1.0 && qy < hi[1] && qx >= 1.0 && qx < hi[2] {
                        row[x] = trilinear_slice(data, [sz, sy], [qz, qy, qx]);
                    }
                }
            }
        }
    }
}

/// Four trilinear samples at once, in f64 lanes with the scalar [`trilinear_slice`]'s
/// operations in the same order (separate multiplies and adds, no fused multiply-add), so
/// every value is bit-identical to it; 0 where spam's bounds test `1 ≤ q < N − 1` fails.
///
/// # Safety
/// The processor has AVX2, `base` points at a contiguous Z-major array with strides
/// `(sz, sy)` and at least 3 voxels on every axis whose size is below `i32::MAX`, and `hi` is
/// its shape minus one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn trilinear4_avx2(base: *const f32, stride: [usize; 2], hi: [f32; 3], q: [std::arch::x86_64::__m128; 3]) -> std::arch::x86_64::__m128 {
    // SAFETY: the caller guarantees what this function's doc states (AVX2/FMA present,
    // pointers and offsets inside the buffers); every unsafe operation below relies on it.
    unsafe {
        use std::arch::x86_64::*;
        let [sz, sy] = stride;
        let [qz, qy, qx] = q;
        // 1 ≤ q < N − 1 on every axis (ordered comparisons: NaN fails).
        let inb = |v: __m128, h: f32| _mm_and_ps(_mm_cmp_ps::<_CMP_GE_OQ>(v, _mm_set1_ps(1.0)), _mm_cmp_ps::<_CMP_LT_OQ>(v, _mm_set1_ps(h)));
        let ok = _mm_and_ps(_mm_and_ps(inb(qz, hi[0]), inb(qy, hi[1])), inb(qx, hi[2]));
        if _mm_movemask_ps(ok) == 0 {
            return _mm_setzero_ps();
        }
        // Out-of-bounds lanes sample voxel (1, 1, 1) and are zeroed below.
        let safe = |v: __m128| _mm_blendv_ps(_mm_set1_ps(1.0), v, ok);
        let (qz, qy, qx) = (safe(qz), safe(qy), safe(qx));
        let (iz, iy, ix) = (_mm_cvttps_epi32(qz), _mm_cvttps_epi32(qy), _mm_cvttps_epi32(qx));
        let rz = _mm256_cvtps_pd(_mm_sub_ps(qz, _mm_cvtepi32_ps(iz)));
        let ry = _mm256_cvtps_pd(_mm_sub_ps(qy, _mm_cvtepi32_ps(iy)));
        let rx = _mm256_cvtps_pd(_mm_sub_ps(qx, _mm_cvtepi32_ps(ix)));
        let b = _mm_add_epi32(_mm_add_epi32(_mm_mullo_epi32(iz, _mm_set1_epi32(sz as i32)), _mm_mullo_epi32(iy, _mm_set1_epi32(sy as i32))), ix);
        // SAFETY: in-bounds lanes read b .. b + sz + sy + 1 < data.len() (as in the scalar
        // body); the others read around voxel (1, 1, 1), inside any box with an in-bounds voxel.
        // Each voxel's taps are 4 pairs of neighbours along X: one 64-bit load per pair and lane,
        // shuffled into (left taps, right taps) of the 4 voxels (gathers are slow on many
        // processors).
        let lanes = [_mm_cvtsi128_si32(b), _mm_extract_epi32::<1>(b), _mm_extract_epi32::<2>(b), _mm_extract_epi32::<3>(b)];
        let pair = |o: usize| -> (__m256d, __m256d) {
            let ld = |l: usize| _mm_castpd_ps(_mm_load_sd(base.add(lanes[l] as usize + o) as *const f64));
            let (t01, t23) = (_mm_unpacklo_ps(ld(0), ld(1)), _mm_unpacklo_ps(ld(2), ld(3)));
            (_mm256_cvtps_pd(_mm_movelh_ps(t01, t23)), _mm256_cvtps_pd(_mm_movehl_ps(t23, t01)))
        };
        let one = _mm256_set1_pd(1.0);
        let (urx, ury, urz) = (_mm256_sub_pd(one, rx), _mm256_sub_pd(one, ry), _mm256_sub_pd(one, rz));
        let lerp = |a: __m256d, c: __m256d, w0: __m256d, w1: __m256d| _mm256_add_pd(_mm256_mul_pd(a, w0), _mm256_mul_pd(c, w1));
        let row_lerp = |o: usize| {
            let (l, r) = pair(o);
            lerp(l, r, urx, rx)
        };
        let x00 = row_lerp(0);
        let x01 = row_lerp(sy);
        let x10 = row_lerp(sz);
        let x11 = row_lerp(sz + sy);
        let y0 = lerp(x00, x01, ury, ry);
        let y1 = lerp(x10, x11, ury, ry);
        _mm_and_ps(_mm256_cvtpd_ps(lerp(y0, y1, urz, rz)), ok)
    }
}

/// The source coordinates of one output row, in spam's f32 order of operations.
#[inline(always)]
pub(crate) fn row_coordinates(map: &BackwardMap, dz: f32, dy: f32, dxs: &[f32], q: &mut [Vec<f32>; 3]) {
    let (k, cc) = (map.k, map.c);
    for i in 0..3 {
        let a = k[i][0] * dz + k[i][1] * dy;
        for (qi, &dx) in q[i].iter_mut().zip(dxs) {
            *qi = a + k[i][2] * dx + k[i][3] + cc[i];
        }
    }
}

/// Walks the output box `origin + [0, dims)` row by row: each row's source coordinates
/// through `map` (spam's f32 order, [`row_coordinates`]), then `sample(row, q)` fills the row
/// from them. The one loop the scalar trilinear and cubic samplers share.
#[inline(always)]
fn for_each_row(map: &BackwardMap, origin: [usize; 3], dims: [usize; 3], out: &mut [f32], mut sample: impl FnMut(&mut [f32], &[Vec<f32>; 3])) {
    let cc = map.c;
    let dxs: Vec<f32> = (0..dims[2]).map(|x| (origin[2] + x) as f32 - cc[2]).collect();
    let mut q = [vec![0f32; dims[2]], vec![0f32; dims[2]], vec![0f32; dims[2]]];
    for (z, slab) in out.chunks_exact_mut(dims[1] * dims[2]).enumerate() {
        let dz = (origin[0] + z) as f32 - cc[0];
        for (y, row) in slab.chunks_exact_mut(dims[2]).enumerate() {
            let dy = (origin[1] + y) as f32 - cc[1];
            row_coordinates(map, dz, dy, &dxs, &mut q);
            sample(row, &q);
        }
    }
}

fn trilinear_rows_body(data: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3], dims: [usize; 3], out: &mut [f32]) {
    let (sz, sy) = (n[1] * n[2], n[2]);
    let hi = [n[0] as f32 - 1.0, n[1] as f32 - 1.0, n[2] as f32 - 1.0];
    for_each_row(map, origin, dims, out, |row, q| {
        for (x, v) in row.iter_mut().enumerate() {
            let (qz, qy, qx) = (q[0][x], q[1][x], q[2][x]);
            if qz >= 1.0 && qz < hi[0] && qy >= 1.0 && qy < hi[1] && qx >= 1.0 && qx < hi[2] {
                *v = trilinear_slice(data, [sz, sy], [qz, qy, qx]);
            }
        }
    });
}

/// Cubic B-spline weights of the 4 taps at i−1, i, i+1, i+2 for fractional part t.
#[inline]
pub(crate) fn bspline_weights(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    let u = 1.0 - t;
    [u * u * u / 6.0, (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0, (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0, t3 / 6.0]
}

/// Turns samples into cubic B-spline coefficients along one line, in place (mirror
/// boundaries, as SciPy's `spline_filter1d(mode="mirror")`).
fn prefilter_line(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z = 3f64.sqrt() - 2.0;
    let lambda = (1.0 - z) * (1.0 - 1.0 / z);
    c.iter_mut().for_each(|v| *v *= lambda);
    // Causal initialisation: mirror-symmetric sum, truncated where z^k is negligible.
    let horizon = ((f64::EPSILON.ln() / z.abs().ln()).ceil() as usize).min(n);
    let mut zk = z;
    let mut sum = c[0];
    for v in c.iter().take(horizon).skip(1) {
        sum += zk * v;
        zk *= z;
    }
    if horizon < n {
        c[0] = sum;
    } else {
        // Exact mirror initialisation for short lines.
        let zn = z.powi(n as i32 - 1);
        let mut z2n = zn * zn / z;
        let iz = 1.0 / z;
        let mut s = c[0] + zn * c[n - 1];
        let mut zk = z;
        for v in c.iter().take(n - 1).skip(1) {
            s += (zk + z2n) * v;
            zk *= z;
            z2n *= iz;
        }
        c[0] = s / (1.0 - zn * zn);
    }
    for k in 1..n {
        c[k] += z * c[k - 1];
    }
    c[n - 1] = (z / (z * z - 1.0)) * (z * c[n - 2] + c[n - 1]);
    for k in (0..n - 1).rev() {
        c[k] = z * (c[k + 1] - c[k]);
    }
}

/// Cubic B-spline coefficients of a box (separable prefilter along Z, Y and X).
pub fn bspline_coefficients(im: &ArrayView3<f32>) -> Array3<f32> {
    let mut c = im.mapv(|v| v as f64);
    let mut line = Vec::new();
    for axis in 0..3 {
        for mut lane in c.lanes_mut(ndarray::Axis(axis)) {
            line.clear();
            line.extend(lane.iter().copied());
            prefilter_line(&mut line);
            lane.iter_mut().zip(&line).for_each(|(d, v)| *d = *v);
        }
    }
    c.mapv(|v| v as f32)
}

/// Cubic B-spline value at q from coefficients (see [`bspline_coefficients`]), assuming
/// `1 ≤ floor(q_i)` and `floor(q_i) + 2 < N_i`.
#[inline]
pub fn tricubic(im: &ArrayView3<f32>, q: [f32; 3]) -> f32 {
    let f = [q[0].floor(), q[1].floor(), q[2].floor()];
    let i = [f[0] as isize, f[1] as isize, f[2] as isize];
    let r = [(q[0] - f[0]) as f64, (q[1] - f[1]) as f64, (q[2] - f[2]) as f64];
    let w = |a: usize| bspline_weights(r[a]);
    let (wz, wy, wx) = (w(0), w(1), w(2));
    let mut acc = 0f64;
    for (a, wa) in wz.iter().enumerate() {
        for (b, wb) in wy.iter().enumerate() {
            let mut row = 0f64;
            for (c, wc) in wx.iter().enumerate() {
                row += im[[(i[0] - 1 + a as isize) as usize, (i[1] - 1 + b as isize) as usize, (i[2] - 1 + c as isize) as usize]] as f64 * wc;
            }
            acc += row * wa * wb;
        }
    }
    acc as f32
}

/// The pole of the cubic B-spline prefilter, √3 − 2.
const POLE: f32 = -0.267_949_2;

/// Cubic B-spline coefficients of a contiguous Z-major box of shape `n`, in f32: the same
/// filter as [`bspline_coefficients`] (mirror boundaries), computed in place a whole plane or
/// row of lines at a time so that the recursions vectorise instead of running one strided line
/// after another in f64 (that was a fifth of `ldic -o 3`'s time). The causal sum is truncated
/// where z^k falls below f32's precision; values agree with the f64 filter to f32 rounding.
pub fn bspline_coefficients_f32(data: &[f32], n: [usize; 3]) -> Vec<f32> {
    assert_eq!(data.len(), n[0] * n[1] * n[2], "box shape");
    let lambda = (1.0 - POLE) * (1.0 - 1.0 / POLE);
    // The gain of the passes at once (each pass is linear); an axis of one sample (a 2D
    // image's Z) is not filtered and has no gain.
    let gain = n.iter().filter(|&&len| len >= 2).fold(1.0f32, |g, _| g * lambda);
    let mut c: Vec<f32> = data.iter().map(|v| v * gain).collect();
    let (sz, sy) = (n[1] * n[2], n[2]);
    // Z: one group of ny·nx contiguous lines, samples a plane apart.
    prefilter_lines(&mut c, LineSet { start: 0, width: sz, line_stride: 1, len: n[0], step: sz });
    for z in 0..n[0] {
        // Y: per plane, nx contiguous lines, samples a row apart.
        prefilter_lines(&mut c, LineSet { start: z * sz, width: n[2], line_stride: 1, len: n[1], step: sy });
        // X: per plane, ny lines a row apart, contiguous samples: the lines are independent, so
        // stepping all of them one sample at a time keeps the recursion's latency hidden.
        prefilter_lines(&mut c, LineSet { start: z * sz, width: n[1], line_stride: sy, len: n[2], step: 1 });
    }
    c
}

/// `width` lines of `len` samples: line j's sample k is at `start + j·line_stride + k·step`.
#[derive(Clone, Copy)]
struct LineSet {
    start: usize,
    width: usize,
    line_stride: usize,
    len: usize,
    step: usize,
}

impl LineSet {
    /// `c[dst] = f(c[dst], c[src])` for sample indices dst ≠ src of every line.
    #[inline(always)]
    fn combine(&self, c: &mut [f32], dst: usize, src: usize, f: impl Fn(f32, f32) -> f32) {
        let (d0, s0) = (self.start + dst * self.step, self.start + src * self.step);
        if self.line_stride == 1 {
            // Contiguous lines: two disjoint slices (step ≥ width), which the compiler vectorises.
            if d0 < s0 {
                let (a, b) = c.split_at_mut(s0);
                a[d0..d0 + self.width].iter_mut().zip(&b[..self.width]).for_each(|(x, y)| *x = f(*x, *y));
            } else {
                let (a, b) = c.split_at_mut(d0);
                b[..self.width].iter_mut().zip(&a[s0..s0 + self.width]).for_each(|(x, y)| *x = f(*x, *y));
            }
        } else {
            for j in 0..self.width {
                let o = j * self.line_stride;
                c[d0 + o] = f(c[d0 + o], c[s0 + o]);
            }
        }
    }

    /// `c[k] *= s` on every line.
    fn scale(&self, c: &mut [f32], k: usize, s: f32) {
        for j in 0..self.width {
            c[self.start + j * self.line_stride + k * self.step] *= s;
        }
    }
}

/// The recursive prefilter of [`prefilter_line`] (without its gain) on a set of lines.
fn prefilter_lines(c: &mut [f32], l: LineSet) {
    let (n, z) = (l.len, POLE);
    if n < 2 {
        return;
    }
    // Causal initialisation: the mirror-symmetric sum, truncated where z^k < f32 precision.
    let horizon = (f32::EPSILON.ln() / z.abs().ln()).ceil() as usize;
    if horizon < n {
        let mut zk = z;
        for k in 1..horizon {
            l.combine(c, 0, k, |x, y| x + zk * y);
            zk *= z;
        }
    } else {
        // Exact mirror initialisation for short lines.
        let zn = z.powi(n as i32 - 1);
        let mut z2n = zn * zn / z;
        l.combine(c, 0, n - 1, |x, y| x + zn * y);
        let mut zk = z;
        for k in 1..n - 1 {
            let w = zk + z2n;
            l.combine(c, 0, k, |x, y| x + w * y);
            zk *= z;
            z2n /= z;
        }
        l.scale(c, 0, 1.0 / (1.0 - zn * zn));
    }
    for k in 1..n {
        l.combine(c, k, k - 1, |x, y| x + z * y);
    }
    let end = z / (z * z - 1.0);
    l.combine(c, n - 1, n - 2, |x, y| end * (z * y + x));
    for k in (0..n - 1).rev() {
        l.combine(c, k, k + 1, |x, y| z * (y - x));
    }
}

/// Cubic B-spline weights of the 4 taps at i−1, i, i+1, i+2 for fractional part t, in f32:
/// the arithmetic of the fused AVX2 pass, operation for operation.
#[inline(always)]
pub(crate) fn bspline_weights_f32(t: f32) -> [f32; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    let u = 1.0 - t;
    let sixth = 1.0 / 6.0;
    [u * u * u * sixth, (0.5 * t3 - t2) + 2.0 / 3.0, ((-0.5 * t3 + 0.5 * t2) + 0.5 * t) + sixth, t3 * sixth]
}

/// Cubic B-spline value at q from f32 coefficients `coef` (Z-major, strides (Z, Y)), for
/// `1 ≤ q_i` and `floor(q_i) + 2 < N_i`: the scalar twin of the fused pass (truncation for
/// floor, f32 weights, the taps summed along X, then Y, then Z).
#[inline]
pub fn tricubic_slice(coef: &[f32], stride: [usize; 2], q: [f32; 3]) -> f32 {
    let i = [q[0] as usize, q[1] as usize, q[2] as usize];
    let [wz, wy, wx] = std::array::from_fn(|a| bspline_weights_f32(q[a] - i[a] as f32));
    let b = (i[0] - 1) * stride[0] + (i[1] - 1) * stride[1] + i[2] - 1;
    // Pairs of pairs, (t0 + t1) + (t2 + t3), as the fused pass sums them.
    let pairs = |v: [f32; 4]| (v[0] + v[1]) + (v[2] + v[3]);
    let plane = |a: usize| -> [f32; 4] {
        std::array::from_fn(|c| pairs(std::array::from_fn(|r| wy[r] * coef[b + a * stride[0] + r * stride[1] + c])))
    };
    let planes = [plane(0), plane(1), plane(2), plane(3)];
    let acc: [f32; 4] = std::array::from_fn(|c| pairs(std::array::from_fn(|a| wz[a] * planes[a][c])));
    pairs(std::array::from_fn(|c| acc[c] * wx[c]))
}

/// [`trilinear_rows`] for the cubic B-spline: `out` gets the coefficients `coef` (shape `n`)
/// sampled through `map` at the voxels `origin + [0, dims)`, 0 where a tap would fall outside
/// the box (`1 ≤ q < N − 2` fails: wider than spam's `3 ≤ q < N − 3` for order 3, so that a
/// window may move as far inside its search margin as with trilinear interpolation);
/// coordinates in spam's f32 order. The scalar path of the fused pass.
pub fn tricubic_rows(coef: &[f32], n: [usize; 3], map: &BackwardMap, origin: [usize; 3], dims: [usize; 3], out: &mut [f32]) {
    assert_eq!(coef.len(), n[0] * n[1] * n[2], "source shape");
    assert_eq!(out.len(), dims[0] * dims[1] * dims[2], "output shape");
    let stride = [n[1] * n[2], n[2]];
    for_each_row(map, origin, dims, out, |row, q| {
        for (x, v) in row.iter_mut().enumerate() {
            let qv = [q[0][x], q[1][x], q[2][x]];
            *v = if (0..3).all(|a| qv[a] >= 1.0 && qv[a] < n[a] as f32 - 2.0) { tricubic_slice(coef, stride, qv) } else { 0.0 };
        }
    });
}

/// Whether q can be sampled with `order` (1 or 3) in an image of shape n (spam's C bounds
/// test `order ≤ q < N − order`).
#[inline]
pub fn in_bounds(q: [f32; 3], n: [usize; 3], order: usize) -> bool {
    let o = order as f32;
    (0..3).all(|a| q[a] >= o && q[a] < n[a] as f32 - o)
}

/// Samples with the given order, 0 where out of bounds. For order 3, `im` holds B-spline
/// coefficients.
#[inline]
pub fn sample(im: &ArrayView3<f32>, q: [f32; 3], order: usize) -> f32 {
    let d = im.dim();
    if !in_bounds(q, [d.0, d.1, d.2], order) {
        return 0.0;
    }
    if order == 3 {
        tricubic(im, q)
    } else {
        trilinear(im, q)
    }
}

/// The f32 coefficients of a "backward" map: q = c + K (x − c) + k, all in f32 as spam does.
#[derive(Clone, Copy, Debug)]
pub struct BackwardMap {
    pub k: [[f32; 4]; 3],
    pub c: [f32; 3],
}

impl BackwardMap {
    /// The map that samples the source at `c + F(x − c) + t` for Φ = [F, t] (spam's
    /// convention when it warps im2 "by Φ" inside `register`).
    pub fn from_phi(k: &Phi, centre: [f64; 3]) -> BackwardMap {
        let mut m = [[0f32; 4]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = k[(i, j)] as f32;
            }
        }
        BackwardMap { k: m, c: [centre[0] as f32, centre[1] as f32, centre[2] as f32] }
    }

    /// Source coordinate of output voxel x.
    #[inline]
    pub fn apply(&self, x: [f32; 3]) -> [f32; 3] {
        let d = [x[0] - self.c[0], x[1] - self.c[1], x[2] - self.c[2]];
        std::array::from_fn(|i| self.k[i][0] * d[0] + self.k[i][1] * d[1] + self.k[i][2] * d[2] + self.k[i][3] + self.c[i])
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_warp_is_bit_identical_on_every_path() {
        // Random-ish data and a map that sends parts of the box outside (zeros) and inside.
        let n = [9usize, 11, 13];
        let data: Vec<f32> = (0..n[0] * n[1] * n[2]).map(|i| ((i * 7919) % 1013) as f32 * 3.7 + (i as f32).sin() * 100.0).collect();
        let phi = crate::phi::compute_phi(&crate::phi::PhiComponents { t: Some([0.37, -1.21, 2.6]), r: Some([7.0, -3.0, 11.0]), z: Some([1.03, 0.97, 1.01]), ..Default::default() });
        let map = BackwardMap::from_phi(&phi, [4.0, 5.0, 6.0]);
        let dims = [7, 9, 11];
        let mut a = vec![0f32; dims.iter().product()];
        let mut b = a.clone();
        trilinear_rows(&data, n, &map, [1, 1, 1], dims, &mut a);
        trilinear_rows_body(&data, n, &map, [1, 1, 1], dims, &mut b);
        assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert!(a.iter().filter(|v| **v == 0.0).count() > 10 && a.iter().filter(|v| **v != 0.0).count() > 100);
        // And the same values as one voxel at a time through the bounds test and `trilinear_slice`.
        let mut i = 0;
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    let q = map.apply([(1 + z) as f32, (1 + y) as f32, (1 + x) as f32]);
                    let want = if (0..3).all(|k| q[k] >= 1.0 && q[k] < n[k] as f32 - 1.0) { trilinear_slice(&data, [n[1] * n[2], n[2]], q) } else { 0.0 };
                    assert_eq!(a[i].to_bits(), want.to_bits(), "({z}, {y}, {x})");
                    i += 1;
                }
            }
        }
    }

    /// The f32 plane-at-a-time prefilter is the f64 line-at-a-time one to f32 rounding, on
    /// boxes longer and shorter than its truncation horizon; and the scalar sampler on its
    /// coefficients is the f64 one.
    #[test]
    fn f32_prefilter_and_sampler_match_the_f64_ones() {
        for n in [[17usize, 9, 23], [5, 30, 12]] {
            let grey = Array3::from_shape_fn((n[0], n[1], n[2]), |(z, y, x)| 1000.0 + (((z * 131 + y * 71 + x * 17) * 7919) % 1013) as f32 * 3.7 + ((x + y) as f32 * 0.3).sin() * 100.0);
            let want = bspline_coefficients(&grey.view());
            let got = bspline_coefficients_f32(grey.as_slice().unwrap(), n);
            let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
            for (g, w) in got.iter().zip(want.iter()) {
                assert!((g - w).abs() <= 2e-6 * scale, "{g} vs {w} (shape {n:?})");
            }
            if n[0] >= 7 && n[1] >= 7 {
                let q = [3.37f32, 4.81, 5.02];
                let v = tricubic_slice(&got, [n[1] * n[2], n[2]], q);
                let w = tricubic(&want.view(), q);
                assert!((v - w).abs() <= 1e-5 * scale, "{v} vs {w}");
            }
        }
    }

    #[test]
    fn interpolators_reproduce_linear_and_cubic_exactly() {
        let lin = Array3::from_shape_fn((8, 8, 8), |(z, y, x)| (2.0 * z as f32) - y as f32 + 0.5 * x as f32);
        let v = lin.view();
        let q = [3.25f32, 2.5, 4.75];
        let want = 2.0 * 3.25 - 2.5 + 0.5 * 4.75;
        assert!((trilinear(&v, q) - want).abs() < 1e-5);
        // The B-spline interpolates: at grid points it returns the samples, and between them
        // it follows a smooth signal closely.
        let smooth = Array3::from_shape_fn((16, 16, 16), |(z, y, x)| ((z as f32) * 0.7).sin() * 100.0 + ((y + 2 * x) as f32 * 0.3).cos() * 50.0);
        let c = bspline_coefficients(&smooth.view());
        assert!((tricubic(&c.view(), [7.0, 8.0, 6.0]) - smooth[[7, 8, 6]]).abs() < 1e-3);
        let exact = (7.25f32 * 0.7).sin() * 100.0 + ((8.5 + 2.0 * 6.75f32) * 0.3).cos() * 50.0;
        assert!((tricubic(&c.view(), [7.25, 8.5, 6.75]) - exact).abs() < 1.0, "{}", tricubic(&c.view(), [7.25, 8.5, 6.75]) - exact);
        assert_eq!(sample(&v, [0.5, 3.0, 3.0], 1), 0.0, "outermost layer is never sampled");
    }

}
