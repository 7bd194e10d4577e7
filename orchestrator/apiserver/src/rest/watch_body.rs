//! A watch response's body: event lines gathered into fewer, larger chunks while the watch is
//! busy.
//!
//! Every chunk costs a write on the server's socket, a wakeup and a read in the client, and
//! over loopback the kernel's receive path is paid by the writer too. With the scheduler, the
//! controllers and a few clients each watching pods at a thousand pods a second, one write per
//! event was a large share of the server's CPU. So a chunk that follows the previous one
//! within [`WINDOW`] waits for the rest of the window and takes every line queued by then:
//! an isolated event still goes out at once, and under load a watch gets one write per window
//! instead of one per event. The added delay is at most [`WINDOW`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest a line waits for others to share its write.
pub const WINDOW: Duration = Duration::from_millis(5);
/// A gathered chunk stops growing at this size.
const MAX_CHUNK: usize = 256 * 1024;

/// The body stream for the lines `rx` yields; ends when the sender is dropped (after the
/// lines already sent).
pub fn gathered(rx: mpsc::Receiver<Bytes>) -> impl Stream<Item = Bytes> + Send {
    futures::stream::unfold((rx, None::<Instant>), |(mut rx, last)| async move {
        let first = rx.recv().await?;
        if let Some(last) = last {
            // busy: the previous chunk went out less than a window ago
            if last.elapsed() < WINDOW {
                tokio::time::sleep_until(last + WINDOW).await;
            }
        }
        let mut chunk: Option<BytesMut> = None;
        while chunk.as_ref().map_or(first.len(), BytesMut::len) < MAX_CHUNK {
            let Ok(next) = rx.try_recv() else {
                break;
            };
            chunk
                .get_or_insert_with(|| {
                    let mut b = BytesMut::with_capacity(first.len() * 8 + next.len());
                    b.extend_from_slice(&first);
                    b
                })
                .extend_from_slice(&next);
        }
        let out = chunk.map_or(first, BytesMut::freeze);
        Some((out, (rx, Some(Instant::now()))))
    })
}

/// The JSON event lines of `rx` as protobuf watch frames, in order. A line that does not
/// encode (an object the codec cannot write) ends the stream with a warning: a client
/// re-watches from its last resourceVersion, where a gap would go unnoticed.
pub fn protobuf_frames(mut rx: mpsc::Receiver<Bytes>) -> mpsc::Receiver<Bytes> {
    let (tx, out) = mpsc::channel(rx.max_capacity());
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let frame = serde_json::from_slice::<serde_json::Value>(&line)
                .map_err(|e| e.to_string())
                .and_then(|event| match crate::protobuf::watch_frame(&event) {
                    Some(Ok(frame)) => Ok(frame),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("its kind has no protobuf message".into()),
                });
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::warn!(error = %e, "a watch event does not encode as protobuf; ending the watch");
                    return;
                }
            };
            if tx.send(Bytes::from(frame)).await.is_err() {
                return;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn line(i: usize) -> Bytes {
        Bytes::from(format!("{{\"n\":{i}}}\n"))
    }

    #[tokio::test(start_paused = true)]
    async fn an_isolated_line_goes_out_at_once() {
        let (tx, rx) = mpsc::channel(16);
        let mut body = std::pin::pin!(gathered(rx));
        let start = Instant::now();
        tx.send(line(0)).await.unwrap();
        assert_eq!(body.next().await.unwrap(), line(0));
        assert_eq!(start.elapsed(), Duration::ZERO);
        // after a quiet spell longer than the window, the next one goes out at once too
        tokio::time::sleep(WINDOW * 2).await;
        let later = Instant::now();
        tx.send(line(1)).await.unwrap();
        assert_eq!(body.next().await.unwrap(), line(1));
        assert_eq!(later.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn lines_arriving_within_the_window_share_one_chunk() {
        let (tx, rx) = mpsc::channel(16);
        let mut body = std::pin::pin!(gathered(rx));
        tx.send(line(0)).await.unwrap();
        let start = Instant::now();
        assert_eq!(body.next().await.unwrap(), line(0));
        let sender = tokio::spawn(async move {
            for i in 1..=3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                tx.send(line(i)).await.unwrap();
            }
            tx
        });
        let chunk = body.next().await.unwrap();
        assert_eq!(&chunk[..], b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
        // written when the window after the first chunk closed, not before
        assert_eq!(start.elapsed(), WINDOW);
        drop(sender.await.unwrap());
        assert!(body.next().await.is_none(), "the body ends with its sender");
    }

    #[tokio::test]
    async fn queued_lines_are_all_delivered_before_the_end() {
        let (tx, rx) = mpsc::channel(1024);
        for i in 0..1000 {
            tx.send(line(i)).await.unwrap();
        }
        drop(tx);
        let chunks: Vec<Bytes> = gathered(rx).collect().await;
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let expected: Vec<u8> = (0..1000).flat_map(|i| line(i).to_vec()).collect();
        assert_eq!(all, expected);
        assert!(
            chunks.len() < 10,
            "{} chunks for 1000 queued lines",
            chunks.len()
        );
    }
}
