//! Server-side apply and managed fields (issue 17 item 2) with the real kubectl 1.32, kube-rs
//! and bpfk against a real etcd and bpfk-server: ownership per manager, conflicts (409 with
//! the fields and their managers), --force-conflicts, fields an applier drops, re-applying an
//! unchanged manifest, client-side apply beside it, and the API's own checks.

use std::time::Duration;

use bpfk_lab::server::{eventually, failure, manifest, ok_or_stderr, success, Cluster};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

fn api_only() -> Cluster {
    Cluster::start_with(&[
        "--disable-scheduler",
        "--controllers=serviceaccount,root-ca-cert-publisher",
    ])
}

fn get(c: &Cluster, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend(what);
    args.extend(["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&success(&c.kubectl(&args))).expect("kubectl prints JSON")
}

/// The managed-fields entry of `manager` (and operation), if any.
fn entry<'v>(obj: &'v Value, manager: &str, operation: &str) -> Option<&'v Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a manifest");
    path.display().to_string()
}

#[test]
fn kubectl_server_side_apply_owns_conflicts_and_forces() {
    let c = api_only();
    let seed = manifest("nginx-deployment.yaml").display().to_string();
    let applied = |extra: &[&str], file: &str| {
        let mut args = vec!["apply", "--server-side", "-f", file];
        args.extend(extra);
        c.kubectl(&args)
    };
    assert_eq!(
        success(&applied(&[], &seed)).trim(),
        "deployment.apps/nginx-deployment serverside-applied"
    );
    let first = get(&c, &["deployment", "nginx-deployment"]);
    let mine = entry(&first, "kubectl", "Apply").expect("kubectl's Apply entry");
    assert_eq!(mine["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    assert_eq!(mine["fieldsV1"]["f:spec"]["f:selector"], json!({}));
    let ports = &mine["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        ["k:{\"name\":\"nginx\"}"]["f:ports"];
    assert!(
        ports
            .get("k:{\"containerPort\":80,\"protocol\":\"TCP\"}")
            .is_some(),
        "{mine:#}"
    );
    // defaults the server added are nobody's
    assert!(
        mine["fieldsV1"]["f:spec"].get("f:strategy").is_none(),
        "{mine:#}"
    );
    assert_eq!(first["spec"]["strategy"]["type"], "RollingUpdate");

    // unchanged: no new generation, the entry as it was
    success(&applied(&[], &seed));
    let again = get(&c, &["deployment", "nginx-deployment"]);
    assert_eq!(
        again["metadata"]["generation"],
        first["metadata"]["generation"]
    );
    assert_eq!(entry(&again, "kubectl", "Apply"), Some(mine));

    // another manager takes the replicas; applying the manifest's 1 conflicts with it
    success(&c.kubectl(&[
        "patch",
        "deployment",
        "nginx-deployment",
        "--field-manager=ops",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]));
    let scaled = get(&c, &["deployment", "nginx-deployment"]);
    assert_eq!(
        entry(&scaled, "ops", "Update").map(|e| &e["fieldsV1"]),
        Some(&json!({"f:spec": {"f:replicas": {}}}))
    );
    let refused = failure(&applied(&[], &seed));
    assert!(
        refused.contains(
            r#"Apply failed with 1 conflict: conflict with "ops" using apps/v1: .spec.replicas"#
        ),
        "{refused}"
    );
    assert_eq!(
        get(&c, &["deployment", "nginx-deployment"])["spec"]["replicas"],
        3
    );

    // forced: the manifest's value, and ops no longer owns it
    success(&applied(&["--force-conflicts"], &seed));
    let forced = get(&c, &["deployment", "nginx-deployment"]);
    assert_eq!(forced["spec"]["replicas"], 1);
    assert!(
        entry(&forced, "ops", "Update").is_none(),
        "{:#}",
        forced["metadata"]["managedFields"]
    );

    // what the applier stops applying goes: a label and the container's port
    let dir = tempfile::tempdir().expect("a temporary directory");
    let text = std::fs::read_to_string(&seed).expect("the seed manifest");
    let trimmed = text
        .replacen("  labels:\n    app: nginx\n", "", 1)
        .replace("        ports:\n        - containerPort: 80\n", "");
    assert_ne!(
        trimmed, text,
        "the seed manifest has the label and port this test drops"
    );
    let file = write_file(dir.path(), "trimmed.yaml", &trimmed);
    success(&applied(&[], &file));
    let after = get(&c, &["deployment", "nginx-deployment"]);
    assert!(
        after["metadata"].get("labels").is_none(),
        "{:#}",
        after["metadata"]
    );
    let container = &after["spec"]["template"]["spec"]["containers"][0];
    assert!(container.get("ports").is_none(), "{container:#}");
    assert_eq!(
        container["image"],
        first["spec"]["template"]["spec"]["containers"][0]["image"]
    );
}

#[test]
fn client_side_and_server_side_apply_meet_as_kubernetes_has_them() {
    let c = api_only();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cm = |value: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: {value}\n  level: \"3\"\n")
    };
    let file = write_file(dir.path(), "cm.yaml", &cm("fast"));
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &file])).trim(),
        "configmap/settings created"
    );
    let created = get(&c, &["configmap", "settings"]);
    let csa =
        entry(&created, "kubectl-client-side-apply", "Update").expect("client-side apply's entry");
    assert_eq!(
        csa["fieldsV1"]["f:data"],
        json!({".": {}, "f:level": {}, "f:mode": {}})
    );

    // the same values applied server-side: no conflict, nothing written
    success(&c.kubectl(&["apply", "--server-side", "-f", &file]));
    let shared = get(&c, &["configmap", "settings"]);
    assert!(
        entry(&shared, "kubectl", "Apply").is_some(),
        "{:#}",
        shared["metadata"]
    );
    assert_eq!(shared["data"], created["data"]);

    // a different value under the other manager's ownership is a conflict, unless kubectl
    // moved the client-side apply fields to its own manager (as kubectl 1.32 does)
    let changed = write_file(dir.path(), "cm2.yaml", &cm("slow"));
    let out = c.kubectl(&["apply", "--server-side", "-f", &changed]);
    let still_csa = entry(&shared, "kubectl-client-side-apply", "Update").is_some();
    if still_csa {
        let refused = failure(&out);
        assert!(
            refused.contains(r#"conflict with "kubectl-client-side-apply" using v1: .data.mode"#),
            "{refused}"
        );
    } else {
        success(&out);
        assert_eq!(get(&c, &["configmap", "settings"])["data"]["mode"], "slow");
    }

    // an unchanged re-apply writes nothing: the resourceVersion stays
    success(&c.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &changed,
    ]));
    let before = get(&c, &["configmap", "settings"]);
    success(&c.kubectl(&["apply", "--server-side", "-f", &changed]));
    let after = get(&c, &["configmap", "settings"]);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(after["data"]["mode"], "slow");

    // client-side apply keeps working on the object
    let third = write_file(dir.path(), "cm3.yaml", &cm("medium"));
    success(&c.kubectl(&["apply", "-f", &third]));
    assert_eq!(
        get(&c, &["configmap", "settings"])["data"]["mode"],
        "medium"
    );
}

#[test]
fn the_api_checks_apply_requests_and_reports_conflicts_with_causes() {
    let c = api_only();
    let api = c.server.credentials();
    let path = "/api/v1/namespaces/default/configmaps/one";
    let body =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"one"},"data":{"a":"1"}}"#;
    let send = |query: &str, ct: &str, body: &str| {
        let raw = api
            .exchange(
                "PATCH",
                &format!("{path}{query}"),
                &[("Content-Type", ct)],
                body.as_bytes(),
            )
            .expect("an answer");
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let json_line = rest
            .lines()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or("{}");
        (
            code,
            serde_json::from_str::<Value>(json_line.trim()).unwrap_or(Value::Null),
        )
    };
    let yaml = "application/apply-patch+yaml";
    let (code, status) = send("", yaml, body);
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    // created by the apply (201), in YAML as well as JSON
    let (code, created) = send(
        "?fieldManager=first",
        yaml,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\ndata:\n  a: \"1\"\n",
    );
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["managedFields"][0]["manager"], "first");

    let (code, status) = send(
        "?fieldManager=second",
        yaml,
        &body.replace("\"1\"", "\"2\""),
    );
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"first\"", "field": ".data.a"}])
    );
    let (code, forced) = send(
        "?fieldManager=second&force=true",
        yaml,
        &body.replace("\"1\"", "\"2\""),
    );
    assert_eq!((code, &forced["data"]["a"]), (200, &json!("2")), "{forced}");

    let (code, status) = send(
        "?fieldManager=x&force=true",
        "application/merge-patch+json",
        r#"{"data":{"b":"1"}}"#,
    );
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("force: Forbidden"),
        "{status}"
    );
    let with_fields = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"one","managedFields":[{"manager":"x"}]}}"#;
    let (code, status) = send("?fieldManager=x", yaml, with_fields);
    assert_eq!(code, 422, "{status}");
    let (code, status) = send("?fieldManager=x", yaml, r#"{"metadata":{"name":"one"}}"#);
    assert_eq!(code, 400, "{status}");
    let (code, status) = send("?fieldManager=x", yaml, &body.replace("\"one\"", "\"two\""));
    assert_eq!(code, 400, "{status}");
    let long = "m".repeat(129);
    let (code, status) = send(&format!("?fieldManager={long}"), yaml, body);
    assert_eq!(code, 422, "{status}");
    // the updates of other clients are theirs, named after their User-Agent (none: unknown)
    let mut put = forced.clone();
    put["data"]["b"] = json!("x");
    let (code, _) = c
        .server
        .request("PUT", path, Some(&put.to_string()))
        .expect("an answer");
    assert_eq!(code, 200);
    let stored = get(&c, &["configmap", "one"]);
    let managers: Vec<(&str, &str)> = stored["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or(""),
                e["operation"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(managers, [("second", "Apply"), ("unknown", "Update")]);
    let fields = |i: usize| &stored["metadata"]["managedFields"][i]["fieldsV1"];
    assert_eq!(
        (fields(0), fields(1)),
        (
            &json!({"f:data": {"f:a": {}}}),
            &json!({"f:data": {"f:b": {}}})
        )
    );
    // an update of a field an applier owns takes it (no conflict for updates)
    put["data"]["a"] = json!("4");
    put["metadata"] = stored["metadata"].clone();
    let (code, _) = c
        .server
        .request("PUT", path, Some(&put.to_string()))
        .expect("an answer");
    assert_eq!(code, 200);
    let taken = get(&c, &["configmap", "one"]);
    assert!(
        entry(&taken, "second", "Apply").is_none(),
        "{:#}",
        taken["metadata"]
    );
    // the in-process controllers write as kube-controller-manager, as in Kubernetes (the root
    // CA publisher writes `kube-root-ca.crt` soon after the server starts; the default
    // ServiceAccount holds no field beyond its name, so it has no managedFields entry, as there)
    eventually(
        "kube-root-ca.crt written by kube-controller-manager",
        Duration::from_secs(60),
        || {
            let out = c.kubectl(&[
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-o",
                "json",
                "--show-managed-fields",
            ]);
            let published: Value = ok_or_stderr(out)
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
            match entry(&published, "kube-controller-manager", "Update") {
                Some(e) if e["fieldsV1"]["f:data"].get("f:ca.crt").is_some() => Ok(()),
                _ => Err(format!("{:#}", published["metadata"])),
            }
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_applies_and_bpfk_applies_server_side() {
    let c = api_only();
    let client = c.client().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "from-rust"}, "data": {"k": "v"},
    }))
    .expect("a ConfigMap");
    let params = PatchParams::apply("rust-controller");
    let stored = configmaps
        .patch("from-rust", &params, &Patch::Apply(&cm))
        .await
        .expect("applied");
    let fields = stored.metadata.managed_fields.expect("managed fields");
    assert_eq!(fields[0].manager.as_deref(), Some("rust-controller"));
    assert_eq!(fields[0].operation.as_deref(), Some("Apply"));
    let again = configmaps
        .patch("from-rust", &params, &Patch::Apply(&cm))
        .await
        .expect("applied");
    assert_eq!(
        again.metadata.resource_version,
        stored.metadata.resource_version
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let seed = manifest("nginx-deployment.yaml").display().to_string();
    let out = c.bpfk(&["apply", "--server-side", "-f", &seed]);
    assert_eq!(
        success(&out).trim(),
        "deployment.apps/nginx-deployment serverside-applied"
    );
    let deployment = get(&c, &["deployment", "nginx-deployment"]);
    assert!(
        entry(&deployment, "bpfk", "Apply").is_some(),
        "{:#}",
        deployment["metadata"]
    );
    success(&c.kubectl(&["scale", "deployment", "nginx-deployment", "--replicas=2"]));
    let refused = failure(&c.bpfk(&["apply", "--server-side", "-f", &seed]));
    assert!(
        refused.contains("Apply failed with 1 conflict: conflict with \"kubectl"),
        "{refused}"
    );
    assert!(refused.contains("--force-conflicts"), "{refused}");
    success(&c.bpfk(&["apply", "--server-side", "--force-conflicts", "-f", &seed]));
    assert_eq!(
        get(&c, &["deployment", "nginx-deployment"])["spec"]["replicas"],
        1
    );
    let usage = failure(&c.bpfk(&["apply", "--force-conflicts", "-f", &seed]));
    assert!(usage.contains("--server-side"), "{usage}");
    drop(dir);
}

/// An apply to `/scale` (what autoscalers send) owns the replica count as its own manager's,
/// through the `scale` subresource: another owner of the count is a conflict until forced.
#[tokio::test(flavor = "multi_thread")]
async fn an_apply_to_scale_owns_the_replica_count() {
    use k8s_openapi::api::apps::v1::Deployment;
    let c = api_only();
    let deployments: Api<Deployment> = Api::namespaced(c.client().await, "default");
    let seed = manifest("nginx-deployment.yaml").display().to_string();
    success(&c.kubectl(&["apply", "--server-side", "-f", &seed]));
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                       "metadata": {"name": "nginx-deployment"}, "spec": {"replicas": 4}});
    let params = PatchParams::apply("autoscaler");
    let refused = deployments
        .patch_scale("nginx-deployment", &params, &Patch::Apply(&scale))
        .await
        .expect_err("kubectl owns the replica count");
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409, "{status:?}");
            assert!(
                status.message.contains("conflict with \"kubectl\"")
                    && status.message.contains(".spec.replicas"),
                "{}",
                status.message
            );
        }
        other => panic!("not a conflict: {other}"),
    }
    let forced = deployments
        .patch_scale(
            "nginx-deployment",
            &params.clone().force(),
            &Patch::Apply(&scale),
        )
        .await
        .expect("a forced apply to scale");
    assert_eq!(forced.spec.and_then(|s| s.replicas), Some(4));

    let deployment = get(&c, &["deployment", "nginx-deployment"]);
    assert_eq!(deployment["spec"]["replicas"], 4);
    let autoscaler = entry(&deployment, "autoscaler", "Apply").expect("the autoscaler's entry");
    assert_eq!(autoscaler["subresource"], "scale", "{autoscaler:#}");
    assert_eq!(
        autoscaler["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    let kubectl = entry(&deployment, "kubectl", "Apply").expect("kubectl's entry");
    assert!(
        kubectl["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "{kubectl:#}"
    );
    let reapplied = failure(&c.kubectl(&["apply", "--server-side", "-f", &seed]));
    assert!(
        reapplied.contains("conflict with \"autoscaler\""),
        "{reapplied}"
    );

    let not_a_scale = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "nginx-deployment"}, "spec": {"replicas": 1}});
    let wrong = deployments
        .patch_scale("nginx-deployment", &params, &Patch::Apply(&not_a_scale))
        .await
        .expect_err("not a Scale");
    assert!(
        matches!(&wrong, kube::Error::Api(s) if s.code == 400 && s.message.contains("autoscaling/v1 Scale")),
        "{wrong}"
    );
    let mut absent = scale.clone();
    absent["metadata"]["name"] = json!("absent");
    let missing = deployments
        .patch_scale("absent", &params, &Patch::Apply(&absent))
        .await
        .expect_err("no such deployment");
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.code == 404),
        "{missing}"
    );
}
