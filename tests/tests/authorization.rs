//! Authorization against a real bpfk-server with the real kubectl: RBAC roles and bindings
//! enforced for users of client certificates, `kubectl auth can-i` / `whoami`, the escalation
//! check, ClusterRole aggregation, SubjectAccessReview, the component identities' least
//! privilege, and the system namespaces that come back when deleted.

use std::time::{Duration, Instant};

use bpfk_lab::server::{failure, ok_or_stderr, success, Cluster};

const POD_READER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: default}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get, list, watch]}
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings], verbs: [create, get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads-pods, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: User, name: alice}
"#;

/// Retries `check` for up to 10 s (controllers and the authorizer act through watches).
fn eventually_within(what: &str, check: impl FnMut() -> Result<(), String>) {
    bpfk_lab::server::eventually(what, Duration::from_secs(10), check)
}

#[test]
fn rbac_grants_what_bindings_say_and_nothing_more() {
    let c = Cluster::start();
    let alice = |args: &[&str]| c.kubectl_as("alice", &[], args);

    let err = failure(&alice(&["get", "pods"]));
    assert!(
        err.contains(r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );
    let who = success(&alice(&["auth", "whoami"]));
    assert!(
        who.contains("alice") && who.contains("system:authenticated"),
        "{who}"
    );
    assert_eq!(alice(&["auth", "can-i", "list", "pods"]).stdout, b"no\n");
    success(&alice(&["api-resources"])); // discovery is everyone's

    success(&c.kubectl_stdin(&["apply", "-f", "-"], POD_READER));
    eventually_within("alice reads pods", || {
        ok_or_stderr(alice(&["get", "pods"])).map(|_| ())
    });
    assert_eq!(success(&alice(&["auth", "can-i", "list", "pods"])), "yes\n");
    assert_eq!(alice(&["auth", "can-i", "delete", "pods"]).stdout, b"no\n");
    let err = failure(&alice(&["get", "pods", "-n", "kube-system"]));
    assert!(err.contains(r#"in the namespace "kube-system""#), "{err}");
    let rules = success(&alice(&["auth", "can-i", "--list"]));
    assert!(
        rules
            .lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{rules}"
    );

    // a Role alice holds the rules of may be written; one granting more may not
    let own = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: mine, namespace: default}\nrules:\n- {apiGroups: [\"\"], resources: [pods], verbs: [get]}\n";
    success(&c.kubectl_stdin_as("alice", &[], &["create", "-f", "-"], own));
    let more = own
        .replace("name: mine", "name: more")
        .replace("verbs: [get]", "verbs: [get, delete]");
    let err = failure(&c.kubectl_stdin_as("alice", &[], &["create", "-f", "-"], &more));
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held")
            && err.contains(r#"Verbs:["delete"]"#),
        "{err}"
    );
    let bind_admin = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: take-over, namespace: default}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {kind: User, name: alice}\n";
    let err = failure(&c.kubectl_stdin_as("alice", &[], &["create", "-f", "-"], bind_admin));
    assert!(
        err.contains("Forbidden") && err.contains("not currently held"),
        "{err}"
    );
    assert_eq!(alice(&["auth", "can-i", "delete", "pods"]).stdout, b"no\n");
}

#[test]
fn reviews_aggregation_and_component_identities() {
    let c = Cluster::start();
    // SubjectAccessReview: may someone else do it?
    let sar = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
        "spec":{"user":"system:kube-scheduler","resourceAttributes":
        {"verb":"create","resource":"pods","subresource":"binding","namespace":"default","name":"web"}}}"#;
    let (code, body) = c
        .server
        .request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(sar),
        )
        .unwrap();
    assert_eq!(code, 201, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"]["allowed"], true, "{body}");
    // least privilege of the in-process components
    let scheduler = |args: &[&str]| c.kubectl_as("system:kube-scheduler", &[], args).stdout;
    assert_eq!(
        scheduler(&["auth", "can-i", "create", "pods", "--subresource=binding"]),
        b"yes\n"
    );
    assert_eq!(
        scheduler(&["auth", "can-i", "delete", "deployments"]),
        b"no\n"
    );
    assert_eq!(scheduler(&["auth", "can-i", "get", "secrets"]), b"no\n");
    let controllers = |args: &[&str]| {
        c.kubectl_as("system:kube-controller-manager", &[], args)
            .stdout
    };
    assert_eq!(
        controllers(&["auth", "can-i", "create", "replicasets"]),
        b"yes\n"
    );
    assert_eq!(
        controllers(&["auth", "can-i", "create", "clusterrolebindings"]),
        b"no\n"
    );

    // a role labelled aggregate-to-view adds its rules to `view`
    let widgets = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: widget-viewer\n  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}\nrules:\n- {apiGroups: [example.com], resources: [widgets], verbs: [get, list]}\n";
    success(&c.kubectl_stdin(&["apply", "-f", "-"], widgets));
    eventually_within("view aggregates widgets", || {
        let view = ok_or_stderr(c.kubectl(&["describe", "clusterrole", "view"]))?;
        view.contains("widgets.example.com")
            .then_some(())
            .ok_or(view)
    });
    // `admin` gathers only what is labelled for it (system:aggregate-to-view is, for all three)
    let admin = success(&c.kubectl(&["describe", "clusterrole", "admin"]));
    assert!(
        admin.contains("rolebindings") && admin.contains("pods/log"),
        "{admin}"
    );
    assert!(!admin.contains("widgets.example.com"), "{admin}");
    // bound through `view`, a user gets the aggregated rule
    let bind = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bob-views}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects:\n- {kind: Group, name: viewers}\n";
    success(&c.kubectl_stdin(&["apply", "-f", "-"], bind));
    // (kubectl's can-i needs the type served; a SubjectAccessReview does not)
    let bob_lists_widgets = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
        "spec":{"user":"bob","groups":["viewers"],"resourceAttributes":
        {"verb":"list","group":"example.com","resource":"widgets"}}}"#;
    eventually_within("a viewer lists widgets", || {
        let (_, body) = c
            .server
            .request(
                "POST",
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                Some(bob_lists_widgets),
            )
            .map_err(|e| e.to_string())?;
        body.contains(r#""allowed":true"#).then_some(()).ok_or(body)
    });
    let out = c.kubectl_as(
        "bob",
        &["viewers"],
        &["auth", "can-i", "get", "secrets", "-A"],
    );
    assert_eq!(out.stdout, b"no\n", "view never reads secrets");
}

#[test]
fn system_namespaces_stay() {
    let c = Cluster::start();
    let err = failure(&c.kubectl(&["delete", "namespace", "default"]));
    assert!(err.contains("may not be deleted"), "{err}");
    success(&c.kubectl(&[
        "delete",
        "namespace",
        "kube-node-lease",
        "--wait=true",
        "--timeout=30s",
    ]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.kubectl(&[
            "get",
            "namespace",
            "kube-node-lease",
            "-o",
            "jsonpath={.status.phase}",
        ]);
        if out.stdout == b"Active" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kube-node-lease was not recreated: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn authentication_by_certificate_token_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "s3cr3t-token-of-tina,tina,1001,\"devs,qa\"\n").unwrap();
    let c = Cluster::start_with(&["--token-auth-file", tokens.to_str().unwrap()]);
    let admin = c.server.credentials();
    let anonymous = admin.anonymous();
    for public in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(
            anonymous.request("GET", public, None).unwrap().0,
            200,
            "{public}"
        );
    }
    let (code, body) = anonymous
        .request("GET", "/api/v1/namespaces", None)
        .unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");
    assert_eq!(anonymous.request("GET", "/metrics", None).unwrap().0, 401);
    let wrong = admin.with_token("not-a-token");
    assert_eq!(
        wrong.request("GET", "/version", None).unwrap().0,
        401,
        "a bad token is 401 anywhere"
    );
    let tina = admin.with_token("s3cr3t-token-of-tina");
    let (code, body) = tina
        .request("GET", "/api/v1/namespaces/default/pods", None)
        .unwrap();
    assert_eq!(code, 403, "authenticated but not authorized: {body}");
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let (code, body) = tina
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(review),
        )
        .unwrap();
    assert_eq!(code, 201, "{body}");
    let who: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "tina");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "qa", "system:authenticated"])
    );
    // the token through kubectl, and a TokenReview of it
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &admin.ca_pem).unwrap();
    let out = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            "/dev/null",
            "--server",
            &admin.server,
            "--token",
            "s3cr3t-token-of-tina",
        ])
        .arg(format!("--certificate-authority={}", ca.display()))
        .args(["auth", "whoami"])
        .output()
        .unwrap();
    let out = success(&out);
    assert!(out.contains("tina") && out.contains("devs"), "{out}");
    let token_review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"s3cr3t-token-of-tina"}}"#;
    let (_, body) = c
        .server
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            Some(token_review),
        )
        .unwrap();
    assert!(
        body.contains(r#""authenticated":true"#) && body.contains(r#""username":"tina""#),
        "{body}"
    );
    // the secrets of the token file never reach the log
    assert!(!c.server.log().contains("s3cr3t-token-of-tina"));
}

const NODE_FIXTURES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
---
apiVersion: v1
kind: Secret
metadata: {name: used-by-n1, namespace: default}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: unused, namespace: default}
stringData: {k: v}
---
apiVersion: v1
kind: Pod
metadata: {name: on-n1, namespace: default}
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox:1.36
    env: [{name: K, valueFrom: {secretKeyRef: {name: used-by-n1, key: k}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-n2, namespace: default}
spec:
  nodeName: n2
  containers: [{name: c, image: busybox:1.36}]
"#;

/// The Node authorizer and NodeRestriction: node n1's identity reads the Secret its pod uses
/// and no other, writes its own Node and Lease and its pods' status only, creates no pods,
/// and gets tokens only for its own pods.
#[test]
fn a_node_reaches_only_its_own_objects() {
    let c = Cluster::start();
    success(&c.kubectl_stdin(&["apply", "-f", "-"], NODE_FIXTURES));
    let n1 = |args: &[&str]| c.kubectl_as("system:node:n1", &["system:nodes"], args);
    let n2 = |args: &[&str]| c.kubectl_as("system:node:n2", &["system:nodes"], args);

    success(&n1(&["get", "secret", "used-by-n1"]));
    let err = failure(&n1(&["get", "secret", "unused"]));
    assert!(
        err.contains(r#"User "system:node:n1" cannot get resource "secrets""#),
        "{err}"
    );
    failure(&n2(&["get", "secret", "used-by-n1"]));
    failure(&n1(&["get", "secrets"]));
    success(&n1(&["get", "pods", "-A"]));
    success(&n1(&["get", "endpointslices", "-A"]));

    let patch = r#"{"metadata":{"labels":{"x":"y"}}}"#;
    success(&n1(&["patch", "node", "n1", "-p", patch]));
    let err = failure(&n1(&["patch", "node", "n2", "-p", patch]));
    assert!(
        err.contains(r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#),
        "{err}"
    );
    let status = r#"{"status":{"message":"from n1"}}"#;
    success(&n1(&[
        "patch",
        "pod",
        "on-n1",
        "--subresource=status",
        "-p",
        status,
    ]));
    let err = failure(&n1(&[
        "patch",
        "pod",
        "on-n2",
        "--subresource=status",
        "-p",
        status,
    ]));
    assert!(err.contains("can only modify pods bound to it"), "{err}");
    let err = failure(&n1(&["delete", "pod", "on-n2", "--wait=false"]));
    assert!(err.contains("can only modify pods bound to it"), "{err}");
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"sneaky"},"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}"#;
    let err = failure(&c.kubectl_stdin_as(
        "system:node:n1",
        &["system:nodes"],
        &["create", "-f", "-"],
        pod,
    ));
    assert!(err.contains("can only create mirror pods"), "{err}");
    let lease = r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n2","namespace":"kube-node-lease"}}"#;
    let err = failure(&c.kubectl_stdin_as(
        "system:node:n1",
        &["system:nodes"],
        &["create", "-f", "-"],
        lease,
    ));
    assert!(
        err.contains("is not allowed to modify lease kube-node-lease/n2"),
        "{err}"
    );

    success(&n1(&[
        "create",
        "token",
        "default",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "on-n1",
    ]));
    let err = failure(&n1(&[
        "create",
        "token",
        "default",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "on-n2",
    ]));
    assert!(
        err.contains("can only request tokens bound to pods bound to it"),
        "{err}"
    );
}
