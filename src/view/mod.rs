//! Seeing the data: slices of a pair of volumes rendered as PNG from the store, figures of
//! result tables, and the small local web server of `dvc-stream ereg` (registration by eye)
//! and `dvc-stream view` (a run's table over its images) that shows them.
//!
//! Why a web page and not a window: users of a command-line tool on a remote cluster reach a
//! page through an SSH tunnel; a Qt window (spam's ereg) needs a display. Slices are rendered
//! server-side from the chunk cache, so a volume larger than RAM works, and the page holds no
//! image data of its own. Every asset is compiled into the binary.

pub mod figure;
pub mod plot;
pub mod render;
pub mod server;
pub mod slices;
pub mod viewer;
