//! The tokens controller: a Secret of type `kubernetes.io/service-account-token` naming a
//! ServiceAccount (annotation `kubernetes.io/service-account.name`) gets a non-expiring
//! token of it (`token`), the cluster CA (`ca.crt`) and its `namespace`, and the account's
//! uid (annotation `kubernetes.io/service-account.uid`); it is deleted when that account is
//! gone or was recreated. As in Kubernetes since 1.24, no such Secret is made unasked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bpfk_auth::service_account::{ObjectRef as TokenRef, ServiceAccountKey, TokenSubject};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::error::{is_not_found, Error, Result};
use crate::work_queue::WorkQueue;

/// The Secret type this controller fills.
pub const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// The annotation naming the ServiceAccount.
pub const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// The annotation holding the ServiceAccount's uid.
pub const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

pub struct Context {
    client: Client,
    accounts: Store<ServiceAccount>,
    key: ServiceAccountKey,
    ca_pem: String,
}

/// Runs the controller until its watches end; `key` signs the tokens, `ca_pem` is the
/// cluster CA.
pub async fn run(client: Client, key: ServiceAccountKey, ca_pem: String, c: u16) -> Result<()> {
    let secrets: Api<Secret> = Api::all(client.clone());
    let by_type = watcher::Config::default().fields(&format!("type={TOKEN_TYPE}"));
    let queue = WorkQueue::new("serviceaccount-token");
    let controller = queue.controller(secrets, by_type);
    let secret_store = controller.store();
    let (accounts, writer) = reflector::store();
    let account_events = reflector::reflector(
        writer,
        watcher(Api::all(client.clone()), Default::default()),
    )
    .touched_objects()
    .default_backoff();
    let controller = controller.watches_stream(
        account_events,
        queue.mapper(move |sa: ServiceAccount| secrets_of(&secret_store, &sa)),
    );
    let ctx = Arc::new(Context {
        client,
        accounts,
        key,
        ca_pem,
    });
    let results = controller
        .with_config(ControllerConfig::default().concurrency(c))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

/// The token Secrets that name `sa`.
fn secrets_of(store: &Store<Secret>, sa: &ServiceAccount) -> Vec<ObjectRef<Secret>> {
    let (ns, name) = (sa.namespace(), sa.name_any());
    let names_it =
        |s: &Secret| s.namespace() == ns && s.annotations().get(NAME_ANNOTATION) == Some(&name);
    let state = store.state();
    state
        .iter()
        .filter(|s| names_it(s))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

fn error_policy(s: Arc<Secret>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(secret = %crate::util::key(&s.metadata), error = %e, "cannot fill the token secret");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(secret: Arc<Secret>, ctx: Arc<Context>) -> Result<Action> {
    let Some(ns) = secret.namespace() else {
        return Ok(Action::await_change());
    };
    let Some(account) = secret.annotations().get(NAME_ANNOTATION).cloned() else {
        return Ok(Action::await_change());
    };
    if secret.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // the account store must have listed once before an absent account means deleted
    if ctx.accounts.wait_until_ready().await.is_err() {
        return Err(Error::CacheNotReady("serviceaccounts"));
    }
    let sa = ctx.accounts.get(&ObjectRef::new(&account).within(&ns));
    let recorded_uid = secret.annotations().get(UID_ANNOTATION);
    let live = sa.filter(|sa| recorded_uid.is_none_or(|uid| Some(uid) == sa.uid().as_ref()));
    let Some(sa) = live else {
        return delete(&ctx, &secret, &ns).await;
    };
    if let Some(updated) = filled(&secret, &sa, &ctx)? {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        api.replace(&secret.name_any(), &PostParams::default(), &updated)
            .await?;
        tracing::info!(secret = %crate::util::key(&secret.metadata), "filled the service account token");
    }
    Ok(Action::await_change())
}

/// The Secret with its token, CA and namespace when any is missing; `None` when complete.
fn filled(secret: &Secret, sa: &ServiceAccount, ctx: &Context) -> Result<Option<Secret>> {
    let data = secret.data.clone().unwrap_or_default();
    let uid = sa.uid().unwrap_or_default();
    let complete = ["token", "ca.crt", "namespace"]
        .iter()
        .all(|k| data.contains_key(*k))
        && secret.annotations().get(UID_ANNOTATION) == Some(&uid);
    if complete {
        return Ok(None);
    }
    let ns = secret.namespace().unwrap_or_default();
    let subject = TokenSubject {
        namespace: ns.clone(),
        service_account: TokenRef {
            name: sa.name_any(),
            uid: uid.clone(),
        },
        secret: Some(TokenRef {
            name: secret.name_any(),
            uid: secret.uid().unwrap_or_default(),
        }),
        ..Default::default()
    };
    let token = match data.get("token") {
        Some(t) => t.0.clone(),
        None => ctx
            .key
            .issue_legacy(&subject)
            .map_err(|e| Error::Invalid {
                object: crate::util::key(&secret.metadata),
                field: "data.token".into(),
                reason: e.to_string(),
            })?
            .into_bytes(),
    };
    let mut updated = secret.clone();
    let mut data: BTreeMap<String, ByteString> = data;
    data.insert("token".into(), ByteString(token));
    data.insert("ca.crt".into(), ByteString(ctx.ca_pem.clone().into_bytes()));
    data.insert("namespace".into(), ByteString(ns.into_bytes()));
    updated.data = Some(data);
    updated.string_data = None;
    updated.annotations_mut().insert(UID_ANNOTATION.into(), uid);
    Ok(Some(updated))
}

/// Deletes the token Secret of a gone ServiceAccount (only the one seen: uid precondition).
async fn delete(ctx: &Context, secret: &Secret, ns: &str) -> Result<Action> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let preconditions = Preconditions {
        uid: secret.uid(),
        resource_version: None,
    };
    let params = DeleteParams {
        preconditions: Some(preconditions),
        ..Default::default()
    };
    match api.delete(&secret.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(secret = %crate::util::key(&secret.metadata), "deleted the token secret of a removed service account")
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}
