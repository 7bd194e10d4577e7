//! What every bpfk binary and controller repeats, written once: logging set-up, the exit of a
//! binary on error (one clear line, never a backtrace), a [`kube::Client`] from a kubeconfig
//! or the environment, the shared [`informer`], the [`api_error`] codes callers branch on and
//! the [`events`] recorder.

pub mod api_error;
pub mod client;
pub mod events;
pub mod exit;
pub mod informer;
pub mod logging;
pub mod platform;
