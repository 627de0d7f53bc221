//! Integer-offset search by normalised cross-correlation: the kernel of pixel search.
//!
//! spam's kernel (spam-compat.md §3.5) tries every integer offset k of window 1 inside
//! window 2 and scores it with the non-centred coefficient `cc = Σ i1·i2 / √(Σ i1² · Σ i2²)`
//! over the voxels where neither window is NaN. It sums in f32 and uses the "fast inverse
//! square root", so identical windows score ≈ 0.9994; its cost is (window volume) × (number
//! of offsets), which grows as the sixth power of the search range.
//!
//! This kernel computes the same coefficient exactly (f64 sums, a true square root: identical
//! windows give 1.0) and picks, per call, the cheaper of two ways to get every offset's sums:
//! direct sums (small ranges), or FFT cross-correlation for Σ i1·i2 with a summed-volume
//! table for the sliding Σ i2² (large ranges; masked windows use three correlations, as in
//! Padfield's masked NCC). The winner is then re-scored directly in f64, so the reported
//! coefficient never carries FFT round-off.

use std::sync::Arc;

use ndarray::ArrayView3;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// The best offset of a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    /// Offset of window 1 inside window 2 (Z, Y, X), each in `0..=size2 − size1`.
    pub offset: [usize; 3],
    /// Correlation coefficient at that offset (0 when no offset scores above 0).
    pub cc: f64,
    /// Sub-voxel correction from a parabola through the neighbouring offsets (zero where a
    /// neighbour is outside the range); filled only when asked for.
    pub subvoxel: [f64; 3],
}

/// How the sums of every offset are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Method {
    /// Cheapest by the cost model.
    Auto,
    Direct,
    Fft,
}

/// Windows with NaNs replaced by 0, plus whether any NaN was seen.
struct Prepared {
    v: Vec<f64>,
    valid: Vec<f64>,
    any_nan: bool,
    dims: [usize; 3],
}

fn prepare(a: &ArrayView3<f32>) -> Prepared {
    let d = a.dim();
    let mut v = Vec::with_capacity(a.len());
    let mut valid = Vec::with_capacity(a.len());
    let mut any_nan = false;
    for x in a.iter() {
        if x.is_nan() {
            any_nan = true;
            v.push(0.0);
            valid.push(0.0);
        } else {
            v.push(*x as f64);
            valid.push(1.0);
        }
    }
    Prepared { v, valid, any_nan, dims: [d.0, d.1, d.2] }
}

/// The sums one offset's coefficient is made of, over the voxels valid in both windows:
/// a = Σ i1·i2, b = Σ i1², c = Σ i2², s1 = Σ i1, s2 = Σ i2, n = count.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    a: f64,
    b: f64,
    c: f64,
    s1: f64,
    s2: f64,
    n: f64,
}

impl Sums {
    /// spam's non-centred coefficient a/√(bc), or with `centred` the zero-normalised one
    /// (window means removed), which ignores grey-level offsets between the scans.
    fn score(&self, centred: bool) -> f64 {
        let (a, b, c) = if centred {
            if self.n < 2.0 {
                return 0.0;
            }
            (self.a - self.s1 * self.s2 / self.n, self.b - self.s1 * self.s1 / self.n, self.c - self.s2 * self.s2 / self.n)
        } else {
            (self.a, self.b, self.c)
        };
        // Round-off can leave tiny negative sums where (almost) nothing overlaps.
        if !(b > 0.0 && c > 0.0) {
            return 0.0;
        }
        let d = (b * c).sqrt();
        if d > 0.0 {
            a / d
        } else {
            0.0
        }
    }
}

/// The sums with window 1 at offset `k` in window 2.
fn sums_at(p1: &Prepared, p2: &Prepared, k: [usize; 3]) -> Sums {
    let [n0, n1, n2] = p1.dims;
    let [_, m1, m2] = p2.dims;
    let mut s = Sums::default();
    for z in 0..n0 {
        for y in 0..n1 {
            let r1 = (z * n1 + y) * n2;
            let r2 = ((z + k[0]) * m1 + y + k[1]) * m2 + k[2];
            for x in 0..n2 {
                let w = p1.valid[r1 + x] * p2.valid[r2 + x];
                let (u, v) = (p1.v[r1 + x] * w, p2.v[r2 + x] * w);
                s.a += u * v;
                s.b += u * u;
                s.c += v * v;
                s.s1 += u;
                s.s2 += v;
                s.n += w;
            }
        }
    }
    s
}

/// Exact coefficient of window 1 at offset `k` in window 2.
pub fn cc_at(i1: &ArrayView3<f32>, i2: &ArrayView3<f32>, k: [usize; 3]) -> f64 {
    sums_at(&prepare(i1), &prepare(i2), k).score(false)
}

/// The number of offsets per axis, or None when window 2 is smaller than window 1.
fn offsets(p1: &Prepared, p2: &Prepared) -> Option<[usize; 3]> {
    let mut r = [0; 3];
    for a in 0..3 {
        if p2.dims[a] < p1.dims[a] || p1.dims[a] == 0 {
            return None;
        }
        r[a] = p2.dims[a] - p1.dims[a] + 1;
    }
    Some(r)
}

/// The smallest 2·3·5-smooth number ≥ n (fast FFT sizes).
fn fft_size(n: usize) -> usize {
    let mut m = n.max(1);
    loop {
        let mut r = m;
        for p in [2, 3, 5] {
            while r.is_multiple_of(p) {
                r /= p;
            }
        }
        if r == 1 {
            return m;
        }
        m += 1;
    }
}

/// Relative costs (in multiply-adds) of the two methods for these windows.
fn costs(p1: &Prepared, p2: &Prepared, nk: [usize; 3]) -> (f64, f64) {
    let n1: f64 = p1.dims.iter().product::<usize>() as f64;
    let offsets: f64 = nk.iter().product::<usize>() as f64;
    let masked = p1.any_nan || p2.any_nan;
    let direct = n1 * offsets * if masked { 3.0 } else { 1.0 };
    let m: [usize; 3] = std::array::from_fn(|a| fft_size(p2.dims[a]));
    let len = (m[0] * m[1] * m[2]) as f64;
    // Complex transforms: one forward and one inverse unmasked, three and two masked; each
    // costs about 3 · len · log2(len) multiply-adds (measured against the direct loop).
    let transforms = if masked { 5.0 } else { 2.0 };
    let fft = transforms * 3.0 * len * len.log2() + 4.0 * len;
    (direct, fft)
}

/// Finds the offset with the highest coefficient (first strictly greater, in Z, Y, X order,
/// from 0 as spam does). None when window 2 is smaller than window 1 on an axis.
pub fn search(i1: &ArrayView3<f32>, i2: &ArrayView3<f32>, method: Method, subvoxel: bool, centred: bool) -> Option<Best> {
    let p1 = prepare(i1);
    let p2 = prepare(i2);
    let nk = offsets(&p1, &p2)?;
    let use_fft = match method {
        Method::Direct => false,
        Method::Fft => true,
        Method::Auto => {
            let (d, f) = costs(&p1, &p2, nk);
            f < d
        }
    };
    let scores = if use_fft { scores_fft(&p1, &p2, nk, centred) } else { scores_direct(&p1, &p2, nk, centred) };
    let mut best = [0usize; 3];
    let mut best_cc = 0f64;
    for (i, &s) in scores.iter().enumerate() {
        if s > best_cc {
            best_cc = s;
            best = [i / (nk[1] * nk[2]), (i / nk[2]) % nk[1], i % nk[2]];
        }
    }
    if best_cc <= 0.0 {
        return Some(Best { offset: [0; 3], cc: 0.0, subvoxel: [0.0; 3] });
    }
    // Re-score the winner exactly: FFT round-off must not reach the output.
    let cc = sums_at(&p1, &p2, best).score(centred);
    let mut sub = [0f64; 3];
    if subvoxel {
        for ax in 0..3 {
            if best[ax] == 0 || best[ax] + 1 >= nk[ax] {
                continue;
            }
            let mut km = best;
            km[ax] -= 1;
            let mut kp = best;
            kp[ax] += 1;
            let cm = sums_at(&p1, &p2, km).score(centred);
            let cp = sums_at(&p1, &p2, kp).score(centred);
            let curv = cm - 2.0 * cc + cp;
            if curv < 0.0 {
                sub[ax] = (0.5 * (cm - cp) / curv).clamp(-0.5, 0.5);
            }
        }
    }
    Some(Best { offset: best, cc, subvoxel: sub })
}

/// spam's error measure at offset k: Σ (i1 − i2)² over voxels valid in both, divided by Σ i1
/// over valid voxels of window 1 (computed in f64).
pub fn error_at(i1: &ArrayView3<f32>, i2: &ArrayView3<f32>, k: [usize; 3]) -> f64 {
    let d1 = i1.dim();
    let mut num = 0f64;
    let mut den = 0f64;
    for z in 0..d1.0 {
        for y in 0..d1.1 {
            for x in 0..d1.2 {
                let u = i1[[z, y, x]];
                if u.is_nan() {
                    continue;
                }
                den += u as f64;
                let v = i2[[z + k[0], y + k[1], x + k[2]]];
                if !v.is_nan() {
                    num += (u as f64 - v as f64).powi(2);
                }
            }
        }
    }
    num / den
}

/// Scores of every offset by direct sums.
fn scores_direct(p1: &Prepared, p2: &Prepared, nk: [usize; 3], centred: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(nk.iter().product());
    if p1.any_nan || p2.any_nan {
        for kz in 0..nk[0] {
            for ky in 0..nk[1] {
                for kx in 0..nk[2] {
                    out.push(sums_at(p1, p2, [kz, ky, kx]).score(centred));
                }
            }
        }
        return out;
    }
    let b: f64 = p1.v.iter().map(|u| u * u).sum();
    let s1: f64 = p1.v.iter().sum();
    let n = p1.v.len() as f64;
    let sq = SummedVolume::new(&p2.v, p2.dims, |v| v * v);
    let lin = SummedVolume::new(&p2.v, p2.dims, |v| v);
    let [n0, n1, n2] = p1.dims;
    let [_, m1, m2] = p2.dims;
    for kz in 0..nk[0] {
        for ky in 0..nk[1] {
            for kx in 0..nk[2] {
                let mut a = 0f64;
                for z in 0..n0 {
                    for y in 0..n1 {
                        let r1 = &p1.v[(z * n1 + y) * n2..][..n2];
                        let r2 = &p2.v[((z + kz) * m1 + y + ky) * m2 + kx..][..n2];
                        a += dot(r1, r2);
                    }
                }
                let c = sq.box_sum([kz, ky, kx], p1.dims);
                let s2 = lin.box_sum([kz, ky, kx], p1.dims);
                out.push(Sums { a, b, c, s1, s2, n }.score(centred));
            }
        }
    }
    out
}

/// A dot product in four independent lanes (lets the compiler vectorise it).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc[0] + acc[1] + acc[2] + acc[3];
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// A summed-volume table: the sum of `f(v)` over any box in constant time.
struct SummedVolume {
    t: Vec<f64>,
    d: [usize; 3],
}

impl SummedVolume {
    fn new(v: &[f64], dims: [usize; 3], f: impl Fn(f64) -> f64) -> SummedVolume {
        let d = [dims[0] + 1, dims[1] + 1, dims[2] + 1];
        let mut t = vec![0f64; d[0] * d[1] * d[2]];
        let at = |z: usize, y: usize, x: usize| (z * d[1] + y) * d[2] + x;
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                let mut row = 0f64;
                for x in 0..dims[2] {
                    row += f(v[(z * dims[1] + y) * dims[2] + x]);
                    t[at(z + 1, y + 1, x + 1)] = row + t[at(z + 1, y, x + 1)] + t[at(z, y + 1, x + 1)] - t[at(z, y, x + 1)];
                }
            }
        }
        SummedVolume { t, d }
    }

    fn box_sum(&self, lo: [usize; 3], size: [usize; 3]) -> f64 {
        let d = self.d;
        let at = |z: usize, y: usize, x: usize| self.t[(z * d[1] + y) * d[2] + x];
        let h = [lo[0] + size[0], lo[1] + size[1], lo[2] + size[2]];
        at(h[0], h[1], h[2]) - at(lo[0], h[1], h[2]) - at(h[0], lo[1], h[2]) - at(h[0], h[1], lo[2]) + at(lo[0], lo[1], h[2]) + at(lo[0], h[1], lo[2])
            + at(h[0], lo[1], lo[2])
            - at(lo[0], lo[1], lo[2])
    }
}

/// A 3D complex FFT of a fixed size, along X, then Y, then Z.
struct Fft3 {
    m: [usize; 3],
    fwd: [Arc<dyn Fft<f64>>; 3],
    inv: [Arc<dyn Fft<f64>>; 3],
}

thread_local! {
    static PLANNER: std::cell::RefCell<FftPlanner<f64>> = std::cell::RefCell::new(FftPlanner::new());
}

impl Fft3 {
    fn new(m: [usize; 3]) -> Fft3 {
        PLANNER.with(|p| {
            let mut p = p.borrow_mut();
            Fft3 {
                m,
                fwd: std::array::from_fn(|a| p.plan_fft_forward(m[a])),
                inv: std::array::from_fn(|a| p.plan_fft_inverse(m[a])),
            }
        })
    }

    fn run(&self, data: &mut [Complex<f64>], inverse: bool) {
        let [m0, m1, m2] = self.m;
        let plans = if inverse { &self.inv } else { &self.fwd };
        // X rows are contiguous: one call transforms them all.
        plans[2].process(data);
        // Y and Z lines are gathered into contiguous buffers, transformed, and put back.
        let mut line = vec![Complex::default(); m1 * m2];
        for z in 0..m0 {
            let plane = &mut data[z * m1 * m2..(z + 1) * m1 * m2];
            for y in 0..m1 {
                for x in 0..m2 {
                    line[x * m1 + y] = plane[y * m2 + x];
                }
            }
            plans[1].process(&mut line);
            for y in 0..m1 {
                for x in 0..m2 {
                    plane[y * m2 + x] = line[x * m1 + y];
                }
            }
        }
        let mut col = vec![Complex::default(); m0 * m2];
        for y in 0..m1 {
            for z in 0..m0 {
                for x in 0..m2 {
                    col[x * m0 + z] = data[(z * m1 + y) * m2 + x];
                }
            }
            plans[0].process(&mut col);
            for z in 0..m0 {
                for x in 0..m2 {
                    data[(z * m1 + y) * m2 + x] = col[x * m0 + z];
                }
            }
        }
    }

    /// Transforms two real arrays at once (`a` as real part, `b` as imaginary part) and
    /// separates their spectra.
    fn forward_pair(&self, a: (&[f64], [usize; 3]), b: (&[f64], [usize; 3])) -> (Vec<Complex<f64>>, Vec<Complex<f64>>) {
        let [m0, m1, m2] = self.m;
        let len = m0 * m1 * m2;
        let mut z = vec![Complex::default(); len];
        for (src, d, imag) in [(a.0, a.1, false), (b.0, b.1, true)] {
            for i in 0..d[0] {
                for j in 0..d[1] {
                    for k in 0..d[2] {
                        let v = src[(i * d[1] + j) * d[2] + k];
                        let o = &mut z[(i * m1 + j) * m2 + k];
                        if imag {
                            o.im = v;
                        } else {
                            o.re = v;
                        }
                    }
                }
            }
        }
        self.run(&mut z, false);
        let mut fa = vec![Complex::default(); len];
        let mut fb = vec![Complex::default(); len];
        for i in 0..m0 {
            let ni = (m0 - i) % m0;
            for j in 0..m1 {
                let nj = (m1 - j) % m1;
                for k in 0..m2 {
                    let nk = (m2 - k) % m2;
                    let zk = z[(i * m1 + j) * m2 + k];
                    let zn = z[(ni * m1 + nj) * m2 + nk].conj();
                    let o = (i * m1 + j) * m2 + k;
                    fa[o] = (zk + zn) * 0.5;
                    // (zk − zn) / 2i
                    let d = zk - zn;
                    fb[o] = Complex::new(d.im * 0.5, -d.re * 0.5);
                }
            }
        }
        (fa, fb)
    }
}

/// Scores of every offset by FFT cross-correlation.
fn scores_fft(p1: &Prepared, p2: &Prepared, nk: [usize; 3], centred: bool) -> Vec<f64> {
    let m: [usize; 3] = std::array::from_fn(|a| fft_size(p2.dims[a]));
    let fft = Fft3::new(m);
    let len = m[0] * m[1] * m[2];
    let scale = 1.0 / len as f64;
    let pick = |r: &[Complex<f64>], imag: bool, kz: usize, ky: usize, kx: usize| {
        let v = r[(kz * m[1] + ky) * m[2] + kx];
        (if imag { v.im } else { v.re }) * scale
    };
    let mut out = Vec::with_capacity(nk.iter().product());
    if !(p1.any_nan || p2.any_nan) {
        let (f1, f2) = fft.forward_pair((&p1.v, p1.dims), (&p2.v, p2.dims));
        let mut prod: Vec<Complex<f64>> = f1.iter().zip(&f2).map(|(a, b)| a.conj() * b).collect();
        fft.run(&mut prod, true);
        let b: f64 = p1.v.iter().map(|u| u * u).sum();
        let s1: f64 = p1.v.iter().sum();
        let n = p1.v.len() as f64;
        let sq = SummedVolume::new(&p2.v, p2.dims, |v| v * v);
        let lin = SummedVolume::new(&p2.v, p2.dims, |v| v);
        for kz in 0..nk[0] {
            for ky in 0..nk[1] {
                for kx in 0..nk[2] {
                    let a = pick(&prod, false, kz, ky, kx);
                    let c = sq.box_sum([kz, ky, kx], p1.dims);
                    let s2 = lin.box_sum([kz, ky, kx], p1.dims);
                    out.push(Sums { a, b, c, s1, s2, n }.score(centred));
                }
            }
        }
        return out;
    }
    // Masked: a = v1 ⋆ v2, b = v1² ⋆ w2, c = w1 ⋆ v2² (⋆ = cross-correlation).
    let q1: Vec<f64> = p1.v.iter().map(|u| u * u).collect();
    let q2: Vec<f64> = p2.v.iter().map(|u| u * u).collect();
    let (fv1, fv2) = fft.forward_pair((&p1.v, p1.dims), (&p2.v, p2.dims));
    let (fq1, fw2) = fft.forward_pair((&q1, p1.dims), (&p2.valid, p2.dims));
    let (fw1, fq2) = fft.forward_pair((&p1.valid, p1.dims), (&q2, p2.dims));
    let i = Complex::new(0.0, 1.0);
    // Two real correlations through one inverse: a in the real part, b in the imaginary.
    let mut ab: Vec<Complex<f64>> = (0..len).map(|o| fv1[o].conj() * fv2[o] + i * (fq1[o].conj() * fw2[o])).collect();
    let mut c: Vec<Complex<f64>> = (0..len).map(|o| fw1[o].conj() * fq2[o]).collect();
    fft.run(&mut ab, true);
    fft.run(&mut c, true);
    // Centred: also n = w1 ⋆ w2, s1 = v1 ⋆ w2, s2 = w1 ⋆ v2, in two more inverses.
    let (mut nn, mut ss) = (Vec::new(), Vec::new());
    if centred {
        nn = (0..len).map(|o| fw1[o].conj() * fw2[o]).collect();
        ss = (0..len).map(|o| fv1[o].conj() * fw2[o] + i * (fw1[o].conj() * fv2[o])).collect();
        fft.run(&mut nn, true);
        fft.run(&mut ss, true);
    }
    for kz in 0..nk[0] {
        for ky in 0..nk[1] {
            for kx in 0..nk[2] {
                let mut sums = Sums { a: pick(&ab, false, kz, ky, kx), b: pick(&ab, true, kz, ky, kx), c: pick(&c, false, kz, ky, kx), ..Default::default() };
                if centred {
                    sums.n = pick(&nn, false, kz, ky, kx).round();
                    sums.s1 = pick(&ss, false, kz, ky, kx);
                    sums.s2 = pick(&ss, true, kz, ky, kx);
                }
                out.push(sums.score(centred));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn crop(a: &ArrayView3<f32>, lo: [usize; 3], size: [usize; 3]) -> Array3<f32> {
        a.slice(ndarray::s![lo[0]..lo[0] + size[0], lo[1]..lo[1] + size[1], lo[2]..lo[2] + size[2]]).to_owned()
    }

    fn texture(d: [usize; 3], seed: u64) -> Array3<f32> {
        let mut s = seed;
        Array3::from_shape_fn(d, |_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % 1000) as f32 + 100.0
        })
    }

    #[test]
    fn both_methods_find_the_planted_offset_with_cc_one() {
        let big = texture([30, 28, 26], 7);
        let w1 = crop(&big.view(), [9, 5, 11], [9, 11, 7]);
        for method in [Method::Direct, Method::Fft, Method::Auto] {
            let b = search(&w1.view(), &big.view(), method, false, false).unwrap();
            assert_eq!(b.offset, [9, 5, 11], "{method:?}");
            assert_eq!(b.cc, 1.0, "{method:?}");
            assert_eq!(error_at(&w1.view(), &big.view(), b.offset), 0.0);
        }
    }

    #[test]
    fn fft_scores_equal_direct_scores_with_and_without_nans() {
        let mut big = texture([16, 15, 17], 3);
        let mut w1 = crop(&big.view(), [4, 3, 5], [7, 6, 8]);
        let p1 = prepare(&w1.view());
        let p2 = prepare(&big.view());
        let nk = offsets(&p1, &p2).unwrap();
        let (d, f) = (scores_direct(&p1, &p2, nk, false), scores_fft(&p1, &p2, nk, false));
        assert!(d.iter().zip(&f).all(|(a, b)| (a - b).abs() < 1e-12));
        // Masks: NaN voxels in both windows.
        w1[[0, 0, 0]] = f32::NAN;
        w1[[3, 2, 1]] = f32::NAN;
        big[[5, 5, 5]] = f32::NAN;
        big[[10, 0, 3]] = f32::NAN;
        let p1 = prepare(&w1.view());
        let p2 = prepare(&big.view());
        let (d, f) = (scores_direct(&p1, &p2, nk, false), scores_fft(&p1, &p2, nk, false));
        let worst = d.iter().zip(&f).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-8, "{worst} {:?} {:?}", &d[..4], &f[..4]);
        let b = search(&w1.view(), &big.view(), Method::Fft, false, false).unwrap();
        assert_eq!((b.offset, b.cc), ([4, 3, 5], 1.0));
    }

    #[test]
    fn centred_scores_ignore_grey_offsets_and_agree_across_methods() {
        let big = texture([20, 19, 21], 5);
        // Window 2 is window 1's scan with a different brightness and contrast.
        let shifted = big.mapv(|v| 0.5 * v + 3000.0);
        let w1 = crop(&big.view(), [6, 4, 7], [7, 8, 6]);
        for method in [Method::Direct, Method::Fft] {
            let b = search(&w1.view(), &shifted.view(), method, false, true).unwrap();
            assert_eq!(b.offset, [6, 4, 7], "{method:?}");
            assert!((b.cc - 1.0).abs() < 1e-12, "{method:?} {}", b.cc);
        }
        let mut masked = shifted.clone();
        masked[[8, 8, 8]] = f32::NAN;
        let p1 = prepare(&w1.view());
        let p2 = prepare(&masked.view());
        let nk = offsets(&p1, &p2).unwrap();
        let (d, f) = (scores_direct(&p1, &p2, nk, true), scores_fft(&p1, &p2, nk, true));
        let worst = d.iter().zip(&f).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "{worst}");
        // Wrong offsets score near 0 centred, but near 1 without centring on this texture.
        let wrong = sums_at(&p1, &prepare(&shifted.view()), [0, 0, 0]);
        assert!(wrong.score(true).abs() < 0.3 && wrong.score(false) > 0.7, "{} {}", wrong.score(true), wrong.score(false));
    }

    #[test]
    fn no_positive_score_gives_offset_zero_and_cc_zero() {
        let w1 = Array3::from_elem((3, 3, 3), 1.0f32);
        let w2 = Array3::from_elem((5, 5, 5), -1.0f32);
        let b = search(&w1.view(), &w2.view(), Method::Auto, false, false).unwrap();
        assert_eq!((b.offset, b.cc), ([0, 0, 0], 0.0));
        assert!(search(&w2.view(), &w1.view(), Method::Auto, false, false).is_none());
    }

    #[test]
    fn parabola_moves_towards_the_better_neighbour() {
        // A smooth blob whose true offset is 7.4 voxels along X: the integer peak is 7 and
        // the parabola moves it towards 8.
        let f = |z: f64, y: f64, x: f64| (-((z - 12.0).powi(2) + (y - 12.0).powi(2) + (x - 12.3).powi(2)) / 18.0).exp() as f32 + 0.01;
        let big = Array3::from_shape_fn((25, 25, 25), |(z, y, x)| f(z as f64, y as f64, x as f64));
        let w1 = Array3::from_shape_fn((11, 11, 11), |(z, y, x)| f(z as f64 + 7.0, y as f64 + 7.0, x as f64 + 7.4));
        let b = search(&w1.view(), &big.view(), Method::Auto, true, false).unwrap();
        assert_eq!(b.offset, [7, 7, 7]);
        assert!(b.subvoxel[0].abs() < 0.02 && b.subvoxel[1].abs() < 0.02, "{:?}", b.subvoxel);
        assert!(b.subvoxel[2] > 0.2 && b.subvoxel[2] <= 0.5, "{:?}", b.subvoxel);
    }
}
