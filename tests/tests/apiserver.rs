//! The API server against a real etcd, driven over HTTP by kube-rs: CRUD, conflicts, watches
//! (including 410 Gone after compaction), restarts, etcd outages, validation and concurrency.

use std::collections::BTreeSet;
use std::time::Duration;

use bpfk_lab::server::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, VersionMatch};
use kube::runtime::watcher;
use serde_json::json;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "nginx"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]}
    }))
    .unwrap()
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]}}
        }
    }))
    .unwrap()
}

/// etcd + bpfk-server without the in-process scheduler and controllers: these tests check the
/// API server's own behaviour, which controllers writing status would make racy.
fn api_only() -> Cluster {
    Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"])
}

/// The HTTP status of a kube-rs API error.
fn code(err: &kube::Error) -> u16 {
    match err {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_defaults_and_conflicts() {
    let cluster = api_only();
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let created = pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| !u.is_empty()));
    assert!(meta.creation_timestamp.is_some());
    let rv1: i64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(
        spec.restart_policy.as_deref(),
        Some("Always"),
        "restartPolicy defaulted"
    );
    assert_eq!(
        spec.containers[0].ports.as_ref().unwrap()[0]
            .protocol
            .as_deref(),
        Some("TCP")
    );
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    // AlreadyExists
    let err = pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), 409);

    // update with the current resourceVersion succeeds, with a stale one conflicts
    let mut fresh = pods.get("web").await.unwrap();
    fresh
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("tier".into(), "front".into());
    let updated = pods
        .replace("web", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let rv2: i64 = updated
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    let mut stale = fresh.clone();
    stale
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("tier".into(), "back".into());
    let err = pods
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(code(&err), 409);
    if let kube::Error::Api(s) = &err {
        assert_eq!(s.reason, "Conflict");
    }
    assert_eq!(
        pods.get("web").await.unwrap().metadata.labels.unwrap()["tier"],
        "front"
    );

    // merge patch and JSON patch
    let patched = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"patched": "yes"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["patched"], "yes");
    let patched = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "remove", "path": "/metadata/labels/patched"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(!patched
        .metadata
        .labels
        .as_ref()
        .unwrap()
        .contains_key("patched"));

    // list with a label selector, get of a missing object
    let list = pods
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(pods
        .list(&ListParams::default().labels("tier=back"))
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(code(&pods.get("missing").await.unwrap_err()), 404);

    // delete with a stale resourceVersion precondition conflicts; then deletes
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some(rv1.to_string()),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(code(&pods.delete("web", &dp).await.unwrap_err()), 409);
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(&pods.get("web").await.unwrap_err()), 404);

    // objects in a missing namespace are refused
    let nowhere: Api<Pod> = Api::namespaced(client.clone(), "nowhere");
    assert_eq!(
        code(
            &nowhere
                .create(&PostParams::default(), &pod("x"))
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_unique_cluster_ips_and_generation_tracks_spec() {
    let cluster = api_only();
    let client = cluster.client().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut ips = BTreeSet::new();
    for i in 0..20 {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
            "spec": {"selector": {"app": "nginx"}, "ports": [{"port": 80}]}
        }))
        .unwrap();
        let s = svcs.create(&PostParams::default(), &svc).await.unwrap();
        let spec = s.spec.unwrap();
        let ip: std::net::Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();
        let o = ip.octets();
        assert!(
            o[0] == 10 && (96..112).contains(&o[1]),
            "{ip} not in 10.96.0.0/12"
        );
        assert!(ips.insert(ip), "ClusterIP {ip} given twice");
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        assert_eq!(
            port.target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
        );
    }
    // clusterIP is immutable
    let err = svcs
        .patch(
            "svc-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": "10.96.0.77"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 422);

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deploys
        .create(&PostParams::default(), &deployment("gen"))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.revision_history_limit, Some(10));
    let strategy = spec.strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    // a status write never bumps generation nor changes spec
    let st = deploys
        .patch_status(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 3}, "spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(st.metadata.generation, Some(1));
    assert_eq!(st.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(st.status.as_ref().unwrap().replicas, Some(3));
    // a spec change bumps it and keeps status
    let d = deploys
        .patch(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}, "status": {"replicas": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.status.as_ref().unwrap().replicas, Some(3));
    // the scale subresource
    let scale = deploys.get_scale("gen").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    deploys
        .patch_scale(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(
        deploys.get("gen").await.unwrap().spec.unwrap().replicas,
        Some(5)
    );
}

/// `etcdctl` against the test's etcd; stdout.
fn etcdctl(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster
        .etcd
        .etcdctl()
        .args(args)
        .output()
        .expect("cannot run etcdctl (is etcd-client installed?)");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ClusterIP and NodePort allocation keys in etcd, but for those of kube-system/kube-dns
/// and default/kubernetes (made by the server at start-up, see [`kube_dns_key`]).
fn allocation_keys(cluster: &Cluster) -> BTreeSet<String> {
    etcdctl(
        cluster,
        &["get", "--prefix", "/registry/ranges/", "--keys-only"],
    )
    .lines()
    .filter(|l| !l.is_empty() && *l != kube_dns_key() && *l != kubernetes_key())
    .map(String::from)
    .collect()
}

/// The allocation key of kube-system/kube-dns's 10.96.0.10.
fn kube_dns_key() -> String {
    ip_key(bpfk_apiserver::cluster_dns::KUBE_DNS_IP)
}

/// The allocation key of default/kubernetes's 10.96.0.1.
fn kubernetes_key() -> String {
    ip_key(bpfk_apiserver::KUBERNETES_SERVICE_IP)
}

fn kube_dns_key_held(cluster: &Cluster) -> bool {
    etcdctl(cluster, &["get", &kube_dns_key(), "--print-value-only"]).trim()
        == "kube-system/kube-dns"
}

fn ip_key(ip: &str) -> String {
    format!("/registry/ranges/serviceips/{ip}")
}

fn port_key(port: i32) -> String {
    format!("/registry/ranges/servicenodeports/{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_updates_keep_allocations_and_startup_repairs_keys() {
    let mut cluster = api_only();
    let client = cluster.client().await;
    // The server's own kube-dns holds its address from start-up on.
    wait_for(|| kube_dns_key_held(&cluster), "kube-dns's allocation").await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let manifest = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
        "spec": {"type": "NodePort", "selector": {"app": "nginx"},
                 "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}
    });
    let created = svcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(manifest.clone()).unwrap(),
        )
        .await
        .unwrap();
    let spec = created.spec.clone().unwrap();
    let ip = spec.cluster_ip.clone().unwrap();
    assert_eq!(spec.cluster_ips, Some(vec![ip.clone()]));
    let node_ports: Vec<i32> = spec
        .ports
        .unwrap()
        .iter()
        .map(|p| p.node_port.unwrap())
        .collect();
    let held: BTreeSet<String> = [
        ip_key(&ip),
        port_key(node_ports[0]),
        port_key(node_ports[1]),
    ]
    .into();
    assert_eq!(allocation_keys(&cluster), held);

    // a PUT of the original manifest (kubectl replace -f) keeps the ClusterIP and NodePorts
    let mut replace = manifest.clone();
    replace["metadata"]["resourceVersion"] = json!(created.metadata.resource_version);
    let replaced = svcs
        .replace(
            "np",
            &PostParams::default(),
            &serde_json::from_value(replace).unwrap(),
        )
        .await
        .unwrap();
    let spec = replaced.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some(ip.as_str()));
    assert_eq!(spec.cluster_ips, Some(vec![ip.clone()]));
    let kept: Vec<i32> = spec
        .ports
        .unwrap()
        .iter()
        .map(|p| p.node_port.unwrap())
        .collect();
    assert_eq!(kept, node_ports);
    assert_eq!(allocation_keys(&cluster), held);

    // removing a port releases its NodePort
    svcs.patch(
        "np",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/spec/ports/1"}])).unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        allocation_keys(&cluster),
        [ip_key(&ip), port_key(node_ports[0])].into()
    );
    // NodePort -> ClusterIP clears and releases the NodePorts, keeps the ClusterIP
    let cip = svcs
        .patch(
            "np",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
        )
        .await
        .unwrap();
    let spec = cip.spec.unwrap();
    assert!(spec.ports.unwrap().iter().all(|p| p.node_port.is_none()));
    assert_eq!(spec.cluster_ip.as_deref(), Some(ip.as_str()));
    assert_eq!(allocation_keys(&cluster), [ip_key(&ip)].into());
    // ... and back to NodePort allocates a fresh one
    let back = svcs
        .patch(
            "np",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "NodePort"}})),
        )
        .await
        .unwrap();
    let port = back.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    assert_eq!(
        allocation_keys(&cluster),
        [ip_key(&ip), port_key(port)].into()
    );

    // a crash between steps: a key without a Service (leak) and a Service without its key
    cluster.server.stop();
    etcdctl(&cluster, &["put", &ip_key("10.96.7.7"), "default/ghost"]);
    etcdctl(&cluster, &["put", &port_key(31999), "default/ghost"]);
    etcdctl(&cluster, &["del", &ip_key(&ip)]);
    cluster.server.start_again();
    let want: BTreeSet<String> = [ip_key(&ip), port_key(port)].into();
    wait_for(
        || allocation_keys(&cluster) == want,
        "the allocation repair",
    )
    .await;
    // the restored address is not given again
    let client = cluster.client().await;
    let svcs: Api<Service> = Api::namespaced(client, "default");
    let err = svcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "dup"},
                "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 422, "{err:?}");
    // and the leaked one can be given
    let reuse = svcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "reuse"},
                "spec": {"clusterIP": "10.96.7.7", "ports": [{"port": 80}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reuse.spec.unwrap().cluster_ip.as_deref(), Some("10.96.7.7"));
    svcs.delete("np", &DeleteParams::default()).await.unwrap();
    svcs.delete("reuse", &DeleteParams::default())
        .await
        .unwrap();
    assert!(allocation_keys(&cluster).is_empty());
    // The repair kept kube-dns's and kubernetes's keys: their Services hold them.
    assert!(kube_dns_key_held(&cluster));
    let kubernetes = etcdctl(&cluster, &["get", &kubernetes_key(), "--print-value-only"]);
    assert_eq!(kubernetes.trim(), "default/kubernetes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_name_the_field_and_store_nothing() {
    let cluster = api_only();
    let client = cluster.client().await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut bad = deployment("bad");
    bad.spec.as_mut().unwrap().selector.match_labels =
        Some([("app".to_string(), "other".to_string())].into());
    let err = deploys
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err();
    assert_eq!(code(&err), 422);
    let kube::Error::Api(status) = &err else {
        unreachable!()
    };
    assert_eq!(status.reason, "Invalid");
    assert!(
        status.message.contains("spec.template.metadata.labels"),
        "{}",
        status.message
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut p = pod("Bad_Name");
    let err = pods.create(&PostParams::default(), &p).await.unwrap_err();
    assert_eq!(code(&err), 422);
    p.metadata.name = Some("noimage".into());
    p.spec.as_mut().unwrap().containers[0].image = None;
    p.spec.as_mut().unwrap().containers[0]
        .ports
        .as_mut()
        .unwrap()[0]
        .container_port = 70000;
    let err = pods.create(&PostParams::default(), &p).await.unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err:?}")
    };
    assert!(
        status.message.contains("spec.containers[0].image"),
        "{}",
        status.message
    );
    assert!(
        status
            .message
            .contains("spec.containers[0].ports[0].containerPort"),
        "{}",
        status.message
    );

    // causes carry the field paths
    let details = status.details.as_ref().expect("Invalid status has details");
    let fields: Vec<&str> = details.causes.iter().map(|c| c.field.as_str()).collect();
    assert!(fields.contains(&"spec.containers[0].image"), "{fields:?}");
    assert!(
        fields.contains(&"spec.containers[0].ports[0].containerPort"),
        "{fields:?}"
    );

    // unknown fields: refused under Strict, dropped under Warn
    let req = |mode: &str| {
        http::Request::post(format!("/api/v1/namespaces/default/pods?fieldValidation={mode}"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("u-{}", mode.to_lowercase())},
                "spec": {"containers": [{"name": "c", "image": "busybox", "imagee": "typo"}]}})).unwrap())
            .unwrap()
    };
    let err = client.request::<Pod>(req("Strict")).await.unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(status.code, 400);
    assert!(
        status
            .message
            .contains("unknown field \"spec.containers[0].imagee\""),
        "{}",
        status.message
    );
    let warned: Pod = client.request(req("Warn")).await.unwrap();
    assert_eq!(warned.metadata.name.as_deref(), Some("u-warn"));

    // values of the wrong type are 400 BadRequest naming the field, whatever the mode
    let api = cluster.server.credentials();
    let mut typed = serde_json::to_value(deployment("typed")).unwrap();
    typed["spec"]["replicas"] = json!("three");
    for mode in ["Strict", "Ignore"] {
        let (http_code, body) = api
            .request(
                "POST",
                &format!("/apis/apps/v1/namespaces/default/deployments?fieldValidation={mode}"),
                Some(&typed.to_string()),
            )
            .unwrap();
        assert_eq!(http_code, 400, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["reason"], "BadRequest");
        let message = status["message"].as_str().unwrap();
        assert!(
            message.contains("\"spec.replicas\"")
                && message.contains("cannot be handled as a Deployment"),
            "{message}"
        );
    }
    let ok = deploys
        .create(&PostParams::default(), &deployment("typed"))
        .await
        .unwrap();
    // on update (PUT), patch and the scale subresource too; nothing changes
    let mut put = serde_json::to_value(&ok).unwrap();
    put["metadata"]["creationTimestamp"] = json!("yesterday");
    let (http_code, body) = api
        .request(
            "PUT",
            "/apis/apps/v1/namespaces/default/deployments/typed",
            Some(&put.to_string()),
        )
        .unwrap();
    assert_eq!(http_code, 400, "{body}");
    assert!(body.contains("metadata.creationTimestamp"), "{body}");
    let err = deploys
        .patch(
            "typed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": "three"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 400, "{err:?}");
    let err = deploys
        .patch_status(
            "typed",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "soon"}]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 400, "{err:?}");
    let err = deploys
        .patch_scale(
            "typed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": "three"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 400, "{err:?}");
    let after = deploys.get("typed").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        ok.metadata.resource_version
    );
    deploys
        .delete("typed", &DeleteParams::default())
        .await
        .unwrap();

    // nothing half-written: only the Warn pod exists
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, vec!["u-warn".to_string()]);
    assert!(deploys
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_every_event_and_recovers_from_gone() {
    let mut cluster = api_only();
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // a raw watch: ADDED, MODIFIED, DELETED in order with increasing resourceVersions
    let start_rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = pods
        .watch(&kube::api::WatchParams::default().timeout(30), &start_rv)
        .await
        .unwrap()
        .boxed();
    pods.create(&PostParams::default(), &pod("w1"))
        .await
        .unwrap();
    pods.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    pods.delete("w1", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("watch event in time")
            .unwrap()
            .unwrap();
        match ev {
            kube::api::WatchEvent::Added(_) => kinds.push("ADDED"),
            kube::api::WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            kube::api::WatchEvent::Deleted(_) => kinds.push("DELETED"),
            kube::api::WatchEvent::Bookmark(_) => {}
            kube::api::WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    drop(stream);

    // a watch from a compacted revision gets 410 Gone
    let old_rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..5 {
        pods.create(&PostParams::default(), &pod(&format!("c{i}")))
            .await
            .unwrap();
    }
    cluster.server.stop();
    let etcd_client_rev = compact_etcd(&cluster).await;
    cluster.server.start_again();
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut stream = pods
        .watch(&kube::api::WatchParams::default().timeout(10), &old_rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("event in time")
        .unwrap()
    {
        Some(kube::api::WatchEvent::Error(e)) => assert_eq!(e.code, 410, "{e:?}"),
        Some(other) => {
            panic!("expected 410 Gone after compaction at {etcd_client_rev}, got {other:?}")
        }
        None => panic!("watch ended without an event"),
    }
    drop(stream);

    // a kube-rs reflector-style watcher sees the full state and keeps up across a server restart
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let seen2 = seen.clone();
    let w = watcher(pods.clone(), watcher::Config::default().timeout(5));
    let task = tokio::spawn(async move {
        let mut w = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(w));
        loop {
            match w.next().await {
                Some(Ok(p)) => {
                    seen2
                        .lock()
                        .unwrap()
                        .insert(p.metadata.name.unwrap_or_default());
                }
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                None => return,
            }
        }
    });
    wait_for(|| seen.lock().unwrap().len() >= 5, "initial pods").await;
    cluster.server.stop();
    compact_etcd(&cluster).await;
    cluster.server.start_again();
    let client = cluster.client().await;
    let pods2: Api<Pod> = Api::namespaced(client, "default");
    for i in 0..5 {
        pods2
            .create(&PostParams::default(), &pod(&format!("after{i}")))
            .await
            .unwrap();
    }
    wait_for(
        || (0..5).all(|i| seen.lock().unwrap().contains(&format!("after{i}"))),
        "pods created after the restart",
    )
    .await;
    task.abort();
}

/// Write a few keys and compact etcd at its current revision; returns that revision.
async fn compact_etcd(cluster: &Cluster) -> i64 {
    let out = cluster
        .etcd
        .etcdctl()
        .args(["put", "/bpfk-test/compact", "x", "-w", "json"])
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rev = v["header"]["revision"].as_i64().unwrap();
    let out = cluster
        .etcd
        .etcdctl()
        .args(["compact", &rev.to_string()])
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rev
}

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_objects_and_etcd_outage_gives_503() {
    let mut cluster = api_only();
    let client = cluster.client().await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys
        .create(&PostParams::default(), &deployment("keep"))
        .await
        .unwrap();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap(),
    )
    .await
    .unwrap();
    let before = deploys.get("keep").await.unwrap();

    cluster.server.stop();
    cluster.server.start_again();
    let client = cluster.client().await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let after = deploys.get("keep").await.unwrap();
    assert_eq!(before.metadata.uid, after.metadata.uid);
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
    assert!(Api::<Namespace>::all(client.clone())
        .get("team-a")
        .await
        .is_ok());

    // etcd down: reads and writes answer 503 (raw HTTP: kube-rs would retry 503s), the server
    // keeps running. The read goes first: a write still in flight on the connection etcd just
    // closed has an unknown outcome (504, "may still be applied"); once the client knows the
    // connection is gone, a write is refused before it is sent.
    cluster.etcd.stop();
    let api = cluster.server.credentials();
    let (code, _) = api
        .request(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/keep",
            None,
        )
        .unwrap();
    assert_eq!(code, 503);
    let body = serde_json::to_string(&pod("during-outage")).unwrap();
    let (code, status) = api
        .request("POST", "/api/v1/namespaces/default/pods", Some(&body))
        .unwrap();
    assert_eq!(code, 503, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["reason"], "ServiceUnavailable");
    let (code, _) = api.request("GET", "/readyz", None).unwrap();
    assert_eq!(code, 503);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // etcd back: everything works again and nothing was half-written
    cluster.etcd.start_again();
    let mut ok = false;
    for _ in 0..100 {
        if pods
            .create(&PostParams::default(), &pod("after-outage"))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "writes did not recover after etcd came back");
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, vec!["after-outage".to_string()]);
    assert_eq!(
        deploys.get("keep").await.unwrap().metadata.uid,
        before.metadata.uid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_and_updates_lose_nothing() {
    let cluster = api_only();
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let creates = (0..100).map(|i| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &pod(&format!("p{i:03}")))
                .await
        }
    });
    let results = futures::future::join_all(creates).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().filter(|r| r.is_err()).collect::<Vec<_>>()
    );
    let list = pods.list(&ListParams::default()).await.unwrap();
    let names: BTreeSet<String> = list
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(list.items.len(), 100);
    assert_eq!(names.len(), 100);

    // paging returns every object exactly once
    let mut paged = Vec::new();
    let mut params = ListParams::default().limit(7);
    loop {
        let page = pods.list(&params).await.unwrap();
        paged.extend(page.items.into_iter().filter_map(|p| p.metadata.name));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(paged.len(), 100);
    assert_eq!(paged.iter().cloned().collect::<BTreeSet<_>>(), names);

    // 20 concurrent read-modify-write increments of one counter with retry on conflict
    let cms: Api<Pod> = pods.clone();
    let counter = "p000";
    let updates = (0..20).map(|_| {
        let cms = cms.clone();
        async move {
            loop {
                let mut p = cms.get(counter).await.unwrap();
                let ann = p.metadata.annotations.get_or_insert_with(Default::default);
                let n: i64 = ann.get("count").map(|s| s.parse().unwrap()).unwrap_or(0);
                ann.insert("count".into(), (n + 1).to_string());
                match cms.replace(counter, &PostParams::default(), &p).await {
                    Ok(_) => return,
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
    });
    futures::future::join_all(updates).await;
    let p = cms.get(counter).await.unwrap();
    assert_eq!(p.metadata.annotations.unwrap()["count"], "20");
}

/// Kills the process on drop.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_watch_modes_and_503_while_the_cache_cannot_load() {
    let mut cluster = api_only();
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut last_rv = String::new();
    for i in 0..3 {
        let created = pods
            .create(&PostParams::default(), &pod(&format!("p{i}")))
            .await
            .unwrap();
        last_rv = created.metadata.resource_version.unwrap();
    }

    // list from the watch cache: resourceVersion=0 ("any") may lag behind the last write,
    // NotOlderThan the last create's resourceVersion must hold all three; then paged lists
    let any = pods.list(&ListParams::default().match_any()).await.unwrap();
    assert!(any.items.len() <= 3, "{} pods", any.items.len());
    let not_older = pods
        .list(
            &ListParams::default()
                .at(&last_rv)
                .matching(VersionMatch::NotOlderThan),
        )
        .await
        .unwrap();
    assert_eq!(not_older.items.len(), 3);
    assert!(
        not_older
            .metadata
            .resource_version
            .unwrap()
            .parse::<i64>()
            .unwrap()
            >= last_rv.parse::<i64>().unwrap()
    );
    let page = pods.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("continue token");
    let rest = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.is_none_or(|c| c.is_empty()));

    // streaming lists: the initial objects, the initial-events-end bookmark (InitDone), then
    // live events
    let mut stream = watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = BTreeSet::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("streaming list event in time")
            .unwrap()
            .unwrap();
        match ev {
            watcher::Event::Init => {}
            watcher::Event::InitApply(p) => {
                initial.insert(p.metadata.name.unwrap());
            }
            watcher::Event::InitDone => break,
            other => panic!("unexpected event before InitDone: {other:?}"),
        }
    }
    assert_eq!(initial, ["p0", "p1", "p2"].map(String::from).into());
    pods.create(&PostParams::default(), &pod("live"))
        .await
        .unwrap();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("live event in time")
            .unwrap()
            .unwrap();
        if let watcher::Event::Apply(p) = ev {
            assert_eq!(p.metadata.name.as_deref(), Some("live"));
            break;
        }
    }
    drop(stream);

    // a raw watch (kube-rs asks for bookmarks by default) gets BOOKMARK events carrying a resourceVersion
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut raw = pods
        .watch(&kube::api::WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(20), raw.try_next())
        .await
        .expect("a bookmark in time")
        .unwrap()
        .unwrap();
    let kube::api::WatchEvent::Bookmark(b) = ev else {
        panic!("expected a bookmark, got {ev:?}")
    };
    let bookmark_rv: i64 = b.metadata.resource_version.parse().unwrap();
    assert!(bookmark_rv >= rv.parse::<i64>().unwrap());
    drop(raw);

    // a server started while etcd is down cannot load its watch caches: cache reads and
    // watches answer 503 instead of hanging, and work once etcd is back
    cluster.server.stop();
    cluster.etcd.stop();
    let port = bpfk_lab::server::free_port();
    let api = cluster
        .server
        .credentials()
        .at(format!("127.0.0.1:{port}").parse().unwrap());
    let _server = KillOnDrop(
        std::process::Command::new(bpfk_lab::server::binary("bpfk-server"))
            .args(["--etcd-servers", &cluster.etcd.endpoint()])
            .args(
                cluster
                    .etcd
                    .tls()
                    .map(|t| t.server_flags())
                    .unwrap_or_default(),
            )
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(cluster.server.data_dir())
            .args(["--disable-scheduler", "--controllers=serviceaccount"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start bpfk-server"),
    );
    wait_for(
        || matches!(api.request("GET", "/healthz", None), Ok((200, _))),
        "bpfk-server to listen",
    )
    .await;
    for path in [
        "/api/v1/namespaces/default/pods?resourceVersion=0",
        "/api/v1/namespaces/default/pods/p0?resourceVersion=0",
        "/api/v1/pods?watch=true",
    ] {
        let (code, body) = api.request("GET", path, None).unwrap();
        assert_eq!(code, 503, "{path}: {body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["reason"], "ServiceUnavailable", "{path}");
    }
    cluster.etcd.start_again();
    wait_for(
        || {
            matches!(
                api.request("GET", "/api/v1/namespaces/default/pods?resourceVersion=0", None),
                Ok((200, body)) if body.contains("\"p0\"")
            )
        },
        "the cache to load once etcd is back",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_finalize_subresource_completes_deletion() {
    // no namespace controller: the test plays it through the finalize subresource
    let cluster = Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"]);
    let api = cluster.server.credentials();
    let ns = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fin"}}"#;
    let (code, body) = api.request("POST", "/api/v1/namespaces", Some(ns)).unwrap();
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .request("DELETE", "/api/v1/namespaces/fin", None)
        .unwrap();
    assert!(code == 200 || code == 202, "{code} {body}");
    let (code, body) = api.request("GET", "/api/v1/namespaces/fin", None).unwrap();
    assert_eq!(code, 200, "the kubernetes finalizer keeps it: {body}");
    let live: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(live["status"]["phase"], "Terminating");
    let mut finalized = live.clone();
    finalized["spec"]["finalizers"] = json!([]);
    let (code, body) = api
        .request(
            "PUT",
            "/api/v1/namespaces/fin/finalize",
            Some(&finalized.to_string()),
        )
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = api.request("GET", "/api/v1/namespaces/fin", None).unwrap();
    assert_eq!(code, 404, "finalized namespace is gone: {body}");
}

/// `as=PartialObjectMetadata(List)`: kube-rs metadata-only get, list and watch (what the
/// garbage collector uses) see each object's metadata and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_get_list_and_watch() {
    use kube::core::PartialObjectMeta;
    let cluster = api_only();
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let meta: Api<PartialObjectMeta<Pod>> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("m1"))
        .await
        .unwrap();

    // a watch from the start: its events are metadata only, bookmarks included
    let mut events = Box::pin(watcher(
        meta.clone(),
        watcher::Config::default().any_semantic(),
    ));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("metadata watch event")
            .expect("watch open")
            .expect("watch event");
        match ev {
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                seen.push(p.metadata.name.clone().unwrap());
                if seen.len() == 1 {
                    pods.create(&PostParams::default(), &pod("m2"))
                        .await
                        .unwrap();
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec!["m1", "m2"]);

    let got = meta.get("m1").await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("m1"));
    assert!(got.metadata.uid.is_some());
    let types = got.types.clone().expect("kind and apiVersion");
    assert_eq!(
        (types.kind.as_str(), types.api_version.as_str()),
        ("PartialObjectMetadata", "meta.k8s.io/v1")
    );
    let listed = meta.list(&ListParams::default()).await.unwrap();
    let mut names: Vec<String> = listed
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["m1", "m2"]);
    assert!(listed.metadata.resource_version.is_some());

    // the raw answer carries no spec or status
    let request = http::Request::get("/api/v1/namespaces/default/pods/m1")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .unwrap();
    let body = client.request_text(request).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "PartialObjectMetadata");
    assert!(v.get("spec").is_none() && v.get("status").is_none(), "{v}");
    assert_eq!(v["metadata"]["name"], "m1");
}
