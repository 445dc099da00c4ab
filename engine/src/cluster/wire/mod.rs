//! The cluster protocol: the framed, versioned binary protocol on the one connection (TCP,
//! optionally TLS) an engine dials to the gateway. Calls are multiplexed on it, many in flight
//! at once, each named by a call id the gateway chooses; large payloads travel in chunks of at
//! most [`CHUNK`] bytes, so one big input does not hold up the other calls' frames.
//!
//! Every integer is little-endian at an explicit offset. A frame is a 16-byte header and a body:
//!
//! | offset | size | field      | meaning                                                        |
//! |-------:|-----:|------------|----------------------------------------------------------------|
//! | 0      | 4    | `len`      | body bytes after the header, at most [`MAX_BODY`]              |
//! | 4      | 1    | `kind`     | [`FrameKind`]                                                   |
//! | 5      | 1    | `flags`    | bit 0 [`MORE`]: another chunk of this call's payload follows; other bits are an error |
//! | 6      | 2    | reserved   | sent as zero, ignored on receipt                               |
//! | 8      | 8    | `call`     | the call the frame is about (0 for connection frames)          |
//!
//! Bodies, by kind (offsets from the start of the body):
//!
//! - `HELLO` (engine → gateway, the first frame): `0` magic [`MAGIC`] (8) · `8` `version` u16
//!   · `10` reserved u16 · `12` `token_len` u16, then the join token (≤ [`MAX_TOKEN`] bytes) ·
//!   `node_len` u16, then the node name (UTF-8, ≤ 255 bytes) · `count` u16, then per function:
//!   `name_len` u8 + name (a valid function name), `capacity` u32 (≥ 1: calls of it the engine
//!   holds at once), `max_payload` u32, `timeout_ms` u32, `flags` u8 (bit 0 `idempotent`, bit 1 `allow_get`).
//!   The magic and version come first so that any later version can be told apart and refused.
//! - `WELCOME` (gateway → engine): `0` magic (8) · `8` `version` u16 · `10` reserved u16 ·
//!   `12` `heartbeat_ms` u32 · `16` `engine_id` u32.
//! - `REFUSE` (either way, then the connection closes): `0` the sender's `version` u16 · `2`
//!   [`RefuseReason`] u8 · `3` text (UTF-8, lossy), saying why in words.
//! - `CALL` (gateway → engine, a call's first chunk): `0` `budget_us` u64 (the time left until
//!   the caller's deadline, 0 = the function's own timeout; a budget, not an instant, because
//!   the two machines' clocks differ) · `8` `input_len` u32 (the whole input, ≤ the function's
//!   `max_payload`) · `12` `name_len` u8 · `13` name · then the first chunk of the input.
//! - `DATA` (either way): the next chunk of the call's input or output.
//! - `RESULT` (engine → gateway, an answer's first chunk): `0` `status` u8 (0, or the
//!   [`ErrorKind`] code of a failure) · `1` reserved (3) · `4` `output_len` u32 (the whole
//!   output, or the failure's message) · `8` `queued_ns` u64 · `16` `running_ns` u64 · `24`
//!   `processing_ns` u64 · `32` the first chunk.
//! - `PING` / `PONG`: `0` `sent_ns` u64, the pinger's clock, echoed back (round-trip time).
//! - `DRAIN` (engine → gateway, no body): the engine stops; send it no new call.
//! - `DRAINED` (gateway → engine, no body): no call frame follows this one.
//!
//! A chunked payload is sent as the `CALL` or `RESULT` frame with [`MORE`] set, then `DATA`
//! frames of the same call, the last without [`MORE`]; the chunks add up to the declared length
//! exactly ([`Assembly`] checks it).
//!
//! Decoding is total: [`FrameHeader::decode`] and [`Frame::decode`] turn any bytes into a frame
//! or into a [`ClusterError`] naming the field at fault; nothing panics or reads out of bounds
//! (the `cluster_frame` fuzz target under `engine/fuzz/` checks it).

use bytes::{BufMut, Bytes, BytesMut};

use gloam_core::protocol::validate_function_name;
use gloam_core::ErrorKind;

use super::ClusterError;

/// The cluster protocol version this build speaks.
pub const VERSION: u16 = 1;
/// First bytes of `HELLO` and `WELCOME`.
pub const MAGIC: [u8; 8] = *b"GLOAM-CL";
/// Size of a frame header.
pub const HEADER_LEN: usize = 16;
/// Largest body of any frame.
pub const MAX_BODY: usize = 1 << 20;
/// Largest payload chunk in one frame.
pub const CHUNK: usize = 64 * 1024;
/// Longest join token.
pub const MAX_TOKEN: usize = 1024;
/// Flag bit: another chunk of this call's payload follows.
pub const MORE: u8 = 1;
/// Most functions one engine registers (function ids are 12 bits).
pub const MAX_FUNCTIONS: usize = 4095;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// engine → gateway: who I am, my token, my functions.
    Hello = 1,
    /// gateway → engine: joined.
    Welcome = 2,
    /// either way: refused, with the reason; the connection closes.
    Refuse = 3,
    /// gateway → engine: run this call.
    Call = 4,
    /// either way: the next chunk of a payload.
    Data = 5,
    /// engine → gateway: the call's answer.
    Result = 6,
    /// either way: are you there?
    Ping = 7,
    /// either way: yes.
    Pong = 8,
    /// engine → gateway: I am stopping.
    Drain = 9,
    /// gateway → engine: no more calls will come.
    Drained = 10,
}

impl FrameKind {
    /// The kind for a wire byte.
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        use FrameKind::*;
        Some(match b {
            1 => Hello,
            2 => Welcome,
            3 => Refuse,
            4 => Call,
            5 => Data,
            6 => Result,
            7 => Ping,
            8 => Pong,
            9 => Drain,
            10 => Drained,
            _ => return None,
        })
    }
}

/// Why a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RefuseReason {
    /// The peers speak different protocol versions.
    Version = 1,
    /// The join token is missing or wrong.
    Token = 2,
    /// A frame did not decode or came out of turn.
    Protocol = 3,
    /// Anything else (the text says).
    Other = 4,
}

impl RefuseReason {
    fn from_u8(b: u8) -> Option<RefuseReason> {
        Some(match b {
            1 => RefuseReason::Version,
            2 => RefuseReason::Token,
            3 => RefuseReason::Protocol,
            4 => RefuseReason::Other,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Body length.
    pub len: u32,
    /// Kind.
    pub kind: FrameKind,
    /// Flags ([`MORE`]).
    pub flags: u8,
    /// Call id.
    pub call: u64,
}

impl FrameHeader {
    /// Decodes and checks a header: known kind and flags, body within [`MAX_BODY`].
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<FrameHeader, ClusterError> {
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if len as usize > MAX_BODY {
            return Err(ClusterError::frame(
                "len",
                format!("{len} bytes, beyond the {MAX_BODY}-byte maximum"),
            ));
        }
        let kind = FrameKind::from_u8(b[4])
            .ok_or_else(|| ClusterError::frame("kind", format!("unknown frame kind {}", b[4])))?;
        let flags = b[5];
        if flags & !MORE != 0 {
            return Err(ClusterError::frame(
                "flags",
                format!("unknown bits {:#04x}", flags & !MORE),
            ));
        }
        let mut call = [0u8; 8];
        call.copy_from_slice(&b[8..16]);
        Ok(FrameHeader {
            len,
            kind,
            flags,
            call: u64::from_le_bytes(call),
        })
    }

    /// Whether [`MORE`] is set.
    pub fn more(&self) -> bool {
        self.flags & MORE != 0
    }
}

/// One function as an engine registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Its name.
    pub name: String,
    /// Calls of it the engine holds at once (running and queued); at least 1.
    pub capacity: u32,
    /// Largest input or output, bytes.
    pub max_payload: u32,
    /// Its own deadline, ms.
    pub timeout_ms: u32,
    /// Safe to run twice: a call lost with its engine is retried once on another.
    pub idempotent: bool,
    /// `GET /function/<name>` is accepted besides `POST`.
    pub allow_get: bool,
}

/// `HELLO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: u16,
    /// The join token.
    pub token: Vec<u8>,
    /// The node's name (for status and logs).
    pub node: String,
    /// What it serves.
    pub functions: Vec<FunctionInfo>,
}

/// `WELCOME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The gateway's version.
    pub version: u16,
    /// How often each side pings; silence for three intervals ends the connection.
    pub heartbeat_ms: u32,
    /// The id the gateway gave this engine.
    pub engine_id: u32,
}

/// The fixed fields of a `CALL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHead {
    /// Time left until the caller's deadline, µs; 0 = the function's own timeout.
    pub budget_us: u64,
    /// The whole input's length.
    pub input_len: u32,
    /// The function.
    pub name: String,
}

/// The fixed fields of a `RESULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultHead {
    /// `None`: success; else the failure's kind.
    pub status: Option<ErrorKind>,
    /// The whole output's (or message's) length.
    pub output_len: u32,
    /// Receive → dispatch in the engine.
    pub queued_ns: u64,
    /// Dispatch → completion in the engine.
    pub running_ns: u64,
    /// The handler's own time.
    pub processing_ns: u64,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// See the module docs for each body.
    Hello(Hello),
    #[allow(missing_docs)]
    Welcome(Welcome),
    #[allow(missing_docs)]
    Refuse {
        version: u16,
        reason: RefuseReason,
        text: String,
    },
    #[allow(missing_docs)]
    Call {
        call: u64,
        more: bool,
        head: CallHead,
        chunk: Bytes,
    },
    #[allow(missing_docs)]
    Data { call: u64, more: bool, chunk: Bytes },
    #[allow(missing_docs)]
    Result {
        call: u64,
        more: bool,
        head: ResultHead,
        chunk: Bytes,
    },
    #[allow(missing_docs)]
    Ping { sent_ns: u64 },
    #[allow(missing_docs)]
    Pong { sent_ns: u64 },
    #[allow(missing_docs)]
    Drain,
    #[allow(missing_docs)]
    Drained,
}

impl Frame {
    /// Decodes the body of a frame whose header was `header`.
    pub fn decode(header: &FrameHeader, body: Bytes) -> Result<Frame, ClusterError> {
        if body.len() != header.len as usize {
            return Err(ClusterError::frame(
                "len",
                format!("says {} bytes, the body has {}", header.len, body.len()),
            ));
        }
        let (call, more) = (header.call, header.more());
        let mut r = Reader { body, at: 0 };
        let frame = match header.kind {
            FrameKind::Hello => Frame::Hello(decode_hello(&mut r)?),
            FrameKind::Welcome => {
                let version = r.magic_and_version()?;
                Frame::Welcome(Welcome {
                    version,
                    heartbeat_ms: r.u32("heartbeat_ms")?.max(1),
                    engine_id: r.u32("engine_id")?,
                })
            }
            FrameKind::Refuse => {
                let version = r.u16("version")?;
                let code = r.u8("reason")?;
                let reason = RefuseReason::from_u8(code).ok_or_else(|| {
                    ClusterError::frame("reason", format!("unknown reason {code}"))
                })?;
                let text = String::from_utf8_lossy(&r.rest()).into_owned();
                Frame::Refuse {
                    version,
                    reason,
                    text,
                }
            }
            FrameKind::Call => {
                let budget_us = r.u64("budget_us")?;
                let input_len = r.u32("input_len")?;
                let n = usize::from(r.u8("name_len")?);
                let name = r.text(n, "name")?;
                validate_function_name(&name).map_err(|why| ClusterError::frame("name", why))?;
                let chunk = r.rest();
                check_first_chunk(&chunk, input_len, more, "input_len")?;
                let head = CallHead {
                    budget_us,
                    input_len,
                    name,
                };
                Frame::Call {
                    call,
                    more,
                    head,
                    chunk,
                }
            }
            FrameKind::Data => Frame::Data {
                call,
                more,
                chunk: r.rest(),
            },
            FrameKind::Result => {
                let code = r.u8("status")?;
                let status = match code {
                    0 => None,
                    c => Some(ErrorKind::from_code(c).ok_or_else(|| {
                        ClusterError::frame("status", format!("unknown error kind {c}"))
                    })?),
                };
                r.take(3, "reserved")?;
                let output_len = r.u32("output_len")?;
                let head = ResultHead {
                    status,
                    output_len,
                    queued_ns: r.u64("queued_ns")?,
                    running_ns: r.u64("running_ns")?,
                    processing_ns: r.u64("processing_ns")?,
                };
                let chunk = r.rest();
                check_first_chunk(&chunk, output_len, more, "output_len")?;
                Frame::Result {
                    call,
                    more,
                    head,
                    chunk,
                }
            }
            FrameKind::Ping => Frame::Ping {
                sent_ns: r.u64("sent_ns")?,
            },
            FrameKind::Pong => Frame::Pong {
                sent_ns: r.u64("sent_ns")?,
            },
            FrameKind::Drain => Frame::Drain,
            FrameKind::Drained => Frame::Drained,
        };
        r.end(kind_name(header.kind))?;
        Ok(frame)
    }

    /// Appends the frame, header and body, to `out`. Chunks longer than [`CHUNK`] and bodies
    /// longer than [`MAX_BODY`] are the caller's bug: [`call_frames`] and [`result_frames`]
    /// split payloads.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_bytes(0, HEADER_LEN);
        let (kind, call, more) = match self {
            Frame::Hello(h) => {
                out.put_slice(&MAGIC);
                out.put_u16_le(h.version);
                out.put_u16_le(0);
                put_str16(out, &h.token);
                put_str16(out, h.node.as_bytes());
                out.put_u16_le(h.functions.len() as u16);
                for f in &h.functions {
                    out.put_u8(f.name.len() as u8);
                    out.put_slice(f.name.as_bytes());
                    out.put_u32_le(f.capacity);
                    out.put_u32_le(f.max_payload);
                    out.put_u32_le(f.timeout_ms);
                    out.put_u8(u8::from(f.idempotent) | (u8::from(f.allow_get) << 1));
                }
                (FrameKind::Hello, 0, false)
            }
            Frame::Welcome(w) => {
                out.put_slice(&MAGIC);
                out.put_u16_le(w.version);
                out.put_u16_le(0);
                out.put_u32_le(w.heartbeat_ms);
                out.put_u32_le(w.engine_id);
                (FrameKind::Welcome, 0, false)
            }
            Frame::Refuse {
                version,
                reason,
                text,
            } => {
                out.put_u16_le(*version);
                out.put_u8(*reason as u8);
                out.put_slice(&text.as_bytes()[..text.len().min(MAX_BODY / 2)]);
                (FrameKind::Refuse, 0, false)
            }
            Frame::Call {
                call,
                more,
                head,
                chunk,
            } => {
                out.put_u64_le(head.budget_us);
                out.put_u32_le(head.input_len);
                out.put_u8(head.name.len() as u8);
                out.put_slice(head.name.as_bytes());
                out.put_slice(chunk);
                (FrameKind::Call, *call, *more)
            }
            Frame::Data { call, more, chunk } => {
                out.put_slice(chunk);
                (FrameKind::Data, *call, *more)
            }
            Frame::Result {
                call,
                more,
                head,
                chunk,
            } => {
                out.put_u8(head.status.map_or(0, ErrorKind::code));
                out.put_bytes(0, 3);
                out.put_u32_le(head.output_len);
                out.put_u64_le(head.queued_ns);
                out.put_u64_le(head.running_ns);
                out.put_u64_le(head.processing_ns);
                out.put_slice(chunk);
                (FrameKind::Result, *call, *more)
            }
            Frame::Ping { sent_ns } => {
                out.put_u64_le(*sent_ns);
                (FrameKind::Ping, 0, false)
            }
            Frame::Pong { sent_ns } => {
                out.put_u64_le(*sent_ns);
                (FrameKind::Pong, 0, false)
            }
            Frame::Drain => (FrameKind::Drain, 0, false),
            Frame::Drained => (FrameKind::Drained, 0, false),
        };
        let len = (out.len() - start - HEADER_LEN) as u32;
        let h = &mut out[start..start + HEADER_LEN];
        h[0..4].copy_from_slice(&len.to_le_bytes());
        h[4] = kind as u8;
        h[5] = if more { MORE } else { 0 };
        h[8..16].copy_from_slice(&call.to_le_bytes());
    }
}

fn put_str16(out: &mut BytesMut, s: &[u8]) {
    out.put_u16_le(s.len() as u16);
    out.put_slice(s);
}

fn kind_name(k: FrameKind) -> &'static str {
    match k {
        FrameKind::Hello => "HELLO",
        FrameKind::Welcome => "WELCOME",
        FrameKind::Refuse => "REFUSE",
        FrameKind::Call => "CALL",
        FrameKind::Data => "DATA",
        FrameKind::Result => "RESULT",
        FrameKind::Ping => "PING",
        FrameKind::Pong => "PONG",
        FrameKind::Drain => "DRAIN",
        FrameKind::Drained => "DRAINED",
    }
}

/// A first chunk is never longer than the whole it starts, and a lone chunk is the whole.
fn check_first_chunk(
    chunk: &Bytes,
    total: u32,
    more: bool,
    field: &'static str,
) -> Result<(), ClusterError> {
    let len = chunk.len() as u64;
    if len > u64::from(total) || (!more && len != u64::from(total)) {
        return Err(ClusterError::frame(
            field,
            format!("{total} bytes declared, the chunks disagree ({len} in the first)"),
        ));
    }
    Ok(())
}

mod body;
mod chunk;

use body::{decode_hello, Reader};
pub use chunk::{call_frames, result_frames, Assembly};

#[cfg(test)]
mod tests;
