//! ServiceAccounts against a real bpfk-server (real etcd) and the real kubectl: the
//! `default` account and the `kube-root-ca.crt` ConfigMap in every namespace (made again
//! when deleted), `kubectl create token` (the TokenRequest subresource) and what the server
//! accepts of its tokens (audience, lifetime, the pod or Secret they are bound to), the
//! ServiceAccount admission of pods (the default account, the projected token volume, a
//! missing account refused), legacy token Secrets filled and removed with their account,
//! RBAC for accounts, and the `kubernetes` Service and its endpoints.

use std::time::Duration;

use base64::Engine;
use bpfk_lab::server::{failure, ok_or_stderr, success, Cluster};
use serde_json::{json, Value};

/// Retries `check` for up to 15 s (controllers and the authorizer act through watches).
fn eventually_within(what: &str, check: impl FnMut() -> Result<(), String>) {
    bpfk_lab::server::eventually(what, Duration::from_secs(15), check)
}

/// The status of a TokenReview of `token` for `audiences` (the API server's when empty).
fn review(c: &Cluster, token: &str, audiences: &[&str]) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": token, "audiences": audiences}});
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    let (code, answer) = c
        .server
        .request("POST", path, Some(&body.to_string()))
        .unwrap();
    assert_eq!(code, 201, "{answer}");
    serde_json::from_str::<Value>(&answer).unwrap()["status"].clone()
}

fn get_json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&success(&c.kubectl(&all))).unwrap()
}

fn create_token(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    success(&c.kubectl(&all)).trim().to_string()
}

const NAMESPACE_AND_BINDING: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
"#;

const VIEW_BINDING: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: default-views, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: ServiceAccount, name: default, namespace: team}
"#;

fn pod_manifest(name: &str, spec_extra: Value) -> String {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox:1.36"}]});
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "team"}, "spec": spec})
    .to_string()
}

/// Each namespace gets its `default` account and the cluster CA; both come back.
fn check_default_account_and_root_ca(c: &Cluster) {
    let ca = c.server.credentials().ca_pem;
    let seen = |c: &Cluster| -> Result<String, String> {
        let sa = ok_or_stderr(c.kubectl(&["get", "sa", "default", "-n", "team", "-o", "json"]))?;
        let path = r"jsonpath={.data.ca\.crt}";
        let cm =
            ok_or_stderr(c.kubectl(&["get", "cm", "kube-root-ca.crt", "-n", "team", "-o", path]))?;
        if cm.trim() != ca.trim() {
            return Err(format!("kube-root-ca.crt holds {cm:?}"));
        }
        let sa: Value = serde_json::from_str(&sa).map_err(|e| e.to_string())?;
        Ok(sa["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let mut first_uid = String::new();
    eventually_within("the default account and the root CA in team", || {
        first_uid = seen(c)?;
        Ok(())
    });
    success(&c.kubectl(&["delete", "sa", "default", "-n", "team"]));
    success(&c.kubectl(&["delete", "cm", "kube-root-ca.crt", "-n", "team"]));
    eventually_within("both made again", || {
        let uid = seen(c)?;
        (uid != first_uid)
            .then_some(())
            .ok_or(format!("uid {uid} unchanged"))
    });
}

/// `kubectl create token`: who the token is, its audience, its lifetime, its RBAC.
fn check_requested_tokens(c: &Cluster) {
    let token = create_token(c, &["default", "-n", "team"]);
    let status = review(c, &token, &[]);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:team:default"
    );
    let groups = status["user"]["groups"].to_string();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    ] {
        assert!(groups.contains(&format!("\"{g}\"")), "{groups}");
    }
    let bearer = c.server.credentials().with_token(&token);
    let pods = "/api/v1/namespaces/team/pods";
    let (code, body) = bearer.request("GET", pods, None).unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(
            r#"User \"system:serviceaccount:team:default\" cannot list resource \"pods\""#
        ),
        "{body}"
    );
    success(&c.kubectl_stdin(&["apply", "-f", "-"], VIEW_BINDING));
    eventually_within("the account to read pods once bound to view", || {
        let (code, body) = bearer
            .request("GET", pods, None)
            .map_err(|e| e.to_string())?;
        (code == 200).then_some(()).ok_or(format!("{code} {body}"))
    });
    assert_eq!(
        bearer
            .request("DELETE", &format!("{pods}/x"), None)
            .unwrap()
            .0,
        403
    );

    // another audience: not the API server's
    let vault = create_token(c, &["default", "-n", "team", "--audience", "vault"]);
    let status = review(c, &vault, &[]);
    assert_eq!(status["authenticated"], false, "{status}");
    assert!(status["error"].to_string().contains("audience"), "{status}");
    let status = review(c, &vault, &["vault"]);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], json!(["vault"]));
    let (code, _) = c
        .server
        .credentials()
        .with_token(&vault)
        .request("GET", pods, None)
        .unwrap();
    assert_eq!(
        code, 401,
        "a token for another audience is not the API server's"
    );

    // lifetime: as asked within the bounds, too short refused
    let path = "/api/v1/namespaces/team/serviceaccounts/default/token";
    let asked = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 700}});
    let (code, body) = c
        .server
        .request("POST", path, Some(&asked.to_string()))
        .unwrap();
    assert_eq!(code, 201, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let until = answer["status"]["expirationTimestamp"].as_str().unwrap();
    let until: k8s_openapi::jiff::Timestamp = until.parse().unwrap();
    let left = until
        .duration_since(k8s_openapi::jiff::Timestamp::now())
        .as_secs();
    assert!((690..=700).contains(&left), "expires in {left} s");
    let short = json!({"spec": {"expirationSeconds": 60}, "kind": "TokenRequest",
                       "apiVersion": "authentication.k8s.io/v1"});
    let (code, body) = c
        .server
        .request("POST", path, Some(&short.to_string()))
        .unwrap();
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("expirationSeconds"), "{body}");
    let err = failure(&c.kubectl(&["create", "token", "ghost", "-n", "team"]));
    assert!(
        err.contains(r#"serviceaccounts "ghost" not found"#),
        "{err}"
    );
    assert!(
        !c.server.log().contains(&token),
        "a token reached the server log"
    );
}

/// Pods run as an account that exists, with its token volume unless they opt out.
fn check_pod_admission(c: &Cluster) {
    success(&c.kubectl_stdin(&["apply", "-f", "-"], &pod_manifest("plain", json!({}))));
    let pod = get_json(c, &["pod", "plain", "-n", "team"]);
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let volume = &pod["spec"]["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    assert!(name.starts_with("kube-api-access-"), "{volume}");
    let sources = volume["projected"]["sources"].to_string();
    for part in [
        "serviceAccountToken",
        "kube-root-ca.crt",
        "metadata.namespace",
    ] {
        assert!(sources.contains(part), "{sources}");
    }
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(
        mount["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(mount["readOnly"], true);
    assert_eq!(mount["name"], name);

    let opted_out = pod_manifest("no-token", json!({"automountServiceAccountToken": false}));
    success(&c.kubectl_stdin(&["apply", "-f", "-"], &opted_out));
    let pod = get_json(c, &["pod", "no-token", "-n", "team"]);
    assert!(pod["spec"]["volumes"].is_null(), "{}", pod["spec"]);

    let ghost = pod_manifest("ghostly", json!({"serviceAccountName": "ghost"}));
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], &ghost));
    assert!(
        err.contains(
            r#"error looking up service account team/ghost: serviceaccount "ghost" not found"#
        ),
        "{err}"
    );
}

/// A token bound to a pod works while the pod exists.
fn check_pod_bound_token(c: &Cluster) {
    let token = create_token(
        c,
        &[
            "default",
            "-n",
            "team",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "plain",
        ],
    );
    let status = review(c, &token, &[]);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["plain"])
    );
    let err = failure(&c.kubectl(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "nowhere",
    ]));
    assert!(err.contains("nowhere"), "{err}");
    success(&c.kubectl(&[
        "delete",
        "pod",
        "plain",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ]));
    eventually_within("the token to die with its pod", || {
        let status = review(c, &token, &[]);
        (status["authenticated"] == false)
            .then_some(())
            .ok_or(status.to_string())
    });
}

/// A token Secret gets its token; it goes with its account.
fn check_legacy_token_secret(c: &Cluster) {
    let secret = r#"
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: default-token
  namespace: team
  annotations: {kubernetes.io/service-account.name: default}
"#;
    success(&c.kubectl_stdin(&["apply", "-f", "-"], secret));
    let mut token = String::new();
    eventually_within("the token Secret filled", || {
        let s = get_json(c, &["secret", "default-token", "-n", "team"]);
        let data = &s["data"];
        let (Some(t), Some(_), Some(_)) = (
            data["token"].as_str(),
            data["ca.crt"].as_str(),
            data["namespace"].as_str(),
        ) else {
            return Err(s.to_string());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|e| e.to_string())?;
        token = String::from_utf8(bytes).map_err(|e| e.to_string())?;
        Ok(())
    });
    let status = review(c, &token, &[]);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:team:default"
    );
    success(&c.kubectl(&["delete", "sa", "default", "-n", "team"]));
    eventually_within("the token Secret to go with its account", || {
        let out = c.kubectl(&["get", "secret", "default-token", "-n", "team"]);
        let gone =
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound");
        gone.then_some(()).ok_or("still there".into())
    });
    assert_eq!(review(c, &token, &[])["authenticated"], false);
}

/// An underlay-style address (endpoints may not be loopback).
const ADVERTISED: &str = "10.250.254.1";

#[test]
fn service_accounts_their_tokens_and_pods() {
    let c = Cluster::start();
    success(&c.kubectl_stdin(&["apply", "-f", "-"], NAMESPACE_AND_BINDING));
    check_default_account_and_root_ca(&c);
    check_requested_tokens(&c);
    check_pod_admission(&c);
    check_pod_bound_token(&c);
    check_legacy_token_secret(&c);
}

/// The `kubernetes` Service in `default`: 10.96.0.1:443 (https) to the server's advertised
/// address, with matching Endpoints and EndpointSlice. (The address is only written down:
/// no node runs here and nothing is sent to it.)
#[test]
fn the_kubernetes_service_points_at_the_api_server() {
    let c = Cluster::start_with(&["--advertise-address", ADVERTISED]);
    let port = c.server.port();
    let svc = {
        let mut found = Value::Null;
        eventually_within("the kubernetes Service", || {
            found = serde_json::from_str(&ok_or_stderr(c.kubectl(&[
                "get",
                "svc",
                "kubernetes",
                "-o",
                "json",
            ]))?)
            .map_err(|e| e.to_string())?;
            Ok(())
        });
        found
    };
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["name"], "https");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], port);
    let ep = get_json(&c, &["endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], ADVERTISED);
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], port);
    let slice = get_json(
        &c,
        &[
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
        ],
    );
    assert_eq!(
        slice["items"][0]["endpoints"][0]["addresses"][0],
        ADVERTISED
    );
    assert_eq!(slice["items"][0]["ports"][0]["port"], port);
}
