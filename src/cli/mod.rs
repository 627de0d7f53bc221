//! The command line: one small file per subcommand, each a thin layer over the library.
//!
//! Errors from every subcommand come back here and are printed once, on one line, with the
//! file and the problem, and the process exits with status 2.

pub mod convert_field;
pub mod ddic;
pub mod deform_image;
pub mod demo;
pub mod ereg;
pub mod filter_phi_field;
pub mod grid_plan;
pub mod labels;
pub mod ldic;
pub mod merge;
pub mod output_names;
pub mod pass_phi_field;
pub mod pixel_search;
pub mod plot;
pub mod pixel_search_propagate;
pub mod reg;
pub mod regular_strain;
pub mod solver;
pub mod spam_flags;
pub mod stats;
pub mod synth;
pub mod values;
pub mod view;

use std::ffi::OsString;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::store::cache::{default_cache_bytes, parse_bytes, ChunkCache};

#[derive(Parser, Debug)]
#[command(name = "dvc-stream", version, propagate_version = true, about = "Digital volume correlation on CT volumes larger than RAM (spam-compatible files)")]
pub struct Cli {
    /// No progress and no notes: only errors, warnings and the final one-line summary, on stderr.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Accepted for spam's `-lazy` (tifffile.memmap) and changes nothing: every read here is
    /// already lazy, volumes being read box by box through the chunk cache, never whole
    /// [spam: -lazy].
    #[arg(long = "lazy-load", global = true)]
    pub lazy_load: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The one line a command ends with on stderr, `--quiet` or not (None: the command's output
/// is on stdout, as for `completions`).
pub type Summary = Option<String>;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make a synthetic pair, run the pipeline on it and report the error against the truth.
    Demo(demo::DemoArgs),
    /// Write an exact synthetic pair (speckle texture, known deformation) and its true Φ field.
    Synth(synth::SynthArgs),
    /// Shape, type, chunks, pyramid levels and grey-level statistics of a volume, read box by box.
    Stats(stats::StatsArgs),
    /// Convert a Φ field between spam TSV, Parquet and VTK.
    ConvertField(convert_field::ConvertFieldArgs),
    /// Multiscale registration of two volumes (spam-reg; spam's -bb, -pf, ... spellings work).
    Reg(reg::RegArgs),
    /// Deform a volume by a registration Φ or a measured field, streamed slab by slab (spam-deformImage).
    DeformImage(deform_image::DeformImageArgs),
    /// Local DVC on a regular grid, streamed through the chunk cache (spam-ldic).
    Ldic(ldic::LdicArgs),
    /// Integer displacement of every grid node or label by NCC search (spam-pixelSearch).
    PixelSearch(pixel_search::PixelSearchArgs),
    /// Pixel search spreading out from one known point, each guess from its neighbours
    /// (spam-pixelSearchPropagate).
    PixelSearchPropagate(pixel_search_propagate::PropagateArgs),
    /// Strain components from a displacement field: Q8 cells, Geers or raw (spam-regularStrain).
    RegularStrain(regular_strain::RegularStrainArgs),
    /// Discrete DVC: one Φ per labelled grain, streamed through the chunk cache (spam-ddic).
    Ddic(ddic::DdicArgs),
    /// Each label's bounding box, volume and centre of mass, as Parquet and TSV.
    Labels(labels::LabelsArgs),
    /// Carry a registration or a field onto a new grid or label centres (spam-passPhiField).
    ///
    /// Unlike spam, each neighbour's Φ is moved to the target point before the neighbours are
    /// averaged, so an affine field is carried exactly; on ordinary fields results differ from
    /// spam-passPhiField by up to about 1.7 voxels where F ≠ I (docs/spam-differences.md, row 15).
    PassPhiField(pass_phi_field::PassPhiFieldArgs),
    /// Find bad points of a field and correct them, or median-filter it (spam-filterPhiField).
    FilterPhiField(filter_phi_field::FilterPhiFieldArgs),
    /// Put the parts of a sharded run (--shard, mpirun, srun) together as one table.
    Merge(merge::MergeArgs),
    /// Eye registration in a browser: slices of both images and their difference under a
    /// Φ set by hand, saved as a registration for -pf (spam-ereg).
    Ereg(ereg::EregArgs),
    /// A run's table over its images in the browser: colour maps, arrows, status, residual, rows.
    View(view::ViewArgs),
    /// PNG pictures of a result table: colour maps on grid slices, arrows for labels, histograms.
    Plot(plot::PlotArgs),
    /// Shell completions on stdout (e.g. `dvc-stream completions bash > /etc/bash_completion.d/dvc-stream`).
    Completions(CompletionsArgs),
    /// The manual page (roff) on stdout, or one page per command into a folder (`man -l` reads them).
    Man(ManArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write dvc-stream.1 and dvc-stream-COMMAND.1 for every command into this folder
    /// instead of printing the main page.
    #[arg(long = "out-dir", value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

/// `dvc-stream completions SHELL`: clap_complete's script for the whole command tree.
fn completions(a: CompletionsArgs) -> anyhow::Result<Summary> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "dvc-stream", &mut std::io::stdout());
    Ok(None)
}

/// `dvc-stream man`: clap_mangen's pages, the main one on stdout or all into a folder.
fn man(a: ManArgs) -> anyhow::Result<Summary> {
    use anyhow::Context;
    use clap::CommandFactory;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building names each subcommand "dvc-stream-NAME", the page it gets.
    cmd.build();
    match a.out_dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).context("cannot write the manual page").map(|()| None),
        Some(dir) => {
            // The pages are one output set: written under .partial names, renamed together.
            let mut outs = crate::store::output::OutputSet::new(crate::store::output::Existing::Replace);
            let pages = std::iter::once(cmd.clone()).chain(cmd.get_subcommands().cloned());
            for page in pages {
                let man = clap_mangen::Man::new(page);
                let mut roff = Vec::new();
                man.render(&mut roff).context("cannot render a manual page")?;
                let path = dir.join(man.get_filename());
                let partial = outs.file(&path)?;
                std::fs::write(&partial, &roff).with_context(|| format!("{}: cannot write", path.display()))?;
            }
            let n = outs.commit()?.len();
            Ok(Some(format!("man: {n} pages → {}", dir.display())))
        }
    }
}

/// Options shared by commands that read volumes.
#[derive(Args, Debug, Clone)]
pub struct ReadOpts {
    /// Budget of the decoded-chunk cache (e.g. 256M, 2G). Default: a quarter of RAM, at most 4 GiB.
    #[arg(long = "cache-bytes", value_name = "SIZE")]
    pub cache_bytes: Option<String>,
    /// Print chunk-cache hits, misses and bytes read at the end.
    #[arg(long)]
    pub stats: bool,
    /// Seconds between two progress lines on stderr when it is not a terminal (batch logs).
    #[arg(long = "progress-interval", value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub progress_interval: f64,
    #[command(flatten)]
    pub threads: Threads,
}

/// `-np`, shared by every command that computes in parallel.
#[derive(Args, Debug, Clone)]
pub struct Threads {
    /// Worker threads [spam: -np]; default: every core.
    #[arg(long = "number-of-processes", value_name = "N")]
    pub number_of_processes: Option<usize>,
}

impl Threads {
    /// Applies `--number-of-processes` to the worker pool.
    pub fn apply(&self) {
        set_threads(self.number_of_processes);
    }
}

/// How a correlation is split and resumed (ldic, pixel-search, ddic).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Compute only shard K of N (0 ≤ K < N) and write it as `<output>.parts/part-K-of-N.parquet`
    /// for `dvc-stream merge`. Under mpirun, srun or a Slurm job array, K and N come from the
    /// launcher.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Continue an interrupted run from its checkpoint (`<output>.run/`), computing only
    /// what it had not finished; any change of the job (options, grid, guess, inputs) is refused.
    #[arg(long)]
    pub resume: bool,
    /// Seconds between checkpoints of finished rows.
    #[arg(long = "checkpoint-seconds", default_value_t = 30.0, value_name = "S", value_parser = values::non_negative_f64)]
    pub checkpoint_seconds: f64,
}

impl RunArgs {
    /// The shard (from --shard, else from mpirun's, srun's or a Slurm array's environment),
    /// --resume and the checkpoint interval.
    pub fn resolve(&self) -> anyhow::Result<crate::distribute::RunOptions> {
        use crate::distribute::Shard;
        let shard = match &self.shard {
            Some(s) => Some(Shard::parse(s).map_err(|e| anyhow::anyhow!("--shard {e}"))?),
            None => Shard::from_env()?,
        };
        Ok(crate::distribute::RunOptions { shard, resume: self.resume, checkpoint_every: std::time::Duration::from_secs_f64(self.checkpoint_seconds) })
    }
}

/// Where spam-style commands write their results.
#[derive(Args, Debug, Clone)]
pub struct OutputOpts {
    /// Output folder [spam: -od]; default: beside the first input (the first image, or the field
    /// for the field tools), as spam does.
    #[arg(long = "out-dir")]
    pub out_dir: Option<std::path::PathBuf>,
    /// Output prefix [spam: -pre]; default: named from the inputs, as spam does.
    #[arg(long)]
    pub prefix: Option<String>,
}

/// The files a field is written to beside its Parquet table (always written).
#[derive(Args, Debug, Clone)]
pub struct FieldFiles {
    /// Also write a legacy VTK file [spam: -vtk].
    #[arg(long = "vtk-out")]
    pub vtk_out: bool,
    /// Also write TIFFs of the columns on the node grid (grid fields) [spam: -tif].
    #[arg(long = "tiff-out")]
    pub tiff_out: bool,
    /// Do not write the spam TSV (the Parquet table is always written) [spam: -notsv].
    #[arg(long = "no-tsv")]
    pub no_tsv: bool,
    /// Also write PNG quicklooks beside the table (`dvc-stream plot`'s defaults: a middle Z
    /// slice of each displacement and the status, arrows for labels).
    #[arg(long)]
    pub png: bool,
}

impl FieldFiles {
    /// The quicklook of a finished table (an output of `outs`), when --png asked for one.
    pub fn quicklook(&self, outs: &mut crate::store::output::OutputSet, table: &std::path::Path) -> anyhow::Result<()> {
        if self.png {
            for p in crate::view::plot::quicklook(outs, table)? {
                crate::note!("wrote {}", p.display());
            }
        }
        Ok(())
    }
}

/// A positive, finite number of seconds.
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

/// `-o`: 1 = trilinear (spam's C kernel), 3 = cubic B-spline (spam's Python path).
pub fn parse_order(s: &str) -> Result<usize, String> {
    match s {
        "1" => Ok(1),
        "3" => Ok(3),
        other => Err(format!("'{other}' is not an interpolation order (use 1 for trilinear or 3 for cubic B-spline)")),
    }
}

impl ReadOpts {
    /// Applies `--number-of-processes` to the worker pool and returns the worker count.
    pub fn threads(&self) -> usize {
        self.threads.apply();
        self.threads.number_of_processes.filter(|&n| n > 0).unwrap_or_else(rayon::current_num_threads)
    }
    pub fn cache(&self) -> anyhow::Result<Arc<ChunkCache>> {
        let bytes = match &self.cache_bytes {
            Some(s) => parse_bytes(s).map_err(|e| anyhow::anyhow!("--cache-bytes: {e}"))?,
            None => default_cache_bytes(),
        };
        Ok(ChunkCache::new(bytes))
    }
    pub fn report(&self, cache: &ChunkCache) {
        if self.stats {
            eprintln!("{}", cache.stats());
        }
    }
    /// Whether to show progress; also sets how often it is printed off a terminal.
    pub fn progress(&self) -> bool {
        crate::progress::set_interval(self.progress_interval);
        !crate::say::quiet()
    }
}

/// Runs the command line and returns the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(spam_flags::translate(args)) {
        Ok(c) => c,
        // A refused value is one line, naming the option and why, like every other error.
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue) => {
            let text = e.render().to_string();
            eprintln!("dvc-stream: {}", text.lines().next().unwrap_or_default());
            return 2;
        }
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    crate::say::set_quiet(cli.quiet);
    match execute(cli.command) {
        Ok(summary) => {
            if let Some(line) = summary {
                eprintln!("{line}");
            }
            0
        }
        Err(e) => {
            eprintln!("dvc-stream: error: {}", one_line(&e));
            2
        }
    }
}

/// Runs one parsed command and returns its summary line, printing nothing of its own (the
/// caller prints the summary or the error: `run`, or `demo` for the steps it chains).
pub fn execute(command: Command) -> anyhow::Result<Summary> {
    match command {
        Command::Demo(a) => demo::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Stats(a) => stats::run(a),
        Command::ConvertField(a) => convert_field::run(a),
        Command::Reg(a) => reg::run(a),
        Command::DeformImage(a) => deform_image::run(a),
        Command::Ldic(a) => ldic::run(a),
        Command::PixelSearch(a) => pixel_search::run(a),
        Command::PixelSearchPropagate(a) => pixel_search_propagate::run(a),
        Command::RegularStrain(a) => regular_strain::run(a),
        Command::Ddic(a) => ddic::run(a),
        Command::Labels(a) => labels::run(a),
        Command::PassPhiField(a) => pass_phi_field::run(a),
        Command::FilterPhiField(a) => filter_phi_field::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Ereg(a) => ereg::run(a),
        Command::View(a) => view::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Completions(a) => completions(a),
        Command::Man(a) => man(a),
    }
}

/// Sets the number of worker threads (spam's `-np`); by default rayon uses every core.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n.filter(|&n| n > 0) {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
}

/// An error chain on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// Every option and argument of every command says what it is in `--help`.
    #[test]
    fn every_flag_has_help_text() {
        let cmd = super::Cli::command();
        let mut missing = Vec::new();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{} --{}", sub.get_name(), arg.get_long().unwrap_or(id)));
                }
            }
        }
        assert!(missing.is_empty(), "flags without help text: {missing:?}");
    }

    /// `--version` works on every subcommand, as on the top command.
    #[test]
    fn every_subcommand_has_version() {
        let cmd = super::Cli::command();
        for sub in cmd.get_subcommands() {
            let name = sub.get_name().to_string();
            let e = super::Cli::try_parse_from(["dvc-stream", &name, "--version"]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion, "{name} --version");
        }
    }
}
