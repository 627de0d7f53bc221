//! The library under the commands: one module per spam script, each taking a resolved job (a
//! plain, serialisable description of what the run will do, built once from the arguments)
//! and returning its result. `cli` only turns arguments into jobs, calls these and prints;
//! a script or a test calls them directly.

pub mod ddic;
pub mod ddic_debug;
pub mod deform_image;
pub mod filter_phi_field;
pub mod guesses;
pub mod ldic;
pub mod merge;
pub mod pipeline;
pub mod pixel_search;
pub mod propagate;
pub mod reg;
pub mod regular_strain;
pub mod pass_phi_field;
