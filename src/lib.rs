//! dvc-stream: digital volume correlation on CT volumes larger than RAM.
//!
//! Data flows TIFF → [`store`] (Zarr/TIFF volumes read a box at a time through one
//! byte-bounded chunk cache) → [`kernels`] (interpolation, gradients, registration) →
//! [`field`] (Φ tables as Parquet, spam TSV and VTK). [`phi`] is the deformation algebra all
//! of them share; [`synth`] makes exact test volumes; [`cli`] holds one thin file per
//! subcommand. See ARCHITECTURE.md.

pub mod cli;
pub mod field;
pub mod kernels;
pub mod phi;
pub mod progress;
pub mod store;
pub mod synth;
