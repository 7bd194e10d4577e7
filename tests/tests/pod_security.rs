//! Pod Security: the admission against a real bpfk-server (real etcd) with the real kubectl,
//! and the kubelet's security settings in the lab cluster (real containerd and runc):
//!
//! - a hostPath pod in a `baseline` namespace is refused with Kubernetes' message, a plain
//!   pod there is admitted with the `warn=restricted` warning, a restricted-clean pod passes
//!   a `restricted` namespace silently; a Deployment violating `enforce` is stored (enforce
//!   is for pods) with a warning; bad label values are 422 naming the label; labelling a
//!   namespace whose pods violate the new level warns, naming them;
//! - in containers: a privileged container runs (its sandbox is privileged) and may add a
//!   link (a veth pair in its netns); an unprivileged one may not and sees /proc/timer_list masked; a restricted container
//!   runs as its user with no capabilities, no_new_privs and the runtime's seccomp filter;
//!   runAsNonRoot with an image that runs as root waits in CreateContainerConfigError.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static, kubectl and the eBPF
//! object (`cargo xtask build-ebpf`); fails loudly without them.

use std::process::Command;
use std::time::Duration;

use bpfk_lab::cluster::{Lab, LabOptions};
use bpfk_lab::host::require_root;
use bpfk_lab::server::{failure, success, Cluster};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(90);

const NAMESPACES: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: base
  labels:
    pod-security.kubernetes.io/enforce: baseline
    pod-security.kubernetes.io/warn: restricted
---
apiVersion: v1
kind: Namespace
metadata:
  name: strict
  labels: {pod-security.kubernetes.io/enforce: restricted}
"#;

const HOST_PATH_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: base}
spec:
  hostNetwork: true
  volumes: [{name: host, hostPath: {path: /}}]
  containers: [{name: c, image: busybox:1.36, volumeMounts: [{name: host, mountPath: /host}]}]
"#;

const PLAIN_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: base}
spec:
  containers: [{name: nginx, image: nginx:1.14.2}]
"#;

/// What the restricted level asks of a pod, on top of a plain one.
fn restricted_pod(name: &str, namespace: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65534,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "busybox:1.36",
                "command": ["sleep", "3600"],
                "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}}}]
        }
    })
}

const PRIVILEGED_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: priv, namespace: base}
spec:
  replicas: 0
  selector: {matchLabels: {app: priv}}
  template:
    metadata: {labels: {app: priv}}
    spec:
      containers: [{name: c, image: busybox:1.36, securityContext: {privileged: true}}]
"#;

#[test]
fn namespaces_labels_choose_what_pods_may_do() {
    let c = Cluster::start();
    success(&c.kubectl_stdin(&["apply", "-f", "-"], NAMESPACES));

    let refused = failure(&c.kubectl_stdin(&["apply", "-f", "-"], HOST_PATH_POD));
    assert!(
        refused.contains(r#"pods "host" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), hostPath volumes (volume "host")"#),
        "{refused}"
    );
    assert!(failure(&c.kubectl(&["get", "pod", "host", "-n", "base"])).contains("NotFound"));

    let out = c.kubectl_stdin(&["apply", "-f", "-"], PLAIN_POD);
    success(&out);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#),
        "{warned}"
    );

    let clean = restricted_pod("clean", "strict").to_string();
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &clean);
    success(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut root = restricted_pod("root", "strict");
    root["spec"]["securityContext"]["runAsUser"] = json!(0);
    let refused = failure(&c.kubectl_stdin(&["apply", "-f", "-"], &root.to_string()));
    assert!(
        refused.contains(r#"runAsUser=0 (pod must not set runAsUser=0)"#),
        "{refused}"
    );

    // enforce is for pods: the Deployment is stored, with baseline's and restricted's words
    let out = c.kubectl_stdin(&["apply", "-f", "-"], PRIVILEGED_DEPLOYMENT);
    success(&out);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains(r#"would violate PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true)"#), "{warned}");

    let bad = failure(&c.kubectl(&[
        "label",
        "ns",
        "base",
        "pod-security.kubernetes.io/audit=strictest",
    ]));
    assert!(
        bad.contains(
            r#"metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "strictest""#
        ),
        "{bad}"
    );
    check_existing_pods_warning(&c);
}

/// Tightening a namespace's enforce level names the pods already there that violate it.
fn check_existing_pods_warning(c: &Cluster) {
    let out = c.kubectl(&[
        "label",
        "--overwrite",
        "ns",
        "base",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    success(&out);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains(r#"Warning: existing pods in namespace "base" violate the new PodSecurity enforce level "restricted:latest""#), "{warned}");
    assert!(
        warned.contains("Warning: plain: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"),
        "{warned}"
    );
    // and new pods there meet it now
    let refused = failure(&c.kubectl_stdin(
        &["apply", "-f", "-"],
        &PLAIN_POD.replace("name: plain", "name: plain-2"),
    ));
    assert!(
        refused.contains(r#"violates PodSecurity "restricted:latest""#),
        "{refused}"
    );
}

fn pod_in(node: &str, name: &str, container: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [container]}
    }))
    .expect("pod")
}

fn kubectl_exec(lab: &Lab, pod: &str, script: &str) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(["exec", pod, "--", "sh", "-c", script])
        .output()
        .expect("kubectl runs")
}

async fn wait_state(lab: &mut Lab, pods: &Api<Pod>, name: &str, running: bool) -> Pod {
    let what = format!("pod {name} running={running}");
    lab.wait_for(&what, DEADLINE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let state = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.clone());
        let reached = match (&state, running) {
            (Some(s), true) => s.running.is_some(),
            (Some(s), false) => s
                .waiting
                .as_ref()
                .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError")),
            (None, _) => false,
        };
        reached
            .then_some(pod.clone())
            .ok_or(format!("{:?}", pod.status))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_the_privileges_their_security_context_asks() {
    require_root("the pod security test");
    let pid = std::process::id();
    let mut lab = Lab::start(LabOptions::for_test(format!("psa{pid}"), 1));
    let node = lab.nodes()[0].name().to_string();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    let pp = PostParams::default();
    let sleeper = |sc: serde_json::Value| {
        json!({"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
               "securityContext": sc})
    };
    for (name, sc) in [
        ("privileged", json!({"privileged": true})),
        ("plain", json!({})),
    ] {
        pods.create(&pp, &pod_in(&node, name, sleeper(sc)))
            .await
            .expect("create");
    }
    let mut restricted: Pod =
        serde_json::from_value(restricted_pod("restricted", "default")).expect("pod");
    restricted.spec.as_mut().expect("spec").node_name = Some(node.clone());
    pods.create(&pp, &restricted).await.expect("create");
    let non_root = json!({"runAsNonRoot": true});
    pods.create(&pp, &pod_in(&node, "rootimage", sleeper(non_root)))
        .await
        .expect("create");

    for name in ["privileged", "plain", "restricted"] {
        wait_state(&mut lab, &pods, name, true).await;
    }
    // a veth pair inside the pod's own network namespace: CAP_NET_ADMIN
    let add_link = "ip link add psa0 type veth peer name psa1 && ip link show psa0";
    success(&kubectl_exec(&lab, "privileged", add_link));
    let denied = kubectl_exec(&lab, "plain", add_link);
    assert!(
        !denied.status.success(),
        "an unprivileged container added a link"
    );
    // masked: /dev/null bound over it (the host's has text); /proc/sys read-only
    let masked = success(&kubectl_exec(&lab, "plain", "wc -c < /proc/timer_list"));
    assert_eq!(masked.trim(), "0", "/proc/timer_list is masked");
    let unmasked = success(&kubectl_exec(
        &lab,
        "privileged",
        "wc -c < /proc/timer_list",
    ));
    assert_ne!(
        unmasked.trim(),
        "0",
        "a privileged container sees /proc/timer_list"
    );

    let status = success(&kubectl_exec(
        &lab,
        "restricted",
        "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status",
    ));
    let fields: Vec<&str> = status.split_whitespace().collect();
    assert_eq!(
        fields,
        [
            "65534",
            "CapEff:",
            "0000000000000000",
            "NoNewPrivs:",
            "1",
            "Seccomp:",
            "2"
        ],
        "{status}"
    );

    let waiting = wait_state(&mut lab, &pods, "rootimage", false).await;
    let message = waiting
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| {
            cs.first()?
                .state
                .as_ref()?
                .waiting
                .as_ref()?
                .message
                .clone()
        });
    assert!(
        message.as_deref().is_some_and(|m| m.starts_with(
            "container has runAsNonRoot and image will run as root (pod: \"rootimage_default("
        )),
        "{message:?}"
    );
    lab.assert_running();
}
