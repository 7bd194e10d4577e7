//! `tokencleaner`: deletes a bootstrap token's Secret (kube-system, type
//! `bootstrap.kubernetes.io/token`) once its `expiration` has passed, and looks again when
//! the next one is due.

use std::sync::Arc;
use std::time::Duration;

use bpfk_auth::bootstrap_token;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use time::OffsetDateTime;

use crate::error::{is_not_found, Error, Result};
use crate::work_queue::WorkQueue;

const NAME: &str = "tokencleaner";

pub struct Context {
    client: Client,
}

/// Runs the cleaner until its watch ends.
pub async fn run(client: Client) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), bootstrap_token::NAMESPACE);
    let by_type =
        watcher::Config::default().fields(&format!("type={}", bootstrap_token::SECRET_TYPE));
    let ctx = Arc::new(Context { client });
    let queue = WorkQueue::new(NAME);
    let results = queue
        .controller(secrets, by_type)
        .with_config(ControllerConfig::default().concurrency(1))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

fn error_policy(secret: Arc<Secret>, e: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(secret = %secret.name_any(), error = %e, "cannot clean the bootstrap token");
    Action::requeue(Duration::from_secs(5))
}

/// When to look at a token again: None once it is due (delete it now), else the time left.
pub fn time_left(secret: &Secret, now: OffsetDateTime) -> Option<Option<Duration>> {
    match bootstrap_token::expiration(secret) {
        Ok(Some(when)) if when <= now => None,
        Ok(Some(when)) => Some(Some(Duration::try_from(when - now).unwrap_or_default())),
        // no expiration, or a malformed one (the authenticator refuses it anyway)
        _ => Some(None),
    }
}

async fn reconcile(secret: Arc<Secret>, ctx: Arc<Context>) -> Result<Action> {
    match time_left(&secret, OffsetDateTime::now_utc()) {
        Some(Some(left)) => return Ok(Action::requeue(left + Duration::from_secs(1))),
        Some(None) => return Ok(Action::await_change()),
        None => {}
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), bootstrap_token::NAMESPACE);
    let precondition = DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.uid(),
            resource_version: secret.resource_version(),
        }),
        ..Default::default()
    };
    match api.delete(&secret.name_any(), &precondition).await {
        Ok(_) => tracing::info!(secret = %secret.name_any(), "deleted an expired bootstrap token"),
        Err(e) if is_not_found(&e) || crate::error::api_code(&e) == Some(409) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfk_auth::bootstrap_token::{BootstrapToken, TokenOptions};

    #[test]
    fn expired_tokens_are_due_and_others_wait_their_time() {
        let now = OffsetDateTime::now_utc();
        let secret = |expires| -> Secret {
            let options = TokenOptions {
                expires,
                ..Default::default()
            };
            serde_json::from_value(bootstrap_token::secret_for(
                &BootstrapToken::generate(),
                &options,
            ))
            .unwrap()
        };
        assert_eq!(
            time_left(&secret(Some(now - time::Duration::seconds(1))), now),
            None
        );
        let left = time_left(&secret(Some(now + time::Duration::minutes(5))), now)
            .unwrap()
            .unwrap();
        assert!(
            left > Duration::from_secs(290) && left <= Duration::from_secs(300),
            "{left:?}"
        );
        assert_eq!(time_left(&secret(None), now), Some(None));
    }
}
