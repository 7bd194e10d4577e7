//! The scheduler (in-process, as an ordinary kube-rs client) against a real bpfk-server on a
//! real etcd, with simulated nodes: filters, scoring, unschedulable reporting and retry.

mod cluster_sim;

use cluster_sim::{add_node, add_node_with_spec, create_pod, node_of, pod_json, wait_for, Sim};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

async fn bound_node(sim: &Sim, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    wait_for(&format!("pod {name} to be bound"), || {
        let api = api.clone();
        async move { api.get(name).await.ok().and_then(|p| node_of(&p)) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssd_pod_lands_only_on_the_ssd_node() {
    let sim = Sim::start(true, false).await;
    add_node(&sim, "hdd-1", json!({"disk": "hdd"}), "4", "8Gi", "110").await;
    add_node(&sim, "ssd-1", json!({"disk": "ssd"}), "4", "8Gi", "110").await;
    add_node(&sim, "plain-1", json!({}), "4", "8Gi", "110").await;
    for i in 0..5 {
        let name = format!("fast-{i}");
        create_pod(
            &sim.client,
            pod_json(
                &name,
                json!({"app": "db"}),
                json!({"nodeSelector": {"disk": "ssd"}}),
                "64Mi",
            ),
        )
        .await;
    }
    for i in 0..5 {
        assert_eq!(bound_node(&sim, &format!("fast-{i}")).await, "ssd-1");
    }
    // required node affinity with NotIn steers away from the ssd node as well
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}]}}}});
    create_pod(
        &sim.client,
        pod_json("spinning", json!({}), affinity, "64Mi"),
    )
    .await;
    assert_eq!(bound_node(&sim, "spinning").await, "hdd-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scoring_picks_the_node_with_most_free_memory() {
    let sim = Sim::start(true, false).await;
    for n in ["node-a", "node-b", "node-c"] {
        add_node(&sim, n, json!({}), "4", "8Gi", "110").await;
    }
    // pods already bound (nodeName set at creation) use memory on a and c
    create_pod(
        &sim.client,
        pod_json("big-a", json!({}), json!({"nodeName": "node-a"}), "6Gi"),
    )
    .await;
    create_pod(
        &sim.client,
        pod_json("mid-c", json!({}), json!({"nodeName": "node-c"}), "3Gi"),
    )
    .await;
    create_pod(
        &sim.client,
        pod_json("newcomer", json!({}), json!({}), "512Mi"),
    )
    .await;
    assert_eq!(bound_node(&sim, "newcomer").await, "node-b");
    // the pre-bound pods were left where they are
    assert_eq!(bound_node(&sim, "big-a").await, "node-a");
    assert_eq!(bound_node(&sim, "mid-c").await, "node-c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tainted_nodes_and_taken_host_ports_are_avoided() {
    let sim = Sim::start(true, false).await;
    add_node(&sim, "ok", json!({}), "2", "4Gi", "110").await;
    add_node_with_spec(
        &sim,
        "tainted",
        json!({}),
        "64",
        "256Gi",
        "110",
        json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
    )
    .await;
    // pods that would otherwise prefer the big, empty node
    for i in 0..4 {
        create_pod(
            &sim.client,
            pod_json(&format!("p{i}"), json!({}), json!({}), "256Mi"),
        )
        .await;
    }
    for i in 0..4 {
        assert_eq!(bound_node(&sim, &format!("p{i}")).await, "ok");
    }
    // with its host port taken on "ok", a pod tolerating the taint must go to "tainted"
    create_pod(
        &sim.client,
        pod_json("port-1", json!({}), json!({"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}), "64Mi"),
    )
    .await;
    assert_eq!(bound_node(&sim, "port-1").await, "ok");
    create_pod(
        &sim.client,
        pod_json(
            "port-2",
            json!({}),
            json!({"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]}),
            "64Mi",
        ),
    )
    .await;
    assert_eq!(
        bound_node(&sim, "port-2").await,
        "tainted",
        "host port 8080 is taken on ok"
    );
}

fn scheduled_condition(p: &Pod) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_pods_that_fit_nowhere_wait_then_land_on_a_big_node() {
    let sim = Sim::start(true, false).await;
    add_node(&sim, "small-ssd", json!({"disk": "ssd"}), "1", "1Gi", "110").await;
    add_node(
        &sim,
        "small-hdd-1",
        json!({"disk": "hdd"}),
        "1",
        "1Gi",
        "110",
    )
    .await;
    add_node(
        &sim,
        "small-hdd-2",
        json!({"disk": "hdd"}),
        "1",
        "1Gi",
        "110",
    )
    .await;
    for i in 0..50 {
        create_pod(
            &sim.client,
            pod_json(
                &format!("heavy-{i}"),
                json!({"app": "heavy"}),
                json!({"nodeSelector": {"disk": "ssd"}}),
                "2Gi",
            ),
        )
        .await;
    }
    let api: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let expected =
        "0/3 nodes are available: 2 node(s) didn't match node selector, 1 Insufficient memory.";
    wait_for("all 50 pods to be reported unschedulable", || {
        let api = api.clone();
        async move {
            let list = api
                .list(&ListParams::default().labels("app=heavy"))
                .await
                .ok()?;
            let all = list.items.len() == 50
                && list.items.iter().all(|p| {
                    node_of(p).is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
                        && scheduled_condition(p)
                            == Some(("False".into(), "Unschedulable".into(), expected.into()))
                });
            all.then_some(())
        }
    })
    .await;
    // a FailedScheduling event was recorded
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(sim.client.clone(), "default");
    let evs = events.list(&ListParams::default()).await.unwrap();
    assert!(
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling")
                && e.message.as_deref() == Some(expected)),
        "no FailedScheduling event"
    );

    add_node(
        &sim,
        "big-ssd",
        json!({"disk": "ssd"}),
        "64",
        "256Gi",
        "110",
    )
    .await;
    wait_for("all 50 pods to be bound to big-ssd", || {
        let api = api.clone();
        async move {
            let list = api
                .list(&ListParams::default().labels("app=heavy"))
                .await
                .ok()?;
            (list.items.len() == 50
                && list
                    .items
                    .iter()
                    .all(|p| node_of(p).as_deref() == Some("big-ssd")))
            .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_for_another_scheduler_are_left_alone() {
    let sim = Sim::start(true, false).await;
    add_node(&sim, "n1", json!({}), "4", "8Gi", "110").await;
    create_pod(
        &sim.client,
        pod_json(
            "other",
            json!({}),
            json!({"schedulerName": "someone-else"}),
            "64Mi",
        ),
    )
    .await;
    create_pod(&sim.client, pod_json("mine", json!({}), json!({}), "64Mi")).await;
    assert_eq!(bound_node(&sim, "mine").await, "n1");
    // "mine" was bound after "other" was created: the scheduler saw both and skipped "other"
    let api: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let other = api.get("other").await.unwrap();
    assert_eq!(node_of(&other), None);
    assert_eq!(scheduled_condition(&other), None);
}
