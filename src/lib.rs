//! dvc-stream: digital volume correlation on CT volumes larger than RAM.
//!
//! Data flows TIFF → [`store`] (Zarr/TIFF volumes read a box at a time through one
//! byte-bounded chunk cache) → [`kernels`] (interpolation, gradients, registration) →
//! [`field`] (Φ tables as Parquet, spam TSV and VTK). [`phi`] is the deformation algebra all
//! of them share; [`synth`] makes exact test volumes; [`cli`] holds one thin file per
//! subcommand. See ARCHITECTURE.md.

pub mod cli;
pub mod distribute;
pub mod field;
pub mod kernels;
pub mod label;
pub mod phi;
pub mod progress;
pub mod run;
pub mod say;
pub mod scheduler;
pub mod store;
pub mod synth;
pub mod view;

/// Process-wide settings every binary applies first.
///
/// glibc's malloc adapts its mmap threshold to freed blocks, and then chunk-sized buffers
/// move between mmap and its heaps from one run to the next, so peak memory above the cache
/// budget varied by tens of MiB between identical runs. A fixed threshold (buffers up to
/// 32 MiB from the heap, where they are reused quickly) and a fixed trim threshold (freed heap
/// tops go back to the system) make it steady: see BENCHMARKS.md.
pub fn init_process() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}
