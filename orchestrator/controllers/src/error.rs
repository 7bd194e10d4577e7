//! The controllers' error type.

/// Errors of the controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object has a field the controller cannot work with.
    #[error("{object}: invalid {field}: {reason}")]
    Invalid {
        /// `namespace/name` of the object.
        object: String,
        /// Field path.
        field: String,
        /// Why.
        reason: String,
    },
    /// A controller setting is wrong.
    #[error("invalid setting --{flag}: {reason}")]
    Config {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// A watch's store never became ready.
    #[error("cache for {0} not ready: its watch stopped")]
    CacheNotReady(&'static str),
    /// A controller task stopped.
    #[error("controller {0} stopped: {1}")]
    Stopped(&'static str, String),
}

/// Result with the controllers' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use bpfk_common::api_error::{api_code, is_conflict, is_not_found};
