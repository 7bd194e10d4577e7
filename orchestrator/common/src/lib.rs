//! What every bpfk binary and controller repeats, written once: logging set-up, the exit of a
//! binary on error (one clear line, never a backtrace), a [`kube::Client`] from a kubeconfig
//! or the environment, the shared `informer`, the `api_error` codes callers branch on, the
//! `events` recorder (those with the default `runtime` feature), the one resource
//! [`quantity::Quantity`] type and the flags' [`duration`] parser.

#[cfg(feature = "runtime")]
pub mod api_error;
#[cfg(feature = "runtime")]
pub mod client;
pub mod duration;
#[cfg(feature = "runtime")]
pub mod events;
#[cfg(feature = "runtime")]
pub mod exit;
#[cfg(feature = "runtime")]
pub mod informer;
#[cfg(feature = "runtime")]
pub mod logging;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod platform;
pub mod quantity;
pub mod resolv_conf;
