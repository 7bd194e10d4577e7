//! A [`kube::Client`] from a kubeconfig file, or from the environment as kubectl finds it
//! (`KUBECONFIG`, `~/.kube/config`, the in-cluster service account).

use std::path::{Path, PathBuf};

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// (kube's errors repeat their cause in their message: it is kept as text, not chained)
    #[error("reading kubeconfig {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("no kubeconfig given and none found in the environment: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
}

/// The client for `kubeconfig`, or (without one) for the environment's configuration.
pub async fn from_kubeconfig(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| ClientError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| ClientError::Kubeconfig {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}
