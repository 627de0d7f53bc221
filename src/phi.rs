//! Φ, the homogeneous 4×4 deformation function, exactly as spam defines it.
//!
//! Everything is in (Z, Y, X) order. `F` is the upper-left 3×3 block (the transformation
//! gradient, `F[i][j] = δij + ∂u_i/∂X_j`), `t` the displacement of Φ's centre `c`, so
//! `x = c + F·(X − c) + t`. Building from components, decomposing (U, e, vol, dev, r, z, Up,
//! volss, devss), moving Φ to another point, rescaling by a bin ratio and the rigid part
//! follow spam-compat.md §1 to the letter, including its row-normalised rotation.

use nalgebra::{Matrix3, Matrix4, Vector3};

pub type Phi = Matrix4<f64>;

/// Identity Φ.
pub fn identity() -> Phi {
    Matrix4::identity()
}

/// The translation column.
pub fn translation(phi: &Phi) -> Vector3<f64> {
    Vector3::new(phi[(0, 3)], phi[(1, 3)], phi[(2, 3)])
}

/// Sets the translation column.
pub fn set_translation(phi: &mut Phi, t: &Vector3<f64>) {
    for i in 0..3 {
        phi[(i, 3)] = t[i];
    }
}

/// The 3×3 F block.
pub fn f_block(phi: &Phi) -> Matrix3<f64> {
    phi.fixed_view::<3, 3>(0, 0).into_owned()
}

/// Builds Φ from F and t.
pub fn from_f_t(f: &Matrix3<f64>, t: &Vector3<f64>) -> Phi {
    let mut p = identity();
    p.fixed_view_mut::<3, 3>(0, 0).copy_from(f);
    set_translation(&mut p, t);
    p
}

/// Whether all 16 entries are finite.
pub fn is_finite(phi: &Phi) -> bool {
    phi.iter().all(|v| v.is_finite())
}

/// Rotation matrix from a rotation vector in degrees (Rodrigues' formula, spam's convention:
/// direction = axis in (z, y, x) index space, length = angle; no rotation below 1e-4°).
pub fn rotation_matrix(r_deg: &Vector3<f64>) -> Matrix3<f64> {
    let theta = r_deg.norm();
    if theta <= 1e-4 {
        return Matrix3::identity();
    }
    let a = r_deg / theta;
    let k = Matrix3::new(0.0, -a[2], a[1], a[2], 0.0, -a[0], -a[1], a[0], 0.0);
    let th = theta.to_radians();
    Matrix3::identity() + k * th.sin() + k * k * (1.0 - th.cos())
}

/// Components for [`compute_phi`]; all optional, as in spam's `computePhi`.
#[derive(Clone, Debug, Default)]
pub struct PhiComponents {
    pub t: Option<[f64; 3]>,
    /// Rotation vector in degrees.
    pub r: Option<[f64; 3]>,
    /// Zoom: the three diagonal stretches.
    pub z: Option<[f64; 3]>,
    /// Symmetric shear (s_zy, s_zx, s_yx).
    pub s: Option<[f64; 3]>,
    /// Right stretch tensor (overrides z and s).
    pub u: Option<Matrix3<f64>>,
}

/// spam's `computePhi`: F = U (or diag(z) with shears), then R·F, then t.
pub fn compute_phi(c: &PhiComponents) -> Phi {
    let mut f = Matrix3::identity();
    if let Some(u) = c.u {
        f = u;
    } else if c.z.is_some() || c.s.is_some() {
        if let Some(z) = c.z {
            f = Matrix3::from_diagonal(&Vector3::new(z[0], z[1], z[2]));
        }
        if let Some(s) = c.s {
            f[(0, 1)] = s[0];
            f[(1, 0)] = s[0];
            f[(0, 2)] = s[1];
            f[(2, 0)] = s[1];
            f[(1, 2)] = s[2];
            f[(2, 1)] = s[2];
        }
    }
    if let Some(r) = c.r {
        f = rotation_matrix(&Vector3::new(r[0], r[1], r[2])) * f;
    }
    let t = c.t.map(|t| Vector3::new(t[0], t[1], t[2])).unwrap_or_else(Vector3::zeros);
    from_f_t(&f, &t)
}

/// The translation of Φ (defined at `centre`) seen at `point`: `t + (F − I)(p − c)`.
pub fn translation_at(phi: &Phi, centre: &Vector3<f64>, point: &Vector3<f64>) -> Vector3<f64> {
    translation(phi) + (f_block(phi) - Matrix3::identity()) * (point - centre)
}

/// The same transformation expressed at `point` instead of `centre` (F unchanged).
pub fn move_to(phi: &Phi, centre: &Vector3<f64>, point: &Vector3<f64>) -> Phi {
    let mut p = *phi;
    set_translation(&mut p, &translation_at(phi, centre, point));
    p
}

/// Φ measured on an image binned by `ratio` used on the unbinned image: t × ratio.
pub fn rescale(phi: &Phi, ratio: f64) -> Phi {
    let mut p = *phi;
    for i in 0..3 {
        p[(i, 3)] *= ratio;
    }
    p
}

/// Everything `decomposeF` returns.
#[derive(Clone, Debug)]
pub struct Decomposition {
    pub u: Matrix3<f64>,
    pub e: Matrix3<f64>,
    pub r: Vector3<f64>,
    pub z: Vector3<f64>,
    pub up: Vector3<f64>,
    pub vol: f64,
    pub dev: f64,
    pub volss: f64,
    pub devss: f64,
}

impl Decomposition {
    fn nan() -> Decomposition {
        let n = f64::NAN;
        Decomposition {
            u: Matrix3::from_element(n),
            e: Matrix3::from_element(n),
            r: Vector3::from_element(n),
            z: Vector3::from_element(n),
            up: Vector3::from_element(n),
            vol: n,
            dev: n,
            volss: n,
            devss: n,
        }
    }
}

/// spam's `decomposeF` (spam-compat.md §1.7); all NaN for a non-finite or singular F.
pub fn decompose_f(f: &Matrix3<f64>, two_d: bool) -> Decomposition {
    if !f.iter().all(|v| v.is_finite()) {
        return Decomposition::nan();
    }
    let det = f.determinant();
    if det == 0.0 || f.try_inverse().is_none() {
        return Decomposition::nan();
    }
    let mut c = f.transpose() * f;
    if (c - Matrix3::identity()).iter().map(|v| v.abs()).sum::<f64>() < 1e-5 {
        c = Matrix3::identity();
    }
    let eig = nalgebra::SymmetricEigen::new(c);
    let lam = eig.eigenvalues.map(|l| if l < 0.0 { 0.0 } else { l });
    let v = eig.eigenvectors;
    let sq = lam.map(|l| l.sqrt());
    let u = v * Matrix3::from_diagonal(&sq) * v.transpose();
    let mut r = match u.try_inverse() {
        Some(ui) => f * ui,
        None => return Decomposition::nan(),
    };
    for i in 0..3 {
        let n = r.row(i).norm();
        for j in 0..3 {
            r[(i, j)] /= n;
        }
    }
    let arg = (r.trace() - 1.0) / 2.0;
    let theta = if arg <= 1.0 { arg.acos() } else { 0.0 };
    let theta_deg = theta.to_degrees();
    let rvec = if theta_deg > 1e-4 {
        let axis = Vector3::new(r[(2, 1)] - r[(1, 2)], r[(0, 2)] - r[(2, 0)], r[(1, 0)] - r[(0, 1)]) / (2.0 * theta.sin());
        axis * theta_deg
    } else {
        Vector3::zeros()
    };
    let mut up: Vec<f64> = sq.iter().map(|s| s - 1.0).collect();
    up.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let vol = det - 1.0;
    let (dev, e, volss, devss);
    if two_d {
        let u2 = u.fixed_view::<2, 2>(1, 1).into_owned();
        let f2 = f.fixed_view::<2, 2>(1, 1).into_owned();
        let d2 = f2.determinant();
        dev = (u2 * d2.powf(-0.5) - nalgebra::Matrix2::identity()).norm();
        let mut f0 = *f;
        for k in 0..3 {
            f0[(0, k)] = 0.0;
            f0[(k, 0)] = 0.0;
        }
        f0[(0, 0)] = 1.0;
        e = (f0 + f0.transpose()) / 2.0 - Matrix3::identity();
        volss = e.trace();
        let e2 = e.fixed_view::<2, 2>(1, 1).into_owned();
        devss = (e2 - nalgebra::Matrix2::identity() * (volss / 2.0)).norm();
    } else {
        dev = (u * det.powf(-1.0 / 3.0) - Matrix3::identity()).norm();
        e = (f + f.transpose()) / 2.0 - Matrix3::identity();
        volss = e.trace();
        devss = (e - Matrix3::identity() * (volss / 3.0)).norm();
    }
    Decomposition {
        z: Vector3::new(u[(0, 0)], u[(1, 1)], u[(2, 2)]),
        u,
        e,
        r: rvec,
        up: Vector3::new(up[0], up[1], up[2]),
        vol,
        dev,
        volss,
        devss,
    }
}

/// spam's `decomposePhi`: translation at `point` plus [`decompose_f`]; all NaN when Φ is
/// singular or not finite.
pub fn decompose_phi(phi: &Phi, centre: &Vector3<f64>, point: &Vector3<f64>) -> (Vector3<f64>, Decomposition) {
    if !is_finite(phi) || phi.try_inverse().is_none() {
        return (Vector3::from_element(f64::NAN), Decomposition::nan());
    }
    (translation_at(phi, centre, point), decompose_f(&f_block(phi), false))
}

/// spam's `computeRigidPhi`: the rotation of F (via the decomposition) with the same t.
pub fn rigid_part(phi: &Phi) -> Phi {
    let d = decompose_f(&f_block(phi), false);
    let r = if d.r.iter().all(|v| v.is_finite()) { d.r } else { Vector3::from_element(f64::NAN) };
    from_f_t(&rotation_matrix(&r), &translation(phi))
}

/// Which part of F a guess carries to points (spam's `-F all|rigid|no`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum ApplyF {
    All,
    Rigid,
    No,
}

/// Keeps all of F, only its rotation, or none of it (translation kept).
pub fn apply_f_mode(phi: &Phi, mode: ApplyF) -> Phi {
    match mode {
        ApplyF::All => *phi,
        ApplyF::Rigid => rigid_part(phi),
        ApplyF::No => from_f_t(&Matrix3::identity(), &translation(phi)),
    }
}

/// spam's `applyRegistrationToPoints`: Φ at each point with the translation moved there
/// (full F) and F kept according to `mode`.
pub fn registration_to_point(phi: &Phi, centre: &Vector3<f64>, point: &Vector3<f64>, mode: ApplyF) -> Phi {
    let t = translation_at(phi, centre, point);
    let mut p = apply_f_mode(phi, mode);
    set_translation(&mut p, &t);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn compute_phi_matches_spam_vector_1() {
        let p = compute_phi(&PhiComponents { t: Some([1.2, -2.4, 0.8]), r: Some([2.0, 0.0, 0.0]), z: Some([1.02, 1.0, 1.0]), ..Default::default() });
        let want = [[1.02, 0.0, 0.0, 1.2], [0.0, 0.999390827, -0.034899497, -2.4], [0.0, 0.034899497, 0.999390827, 0.8]];
        for i in 0..3 {
            for j in 0..4 {
                assert!(close(p[(i, j)], want[i][j], 1e-9), "{i}{j}: {}", p[(i, j)]);
            }
        }
        let (t, d) = decompose_phi(&p, &Vector3::zeros(), &Vector3::zeros());
        assert!(close(t[0], 1.2, 1e-12));
        assert!(close(d.r[0], 2.0, 1e-7) && close(d.r[1], 0.0, 1e-9) && close(d.r[2], 0.0, 1e-9));
        assert!(close(d.z[0], 1.02, 1e-9) && close(d.z[1], 1.0, 1e-9));
        assert!(close(d.up[2], 0.02, 1e-9) && close(d.up[0], 0.0, 1e-9));
        assert!(close(d.vol, 0.02, 1e-9));
        assert!(close(d.dev, 0.016222671, 1e-8));
        assert!(close(d.volss, 0.018781654, 1e-8));
        assert!(close(d.devss, 0.016827319, 1e-8));
        assert!(close(d.e[(1, 1)], -0.000609173, 1e-9));
    }

    #[test]
    fn compute_phi_matches_spam_vector_2() {
        let p = compute_phi(&PhiComponents {
            t: Some([0.5, 1.0, -1.0]),
            r: Some([5.0, -10.0, 3.0]),
            s: Some([0.01, 0.02, -0.015]),
            z: Some([0.98, 1.03, 1.01]),
            ..Default::default()
        });
        let want = [
            [0.959768289, -0.048981164, -0.152218814, 0.5],
            [0.051650367, 1.026496832, -0.106174296, 1.0],
            [0.192554074, 0.071624714, 0.993117038, -1.0],
        ];
        for i in 0..3 {
            for j in 0..4 {
                assert!(close(p[(i, j)], want[i][j], 1e-9), "{i}{j}");
            }
        }
        let (t, d) = decompose_phi(&p, &Vector3::new(10.0, 20.0, 30.0), &Vector3::zeros());
        for (a, b) in t.iter().zip([6.448504825, 3.138788564, -4.151546161]) {
            assert!(close(*a, b, 1e-8));
        }
        for (a, b) in d.r.iter().zip([5.0, -10.0, 3.0]) {
            assert!(close(*a, b, 1e-7), "{a} {b}");
        }
        let u = [[0.98, 0.01, 0.02], [0.01, 1.03, -0.015], [0.02, -0.015, 1.01]];
        for i in 0..3 {
            for j in 0..3 {
                assert!(close(d.u[(i, j)], u[i][j], 1e-9));
            }
        }
        for (a, b) in d.up.iter().zip([-0.033923756, 0.015887287, 0.038036468]) {
            assert!(close(*a, b, 1e-8));
        }
        assert!(close(d.vol, 0.0187545, 1e-7));
        assert!(close(d.dev, 0.051805720, 1e-8));
        assert!(close(d.volss, -0.020617841, 1e-8));
        assert!(close(d.devss, 0.060334195, 1e-8));
        assert!(close(d.e[(0, 2)], 0.02016763, 1e-8));
        let rig = rigid_part(&p);
        let want = [
            [0.983454745, -0.05959396, -0.171071107, 0.5],
            [0.044414827, 0.994839095, -0.091227728, 1.0],
            [0.175624847, 0.082120249, 0.981026084, -1.0],
        ];
        for i in 0..3 {
            for j in 0..4 {
                assert!(close(rig[(i, j)], want[i][j], 1e-8), "rigid {i}{j}");
            }
        }
    }

    #[test]
    fn moving_and_back_is_identity() {
        let p = compute_phi(&PhiComponents { t: Some([1.0, 2.0, 3.0]), r: Some([3.0, 1.0, -2.0]), z: Some([1.01, 0.99, 1.0]), ..Default::default() });
        let c = Vector3::new(10.0, 20.0, 30.0);
        let q = Vector3::new(-5.0, 7.0, 100.0);
        let back = move_to(&move_to(&p, &c, &q), &q, &c);
        assert!((back - p).norm() < 1e-12);
        assert!(decompose_phi(&Matrix4::zeros(), &c, &q).1.vol.is_nan());
    }
}
