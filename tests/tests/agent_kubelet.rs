//! The `bpfk-agent` binary with `--kubelet` end to end: real etcd + bpfk-server, a real
//! containerd inside a network namespace this test creates (loopback with the node address
//! 10.250.0.1, no route out), and the agent process running the kubelet and the service
//! proxy for one node. The agent stays in the host namespace, where the API server listens
//! on 127.0.0.1 (the lab namespace has no route out); it reaches containerd through its
//! unix socket, and containerd wires the pods into the lab namespace (CNI). The manifests' nginx Pod (stand-in image: busybox
//! httpd on :80) is bound to the node, runs, answers HTTP inside the namespace and goes
//! away when deleted. Needs root, containerd 1.6, runc, containernetworking-plugins and
//! busybox-static; fails loudly without them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bpfk_lab::containerd::{ipv4_in_cidr, ContainerdOptions, ContainerdProcess};
use bpfk_lab::host::{require_root, unique_name};
use bpfk_lab::images;
use bpfk_lab::netns::Netns;
use bpfk_lab::server::{self, Cluster};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{api::DeleteParams, Api};

const NODE_IP: &str = "10.250.0.1";
/// A correctness deadline for each step (pulling nothing, the stand-in images are local).
const DEADLINE: Duration = Duration::from_secs(120);

async fn wait_for<T, F, Fut>(what: &str, agent: &mut Agent, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        agent.assert_running();
        let last = match f().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}; last: {last}\nagent log:\n{}",
                agent.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The agent process (killed by PID), its pins and its cgroup; removed on drop.
struct Agent {
    child: Option<Child>,
    node: String,
    cgroup: PathBuf,
    log_path: PathBuf,
}

impl Agent {
    fn start(
        node: &str,
        kubelet_port: u16,
        containerd: &ContainerdProcess,
        kubeconfig: &Path,
        serving: &Path,
    ) -> Agent {
        let cg2 = bpfk_datapath::sys::cgroup2_mount().expect("cgroup2 mount");
        let cgroup = cg2.join(unique_name("bpfk-agent-kl"));
        fs::create_dir_all(&cgroup).expect("agent cgroup");
        let log_path = std::env::temp_dir().join(format!("{}.log", unique_name("bpfk-agent-kl")));
        let mut agent = Agent {
            child: None,
            node: node.to_string(),
            cgroup,
            log_path,
        };
        let log = fs::File::create(&agent.log_path).expect("agent log file");
        let mut cmd = Command::new(bpfk_lab::server::binary("bpfk-agent"));
        cmd.args(["--node-name", node, "--kubeconfig"])
            .arg(kubeconfig)
            .arg("--cgroup")
            .arg(&agent.cgroup)
            .args(["--kubelet", "--kubelet-port", &kubelet_port.to_string()])
            .arg("--tls-cert-file")
            .arg(serving.join("tls.crt"))
            .arg("--tls-private-key-file")
            .arg(serving.join("tls.key"))
            .args(containerd.kubelet_runtime_args())
            .args(["--cgroup-parent", containerd.cgroup_parent()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        agent.child = Some(cmd.spawn().expect("cannot start bpfk-agent"));
        agent
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("bpfk-agent exited with {status}; log:\n{}", self.log());
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(bpfk_lab::server::binary("bpfk-agent"))
            .args(["--node-name", &self.node, "--kubeconfig", "/dev/null"])
            .arg("--teardown")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.cgroup.exists()
            && fs::remove_dir(&self.cgroup).is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = fs::remove_file(&self.log_path);
    }
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_binary_runs_the_kubelet() {
    require_root("the agent kubelet test");
    assert!(
        Path::new(images::DEFAULT_BUSYBOX).exists(),
        "{} missing: install Debian package busybox-static",
        images::DEFAULT_BUSYBOX
    );
    // Drop order (reverse of declaration): agent, images, containerd, namespace, cluster.
    let cluster = Cluster::start();
    let client = cluster.client().await;
    let netns = Netns::create(&unique_name("bpfk-ak"));
    netns.exec_ok(&["ip", "addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"]);
    let containerd = ContainerdProcess::start(ContainerdOptions {
        netns: Some(netns.name().to_string()),
        ..Default::default()
    });
    let images = tempfile::tempdir().expect("tempdir for images");
    images::import_stand_in_images(
        &containerd.socket(),
        Path::new(images::DEFAULT_BUSYBOX),
        images.path(),
        containerd.snapshotter(),
    )
    .unwrap_or_else(|e| panic!("importing stand-in images failed: {e}"));
    let node = unique_name("agent-kl");
    let kubelet_port = server::free_port();
    // the endpoint's certificate from files (the lab's agents ask the cluster for theirs)
    let pki = cluster.server.data_dir().join("pki");
    let read = |f: &str| fs::read_to_string(pki.join(f)).expect("the server's PKI");
    let ca = bpfk_auth::pki::ClusterCa::from_pem(&read("ca.crt"), &read("ca.key")).expect("CA");
    let serving = ca
        .issue_serving(
            &format!("system:node:{node}"),
            &["127.0.0.1".to_string()],
            Duration::from_secs(3600),
        )
        .expect("serving certificate");
    let serving_dir = tempfile::tempdir().expect("tempdir for the serving certificate");
    fs::write(serving_dir.path().join("tls.crt"), &serving.cert_pem).expect("tls.crt");
    fs::write(serving_dir.path().join("tls.key"), &serving.key_pem).expect("tls.key");
    let mut agent = Agent::start(
        &node,
        kubelet_port,
        &containerd,
        &cluster.server.kubeconfig(),
        serving_dir.path(),
    );

    // The Node registers and becomes Ready with a pod range.
    let nodes: Api<Node> = Api::all(client.clone());
    let pod_cidr = wait_for(
        &format!("{node} Ready with a podCIDR"),
        &mut agent,
        || async {
            let n = nodes.get(&node).await.map_err(|e| e.to_string())?;
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            match (ready, n.spec.as_ref().and_then(|s| s.pod_cidr.clone())) {
                (true, Some(cidr)) => Ok(cidr),
                _ => Err(serde_json::to_string(&n).unwrap_or_default()),
            }
        },
    )
    .await;
    assert!(pod_cidr.starts_with("10.244."), "podCIDR {pod_cidr}");
    let n = nodes.get(&node).await.expect("node");
    let endpoint_port = n
        .status
        .as_ref()
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map(|e| e.port);
    assert_eq!(
        endpoint_port,
        Some(i32::from(kubelet_port)),
        "daemonEndpoints of {n:?}"
    );

    // The manifests' nginx Pod, bound by the scheduler to the only node.
    let manifest = server::manifest("nginx-pod.yaml");
    server::success(&cluster.kubectl(&[
        "create",
        "-n",
        "default",
        "-f",
        manifest.to_str().expect("utf-8 path"),
    ]));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = wait_for("pod nginx Running", &mut agent, || async {
        let p = pods.get("nginx").await.map_err(|e| e.to_string())?;
        if phase(&p) == "Running" {
            Ok(p)
        } else {
            Err(serde_json::to_string(&p.status).unwrap_or_default())
        }
    })
    .await;
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.as_str())
    );
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("podIP of a Running pod");
    assert!(ip.starts_with("10.244."), "podIP {ip}");
    assert!(
        ipv4_in_cidr(&ip, &pod_cidr),
        "podIP {ip} outside {pod_cidr}"
    );

    // HTTP to the pod from inside the node's namespace.
    let addr = format!("{ip}:80");
    let (status, body) = wait_for("HTTP 200 from nginx", &mut agent, || async {
        match netns.http_get(&addr, "/") {
            Ok((s, b)) if s.contains(" 200") => Ok((s, b)),
            Ok((s, _)) => Err(s),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(status.contains(" 200"), "{status}: {body}");

    // The agent's endpoint (no --node-ip: it listens on every address of the host
    // namespace) answers the API server's kubelet client certificate for the pod's
    // container, over TLS with the given certificate; no certificate, no answer.
    let kubelet_client = bpfk_lab::api_client::ApiCredentials {
        identity: Some((
            read("apiserver-kubelet-client.crt"),
            read("apiserver-kubelet-client.key"),
        )),
        ..cluster
            .server
            .credentials()
            .at(([127, 0, 0, 1], kubelet_port).into())
    };
    let path = "/containerLogs/default/nginx/nginx";
    let (code, body) = kubelet_client
        .request("GET", path, None)
        .unwrap_or_else(|e| panic!("GET 127.0.0.1:{kubelet_port}{path}: {e}"));
    assert_eq!(code, 200, "{body}");
    assert!(kubelet_client
        .anonymous()
        .request("GET", path, None)
        .is_err());

    // Deleting the Pod removes it (the kubelet stops it, then the object goes).
    pods.delete("nginx", &DeleteParams::default())
        .await
        .expect("delete nginx");
    wait_for("pod nginx gone", &mut agent, || async {
        match pods.get_opt("nginx").await {
            Ok(None) => Ok(()),
            Ok(Some(p)) => Err(serde_json::to_string(&p.status).unwrap_or_default()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;

    drop(agent);
    drop(images);
    drop(containerd);
    drop(netns);
}
