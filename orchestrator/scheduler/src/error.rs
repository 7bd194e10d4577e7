//! The scheduler's error type.

/// Errors of the scheduler library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A resource quantity (`spec.containers[].resources.requests.cpu`, ...) could not be parsed.
    #[error("invalid quantity {value:?}: {reason}")]
    InvalidQuantity {
        /// The text as found in the object.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A call to the API server failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A watch stream ended, which only happens when the client is shut down.
    #[error("watch stream of {0} ended")]
    WatchEnded(&'static str),
}

/// Result with the scheduler's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
