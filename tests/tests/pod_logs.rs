//! `pods/log` through bpfk-server: the API server finds the pod's node, asks that node's
//! kubelet log endpoint (the real `bpfk_kubelet::log_server` on 127.0.0.1, reading a log
//! directory laid out as containerd's CRI plugin writes it) and streams the text back to
//! kube-rs, `kubectl logs` and `bpfk logs`. Refusals (unbound pod, ambiguous or unknown
//! container, a container that never started) are Status errors with kubectl's messages.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{LogParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

async fn create_node(client: &kube::Client, name: &str, kubelet_port: u16) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// A pod with `containers`, bound to `node` (when given) and reported with `statuses`.
async fn create_pod(
    pods: &Api<Pod>,
    name: &str,
    containers: &[&str],
    node: Option<&str>,
    statuses: serde_json::Value,
) -> Pod {
    let containers: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox:1.36"}))
        .collect();
    let mut spec = json!({"containers": containers});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Running", "containerStatuses": statuses}})),
    )
    .await
    .unwrap()
}

fn running(name: &str) -> serde_json::Value {
    json!({"name": name, "ready": true, "restartCount": 0, "image": "busybox:1.36", "imageID": "",
           "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})
}

/// Writes a CRI-format log file for `container` of pod `name`/`uid`.
fn write_log(root: &std::path::Path, name: &str, uid: &str, container: &str, lines: &[&str]) {
    let dir = bpfk_kubelet::logs::pod_log_dir(root, "default", name, uid);
    let path = dir.join(bpfk_kubelet::logs::container_log_path(container, 0));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("2026-01-01T00:00:0{i}.000000000Z stdout F {l}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
}

fn status_message(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected a Status error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_logs_come_from_the_nodes_kubelet() {
    let cluster = bpfk_lab::server::Cluster::start();
    let client = cluster.client().await;
    let log_root = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kubelet_port = listener.local_addr().unwrap().port();
    let log_server = tokio::spawn(bpfk_kubelet::log_server::serve(
        listener,
        log_root.path().to_path_buf(),
    ));
    create_node(&client, "logs-node", kubelet_port).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // a one-container pod: its log, whole and tailed, through kube-rs, kubectl and bpfk
    let web = create_pod(
        &pods,
        "web",
        &["app"],
        Some("logs-node"),
        json!([running("app")]),
    )
    .await;
    let uid = web.metadata.uid.clone().unwrap();
    write_log(
        log_root.path(),
        "web",
        &uid,
        "app",
        &["first", "second", "third"],
    );
    let all = pods.logs("web", &LogParams::default()).await.unwrap();
    assert_eq!(all, "first\nsecond\nthird\n");
    let tail = pods
        .logs(
            "web",
            &LogParams {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail, "third\n");
    let out = cluster.kubectl(&["logs", "web", "--tail=2"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "second\nthird\n");
    let out = cluster.bpfk(&["logs", "pod/web"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first\nsecond\nthird\n"
    );

    // two containers: one must be named; an unknown one is refused
    create_pod(
        &pods,
        "duo",
        &["a", "b"],
        Some("logs-node"),
        json!([running("a"), running("b")]),
    )
    .await;
    let (code, msg) = status_message(pods.logs("duo", &LogParams::default()).await.unwrap_err());
    assert_eq!(code, 400);
    assert_eq!(
        msg,
        "a container name must be specified for pod duo, choose one of: [a b]"
    );
    let named = |c: &str| LogParams {
        container: Some(c.into()),
        ..Default::default()
    };
    let (code, msg) = status_message(pods.logs("duo", &named("zzz")).await.unwrap_err());
    assert_eq!(
        (code, msg.as_str()),
        (400, "container zzz is not valid for pod duo")
    );
    // a known container whose log the node does not have: the kubelet's 404, as a 400
    let (code, msg) = status_message(pods.logs("duo", &named("b")).await.unwrap_err());
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("no logs for pod default/duo"), "{msg}");

    // not bound yet, or bound but not started: refused before asking any kubelet
    create_pod(&pods, "pending", &["c"], None, json!([])).await;
    let (code, msg) = status_message(
        pods.logs("pending", &LogParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, msg.as_str()),
        (400, "pod pending does not have a host assigned")
    );
    create_pod(
        &pods,
        "starting",
        &["c"],
        Some("logs-node"),
        json!([{"name": "c", "ready": false, "restartCount": 0, "image": "busybox:1.36", "imageID": "",
                "state": {"waiting": {"reason": "ContainerCreating"}}}]),
    )
    .await;
    let (code, msg) = status_message(
        pods.logs("starting", &LogParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400);
    assert_eq!(
        msg,
        "container \"c\" in pod \"starting\" is waiting to start: ContainerCreating"
    );
    let out = cluster.kubectl(&["logs", "starting"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is waiting to start: ContainerCreating"),
        "{out:?}"
    );

    // a node whose kubelet is gone: an error naming the kubelet URL
    log_server.abort();
    let _ = log_server.await;
    let (code, msg) = status_message(pods.logs("web", &LogParams::default()).await.unwrap_err());
    assert_eq!(code, 500, "{msg}");
    assert!(
        msg.contains(&format!(
            "127.0.0.1:{kubelet_port}/containerLogs/default/web/app"
        )),
        "{msg}"
    );
}

/// Reads `kubectl logs -f`'s stdout line by line on a thread.
fn line_reader(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_and_select_by_time_and_size() {
    let cluster = bpfk_lab::server::Cluster::start();
    let client = cluster.client().await;
    let log_root = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kubelet_port = listener.local_addr().unwrap().port();
    tokio::spawn(bpfk_kubelet::log_server::serve(
        listener,
        log_root.path().to_path_buf(),
    ));
    create_node(&client, "follow-node", kubelet_port).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = create_pod(
        &pods,
        "tick",
        &["app"],
        Some("follow-node"),
        json!([running("app")]),
    )
    .await;
    let uid = pod.metadata.uid.clone().unwrap();
    write_log(
        log_root.path(),
        "tick",
        &uid,
        "app",
        &["zero", "one", "two"],
    );

    // --since-time, --timestamps, --limit-bytes
    let out = cluster.kubectl(&["logs", "tick", "--since-time=2026-01-01T00:00:01Z"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    let out = cluster.kubectl(&["logs", "tick", "--timestamps", "--tail=1"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2026-01-01T00:00:02.000000000Z two\n"
    );
    let out = cluster.kubectl(&["logs", "tick", "--limit-bytes=7"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "zero\non");
    // the lines are from 2026-01-01: none in the last hour
    let out = cluster.kubectl(&["logs", "tick", "--since=1h"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let (code, msg) = status_message(
        pods.logs(
            "tick",
            &LogParams {
                since_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (code, msg.as_str()),
        (400, "sinceSeconds: Invalid value: must be greater than 0")
    );

    // -f: the current log, then a line written after kubectl started
    let mut follow = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.server.kubeconfig())
        .args(["logs", "-f", "tick", "--tail=1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("cannot run kubectl logs -f");
    let lines = line_reader(follow.stdout.take().unwrap());
    let wait = std::time::Duration::from_secs(20);
    assert_eq!(lines.recv_timeout(wait).expect("first line"), "two");
    let path = log_root
        .path()
        .join(format!("default_tick_{uid}"))
        .join(bpfk_kubelet::logs::container_log_path("app", 0));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"2026-01-01T00:00:03.000000000Z stdout P lat")
            .unwrap();
        f.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        f.write_all(b"\n2026-01-01T00:00:04.000000000Z stdout F er\n")
            .unwrap();
    }
    assert_eq!(lines.recv_timeout(wait).expect("a later line"), "later");
    assert!(
        follow.try_wait().unwrap().is_none(),
        "kubectl logs -f ended while the log was open"
    );
    follow.kill().unwrap();
    follow.wait().unwrap();
}
