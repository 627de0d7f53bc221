//! spam's return status, typed: the one column every Φ table carries that tells what became of
//! a point (spam-compat.md §3.2 and the per-script table of §2.2).
//!
//! Kernels return a [`Status`], fields hold one per row, and files keep spam's integer codes
//! exactly as before (TSV `%.7f`, Parquet int32, VTK and TIFF numbers). The enum holds every
//! code spam 0.9.1's scripts write; −6 is documented by spam but never produced, and no
//! other code exists, so a file holding anything else (−6, 3, 1.5, NaN) is refused when it is
//! read, with the file, the row and the value named, rather than carried along as a number no
//! command knows what to do with.

use std::fmt;

/// What became of a point: spam's `returnStatus`, ordered as its integer code (so
/// `--return-status-threshold` comparisons are comparisons of codes).
/// The discriminants are the codes, so even an `as` cast gives spam's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    /// 2: the Gauss–Newton loop converged (last ‖δΦ‖ ≤ the threshold).
    Converged = 2,
    /// 1: the registration stopped at the iteration limit. The same code means "found" for a
    /// pixel search (its only success) and "corrected" or "interpolated" for filter-phi-field
    /// and pass-phi-field (see [`Status::FOUND`]).
    IterationLimit = 1,
    /// 0: not computed: the loop never ran, the background label 0, an ereg guess.
    NotRun = 0,
    /// −1: the error grew by more than 25 % after half the iterations.
    Diverged = -1,
    /// −2: the Gauss–Newton matrix M is singular (a flat window).
    SingularMatrix = -2,
    /// −3: det F left [0.2, 3].
    VolumeChange = -3,
    /// −4: the updated Φ is singular.
    SingularPhi = -4,
    /// −5: skipped by the script: grey thresholds, mask coverage, an empty window, a label
    /// too small; a pixel search that found nothing.
    Skipped = -5,
    /// −7: nothing to start from: a non-finite guess, a missing label, any ddic extraction
    /// failure; pass-phi-field's points with nothing to interpolate from.
    NoGuess = -7,
}

/// Every status, lowest code first.
const ALL: [Status; 9] = [
    Status::NoGuess,
    Status::Skipped,
    Status::SingularPhi,
    Status::VolumeChange,
    Status::SingularMatrix,
    Status::Diverged,
    Status::NotRun,
    Status::IterationLimit,
    Status::Converged,
];

impl Status {
    /// A pixel search's success, a corrected or passed point: code 1.
    pub const FOUND: Status = Status::IterationLimit;

    /// spam's integer code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The status of an integer code, if spam has one.
    pub fn from_code(code: i64) -> Option<Status> {
        ALL.into_iter().find(|s| i64::from(s.code()) == code)
    }

    /// The status of a number read from a file (`2.0000000` in a TSV, a VTK float), if it is
    /// exactly one of spam's codes.
    pub fn from_value(v: f64) -> Option<Status> {
        (v.fract() == 0.0 && v.abs() <= 16.0).then(|| Status::from_code(v as i64)).flatten()
    }

    /// Reads a status from row `row` (1-based, as an editor shows it) of `path`, refusing a
    /// value that is not one of spam's codes.
    pub fn read(v: f64, path: &std::path::Path, row: usize) -> anyhow::Result<Status> {
        Status::from_value(v).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: row {row}: returnStatus {v} is not one of spam's return statuses (2, 1, 0, -1, -2, -3, -4, -5, -7)",
                path.display()
            )
        })
    }

    /// The code as a float, as TSV and VTK files print it.
    pub fn value(self) -> f64 {
        f64::from(self.code())
    }

    /// Whether the code is at least `threshold` (spam's `-rst`: points below are not used).
    pub fn at_least(self, threshold: i64) -> bool {
        i64::from(self.code()) >= threshold
    }

    /// The statuses spam-ldic `-skp` computes again: those a new registration may change
    /// (−3, −2, −1, 1); converged, skipped and guess-less points keep their row.
    pub fn worth_retrying(self) -> bool {
        matches!(self, Status::VolumeChange | Status::SingularMatrix | Status::Diverged | Status::IterationLimit)
    }
}

impl PartialOrd for Status {
    fn partial_cmp(&self, other: &Status) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Status {
    fn cmp(&self, other: &Status) -> std::cmp::Ordering {
        self.code().cmp(&other.code())
    }
}

/// The integer code, as spam prints it in messages ("returnStatus -5"); width and alignment
/// apply as to the number.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.code(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_order_as_numbers() {
        for s in ALL {
            assert_eq!(Status::from_code(s.code().into()), Some(s));
            assert_eq!(Status::from_value(s.value()), Some(s));
        }
        assert!(ALL.windows(2).all(|w| w[0] < w[1] && w[0].code() < w[1].code()));
        assert_eq!(Status::Skipped.to_string(), "-5");
        assert_eq!(format!("{:>4}", Status::Converged), "   2");
    }

    #[test]
    fn values_spam_never_writes_are_refused_with_the_file_and_row() {
        for v in [-6.0, 3.0, 1.5, f64::NAN, f64::INFINITY, -1e300] {
            assert_eq!(Status::from_value(v), None, "{v}");
        }
        let e = Status::read(-6.0, std::path::Path::new("f.tsv"), 4).unwrap_err().to_string();
        assert!(e.starts_with("f.tsv: row 4: returnStatus -6 is not"), "{e}");
    }

    #[test]
    fn thresholds_compare_codes() {
        assert!(Status::SingularPhi.at_least(-4) && !Status::Skipped.at_least(-4));
        assert!(Status::Converged.at_least(2) && !Status::FOUND.at_least(2));
        let retried: Vec<i32> = ALL.into_iter().filter(|s| s.worth_retrying()).map(Status::code).collect();
        assert_eq!(retried, [-3, -2, -1, 1]);
    }
}
