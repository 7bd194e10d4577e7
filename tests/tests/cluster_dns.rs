//! Cluster DNS end to end in the lab (`bpfk_lab::cluster`: real etcd, bpfk-server, two node
//! netns each with containerd and `bpfk-agent --kubelet --dns-no-forward`):
//!
//! * bpfk-server made `kube-system/kube-dns` (10.96.0.10, 53/UDP and 53/TCP);
//! * a busybox pod's resolv.conf is the ClusterFirst one (`nameserver 10.96.0.10`, the
//!   namespace's search path, `ndots:5`), and through it — the eBPF socket load balancer
//!   steering 10.96.0.10:53 to its node's own DNS server — `nslookup nginx` and
//!   `nginx.default.svc.cluster.local` give the ClusterIP, the SRV of the named port
//!   points at the Service, a headless Service lists its ready pod and not the unready one,
//!   the ready pod's own `hostname.subdomain` record resolves, and `wget` fetches
//!   `http://nginx/`, `http://nginx.default/` and `http://nginx.default.svc.cluster.local/`
//!   through the datapath by name; its /etc/hosts is the kubelet's, with its own
//!   `hostname.subdomain.<ns>.svc.cluster.local` line;
//! * straight from the test to a node's DNS server: a name outside the cluster is REFUSED
//!   at once (forwarding is off: no packet leaves the lab, whose nodes have no default
//!   route anyway), and a deleted Service is NXDOMAIN as soon as the agent's watch sees it.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static and the eBPF object
//! (`cargo xtask build-ebpf`); fails loudly without them.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bpfk_lab::cluster::{Lab, LabOptions};
use bpfk_lab::host::require_root;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

/// Correctness deadline of each step (nginx is pulled from the lab registry).
const DEADLINE: Duration = Duration::from_secs(90);

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create")
}

fn pod_ip(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// One query over UDP to `server`; the answer and how long it took.
fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> (Message, Duration) {
    let socket = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut msg = Message::new(4242, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let started = Instant::now();
    socket
        .send_to(&msg.to_vec().expect("encode"), server)
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no answer from {server} for {name}: {e}"));
    let took = started.elapsed();
    (Message::from_vec(&buf[..n]).expect("decode"), took)
}

/// The lines of `log` between `== name` and the next `== ` marker.
fn section<'a>(log: &'a str, name: &str) -> Vec<&'a str> {
    log.lines()
        .skip_while(|l| *l != format!("== {name}"))
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

const CLIENT_SCRIPT: &str = r#"
q() { busybox timeout 10 nslookup "$@" 2>&1 || echo "nslookup failed: $?"; }
echo "== resolv.conf"; cat /etc/resolv.conf
for n in nginx nginx.default.svc.cluster.local; do echo "== $n"; q "$n"; done
echo "== srv"; q -type=srv _http._tcp.nginx.default.svc.cluster.local
echo "== headless"; q hl.default.svc.cluster.local
echo "== hostname"; q hl-0.hl.default.svc.cluster.local
echo "== missing"; q missing.default.svc.cluster.local.
for n in nginx nginx.default nginx.default.svc.cluster.local; do
  echo "== fetch $n"; busybox timeout 10 wget -q -O - "http://$n/hostname" || echo "wget failed"
done
echo "== hosts"; cat /etc/hosts
echo "== ip"; ip -4 -o addr show eth0
echo "== end"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_find_services_by_name_through_the_node_local_dns() {
    require_root("the cluster DNS test");
    let pid = std::process::id();
    let mut lab = Lab::start(LabOptions::for_test(format!("dns{pid}"), 2));
    let (n1, n2) = (
        lab.nodes()[0].name().to_string(),
        lab.nodes()[1].name().to_string(),
    );
    let client = lab.client();

    // The well-known address, made by the server at start-up.
    let system: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let kube_dns = lab
        .wait_for("kube-system/kube-dns", DEADLINE, || async {
            system.get("kube-dns").await.map_err(|e| e.to_string())
        })
        .await;
    let spec = kube_dns.spec.expect("kube-dns spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    let ports: Vec<(i32, String)> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| (p.port, p.protocol.clone().unwrap_or_default()))
        .collect();
    assert_eq!(ports, [(53, "UDP".to_string()), (53, "TCP".to_string())]);

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nginx = |name: &str, node: &str, labels: serde_json::Value| {
        json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node,
                "containers": [{"name": "nginx", "image": "registry.bpfk.lab:5000/library/nginx:1.14.2",
                    "ports": [{"name": "http", "containerPort": 80}]}]}
        })
    };
    // The ready headless pod has its own name under the Service: hl-0.hl.default.svc.
    let mut hl_ready = nginx("hl-ready", &n1, json!({"app": "hl"}));
    hl_ready["spec"]["hostname"] = json!("hl-0");
    hl_ready["spec"]["subdomain"] = json!("hl");
    let svc = create(
        &services,
        json!({"metadata": {"name": "nginx"},
            "spec": {"selector": {"app": "nginx"}, "ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    let vip = svc.spec.and_then(|s| s.cluster_ip).expect("ClusterIP");
    create(
        &services,
        json!({"metadata": {"name": "hl"},
            "spec": {"clusterIP": "None", "selector": {"app": "hl"},
                "ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    create(
        &services,
        json!({"metadata": {"name": "gone"},
        "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    create::<Pod>(&pods, nginx("web-1", &n1, json!({"app": "nginx"}))).await;
    create::<Pod>(&pods, nginx("web-2", &n2, json!({"app": "nginx"}))).await;
    create::<Pod>(&pods, hl_ready).await;
    // Never ready: it runs, but its readiness probe always fails (a crash-looping container
    // without a probe would be ready for the moments it runs, as in Kubernetes).
    create::<Pod>(
        &pods,
        json!({"metadata": {"name": "hl-broken", "labels": {"app": "hl"}},
            "spec": {"nodeName": n2, "containers": [{"name": "c", "image": "busybox:1.36",
                "command": ["sleep", "3600"], "ports": [{"name": "http", "containerPort": 80}],
                "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1}}]}}),
    )
    .await;

    // Both nginx pods serve, and the headless Service's slice has the ready pod ready and
    // the broken one not.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let (ready_ip, broken_ip) = lab
        .wait_for("headless endpoints", DEADLINE, || async {
            let ready = pods.get("hl-ready").await.map_err(|e| e.to_string())?;
            let broken = pods.get("hl-broken").await.map_err(|e| e.to_string())?;
            let (Some(r), Some(b)) = (pod_ip(&ready), pod_ip(&broken)) else {
                return Err("pod IPs".into());
            };
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=hl"))
                .await
                .map_err(|e| e.to_string())?;
            let state: Vec<(String, bool)> = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .map(|e| {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    (e.addresses.join(","), ready)
                })
                .collect();
            let want_ready = state.contains(&(r.clone(), true));
            let want_unready = state.contains(&(b.clone(), false));
            (want_ready && want_unready)
                .then_some((r, b))
                .ok_or(format!("slice endpoints {state:?}"))
        })
        .await;
    lab.wait_for("nginx pods Running", DEADLINE, || async {
        let list = pods
            .list(&ListParams::default().labels("app=nginx"))
            .await
            .map_err(|e| e.to_string())?;
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == 2)
            .then_some(())
            .ok_or(format!("{running} running"))
    })
    .await;

    // The client pod on node 2 asks by name.
    create::<Pod>(
        &pods,
        json!({"metadata": {"name": "client"},
            "spec": {"nodeName": n2, "restartPolicy": "Never",
                "hostname": "client-0", "subdomain": "hl",
                "containers": [{"name": "client", "image": "busybox:1.36",
                    "command": ["sh", "-c", CLIENT_SCRIPT]}]}}),
    )
    .await;
    lab.wait_for("client pod done", DEADLINE, || async {
        let p = pods.get("client").await.map_err(|e| e.to_string())?;
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") | Some("Failed") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let log = lab.node(&n2).container_log("default", "client", "client");
    eprintln!("client log:\n{log}");
    check_client_log(&log, &vip, &ready_ip, &broken_ip);
    // The kubelet's /etc/hosts: the pod's own name under its subdomain, as Kubernetes'.
    let client_ip = section(&log, "ip")
        .iter()
        .flat_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .find_map(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no eth0 address in the client log:\n{log}"))
        .to_string();
    let hosts = section(&log, "hosts");
    let own = format!("{client_ip}\tclient-0.hl.default.svc.cluster.local\tclient-0");
    assert!(
        hosts.iter().any(|l| l.trim_end() == own),
        "/etc/hosts lacks {own:?}:\n{}",
        hosts.join("\n")
    );
    assert!(
        hosts.first() == Some(&"# Kubernetes-managed hosts file."),
        "/etc/hosts is not the kubelet's:\n{}",
        hosts.join("\n")
    );

    // Straight to node 1's server: outside names are refused at once, never forwarded.
    let server = SocketAddr::new(lab.nodes()[0].ip().into(), 53);
    let (msg, took) = ask(server, "example.org.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
    eprintln!("outside name REFUSED in {took:?}");
    assert!(took < Duration::from_secs(1), "REFUSED took {took:?}");
    let (msg, _) = ask(server, "gone.default.svc.cluster.local.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(msg.answers.len(), 1, "{msg:?}");

    // A deleted Service is NXDOMAIN as soon as the watch event arrives.
    services
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete gone");
    let deleted = Instant::now();
    let nxdomain_after = lab
        .wait_for("NXDOMAIN for the deleted Service", DEADLINE, || async {
            let (msg, _) = ask(server, "gone.default.svc.cluster.local.", RecordType::A);
            (msg.metadata.response_code == ResponseCode::NXDomain)
                .then(|| deleted.elapsed())
                .ok_or(format!("{:?}", msg.metadata.response_code))
        })
        .await;
    eprintln!("deleted Service NXDOMAIN after {nxdomain_after:?}");
    assert!(
        nxdomain_after < Duration::from_secs(2),
        "NXDOMAIN only after {nxdomain_after:?}"
    );
    drop(lab);
}

fn check_client_log(log: &str, vip: &str, ready_ip: &str, broken_ip: &str) {
    let resolv = section(log, "resolv.conf").join("\n");
    for want in [
        "nameserver 10.96.0.10",
        "search default.svc.cluster.local svc.cluster.local cluster.local",
        "options ndots:5",
    ] {
        assert!(
            resolv.contains(want),
            "resolv.conf lacks {want:?}:\n{resolv}"
        );
    }
    let address = |lines: &[&str], ip: &str| {
        lines
            .iter()
            .any(|l| l.starts_with("Address") && l.trim_end().ends_with(ip))
    };
    // busybox's nslookup applies the search path only to names without a dot (a known
    // busybox quirk): `nginx.default` is asked as is there, so it is checked through wget
    // (libc's resolver: search path and ndots:5) below.
    for name in ["nginx", "nginx.default.svc.cluster.local"] {
        let lines = section(log, name);
        assert!(
            address(&lines, vip),
            "{name} did not resolve to {vip}:\n{log}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("nginx.default.svc.cluster.local")),
            "{name}: no canonical name:\n{log}"
        );
    }
    let srv = section(log, "srv").join("\n");
    assert!(
        srv.contains("0 100 80 nginx.default.svc.cluster.local"),
        "SRV answer:\n{srv}"
    );
    let headless = section(log, "headless");
    assert!(
        address(&headless, ready_ip),
        "headless lacks {ready_ip}:\n{log}"
    );
    assert!(
        !address(&headless, broken_ip),
        "headless lists unready {broken_ip}:\n{log}"
    );
    assert!(
        address(&section(log, "hostname"), ready_ip),
        "hl-0.hl:\n{log}"
    );
    let missing = section(log, "missing").join("\n");
    assert!(missing.contains("NXDOMAIN"), "missing name:\n{missing}");
    for name in ["nginx", "nginx.default", "nginx.default.svc.cluster.local"] {
        let fetch = section(log, &format!("fetch {name}"));
        assert!(
            fetch
                .iter()
                .any(|l| l.trim() == "web-1" || l.trim() == "web-2"),
            "http://{name}/hostname:\n{log}"
        );
    }
}
