//! SPDY/3.1 framing, as the Kubernetes streaming protocols use it (the subset moby/spdystream
//! speaks: no flow control is enforced by either end).
//!
//! A frame is an 8-byte header and a payload. A control frame starts with the control bit,
//! the version (3) and its type; a data frame with a 31-bit stream id. Both then carry 8 bits
//! of flags and a 24-bit payload length. SYN_STREAM, SYN_REPLY and HEADERS carry a header
//! block: a count, then length-prefixed names and values, compressed as one zlib stream per
//! direction and connection, seeded with [`crate::spdy_dictionary::HEADER_DICTIONARY`] and
//! flushed (Z_SYNC_FLUSH) after each block.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::spdy_dictionary::HEADER_DICTIONARY;

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// The FIN flag of data frames and SYN_STREAM / SYN_REPLY / HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// Largest payload a frame can carry (24-bit length).
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;
/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// A frame's header names and values (names lowercase, as SPDY/3 requires).
pub type Headers = Vec<(String, String)>;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("reading or writing the SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY header compression: {0}")]
    Compression(String),
}

pub type Result<T, E = SpdyError> = std::result::Result<T, E>;

fn protocol(message: impl Into<String>) -> SpdyError {
    SpdyError::Protocol(message.into())
}

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// SETTINGS and control frames of other types: read and skipped.
    Other {
        frame_type: u16,
    },
}

/// The compressing side of a connection's header blocks (one per direction).
pub struct HeaderEncoder(Compress);

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> Self {
        let mut compress = Compress::new(Compression::default(), true);
        // a fresh stream always accepts a dictionary
        let _ = compress.set_dictionary(HEADER_DICTIONARY);
        HeaderEncoder(compress)
    }

    /// The compressed header block of `headers`.
    pub fn encode(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>> {
        let plain = header_block(headers)?;
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut consumed = 0usize;
        loop {
            out.reserve(plain.len() - consumed + 64);
            let before = self.0.total_in();
            self.0
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            consumed += (self.0.total_in() - before) as usize;
            if consumed == plain.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The decompressing side of a connection's header blocks.
pub struct HeaderDecoder(Decompress);

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    pub fn new() -> Self {
        HeaderDecoder(Decompress::new(true))
    }

    /// The headers of one compressed block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0usize;
        loop {
            out.reserve(4096);
            let (in_before, out_before) = (self.0.total_in(), out.len());
            match self
                .0
                .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(HEADER_DICTIONARY)
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
            consumed += (self.0.total_in() - in_before) as usize;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(protocol("header block larger than 256 KiB"));
            }
            let stalled = self.0.total_in() == in_before && out.len() == out_before;
            if consumed == block.len() && (out.len() < out.capacity() || stalled) {
                break;
            }
        }
        parse_header_block(&out)
    }
}

/// The uncompressed SPDY/3 header block of `headers`.
fn header_block(headers: &[(String, String)]) -> Result<Vec<u8>> {
    let mut block = Vec::new();
    let count = u32::try_from(headers.len()).map_err(|_| protocol("too many headers"))?;
    block.extend_from_slice(&count.to_be_bytes());
    for (name, value) in headers {
        for part in [name.as_bytes(), value.as_bytes()] {
            let len = u32::try_from(part.len()).map_err(|_| protocol("header too long"))?;
            block.extend_from_slice(&len.to_be_bytes());
            block.extend_from_slice(part);
        }
    }
    Ok(block)
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if data.len() < n {
        return Err(protocol("truncated header block"));
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn take_u32(data: &mut &[u8]) -> Result<u32> {
    let bytes = take(data, 4)?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn parse_header_block(mut data: &[u8]) -> Result<Headers> {
    let count = take_u32(&mut data)?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let name_len = take_u32(&mut data)? as usize;
        let name = String::from_utf8_lossy(take(&mut data, name_len)?).into_owned();
        let value_len = take_u32(&mut data)? as usize;
        let value = String::from_utf8_lossy(take(&mut data, value_len)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

fn control(frame_type: u16, flags: u8, payload: &[u8]) -> Result<Vec<u8>> {
    if payload.len() > MAX_PAYLOAD {
        return Err(protocol("control frame payload too large"));
    }
    let mut out = BytesMut::with_capacity(8 + payload.len());
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    out.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    out.put_slice(payload);
    Ok(out.to_vec())
}

fn fin_flag(fin: bool) -> u8 {
    if fin {
        FLAG_FIN
    } else {
        0
    }
}

fn stream_with_headers(stream_id: u32, block: &[u8]) -> Vec<u8> {
    let mut payload = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(block);
    payload
}

/// The bytes of `frame` (header blocks compressed with `encoder`).
pub fn encode(frame: &Frame, encoder: &mut HeaderEncoder) -> Result<Vec<u8>> {
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            if data.len() > MAX_PAYLOAD {
                return Err(protocol("data frame payload too large"));
            }
            let mut out = BytesMut::with_capacity(8 + data.len());
            out.put_u32(stream_id & 0x7fff_ffff);
            out.put_u32((u32::from(fin_flag(*fin)) << 24) | data.len() as u32);
            out.put_slice(data);
            Ok(out.to_vec())
        }
        Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            fin,
            headers,
        } => {
            let mut payload = BytesMut::new();
            payload.put_u32(stream_id & 0x7fff_ffff);
            payload.put_u32(associated_to & 0x7fff_ffff);
            payload.put_u8((priority & 0x07) << 5);
            payload.put_u8(0); // credential slot
            payload.put_slice(&encoder.encode(headers)?);
            control(TYPE_SYN_STREAM, fin_flag(*fin), &payload)
        }
        Frame::SynReply {
            stream_id,
            fin,
            headers,
        } => {
            let payload = stream_with_headers(*stream_id, &encoder.encode(headers)?);
            control(TYPE_SYN_REPLY, fin_flag(*fin), &payload)
        }
        Frame::Headers {
            stream_id,
            fin,
            headers,
        } => {
            let payload = stream_with_headers(*stream_id, &encoder.encode(headers)?);
            control(TYPE_HEADERS, fin_flag(*fin), &payload)
        }
        Frame::RstStream { stream_id, status } => {
            let mut payload = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
            payload.extend_from_slice(&status.to_be_bytes());
            control(TYPE_RST_STREAM, 0, &payload)
        }
        Frame::Ping { id } => control(TYPE_PING, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            let mut payload = (last_good_stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
            payload.extend_from_slice(&status.to_be_bytes());
            control(TYPE_GOAWAY, 0, &payload)
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut payload = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
            payload.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
            control(TYPE_WINDOW_UPDATE, 0, &payload)
        }
        Frame::Other { frame_type } => control(*frame_type, 0, &[]),
    }
}

/// The next frame of `reader`, or None when the connection ended between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    decoder: &mut HeaderDecoder,
) -> Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match reader.read(&mut head[..1]).await? {
        0 => return Ok(None),
        _ => reader.read_exact(&mut head[1..]).await?,
    };
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if head[0] & 0x80 == 0 {
        return Ok(Some(Frame::Data {
            stream_id: word & 0x7fff_ffff,
            fin: flags & FLAG_FIN != 0,
            data: Bytes::from(payload),
        }));
    }
    let version = ((word >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(protocol(format!("unsupported SPDY version {version}")));
    }
    parse_control((word & 0xffff) as u16, flags, &payload, decoder).map(Some)
}

fn parse_control(
    frame_type: u16,
    flags: u8,
    payload: &[u8],
    decoder: &mut HeaderDecoder,
) -> Result<Frame> {
    let fin = flags & FLAG_FIN != 0;
    let mut rest = payload;
    let frame = match frame_type {
        TYPE_SYN_STREAM => {
            let stream_id = take_u32(&mut rest)? & 0x7fff_ffff;
            let associated_to = take_u32(&mut rest)? & 0x7fff_ffff;
            let priority = take(&mut rest, 2)?[0] >> 5;
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                headers: decoder.decode(rest)?,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            let stream_id = take_u32(&mut rest)? & 0x7fff_ffff;
            let headers = decoder.decode(rest)?;
            if frame_type == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    fin,
                    headers,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    fin,
                    headers,
                }
            }
        }
        TYPE_RST_STREAM => Frame::RstStream {
            stream_id: take_u32(&mut rest)? & 0x7fff_ffff,
            status: take_u32(&mut rest)?,
        },
        TYPE_PING => Frame::Ping {
            id: take_u32(&mut rest)?,
        },
        TYPE_GOAWAY => Frame::GoAway {
            last_good_stream_id: take_u32(&mut rest)? & 0x7fff_ffff,
            status: take_u32(&mut rest).unwrap_or(0),
        },
        TYPE_WINDOW_UPDATE => Frame::WindowUpdate {
            stream_id: take_u32(&mut rest)? & 0x7fff_ffff,
            delta: take_u32(&mut rest)? & 0x7fff_ffff,
        },
        TYPE_SETTINGS => Frame::Other { frame_type },
        other => Frame::Other { frame_type: other },
    };
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    async fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let mut encoder = HeaderEncoder::new();
        let mut wire = Vec::new();
        for f in frames {
            wire.extend(encode(f, &mut encoder).unwrap());
        }
        let mut decoder = HeaderDecoder::new();
        let mut reader = &wire[..];
        let mut read = Vec::new();
        while let Some(f) = read_frame(&mut reader, &mut decoder).await.unwrap() {
            read.push(f);
        }
        read
    }

    #[tokio::test]
    async fn frames_survive_the_wire_with_one_compression_context() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                fin: false,
                headers: headers(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                fin: false,
                headers: headers(&[("streamtype", "stdout"), ("port", "80")]),
            },
            Frame::SynReply {
                stream_id: 3,
                fin: false,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Ping { id: 2 },
            Frame::RstStream {
                stream_id: 5,
                status: 5,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1024,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        assert_eq!(roundtrip(&frames).await, frames);
    }

    #[test]
    fn the_wire_layout_is_spdy3() {
        let mut encoder = HeaderEncoder::new();
        let data = encode(
            &Frame::Data {
                stream_id: 5,
                fin: true,
                data: Bytes::from_static(b"ab"),
            },
            &mut encoder,
        )
        .unwrap();
        assert_eq!(data, [0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']);
        let ping = encode(&Frame::Ping { id: 7 }, &mut encoder).unwrap();
        assert_eq!(ping, [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
        // the first header block is a zlib stream naming the SPDY dictionary (FDICT + its
        // Adler-32), as zlib's deflateSetDictionary writes it and Go's reader checks
        let syn = encode(
            &Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                fin: false,
                headers: headers(&[("streamtype", "error")]),
            },
            &mut encoder,
        )
        .unwrap();
        assert_eq!(&syn[..4], [0x80, 3, 0, 1]);
        let zlib = &syn[8 + 10..];
        assert_eq!(zlib[0] & 0x0f, 8, "deflate");
        assert_ne!(zlib[1] & 0x20, 0, "FDICT");
        assert_eq!(&zlib[2..6], 0xe3c6_a7c2u32.to_be_bytes());
    }

    #[tokio::test]
    async fn truncated_or_foreign_input_is_an_error() {
        let mut decoder = HeaderDecoder::new();
        // a version 2 control frame
        let mut v2: &[u8] = &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(read_frame(&mut v2, &mut decoder).await.is_err());
        // a header cut short
        let mut short: &[u8] = &[0x80, 3, 0];
        assert!(read_frame(&mut short, &mut decoder).await.is_err());
        // a header block that is not zlib
        let mut bad: &[u8] = &[0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4];
        assert!(read_frame(&mut bad, &mut decoder).await.is_err());
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'x']).is_err());
    }
}
