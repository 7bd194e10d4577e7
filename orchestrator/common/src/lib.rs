//! What every bpfk binary and controller repeats, written once: logging set-up, the exit of a
//! binary on error (one clear line, never a backtrace), and a [`kube::Client`] from a
//! kubeconfig or the environment.

pub mod client;
pub mod exit;
pub mod logging;
pub mod platform;
