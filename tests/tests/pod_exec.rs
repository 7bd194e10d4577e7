//! `kubectl exec`, `cp`, `attach` and `port-forward` in the lab cluster (`bpfk_lab::cluster`:
//! real etcd, bpfk-server, containerd and `bpfk-agent --kubelet` in a node netns), through
//! the API server, the kubelet's streaming endpoints and containerd's CRI streaming server,
//! with kubectl's default WebSocket protocols (`v5.channel.k8s.io`,
//! `SPDY/3.1+portforward.k8s.io`) and with its SPDY/3.1 fallback
//! (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`, `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`):
//!
//! - exec: stdout and stderr apart, the exit code propagated, stdin to the end of input,
//!   a TTY (kubectl under `script`, so its stdin is a terminal) of kubectl's terminal size
//!   (sent on the resize stream);
//! - cp: a file with every byte value into the pod and back, unchanged;
//! - attach: the output of the container's own process; `attach -i`: kubectl's input
//!   reaches the stdin of a container with `stdin: true`;
//! - port-forward to a pod and to a Service: the stand-in nginx answers on 127.0.0.1;
//! - a missing pod and a completed request are Status errors.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static, kubectl, `script`
//! (bsdutils) and the eBPF object (`cargo xtask build-ebpf`); fails loudly without them.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bpfk_lab::cluster::{http_get, Lab, LabOptions};
use bpfk_lab::host::require_root;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(120);
/// How long one kubectl call may take.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
/// The terminal size `kubectl exec -it` runs in (the resize check).
const TTY_ROWS: u16 = 41;
const TTY_COLS: u16 = 117;

/// kubectl's two transports: its default WebSocket protocols, and SPDY/3.1.
const TRANSPORTS: [(&str, &[(&str, &str)]); 2] = [
    ("websocket", &[]),
    (
        "spdy",
        &[
            ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
            ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
        ],
    ),
];

fn kubectl_command(lab: &Lab, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(lab.kubeconfig()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Run `cmd` with `stdin` as its input, killed (by its pid) after [`KUBECTL_TIMEOUT`].
fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be on PATH (v1.32)");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let killer = std::thread::spawn(move || {
        if done_rx.recv_timeout(KUBECTL_TIMEOUT).is_err() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("waiting for kubectl");
    let _ = done_tx.send(());
    let _ = killer.join();
    let _ = writer.join();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A long-running kubectl (attach, port-forward) whose stdout lines arrive on a channel;
/// killed by its pid when dropped.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Background {
    fn start(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl must be on PATH (v1.32)");
        let stdout = child.stdout.take().expect("stdout");
        Background::adopt(child, stdout)
    }

    /// A started kubectl whose stdout was taken.
    fn adopt(child: Child, stdout: std::process::ChildStdout) -> Background {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background { child, lines }
    }

    /// The first line `pick` accepts, within `within`.
    fn wait_line<T>(&self, within: Duration, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = pick(&line) {
                        return v;
                    }
                    seen.push(line);
                }
                Err(_) => panic!("no expected line within {within:?}; saw {seen:?}"),
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_running(lab: &mut Lab, pods: &Api<Pod>, name: &str) {
    let what = format!("pod {name} running");
    lab.wait_for(&what, DEADLINE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let running = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            });
        running.then_some(()).ok_or(format!("{:?}", pod.status))
    })
    .await
}

fn shell_pod(node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "shell"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "shell", "image": "busybox:1.36",
                "command": ["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done"]
            }]
        }
    }))
    .expect("shell pod")
}

/// A pod with an open stdin: each line read comes back as `got-<line>`.
fn reader_pod(node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "reader"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "reader", "image": "busybox:1.36", "stdin": true,
                "command": ["sh", "-c", "while read -r l; do echo got-$l; done"]
            }]
        }
    }))
    .expect("reader pod")
}

fn web_pod(node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "fwd-web"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "web", "image": "registry.bpfk.lab:5000/library/nginx:1.14.2",
                "ports": [{"name": "http", "containerPort": 80}]
            }]
        }
    }))
    .expect("web pod")
}

fn web_service() -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "fwd-web"},
        "spec": {"selector": {"app": "fwd-web"},
                 "ports": [{"port": 8080, "targetPort": "http"}]}
    }))
    .expect("web service")
}

fn check_exec(lab: &Lab, transport: &str, env: &[(&str, &str)]) {
    let exec = |args: &[&str], stdin: &[u8]| run(kubectl_command(lab, env, args), stdin);
    // stdout and stderr apart, the exit code propagated
    let out = exec(
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{transport}: {out:?}");
    assert_eq!(text(&out.stdout), "out\n", "{transport}: {out:?}");
    assert!(text(&out.stderr).contains("err"), "{transport}: {out:?}");
    let ok = exec(&["exec", "shell", "--", "true"], b"");
    assert!(ok.status.success(), "{transport}: {ok:?}");
    // stdin until its end: cat only finishes when the input is closed
    let out = exec(
        &["exec", "-i", "shell", "--", "sh", "-c", "cat; echo done"],
        b"line one\nline two\n",
    );
    assert!(out.status.success(), "{transport}: {out:?}");
    assert_eq!(
        text(&out.stdout),
        "line one\nline two\ndone\n",
        "{transport}"
    );
    // a TTY: kubectl under script(1) has a terminal for stdin
    let kubeconfig = lab.kubeconfig().display().to_string();
    let line = format!("kubectl --kubeconfig {kubeconfig} exec -it shell -- sh -c 'tty; exit 7'");
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    for (k, v) in env {
        script.env(k, v);
    }
    let out = run(script, b"");
    assert_eq!(out.status.code(), Some(7), "{transport}: {out:?}");
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{transport}: {out:?}"
    );
    check_tty_size(lab, transport, env);
}

/// kubectl sends its terminal's size on the resize stream: the container's TTY has it (a
/// moment after the start: the first size, as every resize, is applied to the running
/// process).
fn check_tty_size(lab: &Lab, transport: &str, env: &[(&str, &str)]) {
    let kubeconfig = lab.kubeconfig().display().to_string();
    let line = format!(
        "stty rows {TTY_ROWS} cols {TTY_COLS}; \
         kubectl --kubeconfig {kubeconfig} exec -it shell -- sh -c 'sleep 1; stty size'"
    );
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    for (k, v) in env {
        script.env(k, v);
    }
    let out = run(script, b"");
    assert!(out.status.success(), "{transport}: {out:?}");
    assert!(
        text(&out.stdout).contains(&format!("{TTY_ROWS} {TTY_COLS}")),
        "{transport}: the container's terminal size: {out:?}"
    );
}

fn check_cp(lab: &Lab, transport: &str, env: &[(&str, &str)], dir: &Path) {
    let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 256) as u8).collect();
    let local = dir.join(format!("up-{transport}.bin"));
    std::fs::write(&local, &data).expect("write local file");
    let remote = format!("default/shell:/tmp/up-{transport}.bin");
    let local_s = local.display().to_string();
    let out = run(kubectl_command(lab, env, &["cp", &local_s, &remote]), b"");
    assert!(out.status.success(), "{transport} cp to the pod: {out:?}");
    let size = run(
        kubectl_command(
            lab,
            env,
            &[
                "exec",
                "shell",
                "--",
                "wc",
                "-c",
                &format!("/tmp/up-{transport}.bin"),
            ],
        ),
        b"",
    );
    assert!(
        text(&size.stdout).starts_with(&data.len().to_string()),
        "{transport}: {size:?}"
    );
    let back = dir.join(format!("down-{transport}.bin"));
    let back_s = back.display().to_string();
    let out = run(kubectl_command(lab, env, &["cp", &remote, &back_s]), b"");
    assert!(out.status.success(), "{transport} cp from the pod: {out:?}");
    let got = std::fs::read(&back).expect("copied back");
    assert!(got == data, "{transport}: the file came back changed");
}

fn check_attach(lab: &Lab, transport: &str, env: &[(&str, &str)]) {
    let attach = Background::start(kubectl_command(lab, env, &["attach", "shell"]));
    let line = attach.wait_line(Duration::from_secs(30), |l| {
        l.starts_with("tick-").then(|| l.to_string())
    });
    assert!(line.starts_with("tick-"), "{transport}: {line}");
}

/// `kubectl attach -i`: a line written to kubectl's stdin reaches the container's stdin
/// (the reader pod echoes it back on its stdout, which attach streams).
fn check_attach_stdin(lab: &Lab, transport: &str, env: &[(&str, &str)]) {
    let mut child = kubectl_command(lab, env, &["attach", "-i", "reader"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kubectl must be on PATH (v1.32)");
    let mut input = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let attach = Background::adopt(child, stdout);
    let word = format!("hello-{transport}");
    input
        .write_all(format!("{word}\n").as_bytes())
        .expect("write to kubectl attach");
    let want = format!("got-{word}");
    let line = attach.wait_line(Duration::from_secs(30), |l| {
        (l.trim() == want).then(|| l.to_string())
    });
    assert_eq!(line.trim(), want, "{transport}");
    drop(input);
}

/// Port-forward to `target` (`pod/web` or `svc/fwd-web`) and GET / through it.
fn check_port_forward(lab: &Lab, transport: &str, env: &[(&str, &str)], target: &str, port: u16) {
    let mapping = format!("0:{port}");
    let forward = Background::start(kubectl_command(
        lab,
        env,
        &["port-forward", "--address", "127.0.0.1", target, &mapping],
    ));
    let local: SocketAddr = forward.wait_line(Duration::from_secs(30), |l| {
        // "Forwarding from 127.0.0.1:41234 -> 80"
        let addr = l.strip_prefix("Forwarding from ")?.split(" -> ").next()?;
        addr.parse().ok()
    });
    assert!(local.ip().is_loopback(), "{local}");
    for round in 0..3 {
        let (code, body) = http_get(local, "/hostname").expect("GET through the forward");
        assert_eq!(code, 200, "{transport} {target} round {round}: {body}");
        assert_eq!(body.trim(), "web", "{transport} {target}");
    }
}

fn check_errors(lab: &Lab) {
    let out = run(
        kubectl_command(lab, &[], &["exec", "nope", "--", "true"]),
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pods \"nope\" not found"),
        "{out:?}"
    );
    let out = run(
        kubectl_command(lab, &[], &["exec", "shell", "-c", "zzz", "--", "true"]),
        b"",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("zzz"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_cp_attach_and_port_forward() {
    require_root("the pod exec lab (network namespaces, containerd, eBPF)");
    let pid = std::process::id() % 10_000;
    let mut lab = Lab::start(LabOptions::for_test(format!("exe{pid}"), 1));
    let node = lab.nodes()[0].name().to_string();
    let client = lab.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client, "default");
    let pp = PostParams::default();
    pods.create(&pp, &shell_pod(&node))
        .await
        .expect("shell pod");
    pods.create(&pp, &web_pod(&node)).await.expect("web pod");
    pods.create(&pp, &reader_pod(&node))
        .await
        .expect("reader pod");
    services.create(&pp, &web_service()).await.expect("service");
    wait_running(&mut lab, &pods, "shell").await;
    wait_running(&mut lab, &pods, "web").await;
    wait_running(&mut lab, &pods, "reader").await;
    let dir = tempfile::tempdir().expect("tempdir");

    for (transport, env) in TRANSPORTS {
        eprintln!("pod_exec: kubectl over {transport}");
        check_exec(&lab, transport, env);
        check_cp(&lab, transport, env, dir.path());
        check_attach(&lab, transport, env);
        check_attach_stdin(&lab, transport, env);
        check_port_forward(&lab, transport, env, "pod/web", 80);
        check_port_forward(&lab, transport, env, "svc/fwd-web", 8080);
        lab.assert_running();
    }
    check_errors(&lab);
}
