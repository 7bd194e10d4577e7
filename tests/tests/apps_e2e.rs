//! Real applications on the lab cluster (`bpfk_lab::cluster`, one node: real etcd,
//! bpfk-server, containerd and `bpfk-agent --kubelet`) with the lab's real OCI registries
//! (`docker-registry`, images pushed with skopeo): images pulled through CRI, pull secrets,
//! ConfigMaps and Secrets as volumes and env vars.
//!
//! - the manifests' nginx Deployment is pulled from `registry.bpfk.lab:5000` (a Pulled
//!   event with the time it took; the image is not pre-imported on the nodes);
//! - `registry.bpfk.lab:5001/private/nginx` (basic auth) runs with the right
//!   dockerconfigjson pull secret, and with a wrong one waits in ImagePullBackOff with the
//!   registry's 401;
//! - a pod serves a file of its ConfigMap volume and the value of a Secret env var, reached
//!   through its Service's ClusterIP (the eBPF socket load balancer, from inside the node
//!   cgroup); a change of the ConfigMap is served without a restart;
//! - a container whose ConfigMap key ref does not exist waits in
//!   CreateContainerConfigError naming it, and starts once the ConfigMap is created;
//! - imagePullPolicy Never with an image the node does not have: ErrImageNeverPull.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static, docker-registry,
//! skopeo, apache2-utils (htpasswd) and the eBPF object; fails loudly without them.

use std::path::Path;
use std::time::{Duration, Instant};

use bpfk_lab::cluster::{Binaries, Lab, LabOptions};
use bpfk_lab::host::require_root;
use bpfk_lab::registry::{AUTH_PASSWORD, AUTH_USER};
use bpfk_lab::server::{self, binary};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Correctness deadline of each step.
const DEADLINE: Duration = Duration::from_secs(90);

/// (reason, message) of the first container's waiting state, or "Running".
fn container_state(p: &Pod) -> (String, String) {
    let status = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first());
    let state = status.and_then(|s| s.state.as_ref());
    if state.and_then(|s| s.running.as_ref()).is_some() {
        return ("Running".into(), String::new());
    }
    let waiting = state.and_then(|s| s.waiting.as_ref());
    (
        waiting.and_then(|w| w.reason.clone()).unwrap_or_default(),
        waiting.and_then(|w| w.message.clone()).unwrap_or_default(),
    )
}

async fn wait_state(lab: &mut Lab, pods: &Api<Pod>, name: &str, reason: &str) -> String {
    let what = format!("pod {name} in {reason}");
    lab.wait_for(&what, DEADLINE, || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let (r, message) = container_state(&p);
        if r == reason {
            Ok(message)
        } else {
            Err(format!("{r}: {message}"))
        }
    })
    .await
}

async fn events_of(client: &kube::Client, pod: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = api.list(&Default::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn create<K>(client: &kube::Client, object: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), "default");
    let value: K = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &value)
        .await
        .expect("create")
}

fn pull_secret(name: &str, password: &str) -> serde_json::Value {
    let config =
        json!({"auths": {"registry.bpfk.lab:5001": {"username": AUTH_USER, "password": password}}});
    json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()}
    })
}

fn private_pod(name: &str, secret: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "imagePullSecrets": [{"name": secret}],
            "containers": [{"name": "web", "image": "registry.bpfk.lab:5001/private/nginx:1.14.2",
                "imagePullPolicy": "Always"}]
        }
    })
}

/// The manifests' Deployment is pulled from the lab registry.
async fn deployment_is_pulled(lab: &mut Lab, kubectl: &Path) {
    let deployment = server::manifest("nginx-deployment.yaml");
    let out = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(["apply", "-f"])
        .arg(&deployment)
        .output()
        .expect("kubectl");
    server::success(&out);
    let client = lab.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let name = lab
        .wait_for("a Running nginx pod", DEADLINE, || async {
            let list = pods
                .list(&kube::api::ListParams::default().labels("app=nginx"))
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .find(|p| container_state(p).0 == "Running")
                .and_then(|p| p.metadata.name.clone())
                .ok_or_else(|| format!("{} pods, none Running", list.items.len()))
        })
        .await;
    let events = events_of(&client, &name).await;
    let image = format!("{}/library/nginx:1.14.2", lab.registry());
    assert!(
        events.iter().any(|(r, m)| r == "Pulled"
            && m.starts_with(&format!("Successfully pulled image {image:?} in "))),
        "{events:?}"
    );
    assert!(events.iter().any(|(r, _)| r == "Pulling"), "{events:?}");
}

/// Right and wrong credentials for the registry behind basic auth.
async fn pull_secrets(lab: &mut Lab) {
    let client = lab.client();
    create::<Secret>(&client, pull_secret("good-cred", AUTH_PASSWORD)).await;
    create::<Secret>(&client, pull_secret("bad-cred", "not-the-password")).await;
    create::<Pod>(&client, private_pod("private-good", "good-cred")).await;
    create::<Pod>(&client, private_pod("private-bad", "bad-cred")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_state(lab, &pods, "private-good", "Running").await;
    let message = wait_state(lab, &pods, "private-bad", "ImagePullBackOff").await;
    assert!(
        message.contains("401 Unauthorized") && message.contains("private/nginx:1.14.2"),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");
    let events = events_of(&client, "private-bad").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Failed" && m.contains("401 Unauthorized")),
        "{events:?}"
    );
}

/// HTTP GET through the Service's ClusterIP from inside the node cgroup.
fn get_through_service(lab: &Lab, vip: &str, path: &str) -> String {
    let url = format!("http://{vip}{path}");
    // (busybox 1.35's `wget -T` segfaults: `busybox timeout` bounds the request instead)
    let fetch = [
        "busybox", "timeout", "5", "busybox", "wget", "-q", "-O", "-", &url,
    ];
    let out = lab.nodes()[0].exec(&fetch, true);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn web_pod() -> serde_json::Value {
    let script = "echo \"$PASSWORD\" > /www/secret; httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait";
    json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.bpfk.lab:5000/library/nginx:1.14.2",
                "command": ["sh", "-c", script],
                "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "web-secret", "key": "password"}}}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/www/cfg"}]
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "web-config"}}]
        }
    })
}

/// A ConfigMap file and a Secret env var served through a Service; an update is served
/// without a restart.
async fn config_and_secret(lab: &mut Lab) {
    let client = lab.client();
    create::<ConfigMap>(
        &client,
        json!({"metadata": {"name": "web-config"}, "data": {"page.html": "version one"}}),
    )
    .await;
    create::<Secret>(
        &client,
        json!({"metadata": {"name": "web-secret"}, "stringData": {"password": "s3cret-value"}}),
    )
    .await;
    create::<Pod>(&client, web_pod()).await;
    let svc: Service = create(
        &client,
        json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
        }),
    )
    .await;
    let vip = svc.spec.and_then(|s| s.cluster_ip).expect("clusterIP");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_state(lab, &pods, "web", "Running").await;
    let lab_ref = &*lab;
    let page = wait_until(|| {
        let body = get_through_service(lab_ref, &vip, "/cfg/page.html");
        (body == "version one").then_some(()).ok_or(body)
    });
    page.unwrap_or_else(|last| panic!("ConfigMap file through the Service: {last:?}"));
    assert_eq!(
        get_through_service(lab_ref, &vip, "/secret").trim(),
        "s3cret-value"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let patch = json!({"data": {"page.html": "version two"}});
    cms.patch("web-config", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("update the ConfigMap");
    let updated = wait_until(|| {
        let body = get_through_service(lab_ref, &vip, "/cfg/page.html");
        (body == "version two").then_some(()).ok_or(body)
    });
    updated.unwrap_or_else(|last| panic!("updated ConfigMap not served: {last:?}"));
    let restarts = pods
        .get("web")
        .await
        .expect("web")
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.first().map(|c| c.restart_count));
    assert_eq!(restarts, Some(0), "seen without a restart");
}

/// Polls `f` (blocking, bounded by [`DEADLINE`]) until it succeeds; the last error.
fn wait_until<E>(mut f: impl FnMut() -> Result<(), E>) -> Result<(), E> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// A missing ConfigMap holds the container in CreateContainerConfigError until it exists;
/// Never with a missing image: ErrImageNeverPull.
async fn waiting_reasons(lab: &mut Lab) {
    let client = lab.client();
    create::<Pod>(&client, json!({
        "metadata": {"name": "needs-config"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
            "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "mode"}}}]}]}
    }))
    .await;
    create::<Pod>(&client, json!({
        "metadata": {"name": "never"},
        "spec": {"containers": [{"name": "c", "image": "registry.bpfk.lab:5000/absent:1", "imagePullPolicy": "Never"}]}
    }))
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let message = wait_state(lab, &pods, "needs-config", "CreateContainerConfigError").await;
    assert_eq!(message, "configmap \"later\" not found");
    let message = wait_state(lab, &pods, "never", "ErrImageNeverPull").await;
    assert!(
        message.contains("absent:1") && message.contains("Never"),
        "{message}"
    );
    create::<ConfigMap>(
        &client,
        json!({"metadata": {"name": "later"}, "data": {"mode": "fast"}}),
    )
    .await;
    wait_state(lab, &pods, "needs-config", "Running").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_pulls_config_maps_and_secrets() {
    require_root("the applications end-to-end test");
    let binaries = Binaries {
        server: binary("bpfk-server"),
        agent: binary("bpfk-agent"),
    };
    let mut lab = Lab::start(LabOptions {
        id: format!("apps{}", std::process::id()),
        nodes: 1,
        node_prefix: None,
        binaries,
        log_level: "info".into(),
        server_args: Vec::new(),
    });
    assert_eq!(lab.registry(), "registry.bpfk.lab:5000");
    deployment_is_pulled(&mut lab, Path::new("kubectl")).await;
    pull_secrets(&mut lab).await;
    config_and_secret(&mut lab).await;
    waiting_reasons(&mut lab).await;
    let log = lab.nodes()[0].agent_log();
    for secret in ["s3cret-value", AUTH_PASSWORD, "not-the-password"] {
        assert!(!log.contains(secret), "a secret value in the agent log");
    }
}
