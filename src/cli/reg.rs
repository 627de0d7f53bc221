//! `dvc-stream reg IM1 IM2`: spam-reg — multiscale registration of two volumes.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::output_names::{open_matching, out_dir, read_registration, stem};
use super::ReadOpts;
use crate::field::parquet::{self, FieldMeta};
use crate::field::{tsv, FieldKind, FieldRow, Layout, PhiField};
use crate::kernels::register::{image_centre, RegisterOptions};
use crate::kernels::gradient::GradientMethod;
use crate::kernels::register_volume::{centre_of_mass, max_value, register_multiscale_with, JournalRow, MultiscaleExtras, MultiscaleOptions};
use crate::phi;
use crate::store::output::{Existing, OutputSet};
use crate::store::Volume;

/// spam's `-gm` values.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum GradientChoice {
    #[value(name = "finite_differences")]
    FiniteDifferences,
    #[value(name = "gaussian")]
    Gaussian,
}

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
    /// Image gradient: finite_differences (NumPy's central differences, the default) or
    /// gaussian (SciPy's Gaussian derivative filter of standard deviation --gaussian-sigma,
    /// nearest-voxel extension, truncated at 4σ), less sensitive to noise [spam: -gm].
    #[arg(long = "gradient-method", value_enum, default_value = "finite_differences")]
    pub gradient_method: GradientChoice,
    /// Standard deviation in voxels of the Gaussian of --gradient-method gaussian [spam: -gs].
    #[arg(long = "gaussian-sigma", default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::values::positive_f64)]
    pub gaussian_sigma: f64,
    /// With --mask-file1: write Φ at the mask's centre of mass (its position in the table is
    /// that centre, its translation the displacement there) instead of at the image centre
    /// [spam: -rmc].
    #[arg(long = "return-phi-mask-centre", alias = "returnPhiMaskCentre")]
    pub return_phi_mask_centre: bool,
    /// Write every iteration of every level (bin, iteration, error, ‖δΦ‖, Φ) as
    /// <prefix>-registration-iterations.tsv, to follow how the registration converged
    /// [spam: -j].
    #[arg(long)]
    pub journal: bool,
    /// spam 0.9.1's shift-DVC: each voxel of both images sampled ±0.25 voxel off its grid
    /// point (a fixed pattern over the 8 corners of a cube, Wantz et al. 2025), against
    /// trilinear interpolation bias at sub-voxel displacements [spam: -shift].
    #[arg(long)]
    pub shift: bool,
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
    // -rmc: the table's position is the centre of mass of the mask's largest label (spam's
    // script takes `centresOfMass(mask)[-1]`); without a mask spam ignores -rmc.
    let mask_centre = match (&mask, a.return_phi_mask_centre) {
        (Some(m), true) => {
            let top = max_value(m)?;
            let n = m.shape().map(|v| v as i64);
            let com = centre_of_mass(m, [0; 3], n, |v| v == top && v != 0.0)?;
            if com.is_none() {
                bail!("{}: the mask is empty; --return-phi-mask-centre (-rmc) needs its centre of mass", a.mask_file1.as_ref().expect("mask given").display());
            }
            com
        }
        (None, true) => {
            crate::say::warn(format_args!("--return-phi-mask-centre (-rmc) without --mask-file1 (-mf1): Φ is at the image centre, as spam"));
            None
        }
        _ => None,
    };
    // Every output is reserved (and checked) before the work starts; all are renamed into
    // place together at the end.
    let dir = out_dir(&a.out.out_dir, &a.im1)?;
    let prefix = a.out.prefix.clone().unwrap_or_else(|| format!("{}-{}", stem(&a.im1), stem(&a.im2)));
    let mut outs = OutputSet::new(Existing::Replace);
    outs.inputs([a.im1.as_path(), a.im2.as_path()].into_iter().chain(a.phi_file.as_deref()).chain(a.mask_file1.as_deref()));
    let tsv_path = dir.join(format!("{prefix}-registration.tsv"));
    let parquet_path = dir.join(format!("{prefix}-registration.parquet"));
    let journal_path = dir.join(format!("{prefix}-registration-iterations.tsv"));
    outs.file(&tsv_path)?;
    outs.file(&parquet_path)?;
    if a.journal {
        outs.file(&journal_path)?;
    }
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
            gradient: match a.gradient_method {
                GradientChoice::FiniteDifferences => GradientMethod::FiniteDifferences,
                GradientChoice::Gaussian => GradientMethod::Gaussian { sigma: a.gaussian_sigma },
            },
            shift: a.shift,
        },
    };
    // (A 2D image is registered in spam's 2-D mode by the same call.)
    let mut extras = MultiscaleExtras { mask_centre: mask_centre.is_some(), journal: a.journal.then(Vec::new) };
    let r = register_multiscale_with(&im1, &im2, mask.as_ref(), init.as_ref(), 1.0, &o, &mut extras)?;
    // The table's Φ is about its position; the pictures and -def take it about the centre.
    let (position, phi_at_centre) = match &mask_centre {
        Some(com) => (*com, phi::move_to(&r.phi, com, &centre)),
        None => (centre, r.phi),
    };
    let mut field = PhiField::new(FieldKind::Registration, Layout::Registration);
    field.push(FieldRow::registered(1, position, r.phi, r.error, r.iterations, r.return_status, r.delta_phi_norm));
    tsv::write_field(&outs.file(&tsv_path)?, &field)?;
    if let Some(rows) = &extras.journal {
        write_journal(&outs.file(&journal_path)?, rows)?;
    }
    let mut params = serde_json::json!({
        "im1": a.im1, "im2": a.im2, "bin_start": a.bin_start, "bin_stop": a.bin_stop, "phi_file": a.phi_file,
        "phi_file_bin_ratio": a.phi_file_bin_ratio, "mask_file1": a.mask_file1, "margin": margin, "rigid": a.rigid,
        "update_gradient": a.update_gradient, "max_iterations": a.max_iterations, "min_delta_phi": a.min_delta_phi,
        "interpolation_order": a.interpolation_order,
    });
    // Keys of the newer options only when used, so that older runs' metadata is unchanged.
    if a.gradient_method == GradientChoice::Gaussian {
        params["gradient_method"] = "gaussian".into();
        params["gaussian_sigma"] = a.gaussian_sigma.into();
    }
    if mask_centre.is_some() {
        params["return_phi_mask_centre"] = true.into();
    }
    if a.shift {
        params["shift"] = true.into();
    }
    let mut meta = FieldMeta::for_command("reg", params);
    meta.image_shapes = vec![im1.shape(), im2.shape()];
    meta.voxel_size = im1.voxel_size();
    parquet::write_field(&outs.file(&parquet_path)?, &field, &meta)?;
    let (t, d) = phi::decompose_phi(&r.phi, &position, &position);
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
        for ((path, p), (title, what)) in png_paths.iter().zip([before, phi_at_centre]).zip(figures) {
            crate::view::plot::residual_figure(&view, &p, (hi - lo) / 2.0, &title, &[what, names.clone()])?.write(&mut outs, path)?;
            wrote.push(path.clone());
        }
    }
    if a.save_deformed_image1 {
        if r.return_status.code() > 0 {
            // spam deforms a 2D image with its Python warp at order 3 (cubic B-spline).
            let order = if two_d { 3 } else { 1 };
            super::deform_image::deform_to(&im1, &phi_at_centre, [centre[0], centre[1], centre[2]], order, &mut outs, &def_path, a.read.progress())?;
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

/// spam's `-j` journal as a table: one row per evaluated Φ of every level, Φ about the
/// level's image centre with its translation in that level's voxels.
fn write_journal(path: &std::path::Path, rows: &[JournalRow]) -> Result<()> {
    use std::fmt::Write as _;
    let mut text = String::from("bin\titeration\terror\tdeltaPhiNorm\tFzz\tFzy\tFzx\tZdisp\tFyz\tFyy\tFyx\tYdisp\tFxz\tFxy\tFxx\tXdisp\n");
    for r in rows {
        write!(text, "{}\t{}\t{:.9e}\t{:.9e}", r.bin, r.iteration, r.error, r.delta_phi_norm).expect("writes to a String");
        for i in 0..3 {
            for j in 0..4 {
                write!(text, "\t{:.9}", r.phi[(i, j)]).expect("writes to a String");
            }
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
