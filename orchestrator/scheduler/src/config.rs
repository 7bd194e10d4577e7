//! Scheduler settings, usable as command-line flags (`#[command(flatten)]`).

use std::time::Duration;

pub use bpfk_common::duration::parse_duration;

/// Settings of the scheduler.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerConfig {
    /// Pods whose spec.schedulerName is this (or empty) are scheduled.
    #[arg(long = "scheduler-name", default_value = "default-scheduler")]
    pub scheduler_name: String,
    /// Bindings written to the API server at the same time.
    #[arg(long = "scheduler-bind-concurrency", default_value_t = 256)]
    pub bind_concurrency: usize,
    /// Percentage of nodes to find feasible before scoring (0 = adaptive, as Kubernetes).
    #[arg(long = "scheduler-percentage-of-nodes-to-score", default_value_t = 0)]
    pub percentage_of_nodes_to_score: u32,
    /// An unschedulable pod is retried at least this often even if nothing changed.
    #[arg(long = "scheduler-unschedulable-retry", default_value = "30s", value_parser = parse_duration)]
    pub unschedulable_retry: Duration,
    /// Longest backoff after a failed binding or an unschedulable attempt.
    #[arg(long = "scheduler-max-backoff", default_value = "10s", value_parser = parse_duration)]
    pub max_backoff: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            bind_concurrency: 256,
            percentage_of_nodes_to_score: 0,
            unschedulable_retry: Duration::from_secs(30),
            max_backoff: Duration::from_secs(10),
        }
    }
}
