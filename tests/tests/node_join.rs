//! Joining machines with tokens, in the lab cluster (real etcd, bpfk-server, containerd and
//! `bpfk-agent --server URL --token TOKEN` in a node netns):
//!
//! - the lab's agent joined with the server's join token: its CertificateSigningRequest,
//!   made as `system:bootstrap:<id>`, was approved by csrapproving and signed, and its
//!   kubeconfig (mode 0600) authenticates as `system:node:<name>`; with a one-minute signing
//!   duration it renews its certificate (a request made as the node itself) and restarts
//!   onto it under the same pid, still Ready;
//! - `bpfk token create/list/delete`: a token authenticates as a bootstrapper, an expired one
//!   is refused (401) and the token cleaner deletes it, a deleted one is refused;
//! - an agent given a token whose CA hash is not the cluster's stops before sending the
//!   token; a CSR a bootstrap token did not make waits for `kubectl certificate approve`,
//!   then is signed.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static, kubectl and the eBPF
//! object (`cargo xtask build-ebpf`); fails loudly without them.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bpfk_lab::cluster::{Lab, LabOptions};
use bpfk_lab::host::require_root;
use bpfk_lab::server::{eventually, ok_or_stderr, success};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(30);

fn kubectl(lab: &Lab, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(args)
        .output()
        .expect("kubectl runs")
}

fn bpfk(lab: &Lab, args: &[&str]) -> Output {
    Command::new(bpfk_lab::server::binary("bpfk"))
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(args)
        .output()
        .expect("bpfk runs")
}

/// `kubectl auth whoami` with a bearer token (and the lab's CA, no other credential).
fn whoami_with_token(lab: &Lab, token: &str) -> Output {
    let ca = lab.dir().join("server-data").join("pki").join("ca.crt");
    Command::new("kubectl")
        .args(["--server", &lab.api_url(), "--token", token])
        .arg("--certificate-authority")
        .arg(&ca)
        .args(["auth", "whoami", "-o", "json"])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("kubectl runs")
}

fn csrs(lab: &Lab) -> Vec<Value> {
    let out = success(&kubectl(lab, &["get", "csr", "-o", "json"]));
    let list: Value = serde_json::from_str(&out).expect("csr list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn issued_to(csrs: &[Value], requestor: &str) -> usize {
    csrs.iter()
        .filter(|c| c["spec"]["username"] == requestor)
        .filter(|c| {
            c["status"]["certificate"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_join_with_tokens_and_renew_their_certificates() {
    require_root("the node join test");
    let pid = std::process::id();
    let mut options = LabOptions::for_test(format!("join{pid}"), 1);
    options.server_args = vec!["--cluster-signing-duration=1m".into()];
    let mut lab = Lab::start(options);
    let node = lab.nodes()[0].name().to_string();
    let join_token = lab.join_token();
    let token_id = join_token.trim().rsplit("::").next().unwrap_or_default()[..6].to_string();

    let first = csrs(&lab);
    assert_eq!(
        issued_to(&first, &format!("system:bootstrap:{token_id}")),
        1,
        "{first:?}"
    );
    let kubeconfig = lab
        .dir()
        .join(format!("pki-{node}"))
        .join("kubelet.kubeconfig");
    let mode = std::fs::metadata(&kubeconfig)
        .expect("node kubeconfig")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    check_node_identity(&kubeconfig, &node);
    check_tokens(&lab);
    check_wrong_ca_hash(&lab, &join_token);
    check_manual_approval(&lab);
    check_renewal(&mut lab, &node);
}

fn check_node_identity(kubeconfig: &Path, node: &str) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .expect("kubectl");
    assert_eq!(success(&out), format!("system:node:{node}"));
}

fn check_tokens(lab: &Lab) {
    let token = success(&bpfk(
        lab,
        &["token", "create", "--ttl", "1h", "--description", "node-9"],
    ));
    let join: bpfk_auth::bootstrap_token::JoinToken = token.trim().parse().expect("a join token");
    let bearer = join.token.expose();
    let who = success(&whoami_with_token(lab, &bearer));
    assert!(
        who.contains(&format!("system:bootstrap:{}", join.token.id)),
        "{who}"
    );
    assert!(
        who.contains("system:bootstrappers:bpfk:default-node-token"),
        "{who}"
    );
    let listed = success(&bpfk(lab, &["token", "list"]));
    assert!(
        listed.contains(&join.token.id) && listed.contains("node-9"),
        "{listed}"
    );
    assert!(
        !listed.contains(&bearer),
        "token list shows a secret:\n{listed}"
    );
    success(&bpfk(lab, &["token", "delete", &join.token.id]));
    eventually(
        "a deleted token is refused",
        WITHIN,
        || match ok_or_stderr(whoami_with_token(lab, &bearer)) {
            Err(e) if e.contains("Unauthorized") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    let short = success(&bpfk(lab, &["token", "create", "--ttl", "2s"]));
    let short: bpfk_auth::bootstrap_token::JoinToken = short.trim().parse().expect("join token");
    std::thread::sleep(Duration::from_secs(3));
    let refused = whoami_with_token(lab, &short.token.expose());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Unauthorized"),
        "{refused:?}"
    );
    let secret = format!("bootstrap-token-{}", short.token.id);
    eventually(
        "the token cleaner deletes the expired token",
        WITHIN,
        || match ok_or_stderr(kubectl(
            lab,
            &["get", "secret", "-n", "kube-system", &secret],
        )) {
            Err(e) if e.contains("NotFound") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// An agent with a token naming another CA stops at discovery.
fn check_wrong_ca_hash(lab: &Lab, join_token: &str) {
    let (_, token) = join_token.trim().split_once("::").expect("join token");
    let forged = format!("K10{}::{token}", "0".repeat(64));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bpfk_lab::server::binary("bpfk-agent"))
        .args(["--node-name", "intruder", "--server", &lab.api_url()])
        .arg("--cert-dir")
        .arg(dir.path())
        .args(["--kubelet", "--no-proxy"])
        .env("BPFK_TOKEN", &forged)
        .output()
        .expect("bpfk-agent runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("join token's CA hash"), "{stderr}");
    assert!(!dir.path().join("kubelet.kubeconfig").exists());
}

const ALICE_REQUESTS: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-requests}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node-bootstrapper}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
"#;

/// A node certificate asked for by someone who may create requests but not node client
/// ones (`system:node-bootstrapper` alone) is not approved automatically; once a person
/// approves it, it is signed.
fn check_manual_approval(lab: &Lab) {
    let dir = tempfile::tempdir().expect("tempdir");
    let binding = dir.path().join("binding.yaml");
    std::fs::write(&binding, ALICE_REQUESTS).expect("binding manifest");
    let binding = binding.to_string_lossy().into_owned();
    success(&kubectl(lab, &["apply", "-f", &binding]));
    let alice = lab.issue_client_cert("alice", &[]);
    let credential = bpfk_auth::kubeconfig::Credential::Certificate {
        cert_pem: &alice.cert_pem,
        key_pem: &alice.key_pem,
    };
    let ca = &lab.credentials().ca_pem;
    let text = bpfk_auth::kubeconfig::render(&lab.api_url(), ca, "alice", credential);
    let alice_config = dir.path().join("alice");
    std::fs::write(&alice_config, text).expect("alice's kubeconfig");
    let (request, _key) =
        bpfk_auth::pki::client_request("system:node:manual", &["system:nodes"]).expect("csr");
    use base64::Engine;
    let csr = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "manual-node"},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(request),
                 "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                 "usages": ["digital signature", "client auth"]}
    });
    let manifest = dir.path().join("csr.json");
    std::fs::write(&manifest, csr.to_string()).expect("csr manifest");
    eventually("alice may create requests", WITHIN, || {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&alice_config)
            .arg("create")
            .arg("-f")
            .arg(&manifest)
            .output()
            .expect("kubectl create");
        ok_or_stderr(out).map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(3));
    let pending = success(&kubectl(lab, &["get", "csr", "manual-node"]));
    assert!(
        pending.contains("Pending") && pending.contains("alice"),
        "{pending}"
    );
    success(&kubectl(lab, &["certificate", "approve", "manual-node"]));
    eventually("the approved request is signed", WITHIN, || {
        let out = ok_or_stderr(kubectl(lab, &["get", "csr", "manual-node"]))?;
        out.contains("Approved,Issued").then_some(()).ok_or(out)
    });
}

/// With one-minute certificates the agent renews as itself and restarts onto the new one.
fn check_renewal(lab: &mut Lab, node: &str) {
    let pid_before = agent_pid(node);
    let started = Instant::now();
    let user = format!("system:node:{node}");
    eventually(
        "the node renews its own certificate",
        Duration::from_secs(120),
        || {
            let renewed = issued_to(&csrs(lab), &user);
            (renewed >= 1)
                .then_some(())
                .ok_or(format!("{renewed} renewals after {:?}", started.elapsed()))
        },
    );
    assert_eq!(
        agent_pid(node),
        pid_before,
        "the agent restarted under another pid"
    );
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    eventually(
        "the node Ready after its renewal",
        Duration::from_secs(60),
        || {
            let out = ok_or_stderr(kubectl(lab, &["get", "node", node, "-o", ready]))?;
            (out == "True").then_some(()).ok_or(out)
        },
    );
    lab.assert_running();
}

/// The pid of the lab's agent of `node` (by its command line).
fn agent_pid(node: &str) -> u32 {
    let out = Command::new("pgrep")
        .args(["-f", &format!("bpfk-agent --node-name {node} ")])
        .output()
        .expect("pgrep");
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(pids.len(), 1, "agents of {node}: {text}");
    pids[0]
}
