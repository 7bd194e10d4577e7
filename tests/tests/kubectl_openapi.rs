//! The OpenAPI documents against the real kubectl (its version picked for the server's,
//! v1.33): `kubectl explain` walks nested fields of every served kind, field validation names
//! nested typos, and `kind: List` manifests (what `kubectl get -o yaml` prints) apply with
//! validation on, their items checked against `/openapi/v2`.

use bpfk_apimachinery::registry;
use bpfk_lab::server::{failure, success, Cluster};
use serde_json::Value;

fn explain(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["explain"];
    all.extend(args);
    success(&c.kubectl(&all))
}

/// Whether `text` has a field line `name <type>` (as explain prints fields, at any depth).
fn has_field(text: &str, name: &str, ty: &str) -> bool {
    text.lines().any(|l| {
        let mut parts = l.trim_start().split('\t');
        parts.next() == Some(name) && parts.next().is_some_and(|t| t.starts_with(ty))
    })
}

#[test]
fn explain_walks_nested_fields() {
    let c = Cluster::start();
    let containers = explain(&c, &["pod.spec.containers"]);
    assert!(
        containers.contains("FIELD: containers <[]Container>"),
        "{containers}"
    );
    assert!(has_field(&containers, "image", "<string>"), "{containers}");
    assert!(
        has_field(&containers, "ports", "<[]ContainerPort>"),
        "{containers}"
    );
    assert!(
        containers.contains("A single application container"),
        "{containers}"
    );

    let ports = explain(&c, &["deployment.spec.template.spec.containers.ports"]);
    assert!(ports.contains("GROUP:      apps"), "{ports}");
    assert!(
        has_field(&ports, "containerPort", "<integer> -required-"),
        "{ports}"
    );
    assert!(has_field(&ports, "protocol", "<string>"), "{ports}");

    let spec = explain(&c, &["svc.spec", "--recursive"]);
    assert!(has_field(&spec, "ports", "<[]ServicePort>"), "{spec}");
    // the ports' own fields, one level further in
    assert!(spec.contains("\n    targetPort\t<IntOrString>"), "{spec}");
    assert!(
        has_field(&spec, "sessionAffinityConfig", "<SessionAffinityConfig>"),
        "{spec}"
    );

    let err = failure(&c.kubectl(&["explain", "pod.spec.containers.imagee"]));
    assert!(err.contains("field \"imagee\" does not exist"), "{err}");
}

#[test]
fn explain_knows_every_served_kind() {
    let c = Cluster::start();
    for res in registry::resources() {
        // a group in the resource's name would be read as a field path
        let out = explain(&c, &[res.plural, "--api-version", &res.api_version()]);
        assert!(
            out.contains(&format!("KIND:       {}\n", res.kind)),
            "{res:?}: {out}"
        );
        assert!(
            out.contains(&format!("VERSION:    {}\n", res.version)),
            "{res:?}: {out}"
        );
        if !res.group.is_empty() {
            assert!(
                out.contains(&format!("GROUP:      {}\n", res.group)),
                "{out}"
            );
        }
        assert!(
            has_field(&out, "metadata", "<ObjectMeta>"),
            "{res:?}: {out}"
        );
    }
}

#[test]
fn strict_validation_names_a_nested_typo() {
    let c = Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagee: x\n";
    let err = failure(&c.kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], pod));
    assert!(
        err.contains("unknown field \"spec.containers[0].imagee\""),
        "{err}"
    );
    // the same manifest without the typo is fine
    let fixed = pod.replace("    imagee: x\n", "");
    let out = success(&c.kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], &fixed));
    assert_eq!(out.trim(), "pod/typo created");
}

#[test]
fn a_list_printed_by_get_applies_with_validation_on() {
    let c = Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"]);
    success(&c.kubectl(&["create", "namespace", "lists"]));
    let n = ["-n", "lists"];
    let create = |args: &[&str]| success(&c.kubectl(&[args, &n].concat()));
    create(&["create", "deployment", "web", "--image=busybox:1.36"]);
    create(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let list = create(&["get", "deploy,svc", "-o", "yaml"]);
    assert!(list.starts_with("apiVersion: v1\nitems:\n"), "{list}");
    assert!(list.contains("\nkind: List\n"), "{list}");

    // the same objects with one more label each: both are patched
    let labelled = list.replace(
        "      app: web\n    name: web\n",
        "      app: web\n      tier: front\n    name: web\n",
    );
    assert_eq!(labelled.matches("tier: front").count(), 2, "{labelled}");
    let out = success(&c.kubectl_stdin(&[&["apply", "-f", "-"][..], &n].concat(), &labelled));
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web configured"), "{out}");
    for kind in ["deployment/web", "service/web"] {
        let labels = create(&["get", kind, "-o", "jsonpath={.metadata.labels.tier}"]);
        assert_eq!(labels, "front", "{kind}");
    }

    // a typo in an item is refused before anything is applied, naming the field
    let typo = labelled
        .replace(
            "image: busybox:1.36\n",
            "image: busybox:1.37\n          imagee: x\n",
        )
        .replace("tier: front", "tier: back");
    assert!(typo.contains("imagee"), "{typo}");
    let err = failure(&c.kubectl_stdin(&[&["apply", "-f", "-"][..], &n].concat(), &typo));
    assert!(err.contains("unknown field \"imagee\""), "{err}");
    assert!(
        err.contains("Deployment.spec.template.spec.containers[0]"),
        "{err}"
    );
    let image = create(&[
        "get",
        "deployment/web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox:1.36");
    let tier = create(&[
        "get",
        "service/web",
        "-o",
        "jsonpath={.metadata.labels.tier}",
    ]);
    assert_eq!(tier, "front");
}

#[test]
fn the_index_links_documents_that_are_served() {
    let c = Cluster::start();
    let get = |path: &str| -> Value {
        let (code, body) = c.server.request("GET", path, None).expect("request");
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let index = get("/openapi/v3");
    let paths = index["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), registry::group_versions().len());
    for (gv, entry) in paths {
        let url = entry["serverRelativeURL"].as_str().expect("a URL");
        assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
        let doc = get(url);
        assert_eq!(doc["openapi"], "3.0.0", "{url}");
        assert!(doc["components"]["schemas"]
            .as_object()
            .is_some_and(|s| !s.is_empty()));
        assert_eq!(get(url), doc, "{url} is served the same each time");
    }
    let swagger = get("/openapi/v2");
    assert_eq!(swagger["swagger"], "2.0");
    assert!(swagger["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
}
