//! A node lost from the cluster, in the multi-node lab (real etcd, bpfk-server, containerd and
//! `bpfk-agent --kubelet` with the eBPF datapath): node 2's underlay link goes down, so its
//! lease stops; within the node grace period (40 s) + the monitor period + 15 s its pods leave
//! the ready endpoints (the node lifecycle controller marks them not ready, as Kubernetes
//! does, long before the 300 s default toleration evicts them), and from then on every
//! request to the ClusterIP from node 1 is answered by node 1's pods. When the link comes
//! back the kubelet reports its pods ready again (it rewrites the status the controller
//! overwrote) and they are backends again.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static, kubectl and the eBPF
//! object (`cargo xtask build-ebpf`); fails loudly without them.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bpfk_lab::cluster::{Lab, LabOptions, UNDERLAY_IFACE};
use bpfk_lab::host::{require_root, require_tool};
use bpfk_lab::server;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

/// The controllers' defaults: `--node-monitor-grace-period` and `--node-monitor-period`.
const GRACE: Duration = Duration::from_secs(40);
const MONITOR: Duration = Duration::from_secs(5);
const REPLICAS: usize = 4;

fn kubectl(lab: &Lab, args: &[&str]) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ready endpoint addresses of the `nginx` Service, by node name.
async fn ready_backends(slices: &Api<EndpointSlice>) -> BTreeMap<String, usize> {
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=nginx"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut by_node = BTreeMap::new();
    for ep in list.iter().flat_map(|s| &s.endpoints) {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        if let (true, Some(node)) = (ready, ep.node_name.clone()) {
            *by_node.entry(node).or_insert(0) += ep.addresses.len();
        }
    }
    by_node
}

/// Polls `check` every 500 ms until it holds or `limit` passed since `since`; the time it
/// took.
async fn within<F, Fut>(
    what: &str,
    lab: &mut Lab,
    since: Instant,
    limit: Duration,
    mut check: F,
) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        lab.assert_running();
        if check().await {
            return since.elapsed();
        }
        assert!(since.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `count` requests to `url` from node `node`'s cgroup (the eBPF socket LB translates the
/// ClusterIP), each bounded to 5 s: the names of the pods that answered and the failures.
fn requests(lab: &Lab, node: &str, url: &str, count: usize) -> (Vec<String>, usize) {
    let fetch = [
        "busybox", "timeout", "5", "busybox", "wget", "-q", "-O", "-", url,
    ];
    let mut answers = Vec::new();
    let mut failures = 0;
    for _ in 0..count {
        let out = lab.node(node).exec(&fetch, true);
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !body.is_empty() {
            answers.push(body);
        } else {
            failures += 1;
        }
    }
    (answers, failures)
}

fn set_underlay(lab: &Lab, node: &str, up: bool) {
    let state = if up { "up" } else { "down" };
    let ns = lab.node(node).netns().to_string();
    let out = Command::new("ip")
        .args(["-n", &ns, "link", "set", UNDERLAY_IFACE, state])
        .output()
        .expect("ip runs");
    assert!(
        out.status.success(),
        "ip link set {state}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_nodes_pods_leave_the_service_within_the_grace_period_and_come_back() {
    require_root("the node failure test");
    require_tool(
        "kubectl",
        &["version", "--client"],
        "kubectl (v1.32 on PATH)",
    );
    let mut lab = Lab::start(LabOptions::for_test(format!("nf{}", std::process::id()), 2));
    let (n1, n2) = (
        lab.nodes()[0].name().to_string(),
        lab.nodes()[1].name().to_string(),
    );
    let client = lab.client();
    let deployment = server::manifest("nginx-deployment.yaml");
    let service = server::manifest("nginx-service.yaml");
    kubectl(
        &lab,
        &["apply", "-f", deployment.to_str().expect("utf-8 path")],
    );
    kubectl(
        &lab,
        &[
            "scale",
            "deployment",
            "nginx-deployment",
            &format!("--replicas={REPLICAS}"),
        ],
    );
    kubectl(
        &lab,
        &["apply", "-f", service.to_str().expect("utf-8 path")],
    );
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    within(
        "4 ready backends on both nodes",
        &mut lab,
        start,
        Duration::from_secs(180),
        || {
            let slices = slices.clone();
            let (n1, n2) = (n1.clone(), n2.clone());
            async move {
                let by_node = ready_backends(&slices).await;
                by_node.values().sum::<usize>() == REPLICAS
                    && by_node.contains_key(&n1)
                    && by_node.contains_key(&n2)
            }
        },
    )
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let vip = services
        .get("nginx")
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP");
    let url = format!("http://{vip}/hostname");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let on_node1: Vec<String> = pods
        .list(&ListParams::default().labels("app=nginx"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(n1.as_str()))
        .filter_map(|p| p.metadata.name)
        .collect();

    set_underlay(&lab, &n2, false);
    let cut = Instant::now();
    let limit = GRACE + MONITOR + Duration::from_secs(15);
    let dropped = within(
        "node 2's pods out of the ready endpoints",
        &mut lab,
        cut,
        limit,
        || {
            let slices = slices.clone();
            let n2 = n2.clone();
            async move { !ready_backends(&slices).await.contains_key(&n2) }
        },
    )
    .await;
    eprintln!("node 2's pods left the endpoints {dropped:?} after its link went down");
    // node 1's maps follow the EndpointSlice within moments; then no request fails
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (answers, failures) = requests(&lab, &n1, &url, 20);
    assert_eq!(
        failures, 0,
        "requests failed after node 2 left the endpoints; answers: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| on_node1.contains(a)),
        "answers {answers:?} not all from node 1's pods {on_node1:?}"
    );

    set_underlay(&lab, &n2, true);
    let back = Instant::now();
    within(
        "node 2's pods ready backends again",
        &mut lab,
        back,
        Duration::from_secs(90),
        || {
            let slices = slices.clone();
            let n2 = n2.clone();
            async move { ready_backends(&slices).await.contains_key(&n2) }
        },
    )
    .await;
    let (answers, failures) = requests(&lab, &n1, &url, 20);
    assert_eq!(failures, 0, "requests failed after node 2 came back");
    assert!(
        answers.iter().any(|a| !on_node1.contains(a)),
        "no answer from node 2's pods after it came back: {answers:?}"
    );
}
