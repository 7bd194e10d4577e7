//! Protobuf between the real kubectl (v1.32, whose typed commands send and accept
//! `application/vnd.kubernetes.protobuf`) and bpfk-server, and raw protobuf get, list and
//! watch read back with the server's codec against the JSON of the same objects.

use std::time::Duration;

use bpfk_lab::server::{success, Cluster};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&success(&c.kubectl(&all))).expect("kubectl prints JSON")
}

#[test]
fn typed_kubectl_commands_speak_protobuf() {
    let c = Cluster::start();
    let created = |args: &[&str], what: &str| {
        assert_eq!(success(&c.kubectl(args)).trim(), format!("{what} created"));
    };
    created(&["create", "namespace", "team-p"], "namespace/team-p");
    created(
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox:1.36",
            "--replicas=2",
            "--port=8080",
            "-n",
            "team-p",
        ],
        "deployment.apps/web",
    );
    let deployment = json(&c, &["get", "deployment", "web", "-n", "team-p"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox:1.36");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    // what the Go client wrote as empty strings was defaulted, as for a JSON client
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");

    created(
        &[
            "create",
            "service",
            "clusterip",
            "web",
            "--tcp=80:8080",
            "-n",
            "team-p",
        ],
        "service/web",
    );
    let service = json(&c, &["get", "service", "web", "-n", "team-p"]);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
    let ip: std::net::Ipv4Addr = service["spec"]["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .expect("a ClusterIP");
    let [a, b, _, _] = ip.octets();
    assert!(
        a == 10 && (96..112).contains(&b),
        "in 10.96.0.0/12: {service}"
    );

    created(
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=fast",
            "-n",
            "team-p",
        ],
        "configmap/settings",
    );
    assert_eq!(
        json(&c, &["get", "configmap", "settings", "-n", "team-p"])["data"]["mode"],
        "fast"
    );
    created(
        &[
            "create",
            "secret",
            "generic",
            "token",
            "--from-literal=key=s3cret",
            "-n",
            "team-p",
        ],
        "secret/token",
    );
    // base64 of "s3cret"
    assert_eq!(
        json(&c, &["get", "secret", "token", "-n", "team-p"])["data"]["key"],
        "czNjcmV0"
    );
    created(
        &["create", "serviceaccount", "robot", "-n", "team-p"],
        "serviceaccount/robot",
    );
    created(
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            "team-p",
        ],
        "role.rbac.authorization.k8s.io/reader",
    );
    let rules = json(&c, &["get", "role", "reader", "-n", "team-p"])["rules"].clone();
    assert_eq!(rules[0]["verbs"], serde_json::json!(["get", "list"]));

    // kubectl's typed reads (the pods of `logs`, `exec`, `drain`) get protobuf answers
    let err = c.kubectl(&["logs", "no-such-pod", "-n", "team-p"]);
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains(r#"pods "no-such-pod" not found"#),
        "the Status of a 404 decodes: {stderr}"
    );
    success(&c.kubectl(&["delete", "namespace", "team-p", "--wait=false"]));
}

#[test]
fn kubectl_drain_evicts_through_protobuf() {
    let c = Cluster::start();
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: drain-me\n";
    success(&c.kubectl_stdin(&["apply", "-f", "-"], node));
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\nspec:\n  nodeName: drain-me\n  containers:\n  - {name: c, image: busybox:1.36}\n";
    success(&c.kubectl_stdin(&["apply", "-f", "-"], pod));
    // discovery lists pods/eviction, so kubectl posts a policy/v1 Eviction (protobuf) per pod
    let out = success(&c.kubectl(&[
        "drain",
        "drain-me",
        "--force",
        "--grace-period=0",
        "--timeout=60s",
    ]));
    for line in [
        "node/drain-me cordoned",
        "evicting pod default/bound",
        "pod/bound evicted",
        "node/drain-me drained",
    ] {
        assert!(out.contains(line), "{line:?} missing: {out}");
    }
    let node = json(&c, &["get", "node", "drain-me"]);
    assert_eq!(node["spec"]["unschedulable"], true);
    let err = c.kubectl(&["get", "pod", "bound"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("not found"));
}

/// A GET with `Accept: application/vnd.kubernetes.protobuf`: (content type, body).
async fn get_protobuf(client: &kube::Client, path: &str) -> (String, Vec<u8>) {
    get_as(client, path, PROTOBUF).await
}

/// A GET with `Accept: accept`: (content type, body).
async fn get_as(client: &kube::Client, path: &str, accept: &str) -> (String, Vec<u8>) {
    let req = http::Request::get(path)
        .header(http::header::ACCEPT, accept)
        .body(Vec::new())
        .expect("a request");
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("an answer");
    let content_type = resp.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    (content_type, body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_get_list_and_watch_match_json() {
    let c = Cluster::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n  labels: {app: pb}\ndata: {a: \"1\"}\n";
    success(&c.kubectl_stdin(&["apply", "-f", "-"], cm));
    let client = c.client().await;

    let (content_type, body) =
        get_protobuf(&client, "/api/v1/namespaces/default/configmaps/first").await;
    assert_eq!(content_type, PROTOBUF);
    let decoded = bpfk_apiserver::protobuf::decode(&body).expect("a protobuf ConfigMap");
    let as_json = json(&c, &["get", "configmap", "first"]);
    assert_eq!(decoded["data"], as_json["data"]);
    assert_eq!(decoded["metadata"]["uid"], as_json["metadata"]["uid"]);
    assert_eq!(
        decoded["metadata"]["creationTimestamp"],
        as_json["metadata"]["creationTimestamp"]
    );

    let (_, body) = get_protobuf(
        &client,
        "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dpb",
    )
    .await;
    let list = bpfk_apiserver::protobuf::decode(&body).expect("a protobuf ConfigMapList");
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"][0]["metadata"]["name"], "first");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let (content_type, body) = get_as(
        &client,
        "/api/v1/namespaces/default/configmaps/first",
        "application/yaml",
    )
    .await;
    assert_eq!(content_type, "application/yaml");
    let yaml: Value = serde_yaml::from_slice(&body).expect("a YAML ConfigMap");
    assert_eq!(yaml["data"], as_json["data"]);

    let (_, body) = get_protobuf(&client, "/api/v1/namespaces/default/configmaps/missing").await;
    let status = bpfk_apiserver::protobuf::decode(&body).expect("a protobuf Status");
    assert_eq!(
        (status["kind"].as_str(), status["code"].as_i64()),
        (Some("Status"), Some(404))
    );

    // a watch from the list's revision sees the next ConfigMap as one length-delimited frame
    let watch = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&labelSelector=app%3Dpb&timeoutSeconds=30");
    let req = http::Request::get(watch.as_str())
        .header(http::header::ACCEPT, PROTOBUF)
        .body(kube::client::Body::from(Vec::new()))
        .expect("a request");
    let resp = client.send(req).await.expect("a watch");
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/vnd.kubernetes.protobuf;stream=watch"
    );
    let second = cm.replace("first", "second");
    success(&c.kubectl_stdin(&["apply", "-f", "-"], &second));
    let mut body = resp.into_body().into_data_stream();
    let mut buffered = Vec::new();
    let frame = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if buffered.len() >= 4 {
                let len = u32::from_be_bytes(buffered[..4].try_into().unwrap()) as usize;
                if buffered.len() >= 4 + len {
                    return buffered[4..4 + len].to_vec();
                }
            }
            let chunk = body
                .next()
                .await
                .expect("the watch stays open")
                .expect("a chunk");
            buffered.extend_from_slice(&chunk);
        }
    })
    .await
    .expect("an event within 20 s");
    let event = bpfk_apiserver::protobuf::decode_watch_event(&frame).expect("a WatchEvent");
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["kind"], "ConfigMap");
    assert_eq!(event["object"]["metadata"]["name"], "second");
}
