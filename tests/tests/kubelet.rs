//! The kubelet end to end: real etcd + bpfk-server, a real containerd (with runc and the
//! bridge CNI plugin) running inside a network namespace this test creates (loopback with
//! the node address 10.250.0.1, no route out), and bpfk-kubelet running in-process for
//! node "node-a". Needs root, containerd 1.6, runc, containernetworking-plugins and
//! busybox-static; fails loudly without them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpfk_kubelet::cri::{CriClient, LABEL_POD_UID};
use bpfk_kubelet::{logs, Config};
use bpfk_lab::containerd::{ipv4_in_cidr, mounts_under, ContainerdOptions, ContainerdProcess};
use bpfk_lab::host::{require_root, unique_name};
use bpfk_lab::images;
use bpfk_lab::netns::Netns;
use bpfk_lab::server::Cluster;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const NODE: &str = "node-a";
const NODE_IP: &str = "10.250.0.1";
const DEADLINE: Duration = Duration::from_secs(120);

/// Poll `f` until it returns Some or the deadline passes (then panic with `what` and the
/// last value seen by `describe`).
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!("timed out after {DEADLINE:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the kubelet of `NODE` reported `e`: kube's Recorder writes events.k8s.io/v1
/// Events naming the node as `reportingInstance` (no deprecated `source`).
fn reported_by_node(e: &Event) -> bool {
    let host = e.source.as_ref().and_then(|s| s.host.as_deref());
    e.reporting_instance.as_deref() == Some(NODE) || host == Some(NODE)
}

/// The node-side fixture: its network namespace, its containerd and the stand-in images.
/// Field order is drop order: containerd goes before the namespace.
struct NodeFixture {
    containerd: ContainerdProcess,
    netns: Netns,
    _images: tempfile::TempDir,
}

impl NodeFixture {
    fn start() -> NodeFixture {
        require_root("the kubelet test");
        let netns = Netns::create(&unique_name("bpfk-kl"));
        // the node's address (no dummy link module on this kernel: it lives on loopback)
        netns.exec_ok(&["ip", "addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"]);
        let containerd = ContainerdProcess::start(ContainerdOptions {
            netns: Some(netns.name().to_string()),
            ..Default::default()
        });
        let images = tempfile::tempdir().expect("tempdir for images");
        assert!(
            std::path::Path::new(images::DEFAULT_BUSYBOX).exists(),
            "{} missing: install Debian package busybox-static",
            images::DEFAULT_BUSYBOX
        );
        images::import_stand_in_images(
            &containerd.socket(),
            std::path::Path::new(images::DEFAULT_BUSYBOX),
            images.path(),
            containerd.snapshotter(),
        )
        .unwrap_or_else(|e| panic!("importing stand-in images failed: {e}"));
        NodeFixture {
            containerd,
            netns,
            _images: images,
        }
    }

    fn kubelet_config(&self) -> Config {
        let mut config = Config::new(NODE);
        config.runtime_socket = self.containerd.socket();
        config.node_ip = Some(NODE_IP.parse().expect("node ip"));
        config.cni_conf_dir = self.containerd.cni_conf_dir();
        config.cni_state_dir = self.containerd.cni_state_dir();
        config.pod_log_dir = self.containerd.pod_log_dir();
        config.root_dir = self.containerd.kubelet_dir();
        config.cgroup_parent = self.containerd.cgroup_parent().to_string();
        config.pod_sync_period = Duration::from_millis(500);
        config.restart_backoff = Duration::from_secs(1);
        config.restart_backoff_max = Duration::from_secs(4);
        config
    }
}

/// Aborts the in-process kubelet when dropped.
struct KubeletTask(tokio::task::JoinHandle<bpfk_kubelet::Result<()>>);

impl Drop for KubeletTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn pod(name: &str, image: &str, extra_spec: serde_json::Value) -> Pod {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 3,
        "containers": [{"name": "main", "image": image}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .expect("pod json")
}

fn statuses(p: &Pod) -> Vec<ContainerStatus> {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default()
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn brief(p: &Pod) -> String {
    serde_json::to_string(&p.status).unwrap_or_default()
}

async fn wait_phase(api: &Api<Pod>, name: &str, want: &str) -> Pod {
    wait_for(&format!("pod {name} phase {want}"), || async {
        let p = api.get(name).await.map_err(|e| e.to_string())?;
        if phase(&p) == want {
            Ok(p)
        } else {
            Err(brief(&p))
        }
    })
    .await
}

async fn sandboxes_of(cri: &CriClient, uid: &str) -> usize {
    cri.list_pod_sandbox(None)
        .await
        .expect("ListPodSandbox")
        .iter()
        .filter(|s| s.labels.get(LABEL_POD_UID).map(String::as_str) == Some(uid))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubelet_runs_pods_on_real_containerd() {
    let node = NodeFixture::start();
    let cluster = Cluster::start();
    let client = cluster.client().await;
    let cri = CriClient::connect(&node.containerd.socket())
        .await
        .expect("CRI connect");
    let version = cri.version().await.expect("CRI Version");
    assert_eq!(version.runtime_name, "containerd");
    let images = cri.list_images().await.expect("ListImages");
    assert!(
        images
            .iter()
            .any(|i| i.repo_tags.iter().any(|t| t == images::NGINX_IMAGE)),
        "stand-in nginx image not visible to CRI: {images:?}"
    );

    let kubelet = KubeletTask(tokio::spawn(bpfk_kubelet::run(
        client.clone(),
        node.kubelet_config(),
    )));

    // the node registers, becomes Ready, gets a pod range and a Lease
    let nodes: Api<Node> = Api::all(client.clone());
    let pod_cidr = wait_for("node-a Ready with a podCIDR", || async {
        if kubelet.0.is_finished() {
            return Err("the kubelet task ended".to_string());
        }
        let n = nodes.get(NODE).await.map_err(|e| e.to_string())?;
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        match (ready, n.spec.as_ref().and_then(|s| s.pod_cidr.clone())) {
            (true, Some(cidr)) => Ok(cidr),
            _ => Err(serde_json::to_string(&n).unwrap_or_default()),
        }
    })
    .await;
    assert!(pod_cidr.starts_with("10.244."), "podCIDR {pod_cidr}");
    let n = nodes.get(NODE).await.expect("node");
    let status = n.status.expect("node status");
    let addresses = status.addresses.unwrap_or_default();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == NODE_IP),
        "{addresses:?}"
    );
    assert!(status.capacity.unwrap_or_default().contains_key("cpu"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = wait_for("node-a's Lease", || async {
        leases.get(NODE).await.map_err(|e| e.to_string())
    })
    .await;
    let lease_spec = lease.spec.expect("lease spec");
    assert_eq!(lease_spec.holder_identity.as_deref(), Some(NODE));
    assert!(lease_spec.renew_time.is_some());

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    // the manifests' nginx image (stand-in: busybox httpd on :80), bound by the scheduler
    pods.create(
        &pp,
        &pod(
            "web",
            "nginx:1.14.2",
            json!({"containers": [{"name": "main", "image": "nginx:1.14.2",
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}),
        ),
    )
    .await
    .expect("create web");
    pods.create(
        &pp,
        &pod(
            "hello",
            "busybox:1.36",
            json!({"containers": [{"name": "main", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo hello from $(POD_NAME); echo kept > /data/f; sleep 3600"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/data"}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
                "volumes": [{"name": "scratch", "emptyDir": {}}]}),
        ),
    )
    .await
    .expect("create hello");
    pods.create(
        &pp,
        &pod(
            "inits",
            "busybox:1.36",
            json!({"initContainers": [
                    {"name": "first", "image": "busybox:1.36",
                     "command": ["sh", "-c", "echo one > /data/order"],
                     "volumeMounts": [{"name": "scratch", "mountPath": "/data"}]},
                    {"name": "second", "image": "busybox:1.36",
                     "command": ["sh", "-c", "echo two >> /data/order"],
                     "volumeMounts": [{"name": "scratch", "mountPath": "/data"}]}],
                "containers": [{"name": "main", "image": "busybox:1.36",
                    "command": ["sh", "-c", "cat /data/order; sleep 3600"],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/data"}]}],
                "volumes": [{"name": "scratch", "emptyDir": {}}]}),
        ),
    )
    .await
    .expect("create inits");
    pods.create(
        &pp,
        &pod(
            "fails",
            "busybox:1.36",
            json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo bye; exit 3"]}]}),
        ),
    )
    .await
    .expect("create fails");
    pods.create(
        &pp,
        &pod(
            "completes",
            "busybox:1.36",
            json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36",
                "command": ["true"]}]}),
        ),
    )
    .await
    .expect("create completes");
    pods.create(
        &pp,
        &pod(
            "crashes",
            "busybox:1.36",
            json!({"restartPolicy": "Always", "containers": [{"name": "main", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo run; exit 1"]}]}),
        ),
    )
    .await
    .expect("create crashes");
    pods.create(
        &pp,
        &pod(
            "noimage",
            "x",
            json!({"containers": [
                {"name": "never", "image": "127.0.0.1:1/not-here:1", "imagePullPolicy": "Never"},
                {"name": "ifnotpresent", "image": "127.0.0.1:1/not-here:1", "imagePullPolicy": "IfNotPresent"}]}),
        ),
    )
    .await
    .expect("create noimage");

    // web: Running with a pod IP from the node's range, reachable inside the node netns
    let web = wait_phase(&pods, "web", "Running").await;
    let st = web.status.clone().expect("web status");
    let ip = st.pod_ip.clone().expect("web podIP");
    assert!(ipv4_in_cidr(&ip, &pod_cidr), "podIP {ip} not in {pod_cidr}");
    assert_eq!(
        st.pod_ips.as_ref().map(|v| v[0].ip.clone()),
        Some(ip.clone())
    );
    assert_eq!(st.host_ip.as_deref(), Some(NODE_IP));
    assert_eq!(
        web.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE)
    );
    let conditions: BTreeMap<String, String> = st
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(
            conditions.get(t).map(String::as_str),
            Some("True"),
            "{t}: {conditions:?}"
        );
    }
    let cs = &statuses(&web)[0];
    assert!(
        cs.ready && cs.state.as_ref().is_some_and(|s| s.running.is_some()),
        "{cs:?}"
    );
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|c| c.starts_with("containerd://")),
        "{cs:?}"
    );
    assert!(!cs.image_id.is_empty(), "{cs:?}");
    // its limits reached the container's cgroups (cgroup v1 hierarchies here)
    let cid = cs
        .container_id
        .as_deref()
        .and_then(|c| c.strip_prefix("containerd://"))
        .expect("container id");
    let web_uid = web.metadata.uid.clone().expect("uid");
    let cgroup = format!(
        "{}/pod{web_uid}/{cid}",
        node.containerd.cgroup_parent().trim_start_matches('/')
    );
    let read = |controller: &str, file: &str| {
        let path = format!("/sys/fs/cgroup/{controller}/{cgroup}/{file}");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {path}: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    let addr = format!("{ip}:80");
    let body = wait_for("an HTTP answer from the web pod", || async {
        match node.netns.http_get(&addr, "/") {
            Ok((status, body)) if status.contains(" 200") && body.contains("Welcome to nginx!") => {
                Ok(body)
            }
            Ok((status, body)) => Err(format!("{status}: {body}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(body.contains("stand-in"), "{body}");

    // hello: its log (CRI format on disk) says hello, with the env var expanded
    let hello = wait_phase(&pods, "hello", "Running").await;
    let uid = hello.metadata.uid.clone().expect("uid");
    let log_root = node.containerd.pod_log_dir();
    let line = wait_for("hello's log line", || async {
        let lines = logs::container_lines(&log_root, "default", "hello", &uid, "main", false)
            .map_err(|e| e.to_string())?;
        lines
            .into_iter()
            .find(|l| l.content.contains("hello"))
            .ok_or_else(|| "no hello yet".to_string())
    })
    .await;
    assert_eq!(line.content, "hello from hello");
    assert_eq!(line.stream, logs::Stream::Stdout);
    // the node's log endpoint serves it (what the API server's pods/log will proxy to)
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind log endpoint");
    let log_port = listener.local_addr().expect("addr").port();
    let app = bpfk_kubelet::log_server::router(log_root.clone());
    let log_server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (code, body) = tokio::task::spawn_blocking(move || {
        bpfk_lab::server::http_get(log_port, "/containerLogs/default/hello/main?tailLines=1")
    })
    .await
    .expect("join")
    .expect("GET containerLogs");
    assert_eq!((code, body.as_str()), (200, "hello from hello\n"));
    let (code, _) = tokio::task::spawn_blocking(move || {
        bpfk_lab::server::http_get(log_port, "/containerLogs/default/hello/other")
    })
    .await
    .expect("join")
    .expect("GET containerLogs");
    assert_eq!(code, 404);
    log_server.abort();
    // its emptyDir is a node directory the container writes into
    let scratch =
        bpfk_kubelet::cri_config::empty_dir_path(&node.containerd.kubelet_dir(), &uid, "scratch");
    let kept = wait_for("hello's file in its emptyDir", || async {
        std::fs::read_to_string(scratch.join("f")).map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(kept, "kept\n");

    // init containers run in order, to completion, before the main container
    let inits = wait_phase(&pods, "inits", "Running").await;
    let init_statuses = inits
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .unwrap_or_default();
    assert_eq!(init_statuses.len(), 2, "{}", brief(&inits));
    for c in &init_statuses {
        let t = c
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .unwrap_or_else(|| panic!("init container {} not terminated", c.name));
        assert_eq!(t.exit_code, 0);
        assert!(c.ready);
    }
    let inits_uid = inits.metadata.uid.clone().expect("uid");
    let order = wait_for("inits' main log", || async {
        let lines = logs::container_lines(&log_root, "default", "inits", &inits_uid, "main", false)
            .map_err(|e| e.to_string())?;
        if lines.len() >= 2 {
            Ok(lines.into_iter().map(|l| l.content).collect::<Vec<_>>())
        } else {
            Err(format!("{lines:?}"))
        }
    })
    .await;
    assert_eq!(order, ["one", "two"]);

    // restartPolicy Never: exit 3 -> Failed with the exit code; exit 0 -> Succeeded
    let failed = wait_phase(&pods, "fails", "Failed").await;
    let term = statuses(&failed)[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .expect("terminated state");
    assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));
    let done = wait_phase(&pods, "completes", "Succeeded").await;
    let term = statuses(&done)[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .expect("terminated state");
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );

    // restartPolicy Always: restarted, with the previous end as lastState
    let crashes = wait_for("crashes restarted twice", || async {
        let p = pods.get("crashes").await.map_err(|e| e.to_string())?;
        match statuses(&p).first() {
            Some(c) if c.restart_count >= 2 => Ok(p),
            _ => Err(brief(&p)),
        }
    })
    .await;
    let c = &statuses(&crashes)[0];
    let last = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 1);
    assert_eq!(phase(&crashes), "Running");

    // a missing image: Waiting with a reason per pull policy, pod Pending (the pull goes to a
    // closed loopback port: no name to resolve, no packet out)
    let noimage = wait_for("noimage's waiting reasons", || async {
        let p = pods.get("noimage").await.map_err(|e| e.to_string())?;
        let reasons: BTreeMap<String, String> = statuses(&p)
            .into_iter()
            .filter_map(|c| {
                let reason = c.state?.waiting?.reason?;
                Some((c.name, reason))
            })
            .collect();
        if reasons.get("never").map(String::as_str) == Some("ErrImageNeverPull")
            && reasons.get("ifnotpresent").map(String::as_str) == Some("ImagePullBackOff")
        {
            Ok(p)
        } else {
            Err(brief(&p))
        }
    })
    .await;
    assert_eq!(phase(&noimage), "Pending");
    let message = statuses(&noimage)
        .into_iter()
        .find(|c| c.name == "ifnotpresent")
        .and_then(|c| c.state?.waiting?.message)
        .unwrap_or_default();
    assert!(message.contains("127.0.0.1:1/not-here:1"), "{message}");

    // events for kubectl describe: Started for web, one warning per waiting reason
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let about = |all: &[Event], pod: &str, reason: &str| {
        all.iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(pod)
                    && e.reason.as_deref() == Some(reason)
                    && reported_by_node(e)
            })
            .count()
    };
    let all = wait_for("kubelet events", || async {
        let all = events
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        if about(&all, "web", "Started") == 1 && about(&all, "noimage", "ErrImageNeverPull") == 1 {
            Ok(all)
        } else {
            Err(format!("{} events so far", all.len()))
        }
    })
    .await;
    assert_eq!(
        about(&all, "noimage", "BackOff"),
        1,
        "one back-off event while it waits"
    );
    assert!(
        about(&all, "noimage", "Failed") >= 1,
        "the failed pull is an event"
    );
    assert!(about(&all, "crashes", "BackOff") >= 1);

    // deleting web: containers stopped, sandbox removed, the Pod object goes away
    assert_eq!(sandboxes_of(&cri, &web_uid).await, 1);
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    wait_for("web gone from the API", || async {
        match pods.get_opt("web").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(p) => Err(format!(
                "still there, deletionTimestamp {:?}",
                p.metadata.deletion_timestamp
            )),
        }
    })
    .await;
    assert_eq!(
        sandboxes_of(&cri, &web_uid).await,
        0,
        "web's sandbox must be removed before its Pod object is"
    );
    let leftovers = cri
        .list_containers(None)
        .await
        .expect("ListContainers")
        .into_iter()
        .filter(|c| c.labels.get(LABEL_POD_UID) == Some(&web_uid))
        .count();
    assert_eq!(leftovers, 0, "web's containers must be gone");
    assert!(
        node.netns.http_get(&addr, "/").is_err(),
        "web still answers after deletion"
    );

    // a finished pod's delete is immediate; its sandbox still goes away
    let fails_uid = failed.metadata.uid.clone().expect("uid");
    pods.delete("fails", &DeleteParams::default())
        .await
        .expect("delete fails");
    let cri_ref = Arc::new(cri.clone());
    wait_for("fails' sandbox removed", || {
        let cri = cri_ref.clone();
        let uid = fails_uid.clone();
        async move {
            match sandboxes_of(&cri, &uid).await {
                0 => Ok(()),
                n => Err(format!("{n} sandboxes left")),
            }
        }
    })
    .await;

    // a kubelet restart: running pods are adopted (same container, no second sandbox);
    // a pod force-deleted while no kubelet was watching loses its sandbox on start-up
    let hello_before = pods.get("hello").await.expect("hello");
    let hello_id = statuses(&hello_before)[0].container_id.clone();
    let crashes_uid = crashes.metadata.uid.clone().expect("uid");
    let mut kubelet = kubelet;
    kubelet.0.abort();
    let _ = (&mut kubelet.0).await;
    pods.delete(
        "crashes",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("force delete crashes");
    assert!(pods.get_opt("crashes").await.expect("get").is_none());
    assert_eq!(sandboxes_of(&cri, &crashes_uid).await, 1);
    let kubelet = KubeletTask(tokio::spawn(bpfk_kubelet::run(
        client.clone(),
        node.kubelet_config(),
    )));
    wait_for("crashes' sandbox removed by the restarted kubelet", || {
        let cri = cri_ref.clone();
        let uid = crashes_uid.clone();
        async move {
            match sandboxes_of(&cri, &uid).await {
                0 => Ok(()),
                n => Err(format!("{n} sandboxes left")),
            }
        }
    })
    .await;
    assert!(!kubelet.0.is_finished(), "the restarted kubelet stopped");
    let hello_after = pods.get("hello").await.expect("hello");
    assert_eq!(phase(&hello_after), "Running");
    assert_eq!(statuses(&hello_after)[0].container_id, hello_id);
    assert_eq!(statuses(&hello_after)[0].restart_count, 0);
    assert_eq!(
        sandboxes_of(&cri, &uid).await,
        1,
        "hello's sandbox was adopted"
    );

    // stop the kubelet, then remove what is left through CRI (the harness would kill it
    // anyway, this checks the runtime side of the clean-up)
    drop(kubelet);
    for sb in cri.list_pod_sandbox(None).await.expect("ListPodSandbox") {
        bpfk_kubelet::pod_worker::stop_and_remove_sandbox(&cri, &sb.id)
            .await
            .expect("remove sandbox");
    }
    assert!(cri.list_pod_sandbox(None).await.expect("list").is_empty());
    drop(cluster);
    let base = node
        .containerd
        .socket()
        .parent()
        .expect("containerd dir")
        .to_path_buf();
    drop(node);
    assert!(
        mounts_under(&base).is_empty(),
        "mounts left under {}: {:?}",
        base.display(),
        mounts_under(&base)
    );
    assert!(!base.exists(), "{} not removed", base.display());
}

/// Processes whose command line holds `needle` (as one argument).
fn processes_with_arg(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Dropping the harness while a pod runs (no CRI clean-up, as when a test panics) kills
/// the shim and the container, unmounts the rootfs, shm and netns mounts, removes the
/// pod cgroups and the directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_harness_cleans_up_running_pods() {
    let node = NodeFixture::start();
    let cri = CriClient::connect(&node.containerd.socket())
        .await
        .expect("CRI connect");
    bpfk_kubelet::cni::write_conflist(
        &node.containerd.cni_conf_dir(),
        "10.244.200.0/24",
        "cni0",
        &node.containerd.cni_state_dir(),
    )
    .expect("conflist");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "namespace": "default", "uid": "0000-orphan"},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36",
            "command": ["sleep", "3600"]}]}
    }))
    .expect("pod");
    let id = bpfk_kubelet::cri_config::PodRef::of(&pod).expect("pod ref");
    let config = node.kubelet_config();
    let sandbox_config = bpfk_kubelet::cri_config::sandbox_config(
        &pod,
        &id,
        0,
        &config.pod_log_dir,
        &config.cgroup_parent,
        &config
            .root_dir
            .join(bpfk_kubelet::security_context::SECCOMP_DIR),
    );
    std::fs::create_dir_all(format!("{}/main", sandbox_config.log_directory)).expect("log dir");
    // containerd may still be loading the CNI configuration it was just given
    let sandbox = wait_for("RunPodSandbox", || async {
        cri.run_pod_sandbox(sandbox_config.clone())
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let image = cri
        .image_status("busybox:1.36")
        .await
        .expect("ImageStatus")
        .expect("busybox image present");
    let container = &pod.spec.as_ref().expect("spec").containers[0];
    let cid = cri
        .create_container(
            &sandbox,
            bpfk_kubelet::cri_config::container_config(
                &pod,
                &id,
                container,
                bpfk_kubelet::cri_config::ContainerInputs {
                    attempt: 0,
                    image_id: &image.id,
                    env: &[],
                    mounts: Vec::new(),
                    security: Default::default(),
                },
            ),
            sandbox_config.clone(),
        )
        .await
        .expect("CreateContainer");
    cri.start_container(&cid).await.expect("StartContainer");
    let ip = cri
        .pod_sandbox_status(&sandbox)
        .await
        .expect("PodSandboxStatus")
        .network
        .map(|n| n.ip)
        .unwrap_or_default();
    assert!(ipv4_in_cidr(&ip, "10.244.200.0/24"), "sandbox ip {ip:?}");

    let socket = node.containerd.socket().display().to_string();
    let shims = processes_with_arg(&socket)
        .into_iter()
        .filter(|p| Some(*p) != node.containerd.pid())
        .collect::<Vec<_>>();
    assert!(!shims.is_empty(), "no shim found for {socket}");
    let base = node
        .containerd
        .socket()
        .parent()
        .expect("containerd dir")
        .to_path_buf();
    assert!(
        !mounts_under(&base).is_empty(),
        "a running pod has mounts under {}",
        base.display()
    );
    let cgroup = format!(
        "/sys/fs/cgroup/memory/{}",
        node.containerd.cgroup_parent().trim_start_matches('/')
    );
    assert!(std::path::Path::new(&cgroup).exists(), "{cgroup} missing");
    // the containers' processes (pause and sleep): children of the shims
    let sleeper: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| {
                    let (_, rest) = st.rsplit_once(") ")?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                .is_some_and(|ppid| shims.contains(&ppid))
        })
        .collect();
    assert!(
        sleeper.len() >= 2,
        "pause and sleep should run under the shims: {sleeper:?}"
    );
    let netns_name = node.netns.name().to_string();

    drop(cri);
    drop(node);

    let alive: Vec<u32> = shims
        .iter()
        .chain(sleeper.iter())
        .copied()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        })
        .collect();
    assert!(
        alive.is_empty(),
        "processes survived the harness: {alive:?}"
    );
    assert!(mounts_under(&base).is_empty(), "{:?}", mounts_under(&base));
    assert!(!base.exists(), "{} not removed", base.display());
    assert!(!std::path::Path::new(&cgroup).exists(), "{cgroup} left");
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&netns_name),
        "netns {netns_name} left"
    );
}
