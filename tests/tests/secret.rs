//! Secrets and ServiceAccounts end to end against real etcd and the real kubectl: `stringData`
//! stored as base64 `data`, the keys a type requires, `immutable`, kubectl's TYPE/DATA and
//! SECRETS columns, and no secret value in an error or the server's log.

use base64::Engine;
use bpfk_lab::server::{failure, success, Cluster};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const MANIFEST: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
type: kubernetes.io/basic-auth
stringData:
  username: admin
  password: s3cr3t-value-never-logged
";

#[test]
fn kubectl_apply_get_and_refusals_of_secrets() {
    let c = Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"]);
    let applied = success(&c.kubectl_stdin(&["apply", "-f", "-"], MANIFEST));
    assert_eq!(applied.trim(), "secret/db-credentials created");
    let again = success(&c.kubectl_stdin(&["apply", "-f", "-"], MANIFEST));
    assert_eq!(again.trim(), "secret/db-credentials configured");

    let table = success(&c.kubectl(&["get", "secrets"]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("db-credentials"))
        .expect("the secret's row")
        .split_whitespace()
        .collect();
    assert_eq!(row[1..3], ["kubernetes.io/basic-auth", "2"], "{table}");

    let password = success(&c.kubectl(&[
        "get",
        "secret",
        "db-credentials",
        "-o",
        "jsonpath={.data.password}",
    ]));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(password.trim())
        .expect("base64 data");
    assert_eq!(decoded, b"s3cr3t-value-never-logged");
    let string_data = success(&c.kubectl(&[
        "get",
        "secret",
        "db-credentials",
        "-o",
        "jsonpath={.stringData}",
    ]));
    assert_eq!(string_data, "", "stringData is write-only");

    let bad = "apiVersion: v1\nkind: Secret\nmetadata: {name: pull}\n\
               type: kubernetes.io/dockerconfigjson\n\
               stringData: {.dockerconfigjson: '{not json hunter2'}\n";
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], bad));
    assert!(
        err.contains("data[.dockerconfigjson]: Invalid value"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the error echoes the secret: {err}"
    );
    let tls = "apiVersion: v1\nkind: Secret\nmetadata: {name: web-tls}\n\
               type: kubernetes.io/tls\nstringData: {tls.crt: x}\n";
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], tls));
    assert!(err.contains("data[tls.key]: Required value"), "{err}");

    let log = c.server.log();
    for value in ["s3cr3t-value-never-logged", "hunter2"] {
        assert!(!log.contains(value), "the server logged a secret value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_secrets_and_service_accounts_through_kube_rs() {
    let c = Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"]);
    let client = c.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let frozen: Secret = serde_json::from_value(json!({
        "metadata": {"name": "frozen"}, "immutable": true, "stringData": {"k": "v"}
    }))
    .unwrap();
    let created = secrets
        .create(&PostParams::default(), &frozen)
        .await
        .unwrap();
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert_eq!(created.data.unwrap()["k"].0, b"v");
    let change = json!({"stringData": {"k": "w"}});
    let err = secrets
        .patch("frozen", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect_err("an immutable secret's data is frozen");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("data: Forbidden"),
        "{}",
        status.message
    );

    let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "builder"}, "automountServiceAccountToken": false,
        "imagePullSecrets": [{"name": "registry"}]
    }))
    .unwrap();
    accounts.create(&PostParams::default(), &sa).await.unwrap();
    let got = accounts.get("builder").await.unwrap();
    assert_eq!(got.automount_service_account_token, Some(false));
    let table = success(&c.kubectl(&["get", "sa", "builder"]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SECRETS", "AGE"]);
}
