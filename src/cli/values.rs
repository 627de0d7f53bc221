//! Parsers for numeric options, shared by every command, so a value that would make a run
//! compute garbage (NaN, a zero bin ratio, a binning that is not a power of 2) is refused
//! where it is typed, with one line, instead of being carried into the results.

/// A finite number > 0 (bin ratios, radii, distances).
pub fn positive_f64(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("'{s}' must be a finite number above 0"));
    }
    Ok(v)
}

/// A finite number ≥ 0 (convergence thresholds, noise, seconds).
pub fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("'{s}' must be a finite number ≥ 0"));
    }
    Ok(v)
}

/// A number that is not NaN (thresholds, where ±inf means "no threshold").
pub fn threshold_f64(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v.is_nan() {
        return Err(format!("'{s}' is not a number"));
    }
    Ok(v)
}

/// A fraction in [0, 1] (mask coverage).
pub fn fraction(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("'{s}' must be a fraction between 0 and 1"));
    }
    Ok(v)
}

/// A whole number ≥ 1 (node spacings, neighbour counts, chunk sizes).
pub fn positive_usize(s: &str) -> Result<usize, String> {
    let v: usize = s.trim().parse().map_err(|_| format!("'{s}' is not a whole number ≥ 1"))?;
    if v == 0 {
        return Err(format!("'{s}' must be at least 1"));
    }
    Ok(v)
}

/// A binning factor: a power of 2 (1, 2, 4, …), as the multiscale pyramid halves the images.
pub fn power_of_two(s: &str) -> Result<usize, String> {
    let v: usize = s.trim().parse().map_err(|_| format!("'{s}' is not a whole number"))?;
    if !v.is_power_of_two() {
        return Err(format!("'{s}' is not a power of 2 (1, 2, 4, 8, …)"));
    }
    Ok(v)
}

fn number(s: &str) -> Result<f64, String> {
    s.trim().parse::<f64>().map_err(|_| format!("'{s}' is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_and_accepted_values() {
        for bad in ["nan", "0", "-1", "inf", "x"] {
            assert!(positive_f64(bad).is_err(), "{bad}");
        }
        assert_eq!(positive_f64("0.5"), Ok(0.5));
        assert!(non_negative_f64("nan").is_err() && non_negative_f64("-0.1").is_err());
        assert_eq!(non_negative_f64("0"), Ok(0.0));
        assert!(threshold_f64("nan").is_err());
        assert_eq!(threshold_f64("-inf"), Ok(f64::NEG_INFINITY));
        assert!(fraction("1.5").is_err() && fraction("nan").is_err());
        assert!(positive_usize("0").is_err());
        for bad in ["0", "3", "6"] {
            assert!(power_of_two(bad).is_err(), "{bad}");
        }
        assert_eq!(power_of_two("8"), Ok(8));
    }
}
