//! bpfk-scheduler: assigns pending pods to nodes.
//!
//! Watches pods and nodes through kube-rs watchers, keeps a [`cache::Cache`] of nodes and the
//! resources bound pods use, runs the node filters and scores of [`filter_score`] in memory
//! for each pending pod, assumes the decision in the cache at once and writes the binding
//! (`pods/binding`) concurrently. Pods that fit nowhere get `PodScheduled=False` and are
//! retried when the cluster changes.

pub mod binder;
pub mod cache;
pub mod config;
pub mod error;
pub mod filter_score;
pub mod metrics;
pub mod nodeaffinity;
pub mod queue;
pub mod resources;
pub mod scheduler;
pub mod taints;

pub use config::SchedulerConfig;
pub use error::{Error, Result};
pub use scheduler::{run, run_with_pods, PodEvents};
