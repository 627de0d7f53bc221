//! `dvc-stream reg IM1 IM2`: spam-reg — multiscale registration of two volumes.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::output_names::{out_dir_path, stem};
use super::ReadOpts;
use crate::kernels::gradient::GradientMethod;
use crate::kernels::register::RegisterOptions;
use crate::kernels::register_volume::MultiscaleOptions;
use crate::run::reg::{RegJob, RegOutcome};

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

/// The job the flags describe.
pub fn job(a: &RegArgs) -> Result<RegJob> {
    let dir = out_dir_path(&a.out.out_dir, &a.im1)?;
    let prefix = a.out.prefix.clone().unwrap_or_else(|| format!("{}-{}", stem(&a.im1), stem(&a.im2)));
    let mut job = RegJob::new(&a.im1, &a.im2, &dir, &prefix);
    job.phi_file = a.phi_file.clone();
    job.phi_file_bin_ratio = a.phi_file_bin_ratio;
    job.mask_file1 = a.mask_file1.clone();
    job.return_phi_mask_centre = a.return_phi_mask_centre;
    job.journal = a.journal;
    job.png = a.png;
    job.deformed_image = a.save_deformed_image1.then(|| dir.join(format!("{}-reg-def.tif", stem(&a.im1))));
    let margin = match (&a.margin3, a.margin) {
        (Some(m), _) => Some([m[0], m[1], m[2]]),
        (None, Some(m)) => Some([m.max(0.0) as usize; 3]),
        (None, None) => None,
    };
    job.options = MultiscaleOptions {
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
    Ok(job)
}

pub fn run(a: RegArgs) -> Result<super::Summary> {
    a.read.threads();
    let cache = a.read.cache()?;
    let job = job(&a)?;
    let RegOutcome { result: r, translation: t, decomposition: d, wrote, .. } = crate::run::reg::run(&job, &cache, a.read.progress())?;
    if !crate::say::quiet() {
        println!(
            "returnStatus {} after {} iterations (‖δΦ‖ {:.2e}, error {:.4})\nt (Z Y X): {:.4} {:.4} {:.4}\nr (deg): {:.4} {:.4} {:.4}\nvol strain: {:.5}",
            r.return_status, r.iterations, r.delta_phi_norm, r.error, t[0], t[1], t[2], d.r[0], d.r[1], d.r[2], d.vol
        );
    }
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
        job.tsv_path().display()
    )))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Reg {
        #[command(flatten)]
        args: super::RegArgs,
    }

    /// `reg IM1 IM2` with no option is the library's default job: the two say the same defaults.
    #[test]
    fn default_flags_are_the_default_job() {
        let a = Reg::parse_from(["reg", "a.tif", "b.tif", "--out-dir", "/tmp"]).args;
        let job = super::job(&a).unwrap();
        let want = crate::run::reg::RegJob::new("a.tif".as_ref(), "b.tif".as_ref(), "/tmp".as_ref(), "a-b");
        assert_eq!(serde_json::to_value(&job).unwrap(), serde_json::to_value(&want).unwrap());
    }
}
