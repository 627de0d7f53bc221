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
    }
}
