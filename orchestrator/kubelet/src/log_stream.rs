//! `logs -f`: a container's log file streamed as it grows, as the Kubernetes kubelet
//! follows it: what is there first (after `sinceSeconds`/`sinceTime` and `tailLines`),
//! then each complete line as the runtime writes it, until the container is no longer
//! running (checked through CRI whenever the file has nothing new), `limitBytes` is used
//! up, or the client goes away (the stream is dropped).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use k8s_openapi::jiff::Timestamp;

use crate::cri::{proto, CriClient, LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::logs::{self, LogLine, LogOptions};

/// How often a followed file is looked at for new lines.
pub const POLL: Duration = Duration::from_millis(250);

/// Keeps the lines at or after `since` (all when None). Lines whose time does not parse
/// are kept.
pub fn since(lines: Vec<LogLine>, since: Option<Timestamp>) -> Vec<LogLine> {
    let Some(cutoff) = since else {
        return lines;
    };
    lines
        .into_iter()
        .filter(|l| l.time.parse::<Timestamp>().map_or(true, |t| t >= cutoff))
        .collect()
}

/// The complete records of `text`: up to and with the last full (`F`) record; the rest
/// (partial records whose line is not finished, a record not yet terminated) stays for the
/// next read.
pub fn split_complete(text: &str) -> (&str, &str) {
    let mut end = 0;
    let mut pos = 0;
    for record in text.split_inclusive('\n') {
        pos += record.len();
        if !record.ends_with('\n') {
            break;
        }
        let tag = record.split(' ').nth(2).unwrap_or_default();
        if tag.split(':').next() == Some("F") {
            end = pos;
        }
    }
    text.split_at(end)
}

/// Which container attempt a followed log belongs to.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub pod_uid: String,
    pub container: String,
    pub attempt: u32,
}

/// Whether `source`'s attempt still runs (unknown — no runtime, or it cannot answer — is
/// taken as running, so the stream then ends only with the client).
async fn still_running(cri: Option<&CriClient>, source: &Source) -> bool {
    let Some(cri) = cri else {
        return true;
    };
    let filter = proto::ContainerFilter {
        label_selector: [
            (LABEL_POD_UID.to_string(), source.pod_uid.clone()),
            (LABEL_CONTAINER_NAME.to_string(), source.container.clone()),
        ]
        .into(),
        ..Default::default()
    };
    match cri.list_containers(Some(filter)).await {
        Ok(list) => list.iter().any(|c| {
            c.metadata.as_ref().map(|m| m.attempt) == Some(source.attempt)
                && c.state == proto::ContainerState::ContainerRunning as i32
        }),
        Err(e) => {
            tracing::debug!(error = %e, "cannot tell whether a followed container runs");
            true
        }
    }
}

/// Reading position in a followed file.
struct Tail {
    source: Source,
    /// The followed file, open since the first read.
    file: Option<std::fs::File>,
    offset: u64,
    carry: String,
    opts: LogOptions,
    /// Bytes `limitBytes` still allows.
    budget: Option<usize>,
    cri: Option<CriClient>,
    done: bool,
}

impl Tail {
    /// New bytes since the last read (empty at the end of the file). The file stays open,
    /// so that when the log is rotated (renamed away, the runtime writing a new file at
    /// the path) the rest of the old file is read before the new one from its start.
    fn read_new(&mut self) -> std::io::Result<String> {
        let fresh = self.read_open()?;
        if !fresh.is_empty() || !self.rotated() {
            return Ok(fresh);
        }
        // what the runtime wrote to the old file before it reopened the path
        let mut text = self.read_open()?;
        self.file = None;
        self.offset = 0;
        text.push_str(&self.read_open()?);
        Ok(text)
    }

    fn read_open(&mut self) -> std::io::Result<String> {
        if self.file.is_none() {
            self.file = Some(std::fs::File::open(&self.source.path)?);
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(String::new());
        };
        let len = f.metadata()?.len();
        if len < self.offset {
            // truncated in place: start over
            self.offset = 0;
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(len - self.offset).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Whether the path now names another file than the open one (a rotation).
    fn rotated(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let open = self.file.as_ref().and_then(|f| f.metadata().ok());
        let at_path = std::fs::metadata(&self.source.path).ok();
        match (open, at_path) {
            (Some(a), Some(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
            _ => false,
        }
    }

    /// The complete new lines, rendered, cut to the budget.
    fn next_text(&mut self) -> std::io::Result<String> {
        let fresh = self.read_new()?;
        self.carry.push_str(&fresh);
        let (complete, rest) = split_complete(&self.carry);
        let lines = logs::parse(complete).unwrap_or_default();
        self.carry = rest.to_string();
        let mut text = logs::render(&lines, &self.opts);
        if let Some(budget) = self.budget.as_mut() {
            let mut cut = text.len().min(*budget);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            *budget -= text.len();
            self.done |= *budget == 0;
        }
        Ok(text)
    }
}

/// The body of a followed log: `first` (already rendered), then the file from `offset` on.
pub fn follow(
    first: String,
    source: Source,
    offset: u64,
    opts: LogOptions,
    cri: Option<CriClient>,
) -> impl Stream<Item = std::io::Result<Bytes>> {
    let budget = opts
        .limit_bytes
        .map(|limit| limit.saturating_sub(first.len()));
    let tail = Tail {
        source,
        file: None,
        offset,
        carry: String::new(),
        opts: LogOptions {
            tail_lines: None,
            limit_bytes: None,
            ..opts
        },
        done: budget == Some(0),
        budget,
        cri,
    };
    let head = futures::stream::once(async move { Ok(Bytes::from(first)) });
    let rest = futures::stream::unfold(tail, |mut tail| async move {
        loop {
            if tail.done {
                return None;
            }
            match tail.next_text() {
                Ok(text) if !text.is_empty() => return Some((Ok(Bytes::from(text)), tail)),
                Ok(_) => {}
                Err(e) => return Some((Err(e), Tail { done: true, ..tail })),
            }
            if !still_running(tail.cri.as_ref(), &tail.source).await {
                // what it wrote before it ended
                tail.done = true;
                return match tail.next_text() {
                    Ok(text) if !text.is_empty() => Some((Ok(Bytes::from(text)), tail)),
                    _ => None,
                };
            }
            tokio::time::sleep(POLL).await;
        }
    });
    futures::StreamExt::chain(head, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::io::Write;

    #[test]
    fn since_keeps_later_lines() {
        let lines =
            logs::parse("2026-01-01T00:00:01.5Z stdout F old\n2026-01-01T00:00:03Z stdout F new\n")
                .unwrap();
        let cutoff: Timestamp = "2026-01-01T00:00:02Z".parse().unwrap();
        let kept = since(lines.clone(), Some(cutoff));
        assert_eq!(
            kept.iter().map(|l| l.content.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
        assert_eq!(since(lines, None).len(), 2);
    }

    #[test]
    fn only_complete_lines_are_taken() {
        let text = "t stdout F one\nt stdout P par\nt stdout F tial\nt stdout P open\nt stdout F unterminat";
        let (done, rest) = split_complete(text);
        assert_eq!(done, "t stdout F one\nt stdout P par\nt stdout F tial\n");
        assert_eq!(rest, "t stdout P open\nt stdout F unterminat");
    }

    #[tokio::test]
    async fn a_followed_file_is_followed_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "").unwrap();
        let source = Source {
            path: path.clone(),
            pod_uid: "u".into(),
            container: "c".into(),
            attempt: 0,
        };
        let opts = LogOptions {
            limit_bytes: None,
            timestamps: false,
            tail_lines: None,
        };
        let mut body = Box::pin(follow(String::new(), source, 0, opts, None));
        assert_eq!(body.next().await.unwrap().unwrap(), "");
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        old.write_all(b"t1 stdout F before\n").unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), "before\n");
        // the runtime still writes to the renamed file, then reopens the path
        std::fs::rename(&path, dir.path().join("0.log.20260101-000000")).unwrap();
        old.write_all(b"t2 stdout F during\n").unwrap();
        std::fs::write(&path, "t3 stdout F after\n").unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), "during\n");
        assert_eq!(body.next().await.unwrap().unwrap(), "after\n");
    }

    #[tokio::test]
    async fn a_followed_file_streams_new_lines_up_to_the_byte_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "t1 stdout F first\n").unwrap();
        let offset = std::fs::metadata(&path).unwrap().len();
        let source = Source {
            path: path.clone(),
            pod_uid: "u".into(),
            container: "c".into(),
            attempt: 0,
        };
        let opts = LogOptions {
            limit_bytes: Some(20),
            timestamps: false,
            tail_lines: None,
        };
        let mut body = Box::pin(follow("first\n".into(), source, offset, opts, None));
        assert_eq!(body.next().await.unwrap().unwrap(), "first\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"t2 stdout P sec").unwrap();
        f.write_all(b"\nt3 stdout F ond\n").unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), "second\n");
        f.write_all(b"t4 stderr F third line\n").unwrap();
        // 20 bytes in all: "first\n" + "second\n" + 7 of the third
        assert_eq!(body.next().await.unwrap().unwrap(), "third l");
        assert!(body.next().await.is_none());
    }
}
