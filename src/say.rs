//! What dvc-stream says on stderr besides its results and errors. One switch for every
//! command, so that `--quiet` means the same everywhere: errors, warnings and the final
//! one-line summary stay; notes ("wrote …", the status table, what a step found) and
//! progress go.
//!
//! A batch script reads the summary line (what was done, how much, where it went) and
//! nothing else; a person at a terminal also gets the notes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets `--quiet` for the rest of the process (the command line does, once).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` was given: no notes and no progress.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A line on stderr that `--quiet` silences.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::say::quiet() {
            eprintln!($($arg)*);
        }
    };
}

/// A warning: kept under `--quiet`, since it says a result may not be what was asked.
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("warning: {message}");
}

/// How much a correlation did, for its summary: "N points in S s (R points/s with T threads)";
/// after `--resume`, the rows taken from the checkpoint are named and the rate is that of the
/// points computed in this run only.
pub fn work(total: usize, replayed: usize, secs: f64, threads: usize, unit: &str) -> String {
    let computed = total.saturating_sub(replayed);
    let rate = computed as f64 / secs.max(1e-9);
    if replayed == 0 {
        format!("{total} {unit} in {secs:.1} s ({rate:.0} {unit}/s with {threads} threads)")
    } else {
        format!("{total} {unit} ({replayed} from the checkpoint) in {secs:.1} s ({rate:.0} {unit}/s computed with {threads} threads)")
    }
}

/// The rows per return status, highest first, for a summary line: "2: 950, 1: 30, -5: 20".
pub fn statuses(counts: &BTreeMap<crate::field::Status, usize>) -> String {
    counts.iter().rev().map(|(s, c)| format!("{s}: {c}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    /// After --resume the rate counts only the points computed in this run.
    #[test]
    fn work_names_the_checkpoint_rows_and_rates_only_the_rest() {
        assert_eq!(super::work(100, 0, 2.0, 2, "points"), "100 points in 2.0 s (50 points/s with 2 threads)");
        assert_eq!(super::work(100, 90, 2.0, 2, "points"), "100 points (90 from the checkpoint) in 2.0 s (5 points/s computed with 2 threads)");
    }

    #[test]
    fn statuses_highest_first() {
        use crate::field::Status;
        let counts = [(Status::Converged, 950), (Status::Skipped, 20), (Status::IterationLimit, 30)].into_iter().collect();
        assert_eq!(super::statuses(&counts), "2: 950, 1: 30, -5: 20");
    }
}
