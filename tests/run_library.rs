//! The correlation tools called as a library (src/run/), not through the command line: a
//! resolved job in, a table out. Two 40³ volumes, the second the first moved by a known
//! sub-voxel translation of a smooth analytic texture, correlated by `run::ldic` and
//! `run::pixel_search`; the tables must give every node where the job put it and the
//! translation (the exact one for ldic, the nearest integer for pixel search).

use std::path::Path;

use dvc_stream::field::vtk::HeaderNum;
use dvc_stream::field::{make_grid, PhiField};
use dvc_stream::kernels::local::LocalOptions;
use dvc_stream::kernels::ncc::Method;
use dvc_stream::kernels::pixel_search::PixelOptions;
use dvc_stream::kernels::register::RegisterOptions;
use dvc_stream::phi::{self, ApplyF, Phi};
use dvc_stream::run::ldic::{GuessSource, LdicFiles, LdicJob, LdicPair};
use dvc_stream::run::pipeline::Context;
use dvc_stream::run::pixel_search::{PixelSearchJob, SearchFiles, SearchPoints};
use dvc_stream::store::dtype::TypedBuf;
use dvc_stream::store::tiff_write::write_tiff;
use dvc_stream::store::ChunkCache;

const N: usize = 40;
/// The motion of image 2 (Z, Y, X), voxels.
const T: [f64; 3] = [0.4, -1.3, 0.7];

/// A smooth texture of several wavelengths (exactly interpolable by a cubic spline to ~1e-3).
fn texture(z: f64, y: f64, x: f64) -> f32 {
    let w = |a: f64, b: f64, c: f64, p: f64| (a * z + b * y + c * x + p).sin();
    (1000.0 + 300.0 * w(0.31, 0.17, 0.23, 0.1) + 200.0 * w(-0.21, 0.37, 0.13, 1.3) + 150.0 * w(0.19, -0.11, 0.41, 2.2) + 100.0 * w(0.43, 0.29, -0.33, 0.7)) as f32
}

fn write_pair(dir: &Path) {
    for (name, t) in [("im1.tif", [0.0; 3]), ("im2.tif", T)] {
        let mut v = Vec::with_capacity(N * N * N);
        for z in 0..N {
            for y in 0..N {
                for x in 0..N {
                    // Image 2 at x shows what image 1 shows at x − t.
                    v.push(texture(z as f64 - t[0], y as f64 - t[1], x as f64 - t[2]));
                }
            }
        }
        write_tiff(&dir.join(name), [N; 3], &TypedBuf::F32(v)).unwrap();
    }
}

fn context() -> Context {
    Context { cache: ChunkCache::new(64 << 20), threads: 2, progress: false }
}

fn run_options() -> dvc_stream::distribute::RunOptions {
    dvc_stream::distribute::RunOptions { shard: None, resume: false, checkpoint_every: std::time::Duration::from_secs(30) }
}

#[test]
fn ldic_as_a_library_call_finds_the_known_translation_at_every_node() {
    let d = tempfile::tempdir().unwrap();
    write_pair(d.path());
    let (nodes, dims) = make_grid([N; 3], [10; 3]);
    let options = LocalOptions {
        hws: [5; 3],
        margin: [3; 3],
        mask_coverage: 0.5,
        grey_low: f64::NEG_INFINITY,
        grey_high: f64::INFINITY,
        register: RegisterOptions { margin: Some([1; 3]), max_iterations: 50, delta_phi_min: 1e-4, order: 3, ..RegisterOptions::default() },
    };
    let pair = LdicPair { im1: d.path().join("im1.tif"), im2: d.path().join("im2.tif"), dir: d.path().to_path_buf(), prefix: "lib".into() };
    let job = LdicJob {
        pairs: vec![pair],
        mask1: None,
        guess: GuessSource { phi_file: None, bin_ratio: 1.0, apply_f: ApplyF::All },
        guesses: vec![Phi::identity(); nodes.len()],
        nodes: nodes.clone(),
        dims,
        spacing: [HeaderNum::Int(10); 3],
        skip: false,
        kept: None,
        options,
        files: LdicFiles { tsv: true, vtk: true, tiff: false, png: false },
        run: run_options(),
    };
    // The job is a plain record of the run.
    let text = serde_json::to_string(&job).unwrap();
    assert!(text.contains("\"hws\":[5,5,5]") && text.contains("\"nodes\":[[10.0,10.0,10.0]"), "{}", &text[..200.min(text.len())]);
    let pairs = dvc_stream::run::ldic::run(&job, &context()).unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].counts.values().sum::<usize>(), nodes.len());
    let table = PhiField::read(&d.path().join("lib-ldic.tsv")).unwrap();
    assert_eq!(table.positions, nodes, "every node where the job put it");
    for i in 0..table.len() {
        assert_eq!(table.return_status[i], dvc_stream::field::Status::Converged, "node {i} converged");
        let t = phi::translation(&table.phis[i]);
        assert!((0..3).all(|k| (t[k] - T[k]).abs() < 0.02), "node {i}: {t:?} vs {T:?}");
    }
    // Its VTK centres each cell where the table puts its node: the first at (10, 10, 10),
    // so the grid's corner half a spacing before it.
    let vtk = std::fs::read_to_string(d.path().join("lib-ldic.vtk")).unwrap();
    assert!(vtk.contains("\nORIGIN 5.0 5.0 5.0\n"), "{}", &vtk[..300]);
    let back = dvc_stream::field::vtk::read_field(&d.path().join("lib-ldic.vtk")).unwrap();
    assert_eq!(back.positions, nodes, "the VTK read back gives the table's positions");
}

#[test]
fn pixel_search_as_a_library_call_finds_the_nearest_integer_translation() {
    let d = tempfile::tempdir().unwrap();
    write_pair(d.path());
    let (nodes, dims) = make_grid([N; 3], [10; 3]);
    let options = PixelOptions {
        hws: [5; 3],
        range_lo: [-3; 3],
        range_hi: [3; 3],
        mask_coverage: 0.5,
        grey_low: f64::NEG_INFINITY,
        grey_high: f64::INFINITY,
        apply_f: ApplyF::All,
        method: Method::Auto,
        subvoxel: false,
        zero_mean: false,
        label_dilate: 1,
        volume_threshold: 100,
    };
    let files = SearchFiles { dir: d.path().to_path_buf(), prefix: "lib".into(), tsv: true, vtk: false, tiff: false, png: false };
    let points = SearchPoints::Grid { nodes: nodes.clone(), dims, spacing: [HeaderNum::Int(10); 3] };
    let job = PixelSearchJob {
        im1: d.path().join("im1.tif"),
        im2: d.path().join("im2.tif"),
        mask1: None,
        mask2: None,
        phi_file: None,
        points,
        guesses: vec![Phi::identity(); nodes.len()],
        options,
        parameters: serde_json::json!({}),
        files,
        run: run_options(),
    };
    let done = dvc_stream::run::pixel_search::run(&job, &context()).unwrap();
    assert_eq!(done.counts.get(&dvc_stream::field::Status::FOUND), Some(&nodes.len()), "{:?}", done.counts);
    let table = PhiField::read(&d.path().join("lib-pixelSearch.tsv")).unwrap();
    assert_eq!(table.positions, nodes);
    for i in 0..table.len() {
        assert_eq!(phi::translation(&table.phis[i]), nalgebra::Vector3::from(T.map(f64::round)), "node {i}");
    }
}
