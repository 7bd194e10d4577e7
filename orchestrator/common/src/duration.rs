//! Durations on command lines as Kubernetes' components take them (`40s`, `5m`, `1h30m`,
//! `500ms`), parsed once for every flag; and Go's `time.Duration` text, which API objects
//! carry (`meta.v1.Duration`).

use std::time::Duration;

/// Parses `text` as a duration, or says why not naming it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Go's duration units and their nanoseconds.
const GO_UNITS: [(&str, i64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Nanoseconds as Go's `time.Duration` prints them (`1h2m3.5s`, `150ms`, `0s`): how
/// Kubernetes' JSON shows a `meta.v1.Duration`.
pub fn format_go(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(n, 1_000_000));
    }
    let (hours, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let seconds = fraction(rest, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// `n / unit` with its fraction, trailing zeros dropped (`1.5`, `2`).
fn fraction(n: u64, unit: u64) -> String {
    let (whole, rest) = (n / unit, n % unit);
    if rest == 0 {
        return whole.to_string();
    }
    let digits = unit.ilog10() as usize;
    let frac = format!("{rest:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Go's duration text (fractions and a sign included, which [`parse_duration`] does not
/// take) as nanoseconds.
pub fn parse_go(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration (like 1h2m3s)");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let (unit, scale) = GO_UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        let part = number * *scale as f64;
        if !part.is_finite() || part > i64::MAX as f64 {
            return Err(bad());
        }
        total = total.checked_add(part.round() as i64).ok_or_else(bad)?;
    }
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations_parse_and_bad_ones_are_named() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
    }

    #[test]
    fn formats_durations_as_go() {
        assert_eq!(format_go(0), "0s");
        assert_eq!(format_go(1), "1ns");
        assert_eq!(format_go(1_500), "1.5µs");
        assert_eq!(format_go(150_000_000), "150ms");
        assert_eq!(format_go(1_500_000_000), "1.5s");
        assert_eq!(format_go(90_000_000_000), "1m30s");
        assert_eq!(format_go(3_600_000_000_000), "1h0m0s");
        assert_eq!(format_go(-2_000_000_000), "-2s");
    }

    #[test]
    fn parses_what_go_formats_and_refuses_the_rest() {
        for n in [
            0,
            1,
            1_500,
            150_000_000,
            1_500_000_000,
            90_000_000_000,
            3_723_000_000_000,
        ] {
            assert_eq!(parse_go(&format_go(n)), Ok(n), "{n}");
        }
        assert_eq!(parse_go("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go("2us"), Ok(2_000));
        for bad in ["", "5", "1x", "h", "1.2.3s", "-"] {
            assert!(parse_go(bad).is_err(), "{bad}");
        }
    }
}
