//! The join token the server writes on first start (`<data-dir>/join-token`, mode 0600, as
//! k3s writes its server token): a bootstrap token that never expires, stored as its
//! kube-system Secret, with the CA's public-key hash in front so `bpfk-agent --server URL
//! --token TOKEN` can check the server before trusting it. Deleting the Secret
//! (`bpfk token delete ID`) revokes it; the file is not written again then.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bpfk_apimachinery::registry;
use bpfk_auth::bootstrap_token::{self, BootstrapToken, JoinToken, TokenOptions};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{query, rest};

/// Once the system namespaces exist, write the join token unless its file exists.
pub async fn ensure(state: Arc<AppState>, path: PathBuf, ca_pem: String) {
    if path.exists() {
        return;
    }
    let Some(ca_hash) = bpfk_auth::pki::ca_public_key_hash(&ca_pem) else {
        tracing::error!("no join token: the CA certificate does not parse");
        return;
    };
    let join = JoinToken {
        ca_hash,
        token: BootstrapToken::generate(),
    };
    let mut delay = Duration::from_millis(200);
    loop {
        if state.bootstrapped.load(Ordering::Acquire) {
            match store_secret(&state, &join.token, &path).await {
                Ok(()) => break,
                Err(e) => tracing::warn!("cannot store the join token yet: {}", e.message()),
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    let text = format!("{}\n", join.expose());
    match bpfk_auth::pki::write_private(&path, &text, 0o600) {
        Ok(()) => tracing::info!(path = %path.display(), id = %join.token.id, "join token written"),
        Err(e) => tracing::error!("cannot write the join token: {e}"),
    }
}

async fn store_secret(
    state: &AppState,
    token: &BootstrapToken,
    path: &std::path::Path,
) -> Result<(), ApiError> {
    let res = registry::find("", "v1", "secrets")
        .ok_or_else(|| ApiError::internal("secrets are not served"))?;
    let options = TokenOptions {
        expires: None,
        description: format!("the join token bpfk-server wrote to {}", path.display()),
        extra_groups: vec![bootstrap_token::DEFAULT_NODE_GROUP.into()],
    };
    let secret = bootstrap_token::secret_for(token, &options);
    let ns = Some(bootstrap_token::NAMESPACE);
    match rest::write::create(state, res, ns, secret, &query::Query::default()).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
