//! Kubernetes resource quantities (`100m`, `1.5Gi`, `2k`, `1e3`, ...), one type for the API
//! server's validation, the scheduler's accounting and the kubelet's cgroup limits.
//!
//! A [`Quantity`] holds exact milli-units (rounded up) as `i64`: CPU `250m` is 250, memory
//! `1Ki` is 1_024_000. [`Quantity::units`] gives whole bytes or pods (rounded up).

/// The regex Kubernetes names when a quantity does not parse.
pub const QUANTITY_REGEX_MSG: &str =
    "must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// A quantity that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {value:?}: {reason}")]
pub struct QuantityError {
    /// The text given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

type Result<T> = std::result::Result<T, QuantityError>;

fn invalid(value: &str, reason: &'static str) -> QuantityError {
    QuantityError {
        value: value.to_string(),
        reason,
    }
}

/// A resource quantity in exact milli-units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    milli: i64,
}

impl Quantity {
    /// Parses `100m`, `1.5Gi`, `2e3`, ...; sub-milli values round up to the next milli-unit.
    pub fn parse(value: &str) -> Result<Quantity> {
        parse_milli(value).map(Quantity::from_milli)
    }

    /// The quantity of `milli` milli-units.
    pub const fn from_milli(milli: i64) -> Quantity {
        Quantity { milli }
    }

    /// The value in milli-units (`250m` is 250).
    pub const fn milli(self) -> i64 {
        self.milli
    }

    /// The value in whole units, rounded up (bytes, pods).
    pub const fn units(self) -> i64 {
        milli_to_units(self.milli)
    }

    /// The value in units as a float (cores for CPU, `100m` is 0.1).
    pub fn as_f64(self) -> f64 {
        self.milli as f64 / 1000.0
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Quantity> {
        Quantity::parse(s)
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
    let (negative, number, suffix) = split_quantity(value)?;
    let (mantissa, frac_len) = parse_mantissa(value, number)?;
    let too_big = || invalid(value, "value too large");
    let milli = to_milli(mantissa, frac_len, suffix_scale(value, suffix)?).ok_or_else(too_big)?;
    let milli = if negative { -milli } else { milli };
    i64::try_from(milli).map_err(|_| too_big())
}

/// Splits `-1.5Gi` into its sign, number and suffix: `(true, "1.5", "Gi")`.
fn split_quantity(value: &str) -> Result<(bool, &str, &str)> {
    let s = value.trim();
    if s.is_empty() {
        return Err(invalid(value, "empty"));
    }
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    if number.is_empty() || number == "." {
        return Err(invalid(value, "no digits"));
    }
    Ok((negative, number, suffix))
}

/// The digits of `number` (`1.25`) as an integer and how many of them are decimals:
/// `(125, 2)`.
fn parse_mantissa(value: &str, number: &str) -> Result<(i128, i32)> {
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') {
        return Err(invalid(value, "more than one decimal point"));
    }
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
    Ok((mantissa, frac_part.len() as i32))
}

/// `mantissa * 10^-frac_len * scale * 1000`, rounded up; `None` when too large.
fn to_milli(mantissa: i128, frac_len: i32, scale: Scale) -> Option<i128> {
    match scale {
        Scale::Binary(shift) => {
            let num = mantissa.checked_mul(1i128 << shift)?.checked_mul(1000)?;
            let den = 10i128.checked_pow(frac_len as u32)?;
            Some(ceil_div(num, den))
        }
        Scale::Decimal(exp) => {
            let p = exp + 3 - frac_len;
            if p >= 0 {
                mantissa.checked_mul(10i128.checked_pow(p as u32)?)
            } else {
                match 10i128.checked_pow((-p) as u32) {
                    Some(den) => Some(ceil_div(mantissa, den)),
                    // smaller than any representable milli-unit but not zero
                    None => Some(i128::from(mantissa > 0)),
                }
            }
        }
    }
}

fn ceil_div(num: i128, den: i128) -> i128 {
    (num + den - 1) / den
}

/// Converts milli-units to whole units, rounding up (bytes, pod counts).
pub const fn milli_to_units(milli: i64) -> i64 {
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

    fn units(s: &str) -> Option<f64> {
        Quantity::parse(s).ok().map(Quantity::as_f64)
    }

    #[test]
    fn orders_by_value() {
        let q = |s| Quantity::parse(s).unwrap();
        assert!(q("100m") < q("1"));
        assert_eq!(q("1Ki").units(), 1024);
        assert_eq!("1500m".parse::<Quantity>().map(Quantity::milli), Ok(1500));
        let err = Quantity::parse("1x").unwrap_err();
        assert_eq!(err.to_string(), "invalid quantity \"1x\": unknown suffix");
    }

    #[test]
    fn parses_suffixes_as_units() {
        assert_eq!(units("100m"), Some(0.1));
        assert_eq!(units("1"), Some(1.0));
        assert_eq!(units("1.5"), Some(1.5));
        assert_eq!(units("1Ki"), Some(1024.0));
        assert_eq!(units("128Mi"), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(units("1G"), Some(1e9));
        assert_eq!(units("2e3"), Some(2000.0));
        assert_eq!(units("+1"), Some(1.0));
        assert_eq!(units("-1"), Some(-1.0));
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in ["", "abc", "1x", "1.2.3", "m", "1Kii", "--1", "1e", "."] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }
}
