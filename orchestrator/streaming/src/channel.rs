//! The remote command streams (`streamType` stdin, stdout, stderr, error, resize) and the
//! `channel.k8s.io` WebSocket framing: every binary message starts with its channel byte
//! (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize); `v5.channel.k8s.io` adds channel 255,
//! whose one-byte payload names a channel the sender closed.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::spdy::Frame;

/// The v5 WebSocket subprotocol of exec and attach.
pub const V5_CHANNEL: &str = "v5.channel.k8s.io";
/// The SPDY stream protocol spoken upstream (the last one runtimes' servers understand).
pub const V4_CHANNEL: &str = "v4.channel.k8s.io";
/// The SPDY port-forward protocol.
pub const PORT_FORWARD: &str = "portforward.k8s.io";
/// Port-forward's SPDY frames tunnelled in WebSocket messages.
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// v5's close signal channel.
pub const CLOSE_CHANNEL: u8 = 255;

/// One stream of a remote command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl StreamType {
    /// The `streamType` header value.
    pub fn name(self) -> &'static str {
        match self {
            StreamType::Error => "error",
            StreamType::Stdin => "stdin",
            StreamType::Stdout => "stdout",
            StreamType::Stderr => "stderr",
            StreamType::Resize => "resize",
        }
    }

    /// The channel byte of the WebSocket protocols.
    pub fn channel(self) -> u8 {
        match self {
            StreamType::Stdin => 0,
            StreamType::Stdout => 1,
            StreamType::Stderr => 2,
            StreamType::Error => 3,
            StreamType::Resize => 4,
        }
    }
}

/// Which streams a remote command has (the request's stdin/stdout/stderr/tty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSet {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamSet {
    /// The streams in the order kubectl creates them: error, stdin, stdout, stderr (never
    /// with a TTY, whose output is one stream), resize (with a TTY only).
    pub fn types(self) -> Vec<StreamType> {
        let mut types = vec![StreamType::Error];
        if self.stdin {
            types.push(StreamType::Stdin);
        }
        if self.stdout {
            types.push(StreamType::Stdout);
        }
        if self.stderr && !self.tty {
            types.push(StreamType::Stderr);
        }
        if self.tty {
            types.push(StreamType::Resize);
        }
        types
    }
}

/// A channel message: the channel byte, then `data`.
pub fn message(channel: u8, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + data.len());
    out.extend_from_slice(&[channel]);
    out.extend_from_slice(data);
    out.freeze()
}

/// The SPDY frames a client's v5 channel message asks for: its stdin or resize bytes as
/// data frames of at most `max_frame` bytes, a close of stdin as stdin's FIN. Channels the
/// command does not have are dropped, as Kubernetes drops them.
pub fn client_frames(
    message: &[u8],
    ids: &HashMap<StreamType, u32>,
    max_frame: usize,
) -> Vec<Frame> {
    let Some((&channel, payload)) = message.split_first() else {
        return Vec::new();
    };
    let target = match channel {
        0 => StreamType::Stdin,
        4 => StreamType::Resize,
        CLOSE_CHANNEL => {
            let closes_stdin = payload.first() == Some(&StreamType::Stdin.channel());
            return match ids.get(&StreamType::Stdin) {
                Some(&stream_id) if closes_stdin => vec![Frame::Data {
                    stream_id,
                    fin: true,
                    data: Bytes::new(),
                }],
                _ => Vec::new(),
            };
        }
        _ => return Vec::new(),
    };
    let Some(&stream_id) = ids.get(&target) else {
        return Vec::new();
    };
    payload
        .chunks(max_frame.max(1))
        .map(|chunk| Frame::Data {
            stream_id,
            fin: false,
            data: Bytes::copy_from_slice(chunk),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_kubectls_order() {
        let all = StreamSet {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(
            all.types(),
            [
                StreamType::Error,
                StreamType::Stdin,
                StreamType::Stdout,
                StreamType::Stderr
            ]
        );
        let tty = StreamSet { tty: true, ..all };
        assert_eq!(
            tty.types(),
            [
                StreamType::Error,
                StreamType::Stdin,
                StreamType::Stdout,
                StreamType::Resize
            ]
        );
        assert_eq!(StreamSet::default().types(), [StreamType::Error]);
    }

    #[test]
    fn client_messages_become_frames() {
        let ids: HashMap<StreamType, u32> = [(StreamType::Stdin, 3), (StreamType::Resize, 7)]
            .into_iter()
            .collect();
        let frames = client_frames(b"\x00hello", &ids, 2);
        let data: Vec<&[u8]> = frames
            .iter()
            .map(|f| match f {
                Frame::Data {
                    stream_id: 3,
                    fin: false,
                    data,
                } => &data[..],
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(data, [&b"he"[..], b"ll", b"o"]);
        assert_eq!(
            client_frames(b"\xff\x00", &ids, 1024),
            [Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::new()
            }]
        );
        assert!(client_frames(b"\xff\x01", &ids, 1024).is_empty());
        assert_eq!(client_frames(b"\x04{\"Width\":80}", &ids, 1024).len(), 1);
        // output channels, unknown channels and empty messages carry nothing upstream
        assert!(client_frames(b"\x01x", &ids, 1024).is_empty());
        assert!(client_frames(b"\x09x", &ids, 1024).is_empty());
        assert!(client_frames(b"", &ids, 1024).is_empty());
        assert!(client_frames(b"\x00x", &HashMap::new(), 1024).is_empty());
        assert_eq!(&message(2, b"err")[..], b"\x02err");
    }
}
