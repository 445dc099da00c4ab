//! The wire protocol: fixed 1024-byte messages, a 64-byte header and 960 inline payload bytes.
//!
//! Every integer is little-endian at an explicit offset; there are no bit fields and no padding
//! that depends on a compiler. The header layout:
//!
//! | offset | size | field              | meaning                                                        |
//! |-------:|-----:|--------------------|----------------------------------------------------------------|
//! | 0      | 1    | `version`          | protocol version, [`PROTOCOL_VERSION`]                          |
//! | 1      | 1    | `kind`             | [`Kind`]                                                        |
//! | 2      | 2    | `flags`            | [`flags`] bits; unknown bits are an error                      |
//! | 4      | 2    | `function_id`      | the called function (or the worker's own function in `HELLO`)  |
//! | 6      | 2    | `method_id`        | method within the function (0 for plain functions)             |
//! | 8      | 4    | `caller`           | worker id of the caller, 0 for an external (gateway) call      |
//! | 12     | 4    | `sequence`         | the caller's call counter                                      |
//! | 16     | 8    | `parent_call_id`   | the caller's current call ([`CallId`]), 0 = none                |
//! | 24     | 8    | `send_ts`          | sender's `CLOCK_MONOTONIC` in ns just before the write          |
//! | 32     | 4    | `payload_len`      | payload length in bytes                                        |
//! | 36     | 1    | `payload_loc`      | [`PayloadLocation`]: inline, descriptor, or trailing the message |
//! | 37     | 1    | `status`           | 0, or the [`ErrorKind`] code of a `FAILED`/`REJECT`            |
//! | 38     | 2    | reserved           | sent as zero, ignored on receipt                               |
//! | 40     | 8    | `deadline_ns`      | absolute `CLOCK_MONOTONIC` deadline in ns, 0 = none            |
//! | 48     | 8    | `processing_ns`    | worker-reported handler time (in `COMPLETE`/`FAILED`)          |
//! | 56     | 4    | `dispatch_delay_ns`| worker-reported delay engine send → worker receive (saturates) |
//! | 60     | 4    | `worker_id`        | the worker addressed or reporting (assigned in `WELCOME`)      |
//! | 64     | 960  | inline payload     | the first `payload_len` bytes when `payload_loc` is inline     |
//!
//! Decoding is total: [`Message::decode`] turns any byte string into a [`Message`] or into a
//! [`ProtocolError`] that names the offending field; nothing panics or reads out of bounds.

use std::fmt;

use crate::error::ErrorKind;

pub use crate::hello::{validate_function_name, Hello};

/// Size of every message on a channel.
pub const MESSAGE_SIZE: usize = 1024;
/// Size of the header.
pub const HEADER_SIZE: usize = 64;
/// Bytes of payload that travel inside the message.
pub const INLINE_CAPACITY: usize = MESSAGE_SIZE - HEADER_SIZE;
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 3;
/// Default maximum payload (16 MiB).
pub const DEFAULT_MAX_PAYLOAD: u64 = 16 * 1024 * 1024;
/// Hard ceiling of any payload limit: lengths are u32 on the wire.
pub const MAX_PAYLOAD_CEILING: u64 = u32::MAX as u64;

/// Header field offsets (documented in the module docs).
pub mod offset {
    #![allow(missing_docs)]
    pub const VERSION: usize = 0;
    pub const KIND: usize = 1;
    pub const FLAGS: usize = 2;
    pub const FUNCTION_ID: usize = 4;
    pub const METHOD_ID: usize = 6;
    pub const CALLER: usize = 8;
    pub const SEQUENCE: usize = 12;
    pub const PARENT_CALL_ID: usize = 16;
    pub const SEND_TS: usize = 24;
    pub const PAYLOAD_LEN: usize = 32;
    pub const PAYLOAD_LOC: usize = 36;
    pub const STATUS: usize = 37;
    pub const RESERVED: usize = 38;
    pub const DEADLINE_NS: usize = 40;
    pub const PROCESSING_NS: usize = 48;
    pub const DISPATCH_DELAY_NS: usize = 56;
    pub const WORKER_ID: usize = 60;
    pub const INLINE: usize = 64;
}

/// Flag bits of the `flags` field.
pub mod flags {
    /// The `FAILED` message text was cut to fit the inline area.
    pub const TRUNCATED: u16 = 1 << 0;
    /// In `WELCOME`: the worker's channel is its shared-memory ring region; the region, its
    /// doorbell region and the engine's doorbell region come with it as descriptors.
    pub const RING: u16 = 1 << 1;
    /// In `DISPATCH`: the call came on a direct lane from its caller, not from the engine
    /// (see [`crate::lane`]); in `COMPLETE`/`FAILED` sent to the engine: the record of such a
    /// call (header only), kept for the engine's counts.
    pub const LANE: u16 = 1 << 2;
    /// With [`LANE`] in a record: the engine had revoked the lease, which ended with this call.
    pub const LANE_END: u16 = 1 << 3;
    /// In `WELCOME`: the worker's channel is a pair of pipes (the FIFO transport); the read
    /// end of engine → worker and the write end of worker → engine come with it as
    /// descriptors, in that order.
    pub const FIFO: u16 = 1 << 4;
    /// In `PAYLOAD`: the payload is the call's output (else its input).
    pub const OUTPUT: u16 = 1 << 5;
    /// Every bit this version knows.
    pub const KNOWN: u16 = TRUNCATED | RING | LANE | LANE_END | FIFO | OUTPUT;
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// worker → engine (socket): "I serve function F"; inline payload is [`Hello`].
    Hello = 1,
    /// engine → worker (socket): accepted; `worker_id` assigned; the function table trails.
    Welcome = 2,
    /// engine → worker (socket): refused; `status` + text.
    Reject = 3,
    /// worker → engine (socket): its channel is open, send calls.
    Ready = 4,
    /// engine → worker: run this call.
    Dispatch = 5,
    /// worker → engine: internal call to another function.
    Invoke = 6,
    /// worker → engine, and engine → calling worker: the call succeeded; payload = output.
    Complete = 7,
    /// worker → engine, and engine → calling worker: the call failed; `status` + text.
    Failed = 8,
    /// engine → worker: finish the current call, then exit the loop.
    Retire = 9,
    /// engine → worker (socket, with descriptors): a direct-lane lease this worker is an end
    /// of, with the lease's region (and, for the holder, the callee's doorbell region); see
    /// [`crate::lease`].
    Lease = 10,
    /// either way (socket, with one descriptor): the payload of a call that does not fit
    /// inline, sent just before the message naming it; see [`crate::payload`].
    Payload = 11,
}

impl Kind {
    /// The kind for a wire byte.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Reject,
            4 => Kind::Ready,
            5 => Kind::Dispatch,
            6 => Kind::Invoke,
            7 => Kind::Complete,
            8 => Kind::Failed,
            9 => Kind::Retire,
            10 => Kind::Lease,
            11 => Kind::Payload,
            _ => return None,
        })
    }
}

/// Where a payload lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum PayloadLocation {
    /// In the message's inline area (`payload_len` ≤ 960).
    #[default]
    Inline = 0,
    /// In a sealed memfd, sent on the engine socket with a `PAYLOAD` record just before the
    /// message (see [`crate::payload`]).
    Descriptor = 1,
    /// Right after the message on a stream socket (handshake only).
    Trailing = 2,
}

impl PayloadLocation {
    /// The location for a wire byte.
    pub fn from_u8(b: u8) -> Option<PayloadLocation> {
        Some(match b {
            0 => PayloadLocation::Inline,
            1 => PayloadLocation::Descriptor,
            2 => PayloadLocation::Trailing,
            _ => return None,
        })
    }
}

/// A call id: (caller, sequence) packed in a u64.
///
/// | bits  | field    | range                                                   |
/// |-------|----------|---------------------------------------------------------|
/// | 0–31  | sequence | the caller's counter (wraps)                            |
/// | 32–63 | caller   | worker id of the caller (slot and generation), 0 = gateway |
///
/// Worker ids carry a generation (the engine never gives the same id to two incarnations of
/// a worker slot in a row), so a call id names one call of one worker's lifetime: a worker
/// restarted in the slot of a dead one cannot reuse an id its predecessor's orphaned calls
/// still hold. The called function and method travel in the header beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CallId(pub u64);

impl CallId {
    /// Most logical workers one engine addresses at once (worker ids have 16 bits of slot).
    pub const MAX_CALLER: u32 = 0xFFFF;
    /// Largest function id.
    pub const MAX_FUNCTION: u16 = 0x0FFF;

    /// Packs a caller's worker id and its sequence number.
    pub const fn new(caller: u32, sequence: u32) -> CallId {
        CallId((sequence as u64) | ((caller as u64) << 32))
    }
    /// The sequence part.
    pub const fn sequence(self) -> u32 {
        self.0 as u32
    }
    /// The caller part (0 for the gateway).
    pub const fn caller(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A decoding failure, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Fewer than [`MESSAGE_SIZE`] bytes.
    #[error("truncated message: {len} bytes, expected {MESSAGE_SIZE}")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// More than [`MESSAGE_SIZE`] bytes.
    #[error("oversized message: {len} bytes, expected {MESSAGE_SIZE}")]
    TooLong {
        /// Bytes received.
        len: usize,
    },
    /// `version` is not [`PROTOCOL_VERSION`].
    #[error("field `version`: peer speaks protocol {found}, this build speaks {PROTOCOL_VERSION}")]
    BadVersion {
        /// The version byte received.
        found: u8,
    },
    /// `kind` is not a known [`Kind`].
    #[error("field `kind`: unknown message kind {0}")]
    UnknownKind(u8),
    /// `flags` has bits this version does not know.
    #[error("field `flags`: unknown bits {0:#06x}")]
    UnknownFlags(u16),
    /// `payload_loc` is not a known [`PayloadLocation`].
    #[error("field `payload_loc`: unknown payload location {0}")]
    UnknownPayloadLocation(u8),
    /// `status` is neither 0 nor an [`ErrorKind`] code.
    #[error("field `status`: unknown error kind {0}")]
    UnknownStatus(u8),
    /// `payload_len` exceeds the inline area for an inline payload.
    #[error(
        "field `payload_len`: {len} bytes inline, beyond the {INLINE_CAPACITY}-byte inline area"
    )]
    InlineTooLong {
        /// The length claimed.
        len: u32,
    },
    /// `payload_len` exceeds the payload limit.
    #[error("field `payload_len`: {len} bytes, beyond the payload limit of {limit} bytes")]
    PayloadTooLong {
        /// The length claimed.
        len: u32,
        /// The limit in force.
        limit: u64,
    },
    /// A message kind arrived where it has no meaning (e.g. `HELLO` on a worker's channel).
    #[error("unexpected message kind {found:?}, expected {expected}")]
    Unexpected {
        /// What arrived.
        found: Kind,
        /// What was expected.
        expected: &'static str,
    },
    /// A structured payload (HELLO, function table) is malformed.
    #[error("field `{field}`: {reason}")]
    BadPayload {
        /// The payload field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// The decoded header of a message. Construct with [`Header::new`] and the public fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// See the module docs for every field.
    pub kind: Kind,
    #[allow(missing_docs)]
    pub flags: u16,
    #[allow(missing_docs)]
    pub function_id: u16,
    #[allow(missing_docs)]
    pub method_id: u16,
    #[allow(missing_docs)]
    pub caller: u32,
    #[allow(missing_docs)]
    pub sequence: u32,
    #[allow(missing_docs)]
    pub parent_call_id: u64,
    #[allow(missing_docs)]
    pub send_ts: u64,
    #[allow(missing_docs)]
    pub payload_len: u32,
    #[allow(missing_docs)]
    pub payload_loc: PayloadLocation,
    /// `None` = success / not applicable.
    pub status: Option<ErrorKind>,
    #[allow(missing_docs)]
    pub deadline_ns: u64,
    #[allow(missing_docs)]
    pub processing_ns: u64,
    #[allow(missing_docs)]
    pub dispatch_delay_ns: u32,
    #[allow(missing_docs)]
    pub worker_id: u32,
}

impl Header {
    /// A header of `kind` with every other field zero.
    pub const fn new(kind: Kind) -> Header {
        Header {
            kind,
            flags: 0,
            function_id: 0,
            method_id: 0,
            caller: 0,
            sequence: 0,
            parent_call_id: 0,
            send_ts: 0,
            payload_len: 0,
            payload_loc: PayloadLocation::Inline,
            status: None,
            deadline_ns: 0,
            processing_ns: 0,
            dispatch_delay_ns: 0,
            worker_id: 0,
        }
    }

    /// The id of the call this message is about.
    pub const fn call_id(&self) -> CallId {
        CallId::new(self.caller, self.sequence)
    }

    /// Sets caller and sequence from a call id.
    pub fn set_call_id(&mut self, id: CallId) {
        self.caller = id.caller();
        self.sequence = id.sequence();
    }

    /// Writes the header into the first [`HEADER_SIZE`] bytes of `out`.
    pub fn encode(&self, out: &mut [u8; MESSAGE_SIZE]) {
        use offset::*;
        out[VERSION] = PROTOCOL_VERSION;
        out[KIND] = self.kind as u8;
        put16(out, FLAGS, self.flags);
        put16(out, FUNCTION_ID, self.function_id);
        put16(out, METHOD_ID, self.method_id);
        put32(out, CALLER, self.caller);
        put32(out, SEQUENCE, self.sequence);
        put64(out, PARENT_CALL_ID, self.parent_call_id);
        put64(out, SEND_TS, self.send_ts);
        put32(out, PAYLOAD_LEN, self.payload_len);
        out[PAYLOAD_LOC] = self.payload_loc as u8;
        out[STATUS] = self.status.map_or(0, ErrorKind::code);
        put16(out, RESERVED, 0);
        put64(out, DEADLINE_NS, self.deadline_ns);
        put64(out, PROCESSING_NS, self.processing_ns);
        put32(out, DISPATCH_DELAY_NS, self.dispatch_delay_ns);
        put32(out, WORKER_ID, self.worker_id);
    }

    /// Decodes and validates a header from a whole message (`max_payload` bounds descriptor and
    /// trailing payloads).
    pub fn decode(bytes: &[u8], max_payload: u64) -> Result<Header, ProtocolError> {
        use offset::*;
        if bytes.len() < MESSAGE_SIZE {
            return Err(ProtocolError::Truncated { len: bytes.len() });
        }
        if bytes.len() > MESSAGE_SIZE {
            return Err(ProtocolError::TooLong { len: bytes.len() });
        }
        if bytes[VERSION] != PROTOCOL_VERSION {
            return Err(ProtocolError::BadVersion {
                found: bytes[VERSION],
            });
        }
        let kind = Kind::from_u8(bytes[KIND]).ok_or(ProtocolError::UnknownKind(bytes[KIND]))?;
        let flags = get16(bytes, FLAGS);
        if flags & !flags::KNOWN != 0 {
            return Err(ProtocolError::UnknownFlags(flags & !flags::KNOWN));
        }
        let payload_loc = PayloadLocation::from_u8(bytes[PAYLOAD_LOC])
            .ok_or(ProtocolError::UnknownPayloadLocation(bytes[PAYLOAD_LOC]))?;
        let status = match bytes[STATUS] {
            0 => None,
            code => Some(ErrorKind::from_code(code).ok_or(ProtocolError::UnknownStatus(code))?),
        };
        let payload_len = get32(bytes, PAYLOAD_LEN);
        match payload_loc {
            PayloadLocation::Inline if payload_len as usize > INLINE_CAPACITY => {
                return Err(ProtocolError::InlineTooLong { len: payload_len });
            }
            PayloadLocation::Descriptor | PayloadLocation::Trailing
                if u64::from(payload_len) > max_payload =>
            {
                return Err(ProtocolError::PayloadTooLong {
                    len: payload_len,
                    limit: max_payload,
                });
            }
            _ => {}
        }
        Ok(Header {
            kind,
            flags,
            function_id: get16(bytes, FUNCTION_ID),
            method_id: get16(bytes, METHOD_ID),
            caller: get32(bytes, CALLER),
            sequence: get32(bytes, SEQUENCE),
            parent_call_id: get64(bytes, PARENT_CALL_ID),
            send_ts: get64(bytes, SEND_TS),
            payload_len,
            payload_loc,
            status,
            deadline_ns: get64(bytes, DEADLINE_NS),
            processing_ns: get64(bytes, PROCESSING_NS),
            dispatch_delay_ns: get32(bytes, DISPATCH_DELAY_NS),
            worker_id: get32(bytes, WORKER_ID),
        })
    }
}

/// A whole message: header plus the inline area. 1 KiB, kept on the stack or in a reused buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The header.
    pub header: Header,
    inline: [u8; INLINE_CAPACITY],
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("header", &self.header)
            .field("inline_len", &self.inline_payload().len())
            .finish()
    }
}

impl Message {
    /// A message with `header` and an empty inline payload.
    pub const fn new(header: Header) -> Message {
        Message {
            header,
            inline: [0; INLINE_CAPACITY],
        }
    }

    /// A message whose payload `data` (≤ 960 bytes) is inline.
    pub fn with_inline(mut header: Header, data: &[u8]) -> Result<Message, ProtocolError> {
        if data.len() > INLINE_CAPACITY {
            return Err(ProtocolError::InlineTooLong {
                len: u32::try_from(data.len()).unwrap_or(u32::MAX),
            });
        }
        header.payload_loc = PayloadLocation::Inline;
        header.payload_len = data.len() as u32;
        let mut m = Message::new(header);
        m.inline[..data.len()].copy_from_slice(data);
        Ok(m)
    }

    /// A `FAILED` (or `REJECT`) message carrying `kind` and `text`, cut to fit if needed.
    pub fn failure(mut header: Header, kind: ErrorKind, text: &str) -> Message {
        header.status = Some(kind);
        let mut bytes = text.as_bytes();
        if bytes.len() > INLINE_CAPACITY {
            let mut cut = INLINE_CAPACITY;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            bytes = &bytes[..cut];
            header.flags |= flags::TRUNCATED;
        }
        Message::with_inline(header, bytes).unwrap_or_else(|_| Message::new(header))
    }

    /// The inline payload (empty when the payload is elsewhere).
    pub fn inline_payload(&self) -> &[u8] {
        match self.header.payload_loc {
            PayloadLocation::Inline => &self.inline[..self.header.payload_len as usize],
            _ => &[],
        }
    }

    /// The error text of a `FAILED` / `REJECT` message (lossy UTF-8).
    pub fn failure_text(&self) -> String {
        String::from_utf8_lossy(self.inline_payload()).into_owned()
    }

    /// Encodes into a 1024-byte buffer. Unused inline bytes are written as zero.
    pub fn encode(&self, out: &mut [u8; MESSAGE_SIZE]) {
        self.header.encode(out);
        out[HEADER_SIZE..].copy_from_slice(&self.inline);
    }

    /// Encodes into a fresh array.
    pub fn to_bytes(&self) -> [u8; MESSAGE_SIZE] {
        let mut out = [0u8; MESSAGE_SIZE];
        self.encode(&mut out);
        out
    }

    /// Decodes any byte string: a message, or an error naming the field at fault.
    pub fn decode(bytes: &[u8], max_payload: u64) -> Result<Message, ProtocolError> {
        let header = Header::decode(bytes, max_payload)?;
        let mut inline = [0u8; INLINE_CAPACITY];
        // Only the payload bytes are meaningful; the rest is zeroed so equal messages compare
        // equal whatever garbage the sender left there.
        let n = match header.payload_loc {
            PayloadLocation::Inline => header.payload_len as usize,
            _ => 0,
        };
        inline[..n].copy_from_slice(&bytes[HEADER_SIZE..HEADER_SIZE + n]);
        Ok(Message { header, inline })
    }
}

/// How many leading bytes of an encoded message carry meaning: the header, plus the inline
/// payload when there is one. Transports copy only these (a `Nop` call moves 64 bytes, not
/// 1024); decoders never read past them. Total: any bytes give a length within the message.
pub fn used_len(bytes: &[u8; MESSAGE_SIZE]) -> usize {
    if bytes[offset::PAYLOAD_LOC] != PayloadLocation::Inline as u8 {
        return HEADER_SIZE;
    }
    let len = u32::from_le_bytes([
        bytes[offset::PAYLOAD_LEN],
        bytes[offset::PAYLOAD_LEN + 1],
        bytes[offset::PAYLOAD_LEN + 2],
        bytes[offset::PAYLOAD_LEN + 3],
    ]);
    HEADER_SIZE + (len as usize).min(INLINE_CAPACITY)
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn get32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn get64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
