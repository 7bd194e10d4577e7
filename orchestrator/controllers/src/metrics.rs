//! The controllers' work-queue metrics under Kubernetes' names, in the process's component
//! registry (served on the API server's `/metrics` when they share a process):
//! `workqueue_work_duration_seconds` (how long a reconcile of one object takes),
//! `workqueue_retries_total` (reconciles that failed and were requeued), `workqueue_depth`
//! (objects waiting for a reconcile) and `workqueue_adds_total` (objects put in the queue;
//! counted by [`crate::work_queue::WorkQueue`]), by controller (`name`, as Kubernetes labels
//! its queues).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use bpfk_common::metrics::{latency_histogram, register};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: String,
}

/// The controllers' metric families.
pub struct ControllerMetrics {
    work: Family<QueueLabels, Histogram, fn() -> Histogram>,
    retries: Family<QueueLabels, Counter>,
    depth: Family<QueueLabels, Gauge>,
    adds: Family<QueueLabels, Counter>,
}

/// The controllers' metrics, registered on first use.
pub fn metrics() -> &'static ControllerMetrics {
    static METRICS: OnceLock<ControllerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = ControllerMetrics {
            work: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            depth: Family::default(),
            adds: Family::default(),
        };
        register(|r| {
            r.register(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes.",
                m.work.clone(),
            );
            r.register(
                "workqueue_retries",
                "Total number of retries handled by workqueue",
                m.retries.clone(),
            );
            r.register(
                "workqueue_depth",
                "Current depth of workqueue",
                m.depth.clone(),
            );
            r.register(
                "workqueue_adds",
                "Total number of adds handled by workqueue",
                m.adds.clone(),
            );
        });
        m
    })
}

impl ControllerMetrics {
    /// One reconcile by the controller `name` took `seconds`; `failed`: it is retried.
    pub fn work_done(&self, name: &str, seconds: f64, failed: bool) {
        let labels = QueueLabels { name: name.into() };
        self.work.get_or_create(&labels).observe(seconds);
        if failed {
            self.retries.get_or_create(&labels).inc();
        }
    }

    /// The queue of controller `name` took a new object; `depth` objects wait now.
    pub fn added(&self, name: &str, depth: usize) {
        let labels = QueueLabels { name: name.into() };
        self.adds.get_or_create(&labels).inc();
        self.set_depth(name, depth);
    }

    /// `depth` objects wait in the queue of controller `name`.
    pub fn set_depth(&self, name: &str, depth: usize) {
        let labels = QueueLabels { name: name.into() };
        self.depth.get_or_create(&labels).set(depth as i64);
    }
}

/// Runs the reconcile `work` of the controller `name`, timing it.
pub async fn timed<T, E>(
    name: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let out = work.await;
    metrics().work_done(name, started.elapsed().as_secs_f64(), out.is_err());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reconciles_are_timed_and_failures_counted_as_retries() {
        let ok: Result<(), ()> = timed("test-ok", async { Ok(()) }).await;
        let failed: Result<(), ()> = timed("test-fail", async { Err(()) }).await;
        assert!(ok.is_ok() && failed.is_err());
        let text = bpfk_common::metrics::encode();
        assert!(
            text.contains("workqueue_work_duration_seconds_count{name=\"test-ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("workqueue_retries_total{name=\"test-fail\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("workqueue_retries_total{name=\"test-ok\"}"),
            "{text}"
        );
    }
}
