//! Container log rotation in the lab (`bpfk_lab::cluster`: real etcd, bpfk-server,
//! containerd and `bpfk-agent --kubelet` with `--container-log-max-size 4Ki
//! --container-log-max-files 3 --container-log-monitor-interval 3s`): a container writing
//! ~8 KB/s keeps running while its log is rotated (renamed, containerd's CRI
//! `ReopenContainerLog`), never more than 3 files of it are kept, older ones gzip-compressed,
//! `kubectl logs` reads the current file (its first line is not the container's first) and
//! still grows, `kubectl logs -f` goes on across a rotation, and `--previous` reads the
//! previous container's current file.
//!
//! Needs root, etcd, containerd, runc, CNI plugins, busybox-static, kubectl and the eBPF
//! object (`cargo xtask build-ebpf`); fails loudly without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bpfk_lab::cluster::{Binaries, Lab, LabOptions, AGENT_ARGS_ENV};
use bpfk_lab::host::require_root;
use bpfk_lab::server::binary;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(120);
const MAX_FILES: usize = 3;

/// Lines of ~110 bytes, 50 a second, until /tmp/stop exists.
const CHATTY: &str = "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); \
    echo \"line-$i $(printf %0100d 0)\"; sleep 0.02; done; echo attempt-done";

fn kubectl(lab: &Lab, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(["--request-timeout", "30s"])
        .args(args)
        .output()
        .expect("kubectl must be on PATH (v1.32)");
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number of the first `line-<n>` of `text`.
fn first_line_number(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("line-")?.split(' ').next()?.parse().ok())
}

fn last_line_number(text: &str) -> Option<u64> {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("line-")?.split(' ').next()?.parse().ok())
}

/// `<pod log dir>/<container>/` of pod `uid`.
fn container_log_dir(root: &Path, uid: &str) -> PathBuf {
    bpfk_kubelet::logs::pod_log_dir(root, "default", "chatty", uid).join("chatty")
}

/// The files of attempt `attempt`'s log: `<n>.log` and its rotated ones.
fn log_files(dir: &Path, attempt: u32) -> Vec<String> {
    let prefix = format!("{attempt}.log");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn rotation(mut lab: Lab) {
    let node = lab.nodes()[0].name().to_string();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "chatty"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "chatty", "image": "busybox:1.36",
                "command": ["sh", "-c", CHATTY]}]}
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let uid = created.metadata.uid.expect("uid");
    let dir = container_log_dir(&lab.node(&node).pod_log_dir(), &uid);

    // Several rotations: a compressed file exists from the second on (the first rotated
    // file is compressed when the next rotation makes room).
    let files = lab
        .wait_with("a compressed rotated log", DEADLINE, |_| {
            let files = log_files(&dir, 0);
            files
                .iter()
                .any(|f| f.ends_with(".gz"))
                .then(|| files.clone())
                .ok_or(format!("{files:?}"))
        })
        .await;
    eprintln!("log files: {files:?}");
    assert!(
        files.len() <= MAX_FILES,
        "more than {MAX_FILES} files: {files:?}"
    );
    assert!(files.contains(&"0.log".to_string()), "{files:?}");
    let rotated = lab
        .node(&node)
        .agent_log()
        .matches("container log rotated")
        .count();
    assert!(rotated >= 2, "{rotated} rotations logged");

    // kubectl logs: the current file only, and it still grows after the rotations (the
    // runtime reopened the file the kubelet renamed away).
    let logs = kubectl(&lab, &["logs", "chatty"]);
    let first = first_line_number(&logs).expect("numbered lines");
    assert!(
        first > 1,
        "kubectl logs starts at line {first}: not the current file"
    );
    let last = last_line_number(&logs).expect("numbered lines");
    lab.wait_with("more lines after the rotations", DEADLINE, |lab| {
        let now = last_line_number(&kubectl(lab, &["logs", "chatty"])).unwrap_or(0);
        (now > last).then_some(()).ok_or(format!("last line {now}"))
    })
    .await;
    for f in log_files(&dir, 0) {
        assert!(!f.ends_with(".tmp"), "leftover {f}");
    }
    check_follow_and_previous(&mut lab, &dir).await;
    drop(lab);
}

/// `logs -f` across a rotation, then `--previous` after the container restarted.
async fn check_follow_and_previous(lab: &mut Lab, dir: &Path) {
    let follow = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(["logs", "-f", "--tail", "1", "chatty"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let rotated_before = lab.nodes()[0]
        .agent_log()
        .matches("container log rotated")
        .count();
    lab.wait_with("one more rotation", DEADLINE, |lab| {
        let n = lab.nodes()[0]
            .agent_log()
            .matches("container log rotated")
            .count();
        (n > rotated_before)
            .then_some(())
            .ok_or(format!("{n} rotations"))
    })
    .await;
    // Stop the container: the follow ends with its last line, which was written to a
    // file opened after the follow began.
    kubectl(lab, &["exec", "chatty", "--", "touch", "/tmp/stop"]);
    let out = tokio::task::spawn_blocking(move || follow.wait_with_output())
        .await
        .expect("join")
        .expect("kubectl logs -f output");
    let followed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        followed.contains("attempt-done"),
        "follow lost the end: {}",
        tail(&followed)
    );
    let (first, last) = (first_line_number(&followed), last_line_number(&followed));
    let (Some(first), Some(last)) = (first, last) else {
        panic!("no lines followed: {}", tail(&followed));
    };
    let count = followed.lines().filter(|l| l.starts_with("line-")).count() as u64;
    assert_eq!(
        count,
        last - first + 1,
        "follow skipped lines across the rotation"
    );

    // restartPolicy Always: attempt 1 runs; --previous reads attempt 0's current file.
    lab.wait_with("the restarted container", DEADLINE, |_| {
        (!log_files(dir, 1).is_empty())
            .then_some(())
            .ok_or("no 1.log".into())
    })
    .await;
    let previous = kubectl(lab, &["logs", "--previous", "chatty"]);
    assert!(
        previous.trim_end().ends_with("attempt-done"),
        "{}",
        tail(&previous)
    );
    assert!(first_line_number(&previous).is_some_and(|n| n > 1));
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

#[test]
fn container_logs_rotate_by_size_and_count_while_the_container_runs() {
    require_root("the log rotation lab (network namespaces, containerd, eBPF)");
    // Set before any thread of this test binary runs: every agent of the lab gets them.
    std::env::set_var(
        AGENT_ARGS_ENV,
        format!(
            "--container-log-max-size 4Ki --container-log-max-files {MAX_FILES} \
             --container-log-monitor-interval 3s"
        ),
    );
    let pid = std::process::id() % 10_000;
    let options = LabOptions {
        id: format!("rot{pid}"),
        nodes: 1,
        node_prefix: None,
        binaries: Binaries {
            server: binary("bpfk-server"),
            agent: binary("bpfk-agent"),
        },
        log_level: "info".into(),
        server_args: Vec::new(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async { rotation(Lab::start(options)).await });
}
