//! Gauss–Newton registration on the 12 components of Φ, as spam's `register` (spam-compat.md
//! §3.2): same margins, masks, Jacobian, convergence test, return statuses and their order,
//! and the multiscale driver of §3.3 reading pyramid levels from the store.

use anyhow::{bail, Result};
use nalgebra::{SMatrix, SVector, Vector3};
use ndarray::{s, Array3, ArrayView3};

use super::gradient::gradient;
use super::interp::{sample, BackwardMap};
use crate::phi::{self, Phi};
use crate::store::Volume;

/// Options of a single-scale registration.
#[derive(Clone, Debug)]
pub struct RegisterOptions {
    /// Margin per axis; `None` = `1 + int(0.1·min(N1))`.
    pub margin: Option<[usize; 3]>,
    pub max_iterations: usize,
    pub delta_phi_min: f64,
    pub update_gradient: bool,
    pub rigid: bool,
    /// 1 = trilinear (spam's C kernel), 3 = cubic B-spline.
    pub order: usize,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions { margin: None, max_iterations: 50, delta_phi_min: 1e-4, update_gradient: false, rigid: false, order: 1 }
    }
}

/// What `register` returns.
#[derive(Clone, Debug)]
pub struct RegisterResult {
    pub phi: Phi,
    pub return_status: i32,
    pub error: f64,
    pub iterations: usize,
    pub delta_phi_norm: f64,
}

/// im2 warped by Φ (K = Φ, about im2's centre) over the box `origin + [0, dims)` of im2's grid.
fn warp_region(im2: &ArrayView3<f32>, phi: &Phi, origin: [usize; 3], dims: [usize; 3], order: usize) -> Array3<f32> {
    let d = im2.dim();
    let c = [(d.0 as f64 - 1.0) / 2.0, (d.1 as f64 - 1.0) / 2.0, (d.2 as f64 - 1.0) / 2.0];
    let map = BackwardMap::from_phi(phi, c);
    if let (1, Some(data)) = (order, im2.as_slice()) {
        // The hot path: contiguous trilinear with spam's bounds test, no per-voxel dispatch.
        let n = [d.0, d.1, d.2];
        let stride = [d.1 * d.2, d.2];
        let hi = [n[0] as f32 - 1.0, n[1] as f32 - 1.0, n[2] as f32 - 1.0];
        let mut out = vec![0f32; dims[0] * dims[1] * dims[2]];
        let k = map.k;
        let cc = map.c;
        let mut o = 0;
        for z in 0..dims[0] {
            let dz = (origin[0] + z) as f32 - cc[0];
            for y in 0..dims[1] {
                let dy = (origin[1] + y) as f32 - cc[1];
                // spam evaluates K0·dz + K1·dy + K2·dx + K3 + c left to right in f32: the
                // first two terms are the same along a row.
                let a: [f32; 3] = std::array::from_fn(|i| k[i][0] * dz + k[i][1] * dy);
                let row = &mut out[o..o + dims[2]];
                for (x, v) in row.iter_mut().enumerate() {
                    let dx = (origin[2] + x) as f32 - cc[2];
                    let q = [
                        a[0] + k[0][2] * dx + k[0][3] + cc[0],
                        a[1] + k[1][2] * dx + k[1][3] + cc[1],
                        a[2] + k[2][2] * dx + k[2][3] + cc[2],
                    ];
                    if q[0] >= 1.0 && q[0] < hi[0] && q[1] >= 1.0 && q[1] < hi[1] && q[2] >= 1.0 && q[2] < hi[2] {
                        *v = super::interp::trilinear_slice(data, stride, q);
                    }
                }
                o += dims[2];
            }
        }
        return Array3::from_shape_vec((dims[0], dims[1], dims[2]), out).expect("shape matches");
    }
    Array3::from_shape_fn((dims[0], dims[1], dims[2]), |(z, y, x)| {
        let q = map.apply([(origin[0] + z) as f32, (origin[1] + y) as f32, (origin[2] + x) as f32]);
        sample(im2, q, order)
    })
}


/// Single-scale registration of `im1` (fixed) onto `im2` (moving, same size or larger,
/// centred on im1). `mask1` excludes im1 voxels that are false.
pub fn register(
    im1: &ArrayView3<f32>,
    im2: &ArrayView3<f32>,
    mask1: Option<&ArrayView3<bool>>,
    phi_init: Option<&Phi>,
    o: &RegisterOptions,
) -> Result<RegisterResult> {
    let n1 = { let d = im1.dim(); [d.0, d.1, d.2] };
    let n2 = { let d = im2.dim(); [d.0, d.1, d.2] };
    if (0..3).any(|a| n2[a] < n1[a]) {
        bail!("image 2 ({:?}) is smaller than image 1 ({:?})", n2, n1);
    }
    if let Some(m) = mask1 {
        let d = m.dim();
        if [d.0, d.1, d.2] != n1 {
            bail!("mask is {:?} but image 1 is {:?}", [d.0, d.1, d.2], n1);
        }
    }
    let mut margin = o.margin.unwrap_or([1 + (0.1 * *n1.iter().min().unwrap() as f64) as usize; 3]);
    if *margin.iter().min().unwrap() < 1 && (0..3).any(|a| n1[a] == n2[a]) {
        margin = [1; 3];
    }
    if (0..3).any(|a| 2 * margin[a] >= n1[a]) {
        bail!("margin {:?} leaves nothing of image 1 ({:?})", margin, n1);
    }
    let d: [usize; 3] = std::array::from_fn(|a| n2[a] - n1[a]);
    let c1: [std::ops::Range<usize>; 3] = std::array::from_fn(|a| margin[a]..n1[a] - margin[a]);
    let c2o: [usize; 3] = std::array::from_fn(|a| (d[a] as f64 / 2.0 + margin[a] as f64) as usize);
    let nc: [usize; 3] = std::array::from_fn(|a| c1[a].len());
    let mut r1 = im1.slice(s![c1[0].clone(), c1[1].clone(), c1[2].clone()]).to_owned();
    if let Some(m) = mask1 {
        let mc = m.slice(s![c1[0].clone(), c1[1].clone(), c1[2].clone()]);
        r1.zip_mut_with(&mc, |v, keep| {
            if !*keep {
                *v = f32::NAN
            }
        });
    }
    let crop2 = |a: &Array3<f32>| a.slice(s![c2o[0]..c2o[0] + nc[0], c2o[1]..c2o[1] + nc[1], c2o[2]..c2o[2] + nc[2]]).to_owned();
    // Cubic sampling reads B-spline coefficients of im2, computed once.
    let coeffs = if o.order == 3 { Some(super::interp::bspline_coefficients(im2)) } else { None };
    let im2s = coeffs.as_ref().map(|c| c.view()).unwrap_or_else(|| im2.view());
    let im2 = &im2s;
    // Local coordinates of crop voxels about the crop centre (f32, as spam).
    let cen: [f32; 3] = std::array::from_fn(|a| ((nc[a] as f64 - 1.0) / 2.0) as f32);
    let grad_of = |img: &ArrayView3<f32>, origin: [usize; 3]| -> [Array3<f32>; 3] {
        let g = gradient(img);
        g.map(|gi| gi.slice(s![origin[0]..origin[0] + nc[0], origin[1]..origin[1] + nc[1], origin[2]..origin[2] + nc[2]]).to_owned())
    };
    // The Jacobian row of every crop voxel, J[4i + j] = g_i · X_j, laid out flat once (and
    // again at each evaluation with --update-gradient), so that M and A are dot products.
    let n_c = nc[0] * nc[1] * nc[2];
    let jacobian = |g: &[Array3<f32>; 3]| -> Vec<[f64; 12]> {
        let gs: [&[f32]; 3] = std::array::from_fn(|i| g[i].as_slice().expect("contiguous gradient"));
        let mut j = Vec::with_capacity(n_c);
        let mut k = 0;
        for z in 0..nc[0] {
            let xz = (z as f32 - cen[0]) as f64;
            for y in 0..nc[1] {
                let xy = (y as f32 - cen[1]) as f64;
                for x in 0..nc[2] {
                    let xv = [xz, xy, (x as f32 - cen[2]) as f64, 1.0];
                    let mut row = [0f64; 12];
                    for i in 0..3 {
                        let gi = gs[i][k] as f64;
                        for c in 0..4 {
                            row[4 * i + c] = gi * xv[c];
                        }
                    }
                    j.push(row);
                    k += 1;
                }
            }
        }
        j
    };
    let r1s: Vec<f32> = r1.iter().copied().collect();
    let build_m = |j: &[[f64; 12]], d2: &[f32]| -> SMatrix<f64, 12, 12> {
        // The upper triangle in a flat array: plain loops the compiler vectorises.
        let mut upper = [0f64; 144];
        for k in 0..n_c {
            if r1s[k].is_nan() || d2[k].is_nan() {
                continue;
            }
            let row = &j[k];
            for p in 0..12 {
                let rp = row[p];
                let dst = &mut upper[p * 12..p * 12 + 12];
                for q in p..12 {
                    dst[q] += rp * row[q];
                }
            }
        }
        let mut m = SMatrix::<f64, 12, 12>::zeros();
        for p in 0..12 {
            for q in p..12 {
                m[(p, q)] = upper[p * 12 + q];
                m[(q, p)] = upper[p * 12 + q];
            }
        }
        m
    };
    // Without --update-gradient the Jacobian comes from im1 and never changes.
    let mut jac = if o.update_gradient { Vec::new() } else { jacobian(&grad_of(im1, margin)) };
    // With no initial Φ spam first compares with im2 itself (no border zeroing).
    let mut unwarped = phi_init.is_none();
    let evaluate = |phi: &Phi, need_m: bool| -> Result<Evaluation> {
        let def = if o.update_gradient {
            // The gradient of the whole deformed im2, cropped: the crop is never on its border.
            let full = if unwarped { im2.to_owned() } else { warp_region(im2, phi, [0; 3], n2, o.order) };
            jac = jacobian(&grad_of(&full.view(), c2o));
            crop2(&full)
        } else if unwarped {
            crop2(&im2.to_owned())
        } else {
            warp_region(im2, phi, c2o, nc, o.order)
        };
        unwarped = false;
        let d2 = def.as_slice().expect("contiguous");
        let (a, error) = residual_sums(&r1s, d2, &jac);
        Ok(Evaluation { a: SVector::from_column_slice(&a), error, m: need_m.then(|| build_m(&jac, d2)) })
    };
    gauss_newton(phi_init, o, evaluate)
}

/// What one evaluation of Φ gives the Gauss–Newton loop: A = Σ (im1 − im2def)·J, spam's
/// error, and M = Σ J Jᵀ when asked.
pub(crate) struct Evaluation {
    pub a: SVector<f64, 12>,
    pub error: f64,
    pub m: Option<SMatrix<f64, 12, 12>>,
}

/// spam's Gauss–Newton loop (spam-compat.md §3.2, steps 4–9), shared by the in-memory and the
/// streamed registrations: they differ only in how they `evaluate` a Φ. M is asked for at the
/// first evaluation, and at every evaluation with --update-gradient.
pub(crate) fn gauss_newton(
    phi_init: Option<&Phi>,
    o: &RegisterOptions,
    mut evaluate: impl FnMut(&Phi, bool) -> Result<Evaluation>,
) -> Result<RegisterResult> {
    let mut phi = match phi_init {
        Some(p) if o.rigid => phi::rigid_part(p),
        Some(p) => *p,
        None => Phi::identity(),
    };
    let first = evaluate(&phi, true)?;
    let mut m = first.m.expect("M is computed at the first evaluation");
    let (mut a, mut error) = (first.a, first.error);
    let (mut iterations, mut dpn) = (0usize, 100.0f64);
    let (mut singular_m, mut singular_phi, mut status) = (false, false, 0i32);
    while iterations < o.max_iterations && dpn > o.delta_phi_min {
        let error_prev = error;
        let Some(minv) = m.try_inverse() else {
            singular_m = true;
            break;
        };
        (phi, dpn) = apply_delta(&phi, &(minv * a), o.rigid);
        if phi.try_inverse().is_none() {
            singular_phi = true;
            break;
        }
        // One evaluation gives this iteration's error and the next iteration's A (and M).
        let e = evaluate(&phi, o.update_gradient)?;
        (a, error) = (e.a, e.error);
        if let Some(new_m) = e.m {
            m = new_m;
        }
        if let Some(s) = divergence(error_prev, error, iterations, &phi, o) {
            status = s;
            break;
        }
        iterations += 1;
    }
    let status = final_status(status, iterations, dpn, singular_m, singular_phi, o);
    Ok(RegisterResult { phi, return_status: status, error, iterations, delta_phi_norm: dpn })
}

/// A = Σ (im1 − im2def)·J over voxels where both are defined, and spam's error
/// nansum((im1 − im2def)²) / nansum(im1), in one pass.
fn residual_sums(r1: &[f32], def: &[f32], jac: &[[f64; 12]]) -> ([f64; 12], f64) {
    let mut acc = [0f64; 12];
    let (mut num, mut den) = (0f64, 0f64);
    for ((&a, &b), row) in r1.iter().zip(def).zip(jac) {
        if !a.is_nan() {
            den += a as f64;
        }
        let diff = (a - b) as f64;
        if diff.is_nan() {
            continue;
        }
        num += diff * diff;
        for (x, r) in acc.iter_mut().zip(row) {
            *x += diff * r;
        }
    }
    (acc, (num / den) as f32 as f64)
}

/// One Gauss–Newton step: Φ composed on the right with I + δ (or its rigid part), and the
/// norm spam tests for convergence.
fn apply_delta(phi: &Phi, delta: &SVector<f64, 12>, rigid: bool) -> (Phi, f64) {
    let mut dm = Phi::identity();
    for i in 0..3 {
        for k in 0..4 {
            dm[(i, k)] += delta[4 * i + k];
        }
    }
    if rigid {
        let dr = phi::rigid_part(&dm);
        ((phi * dr), (dr - Phi::identity()).fixed_view::<3, 4>(0, 0).norm())
    } else {
        (phi * dm, delta.norm())
    }
}

/// spam's divergence tests inside the loop: −1 when the error grew by more than 25 % after
/// half the iterations, −3 when |det F| leaves [0.2, 3].
fn divergence(error_prev: f64, error: f64, iterations: usize, phi: &Phi, o: &RegisterOptions) -> Option<i32> {
    if error_prev < 0.8 * error && iterations > o.max_iterations / 2 {
        return Some(-1);
    }
    let det_u = phi::f_block(phi).determinant().abs();
    if !(0.2..=3.0).contains(&det_u) {
        return Some(-3);
    }
    None
}

/// spam's status rules after the loop, applied in its order (a later rule wins).
fn final_status(mut status: i32, iterations: usize, dpn: f64, singular_m: bool, singular_phi: bool, o: &RegisterOptions) -> i32 {
    if iterations >= o.max_iterations {
        status = 1;
    }
    if dpn <= o.delta_phi_min {
        status = 2;
    }
    if singular_m {
        status = -2;
    } else if singular_phi {
        status = -4;
    }
    status
}

/// Rounds to the nearest power of two (spam's rule for bin levels).
pub fn nearest_power_of_two(b: usize) -> usize {
    if b <= 1 {
        return 1;
    }
    let lo = 1usize << (usize::BITS - 1 - b.leading_zeros());
    let hi = lo * 2;
    if b - lo <= hi - b { lo } else { hi }
}

/// Options of the multiscale driver.
#[derive(Clone, Debug)]
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
    let start = nearest_power_of_two(o.bin_start);
    let stop = nearest_power_of_two(o.bin_stop);
    if stop > start {
        bail!("the last binning ({stop}) is coarser than the first ({start})");
    }
    let mut phi = phi_init.copied().unwrap_or_else(Phi::identity);
    for i in 0..3 {
        phi[(i, 3)] *= init_bin_ratio / 2.0 / start as f64;
    }
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
        result = super::register_volume::register_volumes(&l1, &l2, m.as_ref(), Some(&init), &single)?;
        phi = result.phi;
        if result.return_status != 2 {
            for i in 0..3 {
                result.phi[(i, 3)] *= b as f64;
            }
            return Ok(result);
        }
        if b <= stop {
            break;
        }
        b /= 2;
    }
    for i in 0..3 {
        result.phi[(i, 3)] *= stop as f64;
    }
    Ok(result)
}

/// The centre spam writes for a registration of an image of shape n: (n − 1)/2.
pub fn image_centre(n: [usize; 3]) -> Vector3<f64> {
    Vector3::new((n[0] as f64 - 1.0) / 2.0, (n[1] as f64 - 1.0) / 2.0, (n[2] as f64 - 1.0) / 2.0)
}

