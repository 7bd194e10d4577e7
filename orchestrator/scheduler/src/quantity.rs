//! Parsing of Kubernetes resource quantities (`100m`, `1.5Gi`, `2k`, `1e3`, ...).
//!
//! Values are returned in milli-units, rounded up, as `i64`: CPU `250m` is 250, memory `1Ki`
//! is 1_024_000. Use [`milli_to_units`] to get whole bytes (rounded up).

use crate::error::{Error, Result};

fn invalid(value: &str, reason: &'static str) -> Error {
    Error::InvalidQuantity {
        value: value.to_string(),
        reason,
    }
}

/// Multiplier of a quantity's suffix: either a power of two or a power of ten.
enum Scale {
    Binary(u32),
    Decimal(i32),
}

fn suffix_scale(value: &str, suffix: &str) -> Result<Scale> {
    Ok(match suffix {
        "" => Scale::Decimal(0),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let exp: i32 = s[1..]
                .parse()
                .map_err(|_| invalid(value, "exponent is not an integer"))?;
            if !(-30..=30).contains(&exp) {
                return Err(invalid(value, "exponent out of range"));
            }
            Scale::Decimal(exp)
        }
        _ => return Err(invalid(value, "unknown suffix")),
    })
}

/// Parses a quantity into milli-units, rounding up.
pub fn parse_milli(value: &str) -> Result<i64> {
    let s = value.trim();
    if s.is_empty() {
        return Err(invalid(value, "empty"));
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    if number.is_empty() || number == "." {
        return Err(invalid(value, "no digits"));
    }
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => {
            if f.contains('.') {
                return Err(invalid(value, "more than one decimal point"));
            }
            (i, f)
        }
        None => (number, ""),
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(invalid(value, "too many digits"));
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| invalid(value, "bad digits"))?
    };
    let frac_len = frac_part.len() as i32;
    let too_big = || invalid(value, "value too large");
    // milli = mantissa * 10^-frac_len * scale * 1000
    let milli: i128 = match suffix_scale(value, suffix)? {
        Scale::Binary(shift) => {
            let num = mantissa
                .checked_mul(1i128 << shift)
                .and_then(|v| v.checked_mul(1000))
                .ok_or_else(too_big)?;
            let den = 10i128.checked_pow(frac_len as u32).ok_or_else(too_big)?;
            ceil_div(num, den)
        }
        Scale::Decimal(exp) => {
            let p = exp + 3 - frac_len;
            if p >= 0 {
                let mul = 10i128.checked_pow(p as u32).ok_or_else(too_big)?;
                mantissa.checked_mul(mul).ok_or_else(too_big)?
            } else {
                match 10i128.checked_pow((-p) as u32) {
                    Some(den) => ceil_div(mantissa, den),
                    // smaller than any representable milli-unit but not zero
                    None => i128::from(mantissa > 0),
                }
            }
        }
    };
    let milli = if negative { -milli } else { milli };
    i64::try_from(milli).map_err(|_| too_big())
}

fn ceil_div(num: i128, den: i128) -> i128 {
    (num + den - 1) / den
}

/// Converts milli-units to whole units, rounding up (bytes, pod counts).
pub fn milli_to_units(milli: i64) -> i64 {
    if milli >= 0 {
        (milli + 999) / 1000
    } else {
        milli / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_milli("100m").unwrap(), 100);
        assert_eq!(parse_milli("1").unwrap(), 1000);
        assert_eq!(parse_milli("0.5").unwrap(), 500);
        assert_eq!(parse_milli("2.25").unwrap(), 2250);
        assert_eq!(parse_milli("1500u").unwrap(), 2); // 1.5m rounds up
        assert_eq!(parse_milli("1n").unwrap(), 1);
        assert_eq!(parse_milli("0").unwrap(), 0);
        assert_eq!(parse_milli("+3").unwrap(), 3000);
        assert_eq!(parse_milli("-1").unwrap(), -1000);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(milli_to_units(parse_milli("1Ki").unwrap()), 1024);
        assert_eq!(milli_to_units(parse_milli("128Mi").unwrap()), 128 << 20);
        assert_eq!(milli_to_units(parse_milli("1.5Gi").unwrap()), 3 << 29);
        assert_eq!(milli_to_units(parse_milli("64Ti").unwrap()), 64 << 40);
        assert_eq!(milli_to_units(parse_milli("1k").unwrap()), 1000);
        assert_eq!(milli_to_units(parse_milli("2M").unwrap()), 2_000_000);
        assert_eq!(milli_to_units(parse_milli("3G").unwrap()), 3_000_000_000);
        assert_eq!(milli_to_units(parse_milli("1e3").unwrap()), 1000);
        assert_eq!(milli_to_units(parse_milli("1E6").unwrap()), 1_000_000);
        assert_eq!(
            milli_to_units(parse_milli("1P").unwrap()),
            1_000_000_000_000_000
        );
        assert_eq!(milli_to_units(parse_milli("129e6").unwrap()), 129_000_000);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "Mi",
            "1.2.3",
            "1Xi",
            "abc",
            "1e",
            "1e99",
            "99999999999999Ei",
            ".",
        ] {
            assert!(parse_milli(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
