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
//! table for the sliding Σ i2² (large ranges; masked windows use more correlations, as in
//! Padfield's masked NCC). The FFTs are real-to-complex (realfft) along X, which halves
//! their work and memory against complex transforms of real data, and skip the zero padding
//! on the way in and every offset outside the search on the way out. The winner is then
//! re-scored directly in f64, so the reported coefficient never carries FFT round-off.

use std::sync::Arc;

use ndarray::ArrayView3;
use realfft::{ComplexToReal, FftError, RealFftPlanner, RealToComplex};
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

/// This thread's spare buffers of one element type. A search allocates a dozen buffers of
/// hundreds of KiB; from the allocator those come as fresh mappings, whose page faults and
/// zeroing by the kernel took a quarter of the run. Kept per thread, they are reused.
struct Pool<T>(std::cell::RefCell<Vec<Vec<T>>>);

/// The pools. A `const` initialiser made this toolchain's debug link fail (rust-lld:
/// undefined hidden symbols in the crate's own codegen units); the lazy one costs one check
/// per access.
mod pools {
    #![allow(clippy::missing_const_for_thread_local)]
    use super::{Complex, Pool};
    thread_local! {
        pub(super) static REAL_BUFFERS: Pool<f64> = Pool(std::cell::RefCell::new(Vec::new()));
        pub(super) static COMPLEX_BUFFERS: Pool<Complex<f64>> = Pool(std::cell::RefCell::new(Vec::new()));
    }
}
use pools::{COMPLEX_BUFFERS, REAL_BUFFERS};

/// A buffer taken from this thread's pool, given back when dropped.
struct Buf<T: 'static> {
    v: Vec<T>,
    pool: &'static std::thread::LocalKey<Pool<T>>,
}

/// Spare buffers a thread keeps (a masked centred search holds about a dozen at once).
const POOL_SIZE: usize = 24;

impl<T: Copy + Default + 'static> Buf<T> {
    /// An empty buffer with room for `len` values.
    fn empty(pool: &'static std::thread::LocalKey<Pool<T>>, len: usize) -> Buf<T> {
        let mut v = pool.with(|p| p.0.borrow_mut().pop()).unwrap_or_default();
        v.clear();
        v.reserve(len);
        Buf { v, pool }
    }

    /// `len` zeros.
    fn zeroed(pool: &'static std::thread::LocalKey<Pool<T>>, len: usize) -> Buf<T> {
        let mut b = Buf::empty(pool, len);
        b.v.resize(len, T::default());
        b
    }

    fn from_iter(pool: &'static std::thread::LocalKey<Pool<T>>, len: usize, values: impl Iterator<Item = T>) -> Buf<T> {
        let mut b = Buf::empty(pool, len);
        b.v.extend(values);
        b
    }
}

impl<T: 'static> Drop for Buf<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        // During thread teardown the pool may be gone: the buffer is then simply freed.
        let _ = self.pool.try_with(|p| {
            let mut p = p.0.borrow_mut();
            if p.len() < POOL_SIZE {
                p.push(v);
            }
        });
    }
}

impl<T: 'static> std::ops::Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v
    }
}

impl<T: 'static> std::ops::DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v
    }
}

/// Windows with NaNs replaced by 0, plus whether any NaN was seen.
struct Prepared {
    v: Buf<f64>,
    valid: Buf<f64>,
    any_nan: bool,
    dims: [usize; 3],
}

fn prepare(a: &ArrayView3<f32>) -> Prepared {
    let d = a.dim();
    // Windows are cut as standard-layout arrays: this borrows them, and copies only a view
    // of another layout. Branch-free maps over the slice (the compiler vectorises them).
    let values = a.as_standard_layout();
    let s = values.as_slice().expect("standard layout is contiguous");
    let v = Buf::from_iter(&REAL_BUFFERS, s.len(), s.iter().map(|&x| if x.is_nan() { 0.0 } else { x as f64 }));
    let valid = Buf::from_iter(&REAL_BUFFERS, s.len(), s.iter().map(|&x| if x.is_nan() { 0.0 } else { 1.0 }));
    let any_nan = valid.iter().fold(false, |seen, &w| seen | (w == 0.0));
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
fn costs(p1: &Prepared, p2: &Prepared, nk: [usize; 3], centred: bool) -> (f64, f64) {
    let n1: f64 = p1.dims.iter().product::<usize>() as f64;
    let offsets: f64 = nk.iter().product::<usize>() as f64;
    let (masked1, masked2) = (p1.any_nan, p2.any_nan);
    let direct = n1 * offsets * if masked1 || masked2 { 3.0 } else { 1.0 };
    let m = fft_sizes(p2.dims);
    let len = (m[0] * m[1] * m[2]) as f64;
    // The transforms scores_fft runs: v1 and v2, plus w and the other window's q for each
    // masked window; one inverse for a, one more per masked window (b or c), and up to
    // three for the centred sums. Each real-to-complex transform costs about
    // 1.5 · len · log2(len) multiply-adds (measured against the direct loop).
    let forwards = 2.0 + 2.0 * (f64::from(u8::from(masked1)) + f64::from(u8::from(masked2)));
    let mut inverses = 1.0 + f64::from(u8::from(masked1)) + f64::from(u8::from(masked2));
    if centred {
        inverses += f64::from(u8::from(masked1)) + f64::from(u8::from(masked2)) + f64::from(u8::from(masked1 && masked2));
    }
    let fft = (forwards + inverses) * 1.5 * len * len.log2() + 4.0 * len;
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
            let (d, f) = costs(&p1, &p2, nk, centred);
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
    t: Buf<f64>,
    d: [usize; 3],
}

impl SummedVolume {
    fn new(v: &[f64], dims: [usize; 3], f: impl Fn(f64) -> f64) -> SummedVolume {
        let d = [dims[0] + 1, dims[1] + 1, dims[2] + 1];
        let mut t = Buf::zeroed(&REAL_BUFFERS, d[0] * d[1] * d[2]);
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

/// A 3D real-to-complex FFT of a fixed size: real-to-complex along X (the contiguous axis,
/// which halves the work and the spectrum), then complex along Y and Z. Each pass writes its
/// output where the next pass's lines are contiguous (rows [z][y][x], then [z][x][y], then
/// the spectrum as [x][y][z], `h = m2/2 + 1` values along x), so every 1D transform runs on
/// contiguous lines, many per call, and each pass costs one scatter. The transforms skip
/// what is known to be zero on the way in (window 1 fills a fraction of the padded box) and
/// what is not needed on the way out (only the offsets searched, a corner of the result).
struct RealFft3 {
    m: [usize; 3],
    h: usize,
    r2c: Arc<dyn RealToComplex<f64>>,
    c2r: Arc<dyn ComplexToReal<f64>>,
    /// Complex transforms along Z and Y.
    fwd: [Arc<dyn Fft<f64>>; 2],
    inv: [Arc<dyn Fft<f64>>; 2],
    scratch_len: usize,
}

/// One planner of each kind per thread: a plan (twiddles, chosen algorithm) is made once per
/// size and thread and reused by every later window of that size.
struct Planners {
    complex: FftPlanner<f64>,
    real: RealFftPlanner<f64>,
}

thread_local! {
    static PLANNERS: std::cell::RefCell<Planners> = std::cell::RefCell::new(Planners { complex: FftPlanner::new(), real: RealFftPlanner::new() });
}

/// realfft reports sizes it was not given (impossible here: every buffer is sized from the
/// plan) and, for the inverse, a non-zero imaginary part at DC or Nyquist; those are the
/// round-off of the Y and Z passes on a spectrum that is exactly real there, and realfft
/// zeroes them before transforming, which is the exact answer.
fn accept_round_off(r: Result<(), FftError>) {
    debug_assert!(matches!(r, Ok(()) | Err(FftError::InputValues(..))), "{r:?}");
}

impl RealFft3 {
    fn new(m: [usize; 3]) -> RealFft3 {
        PLANNERS.with(|p| {
            let mut p = p.borrow_mut();
            let r2c = p.real.plan_fft_forward(m[2]);
            let c2r = p.real.plan_fft_inverse(m[2]);
            let fwd = [p.complex.plan_fft_forward(m[0]), p.complex.plan_fft_forward(m[1])];
            let inv = [p.complex.plan_fft_inverse(m[0]), p.complex.plan_fft_inverse(m[1])];
            let scratch_len = [r2c.get_scratch_len(), c2r.get_scratch_len(), fwd[0].get_inplace_scratch_len(), fwd[1].get_inplace_scratch_len(), inv[0].get_inplace_scratch_len(), inv[1].get_inplace_scratch_len()]
                .into_iter()
                .max()
                .unwrap_or(0);
            RealFft3 { m, h: m[2] / 2 + 1, r2c, c2r, fwd, inv, scratch_len }
        })
    }

    /// The spectrum ([x][y][z]) of a real `d`-sized array zero-padded to the FFT size.
    fn forward(&self, src: &[f64], d: [usize; 3]) -> Buf<Complex<f64>> {
        let [m0, m1, m2] = self.m;
        let h = self.h;
        let mut scratch = Buf::zeroed(&COMPLEX_BUFFERS, self.scratch_len);
        // X: only the rows that hold data, into [z][x][y] (the other rows stay zero).
        let mut zxy = Buf::zeroed(&COMPLEX_BUFFERS, d[0] * h * m1);
        let mut row = vec![0f64; m2];
        let mut spec_row = vec![Complex::default(); h];
        for z in 0..d[0] {
            for y in 0..d[1] {
                row[..d[2]].copy_from_slice(&src[(z * d[1] + y) * d[2]..][..d[2]]);
                row[d[2]..].fill(0.0);
                accept_round_off(self.r2c.process_with_scratch(&mut row, &mut spec_row, &mut scratch));
                let plane = &mut zxy[z * h * m1..];
                for (x, v) in spec_row.iter().enumerate() {
                    plane[x * m1 + y] = *v;
                }
            }
        }
        // Y: only the planes that hold data, into [x][y][z] (planes beyond d0 stay zero).
        self.fwd[1].process_with_scratch(&mut zxy, &mut scratch);
        let mut spec = Buf::zeroed(&COMPLEX_BUFFERS, h * m1 * m0);
        for z in 0..d[0] {
            for (xy, v) in zxy[z * h * m1..(z + 1) * h * m1].iter().enumerate() {
                spec[xy * m0 + z] = *v;
            }
        }
        // Z: every line.
        self.fwd[0].process_with_scratch(&mut spec, &mut scratch);
        spec
    }

    /// The real array whose spectrum is `spec` (which is overwritten), normalised, at the
    /// offsets `0..nk` only.
    fn inverse(&self, spec: &mut [Complex<f64>], nk: [usize; 3]) -> Vec<f64> {
        let [m0, m1, m2] = self.m;
        let h = self.h;
        let mut scratch = Buf::zeroed(&COMPLEX_BUFFERS, self.scratch_len);
        // Z: every line; only the first nk0 planes go on, into [z][x][y].
        self.inv[0].process_with_scratch(spec, &mut scratch);
        let mut zxy = Buf::zeroed(&COMPLEX_BUFFERS, nk[0] * h * m1);
        for (xy, line) in spec.chunks_exact(m0).enumerate() {
            for (z, v) in line[..nk[0]].iter().enumerate() {
                zxy[z * h * m1 + xy] = *v;
            }
        }
        // Y: the kept planes; X: the first nk1 rows of each, back to real.
        self.inv[1].process_with_scratch(&mut zxy, &mut scratch);
        let scale = 1.0 / (m0 * m1 * m2) as f64;
        let mut out = Vec::with_capacity(nk[0] * nk[1] * nk[2]);
        let mut spec_row = vec![Complex::default(); h];
        let mut row = vec![0f64; m2];
        for z in 0..nk[0] {
            let plane = &zxy[z * h * m1..(z + 1) * h * m1];
            for y in 0..nk[1] {
                for (x, v) in spec_row.iter_mut().enumerate() {
                    *v = plane[x * m1 + y];
                }
                accept_round_off(self.c2r.process_with_scratch(&mut spec_row, &mut row, &mut scratch));
                out.extend(row[..nk[2]].iter().map(|v| v * scale));
            }
        }
        out
    }

    /// The cross-correlation `Σ_x f[x]·g[x + k]` at offsets `0..nk`, from the spectra of f
    /// and g.
    fn correlate(&self, f: &[Complex<f64>], g: &[Complex<f64>], nk: [usize; 3]) -> Vec<f64> {
        let mut p = Buf::from_iter(&COMPLEX_BUFFERS, f.len(), f.iter().zip(g).map(|(a, b)| a.conj() * b));
        self.inverse(&mut p, nk)
    }
}

/// One of the sums of every offset: the same for all offsets (a window without NaNs makes
/// the other window's sums constant), or one value per offset.
enum PerOffset {
    Same(f64),
    Each(Vec<f64>),
}

impl PerOffset {
    #[inline]
    fn at(&self, i: usize) -> f64 {
        match self {
            PerOffset::Same(v) => *v,
            PerOffset::Each(v) => v[i],
        }
    }
}

/// Sums of `f(v)` over window 1's box at every offset in window 2, by a summed-volume table.
fn box_sums(v2: &[f64], dims2: [usize; 3], size: [usize; 3], nk: [usize; 3], f: impl Fn(f64) -> f64) -> Vec<f64> {
    let t = SummedVolume::new(v2, dims2, f);
    let mut out = Vec::with_capacity(nk.iter().product());
    for kz in 0..nk[0] {
        for ky in 0..nk[1] {
            for kx in 0..nk[2] {
                out.push(t.box_sum([kz, ky, kx], size));
            }
        }
    }
    out
}

/// The FFT size of each axis: 2·3·5-smooth, and even along X (realfft's fast case).
fn fft_sizes(d2: [usize; 3]) -> [usize; 3] {
    let mut m: [usize; 3] = std::array::from_fn(|a| fft_size(d2[a]));
    while !m[2].is_multiple_of(2) {
        m[2] = fft_size(m[2] + 1);
    }
    m
}

/// Scores of every offset by FFT cross-correlation.
///
/// Every sum of [`Sums`] is a correlation of a window-1 field with a window-2 field (values
/// v, squares q, validity w; NaNs are 0 in v and q): a = v1⋆v2, b = q1⋆w2, c = w1⋆q2, and
/// for the centred score n = w1⋆w2, s1 = v1⋆w2, s2 = w1⋆v2. Where window 2 has no NaN,
/// w2 is 1 over every offset and the sums with w2 are constants; where window 1 has none,
/// w1 is 1 over its box and the sums with w1 are box sums of window 2 (summed-volume
/// tables). Only the rest goes through the FFT (one transform per field, one inverse per sum).
fn scores_fft(p1: &Prepared, p2: &Prepared, nk: [usize; 3], centred: bool) -> Vec<f64> {
    let fft = RealFft3::new(fft_sizes(p2.dims));
    let (full1, full2) = (!p1.any_nan, !p2.any_nan);
    let square = |v: &[f64]| Buf::from_iter(&REAL_BUFFERS, v.len(), v.iter().map(|u| u * u));
    let fv1 = fft.forward(&p1.v, p1.dims);
    let fv2 = fft.forward(&p2.v, p2.dims);
    let fw1 = (!full1).then(|| fft.forward(&p1.valid, p1.dims));
    let fw2 = (!full2).then(|| fft.forward(&p2.valid, p2.dims));
    let a = fft.correlate(&fv1, &fv2, nk);
    let b = match &fw2 {
        None => PerOffset::Same(p1.v.iter().map(|u| u * u).sum()),
        Some(fw2) => PerOffset::Each(fft.correlate(&fft.forward(&square(&p1.v), p1.dims), fw2, nk)),
    };
    let c = match &fw1 {
        None => PerOffset::Each(box_sums(&p2.v, p2.dims, p1.dims, nk, |v| v * v)),
        Some(fw1) => PerOffset::Each(fft.correlate(fw1, &fft.forward(&square(&p2.v), p2.dims), nk)),
    };
    let (mut n, mut s1, mut s2) = (PerOffset::Same(0.0), PerOffset::Same(0.0), PerOffset::Same(0.0));
    if centred {
        n = match (&fw1, &fw2) {
            (None, None) => PerOffset::Same(p1.v.len() as f64),
            (Some(_), None) => PerOffset::Same(p1.valid.iter().sum()),
            (None, Some(_)) => PerOffset::Each(box_sums(&p2.valid, p2.dims, p1.dims, nk, |v| v)),
            // Counts: round-off removed.
            (Some(fw1), Some(fw2)) => PerOffset::Each(fft.correlate(fw1, fw2, nk).into_iter().map(f64::round).collect()),
        };
        s1 = match &fw2 {
            None => PerOffset::Same(p1.v.iter().sum()),
            Some(fw2) => PerOffset::Each(fft.correlate(&fv1, fw2, nk)),
        };
        s2 = match &fw1 {
            None => PerOffset::Each(box_sums(&p2.v, p2.dims, p1.dims, nk, |v| v)),
            Some(fw1) => PerOffset::Each(fft.correlate(fw1, &fv2, nk)),
        };
    }
    (0..a.len()).map(|i| Sums { a: a[i], b: b.at(i), c: c.at(i), s1: s1.at(i), s2: s2.at(i), n: n.at(i) }.score(centred)).collect()
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

    /// spam's coefficient (or the zero-normalised one) of every offset, by the definition:
    /// sums over the voxels valid in both windows, nothing shared with the kernel.
    fn brute_force(w1: &Array3<f32>, w2: &Array3<f32>, centred: bool) -> Vec<f64> {
        let (d1, d2) = (w1.dim(), w2.dim());
        let mut out = Vec::new();
        for kz in 0..=d2.0 - d1.0 {
            for ky in 0..=d2.1 - d1.1 {
                for kx in 0..=d2.2 - d1.2 {
                    let pairs: Vec<(f64, f64)> = w1
                        .indexed_iter()
                        .map(|((z, y, x), &u)| (u, w2[[z + kz, y + ky, x + kx]]))
                        .filter(|(u, v)| !u.is_nan() && !v.is_nan())
                        .map(|(u, v)| (u as f64, v as f64))
                        .collect();
                    let n = pairs.len() as f64;
                    let (m1, m2) = if centred { (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n) } else { (0.0, 0.0) };
                    let a: f64 = pairs.iter().map(|(u, v)| (u - m1) * (v - m2)).sum();
                    let b: f64 = pairs.iter().map(|(u, _)| (u - m1).powi(2)).sum();
                    let c: f64 = pairs.iter().map(|(_, v)| (v - m2).powi(2)).sum();
                    out.push(if b > 0.0 && c > 0.0 { a / (b * c).sqrt() } else { 0.0 });
                }
            }
        }
        out
    }

    #[test]
    fn real_fft_surface_equals_brute_force_ncc() {
        // Odd and even sizes on every axis (the real-to-complex axis is X), masks in
        // neither, either and both windows, both coefficients.
        let big = texture([17, 14, 19], 11);
        let w1 = crop(&big.view(), [5, 2, 6], [8, 7, 9]).mapv(|v| v * 0.7 + 40.0);
        let mut w1_nan = w1.clone();
        for i in [[0, 0, 0], [3, 2, 1], [7, 6, 8], [4, 4, 4]] {
            w1_nan[i] = f32::NAN;
        }
        let mut big_nan = big.clone();
        for i in [[5, 5, 5], [10, 0, 3], [16, 13, 18], [0, 7, 2]] {
            big_nan[i] = f32::NAN;
        }
        for (a, b) in [(&w1, &big), (&w1_nan, &big), (&w1, &big_nan), (&w1_nan, &big_nan)] {
            let (p1, p2) = (prepare(&a.view()), prepare(&b.view()));
            let nk = offsets(&p1, &p2).unwrap();
            for centred in [false, true] {
                let want = brute_force(a, b, centred);
                let got = scores_fft(&p1, &p2, nk, centred);
                assert_eq!(got.len(), want.len());
                let worst = want.iter().zip(&got).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-9, "nan1 {} nan2 {} centred {centred}: {worst}", p1.any_nan, p2.any_nan);
                let direct = scores_direct(&p1, &p2, nk, centred);
                let worst = want.iter().zip(&direct).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-12, "direct: {worst}");
            }
        }
        // The planted offset wins with the exact coefficient 1.
        let b = search(&crop(&big.view(), [5, 2, 6], [8, 7, 9]).view(), &big.view(), Method::Fft, false, false).unwrap();
        assert_eq!((b.offset, b.cc), ([5, 2, 6], 1.0));
    }

}
