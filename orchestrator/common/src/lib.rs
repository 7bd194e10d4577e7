//! What every bpfk binary and controller repeats, written once: logging set-up, the exit of a
//! binary on error (one clear line, never a backtrace), and a [`kube::Client`] from a
//! kubeconfig or the environment; the one resource [`quantity::Quantity`] type.

#[cfg(feature = "runtime")]
pub mod client;
#[cfg(feature = "runtime")]
pub mod exit;
#[cfg(feature = "runtime")]
pub mod logging;
pub mod quantity;
