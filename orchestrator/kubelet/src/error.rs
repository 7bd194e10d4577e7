//! The kubelet's error type.

use std::path::PathBuf;

/// Why the kubelet (or one of its steps) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cri(#[from] crate::cri::CriError),
    #[error("API server: {0}")]
    Kube(#[from] kube::Error),
    #[error("CNI configuration: {0}")]
    Cni(#[from] crate::cni::CniError),
    #[error("pod watch: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
    #[error("config {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pod {pod}: {reason}")]
    Pod { pod: String, reason: String },
    #[error("node {node}: {reason}")]
    Node { node: String, reason: String },
}

/// Result with the kubelet [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
