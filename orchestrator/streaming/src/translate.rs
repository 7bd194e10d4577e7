//! What the API server does between a WebSocket client and a SPDY upstream, as Kubernetes'
//! StreamTranslator and TunnelingHandler do:
//!
//! - [`websocket_to_spdy`]: a `v5.channel.k8s.io` client (kubectl exec/attach/cp) against a
//!   SPDY `v4.channel.k8s.io` server (the kubelet, and behind it containerd's streaming
//!   server). Each channel becomes a SPDY stream; v5's CLOSE signal on stdin becomes that
//!   stream's FIN (v4 over WebSocket has no way to say it, hence v5);
//! - [`websocket_tunnel`]: `SPDY/3.1+portforward.k8s.io`, where the client's SPDY frames ride
//!   in binary WebSocket messages and are handed on as the bytes of an upstream SPDY
//!   connection (port-forward).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::channel::{self, StreamSet, StreamType};
use crate::spdy::{self, Frame, HeaderDecoder, HeaderEncoder, SpdyError};

/// How long the upstream may take to accept the streams.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client may take to answer our Close before its connection is dropped: a
/// connection closed with the client's late messages unread ends in a reset, and a reset
/// can destroy the last messages (the exit status) before the client has read them.
const CLIENT_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Largest chunk of client input put in one data frame.
const MAX_DATA_FRAME: usize = 32 * 1024;

/// Frames to the upstream, written in order by one task.
type FrameSender = mpsc::Sender<Frame>;

/// Write the frames of `frames` to `writer` (compressing header blocks) until the channel
/// closes or writing fails.
async fn write_frames<W: AsyncWrite + Unpin>(mut writer: W, mut frames: mpsc::Receiver<Frame>) {
    let mut encoder = HeaderEncoder::new();
    while let Some(frame) = frames.recv().await {
        let bytes = match spdy::encode(&frame, &mut encoder) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "encoding a SPDY frame");
                break;
            }
        };
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// The streams of `set` with the SPDY stream ids they get (1, 3, 5, … in kubectl's order).
fn stream_ids(set: StreamSet) -> Vec<(u32, StreamType)> {
    set.types()
        .into_iter()
        .zip((1u32..).step_by(2))
        .map(|(t, id)| (id, t))
        .collect()
}

/// Relay the streams of `set` between a `v5.channel.k8s.io` WebSocket and a SPDY
/// connection that switched with `v4.channel.k8s.io`, until the upstream ends (then the
/// WebSocket is closed normally, which tells the client every stream is done) or the client
/// leaves (then the upstream connection is dropped).
pub async fn websocket_to_spdy<U>(socket: WebSocket, upstream: U, set: StreamSet)
where
    U: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(upstream);
    let (frames, frame_rx) = mpsc::channel::<Frame>(64);
    let writer_task = tokio::spawn(write_frames(writer, frame_rx));
    let ids = stream_ids(set);
    for (id, t) in &ids {
        let open = Frame::SynStream {
            stream_id: *id,
            associated_to: 0,
            priority: 0,
            fin: false,
            headers: vec![("streamtype".into(), t.name().into())],
        };
        if frames.send(open).await.is_err() {
            return;
        }
    }
    let (ws_out, ws_in) = socket.split();
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut down = tokio::spawn(upstream_to_client(
        reader,
        ws_out,
        ids.clone(),
        frames.clone(),
        ready_tx,
    ));
    let by_type: HashMap<StreamType, u32> = ids.iter().map(|(id, t)| (*t, *id)).collect();
    let mut up = tokio::spawn(client_to_upstream(ws_in, by_type, frames, ready_rx));
    tokio::select! {
        _ = &mut down => {
            let _ = tokio::time::timeout(CLIENT_CLOSE_GRACE, &mut up).await;
            up.abort();
        }
        _ = &mut up => down.abort(),
    }
    writer_task.abort();
}

/// Upstream frames to the client: data of stdout/stderr/error as channel messages; the
/// replies to our streams release the client's input; PINGs are answered.
async fn upstream_to_client<R: AsyncRead + Unpin>(
    mut reader: R,
    mut ws: futures::stream::SplitSink<WebSocket, Message>,
    ids: Vec<(u32, StreamType)>,
    frames: FrameSender,
    ready: oneshot::Sender<()>,
) {
    let mut decoder = HeaderDecoder::new();
    let channels: HashMap<u32, StreamType> = ids.iter().copied().collect();
    let mut unreplied: Vec<u32> = ids.iter().map(|(id, _)| *id).collect();
    let mut ready = Some(ready);
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    let outcome = loop {
        let next = if ready.is_some() {
            match tokio::time::timeout_at(deadline, spdy::read_frame(&mut reader, &mut decoder))
                .await
            {
                Ok(r) => r,
                Err(_) => break Err("the upstream did not accept the streams in time".into()),
            }
        } else {
            spdy::read_frame(&mut reader, &mut decoder).await
        };
        let frame = match next {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(SpdyError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(e) => break Err(e.to_string()),
        };
        match frame {
            Frame::SynReply { stream_id, .. } => {
                unreplied.retain(|id| *id != stream_id);
                if unreplied.is_empty() {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
            }
            Frame::Data {
                stream_id, data, ..
            } if !data.is_empty() => {
                let Some(t) = channels.get(&stream_id) else {
                    continue;
                };
                if ws
                    .send(Message::Binary(channel::message(t.channel(), &data)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Frame::RstStream { stream_id, .. } if unreplied.contains(&stream_id) => {
                break Err(format!("the upstream refused stream {stream_id}"));
            }
            Frame::Ping { id } if id % 2 == 0 => {
                let _ = frames.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break Ok(()),
            _ => {}
        }
    };
    let close = match outcome {
        Ok(()) => CloseFrame {
            code: 1000,
            reason: "".into(),
        },
        Err(reason) => {
            tracing::warn!(%reason, "stream to the container ended with an error");
            CloseFrame {
                code: 1011,
                reason: reason.chars().take(120).collect::<String>().into(),
            }
        }
    };
    let _ = ws.send(Message::Close(Some(close))).await;
    let _ = ws.close().await;
}

/// Client channel messages to the upstream streams, once the upstream accepted them.
async fn client_to_upstream(
    mut ws: futures::stream::SplitStream<WebSocket>,
    ids: HashMap<StreamType, u32>,
    frames: FrameSender,
    ready: oneshot::Receiver<()>,
) {
    if ready.await.is_err() {
        // the upstream side ended first; wait for the client to leave
        while let Some(Ok(_)) = ws.next().await {}
        return;
    }
    while let Some(Ok(message)) = ws.next().await {
        let data = match message {
            Message::Binary(d) => d,
            Message::Close(_) => break,
            _ => continue,
        };
        for frame in channel::client_frames(&data, &ids, MAX_DATA_FRAME) {
            if frames.send(frame).await.is_err() {
                return;
            }
        }
    }
}

/// Relay the bytes of binary WebSocket messages to and from `upstream` (a switched SPDY
/// connection) until either side ends.
pub async fn websocket_tunnel<U>(socket: WebSocket, upstream: U)
where
    U: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(upstream);
    let (mut ws_out, mut ws_in) = socket.split();
    let down = async move {
        let mut buf = vec![0u8; MAX_DATA_FRAME];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if ws_out.send(Message::Binary(chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = ws_out
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    };
    let up = async move {
        while let Some(Ok(message)) = ws_in.next().await {
            match message {
                Message::Binary(d) if writer.write_all(&d).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = writer.shutdown().await;
    };
    tokio::pin!(down, up);
    tokio::select! {
        _ = &mut down => {
            let _ = tokio::time::timeout(CLIENT_CLOSE_GRACE, &mut up).await;
        }
        _ = &mut up => {}
    }
}
