//! Beyond one node: a standalone gateway in front of many engines.
//!
//! Engines dial the gateway (`gloam up CONFIG --join ADDR`) and keep one connection to it,
//! over which the gateway sends them calls. [`wire`] is the framed protocol on that
//! connection; [`io`] reads and writes its frames; [`routing`] picks an engine for a call
//! (least outstanding calls of that function, within each engine's capacity); [`gateway`] is
//! the gateway's side of the engine connections and [`front`] its HTTP front door (the
//! embedded gateway's connection handling, with calls sent to engines); [`join`] is the
//! engine's side; [`tls`] loads certificates for rustls; [`standalone`] is the
//! `gloam gateway` process.

pub mod front;
pub mod gateway;
pub mod io;
pub mod join;
pub mod routing;
pub mod standalone;
pub mod tls;
pub mod wire;

use std::io as stdio;

use wire::RefuseReason;

/// What goes wrong between an engine and the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A frame does not decode; names the field at fault.
    #[error("cluster frame field `{field}`: {reason}")]
    Frame {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The peer speaks another protocol version.
    #[error(
        "the peer speaks cluster protocol {peer}, this build speaks {}",
        wire::VERSION
    )]
    Version {
        /// The peer's version.
        peer: u16,
    },
    /// The peer refused us.
    #[error("refused by the peer ({reason:?}): {text}")]
    Refused {
        /// Why, as a code.
        reason: RefuseReason,
        /// Why, in words.
        text: String,
    },
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: stdio::Error,
    },
    /// TLS set-up failed (certificates, keys, names).
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer went silent, sent something out of turn, or the connection ended.
    #[error("{0}")]
    Lost(String),
}

impl ClusterError {
    /// A decoding error in `field`.
    pub fn frame(field: &'static str, reason: impl Into<String>) -> ClusterError {
        ClusterError::Frame {
            field,
            reason: reason.into(),
        }
    }

    /// An I/O error while doing `context`.
    pub fn io(context: impl Into<String>, source: stdio::Error) -> ClusterError {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Heartbeat interval the gateway asks for by default.
pub const DEFAULT_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a peer may stay silent before its connection is given up: three heartbeats, so a
/// half-open connection is found within 2 s at the default interval.
pub fn dead_after(heartbeat: std::time::Duration) -> std::time::Duration {
    heartbeat * 3
}
