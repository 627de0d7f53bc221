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
/// 32 MiB from the heap, where they are reused quickly) and a fixed trim threshold make it
/// steady: see BENCHMARKS.md. The trim threshold is 16 MiB, above the few MiB zarrs allocates
/// and frees for every chunk it decodes (the compressed bytes, the decoded ones): at 1 MiB
/// each decode gave those pages back and faulted them in again (a 512³ ldic run with an 8 MiB
/// budget: 140 000 minor faults for 240 decodes, 3.2 million for 2 700; now 14 000 and 41 000),
/// while at most 16 MiB of free heap top per thread's arena stays held.
pub fn init_process() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}
