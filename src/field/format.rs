//! Number formatting exactly as spam's files print numbers.
//!
//! TSVs use C `printf("%.7f")` (NumPy `savetxt`): `nan`, `inf`, `-inf`, `-0.0000000`.
//! VTK files use Python's `str()` of a float64: the shortest repr that round-trips, with
//! Python's switch to exponent notation (`1e-05`, `1.5e+16`).

use std::path::Path;

/// C's `%.7f`.
pub fn c_fixed7(v: f64) -> String {
    let mut s = String::with_capacity(16);
    push_c_fixed7(&mut s, v);
    s
}

/// Appends C's `%.7f` of v. Fields of millions of rows are written this way, so the common
/// case is done with integer arithmetic: v·10⁷ rounded, unless it lies so close to a
/// rounding tie that the f64 product cannot decide, where exact formatting takes over.
pub fn push_c_fixed7(s: &mut String, v: f64) {
    use std::fmt::Write as _;
    if v.is_nan() {
        s.push_str("nan");
        return;
    }
    if v.is_infinite() {
        s.push_str(if v > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let p = (v * 1e7).abs();
    if p < 1e14 {
        let fl = p.floor();
        let frac = p - fl;
        // The product carries at most a few ulps of error: decide only when clearly away
        // from the half.
        if (frac - 0.5).abs() > p * 1e-15 + 1e-12 {
            let n = if frac > 0.5 { fl as u64 + 1 } else { fl as u64 };
            if v.is_sign_negative() {
                s.push('-');
            }
            let _ = write!(s, "{}.{:07}", n / 10_000_000, n % 10_000_000);
            return;
        }
    }
    let _ = write!(s, "{v:.7}");
}

/// Python's `repr(float)`.
pub fn py_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}` (also shortest).
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if (-4..16).contains(&exp) {
        // Fixed notation.
        let n = digits.len() as i32;
        let s = if exp >= 0 {
            if n > exp + 1 {
                format!("{}.{}", &digits[..(exp + 1) as usize], &digits[(exp + 1) as usize..])
            } else {
                format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
            }
        } else {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits.clone() };
        let es = if exp < 0 { format!("-{:02}", -exp) } else { format!("+{exp:02}") };
        format!("{sign}{m}e{es}")
    }
}

/// Whether a path is a Parquet file (by extension, else by the `PAR1` magic).
pub fn is_parquet(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        return true;
    }
    let mut m = [0u8; 4];
    use std::io::Read;
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut m)).is_ok() && &m == b"PAR1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_fixed7_equals_exact_formatting() {
        let mut x = 0x2545F4914F6CDD1Du64;
        let check = |v: f64| assert_eq!(c_fixed7(v), format!("{v:.7}"), "{v:e}");
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let scale = 10f64.powi((x % 12) as i32 - 4);
            check((u - 0.5) * scale);
            // Values at and next to seven-decimal ties.
            let t = ((x >> 20) % 100_000_000) as f64 / 1e7 + 0.5e-7;
            check(t);
            check(-t);
            check(f64::from_bits(t.to_bits() + 1));
            check(f64::from_bits(t.to_bits() - 1));
        }
        for v in [0.0, -0.0, -1e-9, 1e-9, 0.00390625, 1.00000005, 123_456_789.123_456_79, 2.5e-8, -2.5e-8] {
            check(v);
        }
        assert_eq!(c_fixed7(f64::NAN), "nan");
    }

    #[test]
    fn fixed7_like_printf() {
        assert_eq!(c_fixed7(3.0), "3.0000000");
        assert_eq!(c_fixed7(-2.40444456), "-2.4044446");
        assert_eq!(c_fixed7(f64::NAN), "nan");
        assert_eq!(c_fixed7(f64::INFINITY), "inf");
        assert_eq!(c_fixed7(f64::NEG_INFINITY), "-inf");
        assert_eq!(c_fixed7(-1e-9), "-0.0000000");
        assert_eq!(c_fixed7(-0.0), "-0.0000000");
        // An exact tie rounds to even, as glibc does.
        assert_eq!(c_fixed7(0.00390625), "0.0039062");
        assert_eq!(c_fixed7(17.0 + 1.0 / 3.0), "17.3333333");
        assert_eq!(c_fixed7((17.0f32 + 1.0 / 3.0) as f64), "17.3333340");
    }

    #[test]
    fn repr_like_python() {
        assert_eq!(py_repr(1.0), "1.0");
        assert_eq!(py_repr(0.7921061054858758), "0.7921061054858758");
        assert_eq!(py_repr(1e-5), "1e-05");
        assert_eq!(py_repr(0.0001), "0.0001");
        assert_eq!(py_repr(-2.5), "-2.5");
        assert_eq!(py_repr(15.0), "15.0");
        assert_eq!(py_repr(1e16), "1e+16");
        assert_eq!(py_repr(123456789012345.6), "123456789012345.6");
        assert_eq!(py_repr(-1.25e-7), "-1.25e-07");
        assert_eq!(py_repr(f64::NAN), "nan");
        assert_eq!(py_repr(0.0), "0.0");
    }
}
