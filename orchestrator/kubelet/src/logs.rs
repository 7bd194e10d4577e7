//! Container logs as the CRI runtime writes them:
//! `<pod log dir>/<namespace>_<pod>_<uid>/<container>/<attempt>.log`, one record a line:
//! `2016-10-06T00:17:09.669794202Z stdout F message` (`P` marks a partial line that the
//! next record continues).

use std::path::{Path, PathBuf};

/// A log failure.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no log for container {container} in {dir}{previous}")]
    NoLog {
        container: String,
        dir: PathBuf,
        previous: &'static str,
    },
}

type Result<T, E = LogError> = std::result::Result<T, E>;

/// Output stream of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One complete log line (partial records joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339 timestamp of the line's last record.
    pub time: String,
    pub stream: Stream,
    /// The line without the CRI prefix and without the newline.
    pub content: String,
}

/// Parse CRI log text. Partial (`P`) records are joined with what follows on the same
/// stream; an unterminated partial line at the end is returned as it is.
pub fn parse(text: &str) -> std::result::Result<Vec<LogLine>, (usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<LogLine> = None;
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err((i + 1, "expected `<time> <stream> <tag> <message>`".into()));
        };
        let content = parts.next().unwrap_or_default();
        let stream = match stream {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            other => return Err((i + 1, format!("unknown stream {other:?}"))),
        };
        let partial = match tag.split(':').next() {
            Some("F") => false,
            Some("P") => true,
            _ => return Err((i + 1, format!("unknown tag {tag:?}"))),
        };
        let mut current = match pending.take() {
            Some(mut p) if p.stream == stream => {
                p.content.push_str(content);
                p.time = time.to_string();
                p
            }
            other => {
                out.extend(other);
                LogLine {
                    time: time.to_string(),
                    stream,
                    content: content.to_string(),
                }
            }
        };
        if partial {
            pending = Some(current);
        } else {
            current.time = time.to_string();
            out.push(current);
        }
    }
    out.extend(pending);
    Ok(out)
}

/// `<root>/<namespace>_<name>_<uid>`: the pod's log directory (PodSandboxConfig.log_directory).
pub fn pod_log_dir(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join(format!("{namespace}_{name}_{uid}"))
}

/// `<container>/<attempt>.log`: a container's log path relative to the pod's log directory.
pub fn container_log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

/// Attempts that have a log file in `<pod dir>/<container>/`, ascending.
pub fn attempts(pod_dir: &Path, container: &str) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(pod_dir.join(container))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".log"))
                        .and_then(|n| n.parse().ok())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// Read and parse one log file.
pub fn read_file(path: &Path) -> Result<Vec<LogLine>> {
    let bytes = std::fs::read(path).map_err(|source| LogError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&String::from_utf8_lossy(&bytes)).map_err(|(line, reason)| LogError::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

/// The log file of a container's current attempt (or of the previous one when
/// `previous`) and that attempt.
pub fn attempt_file(
    root: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    previous: bool,
) -> Result<(PathBuf, u32)> {
    let dir = pod_log_dir(root, namespace, pod, uid);
    let attempts = attempts(&dir, container);
    let wanted = if previous {
        attempts.len().checked_sub(2).map(|i| attempts[i])
    } else {
        attempts.last().copied()
    };
    let Some(attempt) = wanted else {
        return Err(LogError::NoLog {
            container: container.into(),
            dir,
            previous: if previous { " (previous attempt)" } else { "" },
        });
    };
    Ok((dir.join(container_log_path(container, attempt)), attempt))
}

/// The lines of a container's current log (or of the previous attempt when `previous`),
/// for pods/log.
pub fn container_lines(
    root: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    previous: bool,
) -> Result<Vec<LogLine>> {
    let (path, _) = attempt_file(root, namespace, pod, uid, container, previous)?;
    read_file(&path)
}

/// The pods/log query options the kubelet applies itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `tailLines`: only the last N lines.
    pub tail_lines: Option<usize>,
    /// `timestamps`: prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// `limitBytes`: cut the answer after this many bytes.
    pub limit_bytes: Option<usize>,
}

/// The body of a pods/log answer: one line each, newline-terminated.
pub fn render(lines: &[LogLine], opts: &LogOptions) -> String {
    let skip = opts
        .tail_lines
        .map(|n| lines.len().saturating_sub(n))
        .unwrap_or(0);
    let mut out = String::new();
    for l in &lines[skip..] {
        if opts.timestamps {
            out.push_str(&l.time);
            out.push(' ');
        }
        out.push_str(&l.content);
        out.push('\n');
    }
    if let Some(limit) = opts.limit_bytes {
        if out.len() > limit {
            let mut cut = limit;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tail_timestamps_and_limit() {
        let lines = parse("t1 stdout F one\nt2 stderr F two\nt3 stdout F three\n").unwrap();
        assert_eq!(render(&lines, &LogOptions::default()), "one\ntwo\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(render(&lines, &tail), "t2 two\nt3 three\n");
        let limit = LogOptions {
            limit_bytes: Some(5),
            ..Default::default()
        };
        assert_eq!(render(&lines, &limit), "one\nt");
        let all = LogOptions {
            tail_lines: Some(10),
            ..Default::default()
        };
        assert_eq!(render(&lines, &all).lines().count(), 3);
    }

    #[test]
    fn parses_full_and_partial_lines() {
        let text = "2024-01-01T00:00:00.1Z stdout F hello\n\
                    2024-01-01T00:00:00.2Z stderr P par\n\
                    2024-01-01T00:00:00.3Z stderr F tial\n\
                    2024-01-01T00:00:00.4Z stdout F with  two  spaces\n\
                    2024-01-01T00:00:00.5Z stdout F \n";
        let lines = parse(text).unwrap();
        let contents: Vec<&str> = lines.iter().map(|l| l.content.as_str()).collect();
        assert_eq!(contents, ["hello", "partial", "with  two  spaces", ""]);
        assert_eq!(lines[1].stream, Stream::Stderr);
        assert_eq!(lines[1].time, "2024-01-01T00:00:00.3Z");
    }

    #[test]
    fn interleaved_streams_do_not_join() {
        let text = "t1 stdout P a\nt2 stderr F b\nt3 stdout F c\n";
        let lines = parse(text).unwrap();
        let contents: Vec<(&str, Stream)> = lines
            .iter()
            .map(|l| (l.content.as_str(), l.stream))
            .collect();
        assert_eq!(
            contents,
            [
                ("a", Stream::Stdout),
                ("b", Stream::Stderr),
                ("c", Stream::Stdout)
            ]
        );
    }

    #[test]
    fn bad_records_name_the_line() {
        assert_eq!(parse("t stdout F ok\ngarbage\n").unwrap_err().0, 2);
        assert!(parse("t stdin F x\n").unwrap_err().1.contains("stdin"));
        assert!(parse("t stdout X x\n").unwrap_err().1.contains("tag"));
    }

    #[test]
    fn picks_current_and_previous_attempts() {
        let root = tempfile::tempdir().unwrap();
        let dir = pod_log_dir(root.path(), "ns", "p", "u1");
        std::fs::create_dir_all(dir.join("c")).unwrap();
        std::fs::write(dir.join("c/0.log"), "t stdout F first\n").unwrap();
        std::fs::write(dir.join("c/10.log"), "t stdout F tenth\n").unwrap();
        std::fs::write(dir.join("c/2.log"), "t stdout F second\n").unwrap();
        let current = container_lines(root.path(), "ns", "p", "u1", "c", false).unwrap();
        assert_eq!(current[0].content, "tenth");
        let previous = container_lines(root.path(), "ns", "p", "u1", "c", true).unwrap();
        assert_eq!(previous[0].content, "second");
        let err = container_lines(root.path(), "ns", "p", "u1", "other", false).unwrap_err();
        assert!(
            err.to_string().contains("no log for container other"),
            "{err}"
        );
    }
}
