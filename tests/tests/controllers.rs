//! The controllers and the scheduler (in-process, ordinary kube-rs clients) against a real
//! bpfk-server on a real etcd, with simulated nodes run by a fake kubelet.

mod cluster_sim;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster_sim::{
    add_node, create_pod, ensure_namespace, is_ready, node_of, pod_json, pods, wait_for, Sim,
    READY_ANNOTATION,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

fn deployment_json(name: &str, replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
            }
        }
    })
}

async fn create_deployment(client: &Client, ns: &str, body: Value) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d: Deployment = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &d)
        .await
        .unwrap_or_else(|e| panic!("create deployment: {e}"))
}

/// Waits until the deployment reports `n` available, updated replicas for its current generation.
async fn wait_rolled_out(client: &Client, ns: &str, name: &str, n: i32) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("deployment {name} to have {n} available updated replicas"),
        || {
            let api = api.clone();
            async move {
                let d = api.get(name).await.ok()?;
                let s = d.status.as_ref()?;
                let done = s.observed_generation == d.metadata.generation
                    && s.updated_replicas == Some(n)
                    && s.available_replicas == Some(n)
                    && s.ready_replicas == Some(n)
                    && s.replicas == Some(n);
                done.then_some(d)
            }
        },
    )
    .await
}

async fn owned_replicasets(client: &Client, ns: &str, d: &Deployment) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let uid = d.metadata.uid.clone().unwrap();
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect()
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
}

async fn three_nodes(sim: &Sim) {
    for n in ["node-1", "node-2", "node-3"] {
        add_node(sim, n, json!({}), "4", "8Gi", "110").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_gets_its_own_pod_cidr() {
    let sim = Sim::start(false, true).await;
    for i in 0..6 {
        add_node(&sim, &format!("n{i}"), json!({}), "4", "8Gi", "110").await;
    }
    let api: Api<Node> = Api::all(sim.client.clone());
    let cidrs = wait_for("every node to get a pod CIDR", || {
        let api = api.clone();
        async move {
            let nodes = api.list(&ListParams::default()).await.ok()?.items;
            let cidrs: Vec<String> = nodes
                .iter()
                .filter_map(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.clone()))
                .collect();
            (nodes.len() == 6 && cidrs.len() == 6).then_some(nodes)
        }
    })
    .await;
    let mut seen = HashSet::new();
    for n in &cidrs {
        let spec = n.spec.as_ref().unwrap();
        let cidr = spec.pod_cidr.clone().unwrap();
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with(".0/24"),
            "{cidr}"
        );
        assert_eq!(spec.pod_cidrs.clone().unwrap(), vec![cidr.clone()]);
        assert!(seen.insert(cidr.clone()), "{cidr} given twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_pod_deleted_by_hand_is_replaced() {
    let sim = Sim::start(true, true).await;
    three_nodes(&sim).await;
    create_deployment(
        &sim.client,
        "default",
        deployment_json("nginx-deployment", 3, "nginx:1.14.2"),
    )
    .await;
    let d = wait_rolled_out(&sim.client, "default", "nginx-deployment", 3).await;
    // the ReplicaSet is named after the pod-template hash it carries
    let rss = owned_replicasets(&sim.client, "default", &d).await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs
        .labels()
        .get("pod-template-hash")
        .cloned()
        .expect("pod-template-hash label");
    assert_eq!(rs.name_any(), format!("nginx-deployment-{hash}"));
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()
            .get("pod-template-hash"),
        Some(&hash)
    );
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let conds: BTreeMap<String, String> = d
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    assert_eq!(conds.get("Available").map(String::as_str), Some("True"));
    assert_eq!(conds.get("Progressing").map(String::as_str), Some("True"));

    let before = pods(&sim.client, "default", "app=nginx-deployment").await;
    assert_eq!(before.len(), 3);
    for p in &before {
        assert!(p
            .name_any()
            .starts_with(&format!("nginx-deployment-{hash}-")));
        assert!(is_ready(p));
        // replicas of one owner are spread over the three nodes
    }
    let nodes: HashSet<Option<String>> = before.iter().map(node_of).collect();
    assert_eq!(nodes.len(), 3, "replicas spread across nodes: {nodes:?}");

    let victim = before[0].name_any();
    let api: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    api.delete(&victim, &DeleteParams::default()).await.unwrap();
    wait_for("a replacement pod to be ready", || {
        let client = sim.client.clone();
        let victim = victim.clone();
        async move {
            let now = pods(&client, "default", "app=nginx-deployment").await;
            let live: Vec<&Pod> = now.iter().filter(|p| active(p)).collect();
            (live.len() == 3
                && live.iter().all(|p| is_ready(p))
                && !live.iter().any(|p| p.name_any() == victim))
            .then_some(())
        }
    })
    .await;
    wait_rolled_out(&sim.client, "default", "nginx-deployment", 3).await;

    // scale down and up through spec.replicas
    let dapi: Api<Deployment> = Api::namespaced(sim.client.clone(), "default");
    dapi.patch(
        "nginx-deployment",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_rolled_out(&sim.client, "default", "nginx-deployment", 1).await;
    wait_for("only one pod left", || {
        let client = sim.client.clone();
        async move {
            let now = pods(&client, "default", "app=nginx-deployment").await;
            (now.iter().filter(|p| active(p)).count() == 1).then_some(())
        }
    })
    .await;
    dapi.patch(
        "nginx-deployment",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    wait_rolled_out(&sim.client, "default", "nginx-deployment", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_update_keeps_availability_and_ends_on_the_new_replicaset() {
    let sim = Sim::start(true, true).await;
    three_nodes(&sim).await;
    create_deployment(
        &sim.client,
        "default",
        deployment_json("web", 3, "nginx:1.14.2"),
    )
    .await;
    let d = wait_rolled_out(&sim.client, "default", "web", 3).await;
    let old_rs = owned_replicasets(&sim.client, "default", &d).await;
    assert_eq!(old_rs.len(), 1);
    let old_name = old_rs[0].name_any();

    // watch the pods while the rollout runs: with 3 replicas and 25%/25%, maxSurge is 1 and
    // maxUnavailable 0, so at least 3 pods stay ready and at most 4 exist
    let stop = Arc::new(AtomicBool::new(false));
    let min_ready = Arc::new(AtomicUsize::new(usize::MAX));
    let max_live = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (client, stop, min_ready, max_live, samples) = (
            sim.client.clone(),
            stop.clone(),
            min_ready.clone(),
            max_live.clone(),
            samples.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let now = pods(&client, "default", "app=web").await;
                let live: Vec<&Pod> = now.iter().filter(|p| active(p)).collect();
                let ready = live.iter().filter(|p| is_ready(p)).count();
                min_ready.fetch_min(ready, Ordering::SeqCst);
                max_live.fetch_max(live.len(), Ordering::SeqCst);
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let api: Api<Deployment> = Api::namespaced(sim.client.clone(), "default");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.16.1",
        "ports": [{"containerPort": 80}], "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let d = wait_rolled_out(&sim.client, "default", "web", 3).await;
    let rss = wait_for("the old ReplicaSet to be scaled to 0", || {
        let client = sim.client.clone();
        let d = d.clone();
        let old_name = old_name.clone();
        async move {
            let rss = owned_replicasets(&client, "default", &d).await;
            let old = rss.iter().find(|rs| rs.name_any() == old_name)?;
            let old_status = old.status.as_ref().map_or(0, |s| s.replicas);
            (rs_replicas(old) == 0 && old_status == 0).then_some(rss)
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    monitor.await.unwrap();

    assert_eq!(rss.len(), 2, "old and new ReplicaSet kept (history)");
    let new = rss.iter().find(|rs| rs.name_any() != old_name).unwrap();
    assert_eq!(rs_replicas(new), 3);
    assert_eq!(
        new.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    let images: HashSet<String> = pods(&sim.client, "default", "app=web")
        .await
        .iter()
        .filter(|p| active(p))
        .map(|p| {
            p.spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(images, HashSet::from(["nginx:1.16.1".to_string()]));
    assert!(samples.load(Ordering::SeqCst) > 0);
    assert!(
        min_ready.load(Ordering::SeqCst) >= 3,
        "ready pods dropped to {} during the rollout",
        min_ready.load(Ordering::SeqCst)
    );
    assert!(
        max_live.load(Ordering::SeqCst) <= 4,
        "{} pods at once (maxSurge 1)",
        max_live.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_node_becomes_not_ready_tainted_and_its_pods_move() {
    let sim = Sim::start(true, true).await;
    add_node(&sim, "node-a", json!({}), "4", "8Gi", "110").await;
    add_node(&sim, "node-b", json!({}), "4", "8Gi", "110").await;
    create_deployment(
        &sim.client,
        "default",
        deployment_json("spread", 4, "nginx:1.14.2"),
    )
    .await;
    wait_rolled_out(&sim.client, "default", "spread", 4).await;
    let on_a: Vec<String> = pods(&sim.client, "default", "app=spread")
        .await
        .iter()
        .filter(|p| node_of(p).as_deref() == Some("node-a"))
        .map(|p| p.name_any())
        .collect();
    assert!(!on_a.is_empty(), "some replicas run on node-a");

    sim.kubelet.pause("node-a", true);
    let nodes: Api<Node> = Api::all(sim.client.clone());
    wait_for(
        "node-a to be NotReady (Unknown) and tainted unreachable",
        || {
            let nodes = nodes.clone();
            async move {
                let n = nodes.get("node-a").await.ok()?;
                let ready = n
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Ready")?
                    .status
                    .clone();
                let tainted =
                    n.spec.as_ref()?.taints.as_ref()?.iter().any(|t| {
                        t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"
                    });
                (ready == "Unknown" && tainted).then_some(())
            }
        },
    )
    .await;
    // node-b keeps renewing and stays Ready
    let b = nodes.get("node-b").await.unwrap();
    assert!(b
        .spec
        .as_ref()
        .unwrap()
        .taints
        .as_ref()
        .is_none_or(|t| t.is_empty()));

    wait_for("all replicas ready on node-b", || {
        let client = sim.client.clone();
        let on_a = on_a.clone();
        async move {
            let now = pods(&client, "default", "app=spread").await;
            let live: Vec<&Pod> = now.iter().filter(|p| active(p)).collect();
            let ok = live.len() == 4
                && live
                    .iter()
                    .all(|p| node_of(p).as_deref() == Some("node-b") && is_ready(p))
                && !live.iter().any(|p| on_a.contains(&p.name_any()));
            ok.then_some(())
        }
    })
    .await;

    // it comes back: the taint goes away
    sim.kubelet.pause("node-a", false);
    wait_for("node-a's unreachable taint to be removed", || {
        let nodes = nodes.clone();
        async move {
            let n = nodes.get("node-a").await.ok()?;
            let tainted = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/unreachable"));
            (!tainted).then_some(())
        }
    })
    .await;
}

/// When a node goes silent its pods turn not ready at once (so endpoints drop them), and
/// each leaves as its tolerations say: at once without a toleration of the unreachable taint,
/// after `tolerationSeconds` with one, never with an unlimited one; a pod that says nothing
/// gets the server's default (the DefaultTolerationSeconds admission, 2 s in the sim).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_of_a_lost_node_turn_not_ready_and_leave_as_their_tolerations_say() {
    let sim = Sim::start(false, true).await;
    add_node(&sim, "node-a", json!({}), "4", "8Gi", "110").await;
    let unreachable = |seconds: Option<i64>| {
        let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute"});
        if let Some(s) = seconds {
            t["tolerationSeconds"] = json!(s);
        }
        json!({"nodeName": "node-a", "tolerations": [t]})
    };
    let labels = json!({"app": "lost"});
    for (name, spec) in [
        ("stays", unreachable(None)),
        ("five", unreachable(Some(5))),
        ("plain", json!({"nodeName": "node-a"})),
    ] {
        create_pod(&sim.client, pod_json(name, labels.clone(), spec, "64Mi")).await;
    }
    let plain: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let plain_tolerations = plain.get("plain").await.unwrap().spec.unwrap().tolerations;
    let defaulted: Vec<_> = plain_tolerations
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.toleration_seconds))
        .collect();
    assert_eq!(
        defaulted,
        [
            ("node.kubernetes.io/not-ready".to_string(), Some(2)),
            ("node.kubernetes.io/unreachable".to_string(), Some(2))
        ]
    );
    wait_for("the three pods ready", || {
        let client = sim.client.clone();
        async move {
            let all = pods(&client, "default", "app=lost").await;
            (all.len() == 3 && all.iter().all(is_ready)).then_some(())
        }
    })
    .await;

    sim.kubelet.pause("node-a", true);
    let nodes: Api<Node> = Api::all(sim.client.clone());
    let tainted_at = wait_for("node-a tainted unreachable", || {
        let nodes = nodes.clone();
        async move {
            let node = nodes.get("node-a").await.ok()?;
            let taints = node.spec?.taints?;
            let taint = taints
                .into_iter()
                .find(|t| t.key == "node.kubernetes.io/unreachable")?;
            taint.time_added.map(|t| t.0)
        }
    })
    .await;
    let api = plain.clone();
    let five_gone_at = wait_for("the pod tolerating 5 s evicted", || {
        let api = api.clone();
        async move {
            let five = api.get_opt("five").await.ok()?;
            five.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
                .then(k8s_openapi::jiff::Timestamp::now)
        }
    })
    .await;
    let waited = five_gone_at.duration_since(tainted_at).as_secs_f64();
    assert!(
        waited >= 4.0,
        "evicted {waited:.1} s after the taint, before its 5 s toleration"
    );
    let plain_left = plain.get_opt("plain").await.unwrap();
    assert!(
        plain_left.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the pod with the 2 s default toleration left before the one tolerating 5 s"
    );
    let stays = plain.get("stays").await.unwrap();
    assert!(
        stays.metadata.deletion_timestamp.is_none(),
        "an unlimited toleration keeps it"
    );
    let ready = stays
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(
        ready.as_deref(),
        Some("False"),
        "the lost node's pod is not ready"
    );
}

/// (ready, serving, terminating, nodeName, targetRef name) of one EndpointSlice endpoint.
type SliceEntry = (bool, bool, bool, Option<String>, Option<String>);

fn endpoint_ips(ep: &Endpoints) -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut ports = Vec::new();
    for s in ep.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        ports.extend(s.ports.iter().flatten().map(|p| p.port));
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready, ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_endpoints_follow_pods() {
    let sim = Sim::start(true, true).await;
    three_nodes(&sim).await;
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(sim.client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    for name in ["web-1", "web-2"] {
        let mut body = pod_json(
            name,
            json!({"app": "web"}),
            json!({"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"name": "http", "containerPort": 8080}]}]}),
            "64Mi",
        );
        body["metadata"]["annotations"] = json!({READY_ANNOTATION: "false"});
        create_pod(&sim.client, body).await;
    }
    // a pod with other labels never shows up
    create_pod(
        &sim.client,
        pod_json("db-1", json!({"app": "db"}), json!({}), "64Mi"),
    )
    .await;

    let eps: Api<Endpoints> = Api::namespaced(sim.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(sim.client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let ip_of = |name: &'static str| {
        let pod_api = pod_api.clone();
        async move {
            pod_api
                .get(name)
                .await
                .ok()
                .and_then(|p| p.status.and_then(|s| s.pod_ip))
        }
    };
    let ip1 = wait_for("web-1 to get an IP", || ip_of("web-1")).await;
    let ip2 = wait_for("web-2 to get an IP", || ip_of("web-2")).await;
    let mut both = vec![ip1.clone(), ip2.clone()];
    both.sort();

    wait_for("both pods as notReadyAddresses on port 8080", || {
        let eps = eps.clone();
        let both = both.clone();
        async move {
            let (ready, not_ready, ports) = endpoint_ips(&eps.get("web").await.ok()?);
            (ready.is_empty() && not_ready == both && ports == vec![8080]).then_some(())
        }
    })
    .await;

    let slice_state = |slices: Api<EndpointSlice>| async move {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .ok()?;
        let mut out: BTreeMap<String, SliceEntry> = BTreeMap::new();
        for s in &list.items {
            if s.labels()
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str)
                != Some("endpointslice-controller.k8s.io")
            {
                return None;
            }
            if s.ports.iter().flatten().any(|p| p.port != Some(8080)) {
                return None;
            }
            for e in &s.endpoints {
                let c = e.conditions.clone().unwrap_or_default();
                out.insert(
                    e.addresses[0].clone(),
                    (
                        c.ready.unwrap_or(false),
                        c.serving.unwrap_or(false),
                        c.terminating.unwrap_or(false),
                        e.node_name.clone(),
                        e.target_ref.as_ref().and_then(|t| t.name.clone()),
                    ),
                );
            }
        }
        Some(out)
    };
    wait_for("slice with both pods not ready", || {
        let slices = slices.clone();
        let (ip1, ip2) = (ip1.clone(), ip2.clone());
        async move {
            let s = slice_state(slices).await?;
            let ok = s.len() == 2
                && s.get(&ip1).is_some_and(|e| {
                    !e.0 && !e.1 && !e.2 && e.4.as_deref() == Some("web-1") && e.3.is_some()
                })
                && s.get(&ip2)
                    .is_some_and(|e| !e.0 && e.4.as_deref() == Some("web-2"));
            ok.then_some(())
        }
    })
    .await;

    // web-1 becomes ready
    pod_api
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {READY_ANNOTATION: "true"}}})),
        )
        .await
        .unwrap();
    wait_for("web-1 ready in Endpoints and EndpointSlice", || {
        let (eps, slices) = (eps.clone(), slices.clone());
        let (ip1, ip2) = (ip1.clone(), ip2.clone());
        async move {
            let (ready, not_ready, _) = endpoint_ips(&eps.get("web").await.ok()?);
            let s = slice_state(slices).await?;
            let ok = ready == vec![ip1.clone()]
                && not_ready == vec![ip2.clone()]
                && s.get(&ip1).is_some_and(|e| e.0 && e.1 && !e.2)
                && s.get(&ip2).is_some_and(|e| !e.0);
            ok.then_some(())
        }
    })
    .await;

    // web-2 goes away; as a bare pod it is not recreated
    pod_api
        .delete("web-2", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("web-2 gone from Endpoints and EndpointSlice", || {
        let (eps, slices) = (eps.clone(), slices.clone());
        let ip1 = ip1.clone();
        async move {
            let (ready, not_ready, _) = endpoint_ips(&eps.get("web").await.ok()?);
            let s = slice_state(slices).await?;
            (ready == vec![ip1.clone()]
                && not_ready.is_empty()
                && s.len() == 1
                && s.contains_key(&ip1))
            .then_some(())
        }
    })
    .await;
    let left: Vec<String> = pods(&sim.client, "default", "app=web")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(
        left,
        vec!["web-1".to_string()],
        "a bare pod is never recreated"
    );
}

async fn wait_namespace_empty(client: &Client, ns: &str) {
    wait_for(
        &format!("namespace {ns} to hold no deployments, replicasets or pods"),
        || {
            let client = client.clone();
            async move {
                let d = Api::<Deployment>::namespaced(client.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .ok()?;
                let r = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .ok()?;
                let p = Api::<Pod>::namespaced(client.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .ok()?;
                (d.items.is_empty() && r.items.is_empty() && p.items.is_empty()).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_deployment_leaves_nothing_behind() {
    let sim = Sim::start(true, true).await;
    three_nodes(&sim).await;
    create_deployment(
        &sim.client,
        "default",
        deployment_json("gone", 3, "nginx:1.14.2"),
    )
    .await;
    wait_rolled_out(&sim.client, "default", "gone", 3).await;
    assert_eq!(pods(&sim.client, "default", "app=gone").await.len(), 3);
    Api::<Deployment>::namespaced(sim.client.clone(), "default")
        .delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    wait_namespace_empty(&sim.client, "default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_namespace_deletes_what_is_in_it() {
    let sim = Sim::start(true, true).await;
    three_nodes(&sim).await;
    ensure_namespace(&sim.client, "scratch").await;
    create_deployment(
        &sim.client,
        "scratch",
        deployment_json("tmp", 2, "nginx:1.14.2"),
    )
    .await;
    wait_rolled_out(&sim.client, "scratch", "tmp", 2).await;
    let ns_api: Api<Namespace> = Api::all(sim.client.clone());
    ns_api
        .delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    wait_namespace_empty(&sim.client, "scratch").await;
    wait_for("namespace scratch to be gone", || {
        let ns_api = ns_api.clone();
        async move { matches!(ns_api.get_opt("scratch").await, Ok(None)).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreground_deletion_waits_for_dependents_and_orphan_keeps_them() {
    let sim = Sim::start(true, true).await;
    three_nodes(&sim).await;
    let dapi: Api<Deployment> = Api::namespaced(sim.client.clone(), "default");

    // Foreground: the deployment stays (with deletionTimestamp) until its children are gone
    create_deployment(
        &sim.client,
        "default",
        deployment_json("fg", 2, "nginx:1.14.2"),
    )
    .await;
    wait_rolled_out(&sim.client, "default", "fg", 2).await;
    dapi.delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_for(
        "foreground-deleted deployment and its children to be gone",
        || {
            let client = sim.client.clone();
            let dapi = dapi.clone();
            async move {
                let gone = matches!(dapi.get_opt("fg").await, Ok(None));
                let rs = Api::<ReplicaSet>::namespaced(client.clone(), "default")
                    .list(&ListParams::default().labels("app=fg"))
                    .await
                    .ok()?;
                let p = pods(&client, "default", "app=fg").await;
                (gone && rs.items.is_empty() && p.is_empty()).then_some(())
            }
        },
    )
    .await;

    // Orphan: the ReplicaSet and its pods stay, without a reference to the deployment
    let d = create_deployment(
        &sim.client,
        "default",
        deployment_json("keep", 2, "nginx:1.14.2"),
    )
    .await;
    wait_rolled_out(&sim.client, "default", "keep", 2).await;
    let uid = d.metadata.uid.clone().unwrap();
    dapi.delete("keep", &DeleteParams::orphan()).await.unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(sim.client.clone(), "default");
    wait_for(
        "the orphaned ReplicaSet to lose its owner reference",
        || {
            let (rs_api, dapi, uid) = (rs_api.clone(), dapi.clone(), uid.clone());
            async move {
                let gone = matches!(dapi.get_opt("keep").await, Ok(None));
                let rss = rs_api
                    .list(&ListParams::default().labels("app=keep"))
                    .await
                    .ok()?;
                let orphaned = rss.items.len() == 1
                    && rss.items[0].owner_references().iter().all(|o| o.uid != uid);
                (gone && orphaned).then_some(())
            }
        },
    )
    .await;
    // the orphaned ReplicaSet keeps running its pods
    wait_for("the orphaned ReplicaSet's 2 pods to be ready", || {
        let client = sim.client.clone();
        async move {
            let p = pods(&client, "default", "app=keep").await;
            (p.len() == 2 && p.iter().all(|p| active(p) && is_ready(p))).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recreate_strategy_stops_old_pods_before_starting_new_ones() {
    let sim = Sim::start(true, true).await;
    three_nodes(&sim).await;
    let mut body = deployment_json("batch", 2, "nginx:1.14.2");
    body["spec"]["strategy"] = json!({"type": "Recreate"});
    create_deployment(&sim.client, "default", body).await;
    wait_rolled_out(&sim.client, "default", "batch", 2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mixed = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (client, stop, mixed) = (sim.client.clone(), stop.clone(), mixed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let now = pods(&client, "default", "app=batch").await;
                let images: HashSet<String> = now
                    .iter()
                    .map(|p| {
                        p.spec.as_ref().unwrap().containers[0]
                            .image
                            .clone()
                            .unwrap_or_default()
                    })
                    .collect();
                if images.len() > 1 {
                    mixed.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let api: Api<Deployment> = Api::namespaced(sim.client.clone(), "default");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.16.1",
        "ports": [{"containerPort": 80}], "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}});
    api.patch("batch", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for("the new pods to replace the old ones", || {
        let client = sim.client.clone();
        async move {
            let now = pods(&client, "default", "app=batch").await;
            let ok = now.len() == 2
                && now.iter().all(|p| {
                    is_ready(p)
                        && p.spec.as_ref().unwrap().containers[0].image.as_deref()
                            == Some("nginx:1.16.1")
                });
            ok.then_some(())
        }
    })
    .await;
    wait_rolled_out(&sim.client, "default", "batch", 2).await;
    stop.store(true, Ordering::SeqCst);
    monitor.await.unwrap();
    assert!(
        !mixed.load(Ordering::SeqCst),
        "old and new pods existed at the same time"
    );
}
