//! Endpoints and EndpointSlice controllers: for every Service with a selector, the IPs and
//! ports of the pods it selects, with ready/serving/terminating conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::error::{is_conflict, is_not_found, Error, Result};
use crate::util::{controlled_by, is_pod_ready, key, owner_ref, safe_encode};
use crate::work_queue::WorkQueue;

/// Label naming the Service of an EndpointSlice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice, as Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    endpoints: bool,
    endpoint_slices: bool,
}

/// Runs the controller (Endpoints and/or EndpointSlices) until its watches end.
/// Pods come from the process's shared pod informer: its store and a subscription to its
/// changes.
pub async fn run(
    client: Client,
    concurrency: u16,
    endpoints: bool,
    endpoint_slices: bool,
    pods: Store<Pod>,
    pod_changes: impl Stream<Item = Arc<Pod>> + Send + 'static,
) -> Result<()> {
    let wc = watcher::Config::default();
    let (slice_store, slice_writer) = reflector::store();
    let slices = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        wc.clone()
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
    )
    .default_backoff()
    .reflect(slice_writer)
    .touched_objects();
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods,
        slices: slice_store,
        endpoints,
        endpoint_slices,
    });
    let queue = WorkQueue::new("endpoint");
    let controller = queue.controller(Api::<Service>::all(client.clone()), wc.clone());
    let services = controller.store();
    let mut controller = controller
        .watches_shared_stream(
            pod_changes,
            queue.mapper(move |pod: Arc<Pod>| services_in_namespace(&services, &pod)),
        )
        .watches_stream(slices, queue.owners::<EndpointSlice, Service>());
    if endpoints {
        let owners = queue.owners::<Endpoints, Service>();
        controller = controller.watches(Api::<Endpoints>::all(client), wc, owners);
    }
    let results = controller
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

/// A pod change may concern every Service of its namespace (it may have started or stopped
/// matching a selector).
fn services_in_namespace(services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let ns = pod.metadata.namespace.as_deref();
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == ns)
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|m| !m.is_empty())
        })
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

fn error_policy(svc: Arc<Service>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(service = %key(&svc.metadata), error = %e, "endpoints sync failed");
    Action::requeue(Duration::from_secs(2))
}

/// A resolved port: `(name, port, protocol)`.
pub type ResolvedPort = (Option<String>, i32, String);

/// One pod's entry for a Service.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEndpoint {
    /// Pod IP.
    pub ip: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: Option<String>,
    /// Node the pod runs on.
    pub node: Option<String>,
    /// The pod's `spec.hostname` when its `spec.subdomain` names this Service (its DNS
    /// name `<hostname>.<service>.<ns>.svc.<domain>`).
    pub hostname: Option<String>,
    /// Ready condition True and not terminating.
    pub ready: bool,
    /// Ready condition True (even while terminating).
    pub serving: bool,
    /// Being deleted.
    pub terminating: bool,
    /// The Service ports resolved for this pod (`(name, port, protocol)`), in Service order.
    pub ports: Vec<ResolvedPort>,
}

/// Resolves a Service port's targetPort for a pod: a number as is, a name through the pod's
/// container ports (matching protocol). `None` when the name is not found.
pub fn resolve_target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.iter().flatten().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// The endpoints a Service has: pods it selects that have an IP and are not finished.
pub fn pod_endpoints(svc: &Service, pods: &[Arc<Pod>]) -> Vec<PodEndpoint> {
    let Some(spec) = svc.spec.as_ref() else {
        return vec![];
    };
    let Some(sel) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return vec![];
    };
    let ns = svc.metadata.namespace.as_deref();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let mut out: Vec<PodEndpoint> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| {
            let l = p.metadata.labels.as_ref();
            sel.iter().all(|(k, v)| l.and_then(|l| l.get(k)) == Some(v))
        })
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
            let terminating = p.metadata.deletion_timestamp.is_some();
            let serving = is_pod_ready(p) || publish_not_ready;
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|sp| {
                    resolve_target_port(sp, p).map(|port| {
                        (
                            sp.name.clone(),
                            port,
                            sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        )
                    })
                })
                .collect();
            Some(PodEndpoint {
                ip,
                name: p.name_any(),
                uid: p.metadata.uid.clone(),
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                hostname: dns_hostname(p, svc),
                ready: serving && !terminating,
                serving,
                terminating,
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| a.ip.cmp(&b.ip).then_with(|| a.name.cmp(&b.name)));
    out
}

/// The endpoint hostname of `pod` under `svc`, as the endpoints controllers set it.
fn dns_hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()).then_some(hostname)
}

fn target_ref(ns: &str, e: &PodEndpoint) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(ns.to_string()),
        name: Some(e.name.clone()),
        uid: e.uid.clone(),
        ..Default::default()
    }
}

/// Endpoints subsets: pods grouped by their resolved port list; ready pods in `addresses`,
/// others (not terminating) in `notReadyAddresses`.
pub fn subsets(ns: &str, eps: &[PodEndpoint]) -> Vec<EndpointSubset> {
    type Addresses = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<ResolvedPort>, Addresses> = BTreeMap::new();
    for e in eps {
        if e.ports.is_empty() || (e.terminating && !e.ready) {
            continue;
        }
        let addr = EndpointAddress {
            ip: e.ip.clone(),
            node_name: e.node.clone(),
            target_ref: Some(target_ref(ns, e)),
            hostname: e.hostname.clone(),
        };
        let g = groups.entry(e.ports.clone()).or_default();
        if e.ready {
            g.0.push(addr);
        } else {
            g.1.push(addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: Some(
                ports
                    .into_iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name,
                        port,
                        protocol: Some(protocol),
                        app_protocol: None,
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// EndpointSlice contents: pods grouped by port list, chunks of at most
/// [`MAX_ENDPOINTS_PER_SLICE`]. Each item is `(ports, endpoints)`.
pub fn slice_contents(ns: &str, eps: &[PodEndpoint]) -> Vec<(Vec<SlicePort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
    for e in eps {
        groups.entry(e.ports.clone()).or_default().push(Endpoint {
            addresses: vec![e.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(e.ready),
                serving: Some(e.serving),
                terminating: Some(e.terminating),
            }),
            node_name: e.node.clone(),
            target_ref: Some(target_ref(ns, e)),
            hostname: e.hostname.clone(),
            ..Default::default()
        });
    }
    let mut out = Vec::new();
    for (ports, endpoints) in groups {
        let ports: Vec<SlicePort> = ports
            .into_iter()
            .map(|(name, port, protocol)| SlicePort {
                name,
                port: Some(port),
                protocol: Some(protocol),
                app_protocol: None,
            })
            .collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

/// Deterministic slice name: `<service>-<5 chars of the service uid's hash>[-<index>]`.
pub fn slice_name(svc: &Service, index: usize) -> String {
    let uid = svc.metadata.uid.as_deref().unwrap_or("");
    let mut h: u32 = 0x811c_9dc5;
    for b in uid.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let suffix: String = safe_encode(&h.to_string()).chars().take(5).collect();
    let base = format!("{}-{suffix}", svc.name_any());
    if index == 0 {
        base
    } else {
        format!("{base}-{index}")
    }
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    if !has_selector {
        // Services without a selector have their endpoints managed by someone else.
        return Ok(Action::await_change());
    }
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::CacheNotReady("pods"))?;
    let ns = svc.namespace().unwrap_or_else(|| "default".into());
    let eps = pod_endpoints(&svc, &ctx.pods.state());
    if ctx.endpoints {
        sync_endpoints(&ctx, &svc, &ns, &eps).await?;
    }
    if ctx.endpoint_slices {
        ctx.slices
            .wait_until_ready()
            .await
            .map_err(|_| Error::CacheNotReady("endpointslices"))?;
        sync_slices(&ctx, &svc, &ns, &eps).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn sync_endpoints(ctx: &Context, svc: &Service, ns: &str, eps: &[PodEndpoint]) -> Result<()> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let name = svc.name_any();
    let want_subsets = subsets(ns, eps);
    let existing = match api.get_opt(&name).await? {
        Some(e) => e,
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.to_string()),
                    labels: svc.metadata.labels.clone(),
                    owner_references: Some(vec![owner_ref(svc)]),
                    ..Default::default()
                },
                subsets: (!want_subsets.is_empty()).then_some(want_subsets.clone()),
            };
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) => api.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let current = existing.subsets.clone().unwrap_or_default();
    if current == want_subsets && existing.metadata.labels == svc.metadata.labels {
        return Ok(());
    }
    let mut updated = existing.clone();
    updated.metadata.labels = svc.metadata.labels.clone();
    updated.subsets = (!want_subsets.is_empty()).then_some(want_subsets);
    api.replace(&name, &PostParams::default(), &updated).await?;
    Ok(())
}

async fn sync_slices(ctx: &Context, svc: &Service, ns: &str, eps: &[PodEndpoint]) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns) && controlled_by(&s.metadata, &uid))
        .collect();
    let mut contents = slice_contents(ns, eps);
    if contents.is_empty() {
        // a Service without endpoints still has one (empty) slice
        contents.push((vec![], vec![]));
    }
    let mut slice_labels = svc.metadata.labels.clone().unwrap_or_default();
    slice_labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    slice_labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut wanted_names = Vec::new();
    for (i, (ports, endpoints)) in contents.into_iter().enumerate() {
        let name = slice_name(svc, i);
        wanted_names.push(name.clone());
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(slice_labels.clone()),
                owner_references: Some(vec![owner_ref(svc)]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(ports),
        };
        match existing
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        {
            Some(cur) => {
                if cur.endpoints == slice.endpoints
                    && cur.ports.clone().unwrap_or_default()
                        == slice.ports.clone().unwrap_or_default()
                    && cur.metadata.labels == slice.metadata.labels
                {
                    continue;
                }
                let mut updated = slice;
                updated.metadata.resource_version = cur.metadata.resource_version.clone();
                updated.metadata.uid = cur.metadata.uid.clone();
                api.replace(&name, &PostParams::default(), &updated).await?;
            }
            None => match api.create(&PostParams::default(), &slice).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {
                    // created meanwhile (our cache lags): overwrite with the current version
                    let cur = api.get(&name).await?;
                    let mut updated = slice;
                    updated.metadata.resource_version = cur.metadata.resource_version;
                    api.replace(&name, &PostParams::default(), &updated).await?;
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
    for s in existing {
        let name = s.name_any();
        if !wanted_names.contains(&name) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"app": "web"}, "ports": ports}
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, terminating: bool, app: &str) -> Arc<Pod> {
        let mut meta =
            json!({"name": name, "namespace": "default", "uid": name, "labels": {"app": app}});
        if terminating {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": meta,
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn pods_with_this_service_as_subdomain_get_their_hostname() {
        let s = svc(json!([{"name": "http", "port": 80}]));
        let named = |name: &str, subdomain: &str| {
            let mut p = (*pod(name, Some("10.244.0.5"), true, false, "web")).clone();
            let spec = p.spec.as_mut().unwrap();
            spec.hostname = Some(format!("{name}-host"));
            spec.subdomain = Some(subdomain.into());
            Arc::new(p)
        };
        let eps = pod_endpoints(&s, &[named("a", "web"), named("b", "other")]);
        assert_eq!(eps[0].hostname.as_deref(), Some("a-host"));
        assert_eq!(eps[1].hostname, None);
        let slices = slice_contents("default", &eps);
        assert_eq!(slices[0].1[0].hostname.as_deref(), Some("a-host"));
        let subsets = subsets("default", &eps);
        let addrs = subsets[0].addresses.as_ref().unwrap();
        assert_eq!(addrs[0].hostname.as_deref(), Some("a-host"));
    }

    #[test]
    fn target_port_by_number_and_name() {
        let s = svc(json!([
            {"name": "a", "port": 80, "targetPort": "http"},
            {"name": "b", "port": 81, "targetPort": 9090},
            {"name": "c", "port": 82},
            {"name": "d", "port": 83, "targetPort": "missing"}
        ]));
        let p = pod("p1", Some("10.244.0.5"), true, false, "web");
        let ports = s.spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!(resolve_target_port(&ports[0], &p), Some(8080));
        assert_eq!(resolve_target_port(&ports[1], &p), Some(9090));
        assert_eq!(resolve_target_port(&ports[2], &p), Some(82));
        assert_eq!(resolve_target_port(&ports[3], &p), None);
    }

    #[test]
    fn endpoints_follow_readiness() {
        let s = svc(json!([{"name": "http", "port": 80, "targetPort": "http"}]));
        let pods = vec![
            pod("ready", Some("10.244.0.2"), true, false, "web"),
            pod("starting", Some("10.244.0.3"), false, false, "web"),
            pod("no-ip", None, false, false, "web"),
            pod("other", Some("10.244.0.9"), true, false, "db"),
            pod("leaving", Some("10.244.0.4"), true, true, "web"),
        ];
        let eps = pod_endpoints(&s, &pods);
        assert_eq!(eps.len(), 3);
        let subs = subsets("default", &eps);
        assert_eq!(subs.len(), 1);
        let ips = |a: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            a.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        assert_eq!(ips(&subs[0].addresses), vec!["10.244.0.2"]);
        assert_eq!(ips(&subs[0].not_ready_addresses), vec!["10.244.0.3"]);
        assert_eq!(subs[0].ports.as_ref().unwrap()[0].port, 8080);

        let slices = slice_contents("default", &eps);
        assert_eq!(slices.len(), 1);
        let (ports, endpoints) = &slices[0];
        assert_eq!(ports[0].port, Some(8080));
        let cond = |ip: &str| {
            endpoints
                .iter()
                .find(|e| e.addresses[0] == ip)
                .unwrap()
                .conditions
                .clone()
                .unwrap()
        };
        assert_eq!(
            cond("10.244.0.2"),
            EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false)
            }
        );
        assert_eq!(
            cond("10.244.0.3"),
            EndpointConditions {
                ready: Some(false),
                serving: Some(false),
                terminating: Some(false)
            }
        );
        assert_eq!(
            cond("10.244.0.4"),
            EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(true)
            }
        );
        assert_eq!(
            endpoints[0].target_ref.as_ref().unwrap().name.as_deref(),
            Some("ready")
        );
        assert_eq!(endpoints[0].node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn slices_are_chunked_and_named_stably() {
        let s = svc(json!([{"port": 80}]));
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    Some(&format!("10.244.{}.{}", i / 200, i % 200 + 1)),
                    true,
                    false,
                    "web",
                )
            })
            .collect();
        let eps = pod_endpoints(&s, &pods);
        let slices = slice_contents("default", &eps);
        assert_eq!(
            slices.iter().map(|s| s.1.len()).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        assert_eq!(slice_name(&s, 0), slice_name(&s, 0));
        assert!(slice_name(&s, 0).starts_with("web-"));
        assert_eq!(slice_name(&s, 2), format!("{}-2", slice_name(&s, 0)));
    }
}
