//! CertificateSigningRequests against a real bpfk-server with the real kubectl, the way a node
//! will join: a requester's CSR stored with the requester's identity whatever it sent,
//! `kubectl get csr` / `describe csr`, `kubectl certificate approve|deny` through the
//! `approval` subresource and who may use it (RBAC on `certificatesigningrequests/approval`,
//! then `approve` on the signer), the certificate issued through `status` only (`sign` on the
//! signer), and what no write may do.

use std::time::Duration;

use base64::Engine;
use bpfk_lab::server::{failure, ok_or_stderr, success, Cluster};
use serde_json::{json, Value};

const KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// alice may create and read CSRs; bob may also write their approval and status, but may
/// approve for no signer (until `BOB_APPROVES_KUBERNETES_IO`).
const ROLES: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: csr-creator}
rules:
- {apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests], verbs: [create, get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-creates-csrs}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-creator}
subjects:
- {kind: User, name: alice}
- {kind: User, name: bob}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: csr-approval-writer}
rules:
- {apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests/approval, certificatesigningrequests/status], verbs: [get, update, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-writes-approvals}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-approval-writer}
subjects:
- {kind: User, name: bob}
"#;

/// bob may approve for every `kubernetes.io/` signer (the `<domain>/*` form).
const BOB_APPROVES_KUBERNETES_IO: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kubernetes-io-approver}
rules:
- {apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: ["kubernetes.io/*"], verbs: [approve]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-approves}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubernetes-io-approver}
subjects:
- {kind: User, name: bob}
"#;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Retries `check` for up to 10 s (the authorizer reads RBAC through watches).
fn eventually_within(what: &str, check: impl FnMut() -> Result<(), String>) {
    bpfk_lab::server::eventually(what, Duration::from_secs(10), check)
}

/// A CSR manifest asking the kubelet client signer for `request` (PEM), claiming to come
/// from a cluster admin and to be approved already.
fn manifest(name: &str, request: &str) -> String {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": b64(request), "signerName": KUBELET_SIGNER,
                 "usages": ["digital signature", "client auth"], "expirationSeconds": 86400,
                 "username": "kubernetes-admin", "groups": ["system:masters"],
                 "extra": {"scopes": ["all"]}},
        "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Self"}]}})
    .to_string()
}

fn get_json(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&success(&c.kubectl(&["get", "csr", name, "-o", "json"]))).unwrap()
}

/// The `kubectl get csr` line of `name`, split into its columns.
fn row(c: &Cluster, name: &str) -> Vec<String> {
    let out = success(&c.kubectl(&["get", "csr", name, "--no-headers"]));
    out.split_whitespace().map(String::from).collect()
}

/// The CONDITION column of `name`.
fn condition(c: &Cluster, name: &str) -> String {
    row(c, name)[5].clone()
}

/// The n1 node's request (a PKCS#10 request made as a joining kubelet makes it), created by
/// alice as `name`; its private key.
fn create_node_request(c: &Cluster, name: &str) -> String {
    let (request, key) =
        bpfk_auth::pki::client_request("system:node:n1", &["system:nodes"]).unwrap();
    let alice = &["create", "-f", "-"];
    success(&c.kubectl_stdin_as("alice", &[], alice, &manifest(name, &request)));
    key
}

#[test]
fn certificate_signing_requests_as_kubectl_and_a_joining_node_use_them() {
    // the API alone: no approver or signer acts on the requests (tests/tests/node_join.rs
    // has them)
    let c = Cluster::start_with(&["--controllers=*,-csrapproving,-csrsigning"]);
    success(&c.kubectl_stdin(&["apply", "-f", "-"], ROLES));
    eventually_within("alice may create CSRs", || {
        let can = c.kubectl_as("alice", &[], &["auth", "can-i", "create", "csr"]);
        (can.stdout == b"yes\n")
            .then_some(())
            .ok_or("not yet".into())
    });
    let key = create_node_request(&c, "node-csr-1");
    check_stored_as_requested_by_alice(&c);
    check_only_signer_approvers_approve(&c);
    check_status_alone_issues(&c, &key);
    check_deny(&c);
    check_refused_requests(&c);
}

/// Whatever alice sent, the request is hers, pending, and shown as kubectl shows CSRs.
fn check_stored_as_requested_by_alice(c: &Cluster) {
    let stored = get_json(c, "node-csr-1");
    let spec = &stored["spec"];
    assert_eq!(spec["username"], "alice", "{stored}");
    assert_eq!(spec["groups"], json!(["system:authenticated"]), "{stored}");
    assert!(
        spec.get("extra").is_none() && spec.get("uid").is_none(),
        "{stored}"
    );
    assert!(stored.get("status").is_none(), "{stored}");
    assert_eq!(
        row(c, "node-csr-1")[2..],
        [KUBELET_SIGNER, "alice", "24h", "Pending"]
    );
    let all = success(&c.kubectl(&["get", "certificatesigningrequests"]));
    assert!(
        all.starts_with("NAME")
            && all.contains("SIGNERNAME")
            && all.contains("REQUESTOR")
            && all.contains("REQUESTEDDURATION")
            && all.contains("CONDITION"),
        "{all}"
    );
    let described = success(&c.kubectl(&["describe", "csr", "node-csr-1"]));
    for line in [
        "Requesting User:",
        "alice",
        KUBELET_SIGNER,
        "Pending",
        "system:node:n1",
        "system:nodes",
    ] {
        assert!(described.contains(line), "{line} in {described}");
    }
    // the spec never changes
    let usages = r#"{"spec": {"usages": ["server auth"]}}"#;
    let err = failure(&c.kubectl(&[
        "patch",
        "csr",
        "node-csr-1",
        "--type",
        "merge",
        "-p",
        usages,
    ]));
    assert!(
        err.contains("spec.usages: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );
}

/// `kubectl certificate approve` needs the approval subresource (RBAC) and then `approve` on
/// the signer; the admin's approval is kubectl's condition.
fn check_only_signer_approvers_approve(c: &Cluster) {
    let approve = ["certificate", "approve", "node-csr-1"];
    let err = failure(&c.kubectl_as("alice", &[], &approve));
    assert!(
        err.contains(r#"User "alice" cannot update resource "certificatesigningrequests/approval" in API group "certificates.k8s.io" at the cluster scope"#),
        "{err}"
    );
    let err = failure(&c.kubectl_as("bob", &[], &approve));
    assert!(
        err.contains(r#"certificatesigningrequests.certificates.k8s.io "node-csr-1" is forbidden: user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client-kubelet""#),
        "{err}"
    );
    assert_eq!(condition(c, "node-csr-1"), "Pending");

    let out = success(&c.kubectl(&approve));
    assert!(
        out.contains("certificatesigningrequest.certificates.k8s.io/node-csr-1 approved"),
        "{out}"
    );
    let stored = get_json(c, "node-csr-1");
    let conditions = stored["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1, "{stored}");
    let approved = &conditions[0];
    assert_eq!(
        (&approved["type"], &approved["status"], &approved["reason"]),
        (&json!("Approved"), &json!("True"), &json!("KubectlApprove"))
    );
    assert!(approved["lastUpdateTime"].is_string() && approved["lastTransitionTime"].is_string());
    assert_eq!(stored["spec"]["username"], "alice");
    assert_eq!(condition(c, "node-csr-1"), "Approved");
    // approving again changes nothing
    success(&c.kubectl(&approve));
    assert_eq!(get_json(c, "node-csr-1")["status"], stored["status"]);
}

/// The certificate is not the main resource's to set; a signer writes it through `status`
/// (with `sign` on the signer), once, and it is the node's client certificate.
fn check_status_alone_issues(c: &Cluster, key: &str) {
    let pki = c.server.data_dir().join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let ca = bpfk_auth::pki::ClusterCa::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
    let stored = get_json(c, "node-csr-1");
    let request = base64::engine::general_purpose::STANDARD
        .decode(stored["spec"]["request"].as_str().unwrap())
        .unwrap();
    let issued = ca
        .sign_client_request(
            std::str::from_utf8(&request).unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let certificate = json!({"status": {"certificate": b64(&issued)}}).to_string();

    let main = [
        "patch",
        "csr",
        "node-csr-1",
        "--type",
        "merge",
        "-p",
        &certificate,
    ];
    success(&c.kubectl(&main));
    assert!(get_json(c, "node-csr-1")["status"]
        .get("certificate")
        .is_none());
    let status = [&main[..], &["--subresource", "status"]].concat();
    let err = failure(&c.kubectl_as("bob", &[], &status));
    assert!(
        err.contains(r#"user not permitted to sign requests with signerName "kubernetes.io/kube-apiserver-client-kubelet""#),
        "{err}"
    );
    success(&c.kubectl(&status));
    assert_eq!(condition(c, "node-csr-1"), "Approved,Issued");

    // the issued certificate authenticates its key as the node
    let stored = get_json(c, "node-csr-1");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(stored["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let creds = c.server.credentials();
    let credential = bpfk_auth::kubeconfig::Credential::Certificate {
        cert_pem: std::str::from_utf8(&pem).unwrap(),
        key_pem: key,
    };
    let kubeconfig = bpfk_auth::kubeconfig::render(&creds.server, &creds.ca_pem, "n1", credential);
    let path = c.server.data_dir().join("node-n1.kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let who = std::process::Command::new("kubectl")
        .args(["--kubeconfig", path.to_str().unwrap(), "auth", "whoami"])
        .output()
        .unwrap();
    let who = success(&who);
    assert!(
        who.contains("system:node:n1") && who.contains("system:nodes"),
        "{who}"
    );

    // no write takes an approval away, nor replaces what was issued
    let remove = r#"[{"op": "remove", "path": "/status/conditions/0"}]"#;
    let err = failure(&c.kubectl(&[
        "patch",
        "csr",
        "node-csr-1",
        "--subresource",
        "status",
        "--type",
        "json",
        "-p",
        remove,
    ]));
    assert!(
        err.contains(r#"updates may not remove a condition of type "Approved""#),
        "{err}"
    );
    let other = json!({"status": {"certificate": b64(&format!("{issued}{issued}"))}}).to_string();
    let err = failure(&c.kubectl(&[
        "patch",
        "csr",
        "node-csr-1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        &other,
    ]));
    assert!(
        err.contains("updates may not modify existing certificate content"),
        "{err}"
    );
}

/// `kubectl certificate deny`, by one allowed to approve for `kubernetes.io/*`; a denied
/// request is never approved, and a status write does not approve a pending one.
fn check_deny(c: &Cluster) {
    create_node_request(c, "node-csr-2");
    success(&c.kubectl_stdin(&["apply", "-f", "-"], BOB_APPROVES_KUBERNETES_IO));
    eventually_within("bob denies node-csr-2", || {
        ok_or_stderr(c.kubectl_as("bob", &[], &["certificate", "deny", "node-csr-2"])).map(|_| ())
    });
    let stored = get_json(c, "node-csr-2");
    assert_eq!(
        stored["status"]["conditions"][0]["type"], "Denied",
        "{stored}"
    );
    assert_eq!(stored["status"]["conditions"][0]["reason"], "KubectlDeny");
    assert_eq!(condition(c, "node-csr-2"), "Denied");
    let err = failure(&c.kubectl(&["certificate", "approve", "node-csr-2"]));
    assert!(err.contains("is already Denied"), "{err}");

    create_node_request(c, "node-csr-3");
    let approve = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}]}});
    let err = failure(&c.kubectl(&[
        "patch",
        "csr",
        "node-csr-3",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        &approve.to_string(),
    ]));
    assert!(
        err.contains("updates may not add a condition of type"),
        "{err}"
    );
    assert_eq!(condition(c, "node-csr-3"), "Pending");
}

/// What is not a PKCS#10 request is 422, before or after the PEM: its type, then its content.
fn check_refused_requests(c: &Cluster) {
    let create = |name: &str, request: &str| {
        failure(&c.kubectl_stdin_as(
            "alice",
            &[],
            &["create", "-f", "-"],
            &manifest(name, request),
        ))
    };
    let err = create("garbage-1", "not a request at all");
    assert!(
        err.contains("spec.request: Invalid value: PEM block type must be CERTIFICATE REQUEST"),
        "{err}"
    );
    let junk = "-----BEGIN CERTIFICATE REQUEST-----\nAAAAAAAA\n-----END CERTIFICATE REQUEST-----\n";
    let err = create("garbage-2", junk);
    assert!(
        err.contains("is invalid: spec.request: Invalid value:"),
        "{err}"
    );
    let listed = success(&c.kubectl(&["get", "csr", "-o", "name"]));
    assert!(!listed.contains("garbage"), "{listed}");
}
