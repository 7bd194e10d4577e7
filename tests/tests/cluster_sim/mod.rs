//! Simulated cluster for scheduler and controller tests: Node objects plus a fake kubelet
//! loop that renews each node's Lease and marks the pods bound to it Running and Ready with
//! an IP from the node's pod CIDR. The scheduler and controllers run in-process as ordinary
//! API clients of a real bpfk-server on a real etcd.
//!
//! A pod annotated `fake-kubelet/ready: "false"` runs but stays not Ready until the
//! annotation changes. A node can be paused: it stops renewing its lease and handling pods.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfk_lab::server::Cluster;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// Annotation that keeps a pod not Ready while `"false"`.
pub const READY_ANNOTATION: &str = "fake-kubelet/ready";
/// Deadline for things the components should do "soon" (a correctness bound, not a speed test).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A cluster under test: etcd + bpfk-server processes (the server runs the scheduler and the
/// controllers as it does in production, unless switched off) and the fake kubelets.
pub struct Sim {
    pub cluster: Cluster,
    pub client: Client,
    pub kubelet: Arc<FakeKubelet>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Node lifecycle timings short enough for tests.
pub const FAST_NODE_FLAGS: &[&str] = &[
    "--node-monitor-grace-period=4s",
    "--node-monitor-period=500ms",
    "--default-unreachable-toleration-seconds=2",
    "--default-not-ready-toleration-seconds=2",
];

impl Sim {
    /// Starts etcd and bpfk-server (with its scheduler and/or controllers as asked), then the
    /// fake kubelet loop.
    pub async fn start(scheduler: bool, controllers: bool) -> Sim {
        Self::start_with(scheduler, controllers, &[]).await
    }

    /// [`Sim::start`] with `extra` server flags.
    pub async fn start_with(scheduler: bool, controllers: bool, extra: &[&'static str]) -> Sim {
        let mut flags: Vec<&'static str> = extra.to_vec();
        if !scheduler {
            flags.push("--disable-scheduler");
        }
        if controllers {
            flags.extend(FAST_NODE_FLAGS);
        } else {
            flags.push("--controllers=serviceaccount");
        }
        let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(&flags))
            .await
            .expect("cluster start");
        let client = cluster.client().await;
        ensure_namespace(&client, "kube-node-lease").await;
        let kubelet = Arc::new(FakeKubelet::new(client.clone()));
        let k = kubelet.clone();
        let tasks = vec![tokio::spawn(async move { k.run().await })];
        Sim {
            cluster,
            client,
            kubelet,
            tasks,
        }
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        self.cluster.server.log()
    }
}

/// Creates a namespace unless it exists.
pub async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// Polls `check` until it returns `Some`, panicking with `what` after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Node object as a kubelet registers it.
pub fn node_json(name: &str, labels: Value, cpu: &str, memory: &str, pods: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "fake kubelet is posting ready status",
                "lastHeartbeatTime": Timestamp::now().to_string(),
                "lastTransitionTime": Timestamp::now().to_string()}],
            "addresses": [{"type": "InternalIP", "address": "10.250.0.1"}, {"type": "Hostname", "address": name}]
        }
    })
}

/// Registers a node (create + status write, as a kubelet does) and lets the fake kubelet run it.
pub async fn add_node(sim: &Sim, name: &str, labels: Value, cpu: &str, memory: &str, pods: &str) {
    add_node_with_spec(sim, name, labels, cpu, memory, pods, json!({})).await
}

/// [`add_node`] with a node spec (taints, unschedulable) present from the start.
pub async fn add_node_with_spec(
    sim: &Sim,
    name: &str,
    labels: Value,
    cpu: &str,
    memory: &str,
    pods: &str,
    spec: Value,
) {
    let api: Api<Node> = Api::all(sim.client.clone());
    let mut body = node_json(name, labels, cpu, memory, pods);
    body["spec"] = spec;
    let node: Node = serde_json::from_value(body.clone()).unwrap();
    api.create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("create node {name}: {e}"));
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": body["status"]})),
    )
    .await
    .unwrap_or_else(|e| panic!("node {name} status: {e}"));
    sim.kubelet.manage(name);
}

/// Fake kubelets for every managed node, in one loop.
pub struct FakeKubelet {
    client: Client,
    nodes: Mutex<HashMap<String, Arc<AtomicBool>>>,
    next_ip: Mutex<HashMap<String, u32>>,
}

impl FakeKubelet {
    fn new(client: Client) -> Self {
        FakeKubelet {
            client,
            nodes: Mutex::new(HashMap::new()),
            next_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Starts running a node.
    pub fn manage(&self, node: &str) {
        self.nodes
            .lock()
            .unwrap()
            .insert(node.to_string(), Arc::new(AtomicBool::new(false)));
    }

    /// Stops (true) or resumes (false) a node's kubelet: lease renewal and pod handling.
    pub fn pause(&self, node: &str, paused: bool) {
        if let Some(flag) = self.nodes.lock().unwrap().get(node) {
            flag.store(paused, Ordering::SeqCst);
        }
    }

    fn active_nodes(&self) -> HashSet<String> {
        self.nodes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| !p.load(Ordering::SeqCst))
            .map(|(n, _)| n.clone())
            .collect()
    }

    async fn run(&self) {
        let mut last_renew = Instant::now() - Duration::from_secs(10);
        loop {
            let active = self.active_nodes();
            if last_renew.elapsed() >= Duration::from_millis(500) {
                for n in &active {
                    self.renew_lease(n).await;
                }
                last_renew = Instant::now();
            }
            if !active.is_empty() {
                self.sync_pods(&active).await;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn renew_lease(&self, node: &str) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let now = MicroTime(Timestamp::now());
        match api.get_opt(node).await {
            Ok(Some(mut lease)) => {
                lease.spec.get_or_insert_with(Default::default).renew_time = Some(now);
                let _ = api.replace(node, &PostParams::default(), &lease).await;
            }
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(node.to_string()),
                        namespace: Some("kube-node-lease".into()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(node.to_string()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(now.clone()),
                        acquire_time: Some(now),
                        ..Default::default()
                    }),
                };
                let _ = api.create(&PostParams::default(), &lease).await;
            }
            Err(_) => {}
        }
    }

    fn pod_ip(&self, node: &Node) -> Option<String> {
        let cidr = node.spec.as_ref()?.pod_cidr.clone()?;
        let base = cidr.split('/').next()?;
        let octets: Vec<u32> = base.split('.').filter_map(|o| o.parse().ok()).collect();
        if octets.len() != 4 {
            return None;
        }
        let mut next = self.next_ip.lock().unwrap();
        let n = next.entry(node.name_any()).or_insert(2);
        let ip = format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], *n);
        *n += 1;
        Some(ip)
    }

    async fn sync_pods(&self, active: &HashSet<String>) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let nodes: Api<Node> = Api::all(self.client.clone());
        let Ok(list) = pods.list(&ListParams::default()).await else {
            return;
        };
        let mut node_cache: BTreeMap<String, Option<Node>> = BTreeMap::new();
        for pod in list.items {
            let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if !active.contains(&node_name) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            if pod.metadata.deletion_timestamp.is_some() {
                // containers stopped at once: confirm the deletion
                let _ = api
                    .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            let want_ready =
                pod.annotations().get(READY_ANNOTATION).map(String::as_str) != Some("false");
            let status = pod.status.clone().unwrap_or_default();
            let has_ip = status.pod_ip.as_ref().is_some_and(|ip| !ip.is_empty());
            let is_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if has_ip && status.phase.as_deref() == Some("Running") && is_ready == want_ready {
                continue;
            }
            let ip = match status.pod_ip.clone().filter(|ip| !ip.is_empty()) {
                Some(ip) => ip,
                None => {
                    if !node_cache.contains_key(&node_name) {
                        node_cache.insert(
                            node_name.clone(),
                            nodes.get_opt(&node_name).await.ok().flatten(),
                        );
                    }
                    let Some(Some(node)) = node_cache.get(&node_name) else {
                        continue;
                    };
                    match self.pod_ip(node) {
                        Some(ip) => ip,
                        None => continue, // no pod CIDR yet
                    }
                }
            };
            let now = Timestamp::now().to_string();
            let ready = if want_ready { "True" } else { "False" };
            let patch = json!({"status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": "10.250.0.1",
                "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                    {"type": "Ready", "status": ready, "lastTransitionTime": now}
                ]
            }});
            let _ = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
        }
    }
}

/// Whether a pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node a pod is bound to.
pub fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// Lists pods in a namespace with a label selector.
pub async fn pods(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// A plain nginx pod (JSON) with optional extra spec fields.
pub fn pod_json(name: &str, labels: Value, extra_spec: Value, memory: &str) -> Value {
    let mut spec = json!({"containers": [{"name": "nginx", "image": "nginx:1.14.2",
        "ports": [{"containerPort": 80}],
        "resources": {"requests": {"cpu": "100m", "memory": memory}}}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

/// Creates a pod in `default`.
pub async fn create_pod(client: &Client, body: Value) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod: {e}"))
}
