//! Registration of whole volumes without holding them: spam's `register` (§3.2) for two
//! images of the same shape, with every sum taken block by block through the store.
//!
//! Gauss–Newton only needs sums over the cropped image: M = Σ J Jᵀ, A = Σ (im1 − im2def) J and
//! the error. Each pass walks the crop in blocks (in parallel): it reads the block of image 1
//! (one voxel more on each side for the gradient), the box of image 2 that Φ maps the block
//! into, warps that box exactly as the in-memory kernel warps the whole image (same f32
//! coordinates, same bounds test against the full image), and adds the block's sums. Memory is
//! a few blocks per worker whatever the volume size. Results equal [`super::register::register`]'s up to
//! the order of floating-point sums, and the rounding of its fused pass's f32 interpolation
//! weights (Φ within 10⁻⁸ on the test pair).

use anyhow::{bail, Result};
use nalgebra::{SMatrix, SVector};
use ndarray::Array3;
use rayon::prelude::*;

use super::interp::{bspline_coefficients, tricubic, trilinear_slice, BackwardMap};
use super::gradient::{gradient_on_box, shift_offset, trilinear_in_box, GradientMethod};
use super::register::{gauss_newton, nearest_power_of_two, Evaluation, RegisterOptions, RegisterResult};
use crate::phi::{self, Phi};
use crate::store::Volume;
use crate::field::Status;

/// Crop voxels per block (Z, Y, X): small enough that a worker's boxes stay around a MiB.
const BLOCK: [usize; 3] = [16, 64, 64];

#[derive(Clone)]
struct Sums {
    m: SMatrix<f64, 12, 12>,
    a: SVector<f64, 12>,
    err_num: f64,
    err_den: f64,
    /// Voxels compared (the N of the residual's variance).
    kept: usize,
}

impl Sums {
    fn zero() -> Sums {
        Sums { m: SMatrix::zeros(), a: SVector::zeros(), err_num: 0.0, err_den: 0.0, kept: 0 }
    }
    fn add(mut self, o: Sums) -> Sums {
        self.m += o.m;
        self.a += o.a;
        self.err_num += o.err_num;
        self.err_den += o.err_den;
        self.kept += o.kept;
        self
    }
    fn error(&self) -> f64 {
        (self.err_num / self.err_den) as f32 as f64
    }
}

/// Everything a pass needs that does not change between iterations.
struct Setup<'a> {
    im1: &'a Volume,
    im2: &'a Volume,
    mask: Option<&'a Volume>,
    n: [usize; 3],
    margin: [usize; 3],
    nc: [usize; 3],
    cen: [f32; 3],
    order: usize,
    update_gradient: bool,
    identity_unwarped: bool,
    gradient: GradientMethod,
    shift: bool,
}

impl Setup<'_> {
    /// im2 warped by Φ over the global box [lo, hi) (zero outside spam's bounds).
    fn warp_box(&self, phi: &Phi, lo: [usize; 3], hi: [usize; 3]) -> Result<Array3<f32>> {
        if self.identity_unwarped {
            return self.im2.read_box(lo[0] as i64..hi[0] as i64, lo[1] as i64..hi[1] as i64, lo[2] as i64..hi[2] as i64);
        }
        self.warp_box_from(self.im2, phi, lo, hi, false)
    }

    /// `src` sampled at Φ(x) (at Φ(x + δ(x)) with `shift`, δ spam's shift-DVC offset) for
    /// the voxels x of the global box [lo, hi), zero outside spam's bounds.
    fn warp_box_from(&self, src_volume: &Volume, phi: &Phi, lo: [usize; 3], hi: [usize; 3], shift: bool) -> Result<Array3<f32>> {
        let dims = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
        let n = self.n;
        let c = [(n[0] as f64 - 1.0) / 2.0, (n[1] as f64 - 1.0) / 2.0, (n[2] as f64 - 1.0) / 2.0];
        let map = BackwardMap::from_phi(phi, c);
        // Source region: the box's corners mapped back, grown for the interpolation taps.
        let (mut qlo, mut qhi) = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
        for &z in &[lo[0], hi[0] - 1] {
            for &y in &[lo[1], hi[1] - 1] {
                for &x in &[lo[2], hi[2] - 1] {
                    let q = map.apply([z as f32, y as f32, x as f32]);
                    for a in 0..3 {
                        qlo[a] = qlo[a].min(q[a]);
                        qhi[a] = qhi[a].max(q[a]);
                    }
                }
            }
        }
        let pad = (if self.order == 3 { 8 } else { 2 }) + shift as i64;
        let s0: [i64; 3] = std::array::from_fn(|a| (qlo[a].floor() as i64 - pad).clamp(0, n[a] as i64));
        let s1: [i64; 3] = std::array::from_fn(|a| (qhi[a].floor() as i64 + pad + 1).clamp(0, n[a] as i64));
        let mut out = Array3::<f32>::zeros((dims[0], dims[1], dims[2]));
        if (0..3).any(|a| s1[a] <= s0[a]) {
            return Ok(out);
        }
        let mut src = src_volume.read_box(s0[0]..s1[0], s0[1]..s1[1], s0[2]..s1[2])?;
        if self.order == 3 {
            src = bspline_coefficients(&src.view());
        }
        let sd = src.dim();
        let data = src.as_slice().expect("contiguous");
        let stride = [sd.1 * sd.2, sd.2];
        let o = self.order as f32;
        let hi_q = [n[0] as f32 - o, n[1] as f32 - o, n[2] as f32 - o];
        let off = [s0[0] as f32, s0[1] as f32, s0[2] as f32];
        let sv = src.view();
        for ((z, y, x), v) in out.indexed_iter_mut() {
            let mut p = [(lo[0] + z) as f32, (lo[1] + y) as f32, (lo[2] + x) as f32];
            if shift {
                let d = shift_offset([lo[0] + z, lo[1] + y, lo[2] + x], n);
                p = std::array::from_fn(|a| p[a] + d[a]);
            }
            let q = map.apply(p);
            if (0..3).all(|a| q[a] >= o && q[a] < hi_q[a]) {
                let ql = [q[0] - off[0], q[1] - off[1], q[2] - off[2]];
                *v = if self.order == 3 { tricubic(&sv, ql) } else { trilinear_slice(data, stride, ql) };
            }
        }
        Ok(out)
    }

    /// The sums over the crop block starting at `b0` (crop coordinates) with extent up to
    /// [`BLOCK`], for Φ (M only when asked).
    fn block(&self, phi: &Phi, b0: [usize; 3], need_m: bool) -> Result<Sums> {
        if self.shift || !self.gradient.is_default() {
            return self.block_general(phi, b0, need_m);
        }
        let (m, n, nc) = (self.margin, self.n, self.nc);
        let dims: [usize; 3] = std::array::from_fn(|a| BLOCK[a].min(nc[a] - b0[a]));
        let lo: [usize; 3] = std::array::from_fn(|a| m[a] + b0[a]);
        let hi: [usize; 3] = std::array::from_fn(|a| lo[a] + dims[a]);
        // Image 1 with one voxel more around (the crop never touches the image border).
        let g_lo = [lo[0] - 1, lo[1] - 1, lo[2] - 1];
        let g_hi = [(hi[0] + 1).min(n[0]), (hi[1] + 1).min(n[1]), (hi[2] + 1).min(n[2])];
        let def = if self.update_gradient { self.warp_box(phi, g_lo, g_hi)? } else { self.warp_box(phi, lo, hi)? };
        let a1 = self.im1.read_box(g_lo[0] as i64..g_hi[0] as i64, g_lo[1] as i64..g_hi[1] as i64, g_lo[2] as i64..g_hi[2] as i64)?;
        let mask = match self.mask {
            Some(mv) => Some(mv.read_box(lo[0] as i64..hi[0] as i64, lo[1] as i64..hi[1] as i64, lo[2] as i64..hi[2] as i64)?),
            None => None,
        };
        // Central differences of the image the Jacobian uses (im1, or im2def with -ug).
        let gsrc = if self.update_gradient { &def } else { &a1 };
        let (d_off, g_off) = if self.update_gradient { (1usize, 1usize) } else { (0, 1) };
        let mut sums = Sums::zero();
        for z in 0..dims[0] {
            let xz = ((b0[0] + z) as f32 - self.cen[0]) as f64;
            for y in 0..dims[1] {
                let xy = ((b0[1] + y) as f32 - self.cen[1]) as f64;
                for x in 0..dims[2] {
                    let mut r1 = a1[[z + 1, y + 1, x + 1]];
                    if let Some(mk) = &mask {
                        if mk[[z, y, x]] == 0.0 || mk[[z, y, x]].is_nan() {
                            r1 = f32::NAN;
                        }
                    }
                    let b = def[[z + d_off, y + d_off, x + d_off]];
                    let diff = r1 - b;
                    if !diff.is_nan() {
                        sums.err_num += (diff as f64) * (diff as f64);
                        sums.kept += 1;
                    }
                    if !r1.is_nan() {
                        sums.err_den += r1 as f64;
                    }
                    if diff.is_nan() {
                        continue;
                    }
                    let (gz, gy, gx) = (z + g_off, y + g_off, x + g_off);
                    let g = [
                        (gsrc[[gz + 1, gy, gx]] - gsrc[[gz - 1, gy, gx]]) / 2.0,
                        (gsrc[[gz, gy + 1, gx]] - gsrc[[gz, gy - 1, gx]]) / 2.0,
                        (gsrc[[gz, gy, gx + 1]] - gsrc[[gz, gy, gx - 1]]) / 2.0,
                    ];
                    let xv = [xz, xy, ((b0[2] + x) as f32 - self.cen[2]) as f64, 1.0];
                    let mut j = [0f64; 12];
                    for i in 0..3 {
                        for c in 0..4 {
                            j[4 * i + c] = g[i] as f64 * xv[c];
                        }
                    }
                    let d = diff as f64;
                    for p in 0..12 {
                        sums.a[p] += d * j[p];
                    }
                    if need_m {
                        for p in 0..12 {
                            for q in p..12 {
                                sums.m[(p, q)] += j[p] * j[q];
                            }
                        }
                    }
                }
            }
        }
        Ok(sums)
    }

    /// [`Self::block`] with spam's Gaussian gradient and/or shift-DVC (see
    /// [`super::register_general`]): image 1 sampled at x + δ, image 2 at Φ(x + δ), the
    /// gradient of the unshifted image (im1, or im2 warped by Φ with -ug) sampled
    /// trilinearly at x + δ.
    fn block_general(&self, phi: &Phi, b0: [usize; 3], need_m: bool) -> Result<Sums> {
        let (m, n, nc) = (self.margin, self.n, self.nc);
        let dims: [usize; 3] = std::array::from_fn(|a| BLOCK[a].min(nc[a] - b0[a]));
        let lo: [usize; 3] = std::array::from_fn(|a| m[a] + b0[a]);
        let hi: [usize; 3] = std::array::from_fn(|a| lo[a] + dims[a]);
        let sh = self.shift as usize;
        let g_lo: [usize; 3] = std::array::from_fn(|a| lo[a] - sh);
        let g_hi: [usize; 3] = std::array::from_fn(|a| (hi[a] + sh).min(n[a]));
        let reach = self.gradient.reach();
        let s_lo: [usize; 3] = std::array::from_fn(|a| g_lo[a].saturating_sub(reach));
        let s_hi: [usize; 3] = std::array::from_fn(|a| (g_hi[a] + reach).min(n[a]));
        let gsrc = if self.update_gradient {
            self.warp_box(phi, s_lo, s_hi)?
        } else {
            self.im1.read_box(s_lo[0] as i64..s_hi[0] as i64, s_lo[1] as i64..s_hi[1] as i64, s_lo[2] as i64..s_hi[2] as i64)?
        };
        let g = gradient_on_box(&gsrc.view(), s_lo, n, g_lo, g_hi, self.gradient);
        let (r1box, def) = if self.shift {
            let r1 = if self.order == 3 {
                self.warp_box_from(self.im1, &Phi::identity(), lo, hi, true)?
            } else {
                // Up to a quarter voxel outside the crop: interpolated up to the image's faces.
                let a1 = self.im1.read_box(g_lo[0] as i64..g_hi[0] as i64, g_lo[1] as i64..g_hi[1] as i64, g_lo[2] as i64..g_hi[2] as i64)?;
                Array3::from_shape_fn((dims[0], dims[1], dims[2]), |(z, y, x)| {
                    let p = [lo[0] + z, lo[1] + y, lo[2] + x];
                    let d = shift_offset(p, n);
                    trilinear_in_box(&a1.view(), g_lo, std::array::from_fn(|a| p[a] as f32 + d[a]))
                })
            };
            (r1, self.warp_box_from(self.im2, phi, lo, hi, true)?)
        } else {
            (self.im1.read_box(lo[0] as i64..hi[0] as i64, lo[1] as i64..hi[1] as i64, lo[2] as i64..hi[2] as i64)?, self.warp_box(phi, lo, hi)?)
        };
        let mask = match self.mask {
            Some(mv) => Some(mv.read_box(lo[0] as i64..hi[0] as i64, lo[1] as i64..hi[1] as i64, lo[2] as i64..hi[2] as i64)?),
            None => None,
        };
        let mut sums = Sums::zero();
        for z in 0..dims[0] {
            let xz = ((b0[0] + z) as f32 - self.cen[0]) as f64;
            for y in 0..dims[1] {
                let xy = ((b0[1] + y) as f32 - self.cen[1]) as f64;
                for x in 0..dims[2] {
                    let mut r1 = r1box[[z, y, x]];
                    if let Some(mk) = &mask {
                        if mk[[z, y, x]] == 0.0 || mk[[z, y, x]].is_nan() {
                            r1 = f32::NAN;
                        }
                    }
                    let diff = r1 - def[[z, y, x]];
                    if !diff.is_nan() {
                        sums.err_num += (diff as f64) * (diff as f64);
                        sums.kept += 1;
                    }
                    if !r1.is_nan() {
                        sums.err_den += r1 as f64;
                    }
                    if diff.is_nan() {
                        continue;
                    }
                    let p = [lo[0] + z, lo[1] + y, lo[2] + x];
                    let gv: [f32; 3] = if self.shift {
                        let d = shift_offset(p, n);
                        let q = std::array::from_fn(|a| p[a] as f32 + d[a]);
                        std::array::from_fn(|c| trilinear_in_box(&g[c].view(), g_lo, q))
                    } else {
                        std::array::from_fn(|c| g[c][[z, y, x]])
                    };
                    let xv = [xz, xy, ((b0[2] + x) as f32 - self.cen[2]) as f64, 1.0];
                    let d = diff as f64;
                    for i in 0..3 {
                        for c in 0..4 {
                            let jp = gv[i] as f64 * xv[c];
                            sums.a[4 * i + c] += d * jp;
                            if need_m {
                                for k in i..3 {
                                    for e in 0..4 {
                                        if 4 * k + e >= 4 * i + c {
                                            sums.m[(4 * i + c, 4 * k + e)] += jp * gv[k] as f64 * xv[e];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(sums)
    }

    fn pass(&self, phi: &Phi, need_m: bool) -> Result<Sums> {
        let nc = self.nc;
        let blocks: Vec<[usize; 3]> = (0..nc[0])
            .step_by(BLOCK[0])
            .flat_map(|z| (0..nc[1]).step_by(BLOCK[1]).flat_map(move |y| (0..nc[2]).step_by(BLOCK[2]).map(move |x| [z, y, x])))
            .collect();
        let mut s = blocks
            .par_iter()
            .map(|&b0| self.block(phi, b0, need_m))
            .try_reduce(Sums::zero, |a, b| Ok(a.add(b)))?;
        for p in 0..12 {
            for q in 0..p {
                s.m[(p, q)] = s.m[(q, p)];
            }
        }
        Ok(s)
    }
}

/// spam's `register` for two volumes of the same shape, streamed through the store.
pub fn register_volumes(im1: &Volume, im2: &Volume, mask1: Option<&Volume>, phi_init: Option<&Phi>, o: &RegisterOptions) -> Result<RegisterResult> {
    register_volumes_journal(im1, im2, mask1, phi_init, o, None)
}

/// [`register_volumes`], each evaluated Φ and its error pushed to `journal` when given.
fn register_volumes_journal(im1: &Volume, im2: &Volume, mask1: Option<&Volume>, phi_init: Option<&Phi>, o: &RegisterOptions, mut journal: Option<&mut Vec<(Phi, f64)>>) -> Result<RegisterResult> {
    let n = im1.shape();
    if im2.shape() != n {
        bail!("image 2 ({:?}) and image 1 ({:?}) differ in shape", im2.shape(), n);
    }
    if let Some(m) = mask1 {
        if m.shape() != n {
            bail!("mask is {:?} but image 1 is {:?}", m.shape(), n);
        }
    }
    if super::plane::is_plane(n) {
        // A plane is small enough to hold: spam's 2-D mode runs in memory.
        let whole = |v: &Volume| v.read_box(0..1, 0..n[1] as i64, 0..n[2] as i64);
        let keep = mask1.map(|m| whole(m).map(|a| a.mapv(|v| v != 0.0 && !v.is_nan()))).transpose()?;
        return super::register::register(&whole(im1)?.view(), &whole(im2)?.view(), keep.as_ref().map(|k| k.view()).as_ref(), phi_init, o);
    }
    check_gradient_reach(n, o)?;
    let margin = level_margin(n, o);
    if o.shift && o.order == 3 && margin.iter().any(|&m| m < 3) {
        bail!("--shift with -o 3 needs a margin of at least 3 voxels (the cubic taps of image 1), got {margin:?}");
    }
    if (0..3).any(|a| 2 * margin[a] >= n[a]) {
        bail!("margin {:?} leaves nothing of image 1 ({:?})", margin, n);
    }
    let nc: [usize; 3] = std::array::from_fn(|a| n[a] - 2 * margin[a]);
    let mut setup = Setup {
        im1,
        im2,
        mask: mask1,
        n,
        margin,
        nc,
        cen: std::array::from_fn(|a| ((nc[a] as f64 - 1.0) / 2.0) as f32),
        order: o.order,
        update_gradient: o.update_gradient,
        identity_unwarped: phi_init.is_none() && !o.shift,
        gradient: o.gradient,
        shift: o.shift,
    };
    gauss_newton(phi_init, o, |phi, need_m| {
        let sums = setup.pass(phi, need_m)?;
        setup.identity_unwarped = false;
        if let Some(j) = journal.as_deref_mut() {
            j.push((*phi, sums.error()));
        }
        Ok(Evaluation { a: sums.a, error: sums.error(), m: need_m.then_some(sums.m), residual_variance: super::register::residual_variance(sums.err_num, sums.kept) })
    })
}

/// A Gaussian gradient (`-gs σ`) reads 4σ voxels beyond each box; one wider than the image
/// is refused before its extended box is allocated.
pub(crate) fn check_gradient_reach(n: [usize; 3], o: &RegisterOptions) -> Result<()> {
    let reach = o.gradient.reach();
    let side = *n.iter().max().unwrap_or(&0);
    if reach > side {
        bail!("--gaussian-sigma (-gs): the Gaussian reaches {reach} voxels (4σ), more than the image's largest side ({side})");
    }
    Ok(())
}

/// The margin a level is registered with: the option, else spam's `1 + int(0.1·min(n))`,
/// at least 1.
pub(crate) fn level_margin(n: [usize; 3], o: &RegisterOptions) -> [usize; 3] {
    let margin = o.margin.unwrap_or([1 + (0.1 * *n.iter().min().unwrap() as f64) as usize; 3]);
    if *margin.iter().min().unwrap() < 1 { [1; 3] } else { margin }
}

/// Options of the multiscale driver.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MultiscaleOptions {
    pub bin_start: usize,
    pub bin_stop: usize,
    /// Margin at full resolution (divided by the bin at each level); `None` = per-level default.
    pub margin: Option<[usize; 3]>,
    pub single: RegisterOptions,
}

/// spam's `registerMultiscale`: levels binStart, binStart/2, …, binStop, each read from the
/// store's pyramid (or binned on the fly) and registered without loading it, the translation
/// doubled between levels.
pub fn register_multiscale(
    im1: &Volume,
    im2: &Volume,
    mask1: Option<&Volume>,
    phi_init: Option<&Phi>,
    init_bin_ratio: f64,
    o: &MultiscaleOptions,
) -> Result<RegisterResult> {
    register_multiscale_with(im1, im2, mask1, phi_init, init_bin_ratio, o, &mut MultiscaleExtras::default())
}

/// What `reg` asks of [`register_multiscale_with`] beyond spam's `registerMultiscale`
/// defaults.
#[derive(Default)]
pub struct MultiscaleExtras {
    /// spam's `-rmc`: after each level, Φ's translation is taken at the centre of mass of
    /// the level's mask inside the crop (then handed to the next level as spam does).
    pub mask_centre: bool,
    /// spam's `-j`: every iteration of every level, filled when `Some`.
    pub journal: Option<Vec<JournalRow>>,
}

/// One evaluated Φ of a registration (spam's `iterationsJournal` entry).
#[derive(Clone, Debug)]
pub struct JournalRow {
    /// Binning level.
    pub bin: usize,
    /// 0 = the initial Φ, k = after the k-th Gauss–Newton step.
    pub iteration: usize,
    /// Φ about the level's image centre, translation in the level's voxels.
    pub phi: Phi,
    pub error: f64,
    /// ‖δΦ‖ of the step that led here (0 on the initial row), as spam's convergence test.
    pub delta_phi_norm: f64,
}

/// [`register_multiscale`] with [`MultiscaleExtras`].
pub fn register_multiscale_with(
    im1: &Volume,
    im2: &Volume,
    mask1: Option<&Volume>,
    phi_init: Option<&Phi>,
    init_bin_ratio: f64,
    o: &MultiscaleOptions,
    extras: &mut MultiscaleExtras,
) -> Result<RegisterResult> {
    if super::plane::is_plane(im1.shape()) {
        // A 2D image: spam's 2-D mode, with its own levels (SciPy's zoom).
        if extras.mask_centre || extras.journal.is_some() {
            bail!("-rmc and -j are not available for 2D images yet");
        }
        return super::plane::register_multiscale_plane(im1, im2, mask1, phi_init, init_bin_ratio, o);
    }
    let start = nearest_power_of_two(o.bin_start);
    let stop = nearest_power_of_two(o.bin_stop);
    if stop > start {
        bail!("the last binning ({stop}) is coarser than the first ({start})");
    }
    let mut phi = phi::rescale(&phi_init.copied().unwrap_or_else(Phi::identity), init_bin_ratio / 2.0 / start as f64);
    let mut b = start;
    let mut result;
    loop {
        let (l1, l2) = (im1.level(b)?, im2.level(b)?);
        let m = match mask1 {
            Some(mv) if b > 1 => Some(Volume::new(std::sync::Arc::new(crate::store::binning::BinnedSource::mask(mv.clone(), b)), mv.cache().clone())),
            Some(mv) => Some(mv.clone()),
            None => None,
        };
        let mut single = o.single.clone();
        single.margin = o.margin.map(|m| m.map(|v| v / b));
        let mut init = phi;
        for i in 0..3 {
            init[(i, 3)] *= 2.0;
        }
        // Levels are registered slab by slab through the store: no level is held in memory.
        let mut evaluated = Vec::new();
        result = register_volumes_journal(&l1, &l2, m.as_ref(), Some(&init), &single, extras.journal.is_some().then_some(&mut evaluated))?;
        if let Some(rows) = extras.journal.as_mut() {
            let mut prev: Option<Phi> = None;
            for (iteration, (p, error)) in evaluated.into_iter().enumerate() {
                let delta_phi_norm = match prev.and_then(|q| q.try_inverse()) {
                    Some(inv) => (inv * p - Phi::identity()).fixed_view::<3, 4>(0, 0).norm(),
                    None => 0.0,
                };
                rows.push(JournalRow { bin: b, iteration, phi: p, error, delta_phi_norm });
                prev = Some(p);
            }
        }
        if let (true, Some(mv)) = (extras.mask_centre, m.as_ref()) {
            let n = l1.shape();
            let margin = level_margin(n, &single);
            if let Some(com) = centre_of_mass(mv, margin.map(|v| v as i64), std::array::from_fn(|a| (n[a] - margin[a]) as i64), |v| v != 0.0 && !v.is_nan())? {
                let centre = nalgebra::Vector3::from_fn(|a, _| (n[a] as f64 - 1.0) / 2.0);
                result.phi = crate::phi::move_to(&result.phi, &centre, &com);
            }
        }
        phi = result.phi;
        if result.return_status != Status::Converged {
            result.phi = phi::rescale(&result.phi, b as f64);
            return Ok(result);
        }
        if b <= stop {
            break;
        }
        b /= 2;
    }
    result.phi = phi::rescale(&result.phi, stop as f64);
    Ok(result)
}


/// The centre of mass (as spam: f32) of the voxels of `mask` in the box [lo, hi) for which
/// `keep` holds, read slab by slab; `None` when there are none.
pub fn centre_of_mass(mask: &Volume, lo: [i64; 3], hi: [i64; 3], keep: impl Fn(f32) -> bool) -> Result<Option<nalgebra::Vector3<f64>>> {
    let (mut sum, mut count) = ([0f64; 3], 0u64);
    let mut z0 = lo[0];
    while z0 < hi[0] {
        let z1 = (z0 + 16).min(hi[0]);
        let slab = mask.read_box(z0..z1, lo[1]..hi[1], lo[2]..hi[2])?;
        for ((z, y, x), &v) in slab.indexed_iter() {
            if keep(v) {
                sum[0] += (z0 + z as i64) as f64;
                sum[1] += (lo[1] + y as i64) as f64;
                sum[2] += (lo[2] + x as i64) as f64;
                count += 1;
            }
        }
        z0 = z1;
    }
    Ok((count > 0).then(|| nalgebra::Vector3::from_fn(|a, _| (sum[a] / count as f64) as f32 as f64)))
}

/// The largest value of `mask` (spam's `-rmc` centre is that label's centre of mass).
pub fn max_value(mask: &Volume) -> Result<f32> {
    let n = mask.shape();
    let mut best = f32::NEG_INFINITY;
    let mut z0 = 0;
    while z0 < n[0] as i64 {
        let z1 = (z0 + 16).min(n[0] as i64);
        let slab = mask.read_box(z0..z1, 0..n[1] as i64, 0..n[2] as i64)?;
        best = slab.iter().copied().filter(|v| !v.is_nan()).fold(best, f32::max);
        z0 = z1;
    }
    Ok(best)
}
