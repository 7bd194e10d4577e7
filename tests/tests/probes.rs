//! Container probes in the lab cluster (`bpfk_lab::cluster`: real etcd, bpfk-server,
//! containerd and `bpfk-agent --kubelet` with its eBPF service proxy in a node netns):
//!
//! - a stand-in nginx pod behind a ClusterIP Service, with a readiness probe `exec cat
//!   /tmp/ready` (its /tmp is a hostPath directory of the test), a startup probe `httpGet`
//!   on a named port with a header and a liveness probe `tcpSocket`: while /tmp/ready is
//!   missing the pod is Running but not Ready, its EndpointSlice endpoint is not ready and
//!   not one request through the ClusterIP gets an answer although the pod itself serves;
//!   once the file exists the pod turns Ready and the ClusterIP answers with its name;
//!   removing the file takes it out again (Unhealthy events tell why); its postStart hook
//!   runs after the start and, on deletion, its preStop hook before SIGTERM;
//! - a busybox pod whose liveness probe starts failing after 3 s is killed and restarted
//!   (restartCount grows; Killing and Unhealthy events);
//! - termination messages from terminationMessagePath and, by FallbackToLogsOnError, the log.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static and the eBPF object
//! (`cargo xtask build-ebpf`); fails loudly without them.

use std::path::Path;
use std::time::{Duration, Instant};

use bpfk_lab::cluster::{Lab, LabOptions};
use bpfk_lab::host::require_root;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(90);
/// Requests sent through the ClusterIP while the pod is not ready.
const PROBING_REQUESTS: usize = 10;

fn condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn running(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

/// The web pod: stand-in nginx (busybox httpd on :80) with all three probes, /tmp from
/// the host directory `tmp`.
fn web_pod(node: &str, tmp: &Path) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "probed-web"}},
        "spec": {
            "nodeName": node,
            // room for the preStop hook's exec on a loaded machine (the container itself
            // exits at SIGTERM, so this costs nothing when the hook is quick)
            "terminationGracePeriodSeconds": 10,
            "volumes": [{"name": "tmp", "hostPath": {"path": tmp, "type": "DirectoryOrCreate"}}],
            "containers": [{
                "name": "web", "image": "registry.bpfk.lab:5000/library/nginx:1.14.2",
                // the stand-in nginx command, noting SIGTERM in /tmp/order
                "command": ["sh", "-c", "hostname > /www/hostname; httpd -f -p 80 -h /www & trap 'echo term >> /tmp/order; kill $!; exit 0' TERM; wait"],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo poststart >> /tmp/order"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /tmp/order"]}}
                },
                "ports": [{"name": "http", "containerPort": 80}],
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "startupProbe": {"httpGet": {"path": "/index.html", "port": "http",
                    "httpHeaders": [{"name": "X-Probe", "value": "bpfk"}]},
                    "periodSeconds": 1, "failureThreshold": 30},
                "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2},
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                    "periodSeconds": 1, "failureThreshold": 1}
            }]
        }
    }))
    .expect("web pod")
}

async fn endpoint_ready(slices: &Api<EndpointSlice>) -> Result<Option<bool>, String> {
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=probed-web"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .flat_map(|s| &s.endpoints)
        .next()
        .map(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false)))
}

async fn event_notes(events: &Api<Event>, pod: &str, reason: &str) -> Vec<String> {
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

/// `kubectl logs -f` streams a running container's log and ends when the container does.
async fn assert_logs_follow_until_the_container_ends(lab: &mut Lab, pods: &Api<Pod>, node: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
        "spec": {"nodeName": node, "restartPolicy": "Never", "containers": [{
            "name": "talker", "image": "busybox:1.36",
            "command": ["sh", "-c", "echo hello; sleep 4; echo bye"]}]}
    }))
    .expect("talker pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create talker");
    lab.wait_for("talker Running", DEADLINE, || async {
        let p = pods.get("talker").await.map_err(|e| e.to_string())?;
        running(&p).then_some(()).ok_or("not running".to_string())
    })
    .await;
    let started = Instant::now();
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(["logs", "-f", "talker"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kubectl logs -f");
    assert!(out.status.success(), "kubectl logs -f: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nbye\n");
    assert!(
        started.elapsed() < DEADLINE,
        "logs -f did not end with the container"
    );
}

/// A container's termination message comes from its terminationMessagePath, or from its
/// log when it failed under FallbackToLogsOnError.
async fn assert_termination_messages(lab: &mut Lab, pods: &Api<Pod>, node: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "quitter"},
        "spec": {
            "nodeName": node, "restartPolicy": "Never",
            "containers": [
                {"name": "writes", "image": "busybox:1.36",
                 "command": ["sh", "-c", "echo 'done: 42' > /dev/termination-log"]},
                {"name": "custom", "image": "busybox:1.36", "terminationMessagePath": "/tmp/why",
                 "command": ["sh", "-c", "echo 'custom path' > /tmp/why; exit 1"]},
                {"name": "falls-back", "image": "busybox:1.36",
                 "terminationMessagePolicy": "FallbackToLogsOnError",
                 "command": ["sh", "-c", "echo starting >&2; sleep 0.2; echo 'fatal: no config' >&2; exit 3"]}
            ]
        }
    }))
    .expect("quitter pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create quitter");
    let statuses = lab
        .wait_for("quitter Failed", DEADLINE, || async {
            let p = pods.get("quitter").await.map_err(|e| e.to_string())?;
            let status = p.status.unwrap_or_default();
            match status.phase.as_deref() {
                Some("Failed") => Ok(status.container_statuses.unwrap_or_default()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    let message = |name: &str| {
        statuses
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.message.clone())
    };
    assert_eq!(message("writes").as_deref(), Some("done: 42\n"));
    assert_eq!(message("custom").as_deref(), Some("custom path\n"));
    assert_eq!(
        message("falls-back").as_deref(),
        Some("starting\nfatal: no config\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_gate_traffic_and_restart_unhealthy_containers() {
    require_root("the probes test");
    let pid = std::process::id();
    let mut lab = Lab::start(LabOptions::for_test(format!("prb{pid}"), 1));
    let node = lab.nodes()[0].name().to_string();
    let client = lab.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let tmp = lab.dir().join("web-tmp");

    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "probed-web"},
        "spec": {"selector": {"app": "probed-web"}, "ports": [{"port": 80, "targetPort": 80}]}
    }))
    .expect("service");
    let vip = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP");
    let url = format!("http://{vip}/hostname");
    pods.create(&PostParams::default(), &web_pod(&node, &tmp))
        .await
        .expect("create web pod");

    // Running, serving on its own address, but not ready: no endpoint, no answer via the VIP.
    let pod_ip = lab
        .wait_for("web Running and started", DEADLINE, || async {
            let p = pods.get("web").await.map_err(|e| e.to_string())?;
            let started = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.first())
                .and_then(|c| c.started)
                .unwrap_or(false);
            match (
                running(&p) && started,
                p.status.as_ref().and_then(|s| s.pod_ip.clone()),
            ) {
                (true, Some(ip)) => Ok(ip),
                _ => Err(format!("{:?}", p.status)),
            }
        })
        .await;
    let (status, body) = lab
        .node(&node)
        .http_get(&format!("{pod_ip}:80"), "/hostname")
        .expect("GET the pod directly");
    assert!(
        status.contains(" 200") && body.trim() == "web",
        "{status} {body}"
    );
    lab.wait_for("the not-ready endpoint", DEADLINE, || async {
        match endpoint_ready(&slices).await? {
            Some(false) => Ok(()),
            other => Err(format!("endpoint ready {other:?}")),
        }
    })
    .await;
    for i in 0..PROBING_REQUESTS {
        let p = pods.get("web").await.expect("get web");
        assert_eq!(
            condition(&p, "Ready").as_deref(),
            Some("False"),
            "request {i}"
        );
        assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("False"));
        if let Ok(answer) = lab.node(&node).fetch(&url) {
            panic!("request {i} through {vip} reached the not-ready pod: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unhealthy = event_notes(&events, "web", "Unhealthy").await;
    assert!(
        unhealthy
            .iter()
            .any(|n| n.starts_with("Readiness probe failed:")),
        "Unhealthy events of web: {unhealthy:?}"
    );

    // The file the probe reads appears: Ready, and the ClusterIP answers with the pod.
    std::fs::write(tmp.join("ready"), "ok\n").expect("write ready file");
    lab.wait_for("web Ready", DEADLINE, || async {
        let p = pods.get("web").await.map_err(|e| e.to_string())?;
        (condition(&p, "Ready").as_deref() == Some("True"))
            .then_some(())
            .ok_or(format!("{:?}", p.status.and_then(|s| s.conditions)))
    })
    .await;
    let answer = lab
        .wait_with("an answer through the ClusterIP", DEADLINE, |lab| {
            lab.node(&node).fetch(&url)
        })
        .await;
    assert_eq!(answer, "web");
    assert_eq!(endpoint_ready(&slices).await.expect("slices"), Some(true));

    // Gone again: not ready, and the ClusterIP has no backend left.
    std::fs::remove_file(tmp.join("ready")).expect("remove ready file");
    lab.wait_for("web not Ready", DEADLINE, || async {
        let p = pods.get("web").await.map_err(|e| e.to_string())?;
        (condition(&p, "Ready").as_deref() == Some("False"))
            .then_some(())
            .ok_or("still Ready".to_string())
    })
    .await;
    lab.wait_with("the VIP closed", DEADLINE, |lab| {
        match lab.node(&node).fetch(&url) {
            Ok(a) => Err(format!("answered {a}")),
            Err(_) => Ok(()),
        }
    })
    .await;
    assert_eq!(
        restart_count(&pods.get("web").await.expect("web")),
        0,
        "the liveness probe passed"
    );

    // Liveness: healthy for 3 s, then the probed file is gone and the container restarts.
    let flaky: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "flaky"},
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "flaky", "image": "busybox:1.36",
                "command": ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 600"],
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                    "periodSeconds": 1, "failureThreshold": 2,
                    "terminationGracePeriodSeconds": 1}
            }]
        }
    }))
    .expect("flaky pod");
    pods.create(&PostParams::default(), &flaky)
        .await
        .expect("create flaky pod");
    lab.wait_for(
        "flaky restarted by its liveness probe",
        DEADLINE,
        || async {
            let p = pods.get("flaky").await.map_err(|e| e.to_string())?;
            let restarts = restart_count(&p);
            (restarts >= 1 && running(&p))
                .then_some(())
                .ok_or(format!("restartCount {restarts}"))
        },
    )
    .await;
    let killing = event_notes(&events, "flaky", "Killing").await;
    assert!(
        killing
            .iter()
            .any(|n| n == "Container flaky failed liveness probe, will be restarted"),
        "Killing events of flaky: {killing:?}"
    );
    let unhealthy = event_notes(&events, "flaky", "Unhealthy").await;
    assert!(
        unhealthy
            .iter()
            .any(|n| n.starts_with("Liveness probe failed:")),
        "Unhealthy events of flaky: {unhealthy:?}"
    );
    let last = pods.get("flaky").await.expect("flaky");
    let last_exit = last
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().next())
        .and_then(|c| c.last_state)
        .and_then(|s| s.terminated)
        .map(|t| t.exit_code);
    assert_eq!(
        last_exit,
        Some(137),
        "killed by SIGKILL after the probe's 1 s grace"
    );
    assert_termination_messages(&mut lab, &pods, &node).await;
    assert_logs_follow_until_the_container_ends(&mut lab, &pods, &node).await;

    // Deleting the web pod runs its preStop hook before SIGTERM reaches the container.
    pods.delete("web", &Default::default())
        .await
        .expect("delete web");
    lab.wait_for("web gone", DEADLINE, || async {
        match pods.get_opt("web").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        }
    })
    .await;
    let order = std::fs::read_to_string(tmp.join("order")).expect("read /tmp/order");
    let hook_failures = event_notes(&events, "web", "FailedPreStopHook").await;
    let killing = event_notes(&events, "web", "Killing").await;
    assert_eq!(
        order, "poststart\nprestop\nterm\n",
        "hook and signal order (FailedPreStopHook: {hook_failures:?}; Killing: {killing:?})"
    );
    drop(lab);
}
