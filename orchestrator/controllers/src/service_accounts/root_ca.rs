//! The root CA publisher: a `kube-root-ca.crt` ConfigMap holding the cluster CA
//! (`ca.crt`) in every active namespace, rewritten when it differs, so pods can verify the
//! API server they reach through the `kubernetes` Service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::error::{Error, Result};
use crate::work_queue::WorkQueue;

/// The ConfigMap's name (the projected token volume reads it).
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

pub struct Context {
    client: Client,
    config_maps: Store<ConfigMap>,
    ca_pem: String,
}

/// Runs the controller until its watches end; `ca_pem` is the cluster CA certificate.
pub async fn run(client: Client, ca_pem: String, concurrency: u16) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let (reader, writer) = kube::runtime::reflector::store();
    let by_name = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}"));
    let queue = WorkQueue::new("root-ca-cert-publisher");
    let controller = queue
        .controller(namespaces, watcher::Config::default())
        .watches_stream(
            kube::runtime::reflector(writer, watcher(config_maps, by_name))
                .touched_objects()
                .default_backoff(),
            queue.mapper(|cm: ConfigMap| cm.namespace().map(|ns| ObjectRef::new(&ns))),
        );
    let ctx = Arc::new(Context {
        client,
        config_maps: reader,
        ca_pem,
    });
    let results = controller
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

fn error_policy(ns: Arc<Namespace>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), error = %e, "cannot publish the root CA");
    Action::requeue(Duration::from_secs(2))
}

/// The ConfigMap's data.
fn data(ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())])
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let name = ns.name_any();
    if !super::active(&ns) {
        return Ok(Action::await_change());
    }
    let wanted = data(&ctx.ca_pem);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let stored = ctx
        .config_maps
        .get(&ObjectRef::new(CONFIG_MAP).within(&name));
    let result = match stored {
        Some(cm) if cm.data.as_ref() == Some(&wanted) => return Ok(Action::await_change()),
        Some(cm) => {
            let mut cm = (*cm).clone();
            cm.data = Some(wanted);
            cm.binary_data = None;
            api.replace(CONFIG_MAP, &PostParams::default(), &cm)
                .await
                .map(|_| ())
        }
        None => {
            let mut cm = ConfigMap {
                data: Some(wanted),
                ..Default::default()
            };
            cm.metadata.name = Some(CONFIG_MAP.into());
            cm.metadata.annotations = Some(BTreeMap::from([(
                "kubernetes.io/description".to_string(),
                DESCRIPTION.to_string(),
            )]));
            api.create(&PostParams::default(), &cm).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => tracing::info!(namespace = %name, "published the root CA"),
        Err(e) if matches!(crate::error::api_code(&e), Some(409 | 403)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}
