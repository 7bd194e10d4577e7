//! Events against a real bpfk-server on a real etcd, with the real kubectl: the scheduler and
//! the controllers (in-process, through kube's event Recorder) record what Kubernetes' do;
//! core/v1 and events.k8s.io/v1 show the same stored objects; `kubectl get events`,
//! `kubectl events` and `kubectl describe` list them; Events are written under an etcd lease
//! and expire after `--event-ttl`.

mod cluster_sim;

use std::time::{Duration, Instant};

use bpfk_lab::server::{manifest, success};
use cluster_sim::{add_node, create_pod, pod_json, pods, wait_for, Sim};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

/// `--event-ttl` of the test server: long enough for the checks before the expiry check.
const TTL: Duration = Duration::from_secs(45);

/// The core/v1 Events with `reason` about the object of `kind` named `name` (a prefix).
async fn core_events(api: &Api<CoreEvent>, reason: &str, kind: &str, name: &str) -> Vec<CoreEvent> {
    let list = api.list(&ListParams::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.involved_object.kind.as_deref() == Some(kind))
        .filter(|e| {
            e.involved_object
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(name))
        })
        .collect()
}

async fn wait_event(api: &Api<CoreEvent>, reason: &str, kind: &str, name: &str) -> CoreEvent {
    wait_for(&format!("{reason} about {kind} {name}"), || async {
        core_events(api, reason, kind, name)
            .await
            .into_iter()
            .next()
    })
    .await
}

/// The etcd lease a stored key is attached to (0 = none), read with etcdctl.
fn lease_of(sim: &Sim, key: &str) -> i64 {
    let out = sim
        .cluster
        .etcd
        .etcdctl()
        .args(["get", key, "-w", "json"])
        .output()
        .expect("etcdctl (Debian package etcd-client) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl json");
    let kv = v
        .pointer("/kvs/0")
        .unwrap_or_else(|| panic!("no key {key}: {v}"));
    // etcdctl leaves `lease` out when it is 0
    kv.get("lease")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

fn hand_written_event() -> CoreEvent {
    serde_json::from_value(json!({
        "metadata": {"name": "by-hand.1", "namespace": "default"},
        "involvedObject": {"kind": "ConfigMap", "name": "settings", "namespace": "default"},
        "reason": "Checked", "message": "written through core/v1", "type": "Normal",
        "source": {"component": "tester"}, "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn components_record_events_seen_through_both_versions_until_they_expire() {
    let sim = Sim::start_with(true, true, &["--event-ttl=45s"]).await;
    let core: Api<CoreEvent> = Api::namespaced(sim.client.clone(), "default");
    let structured: Api<Event> = Api::namespaced(sim.client.clone(), "default");
    let started = Instant::now();
    core.create(&PostParams::default(), &hand_written_event())
        .await
        .expect("create a core/v1 Event");

    add_node(&sim, "node-a", json!({}), "4", "8Gi", "110").await;
    let deploy = manifest("nginx-deployment.yaml");
    success(
        &sim.cluster
            .kubectl(&["apply", "-f", &deploy.to_string_lossy()]),
    );
    wait_event(&core, "ScalingReplicaSet", "Deployment", "nginx-deployment").await;
    wait_event(&core, "SuccessfulCreate", "ReplicaSet", "nginx-deployment-").await;
    let scheduled = wait_event(&core, "Scheduled", "Pod", "nginx-deployment-").await;
    wait_event(&core, "RegisteredNode", "Node", "node-a").await;
    create_pod(
        &sim.client,
        pod_json(
            "nowhere",
            json!({}),
            json!({"nodeSelector": {"disk": "none"}}),
            "64Mi",
        ),
    )
    .await;
    let failed = wait_event(&core, "FailedScheduling", "Pod", "nowhere").await;
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert!(
        failed
            .message
            .as_deref()
            .unwrap_or("")
            .contains("0/1 nodes are available"),
        "{failed:?}"
    );

    eprintln!("components' events after {:?}", started.elapsed());
    check_structured_view(&structured, &scheduled).await;
    check_kubectl(&sim, &scheduled);
    check_watch_of_structured(&core, &structured).await;
    eprintln!(
        "views, kubectl and watch checked after {:?}",
        started.elapsed()
    );
    check_node_not_ready(&sim, &core).await;
    eprintln!("node events after {:?}", started.elapsed());
    check_scale_down(&sim, &core).await;
    eprintln!("scale-down events after {:?}", started.elapsed());
    check_expiry(&sim, &core, started).await;
}

/// The scheduler's event read as events.k8s.io/v1: the renamed fields, and a field selector
/// on `regarding`.
async fn check_structured_view(structured: &Api<Event>, scheduled: &CoreEvent) {
    let name = scheduled.metadata.name.clone().unwrap();
    let pod = scheduled.involved_object.name.clone().unwrap();
    let e = structured
        .get(&name)
        .await
        .expect("the same Event as events.k8s.io/v1");
    assert_eq!(e.reason.as_deref(), Some("Scheduled"));
    assert_eq!(e.action.as_deref(), Some("Binding"));
    assert_eq!(e.reporting_controller.as_deref(), Some("default-scheduler"));
    assert_eq!(e.note, scheduled.message);
    assert!(e
        .note
        .as_deref()
        .unwrap()
        .starts_with("Successfully assigned default/"));
    let regarding = e.regarding.expect("regarding");
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("Pod"), Some(pod.as_str()))
    );
    assert!(e.event_time.is_some());
    let by_pod = structured
        .list(&ListParams::default().fields(&format!("regarding.name={pod},reason=Scheduled")))
        .await
        .expect("field selector on regarding.name");
    assert_eq!(by_pod.items.len(), 1, "{:?}", by_pod.items);
    // the hand-written core/v1 Event: message is the note, source the deprecated source
    let hand = structured
        .get("by-hand.1")
        .await
        .expect("core Event as events.k8s.io/v1");
    assert_eq!(hand.note.as_deref(), Some("written through core/v1"));
    assert_eq!(hand.deprecated_count, Some(1));
    assert_eq!(
        hand.deprecated_source.and_then(|s| s.component).as_deref(),
        Some("tester")
    );
}

fn check_kubectl(sim: &Sim, scheduled: &CoreEvent) {
    let kubectl = |args: &[&str]| success(&sim.cluster.kubectl(args));
    let all = kubectl(&["get", "events"]);
    for reason in [
        "Scheduled",
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "FailedScheduling",
        "Checked",
    ] {
        assert!(
            all.contains(reason),
            "kubectl get events lacks {reason}:\n{all}"
        );
    }
    let listed = kubectl(&["events"]);
    assert!(
        listed.lines().next().unwrap_or("").contains("REASON"),
        "{listed}"
    );
    assert!(
        listed.contains("Scheduled") && listed.contains("Successfully assigned"),
        "{listed}"
    );
    let structured = kubectl(&[
        "get",
        "events.v1.events.k8s.io",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(structured.contains("ScalingReplicaSet"), "{structured}");
    let deploy = kubectl(&["describe", "deployment", "nginx-deployment"]);
    let events = deploy.split("Events:").nth(1).unwrap_or("");
    assert!(
        events.contains("ScalingReplicaSet") && events.contains("deployment-controller"),
        "describe deployment:\n{deploy}"
    );
    assert!(
        events.contains("Scaled up replica set nginx-deployment-"),
        "{deploy}"
    );
    let pod = scheduled.involved_object.name.clone().unwrap();
    let described = kubectl(&["describe", "pod", &pod]);
    let events = described.split("Events:").nth(1).unwrap_or("");
    assert!(
        events.contains("Scheduled") && events.contains("default-scheduler"),
        "describe pod:\n{described}"
    );
}

/// A watch through events.k8s.io/v1 sees a core/v1 Event created as it watches, renamed.
async fn check_watch_of_structured(core: &Api<CoreEvent>, structured: &Api<Event>) {
    let rv = structured
        .list(&ListParams::default().limit(1))
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap();
    let mut watch = structured
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .expect("watch events.k8s.io/v1")
        .boxed();
    let mut second = hand_written_event();
    second.metadata.name = Some("by-hand.2".into());
    second.message = Some("watched".into());
    core.create(&PostParams::default(), &second)
        .await
        .expect("create");
    let added = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = watch.try_next().await.expect("watch stream") {
            if let WatchEvent::Added(e) = ev {
                if e.metadata.name.as_deref() == Some("by-hand.2") {
                    return e;
                }
            }
        }
        panic!("watch ended without by-hand.2");
    })
    .await
    .expect("ADDED by-hand.2 within 20s");
    assert_eq!(added.note.as_deref(), Some("watched"));
    assert_eq!(
        added.regarding.and_then(|r| r.name).as_deref(),
        Some("settings")
    );
}

/// A node that stops renewing its lease: NodeNotReady about it and its pods, then the
/// taint eviction of its pods.
async fn check_node_not_ready(sim: &Sim, core: &Api<CoreEvent>) {
    sim.kubelet.pause("node-a", true);
    wait_event(core, "NodeNotReady", "Node", "node-a").await;
    let warning = wait_event(core, "NodeNotReady", "Pod", "nginx-deployment-").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    wait_event(core, "TaintManagerEviction", "Pod", "nginx-deployment-").await;
    sim.kubelet.pause("node-a", false);
    wait_event(core, "NodeReady", "Node", "node-a").await;
}

/// Scaling down: ScalingReplicaSet "Scaled down", SuccessfulDelete of the pod.
async fn check_scale_down(sim: &Sim, core: &Api<CoreEvent>) {
    success(
        &sim.cluster
            .kubectl(&["scale", "deployment", "nginx-deployment", "--replicas=0"]),
    );
    wait_for("the deployment's pods to go", || async {
        pods(&sim.client, "default", "app=nginx")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    wait_event(core, "SuccessfulDelete", "ReplicaSet", "nginx-deployment-").await;
    wait_for("a Scaled down event", || async {
        core_events(core, "ScalingReplicaSet", "Deployment", "nginx-deployment")
            .await
            .into_iter()
            .find(|e| {
                e.message
                    .as_deref()
                    .unwrap_or("")
                    .contains("Scaled down replica set")
            })
    })
    .await;
}

/// Events carry a lease and are gone once the TTL has passed; other objects carry none.
async fn check_expiry(sim: &Sim, core: &Api<CoreEvent>, created: Instant) {
    assert_ne!(lease_of(sim, "/registry/events/default/by-hand.1"), 0);
    assert_eq!(
        lease_of(sim, "/registry/deployments/default/nginx-deployment"),
        0
    );
    let deadline = created + TTL + Duration::from_secs(30);
    loop {
        match core.get_opt("by-hand.1").await.expect("get") {
            None => break,
            Some(_) if Instant::now() > deadline => panic!("by-hand.1 outlived its TTL"),
            Some(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    assert!(
        created.elapsed() >= TTL,
        "expired after {:?}, before the TTL",
        created.elapsed()
    );
}
