//! Compatibility of the API server with what Kubernetes clients send (issue 17 item 7), against
//! a real etcd and a real bpfk-server, over raw HTTP, kube-rs and real kubectl: query
//! booleans, dryRun, body types and sizes, resourceVersion checks, percent-encoded paths,
//! concurrent unconditional writes, deep YAML, watch-list, aggregated discovery, the local
//! APIServices and metadata-only answers.

use std::time::Duration;

use bpfk_lab::api_client::ApiCredentials;
use bpfk_lab::server::{success, Cluster};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};

fn api_only() -> Cluster {
    Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"])
}

/// One HTTP/1.1 request on loopback: (status, response headers, body with chunk framing
/// removed by keeping only the lines that are JSON documents, or the raw body otherwise).
struct Answer {
    code: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.code, self.body))
    }

    /// The JSON lines of a (chunked) watch stream.
    fn events(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(|v| v.is_object())
            .collect()
    }
}

fn raw(
    api: &ApiCredentials,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let raw = api
        .exchange(method, path, headers, body)
        .expect("an answer");
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        body.lines()
            .filter(|l| !l.trim().chars().all(|c| c.is_ascii_hexdigit()))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        body.to_string()
    };
    Answer {
        code,
        headers: headers.to_string(),
        body,
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn pod_json(name: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
    .to_string()
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[test]
fn writes_check_their_body_type_size_and_options() {
    let cluster = api_only();
    let api = cluster.server.credentials();
    let get = |name: &str| raw(&api, "GET", &format!("{PODS}/{name}"), &[], b"").code;

    // text/plain is 415 and nothing is stored; no Content-Type is JSON, as kube-apiserver
    let a = raw(
        &api,
        "POST",
        PODS,
        &[("Content-Type", "text/plain")],
        pod_json("plain").as_bytes(),
    );
    assert_eq!(a.code, 415, "{}", a.body);
    assert_eq!(a.json()["reason"], "UnsupportedMediaType");
    assert_eq!(get("plain"), 404);
    let a = raw(&api, "POST", PODS, &[], pod_json("untyped").as_bytes());
    assert_eq!(a.code, 201, "{}", a.body);

    // only dryRun=All is a dry run; anything else is refused and stores nothing
    for bad in ["all", "true", "Al"] {
        let a = raw(
            &api,
            "POST",
            &format!("{PODS}?dryRun={bad}"),
            &[JSON],
            pod_json("dry").as_bytes(),
        );
        assert_eq!(a.code, 422, "dryRun={bad}: {}", a.body);
        assert!(
            a.json()["message"].as_str().unwrap().contains("dryRun"),
            "{}",
            a.body
        );
        assert_eq!(get("dry"), 404, "dryRun={bad} stored the pod");
    }
    let a = raw(
        &api,
        "POST",
        &format!("{PODS}?dryRun=All"),
        &[JSON],
        pod_json("dry").as_bytes(),
    );
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(get("dry"), 404, "a dry run stores nothing");
    let a = raw(
        &api,
        "DELETE",
        &format!("{PODS}/untyped?dryRun=yes"),
        &[],
        b"",
    );
    assert_eq!(a.code, 422, "{}", a.body);
    assert_eq!(get("untyped"), 200);

    // percent-encoded path segments name the same object
    let a = raw(
        &api,
        "GET",
        "/api/v1/namespaces/%64efault/pods/%75ntyped",
        &[],
        b"",
    );
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(a.json()["metadata"]["name"], "untyped");

    // a body over the 3 MiB limit is 413, refused before it is sent
    let a = raw(
        &api,
        "POST",
        PODS,
        &[
            JSON,
            ("Content-Length", "4194304"),
            ("Expect", "100-continue"),
        ],
        b"",
    );
    assert_eq!(a.code, 413, "{}", a.body);
    assert_eq!(a.json()["reason"], "RequestEntityTooLarge");

    // 1,000,000-deep YAML (and JSON) is refused, quickly enough for the read timeout
    let deep = "[".repeat(1_000_000);
    let a = raw(
        &api,
        "POST",
        PODS,
        &[("Content-Type", "application/yaml")],
        deep.as_bytes(),
    );
    assert_eq!(a.code, 400, "{}", a.body);
    assert!(a.body.contains("nests deeper"), "{}", a.body);
    let a = raw(&api, "POST", PODS, &[JSON], deep.as_bytes());
    assert_eq!(a.code, 400, "{}", a.body);
    // the server still answers
    assert_eq!(get("untyped"), 200);
}

#[test]
fn reads_check_resource_versions_and_accept_any_true() {
    let cluster = api_only();
    let api = cluster.server.credentials();
    let a = raw(&api, "POST", PODS, &[JSON], pod_json("p1").as_bytes());
    assert_eq!(a.code, 201, "{}", a.body);
    let rv: i64 = a.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    for bad in ["-1", "abc", "1.5"] {
        for path in [
            format!("{PODS}?resourceVersion={bad}"),
            format!("{PODS}?watch=1&resourceVersion={bad}"),
            format!("{PODS}/p1?resourceVersion={bad}"),
        ] {
            let a = raw(&api, "GET", &path, &[], b"");
            assert_eq!(a.code, 400, "{path}: {}", a.body);
        }
    }
    let future = rv + 1000;
    for path in [
        format!("{PODS}?resourceVersion={future}"),
        format!("{PODS}?resourceVersion={future}&resourceVersionMatch=Exact"),
        format!("{PODS}?watch=true&resourceVersion={future}"),
    ] {
        let a = raw(&api, "GET", &path, &[], b"");
        assert_eq!(a.code, 504, "{path}: {}", a.body);
        let status = a.json();
        assert_eq!(status["reason"], "Timeout");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with("Too large resource version"),
            "{status}"
        );
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "ResourceVersionTooLarge"
        );
    }
    // a revision the server has is served
    let a = raw(
        &api,
        "GET",
        &format!("{PODS}?resourceVersion={rv}"),
        &[],
        b"",
    );
    assert_eq!(a.code, 200, "{}", a.body);

    // python's client sends watch=True and allowWatchBookmarks=True
    let a = raw(
        &api,
        "GET",
        &format!("{PODS}?watch=True&allowWatchBookmarks=True&timeoutSeconds=1"),
        &[],
        b"",
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let events = a.events();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "p1"),
        "{}",
        a.body
    );
    // watch=False is a list
    let a = raw(&api, "GET", &format!("{PODS}?watch=False"), &[], b"");
    assert_eq!(a.json()["kind"], "PodList");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_list_ends_its_initial_events_with_the_bookmark() {
    let cluster = api_only();
    let api = cluster.server.credentials();
    for name in ["w1", "w2"] {
        assert_eq!(
            raw(&api, "POST", PODS, &[JSON], pod_json(name).as_bytes()).code,
            201
        );
    }
    // client-go's watch-list: a consistent read (no resourceVersion), then the bookmark
    let base = "watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=2";
    for rv in ["", "&resourceVersion=0", "&resourceVersion=1"] {
        let a = raw(&api, "GET", &format!("{PODS}?{base}{rv}"), &[], b"");
        assert_eq!(a.code, 200, "{}", a.body);
        let events = a.events();
        let end = events
            .iter()
            .position(|e| {
                e["type"] == "BOOKMARK"
                    && e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"
            })
            .unwrap_or_else(|| panic!("no initial-events-end bookmark ({rv}): {}", a.body));
        let mut initial: Vec<&str> = events[..end]
            .iter()
            .map(|e| {
                assert_eq!(e["type"], "ADDED");
                e["object"]["metadata"]["name"].as_str().unwrap()
            })
            .collect();
        initial.sort();
        assert_eq!(initial, vec!["w1", "w2"], "{rv}");
    }
    // as Kubernetes validates it
    let a = raw(
        &api,
        "GET",
        &format!("{PODS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"),
        &[],
        b"",
    );
    assert_eq!(a.code, 422, "{}", a.body);
    assert!(a.body.contains("resourceVersionMatch"), "{}", a.body);
    let a = raw(
        &api,
        "GET",
        &format!("{PODS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"),
        &[],
        b"",
    );
    assert_eq!(a.code, 422, "{}", a.body);
    assert!(a.body.contains("allowWatchBookmarks"), "{}", a.body);

    // kube-rs' streaming-list watcher gets both pods, then InitDone
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut stream = Box::pin(watcher(pods, watcher::Config::default().streaming_lists()));
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("streaming list event")
            .expect("stream open")
            .expect("watch event");
        match ev {
            watcher::Event::Init => {}
            watcher::Event::InitApply(p) => seen.push(p.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["w1", "w2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_patch_and_put() {
    let cluster = api_only();
    let api = cluster.server.credentials();
    assert_eq!(
        raw(&api, "POST", PODS, &[JSON], pod_json("m1").as_bytes()).code,
        201
    );
    let meta_accept = (
        "Accept",
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    );
    let a = raw(
        &api,
        "PATCH",
        &format!("{PODS}/m1"),
        &[
            ("Content-Type", "application/merge-patch+json"),
            meta_accept,
        ],
        br#"{"metadata":{"finalizers":["example.com/keep"]}}"#,
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["kind"], "PartialObjectMetadata");
    assert_eq!(v["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(v["metadata"]["finalizers"][0], "example.com/keep");
    assert!(v.get("spec").is_none(), "{v}");

    // the kube-rs metadata API's patch
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let patched = pods
        .patch_metadata(
            "m1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null, "labels": {"gc": "seen"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["gc"], "seen");
    assert!(patched.metadata.finalizers.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconditional_concurrent_writes_never_conflict() {
    const WRITERS: usize = 8;
    const PATCHES: usize = 60;
    let cluster = api_only();
    let client = cluster.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "hot"}, "data": {}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let mut put_target = cm.clone();
    put_target.metadata.name = Some("hot-put".into());
    cms.create(&PostParams::default(), &put_target)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..PATCHES {
                let patch = json!({"data": {format!("w{w}"): i.to_string()}});
                if let Err(e) = cms
                    .patch("hot", &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    failures.push(format!("writer {w} patch {i}: {e}"));
                }
                if i % 10 == 0 {
                    // a PUT without resourceVersion is unconditional too (of another object:
                    // a PUT of a stale copy replaces what others patched meanwhile)
                    let mut current = cms.get("hot-put").await.unwrap();
                    current.metadata.resource_version = None;
                    current
                        .data
                        .get_or_insert_with(Default::default)
                        .insert(format!("put{w}"), i.to_string());
                    if let Err(e) = cms
                        .replace("hot-put", &PostParams::default(), &current)
                        .await
                    {
                        failures.push(format!("writer {w} put {i}: {e}"));
                    }
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    let data = cms.get("hot").await.unwrap().data.unwrap();
    for w in 0..WRITERS {
        assert_eq!(
            data[&format!("w{w}")],
            (PATCHES - 1).to_string(),
            "{data:?}"
        );
    }
}

#[test]
fn aggregated_discovery_serves_kubectl() {
    let cluster = api_only();
    let api = cluster.server.credentials();
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let a = raw(&api, "GET", "/apis", &[("Accept", accept)], b"");
    assert_eq!(a.code, 200, "{}", a.body);
    assert!(
        a.headers
            .contains("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
        "{}",
        a.headers
    );
    let v = a.json();
    assert_eq!(v["kind"], "APIGroupDiscoveryList");
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"apps") && names.contains(&"apiregistration.k8s.io"),
        "{names:?}"
    );
    let core = raw(&api, "GET", "/api", &[("Accept", accept)], b"").json();
    assert_eq!(core["items"][0]["versions"][0]["version"], "v1");
    // the legacy documents stay for clients that do not ask
    let legacy = raw(&api, "GET", "/apis", &[], b"").json();
    assert_eq!(legacy["kind"], "APIGroupList");
    let group = raw(&api, "GET", "/apis/apiregistration.k8s.io/v1", &[], b"").json();
    assert_eq!(group["kind"], "APIResourceList");
    assert_eq!(group["resources"][0]["name"], "apiservices", "{group}");
    // groups in their APIServices' priority order, as kube-apiserver lists them
    let order: Vec<&str> = legacy["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        order[..3],
        ["apiregistration.k8s.io", "apps", "events.k8s.io"]
    );

    // kubectl with an empty cache reads the aggregated documents only
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let out = cluster.kubectl(&["api-resources", "--cache-dir", cache_dir, "-v=6"]);
    let stdout = success(&out);
    assert!(
        stdout.contains("deployments") && stdout.contains("pods"),
        "{stdout}"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("/apis"), "{log}");
    assert!(
        !log.contains("/apis/apps/v1"),
        "kubectl fell back to legacy discovery: {log}"
    );
    let out = cluster.kubectl(&["get", "deployments,pods", "-A", "--cache-dir", cache_dir]);
    success(&out);
}

/// `etcdctl get KEY --rev=REV`: Ok(output) or Err(stderr).
/// `kubectl get apiservices` once every local APIService is there (the server registers them
/// right after its bootstrap policy).
fn wait_for_local_api_services(cluster: &Cluster) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.kubectl(&["get", "apiservices"]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let names = [
            "v1.",
            "v1.apps",
            "v1.apiregistration.k8s.io",
            "v1.discovery.k8s.io",
        ];
        if out.status.success() && names.iter().all(|n| stdout.contains(&format!("{n} "))) {
            return stdout;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no local APIServices: {stdout}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn local_api_services_are_served_and_aggregated_ones_refused() {
    let cluster = api_only();
    let api = cluster.server.credentials();
    let table = wait_for_local_api_services(&cluster);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        ["NAME", "SERVICE", "AVAILABLE", "AGE"]
            .iter()
            .all(|c| header.contains(c)),
        "{table}"
    );
    let apps = table.lines().find(|l| l.starts_with("v1.apps ")).unwrap();
    let cells: Vec<&str> = apps.split_whitespace().collect();
    assert_eq!(cells[1..3], ["Local", "True"], "{table}");
    // one per served group version, no more
    let served = table.lines().skip(1).count();
    assert_eq!(served, 10, "{table}");

    let core = success(&cluster.kubectl(&["get", "apiservice", "v1.", "-o", "json"]));
    let core: Value = serde_json::from_str(&core).unwrap();
    assert_eq!(core["spec"]["groupPriorityMinimum"], 18000, "{core}");
    assert_eq!(core["spec"]["versionPriority"], 1, "{core}");
    assert!(core["spec"].get("group").is_none(), "{core}");
    assert_eq!(
        core["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"],
        "onstart"
    );
    let available = &core["status"]["conditions"][0];
    assert_eq!(
        (
            &available["type"],
            &available["status"],
            &available["reason"]
        ),
        (&json!("Available"), &json!("True"), &json!("Local")),
        "{core}"
    );
    let proto = raw(
        &api,
        "GET",
        "/apis/apiregistration.k8s.io/v1/apiservices/v1.apps",
        &[("Accept", "application/vnd.kubernetes.protobuf")],
        b"",
    );
    assert_eq!(proto.code, 200, "{}", proto.headers);
    assert!(
        proto
            .headers
            .contains("application/vnd.kubernetes.protobuf"),
        "{}",
        proto.headers
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.yaml");
    std::fs::write(
        &file,
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\n\
         metadata: {name: v1beta1.metrics.k8s.io}\n\
         spec: {group: metrics.k8s.io, version: v1beta1, groupPriorityMinimum: 100,\n\
           versionPriority: 100, insecureSkipTLSVerify: true,\n\
           service: {namespace: kube-system, name: metrics-server}}\n",
    )
    .unwrap();
    let out = cluster.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.service") && err.contains("aggregated API servers are not supported"),
        "{err}"
    );
    let missing = cluster.kubectl(&["get", "apiservice", "v1beta1.metrics.k8s.io"]);
    assert!(
        !missing.status.success(),
        "an aggregated APIService was stored"
    );
}

fn etcd_get_at(cluster: &Cluster, key: &str, rev: i64) -> Result<String, String> {
    let out = cluster
        .etcd
        .etcdctl()
        .args(["get", key, "--rev", &rev.to_string()])
        .output()
        .expect("etcdctl must be installed (cargo xtask deps)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn etcd_history_is_compacted_on_the_interval() {
    let cluster = Cluster::start_with(&[
        "--disable-scheduler",
        "--controllers=serviceaccount",
        "--etcd-compaction-interval=1s",
    ]);
    let api = cluster.server.credentials();
    let a = raw(&api, "POST", PODS, &[JSON], pod_json("c1").as_bytes());
    assert_eq!(a.code, 201, "{}", a.body);
    let first: i64 = a.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let key = "/registry/pods/default/c1";
    assert!(
        etcd_get_at(&cluster, key, first).is_ok(),
        "the history is there at first"
    );
    // writes move the revision on; the server compacts the one seen a tick before
    let mut compacted = false;
    for i in 0..60 {
        let patch = format!(r#"{{"metadata":{{"labels":{{"n":"{i}"}}}}}}"#);
        let a = raw(
            &api,
            "PATCH",
            &format!("{PODS}/c1"),
            &[("Content-Type", "application/merge-patch+json")],
            patch.as_bytes(),
        );
        assert_eq!(a.code, 200, "{}", a.body);
        std::thread::sleep(Duration::from_millis(250));
        if let Err(e) = etcd_get_at(&cluster, key, first) {
            assert!(e.contains("compacted"), "{e}");
            compacted = true;
            break;
        }
    }
    assert!(
        compacted,
        "etcd's history was never compacted:\n{}",
        cluster.server.log()
    );
    // a read of the compacted revision from etcd is told it is gone (410); watches still
    // resume from the watch cache's own window, as Kubernetes' watch cache serves them
    let a = raw(
        &api,
        "GET",
        &format!("{PODS}?resourceVersion={first}&resourceVersionMatch=Exact"),
        &[],
        b"",
    );
    assert_eq!(a.code, 410, "{}", a.body);
    assert_eq!(a.json()["reason"], "Expired");
    // the server keeps serving and writing
    let a = raw(&api, "POST", PODS, &[JSON], pod_json("c2").as_bytes());
    assert_eq!(a.code, 201, "{}", a.body);
}
