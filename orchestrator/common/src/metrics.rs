//! The process's component metrics (scheduler, controllers), as Kubernetes' components keep
//! theirs in one process-wide registry: each component registers its families once, and the
//! API server's `/metrics` appends them to its own (bpfk-server runs them in one process).
//! Prometheus text via prometheus-client.

use std::sync::{Mutex, OnceLock};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Registers families into the process's registry (call once per component, e.g. from a
/// `OnceLock` initialiser).
pub fn register(with: impl FnOnce(&mut Registry)) {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    with(&mut r);
}

/// The component metrics in the text format, without the closing `# EOF` line (the caller
/// appends them to its own exposition, which ends with it).
pub fn encode() -> String {
    let r = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &r).is_err() {
        return String::new();
    }
    match text.strip_suffix("# EOF\n") {
        Some(body) => body.to_string(),
        None => text,
    }
}

/// Latency buckets from 1 ms to ~65 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn registered_families_are_encoded_without_eof() {
        let c: Counter = Counter::default();
        register(|r| r.register("bpfk_test_things", "Things counted by the test.", c.clone()));
        c.inc();
        let text = encode();
        assert!(text.contains("bpfk_test_things_total 1"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
