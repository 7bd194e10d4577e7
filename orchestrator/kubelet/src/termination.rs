//! The termination message, as the Kubernetes kubelet keeps it: each container attempt gets
//! an empty node file mounted at its `terminationMessagePath` (default
//! `/dev/termination-log`); after the container exits, what it wrote there (at most 4096
//! bytes) is `state.terminated.message`. With `terminationMessagePolicy:
//! FallbackToLogsOnError` a failed container that wrote nothing gets the end of its log
//! (at most 80 lines, 2048 bytes) instead.

use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

use crate::cri::proto;
use crate::cri_config;
use crate::logs;

/// Where a container's termination message goes when its spec names no path.
pub const DEFAULT_PATH: &str = "/dev/termination-log";
/// The most of a termination message the status keeps.
pub const MESSAGE_LIMIT: usize = 4096;
/// The most log lines and bytes `FallbackToLogsOnError` takes.
pub const FALLBACK_LINES: usize = 80;
pub const FALLBACK_BYTES: usize = 2048;

/// The node file of attempt `attempt` of `container` in pod `uid`.
pub fn host_file(root: &Path, uid: &str, container: &str, attempt: u32) -> PathBuf {
    cri_config::pod_dir(root, uid)
        .join("containers")
        .join(container)
        .join(format!("{attempt}.termination-log"))
}

/// Creates the attempt's empty message file (writable by any user of the container) and
/// its mount.
pub fn prepare(
    root: &Path,
    uid: &str,
    container: &Container,
    attempt: u32,
) -> std::io::Result<proto::Mount> {
    use std::os::unix::fs::PermissionsExt;
    let file = host_file(root, uid, &container.name, attempt);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&file, b"")?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))?;
    let path = container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    Ok(proto::Mount {
        container_path: path,
        host_path: file.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

/// The first `limit` bytes of `path` as text ("" when missing).
fn read_limited(path: &Path, limit: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        // a short read leaves what was read
        let _ = f.take(limit as u64).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The end of the CRI log at `log_path`, as `FallbackToLogsOnError` takes it.
fn log_tail(log_path: &Path) -> String {
    let Ok(lines) = logs::read_file(log_path) else {
        return String::new();
    };
    let opts = logs::LogOptions {
        tail_lines: Some(FALLBACK_LINES),
        ..Default::default()
    };
    let text = logs::render(&lines, &opts);
    let mut start = text.len().saturating_sub(FALLBACK_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// The message of an exited attempt: its file, else (by policy, after a failure) its log.
pub fn message(
    root: &Path,
    uid: &str,
    container: &Container,
    st: &proto::ContainerStatus,
) -> String {
    let attempt = st.metadata.as_ref().map_or(0, |m| m.attempt);
    let written = read_limited(
        &host_file(root, uid, &container.name, attempt),
        MESSAGE_LIMIT,
    );
    let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if written.is_empty() && fallback && st.exit_code != 0 && !st.log_path.is_empty() {
        return log_tail(Path::new(&st.log_path));
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(attempt: u32, exit_code: i32, log_path: &Path) -> proto::ContainerStatus {
        proto::ContainerStatus {
            metadata: Some(proto::ContainerMetadata {
                name: "app".into(),
                attempt,
            }),
            exit_code,
            log_path: log_path.to_string_lossy().into_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn the_file_then_the_log_by_policy() {
        let root = tempfile::tempdir().unwrap();
        let log = root.path().join("0.log");
        std::fs::write(&log, "t1 stdout F starting\nt2 stderr F boom: no config\n").unwrap();
        let mut c: Container = serde_json::from_value(serde_json::json!({"name": "app"})).unwrap();
        let mount = prepare(root.path(), "u1", &c, 0).unwrap();
        assert_eq!(mount.container_path, DEFAULT_PATH);
        assert!(Path::new(&mount.host_path).is_file());
        // nothing written, default policy: no message
        assert_eq!(message(root.path(), "u1", &c, &exited(0, 1, &log)), "");
        c.termination_message_policy = Some("FallbackToLogsOnError".into());
        assert_eq!(
            message(root.path(), "u1", &c, &exited(0, 1, &log)),
            "starting\nboom: no config\n"
        );
        assert_eq!(
            message(root.path(), "u1", &c, &exited(0, 0, &log)),
            "",
            "success: no fallback"
        );
        std::fs::write(&mount.host_path, "x".repeat(MESSAGE_LIMIT + 10)).unwrap();
        assert_eq!(
            message(root.path(), "u1", &c, &exited(0, 1, &log)).len(),
            MESSAGE_LIMIT
        );
        c.termination_message_path = Some("/tmp/why".into());
        assert_eq!(
            prepare(root.path(), "u1", &c, 1).unwrap().container_path,
            "/tmp/why"
        );
    }
}
