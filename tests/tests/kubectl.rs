//! The real kubectl (v1.32) against bpfk-server: apply, get, describe, scale, delete of the
//! design notes' manifests, and the errors a user sees.

use bpfk_tests::server::{failure, manifest, success, Cluster};

fn path(name: &str) -> String {
    manifest(name).to_string_lossy().into_owned()
}

#[test]
fn kubectl_apply_get_describe_scale_delete() {
    let c = Cluster::start();
    let pod = path("nginx-pod.yaml");
    let deploy = path("nginx-deployment.yaml");

    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &pod])).trim(),
        "pod/nginx created"
    );
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment created"
    );
    // re-apply: nothing changes
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &pod])).trim(),
        "pod/nginx unchanged"
    );
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );

    // read back
    let out = success(&c.kubectl(&["get", "pods"]));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("nginx ") && l.contains("0/1") && l.contains("Pending")),
        "{out}"
    );
    let wide = success(&c.kubectl(&["get", "pods", "-o", "wide"]));
    assert!(
        wide.lines().next().unwrap().contains("IP")
            && wide.lines().next().unwrap().contains("NODE"),
        "{wide}"
    );
    let out = success(&c.kubectl(&["get", "deploy"]));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(out.contains("nginx-deployment"), "{out}");
    let image = success(&c.kubectl(&[
        "get",
        "deployment",
        "nginx-deployment",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]));
    assert_eq!(image, "nginx:1.14.2");
    let yaml = success(&c.kubectl(&["get", "pod", "nginx", "-o", "yaml"]));
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{yaml}"
    );
    assert!(yaml.contains("restartPolicy: Always"), "{yaml}");

    // describe
    let out = success(&c.kubectl(&["describe", "pod", "nginx"]));
    assert!(
        out.contains("Name:") && out.contains("nginx:1.14.2") && out.contains("80/TCP"),
        "{out}"
    );
    let out = success(&c.kubectl(&["describe", "deployment", "nginx-deployment"]));
    assert!(
        out.contains("Selector:") && out.contains("app=nginx") && out.contains("RollingUpdate"),
        "{out}"
    );

    // apply a changed manifest: configured, and the change is stored
    let changed = std::fs::read_to_string(manifest("nginx-deployment.yaml"))
        .unwrap()
        .replace("nginx:1.14.2", "nginx:1.16.1");
    assert_eq!(
        success(&c.kubectl_stdin(&["apply", "-f", "-"], &changed)).trim(),
        "deployment.apps/nginx-deployment configured"
    );
    let image = success(&c.kubectl(&[
        "get",
        "deployment",
        "nginx-deployment",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]));
    assert_eq!(image, "nginx:1.16.1");
    assert_eq!(
        success(&c.kubectl_stdin(&["apply", "-f", "-"], &changed)).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );

    // scale
    assert_eq!(
        success(&c.kubectl(&["scale", "deployment", "nginx-deployment", "--replicas", "3"])).trim(),
        "deployment.apps/nginx-deployment scaled"
    );
    let replicas = success(&c.kubectl(&[
        "get",
        "deploy",
        "nginx-deployment",
        "-o",
        "jsonpath={.spec.replicas}",
    ]));
    assert_eq!(replicas, "3");

    // delete
    assert_eq!(
        success(&c.kubectl(&["delete", "-f", &pod])).trim(),
        "pod \"nginx\" deleted"
    );
    assert_eq!(
        success(&c.kubectl(&["delete", "deployment", "nginx-deployment"])).trim(),
        "deployment.apps \"nginx-deployment\" deleted"
    );
    let err = failure(&c.kubectl(&["get", "pod", "nginx"]));
    assert!(
        err.contains("Error from server (NotFound): pods \"nginx\" not found"),
        "{err}"
    );
}

#[test]
fn kubectl_errors_name_the_field() {
    let c = Cluster::start();
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  selector:\n    matchLabels:\n      app: a\n  template:\n    metadata:\n      labels:\n        app: b\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], bad));
    assert!(err.contains("spec.template.metadata.labels"), "{err}");
    assert!(err.contains("is invalid"), "{err}");

    let typo = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagee: x\n";
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], typo));
    assert!(
        err.contains("unknown field \"spec.containers[0].imagee\""),
        "{err}"
    );

    let out = failure(&c.kubectl(&["get", "pods", "-l", "a in (b"]));
    assert!(!out.is_empty());
    // nothing was stored
    let out = success(&c.kubectl(&["get", "pods,deployments", "-o", "name"]));
    assert!(out.trim().is_empty(), "{out}");
}

#[test]
fn kubectl_services_and_namespaces() {
    let c = Cluster::start();
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: nginx\n  ports:\n  - port: 80\n    protocol: TCP\n";
    assert_eq!(
        success(&c.kubectl_stdin(&["apply", "-f", "-"], svc)).trim(),
        "service/web created"
    );
    let out = success(&c.kubectl(&["get", "svc", "web"]));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert!(
        out.contains("NodePort") && out.contains("10.") && out.contains("80:3"),
        "{out}"
    );
    assert_eq!(
        success(&c.kubectl_stdin(&["apply", "-f", "-"], svc)).trim(),
        "service/web unchanged"
    );

    // (typed `kubectl create namespace` sends protobuf, which the server does not speak yet)
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n";
    assert_eq!(
        success(&c.kubectl_stdin(&["apply", "-f", "-"], ns)).trim(),
        "namespace/team-a created"
    );
    let out = success(&c.kubectl(&["get", "ns"]));
    for ns in ["default", "kube-system", "kube-public", "team-a"] {
        assert!(
            out.lines().any(|l| l.starts_with(ns)),
            "{ns} missing: {out}"
        );
    }
    let err = failure(&c.kubectl(&["delete", "namespace", "default"]));
    assert!(err.contains("forbidden"), "{err}");
}
