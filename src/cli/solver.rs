//! The Gauss–Newton options ldic and ddic share (`-it`, `-dp`, `-o`, `-ug`), declared once.
//! Each tool keeps its own default interpolation order and its own words for the help
//! (a [`SolverDefaults`] type), so `dvc-stream ldic --help` still explains why its `-o`
//! default is 3 where spam's is 1.

use std::marker::PhantomData;

use clap::Args;

/// A tool's defaults and help texts for [`SolverArgs`].
pub trait SolverDefaults: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The default `-o`, as text: clap's `default_value_t` keeps one value for every
    /// instance of a generic struct, `default_value` one per instance.
    const ORDER: &'static str;
    const ORDER_HELP: &'static str;
    const MAX_ITERATIONS_HELP: &'static str;
    const MIN_DELTA_PHI_HELP: &'static str;
}

#[derive(Args, Debug, Clone)]
pub struct SolverArgs<D: SolverDefaults> {
    #[arg(long = "max-iterations", default_value_t = 50, help = D::MAX_ITERATIONS_HELP)]
    pub max_iterations: usize,
    #[arg(long = "min-delta-phi", default_value_t = 0.001, value_parser = super::values::non_negative_f64, help = D::MIN_DELTA_PHI_HELP)]
    pub min_delta_phi: f64,
    #[arg(long = "interpolation-order", default_value = D::ORDER, value_parser = super::parse_order, help = D::ORDER_HELP)]
    pub interpolation_order: usize,
    /// Recompute the gradient of the deformed image at each iteration [spam: -ug].
    #[arg(long = "update-gradient")]
    pub update_gradient: bool,
    #[arg(skip)]
    defaults: PhantomData<D>,
}

/// spam-ldic's: windows, cubic by default.
#[derive(Clone, Debug)]
pub struct LdicSolver;

impl SolverDefaults for LdicSolver {
    const ORDER: &'static str = "3";
    const ORDER_HELP: &'static str = "3 = cubic B-spline (the default: a ten times smaller error than trilinear on sub-voxel motion, at about half its speed in a release build: bench/peers.sh), 1 = trilinear, spam's default, which reproduces spam-ldic's results [spam: -o; spam's default is 1]";
    const MAX_ITERATIONS_HELP: &'static str = "Most Gauss–Newton iterations per window [spam: -it]";
    const MIN_DELTA_PHI_HELP: &'static str = "Convergence: stop when the norm of the change of Φ falls below this [spam: -dp]";
}

/// spam-ddic's: labels, trilinear as spam.
#[derive(Clone, Debug)]
pub struct DdicSolver;

impl SolverDefaults for DdicSolver {
    const ORDER: &'static str = "1";
    const ORDER_HELP: &'static str = "1 = trilinear (spam's), 3 = cubic B-spline [spam: -o]";
    const MAX_ITERATIONS_HELP: &'static str = "Maximum iterations per label [spam: -it, -lci]";
    const MIN_DELTA_PHI_HELP: &'static str = "Convergence threshold on ‖δΦ‖ [spam: -dp, -lcp]";
}
