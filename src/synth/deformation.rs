//! Known deformations for synthetic pairs, with their exact displacement and gradient.
//!
//! A deformation maps reference points X (image 1) to x = X + u(X). It is a single Φ (about
//! a centre, spam's convention) plus optional analytic fields. Image 2 is the texture at the
//! reference point of each voxel, found by Newton's method on X + u(X) = x, so the truth is
//! exact at any point.

use nalgebra::{Matrix3, Vector3};

use crate::phi::{self, Phi};

/// A smooth analytic displacement field added to the affine part.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// u_x = γ (Z − c_z): simple shear.
    Shear { gamma: f64 },
    /// u_z = κ/2 (X − c_x)²: a quadratic bending.
    Bend { kappa: f64 },
    /// u_x = A/2 (1 + tanh((Z − c_z)/w)): a localised band of width w with offset A across it.
    Band { amplitude: f64, width: f64 },
}

impl Field {
    /// Parses `shear:GAMMA`, `bend:KAPPA`, `band:AMPLITUDE:WIDTH`.
    pub fn parse(s: &str) -> anyhow::Result<Field> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize| -> anyhow::Result<f64> {
            parts
                .get(i)
                .ok_or_else(|| anyhow::anyhow!("field '{s}' needs more numbers"))?
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("field '{s}': '{}' is not a number", parts[i]))
        };
        Ok(match parts[0] {
            "shear" => Field::Shear { gamma: num(1)? },
            "bend" => Field::Bend { kappa: num(1)? },
            "band" => Field::Band { amplitude: num(1)?, width: num(2)? },
            other => anyhow::bail!("unknown field '{other}' (use shear:G, bend:K or band:A:W)"),
        })
    }
}

/// The deformation of a synthetic pair.
#[derive(Clone, Debug)]
pub struct Deformation {
    /// Affine part: Φ about `centre`.
    pub phi: Phi,
    pub centre: Vector3<f64>,
    pub fields: Vec<Field>,
}

impl Deformation {
    pub fn affine(phi: Phi, centre: Vector3<f64>) -> Deformation {
        Deformation { phi, centre, fields: Vec::new() }
    }

    /// Displacement u(X).
    pub fn displacement(&self, x: &Vector3<f64>) -> Vector3<f64> {
        let f = phi::f_block(&self.phi);
        let mut u = self.centre + f * (x - self.centre) + phi::translation(&self.phi) - x;
        let d = x - self.centre;
        for fl in &self.fields {
            match *fl {
                Field::Shear { gamma } => u[2] += gamma * d[0],
                Field::Bend { kappa } => u[0] += 0.5 * kappa * d[2] * d[2],
                Field::Band { amplitude, width } => u[2] += 0.5 * amplitude * (1.0 + (d[0] / width).tanh()),
            }
        }
        u
    }

    /// Transformation gradient F = I + ∇u at X.
    pub fn gradient(&self, x: &Vector3<f64>) -> Matrix3<f64> {
        let mut f = phi::f_block(&self.phi);
        let d = x - self.centre;
        for fl in &self.fields {
            match *fl {
                Field::Shear { gamma } => f[(2, 0)] += gamma,
                Field::Bend { kappa } => f[(0, 2)] += kappa * d[2],
                Field::Band { amplitude, width } => {
                    let c = (d[0] / width).cosh();
                    f[(2, 0)] += 0.5 * amplitude / (width * c * c);
                }
            }
        }
        f
    }

    /// Φ at reference point X, as a local DVC would measure it (F and t = u(X)).
    pub fn phi_at(&self, x: &Vector3<f64>) -> Phi {
        phi::from_f_t(&self.gradient(x), &self.displacement(x))
    }

    /// The reference point X whose image is x (X + u(X) = x), by Newton's method.
    pub fn inverse(&self, x: &Vector3<f64>) -> Vector3<f64> {
        if self.fields.is_empty() {
            if let Some(inv) = self.phi.try_inverse() {
                let k = phi::f_block(&inv);
                return self.centre + k * (x - self.centre) + phi::translation(&inv);
            }
        }
        let mut p = x - self.displacement(x);
        for _ in 0..50 {
            let r = p + self.displacement(&p) - x;
            if r.norm() < 1e-11 {
                break;
            }
            let j = self.gradient(&p);
            match j.try_inverse() {
                Some(ji) => p -= ji * r,
                None => break,
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phi::{compute_phi, PhiComponents};

    #[test]
    fn inverse_inverts() {
        let phi = compute_phi(&PhiComponents { t: Some([1.3, -2.7, 0.4]), r: Some([3.0, 2.0, 1.0]), z: Some([1.01, 1.01, 1.01]), ..Default::default() });
        let mut d = Deformation::affine(phi, Vector3::new(63.5, 63.5, 63.5));
        let x = Vector3::new(10.0, 20.0, 30.0);
        let back = d.inverse(&x);
        assert!((back + d.displacement(&back) - x).norm() < 1e-9);
        d.fields = vec![Field::Shear { gamma: 0.01 }, Field::Bend { kappa: 1e-4 }, Field::Band { amplitude: 1.0, width: 4.0 }];
        let back = d.inverse(&x);
        assert!((back + d.displacement(&back) - x).norm() < 1e-9);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut d = Deformation::affine(crate::phi::identity(), Vector3::new(30.0, 30.0, 30.0));
        d.fields = vec![Field::Shear { gamma: 0.02 }, Field::Bend { kappa: 2e-4 }, Field::Band { amplitude: 2.0, width: 5.0 }];
        let x = Vector3::new(33.0, 27.0, 41.0);
        let g = d.gradient(&x);
        let h = 1e-5;
        for j in 0..3 {
            let mut xp = x;
            xp[j] += h;
            let mut xm = x;
            xm[j] -= h;
            let du = (d.displacement(&xp) - d.displacement(&xm)) / (2.0 * h);
            for i in 0..3 {
                let want = du[i] + if i == j { 1.0 } else { 0.0 };
                assert!((g[(i, j)] - want).abs() < 1e-7, "F[{i}][{j}]");
            }
        }
    }
}
