//! Compaction of etcd's history, as kube-apiserver does it (`--etcd-compaction-interval`,
//! 5 minutes by default): at every tick the revision etcd had at the previous tick is
//! compacted, so the last interval of history stays for watches that resume, and etcd's
//! database stops growing with every write until it hits its quota and refuses all writes.
//! Compaction frees revisions, not disk space: defragmenting etcd (`etcdctl defrag`) returns
//! that space to the filesystem (see the README).

use std::sync::Arc;
use std::time::Duration;

use bpfk_store::{Store, StoreError};

/// Parse a duration as Go writes it (`5m`, `300s`, `1m30s`, `500ms`, `0` = never).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("an empty duration: expected e.g. 5m, 300s or 0".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: expected e.g. 5m, 300s or 0"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            other => return Err(format!("invalid duration {text:?}: unknown unit {other:?}")),
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Compact every `interval` until the task is dropped; `interval` zero: never.
pub async fn run(store: Arc<dyn Store>, interval: Duration) {
    if interval.is_zero() {
        tracing::info!("etcd compaction disabled");
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let mut previous: Option<i64> = None;
    loop {
        ticker.tick().await;
        let current = match store.current_revision().await {
            Ok(rev) => rev,
            Err(e) => {
                tracing::warn!("cannot read etcd's revision for compaction: {e}");
                continue;
            }
        };
        if let Some(rev) = previous.filter(|rev| *rev > 1) {
            compact(store.as_ref(), rev).await;
        }
        previous = Some(current);
    }
}

async fn compact(store: &dyn Store, rev: i64) {
    match store.compact(rev).await {
        Ok(()) => tracing::info!(revision = rev, "etcd history compacted"),
        // another server (or an operator) compacted at least as far already
        Err(StoreError::Compacted { .. }) => {
            tracing::debug!(revision = rev, "etcd history already compacted")
        }
        Err(e) => tracing::warn!(revision = rev, "etcd compaction failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("300s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("0").unwrap(), Duration::ZERO);
        for bad in ["", "5", "m", "5d", "-1s", "1.5s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
