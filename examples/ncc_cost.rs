//! Times the two NCC methods on random windows (calibrates the cost model in ncc.rs).
use dvc_stream::kernels::ncc::{search, Method};
use ndarray::Array3;
use std::time::Instant;

fn main() {
    let mut s = 1u64;
    for (h, r) in [(5usize, 3usize), (10, 3), (10, 5), (10, 8), (10, 15), (5, 10), (15, 5)] {
        let n1 = 2 * h + 1;
        let n2 = n1 + 2 * r;
        let big = Array3::from_shape_fn((n2, n2, n2), |_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % 1000) as f32
        });
        let w1 = big.slice(ndarray::s![r..r + n1, r..r + n1, r..r + n1]).to_owned();
        for (name, m) in [("direct", Method::Direct), ("fft", Method::Fft), ("auto", Method::Auto)] {
            let t = Instant::now();
            let reps = 3;
            for _ in 0..reps {
                let b = search(&w1.view(), &big.view(), m, false, false).unwrap();
                assert_eq!(b.offset, [r; 3]);
            }
            println!("hws {h:2} range ±{r:2} {name:6} {:8.2} ms", t.elapsed().as_secs_f64() * 1e3 / reps as f64);
        }
    }
}
