//! The `resourceVersion` of reads and watches: what it may be, and how fresh the answer must
//! be.
//!
//! * `""` (absent) asks for the newest state, `"0"` for any state the server holds, `"N"` for a
//!   state at least as new as revision N. Anything else (negative, not a number) is 400.
//! * A read or watch at a revision newer than the server has seen waits up to
//!   [`FRESHNESS_WAIT`] for the watch cache to reach it (a client may have learnt the revision
//!   from a newer server), then answers 504 "Too large resource version", as kube-apiserver
//!   does, so the client relists instead of silently getting older data.
//! * `resourceVersionMatch` and `sendInitialEvents` are checked as Kubernetes' ListOptions
//!   validation does (422 Invalid, naming the field).

use std::time::Duration;

use bpfk_apimachinery::registry::ResourceInfo;

use crate::error::{ApiError, Cause, Result};
use crate::query::Query;
use crate::state::AppState;

/// How long a read at a future revision waits for the server to reach it.
pub const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// The revision a `resourceVersion` parameter names: None when absent, `Some(0)` for "any".
pub fn parse(rv: Option<&str>) -> Result<Option<i64>> {
    let Some(rv) = rv.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match rv.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(ApiError::bad_request(format!(
            "invalid resourceVersion {rv:?}: must be a non-negative integer"
        ))),
    }
}

/// Wait until the server holds revision `rev` of `res` (its watch cache reached it); 504
/// "Too large resource version" when it did not within [`FRESHNESS_WAIT`], 503 when the
/// storage cannot be reached to tell.
pub async fn wait_fresh(state: &AppState, res: &ResourceInfo, rev: i64) -> Result<()> {
    let Ok(cache) = state.cache(res) else {
        // not cached (not watchable): etcd's own revision is the server's
        let current = state.store.current_revision().await?;
        return if rev <= current {
            Ok(())
        } else {
            Err(ApiError::TooLargeResourceVersion {
                requested: rev,
                current,
            })
        };
    };
    if cache.is_ready() && cache.revision() >= rev {
        return Ok(());
    }
    let cache = state.ready_cache(res).await?;
    match cache.wait_for_revision(rev, FRESHNESS_WAIT).await {
        Ok(()) => Ok(()),
        Err(waited) => match state.store.current_revision().await {
            Ok(_) => Err(ApiError::TooLargeResourceVersion {
                requested: rev,
                current: cache.revision(),
            }),
            Err(unreachable) => {
                tracing::debug!(%waited, "watch cache did not reach the requested revision");
                Err(unreachable.into())
            }
        },
    }
}

fn forbidden(options: &str, field: &str, message: &str) -> ApiError {
    ApiError::Invalid {
        group: "meta.k8s.io".into(),
        kind: options.into(),
        name: String::new(),
        causes: vec![Cause {
            reason: "FieldValueForbidden".into(),
            message: format!("Forbidden: {message}"),
            field: field.into(),
        }],
    }
}

/// The checks of a list's or a watch's options that Kubernetes makes before serving it.
pub fn check_options(q: &Query, watch: bool) -> Result<()> {
    const OPTIONS: &str = "ListOptions";
    let rv = parse(q.resource_version.as_deref())?;
    let rv_match = q.resource_version_match.as_deref();
    match rv_match {
        None | Some("NotOlderThan") | Some("Exact") => {}
        Some(other) => {
            return Err(ApiError::Invalid {
                group: "meta.k8s.io".into(),
                kind: OPTIONS.into(),
                name: String::new(),
                causes: vec![Cause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!(
                        "Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""
                    ),
                    field: "resourceVersionMatch".into(),
                }],
            })
        }
    }
    if !watch {
        if q.send_initial_events.is_some() {
            return Err(forbidden(
                OPTIONS,
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
        if rv_match.is_some() && rv.is_none() {
            return Err(forbidden(
                OPTIONS,
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if rv_match == Some("Exact") && rv == Some(0) {
            return Err(forbidden(
                OPTIONS,
                "resourceVersionMatch",
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        return Ok(());
    }
    match q.send_initial_events {
        Some(_) if rv_match != Some("NotOlderThan") => Err(forbidden(
            OPTIONS,
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        )),
        Some(true) if !q.allow_watch_bookmarks => Err(forbidden(
            OPTIONS,
            "allowWatchBookmarks",
            "sendInitialEvents requires allowWatchBookmarks=true",
        )),
        None if rv_match.is_some() => Err(forbidden(
            OPTIONS,
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(Some(raw)).unwrap()
    }

    #[test]
    fn parses_revisions() {
        assert_eq!(parse(None).unwrap(), None);
        assert_eq!(parse(Some("")).unwrap(), None);
        assert_eq!(parse(Some("0")).unwrap(), Some(0));
        assert_eq!(parse(Some("42")).unwrap(), Some(42));
        for bad in ["-1", "abc", "1.5", "9999999999999999999999"] {
            let err = parse(Some(bad)).unwrap_err();
            assert_eq!(err.code(), 400, "{bad}");
            assert!(err.message().contains("resourceVersion"), "{bad}");
        }
    }

    #[test]
    fn watch_list_needs_not_older_than_and_bookmarks() {
        let ok = "watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan";
        check_options(&q(ok), true).unwrap();
        let err =
            check_options(&q("sendInitialEvents=true&allowWatchBookmarks=true"), true).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(
            err.message().contains("resourceVersionMatch"),
            "{}",
            err.message()
        );
        let err = check_options(
            &q("sendInitialEvents=true&resourceVersionMatch=NotOlderThan"),
            true,
        )
        .unwrap_err();
        assert!(
            err.message().contains("allowWatchBookmarks"),
            "{}",
            err.message()
        );
        // sendInitialEvents=false needs no bookmarks
        check_options(
            &q("sendInitialEvents=false&resourceVersionMatch=NotOlderThan"),
            true,
        )
        .unwrap();
        let err = check_options(
            &q("resourceVersionMatch=NotOlderThan&resourceVersion=3"),
            true,
        )
        .unwrap_err();
        assert!(
            err.message().contains("unless sendInitialEvents"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn list_options() {
        check_options(&q("resourceVersion=5&resourceVersionMatch=Exact"), false).unwrap();
        check_options(
            &q("resourceVersion=0&resourceVersionMatch=NotOlderThan"),
            false,
        )
        .unwrap();
        for bad in [
            "resourceVersionMatch=Exact",
            "resourceVersion=0&resourceVersionMatch=Exact",
            "resourceVersion=5&resourceVersionMatch=Newest",
            "sendInitialEvents=true",
            "resourceVersion=-3",
        ] {
            assert!(check_options(&q(bad), false).is_err(), "{bad}");
        }
    }
}
