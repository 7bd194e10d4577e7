//! The `bpfk` CLI against a real bpfk-server (and a real etcd), side by side with the real
//! kubectl: apply / get / describe / scale / delete of the design notes' manifests, client-side
//! apply interop in both directions, watch, and the errors a user sees.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bpfk_lab::server::{binary, failure, free_port, manifest, success, Cluster};
use serde_json::Value;

fn path(name: &str) -> String {
    manifest(name).to_string_lossy().into_owned()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(manifest(name)).expect("manifest")
}

/// Write `content` to a file in `dir` and return its path.
fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, content).expect("write manifest");
    p.to_string_lossy().into_owned()
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&success(&c.bpfk(&all))).expect("bpfk -o json prints JSON")
}

fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn bpfk_apply_get_reapply_configure_scale_describe_delete() {
    let c = Cluster::start();
    let pod = path("nginx-pod.yaml");
    let deploy = path("nginx-deployment.yaml");

    // create
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &pod])).trim(),
        "pod/nginx created"
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment created"
    );

    // re-apply: unchanged, with bpfk and with kubectl
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &pod])).trim(),
        "pod/nginx unchanged"
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &pod])).trim(),
        "pod/nginx unchanged"
    );
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );
    // multi-document stdin
    let both = format!(
        "{}---\n{}",
        read("nginx-pod.yaml"),
        read("nginx-deployment.yaml")
    );
    assert_eq!(
        success(&c.bpfk_stdin(&["apply", "-f", "-"], &both)),
        "pod/nginx unchanged\ndeployment.apps/nginx-deployment unchanged\n"
    );

    // the annotation is what kubectl writes
    let live = json(&c, &["get", "pod", "nginx"]);
    let annotation = live["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("last-applied annotation");
    assert_eq!(
        annotation,
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"name\":\"nginx\",\"namespace\":\"default\"},\"spec\":{\"containers\":[{\"image\":\"nginx:1.14.2\",\"name\":\"nginx\",\"ports\":[{\"containerPort\":80}]}]}}\n"
    );

    // get: server-side Table columns
    let out = success(&c.bpfk(&["get", "pods"]));
    let mut lines = out.lines();
    assert_eq!(
        columns(lines.next().unwrap()),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("nginx ") && l.contains("0/1")),
        "{out}"
    );
    let header = success(&c.bpfk(&["get", "po", "-o", "wide"]));
    let header = columns(header.lines().next().unwrap());
    assert!(
        header.contains(&"IP") && header.contains(&"NODE"),
        "{header:?}"
    );
    let out = success(&c.bpfk(&["get", "deploy", "nginx-deployment"]));
    assert_eq!(
        columns(out.lines().next().unwrap()),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(
        out.lines().nth(1).unwrap().starts_with("nginx-deployment "),
        "{out}"
    );
    let out = success(&c.bpfk(&["get", "pods", "-A"]));
    assert_eq!(columns(out.lines().next().unwrap())[0], "NAMESPACE");
    assert!(
        out.lines()
            .any(|l| columns(l).first() == Some(&"default") && columns(l).get(1) == Some(&"nginx")),
        "{out}"
    );
    assert_eq!(
        success(&c.bpfk(&["get", "pod", "nginx", "-o", "name"])).trim(),
        "pod/nginx"
    );
    let yaml = success(&c.bpfk(&["get", "deployment.apps", "nginx-deployment", "-o", "yaml"]));
    assert!(
        yaml.contains("kind: Deployment")
            && yaml.contains("image: registry.bpfk.lab:5000/library/nginx:1.14.2"),
        "{yaml}"
    );
    let list = json(&c, &["get", "deployments", "-l", "app=nginx"]);
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["metadata"]["name"], "nginx-deployment");
    assert_eq!(list["items"][0]["kind"], "Deployment");
    let none = json(&c, &["get", "deployments", "-l", "app=other"]);
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let by_field = json(
        &c,
        &["get", "pods", "--field-selector", "metadata.name=nginx"],
    );
    assert_eq!(by_field["items"].as_array().unwrap().len(), 1);
    let ns = success(&c.bpfk(&["get", "ns"]));
    assert!(ns.lines().any(|l| l.starts_with("kube-system ")), "{ns}");
    let empty = c.bpfk(&["get", "pods", "-n", "kube-public"]);
    assert!(empty.status.success());
    assert_eq!(
        String::from_utf8_lossy(&empty.stderr).trim(),
        "No resources found in kube-public namespace."
    );

    // change the image: configured, stored; then unchanged with both tools
    let dir = tempfile::tempdir().unwrap();
    let changed = write(
        &dir,
        "deploy.yaml",
        &read("nginx-deployment.yaml").replace("nginx:1.14.2", "nginx:1.16.1"),
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &changed])).trim(),
        "deployment.apps/nginx-deployment configured"
    );
    let live = json(&c, &["get", "deploy", "nginx-deployment"]);
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.bpfk.lab:5000/library/nginx:1.16.1"
    );
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &changed])).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &changed])).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );
    // kubectl reverts it, bpfk agrees nothing is left to do
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment configured"
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );

    // a label added then removed from the manifest is removed from the object
    let labelled = write(
        &dir,
        "labelled.yaml",
        &read("nginx-deployment.yaml").replacen(
            "    app: nginx\n",
            "    app: nginx\n    tier: web\n",
            1,
        ),
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &labelled])).trim(),
        "deployment.apps/nginx-deployment configured"
    );
    assert_eq!(
        json(&c, &["get", "deploy", "nginx-deployment"])["metadata"]["labels"]["tier"],
        "web"
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment configured"
    );
    let labels = json(&c, &["get", "deploy", "nginx-deployment"])["metadata"]["labels"].clone();
    assert_eq!(labels, serde_json::json!({"app": "nginx"}));
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &deploy])).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );

    // scale through the scale subresource
    assert_eq!(
        success(&c.bpfk(&["scale", "deployment", "nginx-deployment", "--replicas", "3"])).trim(),
        "deployment.apps/nginx-deployment scaled"
    );
    assert_eq!(
        json(&c, &["get", "deploy", "nginx-deployment"])["spec"]["replicas"],
        3
    );
    assert_eq!(
        success(&c.bpfk(&["scale", "deploy/nginx-deployment", "--replicas=2"])).trim(),
        "deployment.apps/nginx-deployment scaled"
    );
    assert_eq!(
        json(&c, &["get", "deploy", "nginx-deployment"])["spec"]["replicas"],
        2
    );

    // describe
    let out = success(&c.bpfk(&["describe", "pod", "nginx"]));
    for want in [
        "Name:",
        "nginx",
        "Namespace:",
        "default",
        "Image:",
        "nginx:1.14.2",
        "Port:",
        "80/TCP",
        "Events:",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("last-applied-configuration"), "{out}");
    // an event about the pod shows up in its description (field selector on involvedObject)
    let uid = json(&c, &["get", "pod", "nginx"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let event = write(
        &dir,
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: nginx.cli-test\ninvolvedObject:\n  apiVersion: v1\n  kind: Pod\n  name: nginx\n  namespace: default\n  uid: {uid}\nreason: CliTest\nmessage: hello from the cli test\ntype: Normal\nsource:\n  component: cli-test\nfirstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\ncount: 1\n"
        ),
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &event])).trim(),
        "event/nginx.cli-test created"
    );
    let out = success(&c.bpfk(&["describe", "pod", "nginx"]));
    let line = out
        .lines()
        .find(|l| l.contains("CliTest"))
        .unwrap_or_else(|| panic!("event missing from:\n{out}"));
    assert_eq!(columns(line)[..2], ["Normal", "CliTest"], "{line}");
    assert!(
        line.contains("cli-test") && line.ends_with("hello from the cli test"),
        "{line}"
    );
    let out = success(&c.bpfk(&["describe", "deploy", "nginx-deployment"]));
    assert!(
        !out.contains("CliTest"),
        "another object's event leaked in:\n{out}"
    );
    let out = success(&c.bpfk(&["describe", "deploy", "nginx-deployment"]));
    for want in [
        "Name:",
        "nginx-deployment",
        "Selector:",
        "app=nginx",
        "Replicas:",
        "2 desired",
        "StrategyType:",
        "RollingUpdate",
        "NewReplicaSet:",
        "Pod Template:",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // delete by name and by manifest
    assert_eq!(
        success(&c.bpfk(&["delete", "pod", "nginx"])).trim(),
        "pod \"nginx\" deleted"
    );
    let gone = failure(&c.bpfk(&["get", "pod", "nginx"]));
    assert_eq!(
        gone.trim(),
        "Error from server (NotFound): pods \"nginx\" not found"
    );
    assert_eq!(
        success(&c.bpfk(&["delete", "-f", &deploy, "--cascade=background"])).trim(),
        "deployment.apps \"nginx-deployment\" deleted"
    );
    let gone = failure(&c.bpfk(&["get", "deploy", "nginx-deployment"]));
    assert_eq!(
        gone.trim(),
        "Error from server (NotFound): deployments.apps \"nginx-deployment\" not found"
    );
    let again = failure(&c.bpfk(&["delete", "pod", "nginx"]));
    assert_eq!(
        again.trim(),
        "Error from server (NotFound): pods \"nginx\" not found"
    );
    assert!(c
        .bpfk(&["delete", "pod", "nginx", "--ignore-not-found"])
        .status
        .success());
}

#[test]
fn bpfk_reapplies_what_kubectl_applied_and_handles_dirs_and_services() {
    let c = Cluster::start();
    let pod = path("nginx-pod.yaml");
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &pod])).trim(),
        "pod/nginx created"
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &pod])).trim(),
        "pod/nginx unchanged"
    );

    // a directory: every manifest, in file name order
    let dir = manifest("");
    let out = success(&c.bpfk(&["apply", "-f", dir.to_str().unwrap()]));
    assert_eq!(
        out,
        "deployment.apps/nginx-deployment created\npod/nginx unchanged\nservice/nginx created\n"
    );
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &path("nginx-service.yaml")])).trim(),
        "service/nginx unchanged"
    );

    let out = success(&c.bpfk(&["get", "svc", "nginx"]));
    let header = columns(out.lines().next().unwrap());
    assert_eq!(&header[..3], ["NAME", "TYPE", "CLUSTER-IP"]);
    let row = columns(out.lines().nth(1).unwrap());
    assert_eq!(row[0], "nginx");
    assert_eq!(row[1], "ClusterIP");
    assert!(row[2].starts_with("10."), "{out}");
    // several types in one command
    assert_eq!(
        success(&c.bpfk(&["get", "pod/nginx", "svc/nginx", "-o", "name"])),
        "pod/nginx\nservice/nginx\n"
    );
    let out = success(&c.bpfk(&["get", "po,svc"]));
    assert!(
        out.lines().any(|l| l.starts_with("pod/nginx "))
            && out.lines().any(|l| l.starts_with("service/nginx ")),
        "{out}"
    );
    let out = success(&c.bpfk(&["describe", "service", "nginx"]));
    for want in [
        "Type:",
        "ClusterIP",
        "IP:",
        "Port:",
        "http  80/TCP",
        "TargetPort:",
        "80/TCP",
        "Endpoints:",
        "Selector:",
        "app=nginx",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // the three ways to find the server: KUBECONFIG, ~/.kube/config, --server
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".kube")).unwrap();
    std::fs::copy(c.server.kubeconfig(), home.path().join(".kube/config")).unwrap();
    let via_env = Command::new(binary("bpfk"))
        .env("KUBECONFIG", c.server.kubeconfig())
        .args(["get", "svc", "nginx", "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(success(&via_env), "service/nginx\n");
    let via_home = Command::new(binary("bpfk"))
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .args(["get", "svc", "nginx", "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(success(&via_home), "service/nginx\n");
    let via_flag = Command::new(binary("bpfk"))
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .arg("--server")
        .arg(c.server.url())
        .arg("--certificate-authority")
        .arg(c.server.data_dir().join("pki/ca.crt"))
        .arg("--client-certificate")
        .arg(c.server.data_dir().join("pki/admin.crt"))
        .arg("--client-key")
        .arg(c.server.data_dir().join("pki/admin.key"))
        .args(["get", "svc", "nginx", "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(success(&via_flag), "service/nginx\n");
    let nothing = Command::new(binary("bpfk"))
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .args(["get", "svc"])
        .output()
        .unwrap();
    assert_eq!(nothing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&nothing.stderr).starts_with("error: no API server configured"),
        "{nothing:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    // an object created without apply gets the annotation on first apply, then is unchanged
    let created = write(
        &dir,
        "created.yaml",
        &read("nginx-pod.yaml").replace("name: nginx\n", "name: made\n"),
    );
    success(&c.kubectl(&["create", "-f", &created]));
    let out = c.bpfk(&["apply", "-f", &created]);
    assert_eq!(success(&out).trim(), "pod/made configured");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("Warning: resource pods/made is missing the kubectl.kubernetes.io/last-applied-configuration annotation"),
        "{out:?}"
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &created])).trim(),
        "pod/made unchanged"
    );
    assert_eq!(
        success(&c.kubectl(&["apply", "-f", &created])).trim(),
        "pod/made unchanged"
    );
    // delete by label selector
    success(&c.kubectl(&["label", "pod", "made", "doomed=yes"]));
    assert_eq!(
        success(&c.bpfk(&["delete", "pods", "-l", "doomed=yes"])).trim(),
        "pod \"made\" deleted"
    );
    failure(&c.bpfk(&["get", "pod", "made"]));

    // cluster-scoped resources and -n
    let out = success(&c.bpfk(&["describe", "ns", "kube-system"]));
    assert!(
        out.starts_with("Name:") && out.contains("kube-system"),
        "{out}"
    );
    let ns = write(
        &dir,
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n",
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &ns])).trim(),
        "namespace/team-a created"
    );
    assert_eq!(
        success(&c.bpfk(&["apply", "-n", "team-a", "-f", &pod])).trim(),
        "pod/nginx created"
    );
    let out = success(&c.kubectl(&["get", "pods", "-n", "team-a", "-o", "name"]));
    assert_eq!(out.trim(), "pod/nginx");
    assert_eq!(
        success(&c.kubectl(&["apply", "-n", "team-a", "-f", &pod])).trim(),
        "pod/nginx unchanged"
    );
}

#[test]
fn bpfk_get_watch_prints_new_rows() {
    let c = Cluster::start();
    let mut child = Command::new(binary("bpfk"))
        .arg("--kubeconfig")
        .arg(c.server.kubeconfig())
        .args(["get", "pods", "-w"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bpfk get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the watch a moment to be established, then create the pod. Creating it
    // before the watch starts would also show it (in the initial list), so the
    // assertion below does not depend on this pause.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        success(&c.bpfk(&["apply", "-f", &path("nginx-pod.yaml")])).trim(),
        "pod/nginx created"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.starts_with("nginx ");
                seen.push(line);
                if hit {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    assert!(
        found,
        "bpfk get -w never printed the new pod; output: {seen:?}"
    );
    assert_eq!(columns(&seen[0])[0], "NAME", "{seen:?}");
}

#[test]
fn bpfk_errors_are_one_clear_line() {
    // unreachable server: exit 1, no panic, one line
    let port = free_port();
    let out = Command::new(binary("bpfk"))
        .args([
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "get",
            "pods",
        ])
        .output()
        .expect("run bpfk");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "error: cannot reach the API server at http://127.0.0.1:{port}: connection refused"
        )
    );

    let c = Cluster::start();
    let dir = tempfile::tempdir().unwrap();

    // YAML syntax error: document index and line, nothing stored
    let bad = write(
        &dir,
        "bad.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [broken\n",
            read("nginx-pod.yaml")
        ),
    );
    let out = c.bpfk(&["apply", "-f", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("error: error parsing {bad} (document 2, line ")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    failure(&c.bpfk(&["get", "pod", "nginx"]));

    // missing kind / name
    let nokind = write(
        &dir,
        "nokind.yaml",
        "apiVersion: v1\nmetadata:\n  name: x\n",
    );
    let err = failure(&c.bpfk(&["apply", "-f", &nokind]));
    assert_eq!(
        err.trim(),
        format!("error: error validating {nokind} (document 1): kind not set")
    );
    let noname = write(
        &dir,
        "noname.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {}\n",
    );
    let err = failure(&c.bpfk(&["apply", "-f", &noname]));
    assert_eq!(
        err.trim(),
        format!("error: error validating {noname} (document 1): metadata.name not set")
    );

    // server-side validation: printed like kubectl, nothing stored
    let mismatch = write(
        &dir,
        "mismatch.yaml",
        &read("nginx-deployment.yaml")
            .replace("name: nginx-deployment", "name: bad")
            .replace(
                "      labels:\n        app: nginx\n    spec:",
                "      labels:\n        app: other\n    spec:",
            ),
    );
    let out = c.bpfk(&["apply", "-f", &mismatch]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "The Deployment \"bad\" is invalid: spec.template.metadata.labels: Invalid value: "
        ),
        "{err}"
    );
    let kubectl_err = failure(&c.kubectl(&["apply", "-f", &mismatch]));
    assert_eq!(
        err.trim(),
        kubectl_err.trim(),
        "bpfk and kubectl print the same error"
    );
    failure(&c.bpfk(&["get", "deploy", "bad"]));

    // unknown kind in a manifest, unknown resource type on the command line
    let unknown = write(
        &dir,
        "unknown.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
    );
    let err = failure(&c.bpfk(&["apply", "-f", &unknown]));
    assert!(
        err.contains("no matches for kind \"Widget\" in version \"example.com/v1\""),
        "{err}"
    );
    let out = c.bpfk(&["get", "foo"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: the server doesn't have a resource type \"foo\""
    );

    // bad flags
    let out = c.bpfk(&["get", "pods", "-o", "table"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'table'"));

    // scaling something without a scale subresource
    let err = failure(&c.bpfk(&["scale", "pod", "nginx", "--replicas", "2"]));
    assert!(err.starts_with("error: cannot scale pods"), "{err}");

    // logs of a missing pod: a clear one-line error either way the server answers
    let err = failure(&c.bpfk(&["logs", "nope"]));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Error from server (NotFound): pods \"nope\" not found")
            || err.starts_with("error: the server at "),
        "{err}"
    );
}
