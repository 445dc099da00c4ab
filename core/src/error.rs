//! The one error model of Gloam.
//!
//! [`ErrorKind`] is the contract every binding maps: C status codes (`GLOAM_E_*`, same numbers),
//! Python exception classes, JavaScript `err.code` strings and Go sentinel errors. Its numeric
//! value also travels in the `status` byte of a `FAILED` message, so it must never be renumbered.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::protocol::ProtocolError;

/// What went wrong, as every language sees it. The discriminants are stable wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorKind {
    /// An argument given by the caller is invalid (a NULL pointer, a bad function name, ...).
    InvalidArgument = 1,
    /// A configuration file or option is invalid; the message names the file and the key.
    InvalidConfig = 2,
    /// The called function is not deployed on this engine; the message names it.
    FunctionNotFound = 3,
    /// A payload exceeds the configured limit; the message gives both sizes.
    PayloadTooLarge = 4,
    /// The handler returned or raised an error; the message is the handler's.
    HandlerFailed = 5,
    /// The worker running the call died before answering.
    WorkerCrashed = 6,
    /// The call's deadline passed before it finished.
    Timeout = 7,
    /// The function's queue is full; retry later.
    Overloaded = 8,
    /// A peer sent bytes that do not decode as a Gloam message; the message names the field.
    ProtocolError = 9,
    /// The engine or the worker is shutting down (or the peer went away).
    Shutdown = 10,
    /// An operating-system call failed; the message names the operation and the path.
    Io = 11,
    /// A bug in Gloam. Please report it.
    Internal = 12,
    /// The function has no worker and its workers cannot start (the command is missing, the
    /// process exits before it is ready, the program has no handler for it); the message
    /// gives the launcher's reason. Calls fail at once instead of waiting for their deadline.
    FunctionUnavailable = 13,
}

impl ErrorKind {
    /// Every kind, in wire order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidConfig,
        ErrorKind::FunctionNotFound,
        ErrorKind::PayloadTooLarge,
        ErrorKind::HandlerFailed,
        ErrorKind::WorkerCrashed,
        ErrorKind::Timeout,
        ErrorKind::Overloaded,
        ErrorKind::ProtocolError,
        ErrorKind::Shutdown,
        ErrorKind::Io,
        ErrorKind::Internal,
        ErrorKind::FunctionUnavailable,
    ];

    /// The wire value (also the C status code).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The kind for a wire value, if it is one.
    pub fn from_code(code: u8) -> Option<ErrorKind> {
        ErrorKind::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// Stable upper-snake name, e.g. `FUNCTION_NOT_FOUND` (HTTP error bodies, JS codes).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::InvalidConfig => "INVALID_CONFIG",
            ErrorKind::FunctionNotFound => "FUNCTION_NOT_FOUND",
            ErrorKind::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorKind::HandlerFailed => "HANDLER_FAILED",
            ErrorKind::WorkerCrashed => "WORKER_CRASHED",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Overloaded => "OVERLOADED",
            ErrorKind::ProtocolError => "PROTOCOL_ERROR",
            ErrorKind::Shutdown => "SHUTDOWN",
            ErrorKind::Io => "IO",
            ErrorKind::Internal => "INTERNAL",
            ErrorKind::FunctionUnavailable => "FUNCTION_UNAVAILABLE",
        }
    }

    /// The kind for a name produced by [`ErrorKind::as_str`].
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Whether a handler may fail its call with this kind by passing on an error of it.
    ///
    /// These are the kinds a call itself can end with — what an internal call returns:
    /// `FUNCTION_NOT_FOUND`, `PAYLOAD_TOO_LARGE`, `HANDLER_FAILED`, `WORKER_CRASHED`,
    /// `TIMEOUT`, `OVERLOADED`, `SHUTDOWN` and `FUNCTION_UNAVAILABLE` (a callee whose workers
    /// cannot start: its caller's client sees 503 with the callee's reason). A handler that lets such an error through (`?`
    /// in Rust, an uncaught exception in Python, a rejection in Node, a returned error in Go,
    /// a returned status in C) fails its own call with it, so a timeout deep in a chain of
    /// calls still reaches the HTTP client as `504 TIMEOUT`, a crash as `502 WORKER_CRASHED`.
    ///
    /// The other kinds describe the failing worker's own process, not the outcome of a call:
    /// a bad argument it passed to the SDK, its configuration, the bytes between it and its
    /// engine, an operating-system call, a bug in Gloam. Reported as the call's kind they
    /// would mislead its caller (`PROTOCOL_ERROR` and `INVALID_ARGUMENT` answer HTTP 400,
    /// blaming the client's request), so they fail the call as `HANDLER_FAILED`; see
    /// [`ErrorKind::passed_on`].
    pub const fn can_pass_on(self) -> bool {
        matches!(
            self,
            ErrorKind::FunctionNotFound
                | ErrorKind::PayloadTooLarge
                | ErrorKind::HandlerFailed
                | ErrorKind::WorkerCrashed
                | ErrorKind::Timeout
                | ErrorKind::Overloaded
                | ErrorKind::Shutdown
                | ErrorKind::FunctionUnavailable
        )
    }

    /// The kind a call ends with when its handler fails with an error of this kind: the kind
    /// itself when [`ErrorKind::can_pass_on`], else [`ErrorKind::HandlerFailed`].
    ///
    /// ```
    /// use gloam_core::ErrorKind;
    /// assert_eq!(ErrorKind::Timeout.passed_on(), ErrorKind::Timeout);
    /// assert_eq!(ErrorKind::ProtocolError.passed_on(), ErrorKind::HandlerFailed);
    /// ```
    pub const fn passed_on(self) -> ErrorKind {
        if self.can_pass_on() {
            self
        } else {
            ErrorKind::HandlerFailed
        }
    }

    /// `text` without the prefix that [`Error`]'s `Display` puts before a message of this kind
    /// (`timeout: `, `worker crashed: `, ...), if it has it.
    ///
    /// The SDKs show a core error by its `Display` text (a Python exception's message, a
    /// JavaScript `err.message`, a C `gloam_error_t` message); when a handler passes such an
    /// error on, the kind travels separately, so the message for the caller drops the prefix:
    /// the same words whichever SDK passed it on, and no `timeout: timeout: ` after two hops.
    ///
    /// ```
    /// use gloam_core::ErrorKind;
    /// assert_eq!(ErrorKind::Timeout.bare_message("timeout: call to X did not finish"),
    ///            "call to X did not finish");
    /// assert_eq!(ErrorKind::Timeout.bare_message("call to X did not finish"),
    ///            "call to X did not finish");
    /// ```
    pub fn bare_message(self, text: &str) -> &str {
        match self.display_prefix() {
            Some(prefix) => text.strip_prefix(prefix).unwrap_or(text),
            None => text,
        }
    }

    /// The prefix of [`Error`]'s `Display` for the variants that wrap a message (kept in step
    /// with the `#[error]` attributes by a test).
    const fn display_prefix(self) -> Option<&'static str> {
        match self {
            ErrorKind::InvalidConfig => Some("invalid config: "),
            ErrorKind::FunctionNotFound => Some("function not found: "),
            ErrorKind::WorkerCrashed => Some("worker crashed: "),
            ErrorKind::Timeout => Some("timeout: "),
            ErrorKind::Overloaded => Some("overloaded: "),
            ErrorKind::ProtocolError => Some("protocol error: "),
            ErrorKind::Shutdown => Some("shutdown: "),
            ErrorKind::Internal => Some("internal error: "),
            ErrorKind::FunctionUnavailable => Some("function unavailable: "),
            ErrorKind::InvalidArgument
            | ErrorKind::PayloadTooLarge
            | ErrorKind::HandlerFailed
            | ErrorKind::Io => None,
        }
    }

    /// The HTTP status the gateway answers with for this kind.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::ProtocolError => 400,
            ErrorKind::FunctionNotFound => 404,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::WorkerCrashed => 502,
            ErrorKind::Overloaded | ErrorKind::Shutdown | ErrorKind::FunctionUnavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::InvalidConfig
            | ErrorKind::HandlerFailed
            | ErrorKind::Io
            | ErrorKind::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of `gloam-core`. [`Error::kind`] gives its [`ErrorKind`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// See [`ErrorKind::InvalidArgument`].
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The parameter or field.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// See [`ErrorKind::InvalidConfig`].
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// See [`ErrorKind::FunctionNotFound`].
    #[error("function not found: {0}")]
    FunctionNotFound(String),
    /// See [`ErrorKind::PayloadTooLarge`].
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Size of the refused payload.
        size: u64,
        /// The configured maximum.
        limit: u64,
    },
    /// See [`ErrorKind::HandlerFailed`].
    #[error("{0}")]
    HandlerFailed(String),
    /// See [`ErrorKind::WorkerCrashed`].
    #[error("worker crashed: {0}")]
    WorkerCrashed(String),
    /// See [`ErrorKind::Timeout`].
    #[error("timeout: {0}")]
    Timeout(String),
    /// See [`ErrorKind::Overloaded`].
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// See [`ErrorKind::ProtocolError`].
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A protocol error reported by the peer as text.
    #[error("protocol error: {0}")]
    RemoteProtocol(String),
    /// See [`ErrorKind::Shutdown`].
    #[error("shutdown: {0}")]
    Shutdown(String),
    /// See [`ErrorKind::Io`].
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `mkfifo`, ...).
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// See [`ErrorKind::Internal`].
    #[error("internal error: {0}")]
    Internal(String),
    /// See [`ErrorKind::FunctionUnavailable`].
    #[error("function unavailable: {0}")]
    FunctionUnavailable(String),
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::InvalidConfig(_) => ErrorKind::InvalidConfig,
            Error::FunctionNotFound(_) => ErrorKind::FunctionNotFound,
            Error::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            Error::HandlerFailed(_) => ErrorKind::HandlerFailed,
            Error::WorkerCrashed(_) => ErrorKind::WorkerCrashed,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Overloaded(_) => ErrorKind::Overloaded,
            Error::Protocol(_) | Error::RemoteProtocol(_) => ErrorKind::ProtocolError,
            Error::Shutdown(_) => ErrorKind::Shutdown,
            Error::Io { .. } => ErrorKind::Io,
            Error::Internal(_) => ErrorKind::Internal,
            Error::FunctionUnavailable(_) => ErrorKind::FunctionUnavailable,
        }
    }

    /// Rebuilds an error received from a peer (a `FAILED` message: kind + text).
    pub fn remote(kind: ErrorKind, message: impl Into<String>) -> Error {
        let message = message.into();
        match kind {
            ErrorKind::InvalidArgument => Error::InvalidArgument {
                name: "input",
                reason: message,
            },
            ErrorKind::InvalidConfig => Error::InvalidConfig(message),
            ErrorKind::FunctionNotFound => Error::FunctionNotFound(message),
            ErrorKind::PayloadTooLarge => {
                let (size, limit) = parse_sizes(&message).unwrap_or((0, 0));
                Error::PayloadTooLarge { size, limit }
            }
            ErrorKind::HandlerFailed => Error::HandlerFailed(message),
            ErrorKind::WorkerCrashed => Error::WorkerCrashed(message),
            ErrorKind::Timeout => Error::Timeout(message),
            ErrorKind::Overloaded => Error::Overloaded(message),
            ErrorKind::ProtocolError => Error::RemoteProtocol(message),
            ErrorKind::Shutdown => Error::Shutdown(message),
            ErrorKind::Io => Error::Internal(message),
            ErrorKind::Internal => Error::Internal(message),
            ErrorKind::FunctionUnavailable => Error::FunctionUnavailable(message),
        }
    }

    /// The text a peer should receive for this error: without the kind prefix that
    /// `Display` adds, since the kind travels separately.
    pub fn wire_message(&self) -> String {
        match self {
            Error::FunctionNotFound(m)
            | Error::HandlerFailed(m)
            | Error::WorkerCrashed(m)
            | Error::Timeout(m)
            | Error::Overloaded(m)
            | Error::RemoteProtocol(m)
            | Error::Shutdown(m)
            | Error::InvalidConfig(m)
            | Error::Internal(m)
            | Error::FunctionUnavailable(m) => m.clone(),
            other => other.to_string(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn errno(op: &'static str, path: impl Into<PathBuf>, errno: nix::Error) -> Error {
        Error::io(op, path, io::Error::from(errno))
    }
}

/// Extracts "N bytes ... M bytes" from a payload-too-large message (peers send it as text).
fn parse_sizes(message: &str) -> Option<(u64, u64)> {
    let mut numbers = message
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse::<u64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_stable() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.code() as usize, i + 1);
            assert_eq!(ErrorKind::from_code(kind.code()), Some(*kind));
            assert_eq!(ErrorKind::from_name(kind.as_str()), Some(*kind));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(14), None);
        assert_eq!(ErrorKind::FunctionNotFound.code(), 3);
        assert_eq!(ErrorKind::Internal.code(), 12);
        assert_eq!(ErrorKind::FunctionUnavailable.code(), 13);
        assert_eq!(ErrorKind::FunctionUnavailable.http_status(), 503);
    }

    #[test]
    fn remote_errors_keep_kind_and_sizes() {
        let e = Error::PayloadTooLarge {
            size: 20,
            limit: 10,
        };
        let back = Error::remote(e.kind(), e.wire_message());
        assert_eq!(back.kind(), ErrorKind::PayloadTooLarge);
        assert!(matches!(
            back,
            Error::PayloadTooLarge {
                size: 20,
                limit: 10
            }
        ));
        for kind in ErrorKind::ALL {
            assert_eq!(Error::remote(kind, "x").kind(), kind_after_wire(kind));
        }
    }

    #[test]
    fn only_call_outcomes_pass_on() {
        let passing: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|k| k.can_pass_on())
            .collect();
        assert_eq!(
            passing,
            [
                ErrorKind::FunctionNotFound,
                ErrorKind::PayloadTooLarge,
                ErrorKind::HandlerFailed,
                ErrorKind::WorkerCrashed,
                ErrorKind::Timeout,
                ErrorKind::Overloaded,
                ErrorKind::Shutdown,
                ErrorKind::FunctionUnavailable,
            ]
        );
        for kind in ErrorKind::ALL {
            let expected = if passing.contains(&kind) {
                kind
            } else {
                ErrorKind::HandlerFailed
            };
            assert_eq!(kind.passed_on(), expected, "{kind}");
            // No passed-on kind answers HTTP 400 (a claim about the client's request).
            assert_ne!(kind.passed_on().http_status(), 400, "{kind}");
        }
    }

    #[test]
    fn bare_message_strips_exactly_the_display_prefix() {
        for kind in ErrorKind::ALL {
            let shown = Error::remote(kind, "the words").to_string();
            if kind.display_prefix().is_some() {
                assert_eq!(kind.bare_message(&shown), "the words", "{kind}: {shown}");
            }
            // Idempotent, and a message without the prefix is left alone.
            assert_eq!(
                kind.bare_message(kind.bare_message(&shown)),
                kind.bare_message(&shown)
            );
            assert_eq!(kind.bare_message("plain words"), "plain words");
        }
        // Only the kind's own prefix goes.
        assert_eq!(
            ErrorKind::Timeout.bare_message("worker crashed: x"),
            "worker crashed: x"
        );
    }

    fn kind_after_wire(kind: ErrorKind) -> ErrorKind {
        if kind == ErrorKind::Io {
            ErrorKind::Internal
        } else {
            kind
        }
    }
}
