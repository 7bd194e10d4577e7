//! `pods/log` through bpfk-server: the API server finds the pod's node, asks that node's
//! kubelet endpoint (the real `bpfk_kubelet::log_server` on 127.0.0.1, over TLS with a
//! serving certificate of the cluster CA, letting in only clients a SubjectAccessReview
//! allows, reading a log directory laid out as containerd's CRI plugin writes it) and
//! streams the text back to kube-rs, `kubectl logs` and `bpfk logs`. Refusals (unbound pod,
//! ambiguous or unknown container, a container that never started) are Status errors with
//! kubectl's messages; the endpoint itself refuses clients without a certificate of the
//! cluster CA and users without `nodes/proxy`.

use std::path::Path;
use std::sync::Arc;

use bpfk_kubelet::endpoint_auth::EndpointAuthorizer;
use bpfk_kubelet::log_server::{self, EndpointSecurity};
use bpfk_kubelet::serving_cert::ServingCert;
use bpfk_lab::api_client::ApiCredentials;
use bpfk_lab::server::Cluster;

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

/// The kubelet endpoint of node `node`, standing in on 127.0.0.1 (a serving certificate of
/// the cluster CA for that address; access reviews asked with `client`): its port and task.
async fn kubelet_endpoint(
    cluster: &Cluster,
    client: kube::Client,
    node: &str,
    log_root: &Path,
) -> (u16, tokio::task::JoinHandle<std::io::Result<()>>) {
    let pki = cluster.server.data_dir().join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let ca = bpfk_auth::pki::ClusterCa::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
    let serving = ca
        .issue_serving(
            &format!("system:node:{node}"),
            &["127.0.0.1".to_string()],
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let served = ServingCert::new(&serving.cert_pem, &serving.key_pem).unwrap();
    let roots = bpfk_auth::tls::roots(&ca.cert_pem).unwrap();
    let tls = bpfk_auth::tls::server_config_requiring_clients(Arc::new(served), roots).unwrap();
    let security = EndpointSecurity {
        tls: Arc::new(tls),
        authorizer: Arc::new(EndpointAuthorizer::new(client, node)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = log_server::router(log_root.to_path_buf());
    (
        port,
        tokio::spawn(log_server::serve_tls(listener, app, security)),
    )
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
    let (kubelet_port, log_server) =
        kubelet_endpoint(&cluster, client.clone(), "logs-node", log_root.path()).await;
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

    // the endpoint itself: the API server's kubelet client certificate is let in, a client
    // without a certificate is refused at the handshake, one of another CA too, and a user
    // of the cluster CA without nodes/proxy is Forbidden as by the kubelet
    let pki = cluster.server.data_dir().join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let admin = cluster.server.credentials();
    let apiserver = ApiCredentials {
        identity: Some((
            read("apiserver-kubelet-client.crt"),
            read("apiserver-kubelet-client.key"),
        )),
        ..admin.at(([127, 0, 0, 1], kubelet_port).into())
    };
    let path = "/containerLogs/default/web/app".to_string();
    let ask = |who: ApiCredentials| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || who.request("GET", &path, None))
    };
    let (code, body) = ask(apiserver.clone()).await.unwrap().unwrap();
    assert_eq!((code, body.as_str()), (200, "first\nsecond\nthird\n"));
    assert!(ask(apiserver.anonymous()).await.unwrap().is_err());
    let (stranger_ca, _) = bpfk_auth::pki::ClusterCa::generate("stranger").unwrap();
    let stranger = stranger_ca
        .issue_client(
            "kube-apiserver-kubelet-client",
            &[],
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let forged = ApiCredentials {
        identity: Some((stranger.cert_pem, stranger.key_pem)),
        ..apiserver.clone()
    };
    assert!(ask(forged).await.unwrap().is_err());
    let alice = bpfk_lab::api_client::issue_client_cert(&pki, "alice", &["devs"]);
    let alice = ApiCredentials {
        identity: Some((alice.cert_pem, alice.key_pem)),
        ..apiserver.clone()
    };
    let (code, body) = ask(alice).await.unwrap().unwrap();
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body.trim(),
        "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[proxy])"
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
    let (kubelet_port, _endpoint) =
        kubelet_endpoint(&cluster, client.clone(), "follow-node", log_root.path()).await;
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
