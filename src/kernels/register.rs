//! Gauss–Newton registration on the 12 components of Φ, as spam's `register` (spam-compat.md
//! §3.2): same margins, masks, Jacobian, convergence test, return statuses and their order,
//! and the multiscale driver of §3.3 reading pyramid levels from the store.

use anyhow::{bail, Result};
use nalgebra::{SMatrix, SVector, Vector3};
use ndarray::{s, Array3, ArrayView3};

use super::gradient::{gradient_in_box, GradientMethod};
use super::interp::{sample, BackwardMap};
use super::residual::ResidualPass;
use crate::phi::{self, Phi};
use crate::field::Status;

/// Options of a single-scale registration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RegisterOptions {
    /// Margin per axis; `None` = `1 + int(0.1·min(N1))`.
    pub margin: Option<[usize; 3]>,
    pub max_iterations: usize,
    pub delta_phi_min: f64,
    pub update_gradient: bool,
    pub rigid: bool,
    /// 1 = trilinear (spam's C kernel), 3 = cubic B-spline.
    pub order: usize,
    /// `false`: spam's Gauss–Newton, δ = M⁻¹A, every step taken. `true`: Levenberg–Marquardt
    /// steps δ = (M + λ·diag M)⁻¹A, kept only when the error does not grow (λ shrinks after a
    /// kept step and grows after a refused one, starting at 0, so where Gauss–Newton steps
    /// lower the error the two are the same). A parameter the images barely determine (the
    /// rotation of a uniform sphere) then stops wandering on interpolation noise and the
    /// registration converges, instead of ending at the iteration limit. Convergence (status
    /// 2) is then also a kept step that lowers the error by less than 10⁻⁶ of it.
    pub damped: bool,
    /// Image gradient method (spam's `-gm`, `-gs`); left out of job prints when the default.
    #[serde(skip_serializing_if = "GradientMethod::is_default")]
    pub gradient: GradientMethod,
    /// spam's shift-DVC (`-shift`): every voxel sampled ±0.25 voxel off its grid point, see
    /// [`super::register_general`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shift: bool,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions { margin: None, max_iterations: 50, delta_phi_min: 1e-4, update_gradient: false, rigid: false, order: 1, damped: false, gradient: GradientMethod::FiniteDifferences, shift: false }
    }
}

/// What `register` returns.
#[derive(Clone, Debug)]
pub struct RegisterResult {
    pub phi: Phi,
    pub return_status: Status,
    pub error: f64,
    pub iterations: usize,
    pub delta_phi_norm: f64,
    /// Predicted standard deviation of the displacement (Z, Y, X) at the window centre:
    /// `displacement_sd`. NaN when M is singular or the window has too few voxels.
    pub disp_sd: [f64; 3],
}

/// im2 warped by Φ (K = Φ, about im2's centre) over the box `origin + [0, dims)` of im2's grid.
fn warp_region(im2: &ArrayView3<f32>, phi: &Phi, origin: [usize; 3], dims: [usize; 3], order: usize) -> Array3<f32> {
    let mut out = Vec::new();
    warp_region_into(im2, phi, origin, dims, order, &mut out);
    Array3::from_shape_vec((dims[0], dims[1], dims[2]), out).expect("shape matches")
}

/// [`warp_region`] into a reused buffer (Z-major).
fn warp_region_into(im2: &ArrayView3<f32>, phi: &Phi, origin: [usize; 3], dims: [usize; 3], order: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(dims[0] * dims[1] * dims[2], 0.0);
    let d = im2.dim();
    let c = [(d.0 as f64 - 1.0) / 2.0, (d.1 as f64 - 1.0) / 2.0, (d.2 as f64 - 1.0) / 2.0];
    let map = BackwardMap::from_phi(phi, c);
    if d.0 == 1 {
        // A plane: spam's Python warp (bounds [0, N − 1]), see `plane`.
        let data = im2.as_standard_layout();
        return super::plane::warp_plane_into(data.as_slice().expect("standard layout is contiguous"), [d.0, d.1, d.2], &map, origin, dims, order, out);
    }
    match (order, im2.as_slice()) {
        (1, Some(data)) => return super::interp::trilinear_rows(data, [d.0, d.1, d.2], &map, origin, dims, out),
        (3, Some(coef)) => return super::interp::tricubic_rows(coef, [d.0, d.1, d.2], &map, origin, dims, out),
        _ => {}
    }
    let mut i = 0;
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let q = map.apply([(origin[0] + z) as f32, (origin[1] + y) as f32, (origin[2] + x) as f32]);
                out[i] = sample(im2, q, order);
                i += 1;
            }
        }
    }
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
    if o.shift || !o.gradient.is_default() {
        if super::plane::is_plane(n1) {
            // The general path solves all 12 components, which a plane cannot determine.
            bail!("-shift and -gm gaussian are not available for 2D images yet");
        }
        return super::register_general::register_general(im1, im2, mask1, phi_init, o);
    }
    if let Some(m) = mask1 {
        let d = m.dim();
        if [d.0, d.1, d.2] != n1 {
            bail!("mask is {:?} but image 1 is {:?}", [d.0, d.1, d.2], n1);
        }
    }
    // A plane (2D image): spam's 2-D mode, no margin in Z and only the in-plane parameters.
    let two_d = super::plane::is_plane(n1);
    if two_d && n2[0] != 1 {
        bail!("image 1 is a 2D image (one slice) but image 2 has {} slices", n2[0]);
    }
    let mut margin = if two_d {
        let mut m = o.margin.unwrap_or([1 + (0.1 * n1[1].min(n1[2]) as f64) as usize; 3]);
        m[0] = 0;
        m
    } else {
        o.margin.unwrap_or([1 + (0.1 * *n1.iter().min().unwrap() as f64) as usize; 3])
    };
    if !two_d && *margin.iter().min().unwrap() < 1 && (0..3).any(|a| n1[a] == n2[a]) {
        margin = [1; 3];
    }
    if (0..3).any(|a| 2 * margin[a] >= n1[a]) {
        bail!("margin {:?} leaves nothing of image 1 ({:?})", margin, n1);
    }
    let d: [usize; 3] = std::array::from_fn(|a| n2[a] - n1[a]);
    let c1: [std::ops::Range<usize>; 3] = std::array::from_fn(|a| margin[a]..n1[a] - margin[a]);
    let c2o: [usize; 3] = std::array::from_fn(|a| (d[a] as f64 / 2.0 + margin[a] as f64) as usize);
    let nc: [usize; 3] = std::array::from_fn(|a| c1[a].len());
    let crop2 = |a: &ArrayView3<f32>| -> Vec<f32> { a.slice(s![c2o[0]..c2o[0] + nc[0], c2o[1]..c2o[1] + nc[1], c2o[2]..c2o[2] + nc[2]]).iter().copied().collect() };
    // Cubic sampling reads B-spline coefficients of im2 (f32, contiguous), computed once; the
    // grey levels stay for the unwarped first comparison.
    let im2_grey = im2.view();
    let grey_box = (o.order == 3).then(|| im2.as_standard_layout());
    let grey = grey_box.as_ref().map(|g| g.as_slice().expect("standard layout is contiguous"));
    let im2_nan = grey.is_some_and(any_nan);
    let coeffs = grey.map(|g| Array3::from_shape_vec((n2[0], n2[1], n2[2]), super::interp::bspline_coefficients_f32(g, n2)).expect("shape matches"));
    let im2s = coeffs.as_ref().map(|c| c.view()).unwrap_or_else(|| im2.view());
    let im2 = &im2s;
    // Local coordinates of crop voxels about the crop centre (computed in f32, as spam).
    let cen: [f32; 3] = std::array::from_fn(|a| ((nc[a] as f64 - 1.0) / 2.0) as f32);
    let coords: [Vec<f64>; 3] = std::array::from_fn(|a| (0..nc[a]).map(|i| (i as f32 - cen[a]) as f64).collect());
    // Evaluations warp and sum in one fused pass when the processor has it, the gradient is
    // image 1's, image 2's box holds no NaN (checked once here) and, with no initial Φ (the
    // first evaluation compares with image 2 itself), the crop keeps a voxel away from image
    // 2's border, where the identity warp is image 2 itself.
    // Cubic: coefficients of a box with no NaN, 4 voxels on every axis, and the crop inside
    // the taps' bounds when the first evaluation is unwarped (the B-spline interpolates, so
    // the identity warp gives image 2's grey levels to f32 rounding).
    let cubic_fusable = o.order == 3
        && !im2_nan
        && n2.iter().all(|&v| v >= 4)
        && (phi_init.is_some() || (0..3).all(|a| c2o[a] >= 1 && c2o[a] + nc[a] + 2 <= n2[a]));
    let linear_fusable = o.order == 1
        && n2.iter().all(|&v| v >= 3)
        && (phi_init.is_some() || (0..3).all(|a| c2o[a] >= 1 && c2o[a] + nc[a] < n2[a]))
        && im2.as_slice().is_some_and(|d| !any_nan(d));
    // Cubic registrations take image 1's gradient to 4th order (fewer iterations, see
    // gradient4_in_box_rows); trilinear ones keep spam's. (Trilinear steps first, then cubic
    // ones, were measured: with the 4th-order gradient the cubic steps alone take 3.0
    // iterations on the speckle pair of bench/peers.sh, the two stages 5.5, and are slower.)
    let cubic_gradient = o.order == 3;
    let fusable = !two_d && !o.update_gradient && ResidualPass::available() && (cubic_fusable || linear_fusable);
    if fusable {
        let data = im2.as_slice().expect("checked contiguous");
        let pass = ResidualPass::new(im1, mask1, margin, nc, &coords, cubic_gradient);
        let centre: [f64; 3] = std::array::from_fn(|a| (n2[a] as f64 - 1.0) / 2.0);
        let evaluation = |sums: super::residual::ResidualSums, need_m: bool| Evaluation { a: SVector::from_column_slice(&sums.a), error: (sums.sum_sq / pass.den) as f32 as f64, m: need_m.then_some(pass.m), residual_variance: residual_variance(sums.sum_sq, pass.kept) };
        if o.order == 1 {
            return gauss_newton(phi_init, o, |phi: &Phi, need_m: bool| Ok(evaluation(pass.evaluate(data, n2, &BackwardMap::from_phi(phi, centre), c2o), need_m)));
        }
        return gauss_newton(phi_init, o, |phi: &Phi, need_m: bool| Ok(evaluation(pass.evaluate_cubic(data, n2, &BackwardMap::from_phi(phi, centre), c2o), need_m)));
    }
    let mut r1 = im1.slice(s![c1[0].clone(), c1[1].clone(), c1[2].clone()]).to_owned();
    if let Some(m) = mask1 {
        let mc = m.slice(s![c1[0].clone(), c1[1].clone(), c1[2].clone()]);
        r1.zip_mut_with(&mc, |v, keep| {
            if !*keep {
                *v = f32::NAN
            }
        });
    }
    let r1s: Vec<f32> = r1.iter().copied().collect();
    // Masked voxels of image 1 are NaN for good: look for them once, not at every evaluation.
    let r1_has_nan = any_nan(&r1s);
    // The gradient of im1 at the crop voxels; with --update-gradient, of the deformed im2.
    let mut grads = if o.update_gradient {
        Vec::new()
    } else if cubic_gradient {
        let [gz, gy, gx] = super::gradient::gradient4_in_box_rows(im1, margin, nc, nc[2]);
        (0..gz.len()).map(|i| [gz[i], gy[i], gx[i]]).collect()
    } else {
        gradient_in_box(im1, margin, nc)
    };
    // With no initial Φ spam first compares with im2 itself (no border zeroing).
    let mut unwarped = phi_init.is_none();
    let mut def = Vec::new();
    let evaluate = |phi: &Phi, need_m: bool| -> Result<Evaluation> {
        if o.update_gradient {
            // The gradient of the whole deformed im2, cropped: the crop is never on its border.
            let full = if unwarped { im2_grey.to_owned() } else { warp_region(im2, phi, [0; 3], n2, o.order) };
            grads = gradient_in_box(&full.view(), c2o, nc);
            def = crop2(&full.view());
        } else if unwarped {
            def = crop2(&im2_grey);
        } else {
            warp_region_into(im2, phi, c2o, nc, o.order, &mut def);
        }
        unwarped = false;
        let mut e = crop_sums(&r1s, r1_has_nan, &def, &grads, nc, &coords, need_m);
        if two_d {
            super::plane::reduce_to_plane(&mut e);
        }
        Ok(e)
    };
    gauss_newton(phi_init, o, evaluate)
}

/// Whether any value is NaN: a branch-free scan in blocks, which the compiler vectorises
/// (an early-exit `any` is a scalar loop, and most boxes hold no NaN).
pub(crate) fn any_nan(values: &[f32]) -> bool {
    values.chunks(256).any(|block| block.iter().fold(false, |seen, v| seen | v.is_nan()))
}

/// One pass over the crop: A = Σ (im1 − im2def)·J, spam's error nansum((im1 − im2def)²) /
/// nansum(im1), and, when asked, M = Σ J Jᵀ, over the voxels where both images are defined.
///
/// The Jacobian row of a voxel is J[4i + j] = g_i · X_j with X = (z, y, x, 1) about the crop
/// centre. Along a row only x changes, so each row keeps sums of g_i g_k, g_i g_k x and
/// g_i g_k x² (and of d·g_i, d·g_i x for A) and multiplies in z and y once per row: 24
/// products per voxel for M instead of 78, and no 12-wide Jacobian held per voxel.
pub(crate) fn crop_sums(r1: &[f32], r1_has_nan: bool, def: &[f32], g: &[[f32; 3]], nc: [usize; 3], coords: &[Vec<f64>; 3], need_m: bool) -> Evaluation {
    // Windows without masked (NaN) voxels take the loop without per-voxel tests.
    let nan = r1_has_nan || def.iter().any(|v| v.is_nan());
    match (need_m, nan) {
        (true, true) => crop_sums_as::<true, true>(r1, def, g, nc, coords),
        (true, false) => crop_sums_as::<true, false>(r1, def, g, nc, coords),
        (false, true) => crop_sums_as::<false, true>(r1, def, g, nc, coords),
        (false, false) => crop_sums_as::<false, false>(r1, def, g, nc, coords),
    }
}

fn crop_sums_as<const NEED_M: bool, const NAN: bool>(r1: &[f32], def: &[f32], g: &[[f32; 3]], nc: [usize; 3], coords: &[Vec<f64>; 3]) -> Evaluation {
    const PAIRS: [(usize, usize); 6] = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)];
    let mut a = [0f64; 12];
    let mut m = [[0f64; 12]; 12];
    let (mut num, mut den, mut kept) = (0f64, 0f64, 0usize);
    let mut k = 0;
    for z in 0..nc[0] {
        let cz = coords[0][z];
        for y in 0..nc[1] {
            let cy = coords[1][y];
            let (mut sa0, mut sa1) = ([0f64; 3], [0f64; 3]);
            let (mut s0, mut s1, mut s2) = ([0f64; 6], [0f64; 6], [0f64; 6]);
            let row = k..k + nc[2];
            for (((&p, &q), gv), &xv) in r1[row.clone()].iter().zip(&def[row.clone()]).zip(&g[row]).zip(&coords[2]) {
                if !NAN || !p.is_nan() {
                    den += p as f64;
                }
                let d = (p - q) as f64;
                if NAN && d.is_nan() {
                    continue;
                }
                num += d * d;
                kept += 1;
                let gd = [gv[0] as f64, gv[1] as f64, gv[2] as f64];
                for i in 0..3 {
                    let t = d * gd[i];
                    sa0[i] += t;
                    sa1[i] += t * xv;
                }
                if NEED_M {
                    for (pi, &(i, j)) in PAIRS.iter().enumerate() {
                        let gg = gd[i] * gd[j];
                        s0[pi] += gg;
                        s1[pi] += gg * xv;
                        s2[pi] += gg * xv * xv;
                    }
                }
            }
            k += nc[2];
            // Σ over the row of f·X_j: X_0 = cz, X_1 = cy, X_2 = x (from the x-weighted sum), X_3 = 1.
            for i in 0..3 {
                a[4 * i] += cz * sa0[i];
                a[4 * i + 1] += cy * sa0[i];
                a[4 * i + 2] += sa1[i];
                a[4 * i + 3] += sa0[i];
            }
            if NEED_M {
                let c = [cz, cy, 0.0, 1.0];
                for (pi, &(i, j)) in PAIRS.iter().enumerate() {
                    for p in 0..4 {
                        for q in 0..4 {
                            let v = match (p == 2, q == 2) {
                                (false, false) => c[p] * c[q] * s0[pi],
                                (true, false) => c[q] * s1[pi],
                                (false, true) => c[p] * s1[pi],
                                (true, true) => s2[pi],
                            };
                            m[4 * i + p][4 * j + q] += v;
                        }
                    }
                }
            }
        }
    }
    let m = NEED_M.then(|| {
        SMatrix::<f64, 12, 12>::from_fn(|r, c| {
            // Blocks (i, j) with i ≤ j were summed; the rest is their transpose.
            if r / 4 <= c / 4 { m[r][c] } else { m[c][r] }
        })
    });
    Evaluation { a: SVector::from_column_slice(&a), error: (num / den) as f32 as f64, m, residual_variance: residual_variance(num, kept) }
}

/// s² = Σ d² / (N − 12): the variance of the residual over the N voxels compared, with the
/// 12 fitted parameters taken off the degrees of freedom (NaN with 12 voxels or fewer).
pub(crate) fn residual_variance(sum_sq: f64, kept: usize) -> f64 {
    if kept > 12 { sum_sq / (kept - 12) as f64 } else { f64::NAN }
}

/// The standard deviation of the displacement at the window centre predicted by the
/// Gauss–Newton normal matrix: the step is δ = M⁻¹ Σ J r, so noise of variance s² in the
/// residual r gives δ the covariance s² M⁻¹; the translation of Φ·(I + δ) moves by F t_δ, so
/// the displacement's covariance is F C Fᵀ with C the translation block (components 3, 7, 11)
/// of s² M⁻¹. In the grey-level units of the images, per voxel.
pub(crate) fn displacement_sd(m: &SMatrix<f64, 12, 12>, s2: f64, phi: &Phi) -> [f64; 3] {
    let Some(minv) = m.try_inverse() else { return [f64::NAN; 3] };
    let c = nalgebra::Matrix3::from_fn(|i, j| s2 * minv[(4 * i + 3, 4 * j + 3)]);
    let f = phi::f_block(phi);
    let cov = f * c * f.transpose();
    std::array::from_fn(|i| if cov[(i, i)] >= 0.0 { cov[(i, i)].sqrt() } else { f64::NAN })
}

/// What one evaluation of Φ gives the Gauss–Newton loop: A = Σ (im1 − im2def)·J, spam's
/// error, and M = Σ J Jᵀ when asked.
pub(crate) struct Evaluation {
    pub a: SVector<f64, 12>,
    pub error: f64,
    pub m: Option<SMatrix<f64, 12, 12>>,
    /// s² of the residual at this Φ ([`residual_variance`]).
    pub residual_variance: f64,
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
    let (mut a, mut error, mut s2) = (first.a, first.error, first.residual_variance);
    let (mut iterations, mut dpn) = (0usize, 100.0f64);
    let (mut singular_m, mut singular_phi, mut status) = (false, false, Status::NotRun);
    let (mut lambda, mut flat) = (0f64, false);
    while iterations < o.max_iterations && dpn > o.delta_phi_min {
        let error_prev = error;
        let step = if o.damped { damped_solve(&m, &a, lambda) } else { m.try_inverse().map(|minv| minv * a) };
        let Some(delta) = step else {
            singular_m = true;
            break;
        };
        let (candidate, norm) = apply_delta(&phi, &delta, o.rigid);
        if o.damped {
            let det = phi::f_block(&candidate).determinant().abs();
            let kept = if candidate.try_inverse().is_some() && (0.2..=3.0).contains(&det) {
                let e = evaluate(&candidate, o.update_gradient)?;
                (e.error <= error).then_some(e)
            } else {
                None
            };
            dpn = norm;
            match kept {
                Some(e) => {
                    // A kept step that hardly lowers the error moves along a direction the
                    // images do not determine (a flat valley): stop there, converged.
                    if error - e.error <= FLAT_ERROR * error {
                        flat = true;
                    }
                    phi = candidate;
                    (a, error, s2) = (e.a, e.error, e.residual_variance);
                    if let Some(new_m) = e.m {
                        m = new_m;
                    }
                    lambda = if lambda < 1e-6 { 0.0 } else { lambda / 10.0 };
                }
                // A refused step leaves Φ as it was; a refused step smaller than the
                // threshold means no better Φ is that close: converged.
                None => lambda = if lambda == 0.0 { 1e-3 } else { lambda * 10.0 },
            }
            iterations += 1;
            if flat {
                break;
            }
            continue;
        }
        (phi, dpn) = (candidate, norm);
        if phi.try_inverse().is_none() {
            singular_phi = true;
            break;
        }
        // One evaluation gives this iteration's error and the next iteration's A (and M).
        let e = evaluate(&phi, o.update_gradient)?;
        (a, error, s2) = (e.a, e.error, e.residual_variance);
        if let Some(new_m) = e.m {
            m = new_m;
        }
        if let Some(s) = divergence(error_prev, error, iterations, &phi, o) {
            status = s;
            break;
        }
        iterations += 1;
    }
    let mut status = final_status(status, iterations, dpn, singular_m, singular_phi, o);
    if flat {
        status = Status::Converged;
    }
    let disp_sd = displacement_sd(&m, s2, &phi);
    Ok(RegisterResult { phi, return_status: status, error, iterations, delta_phi_norm: dpn, disp_sd })
}

/// Relative error decrease below which a kept damped step counts as converged.
const FLAT_ERROR: f64 = 1e-6;

/// (M + λ·diag M) δ = A, solved with M scaled to unit diagonal (Jacobi) so that λ is
/// relative to each parameter's own curvature. None when a parameter has no curvature at all
/// (a flat image: spam's singular M) or the system is singular.
fn damped_solve(m: &SMatrix<f64, 12, 12>, a: &SVector<f64, 12>, lambda: f64) -> Option<SVector<f64, 12>> {
    let mut s = SVector::<f64, 12>::zeros();
    for i in 0..12 {
        let d = m[(i, i)];
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        s[i] = 1.0 / d.sqrt();
    }
    let scaled = SMatrix::<f64, 12, 12>::from_fn(|i, j| m[(i, j)] * s[i] * s[j] + if i == j { lambda } else { 0.0 });
    let y = scaled.lu().solve(&a.component_mul(&s))?;
    Some(y.component_mul(&s))
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
fn divergence(error_prev: f64, error: f64, iterations: usize, phi: &Phi, o: &RegisterOptions) -> Option<Status> {
    if error_prev < 0.8 * error && iterations > o.max_iterations / 2 {
        return Some(Status::Diverged);
    }
    let det_u = phi::f_block(phi).determinant().abs();
    if !(0.2..=3.0).contains(&det_u) {
        return Some(Status::VolumeChange);
    }
    None
}

/// spam's status rules after the loop, applied in its order (a later rule wins).
fn final_status(mut status: Status, iterations: usize, dpn: f64, singular_m: bool, singular_phi: bool, o: &RegisterOptions) -> Status {
    if iterations >= o.max_iterations {
        status = Status::IterationLimit;
    }
    if dpn <= o.delta_phi_min {
        status = Status::Converged;
    }
    if singular_m {
        status = Status::SingularMatrix;
    } else if singular_phi {
        status = Status::SingularPhi;
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

/// The centre spam writes for a registration of an image of shape n: (n − 1)/2.
pub fn image_centre(n: [usize; 3]) -> Vector3<f64> {
    Vector3::new((n[0] as f64 - 1.0) / 2.0, (n[1] as f64 - 1.0) / 2.0, (n[2] as f64 - 1.0) / 2.0)
}

