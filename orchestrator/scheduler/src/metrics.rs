//! The scheduler's metrics under kube-scheduler's names, in the process's component registry
//! (served on the API server's `/metrics` when they share a process):
//! `scheduler_schedule_attempts_total` and `scheduler_scheduling_attempt_duration_seconds`
//! by result (`scheduled`, `unschedulable`, `error`) and profile, and `scheduler_pending_pods`
//! by queue.

use std::sync::OnceLock;
use std::time::Duration;

use bpfk_common::metrics::{latency_histogram, register};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// How a scheduling attempt ended, as kube-scheduler labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Bound to a node.
    Scheduled,
    /// Fits no node.
    Unschedulable,
    /// The binding failed.
    Error,
}

impl AttemptResult {
    fn label(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: String,
    profile: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// The scheduler's metric families.
pub struct SchedulerMetrics {
    attempts: Family<AttemptLabels, Counter>,
    durations: Family<AttemptLabels, Histogram, fn() -> Histogram>,
    pending: Family<QueueLabels, Gauge>,
}

/// The scheduler's metrics, registered on first use.
pub fn metrics() -> &'static SchedulerMetrics {
    static METRICS: OnceLock<SchedulerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = SchedulerMetrics {
            attempts: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            pending: Family::default(),
        };
        register(|r| {
            r.register("scheduler_schedule_attempts", "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.", m.attempts.clone());
            r.register("scheduler_scheduling_attempt_duration_seconds", "Scheduling attempt latency in seconds (scheduling algorithm + binding).", m.durations.clone());
            r.register("scheduler_pending_pods", "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods.", m.pending.clone());
        });
        m
    })
}

impl SchedulerMetrics {
    /// One attempt of `profile` ended with `result` after `took`.
    pub fn attempt(&self, profile: &str, result: AttemptResult, took: Duration) {
        let labels = AttemptLabels {
            result: result.label().into(),
            profile: profile.into(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The pods waiting in each queue now.
    pub fn set_pending(&self, queues: &[(&'static str, usize)]) {
        for (queue, n) in queues {
            let labels = QueueLabels {
                queue: (*queue).into(),
            };
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            self.pending.get_or_create(&labels).set(n);
        }
    }
}
