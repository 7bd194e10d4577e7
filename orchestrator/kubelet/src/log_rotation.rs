//! Container log rotation by size and count, as the Kubernetes kubelet's container log
//! manager does it (`--container-log-max-size`, `--container-log-max-files`): every monitor
//! interval, each running container whose current log file (`<attempt>.log`) has reached the
//! size limit gets its log rotated while it runs:
//!
//! 1. leftovers of an interrupted rotation go (`*.tmp`, plain files whose `.gz` exists);
//! 2. the oldest rotated files go until at most `max_files - 2` are left (room for the file
//!    being rotated and the new current one);
//! 3. the rotated files left are gzip-compressed (the one this rotation makes stays plain
//!    until the next: the runtime may still write to it for a moment);
//! 4. the current file is renamed to `<attempt>.log.<YYYYmmdd-HHMMSS>` and the runtime is
//!    asked (CRI `ReopenContainerLog`) to reopen the log at its path; if it cannot, the
//!    rename is undone.
//!
//! `kubectl logs` reads the current file only, as with the kubelet; `--previous` reads the
//! previous attempt's current file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::cri::{proto, CriClient};

/// The kubelet's `containerLogMaxSize` default (10Mi).
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// The kubelet's `containerLogMaxFiles` default.
pub const DEFAULT_MAX_FILES: usize = 5;
/// The kubelet's `containerLogMonitorInterval` default, and its lower bound.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const MIN_INTERVAL: Duration = Duration::from_secs(3);

const TMP_SUFFIX: &str = ".tmp";
const GZ_SUFFIX: &str = ".gz";

/// When and how far logs are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A current log file of at least this many bytes is rotated.
    pub max_size: u64,
    /// Files kept per container log, the current one included (at least 2).
    pub max_files: usize,
    /// How often sizes are checked.
    pub interval: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// `--container-log-max-size`: a quantity of bytes (`10Mi`), greater than 0.
pub fn parse_max_size(value: &str) -> Result<u64, String> {
    let bytes = bpfk_common::quantity::Quantity::parse(value)
        .map_err(|e| format!("{value:?}: {e}"))?
        .units();
    u64::try_from(bytes)
        .ok()
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{value:?}: must be greater than 0"))
}

/// `--container-log-monitor-interval`: a duration (`10s`) of at least 3 s.
pub fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value).map_err(|e| format!("{value:?}: {e}"))?;
    if interval < MIN_INTERVAL {
        return Err(format!("{value:?}: must be at least {MIN_INTERVAL:?}"));
    }
    Ok(interval)
}

/// The rotated files of `log` (`<log>.<stamp>`, `<log>.<stamp>.gz`, and leftover
/// `….tmp`), oldest first (stamps sort by time).
pub fn rotated_files(log: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(suffix))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Of `rotated` (oldest first): the leftovers of an interrupted rotation (temporary files,
/// plain files already compressed), and the oldest files past `keep`.
pub fn to_remove(rotated: &[PathBuf], keep: usize) -> Vec<PathBuf> {
    let (leftovers, kept): (Vec<PathBuf>, Vec<PathBuf>) = rotated.iter().cloned().partition(|p| {
        has_suffix(p, TMP_SUFFIX)
            || (!has_suffix(p, GZ_SUFFIX) && rotated.contains(&with_suffix(p, GZ_SUFFIX)))
    });
    let excess = kept.len().saturating_sub(keep);
    leftovers
        .into_iter()
        .chain(kept.into_iter().take(excess))
        .collect()
}

/// gzip `path` into `<path>.gz` (through a temporary file), then remove `path`.
pub fn compress(path: &Path) -> std::io::Result<()> {
    let gz = with_suffix(path, GZ_SUFFIX);
    let tmp = with_suffix(&gz, TMP_SUFFIX);
    let mut input = std::fs::File::open(path)?;
    let out = std::fs::File::create(&tmp)?;
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.flush()?;
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)
}

/// `<log>.<YYYYmmdd-HHMMSS>` for a rotation at `now`.
pub fn rotated_name(log: &Path, now: Timestamp) -> PathBuf {
    with_suffix(log, &format!(".{}", now.strftime("%Y%m%d-%H%M%S")))
}

/// A failed rotation, naming the file and step.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reopening the log of container {container}: {source}")]
    Reopen {
        container: String,
        source: crate::cri::CriError,
    },
}

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RotationError {
    let path = path.to_path_buf();
    move |source| RotationError::Io { step, path, source }
}

/// Removes and compresses older rotated files of `log` so that after this rotation at
/// most `max_files` remain.
fn make_room(log: &Path, max_files: usize) -> Result<(), RotationError> {
    let rotated = rotated_files(log).map_err(io_err("listing rotated logs of", log))?;
    let gone = to_remove(&rotated, max_files.saturating_sub(2));
    for path in &gone {
        std::fs::remove_file(path).map_err(io_err("removing", path))?;
    }
    let plain = rotated
        .iter()
        .filter(|p| !gone.contains(p) && !has_suffix(p, GZ_SUFFIX));
    for path in plain {
        compress(path).map_err(io_err("compressing", path))?;
    }
    Ok(())
}

/// Rotates `log` of running container `id` when it reached the policy's size; whether it
/// did.
pub async fn rotate_if_full(
    cri: &CriClient,
    id: &str,
    log: &Path,
    policy: &RotationPolicy,
) -> Result<bool, RotationError> {
    let size = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        // not written yet, or removed with its container
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("reading", log)(e)),
    };
    let target = rotated_name(log, Timestamp::now());
    if size < policy.max_size || target.exists() {
        // a second rotation within the same second waits for the next check
        return Ok(false);
    }
    make_room(log, policy.max_files)?;
    std::fs::rename(log, &target).map_err(io_err("renaming", log))?;
    if let Err(source) = cri.reopen_container_log(id).await {
        if let Err(e) = std::fs::rename(&target, log) {
            tracing::error!(path = %target.display(), error = %e, "cannot undo a failed log rotation");
        }
        return Err(RotationError::Reopen {
            container: id.into(),
            source,
        });
    }
    Ok(true)
}

/// Checks every running container once.
async fn rotate_all(cri: &CriClient, policy: &RotationPolicy) {
    let filter = proto::ContainerFilter {
        state: Some(proto::ContainerStateValue {
            state: proto::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    let containers = match cri.list_containers(Some(filter)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "log rotation: cannot list containers");
            return;
        }
    };
    for c in containers {
        let log = match cri.container_status(&c.id).await {
            Ok(status) if !status.log_path.is_empty() => PathBuf::from(status.log_path),
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(container = %c.id, error = %e, "log rotation: no status");
                continue;
            }
        };
        match rotate_if_full(cri, &c.id, &log, policy).await {
            Ok(true) => {
                tracing::info!(container = %c.id, path = %log.display(), "container log rotated")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(container = %c.id, error = %e, "container log rotation failed")
            }
        }
    }
}

/// The container log manager: checks every `policy.interval`, for as long as it runs.
pub async fn run(cri: CriClient, policy: RotationPolicy) {
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        rotate_all(&cri, &policy).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| PathBuf::from(format!("/l/{n}")))
            .collect()
    }

    #[test]
    fn flags_are_checked_as_the_kubelet_checks_them() {
        assert_eq!(parse_max_size("10Mi"), Ok(DEFAULT_MAX_SIZE));
        assert_eq!(parse_max_size("2Ki"), Ok(2048));
        assert!(parse_max_size("0").unwrap_err().contains("greater than 0"));
        assert!(parse_max_size("ten").is_err());
        assert_eq!(parse_interval("10s"), Ok(DEFAULT_INTERVAL));
        assert!(parse_interval("1s").unwrap_err().contains("at least"));
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn leftovers_and_the_oldest_files_go() {
        let rotated = paths(&[
            "0.log.20260101-000001.gz",
            "0.log.20260101-000002",
            "0.log.20260101-000002.gz",
            "0.log.20260101-000003.gz",
            "0.log.20260101-000004.gz.tmp",
            "0.log.20260101-000005",
        ]);
        assert_eq!(
            to_remove(&rotated, 2),
            paths(&[
                "0.log.20260101-000002",
                "0.log.20260101-000004.gz.tmp",
                "0.log.20260101-000001.gz",
                "0.log.20260101-000002.gz",
            ])
        );
        assert!(to_remove(&paths(&["0.log.20260101-000001"]), 3).is_empty());
        assert_eq!(to_remove(&paths(&["0.log.1", "0.log.2"]), 0).len(), 2);
    }

    #[test]
    fn rotated_names_sort_by_time() {
        let log = Path::new("/l/c/0.log");
        let a = rotated_name(log, "2026-12-03T09:05:07Z".parse().expect("time"));
        let b = rotated_name(log, "2026-12-03T10:00:00Z".parse().expect("time"));
        assert_eq!(a, PathBuf::from("/l/c/0.log.20261203-090507"));
        assert!(a < b);
    }

    #[test]
    fn room_is_made_on_disk_and_the_kept_files_compressed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log");
        std::fs::write(&log, "current\n").expect("write");
        for stamp in ["20260101-000001", "20260101-000002", "20260101-000003"] {
            std::fs::write(dir.path().join(format!("0.log.{stamp}")), stamp).expect("write");
        }
        std::fs::write(dir.path().join("1.log"), "other attempt\n").expect("write");
        make_room(&log, 4).expect("make room");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "0.log",
                "0.log.20260101-000002.gz",
                "0.log.20260101-000003.gz",
                "1.log"
            ]
        );
        let gz = std::fs::File::open(dir.path().join("0.log.20260101-000002.gz")).expect("gz");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text)
            .expect("gunzip");
        assert_eq!(text, "20260101-000002");
    }
}
