//! The whole cluster end to end on one machine: the multi-node lab (`bpfk_lab::cluster`: real
//! etcd and bpfk-server, two node network namespaces on an underlay bridge, each with a real
//! containerd and a `bpfk-agent --kubelet` whose eBPF socket load balancer is attached to
//! the node's cgroup). The manifests' nginx Deployment (stand-in image: busybox httpd that
//! serves its pod's name at /hostname) and a ClusterIP Service run on both nodes; a client
//! pod on node 1 fetches `http://<clusterIP>/hostname` 30 times and gets answers from pods
//! on both nodes (same-node and cross-node through the datapath's peer routes). Each nginx
//! pod's processes are checked to sit in `<cgroup2>/bpfk-<node>/pod<uid>/…`, below the
//! cgroup the node's sock_addr programs are attached to.
//!
//! That the eBPF datapath did the translation is shown three ways: both nodes' pinned
//! service maps hold the ClusterIP frontend with one slot per backend; from node 1's
//! netns a process inside the node cgroup reaches the ClusterIP while the same command
//! outside that cgroup cannot (there is no iptables/IPVS service rule and no default
//! route: only the cgroup sock_addr programs translate the VIP); and once the Deployment
//! is deleted the frontend has no backends and connecting is refused.
//!
//! The lab is sealed: a pod reaches the API server's address on the host (its answers come
//! back through the lab), and while the lab runs no pod or service address resolves through
//! the host's default route; teardown removes exactly the routes the lab added.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static, kubectl and bpftool,
//! and the eBPF object (`cargo xtask build-ebpf`); fails loudly without them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bpfk_lab::cluster::{Binaries, Lab, LabOptions, PIN_ROOT};
use bpfk_lab::containerd::ipv4_in_cidr;
use bpfk_lab::host::{require_root, require_tool};
use bpfk_lab::server::{self, binary};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

/// Correctness deadline of each step (images are local; nothing is pulled).
const DEADLINE: Duration = Duration::from_secs(90);
const REPLICAS: usize = 4;
const REQUESTS: usize = 30;

async fn wait_for<T, F, Fut>(what: &str, lab: &mut Lab, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        lab.assert_running();
        let last = match f().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn tool(lab: &Lab, program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new(program);
    cmd.arg("--kubeconfig").arg(lab.kubeconfig()).args(args);
    let out: Output = match stdin {
        None => cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display())),
        Some(input) => {
            use std::io::Write;
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
            child.wait_with_output().expect("wait")
        }
    };
    server::success(&out)
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn pod_ip(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.pod_ip.as_deref())
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// Keys of a pinned hash map, as bytes (`bpftool map dump -j`).
fn pinned_map_keys(path: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bpftool: {e}"));
    assert!(
        out.status.success(),
        "bpftool map dump {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    entries
        .as_array()
        .expect("bpftool dump is an array")
        .iter()
        .filter_map(|e| e["key"].as_array())
        .map(|k| {
            k.iter()
                .filter_map(|b| b.as_str())
                .filter_map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16).ok())
                .collect()
        })
        .collect()
}

/// The service map key of `vip:port/TCP` at `slot` (ebpf/common `ServiceKey`: address and
/// port in network order, slot in host order, protocol, padding).
fn service_key(vip: Ipv4Addr, port: u16, slot: u16) -> Vec<u8> {
    let mut k = vip.octets().to_vec();
    k.extend(port.to_be_bytes());
    k.extend(slot.to_ne_bytes());
    k.push(bpfk_ebpf_common::PROTO_TCP);
    k.extend([0, 0, 0]);
    k
}

/// Slots (0 = master entry) of `vip:80/TCP` in a node's pinned service map.
fn frontend_slots(node: &str, vip: Ipv4Addr) -> BTreeSet<u16> {
    let path = Path::new(PIN_ROOT)
        .join(node)
        .join(bpfk_ebpf_common::SVC_MAP);
    let keys = pinned_map_keys(&path);
    (0..=64u16)
        .filter(|slot| keys.contains(&service_key(vip, 80, *slot)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_ip_answers_from_pods_on_both_nodes_through_ebpf() {
    require_root("the cluster end-to-end test");
    require_tool(
        "kubectl",
        &["version", "--client"],
        "kubectl (v1.32 on PATH)",
    );
    require_tool("bpftool", &["version"], "bpftool");
    let started = Instant::now();
    let pid = std::process::id();
    let binaries = Binaries {
        server: binary("bpfk-server"),
        agent: binary("bpfk-agent"),
    };
    let bpfk = binary("bpfk");
    let kubectl = Path::new("kubectl");
    let mut lab = Lab::start(LabOptions {
        id: format!("e2e{pid}"),
        nodes: 2,
        node_prefix: None,
        binaries,
        log_level: "info".into(),
        server_args: Vec::new(),
    });
    eprintln!("lab up after {:?}", started.elapsed());
    let (n1, n2) = (
        lab.nodes()[0].name().to_string(),
        lab.nodes()[1].name().to_string(),
    );
    let client = lab.client();

    // Both nodes Ready with their pod ranges, as the CLIs on the host see them through the
    // server's underlay address.
    let nodes_out = tool(&lab, &bpfk, &["get", "nodes"], None);
    for n in [&n1, &n2] {
        assert!(
            nodes_out
                .lines()
                .any(|l| l.starts_with(n.as_str()) && l.contains("Ready")),
            "bpfk get nodes:\n{nodes_out}"
        );
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let mut cidr_of = BTreeMap::new();
    for n in [&n1, &n2] {
        let node = nodes.get(n).await.expect("node");
        let cidr = node
            .spec
            .and_then(|s| s.pod_cidr)
            .expect("Ready lab node has a podCIDR");
        assert!(cidr.starts_with("10.244."), "{n} podCIDR {cidr}");
        cidr_of.insert(n.clone(), cidr);
    }
    assert_ne!(cidr_of[&n1], cidr_of[&n2]);

    // The manifests' Deployment (kubectl), scaled (bpfk), and the Service.
    let deployment = server::manifest("nginx-deployment.yaml");
    tool(
        &lab,
        kubectl,
        &["apply", "-f", deployment.to_str().expect("utf-8 path")],
        None,
    );
    tool(
        &lab,
        &bpfk,
        &[
            "scale",
            "deployment",
            "nginx-deployment",
            "--replicas",
            &REPLICAS.to_string(),
        ],
        None,
    );
    let service = server::manifest("nginx-service.yaml");
    tool(
        &lab,
        kubectl,
        &["apply", "-f", service.to_str().expect("utf-8 path")],
        None,
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let vip: Ipv4Addr = services
        .get("nginx")
        .await
        .expect("service nginx")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP")
        .parse()
        .expect("IPv4 clusterIP");
    // inside the service range 10.96.0.0/12
    assert!(
        ipv4_in_cidr(&vip.to_string(), "10.96.0.0/12"),
        "clusterIP {vip}"
    );

    // All replicas Running with 10.244 addresses from their node's range, on both nodes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nginx = ListParams::default().labels("app=nginx");
    let running = wait_for("nginx pods Running on both nodes", &mut lab, || async {
        let list = pods.list(&nginx).await.map_err(|e| e.to_string())?;
        let ready: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| phase(p) == "Running" && pod_ip(p).is_some())
            .collect();
        let on: BTreeSet<&str> = ready.iter().map(node_of).collect();
        if ready.len() == REPLICAS && on.len() == 2 {
            Ok(ready)
        } else {
            Err(format!("{} Running on {on:?}", ready.len()))
        }
    })
    .await;
    let mut node_of_pod = BTreeMap::new();
    for p in &running {
        let (name, node, ip) = (
            p.metadata.name.clone().expect("name"),
            node_of(p).to_string(),
            pod_ip(p).expect("podIP").to_string(),
        );
        assert!(
            ipv4_in_cidr(&ip, &cidr_of[&node]),
            "{name} on {node}: podIP {ip} outside {}",
            cidr_of[&node]
        );
        // Each pod serves its own name (the sandbox hostname) at /hostname: checked
        // directly from its node's netns, no service involved.
        let addr = format!("{ip}:80");
        let deadline = Instant::now() + DEADLINE;
        let (status, body) = loop {
            match lab.node(&node).http_get(&addr, "/hostname") {
                Ok((s, b)) if s.contains(" 200") => break (s, b),
                other => assert!(
                    Instant::now() < deadline,
                    "{name} does not serve /hostname on {addr}: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(body.trim(), name, "{status}");
        // Its processes sit below the node cgroup the socket load balancer is attached to
        // (runc joins the cgroup2 hierarchy too on a v1+v2 hybrid host).
        let uid = p.metadata.uid.clone().expect("uid");
        let pod_cgroup = lab.node(&node).cgroup().join(format!("pod{uid}"));
        let procs: usize = std::fs::read_dir(&pod_cgroup)
            .unwrap_or_else(|e| panic!("{name}: no pod cgroup {}: {e}", pod_cgroup.display()))
            .flatten()
            .filter(|c| c.path().is_dir())
            .map(|c| {
                std::fs::read_to_string(c.path().join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum();
        assert!(
            procs >= 2,
            "{name}: {procs} processes under {} (want the sandbox's and the container's)",
            pod_cgroup.display()
        );
        node_of_pod.insert(name, node);
    }

    // Sealed: a pod on node 2 reaches the API server on the host; pod and service addresses
    // never resolve through the host's default route.
    let pod_addrs: Vec<String> = running
        .iter()
        .filter_map(pod_ip)
        .map(str::to_string)
        .collect();
    assert_pod_reaches_the_api_server(&mut lab, &pods, &n2).await;
    assert_pod_acts_as_its_service_account(&mut lab, &pods, &n2).await;
    assert_host_routes_stay_in_the_lab(&lab, &pod_addrs, &[vip.to_string(), "10.111.2.3".into()]);
    let host_routes = lab.host_routes();
    assert!(
        host_routes.len() >= 4,
        "the lab's host routes: {host_routes:?}"
    );

    // The EndpointSlice lists every replica, and both agents programmed the frontend:
    // master entry plus one slot per backend in the pinned service map.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    wait_for("EndpointSlice of nginx", &mut lab, || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=nginx"))
            .await
            .map_err(|e| e.to_string())?;
        let n: usize = list.items.iter().map(|s| s.endpoints.len()).sum();
        (n == REPLICAS)
            .then_some(())
            .ok_or(format!("{n} endpoints"))
    })
    .await;
    let want: BTreeSet<u16> = (0..=REPLICAS as u16).collect();
    for n in [&n1, &n2] {
        wait_for(&format!("{n}'s pinned service map"), &mut lab, || {
            let slots = frontend_slots(n, vip);
            let want = want.clone();
            async move {
                (slots == want)
                    .then_some(())
                    .ok_or(format!("slots {slots:?}"))
            }
        })
        .await;
    }

    // The client pod on node 1 fetches the ClusterIP REQUESTS times.
    // (busybox 1.35's `wget -T` segfaults: `busybox timeout` bounds each request instead)
    let script = format!(
        "for i in $(seq 1 {REQUESTS}); do busybox timeout 5 wget -q -O - http://{vip}/hostname || echo FAILED; done"
    );
    let client_pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "nodeName": n1,
            "restartPolicy": "Never",
            "containers": [{"name": "client", "image": "busybox:1.36", "command": ["sh", "-c", script]}]
        }
    }))
    .expect("client pod");
    pods.create(&PostParams::default(), &client_pod)
        .await
        .expect("create client pod");
    wait_for("client pod Succeeded", &mut lab, || async {
        let p = pods.get("client").await.map_err(|e| e.to_string())?;
        match phase(&p) {
            "Succeeded" => Ok(()),
            "Failed" => panic!("client pod failed: {:?}", p.status),
            other => Err(other.to_string()),
        }
    })
    .await;
    let log = lab.node(&n1).container_log("default", "client", "client");
    // The same log through the API server (pods/log proxied to node 1's kubelet).
    assert_eq!(
        tool(&lab, &bpfk, &["logs", "client"], None),
        log,
        "bpfk logs client"
    );
    let answers: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(answers.len(), REQUESTS, "client log:\n{log}");
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &answers {
        let node = node_of_pod
            .get(*a)
            .unwrap_or_else(|| panic!("answer {a:?} is no nginx pod; client log:\n{log}"));
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    eprintln!("client answers per node: {per_node:?}");
    assert!(
        per_node.contains_key(n1.as_str()) && per_node.contains_key(n2.as_str()),
        "answers came from {per_node:?}, not from both nodes; client log:\n{log}"
    );

    // Same netns, same command: only a process in the node's cgroup gets the ClusterIP
    // translated (no default route and no service rules in the node netns).
    let url = format!("http://{vip}/hostname");
    let fetch = [
        "busybox",
        "timeout",
        "5",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        url.as_str(),
    ];
    let node1 = lab.node(&n1);
    let inside = node1.exec(&fetch, true);
    let inside_out = String::from_utf8_lossy(&inside.stdout).trim().to_string();
    assert!(
        inside.status.success() && node_of_pod.contains_key(&inside_out),
        "wget in {}'s cgroup: {} {inside_out} {}",
        n1,
        inside.status,
        String::from_utf8_lossy(&inside.stderr)
    );
    let outside = node1.exec(&fetch, false);
    assert!(
        !outside.status.success(),
        "wget outside the node cgroup reached the ClusterIP: {}",
        String::from_utf8_lossy(&outside.stdout)
    );

    // Deleting the Deployment removes its pods; the frontend loses its backends and the
    // socket load balancer refuses connections to the ClusterIP.
    tool(
        &lab,
        kubectl,
        &["delete", "deployment", "nginx-deployment"],
        None,
    );
    wait_for("nginx pods gone", &mut lab, || async {
        let n = pods
            .list(&nginx)
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        (n == 0).then_some(()).ok_or(format!("{n} pods left"))
    })
    .await;
    for n in [&n1, &n2] {
        wait_for(
            &format!("{n}'s frontend without backends"),
            &mut lab,
            || {
                let slots = frontend_slots(n, vip);
                async move {
                    (slots == BTreeSet::from([0]))
                        .then_some(())
                        .ok_or(format!("slots {slots:?}"))
                }
            },
        )
        .await;
    }
    let refused = lab.node(&n1).exec(&fetch, true);
    assert!(
        !refused.status.success(),
        "ClusterIP without endpoints answered: {}",
        String::from_utf8_lossy(&refused.stdout)
    );

    // Deleting the Service removes the frontend from both nodes' maps.
    pods.delete("client", &DeleteParams::default())
        .await
        .expect("delete client");
    services
        .delete("nginx", &DeleteParams::default())
        .await
        .expect("delete service");
    for n in [&n1, &n2] {
        wait_for(&format!("{n}'s frontend removed"), &mut lab, || {
            let slots = frontend_slots(n, vip);
            async move {
                slots
                    .is_empty()
                    .then_some(())
                    .ok_or(format!("slots {slots:?}"))
            }
        })
        .await;
    }
    // The log files are plain text: no ANSI colour codes.
    for (what, log) in std::iter::once(("bpfk-server", lab.server_log()))
        .chain(lab.nodes().iter().map(|n| (n.name(), n.agent_log())))
    {
        assert!(
            !log.is_empty() && !log.contains('\x1b'),
            "{what}'s log file has ANSI codes or is empty"
        );
    }
    eprintln!("cluster e2e done after {:?}", started.elapsed());
    drop(lab);
    let table = ip(&["route", "show", "table", "main"]).0;
    for route in &host_routes {
        assert!(
            !route_listed(route, &table),
            "teardown left the host route {route:?}:\n{table}"
        );
    }
}

/// `ip ARGS` in the host's namespace: (stdout, stderr, success).
fn ip(args: &[&str]) -> (String, String, bool) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// Whether `route` (`ip route` arguments) is a line of `table` (`ip route show`).
fn route_listed(route: &str, table: &str) -> bool {
    let want: Vec<&str> = route.split_whitespace().collect();
    table.lines().any(|line| {
        let have: Vec<&str> = line.split_whitespace().collect();
        want.iter().all(|w| have.contains(w))
    })
}

/// A kubectl pod on `node` reads the API server's /version at its host address over TLS,
/// trusting the cluster CA and with a client certificate of its own (from a Secret): the
/// address is reachable from pods and the server's certificate names it.
async fn assert_pod_reaches_the_api_server(lab: &mut Lab, pods: &Api<Pod>, node: &str) {
    let image = lab.push_kubectl_image();
    let server = lab.api_url();
    let identity = lab.issue_client_cert("lab:api-client", &[]);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(lab.client(), "default");
    let credentials: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-client-tls"},
            "stringData": {"ca.crt": lab.credentials().ca_pem, "tls.crt": identity.cert_pem,
                           "tls.key": identity.key_pem},
        }))
        .expect("credentials Secret");
    secrets
        .create(&PostParams::default(), &credentials)
        .await
        .expect("create the credentials Secret");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api-client"},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{"name": "kubectl", "image": image,
                "args": ["--server", server, "--certificate-authority", "/tls/ca.crt",
                         "--client-certificate", "/tls/tls.crt", "--client-key", "/tls/tls.key",
                         "--request-timeout", "10s", "get", "--raw", "/version"],
                "volumeMounts": [{"name": "tls", "mountPath": "/tls"}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": "api-client-tls"}}]
        }
    }))
    .expect("api-client pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create api-client pod");
    let phase = wait_for("api-client pod finished", lab, || async {
        let p = pods.get("api-client").await.map_err(|e| e.to_string())?;
        match phase(&p) {
            done @ ("Succeeded" | "Failed") => Ok(done.to_string()),
            other => Err(other.to_string()),
        }
    })
    .await;
    let log = lab
        .node(node)
        .container_log("default", "api-client", "kubectl");
    assert!(
        phase == "Succeeded" && log.contains("gitVersion"),
        "a pod on {node} could not reach the API server at {server} ({phase}): {log}"
    );
    pods.delete("api-client", &DeleteParams::default())
        .await
        .expect("delete api-client");
}

/// The script of the service-account client pod: kubectl's in-cluster configuration (the
/// mounted token, CA and namespace, and the `KUBERNETES_SERVICE_*` variables), so the API
/// through the `kubernetes` Service (10.96.0.1:443, the eBPF datapath's translation to the
/// API server's address), retried until RBAC lets it list pods.
const SA_CLIENT_SCRIPT: &str = r#"
sa=/var/run/secrets/kubernetes.io/serviceaccount
# no kubectl flags that change the client config: with one it ignores the in-cluster config
k() { timeout 15 kubectl "$@"; }
echo "namespace=$(cat $sa/namespace) api=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
n=0
until k get pods -o name; do n=$((n+1)); [ $n -gt 60 ] && exit 1; sleep 1; done
k auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.extra}'
"#;

/// A pod running as ServiceAccount `sa-client` (automounted token volume) reaches the API
/// through the `kubernetes` Service with that token: forbidden to list pods until a
/// RoleBinding grants `view`, then allowed, and the server sees it as the account of that
/// pod.
async fn assert_pod_acts_as_its_service_account(lab: &mut Lab, pods: &Api<Pod>, node: &str) {
    let image = lab.push_kubectl_image();
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(lab.client(), "default");
    let account = serde_json::from_value(serde_json::json!({"metadata": {"name": "sa-client"}}))
        .expect("ServiceAccount");
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create sa-client");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sa-client"},
        "spec": {
            "nodeName": node, "restartPolicy": "Never", "serviceAccountName": "sa-client",
            "containers": [{"name": "kubectl", "image": image,
                            "command": ["sh", "-c", SA_CLIENT_SCRIPT]}]
        }
    }))
    .expect("sa-client pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create sa-client pod");
    let kubelet = lab.node(node).kubelet_client().clone();
    let log = move || {
        let path = "/containerLogs/default/sa-client/kubectl";
        match kubelet.request("GET", path, None) {
            Ok((200, body)) => Ok(body),
            Ok((code, body)) => Err(format!("{code} {body}")),
            Err(e) => Err(e.to_string()),
        }
    };
    let forbidden = r#"User "system:serviceaccount:default:sa-client" cannot list resource "pods""#;
    wait_for("the service account to be refused", lab, || {
        let text = log();
        async move {
            let text = text?;
            text.contains(forbidden).then_some(()).ok_or(text)
        }
    })
    .await;
    let binding = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "sa-client-view", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa-client", "namespace": "default"}]}"#;
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings";
    let (code, body) = lab
        .credentials()
        .request("POST", path, Some(binding))
        .expect("POST");
    assert_eq!(code, 201, "{body}");
    let phase = wait_for("the sa-client pod to finish", lab, || async {
        let p = pods.get("sa-client").await.map_err(|e| e.to_string())?;
        match phase(&p) {
            done @ ("Succeeded" | "Failed") => Ok(done.to_string()),
            other => Err(other.to_string()),
        }
    })
    .await;
    let text = log().unwrap_or_else(|e| e);
    assert!(
        phase == "Succeeded"
            && text.contains("namespace=default api=10.96.0.1:443")
            && text.contains("pod/sa-client")
            && text.contains("system:serviceaccount:default:sa-client")
            && text.contains("authentication.kubernetes.io/pod-name"),
        "the pod acting as its service account ({phase}): {text}"
    );
    pods.delete("sa-client", &DeleteParams::default())
        .await
        .expect("delete sa-client");
}

/// `ip route get` in the host's namespace sends every pod and service address into the lab
/// (the lab's host veth) or nowhere (unreachable), never through the default route.
fn assert_host_routes_stay_in_the_lab(lab: &Lab, pod_addrs: &[String], service_addrs: &[String]) {
    let default = ip(&["route", "show", "default"]).0;
    let unowned = ["10.244.250.1".to_string(), "10.96.0.1".to_string()];
    for addr in pod_addrs.iter().chain(service_addrs).chain(&unowned) {
        let (out, err, ok) = ip(&["route", "get", addr]);
        let into_lab = ok && out.contains(&format!(" dev {} ", lab.host_iface()));
        // an unreachable route answers EHOSTUNREACH
        let nowhere = !ok && err.contains("No route to host");
        assert!(
            into_lab || nowhere,
            "ip route get {addr} leaves the lab: {out}{err} (default route: {default})"
        );
        assert!(
            pod_addrs.contains(addr) == into_lab,
            "ip route get {addr}: pods go into the lab, all else nowhere: {out}{err}"
        );
    }
}
