//! A Deployment's rolling update under steady traffic, in the two-node lab cluster (real
//! etcd, bpfk-server, containerd, `bpfk-agent --kubelet` and its eBPF service datapath,
//! real kubectl):
//!
//! - two replicas of a stand-in nginx that serves only 2 s after its start, with a
//!   readiness probe on that page and a preStop hook that keeps it serving 3 s after its
//!   deletion (what Kubernetes users do so endpoint removal wins the race with SIGTERM);
//! - a client in node 1's netns and cgroup (so the eBPF socket load balancer picks the
//!   backend) fetches through the ClusterIP back to back, while `kubectl set env` starts
//!   a rolling update (maxSurge 1, maxUnavailable 0, minReadySeconds 1) and `kubectl
//!   rollout status` waits for it;
//! - not one request fails: no request reached a new pod before it was ready, nor an old
//!   one after it stopped; answers came from both versions and, at the end, only from v2.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static and the eBPF object
//! (`cargo xtask build-ebpf`); fails loudly without them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpfk_lab::cluster::{fetch_in, Lab, LabOptions};
use bpfk_lab::host::require_root;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(120);
/// Bounds of the traffic loop: requests and time.
const MAX_REQUESTS: usize = 5_000;
const MAX_TRAFFIC_TIME: Duration = Duration::from_secs(240);
/// Pause between two requests of the loop.
const REQUEST_GAP: Duration = Duration::from_millis(20);

fn deployment() -> Deployment {
    // Serves /hostname ("<version> <pod>") 2 s after the start; on SIGTERM stops at once.
    let serve = "sleep 2; echo \"$VERSION $(hostname)\" > /www/hostname; \
                 httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait";
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "rolling"},
        "spec": {
            "replicas": 2,
            "minReadySeconds": 1,
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "rolling"}},
            "template": {
                "metadata": {"labels": {"app": "rolling"}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "web", "image": "registry.bpfk.lab:5000/library/nginx:1.14.2",
                        "command": ["sh", "-c", serve],
                        "env": [{"name": "VERSION", "value": "v1"}],
                        "ports": [{"containerPort": 80}],
                        "readinessProbe": {"httpGet": {"path": "/hostname", "port": 80},
                            "periodSeconds": 1, "failureThreshold": 1},
                        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "3"]}}}
                    }]
                }
            }
        }
    }))
    .expect("deployment")
}

fn service() -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "rolling"},
        "spec": {"selector": {"app": "rolling"}, "ports": [{"port": 80, "targetPort": 80}]}
    }))
    .expect("service")
}

/// Where the client runs: a node's netns and cgroup (socket load balancing applies).
#[derive(Clone)]
struct Client {
    netns: String,
    cgroup: PathBuf,
    url: String,
}

impl Client {
    fn fetch(&self) -> Result<String, String> {
        fetch_in(&self.netns, &self.cgroup, &self.url)
    }
}

/// What the traffic loop saw: answers and failures, in order, with their time.
#[derive(Default)]
struct Traffic {
    answers: Vec<String>,
    failures: Vec<(Duration, String)>,
}

/// Fetches back to back until `stop` (or the loop's bounds).
fn steady_traffic(client: Client, stop: Arc<AtomicBool>) -> Traffic {
    let started = Instant::now();
    let mut seen = Traffic::default();
    while !stop.load(Ordering::Relaxed)
        && seen.answers.len() + seen.failures.len() < MAX_REQUESTS
        && started.elapsed() < MAX_TRAFFIC_TIME
    {
        match client.fetch() {
            Ok(answer) => seen.answers.push(answer),
            Err(e) => seen.failures.push((started.elapsed(), e)),
        }
        std::thread::sleep(REQUEST_GAP);
    }
    seen
}

fn kubectl(lab: &Lab, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(args)
        .output()
        .expect("run kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl {args:?}: {text}");
    text
}

/// The app's pods, none terminating, all of `version`, `count` of them.
async fn only_pods_of(pods: &Api<Pod>, version: &str, count: usize) -> Result<(), String> {
    let list = pods
        .list(&ListParams::default().labels("app=rolling"))
        .await
        .map_err(|e| e.to_string())?;
    let versions: Vec<String> = list
        .items
        .iter()
        .map(|p| {
            let env = p.spec.as_ref().and_then(|s| s.containers[0].env.clone());
            let v = env.and_then(|e| e.into_iter().find(|v| v.name == "VERSION"));
            v.and_then(|v| v.value).unwrap_or_default()
        })
        .collect();
    let settled = versions.len() == count && versions.iter().all(|v| v == version);
    settled
        .then_some(())
        .ok_or(format!("pod versions {versions:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_update_under_steady_traffic_fails_no_request() {
    require_root("the rolling update test");
    let pid = std::process::id();
    let mut lab = Lab::start(LabOptions::for_test(format!("rol{pid}"), 2));
    let client = lab.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let vip = services
        .create(&PostParams::default(), &service())
        .await
        .expect("create service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP");
    deployments
        .create(&PostParams::default(), &deployment())
        .await
        .expect("create deployment");
    kubectl(
        &lab,
        &["rollout", "status", "deployment/rolling", "--timeout=120s"],
    );

    let node = &lab.nodes()[1];
    let traffic_client = Client {
        netns: node.netns().to_string(),
        cgroup: node.cgroup().to_path_buf(),
        url: format!("http://{vip}/hostname"),
    };
    let first = lab
        .wait_with("v1 answering through the ClusterIP", DEADLINE, |_| {
            traffic_client.fetch()
        })
        .await;
    assert!(first.starts_with("v1 rolling-"), "{first}");

    let stop = Arc::new(AtomicBool::new(false));
    let loop_stop = stop.clone();
    let loop_client = traffic_client.clone();
    let traffic = std::thread::spawn(move || steady_traffic(loop_client, loop_stop));
    std::thread::sleep(Duration::from_secs(2));
    kubectl(&lab, &["set", "env", "deployment/rolling", "VERSION=v2"]);
    let rolled = kubectl(
        &lab,
        &["rollout", "status", "deployment/rolling", "--timeout=150s"],
    );
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    lab.wait_for("only v2 pods left", DEADLINE, || {
        only_pods_of(&pods, "v2", 2)
    })
    .await;
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.join().expect("traffic thread");

    let failed: Vec<_> = seen.failures.iter().take(5).collect();
    assert!(
        seen.failures.is_empty(),
        "{} of {} requests failed during the rollout, first: {failed:?}",
        seen.failures.len(),
        seen.failures.len() + seen.answers.len()
    );
    let v1 = seen.answers.iter().filter(|a| a.starts_with("v1 ")).count();
    let v2 = seen.answers.iter().filter(|a| a.starts_with("v2 ")).count();
    assert!(v1 > 0 && v2 > 0, "answers: {v1} from v1, {v2} from v2");
    let last = seen.answers.last().expect("answers");
    assert!(last.starts_with("v2 "), "the last answer {last}");
    eprintln!(
        "rolling update: {} requests, 0 failed ({v1} answered by v1, {v2} by v2)",
        seen.answers.len()
    );
}
