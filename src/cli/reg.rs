//! `dvc-stream reg IM1 IM2`: spam-reg — multiscale registration of two volumes.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::output_names::{open_matching, out_dir, read_registration, stem};
use super::ReadOpts;
use crate::field::parquet::{self, FieldMeta};
use crate::field::{tsv, FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::register::{image_centre, RegisterOptions};
use crate::kernels::register_volume::{register_multiscale, MultiscaleOptions};
use crate::phi;
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;

#[derive(Args, Debug)]
pub struct RegArgs {
    /// Reference volume (TIFF, slice folder, Zarr); a single-page TIFF (shape (1, Y, X)) is a
    /// 2D image, registered on the 6 in-plane parameters as spam does.
    pub im1: PathBuf,
    /// Deformed volume, same shape.
    pub im2: PathBuf,
    /// First (coarsest) binning level [spam: -bb].
    #[arg(long = "bin-start", alias = "binning-begin", default_value_t = 4, value_parser = super::values::power_of_two)]
    pub bin_start: usize,
    /// Last binning level [spam: -be].
    #[arg(long = "bin-stop", alias = "binning-end", default_value_t = 1, value_parser = super::values::power_of_two)]
    pub bin_stop: usize,
    /// Initial registration (one-row TSV or Parquet) [spam: -pf].
    #[arg(long = "phi-file")]
    pub phi_file: Option<PathBuf>,
    /// Bin ratio of --phi-file [spam: -pfb].
    #[arg(long = "phi-file-bin-ratio", default_value_t = 1.0, value_parser = super::values::positive_f64)]
    pub phi_file_bin_ratio: f64,
    /// Mask of im1 (0 = excluded) [spam: -mf1].
    #[arg(long = "mask-file1", alias = "maskFile1")]
    pub mask_file1: Option<PathBuf>,
    /// Margin in voxels at full resolution [spam: -m].
    #[arg(long, allow_negative_numbers = true)]
    pub margin: Option<f64>,
    /// Margin per axis Z Y X [spam: -m3].
    #[arg(long, num_args = 3, value_names = ["Z", "Y", "X"])]
    pub margin3: Option<Vec<usize>>,
    /// Rigid registration [spam: -rig].
    #[arg(long)]
    pub rigid: bool,
    /// Recompute the gradient on the deformed im2 each iteration [spam: -ug].
    #[arg(long = "update-gradient")]
    pub update_gradient: bool,
    /// Iterations per level [spam: -it].
    #[arg(long = "max-iterations", default_value_t = 50)]
    pub max_iterations: usize,
    /// Convergence threshold on ‖δΦ‖ [spam: -dp].
    #[arg(long = "min-delta-phi", default_value_t = 1e-4, value_parser = super::values::non_negative_f64)]
    pub min_delta_phi: f64,
    /// 1 = trilinear (spam's), 3 = cubic B-spline [spam: -o].
    #[arg(long = "interpolation-order", default_value_t = 1, value_parser = super::parse_order)]
    pub interpolation_order: usize,
    #[command(flatten)]
    pub out: super::OutputOpts,
    /// Write image 1 deformed by the result as <im1>-reg-def.tif [spam: -def].
    #[arg(long = "save-deformed-image1")]
    pub save_deformed_image1: bool,
    /// Write PNGs of the residual |im1 − im2(Φx)| on the three middle slices before (Φ = the
    /// initial guess, or identity) and after the registration: <pre>-residual-before.png and
    /// <pre>-residual-after.png, to check the result by eye.
    #[arg(long)]
    pub png: bool,
    #[command(flatten)]
    pub read: ReadOpts,
}

pub fn run(a: RegArgs) -> Result<super::Summary> {
    a.read.threads();
    let cache = a.read.cache()?;
    let im1 = Volume::open(&a.im1, cache.clone())?;
    // A 2D image (one slice) is registered in spam's 2-D mode: the 6 in-plane parameters.
    let two_d = crate::kernels::plane::is_plane(im1.shape());
    let im2 = open_matching(&a.im2, &cache, im1.shape(), "image")?;
    let mask = a.mask_file1.as_ref().map(|p| open_matching(p, &cache, im1.shape(), "mask")).transpose()?;
    let centre = image_centre(im1.shape());
    // Every output is reserved (and checked) before the work starts; all are renamed into
    // place together at the end.
    let dir = out_dir(&a.out.out_dir, &a.im1)?;
    let prefix = a.out.prefix.clone().unwrap_or_else(|| format!("{}-{}", stem(&a.im1), stem(&a.im2)));
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.im1.as_path(), a.im2.as_path()].into_iter().chain(a.phi_file.as_deref()).chain(a.mask_file1.as_deref()));
    let tsv_path = dir.join(format!("{prefix}-registration.tsv"));
    let parquet_path = dir.join(format!("{prefix}-registration.parquet"));
    outs.file(&tsv_path)?;
    outs.file(&parquet_path)?;
    let png_paths: Vec<PathBuf> = if a.png { ["before", "after"].iter().map(|n| dir.join(format!("{prefix}-residual-{n}.png"))).collect() } else { vec![] };
    for p in &png_paths {
        outs.file(p)?;
    }
    let def_path = dir.join(format!("{}-reg-def.tif", stem(&a.im1)));
    if a.save_deformed_image1 {
        super::deform_image::reserve(&mut outs, &def_path)?;
    }
    let init = match &a.phi_file {
        Some(p) => {
            // Positions and translation scaled by -pfb (spam's readCorrelationTSV); the guess
            // is defined at its own centre, so express it at this image's centre.
            let f = read_registration(p, a.phi_file_bin_ratio)?;
            Some(phi::move_to(&f.phis[0], &f.positions[0], &centre))
        }
        None => None,
    };
    let margin = match (&a.margin3, a.margin) {
        (Some(m), _) => Some([m[0], m[1], m[2]]),
        (None, Some(m)) => Some([m.max(0.0) as usize; 3]),
        (None, None) => None,
    };
    let o = MultiscaleOptions {
        bin_start: a.bin_start.max(1),
        bin_stop: a.bin_stop.max(1),
        margin,
        single: RegisterOptions {
            margin: None,
            max_iterations: a.max_iterations,
            delta_phi_min: a.min_delta_phi,
            update_gradient: a.update_gradient,
            rigid: a.rigid,
            order: a.interpolation_order,
            damped: false,
        },
    };
    // (A 2D image is registered in spam's 2-D mode by the same call.)
    let r = register_multiscale(&im1, &im2, mask.as_ref(), init.as_ref(), 1.0, &o)?;
    let mut field = PhiField::new(FieldKind::Registration, Layout::Registration);
    field.push(FieldRow::registered(1, centre, r.phi, r.error, r.iterations, r.return_status, r.delta_phi_norm));
    tsv::write_field(&outs.file(&tsv_path)?, &field)?;
    let params = serde_json::json!({
        "im1": a.im1, "im2": a.im2, "bin_start": a.bin_start, "bin_stop": a.bin_stop, "phi_file": a.phi_file,
        "phi_file_bin_ratio": a.phi_file_bin_ratio, "mask_file1": a.mask_file1, "margin": margin, "rigid": a.rigid,
        "update_gradient": a.update_gradient, "max_iterations": a.max_iterations, "min_delta_phi": a.min_delta_phi,
        "interpolation_order": a.interpolation_order,
    });
    let mut meta = FieldMeta::for_command("reg", params);
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    parquet::write_field(&outs.file(&parquet_path)?, &field, &meta)?;
    let (t, d) = phi::decompose_phi(&r.phi, &centre, &centre);
    if !crate::say::quiet() {
        println!(
            "returnStatus {} after {} iterations (‖δΦ‖ {:.2e}, error {:.4})\nt (Z Y X): {:.4} {:.4} {:.4}\nr (deg): {:.4} {:.4} {:.4}\nvol strain: {:.5}",
            r.return_status, r.iterations, r.delta_phi_norm, r.error, t[0], t[1], t[2], d.r[0], d.r[1], d.r[2], d.vol
        );
    }
    let mut wrote = vec![tsv_path.clone()];
    if a.png {
        let view = crate::view::render::PairView::new(&im1, &im2, 1)?;
        let (lo, hi) = crate::view::render::default_contrast(&view)?;
        // Centre-relative Φ as the viewer takes it: this result is about the image centre.
        let before = init.unwrap_or_else(phi::identity);
        let names = format!("im1 {}, im2 {}", a.im1.display(), a.im2.display());
        let before_what = if a.phi_file.is_some() { "|im1 − im2(Φ₀x)| with the initial guess (-pf)" } else { "|im1 − im2|, no registration (identity Φ)" };
        let figures = [
            (format!("{prefix}: residual before registration"), before_what.to_string()),
            (format!("{prefix}: residual after registration"), format!("|im1 − im2(Φx)| with the registered Φ (returnStatus {})", r.return_status)),
        ];
        for ((path, p), (title, what)) in png_paths.iter().zip([before, r.phi]).zip(figures) {
            crate::view::plot::residual_figure(&view, &p, (hi - lo) / 2.0, &title, &[what, names.clone()])?.write(&mut outs, path)?;
            wrote.push(path.clone());
        }
    }
    if a.save_deformed_image1 {
        if r.return_status > 0 {
            // spam deforms a 2D image with its Python warp at order 3 (cubic B-spline).
            let order = if two_d { 3 } else { 1 };
            super::deform_image::deform_to(&im1, &r.phi, [centre[0], centre[1], centre[2]], order, &mut outs, &def_path, a.read.progress())?;
            wrote.push(def_path.clone());
        } else {
            outs.release(&def_path)?;
            crate::say::warn(format_args!("not writing the deformed image: returnStatus {} ≤ 0", r.return_status));
        }
    }
    outs.commit()?;
    for p in &wrote {
        crate::note!("wrote {}", p.display());
    }
    a.read.report(&cache);
    Ok(Some(format!(
        "reg {} → {}: returnStatus {} after {} iterations, t (Z Y X) {:.4} {:.4} {:.4}, r (deg) {:.4} {:.4} {:.4} → {}",
        a.im1.display(),
        a.im2.display(),
        r.return_status,
        r.iterations,
        t[0],
        t[1],
        t[2],
        d.r[0],
        d.r[1],
        d.r[2],
        tsv_path.display()
    )))
}
