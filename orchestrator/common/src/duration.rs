//! Durations on command lines as Kubernetes' components take them (`40s`, `5m`, `1h30m`,
//! `500ms`), parsed once for every flag.

use std::time::Duration;

/// Parses `text` as a duration, or says why not naming it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
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
}
