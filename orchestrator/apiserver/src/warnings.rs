//! Warnings admission gives the client beside its answer (`Warning: 299 - "…"` headers, as
//! kube-apiserver's `warning.AddWarning`): collected for the request being served, each once.

use std::sync::{Arc, Mutex};

tokio::task_local! {
    static SINK: Arc<Mutex<Vec<String>>>;
}

/// Run `served` collecting the warnings added while it runs; returns them beside its value.
pub async fn collect<F: std::future::Future>(served: F) -> (F::Output, Vec<String>) {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let output = SINK.scope(sink.clone(), served).await;
    let warnings = sink.lock().map(|w| w.clone()).unwrap_or_default();
    (output, warnings)
}

/// Add a warning to the current request's answer (outside a request, e.g. the server's own
/// writes, it is dropped); a warning already given is not repeated.
pub fn add(warning: impl Into<String>) {
    let warning = warning.into();
    let _ = SINK.try_with(|sink| {
        if let Ok(mut list) = sink.lock() {
            if !list.contains(&warning) {
                list.push(warning);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warnings_are_collected_once_per_request_and_dropped_outside() {
        add("outside");
        let ((), warnings) = collect(async {
            add("a");
            add("b");
            add("a");
        })
        .await;
        assert_eq!(warnings, ["a", "b"]);
    }
}
