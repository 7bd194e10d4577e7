//! The real kubectl (v1.32) against bpfk-server: apply, get, describe, scale, delete of the
//! design notes' manifests, and the errors a user sees.

use bpfk_lab::server::{failure, manifest, success, Cluster, Streaming};

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
    assert_eq!(image, "registry.bpfk.lab:5000/library/nginx:1.14.2");
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
    assert_eq!(image, "registry.bpfk.lab:5000/library/nginx:1.16.1");
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
    // without controllers: the checks below expect nothing but what kubectl stored
    let c = Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"]);
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

    // a value of the wrong type: 400 naming the field, on create and on a re-apply (patch)
    let typed = std::fs::read_to_string(manifest("nginx-deployment.yaml"))
        .unwrap()
        .replace("replicas: 1", "replicas: three");
    assert!(typed.contains("replicas: three"));
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], &typed));
    assert!(
        err.contains("BadRequest") && err.contains("\"spec.replicas\""),
        "{err}"
    );
    // a re-apply of an existing object with a typo'd field goes through kubectl's patch
    // computation (compiled-in types: no PATCH of /openapi offers strategic merge patch) and
    // still meets the strict error
    let deploy = path("nginx-deployment.yaml");
    success(&c.kubectl(&["apply", "-f", &deploy]));
    let typo_field = std::fs::read_to_string(manifest("nginx-deployment.yaml"))
        .unwrap()
        .replace(
            "containerPort: 80",
            "containerPort: 80\n          protocl: TCP",
        );
    assert!(typo_field.contains("protocl"));
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], &typo_field));
    assert!(
        err.contains("unknown field \"spec.template.spec.containers[0].ports[0].protocl\""),
        "{err}"
    );
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], &typed));
    assert!(err.contains("\"spec.replicas\""), "{err}");
    success(&c.kubectl(&["delete", "-f", &deploy, "--cascade=orphan"]));

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
    // replace -f with the manifest (no clusterIP, no nodePort) keeps what was allocated
    let allocated = |c: &Cluster| {
        success(&c.kubectl(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.clusterIPs[0]} {.spec.ports[0].nodePort}",
        ]))
    };
    let before = allocated(&c);
    assert_eq!(
        success(&c.kubectl_stdin(&["replace", "-f", "-"], svc)).trim(),
        "service/web replaced"
    );
    assert_eq!(allocated(&c), before);
    // apply with type ClusterIP: configured, the NodePort is gone
    let cluster_ip = svc.replace("type: NodePort", "type: ClusterIP");
    assert_eq!(
        success(&c.kubectl_stdin(&["apply", "-f", "-"], &cluster_ip)).trim(),
        "service/web configured"
    );
    let out = success(&c.kubectl(&["get", "svc", "web"]));
    assert!(
        out.contains("ClusterIP") && out.contains(" 80/TCP"),
        "{out}"
    );
    assert!(
        before.starts_with(&allocated(&c).trim().to_string()),
        "{before}"
    );

    // (typed `kubectl create namespace` and its protobuf: tests/tests/kubectl_protobuf.rs)
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

    // deleting a namespace: Terminating, new content refused with Kubernetes' message, and
    // gone once the namespace controller has emptied it
    let in_ns = |name: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: team-a\nspec:\n  containers:\n  - name: c\n    image: busybox\n")
    };
    success(&c.kubectl_stdin(&["apply", "-f", "-"], &in_ns("a")));
    // an unbound pod of a deployment-less namespace is deleted at once, so the namespace
    // controller can finish; hold it with a finalizer to see Terminating first
    success(&c.kubectl(&[
        "patch",
        "pod",
        "a",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["bpfk.test/hold"]}}"#,
    ]));
    assert_eq!(
        success(&c.kubectl(&["delete", "namespace", "team-a", "--wait=false"])).trim(),
        "namespace \"team-a\" deleted"
    );
    let out = success(&c.kubectl(&["get", "ns", "team-a"]));
    assert!(out.contains("Terminating"), "{out}");
    let err = failure(&c.kubectl_stdin(&["apply", "-f", "-"], &in_ns("b")));
    assert!(
        err.contains("Error from server (Forbidden)")
            && err.contains("pods \"b\" is forbidden: unable to create new content in namespace team-a because it is being terminated"),
        "{err}"
    );
    success(&c.kubectl(&[
        "patch",
        "pod",
        "a",
        "-n",
        "team-a",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]));
    eventually(
        || {
            let out = c.kubectl(&["get", "ns", "team-a"]);
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
        },
        "namespace team-a to disappear",
    );
}

/// Poll `cond` (every 200 ms, up to 60 s) until it holds.
fn eventually(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// Names of the objects of `kinds` (kubectl `-o name`).
fn names(c: &Cluster, kinds: &str) -> Vec<String> {
    success(&c.kubectl(&["get", kinds, "-o", "name"]))
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn kubectl_get_modes_watch_and_cascading_deletes() {
    // with the in-process controllers and scheduler: a Deployment gets its ReplicaSet and
    // Pods (Pending: there are no nodes)
    let c = Cluster::start();
    let deploy = path("nginx-deployment.yaml");
    success(&c.kubectl(&["apply", "-f", &deploy]));
    eventually(
        || names(&c, "pods").len() == 1 && names(&c, "rs").len() == 1,
        "the deployment's replicaset and pod",
    );
    let rs = names(&c, "rs").remove(0);

    // get -w prints the header once and a row per event as it arrives
    let watch = Streaming::start(&c, &["get", "pods", "-w"]);
    eventually(|| watch.lines().len() >= 2, "kubectl get -w to list");
    assert_eq!(
        success(&c.kubectl(&["scale", "deployment", "nginx-deployment", "--replicas=4"])).trim(),
        "deployment.apps/nginx-deployment scaled"
    );
    eventually(
        || {
            watch
                .lines()
                .iter()
                .filter(|l| l.starts_with("nginx-deployment-"))
                .count()
                >= 4
        },
        "watch rows for the new pods",
    );
    let lines = watch.lines();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "{lines:?}"
    );
    assert!(
        lines.iter().skip(1).all(|l| l.contains("Pending")),
        "{lines:?}"
    );
    drop(watch);

    // paging, selectors, output formats
    eventually(|| names(&c, "pods").len() == 4, "four pods");
    let paged = success(&c.kubectl(&["get", "pods", "--chunk-size=2", "-o", "name"]));
    assert_eq!(paged.lines().count(), 4, "{paged}");
    let paged_table = success(&c.kubectl(&["get", "pods", "--chunk-size=3"]));
    assert_eq!(paged_table.lines().count(), 5, "{paged_table}");
    assert_eq!(
        success(&c.kubectl(&["get", "pods", "-A", "-l", "app=nginx", "-o", "name"]))
            .lines()
            .count(),
        4
    );
    assert!(
        success(&c.kubectl(&["get", "pods", "-l", "app=other", "-o", "name"]))
            .trim()
            .is_empty()
    );
    assert_eq!(
        success(&c.kubectl(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Pending,spec.nodeName=",
            "-o",
            "name"
        ]))
        .lines()
        .count(),
        4
    );
    let json = success(&c.kubectl(&["get", "deploy", "-o", "json"]));
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["spec"]["replicas"], 4);
    let events = success(&c.kubectl(&["get", "events"]));
    assert!(events.contains("FailedScheduling"), "{events}");
    let describe = success(&c.kubectl(&["describe", "rs"]));
    assert!(
        describe.contains("Controlled By:  Deployment/nginx-deployment"),
        "{describe}"
    );

    // rollout status and wait: pods never become available without nodes
    let err = failure(&c.kubectl(&[
        "rollout",
        "status",
        "deployment/nginx-deployment",
        "--timeout=2s",
    ]));
    assert!(err.contains("timed out waiting for the condition"), "{err}");
    assert_eq!(
        success(&c.kubectl(&[
            "wait",
            "--for=condition=Progressing",
            "deployment/nginx-deployment",
            "--timeout=30s"
        ]))
        .trim(),
        "deployment.apps/nginx-deployment condition met"
    );
    let resources = success(&c.kubectl(&["api-resources"]));
    assert!(
        resources
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["deployments", "deploy", "apps/v1", "true", "Deployment"]),
        "{resources}"
    );
    let versions = success(&c.kubectl(&["api-versions"]));
    assert!(versions.lines().any(|l| l == "apps/v1"), "{versions}");

    // --cascade=orphan: the deployment goes, its replicaset stays without an owner
    assert_eq!(
        success(&c.kubectl(&[
            "delete",
            "deployment",
            "nginx-deployment",
            "--cascade=orphan"
        ]))
        .trim(),
        "deployment.apps \"nginx-deployment\" deleted"
    );
    let owners = success(&c.kubectl(&["get", &rs, "-o", "jsonpath={.metadata.ownerReferences}"]));
    assert!(owners.trim().is_empty(), "{owners}");
    assert_eq!(names(&c, "pods").len(), 4);
    // applied again, the deployment adopts it
    success(&c.kubectl(&["apply", "-f", &deploy]));
    eventually(
        || {
            success(&c.kubectl(&[
                "get",
                &rs,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].kind}",
            ])) == "Deployment"
        },
        "the deployment to adopt its replicaset",
    );

    // --cascade=foreground: the garbage collector deletes the dependents, then the owner
    assert_eq!(
        success(&c.kubectl(&[
            "delete",
            "deployment",
            "nginx-deployment",
            "--cascade=foreground",
            "--wait=false"
        ]))
        .trim(),
        "deployment.apps \"nginx-deployment\" deleted"
    );
    eventually(
        || names(&c, "deployments,replicasets,pods").is_empty(),
        "the foreground deletion to remove everything",
    );
}
