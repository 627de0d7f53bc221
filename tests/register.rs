//! Registration against spam's reference outputs and against exact synthetic truth.

use std::path::{Path, PathBuf};

use dvc_stream::field::PhiField;
use dvc_stream::kernels::register::RegisterOptions;
use dvc_stream::kernels::register_volume::{register_multiscale, MultiscaleOptions};
use dvc_stream::phi;
use dvc_stream::store::{ChunkCache, Volume};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spam-0.9.1")
}

fn open(p: &Path) -> Volume {
    Volume::open(p, ChunkCache::new(256 << 20)).unwrap()
}

fn spam_reg(im2: &str, tsv: &str) {
    let ex = examples();
    let a = open(&ex.join("inputs/im1.tif"));
    let b = open(&ex.join(format!("inputs/{im2}")));
    let o = MultiscaleOptions { bin_start: 2, bin_stop: 1, margin: None, single: RegisterOptions::default() };
    let r = register_multiscale(&a, &b, None, None, 1.0, &o).unwrap();
    let want = PhiField::read(&ex.join(format!("reg/{tsv}"))).unwrap();
    assert_eq!(r.return_status, want.return_status[0]);
    assert_eq!(r.iterations as f64, want.iterations[0]);
    for i in 0..3 {
        for j in 0..4 {
            let (g, w) = (r.phi[(i, j)], want.phis[0][(i, j)]);
            assert!((g - w).abs() < 2e-7, "{tsv}: Φ[{i}][{j}] {g} vs spam {w}");
        }
    }
    assert!((r.error - want.error[0]).abs() < 1e-5, "error {} vs {}", r.error, want.error[0]);
    assert!((r.delta_phi_norm - want.delta_phi_norm[0]).abs() < 1e-6);
}

#[test]
fn matches_spam_reg_translation() {
    spam_reg("im2.tif", "im1-im2-registration.tsv");
}

#[test]
fn matches_spam_reg_rotation_and_stretch() {
    spam_reg("im3.tif", "im1-im3-registration.tsv");
}

#[test]
fn decompositions_of_spam_outputs() {
    let want = PhiField::read(&examples().join("reg/im1-im3-registration.tsv")).unwrap();
    let (_, d) = phi::decompose_phi(&want.phis[0], &want.positions[0], &want.positions[0]);
    // 2° about Z and a 2 % stretch along Z (examples/README.md).
    assert!((d.r[0] - 2.0).abs() < 0.01, "{:?}", d.r);
    assert!((d.z[0] - 1.02).abs() < 1e-3);
}

fn synth_pair(dir: &Path, shape: usize, speckle: f64, t: [f64; 3], r: Option<[f64; 3]>, zoom: Option<[f64; 3]>) -> (Volume, Volume, dvc_stream::phi::Phi) {
    use dvc_stream::phi::{compute_phi, PhiComponents};
    use dvc_stream::store::dtype::DType;
    use dvc_stream::store::zarr::{ArrayLayout, Codec};
    use dvc_stream::synth::{deformation::Deformation, texture::Texture, SynthFormat, SynthSpec};
    let phi = compute_phi(&PhiComponents { t: Some(t), r, z: zoom, ..Default::default() });
    let c = (shape as f64 - 1.0) / 2.0;
    let spec = SynthSpec {
        shape: [shape; 3],
        texture: Texture { cell: speckle, ..Texture::new(11) },
        deformation: Deformation::affine(phi, nalgebra::Vector3::new(c, c, c)),
        noise: 0.0,
        dtype: DType::F32,
    };
    let layout = ArrayLayout { chunk: [32; 3], codec: Codec::Zstd(1), shard: None };
    for i in [1u8, 2] {
        spec.write(i, &dir.join(format!("im{i}.zarr")), &SynthFormat::Zarr { layout, levels: 3, labels: false }, false).unwrap();
    }
    (open(&dir.join("im1.zarr")), open(&dir.join("im2.zarr")), phi)
}

#[test]
fn recovers_exact_synthetic_affine() {
    let dir = tempfile::tempdir().unwrap();
    // 5° about an oblique axis, 1 % volumetric strain, sub-voxel translation.
    let axis = nalgebra::Vector3::new(1.0, 2.0, 2.0).normalize() * 5.0;
    let s = 1.01f64.powf(1.0 / 3.0);
    let (a, b, truth) = synth_pair(dir.path(), 128, 3.0, [1.3, -2.7, 0.4], Some([axis[0], axis[1], axis[2]]), Some([s, s, s]));
    let o = MultiscaleOptions { bin_start: 2, bin_stop: 1, margin: None, single: RegisterOptions::default() };
    let r = register_multiscale(&a, &b, None, None, 1.0, &o).unwrap();
    assert_eq!(r.return_status.code(), 2);
    let dt = (phi::translation(&r.phi) - phi::translation(&truth)).norm();
    let df = (phi::f_block(&r.phi) - phi::f_block(&truth)).abs().max();
    assert!(dt < 0.01, "t error {dt}");
    assert!(df < 1e-3, "F error {df}");
}

#[test]
fn multiscale_from_bin_4_recovers_a_large_translation() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, truth) = synth_pair(dir.path(), 128, 3.0, [15.0, -9.0, 6.5], None, None);
    // The margin must exceed the motion (spam's guide): 20 voxels at full resolution, 5 at bin 4.
    let o = MultiscaleOptions { bin_start: 4, bin_stop: 1, margin: Some([20; 3]), single: RegisterOptions::default() };
    let r = register_multiscale(&a, &b, None, None, 1.0, &o).unwrap();
    assert_eq!(r.return_status.code(), 2);
    let dt = (phi::translation(&r.phi) - phi::translation(&truth)).norm();
    assert!(dt < 0.01, "t error {dt}: {}", phi::translation(&r.phi));
    // A single scale from the same start does not get there: the multiscale levels matter.
    let one = MultiscaleOptions { bin_start: 1, bin_stop: 1, margin: Some([20; 3]), single: RegisterOptions::default() };
    let r1 = register_multiscale(&a, &b, None, None, 1.0, &one).unwrap();
    let dt1 = (phi::translation(&r1.phi) - phi::translation(&truth)).norm();
    assert!(dt1 > 1.0, "single scale unexpectedly converged ({dt1})");
}

#[test]
fn rigid_update_gradient_and_mask_options() {
    use dvc_stream::store::memory::MemorySource;
    let dir = tempfile::tempdir().unwrap();
    let axis = [2.0, 0.0, 1.0];
    let (a, b, truth) = synth_pair(dir.path(), 64, 4.0, [0.6, -0.4, 0.3], Some(axis), None);
    let base = RegisterOptions::default();
    // Rigid: a pure rotation + translation is recovered and F stays a rotation.
    let rigid = MultiscaleOptions { bin_start: 1, bin_stop: 1, margin: None, single: RegisterOptions { rigid: true, ..base.clone() } };
    let r = register_multiscale(&a, &b, None, None, 1.0, &rigid).unwrap();
    assert_eq!(r.return_status.code(), 2);
    let f = phi::f_block(&r.phi);
    assert!((f.transpose() * f - nalgebra::Matrix3::identity()).abs().max() < 1e-6, "rigid result is a rotation");
    assert!((phi::translation(&r.phi) - phi::translation(&truth)).norm() < 0.02);
    // Update gradient: converges to the same answer.
    let ug = MultiscaleOptions { bin_start: 1, bin_stop: 1, margin: None, single: RegisterOptions { update_gradient: true, ..base.clone() } };
    let r2 = register_multiscale(&a, &b, None, None, 1.0, &ug).unwrap();
    assert_eq!(r2.return_status.code(), 2);
    assert!((phi::translation(&r2.phi) - phi::translation(&truth)).norm() < 0.02);
    // Mask: hide half of image 1; the answer does not change and a mask of the wrong size fails.
    let n = 64 * 64 * 64;
    let data: Vec<f32> = (0..n).map(|i| if (i % 64) < 32 { 1.0 } else { 0.0 }).collect();
    let mask = Volume::new(
        std::sync::Arc::new(MemorySource { path: "mask".into(), shape: [64; 3], chunk: [16; 3], data: std::sync::Arc::new(data) }),
        ChunkCache::new(1 << 20),
    );
    let one = MultiscaleOptions { bin_start: 1, bin_stop: 1, margin: None, single: base.clone() };
    let r3 = register_multiscale(&a, &b, Some(&mask), None, 1.0, &one).unwrap();
    assert_eq!(r3.return_status.code(), 2);
    assert!((phi::translation(&r3.phi) - phi::translation(&truth)).norm() < 0.02);
    let small = Volume::new(
        std::sync::Arc::new(MemorySource { path: "small".into(), shape: [8; 3], chunk: [8; 3], data: std::sync::Arc::new(vec![1.0; 512]) }),
        ChunkCache::new(1 << 20),
    );
    assert!(register_multiscale(&a, &b, Some(&small), None, 1.0, &one).is_err());
}

#[test]
fn flat_images_are_singular() {
    use dvc_stream::kernels::register::register;
    let flat = ndarray::Array3::<f32>::from_elem((20, 20, 20), 100.0);
    let r = register(&flat.view(), &flat.view(), None, None, &RegisterOptions::default()).unwrap();
    assert_eq!(r.return_status.code(), -2, "spam: M singular on a textureless image");
    assert_eq!(r.iterations, 0);
    assert_eq!(r.delta_phi_norm, 100.0);
}

#[test]
fn streamed_registration_equals_in_memory() {
    use dvc_stream::kernels::register::register;
    use dvc_stream::kernels::register_volume::register_volumes;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = synth_pair(dir.path(), 48, 4.0, [0.4, 0.2, -0.3], Some([1.0, 0.0, 0.5]), None);
    let (fa, fb) = (a.read_all().unwrap(), b.read_all().unwrap());
    let mut init = phi::identity();
    init[(0, 3)] = 0.3;
    for o in [
        RegisterOptions::default(),
        RegisterOptions { update_gradient: true, ..Default::default() },
        RegisterOptions { rigid: true, ..Default::default() },
    ] {
        let mem = register(&fa.view(), &fb.view(), None, Some(&init), &o).unwrap();
        let vol = register_volumes(&a, &b, None, Some(&init), &o).unwrap();
        assert_eq!(mem.return_status, vol.return_status);
        assert_eq!(mem.iterations, vol.iterations);
        // The in-memory registration's fused pass interpolates with f32 weights where the
        // streamed one keeps spam's f64 weights (both sample the same voxels): with
        // --update-gradient both take the f64 path and agree to the order of sums.
        let tol = if o.update_gradient { 1e-9 } else { 1e-7 };
        assert!((mem.phi - vol.phi).abs().max() < tol, "{:?}: {}", o, (mem.phi - vol.phi).abs().max());
        assert!((mem.error - vol.error).abs() < 1e-4);
    }
}
