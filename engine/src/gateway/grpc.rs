//! gRPC over HTTP/2 (prior-knowledge h2c, or TLS with ALPN `h2`): unary calls.
//!
//! `:path /<Service>/<Method>` calls function `grpc:<Service>` with the index of `<Method>`
//! in its `grpc_methods` as the method id; the request message (the bytes after the 5-byte
//! length prefix) is the input, the output is the reply message. Framing is hyper's h2; the
//! length prefix is read and written here (it is all gRPC adds to an HTTP/2 stream for unary
//! calls), so the gateway keeps one HTTP stack and no protobuf code: payloads stay opaque.
//!
//! Failures are answered with HTTP 200, `grpc-status` and a percent-encoded `grpc-message`
//! in the trailers (a request that is not gRPC at all, by its content-type, gets HTTP 415
//! as the gRPC spec asks, with the same trailers); see [`status_of`] for the mapping of
//! Gloam's error kinds. Nothing here waits without a bound: the request body is read
//! within the stall timeout and the call's deadline.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode, Version};

use gloam_core::ErrorKind;

use super::http::RequestCtx;
use crate::config::GRPC_PREFIX;
use crate::engine::Engine;
use crate::external::CallOptions;

/// gRPC status codes used by the gateway (`google.rpc.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// A handler failed (its message is the `grpc-message`).
    Unknown = 2,
    /// The request was refused as invalid (e.g. a bad `grpc-timeout` unit).
    InvalidArgument = 3,
    /// The deadline passed (queued, running, or in a nested call).
    DeadlineExceeded = 4,
    /// A function a handler called does not exist (passed on by the handler).
    NotFound = 5,
    /// The queue is full, or a message is over the payload limit.
    ResourceExhausted = 8,
    /// Unknown service or method; compression or client streaming, which are not supported.
    Unimplemented = 12,
    /// Malformed framing, or a failure of the engine itself.
    Internal = 13,
    /// The worker crashed, the function cannot start, or the engine is shutting down:
    /// retrying may work.
    Unavailable = 14,
}

/// The gRPC status for a Gloam error kind.
///
/// | kind | status | why |
/// |---|---|---|
/// | `HANDLER_FAILED` | `UNKNOWN` | what gRPC servers answer for an application error without a status |
/// | `TIMEOUT` | `DEADLINE_EXCEEDED` | |
/// | `OVERLOADED`, `PAYLOAD_TOO_LARGE` | `RESOURCE_EXHAUSTED` | a limit of the server was hit |
/// | `WORKER_CRASHED`, `SHUTDOWN`, `FUNCTION_UNAVAILABLE` | `UNAVAILABLE` | transient: a retry reaches a new worker or engine |
/// | `FUNCTION_NOT_FOUND` | `NOT_FOUND` | a nested call named a missing function (the service itself was found) |
/// | `INVALID_ARGUMENT` | `INVALID_ARGUMENT` | |
/// | others | `INTERNAL` | the engine or a worker broke |
pub fn status_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::HandlerFailed => Code::Unknown,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Overloaded | ErrorKind::PayloadTooLarge => Code::ResourceExhausted,
        ErrorKind::WorkerCrashed | ErrorKind::Shutdown | ErrorKind::FunctionUnavailable => {
            Code::Unavailable
        }
        ErrorKind::FunctionNotFound => Code::NotFound,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::InvalidConfig
        | ErrorKind::ProtocolError
        | ErrorKind::Io
        | ErrorKind::Internal => Code::Internal,
    }
}

/// Whether a request says it is gRPC (`content-type: application/grpc[+format]`).
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(grpc_content_type)
}

fn grpc_content_type(ct: &str) -> bool {
    let ct = ct.trim().to_ascii_lowercase();
    ct == "application/grpc"
        || ct.starts_with("application/grpc+")
        || ct.starts_with("application/grpc;")
}

/// `/<Service>/<Method>` split, when the path has that shape.
pub(super) fn service_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// Whether `path` names a method of a gRPC service this engine serves.
pub(super) fn serves(engine: &Engine, path: &str) -> bool {
    service_method(path).is_some_and(|(s, _)| {
        engine
            .function_by_name(&format!("{GRPC_PREFIX}{s}"))
            .is_some()
    })
}

/// The body of a gRPC response: at most one message, then the trailers.
#[derive(Debug, Default)]
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// A failure to answer with: its status and message.
#[derive(Debug)]
struct Failure {
    code: Code,
    message: String,
}

fn fail(code: Code, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Answers one gRPC request.
pub(super) async fn handle(
    engine: &Engine,
    ctx: &RequestCtx<'_>,
    req: Request<Incoming>,
) -> Response<GrpcBody> {
    if !is_grpc(req.headers()) {
        let ct = req
            .headers()
            .get(CONTENT_TYPE)
            .map_or("none".to_string(), |v| format!("{v:?}"));
        let mut r = answer(Err(fail(
            Code::Internal,
            format!("content-type {ct} is not application/grpc: this is a gRPC endpoint"),
        )));
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return r;
    }
    if req.version() != Version::HTTP_2 {
        let mut r = answer(Err(fail(
            Code::Internal,
            "gRPC needs HTTP/2 (prior knowledge over cleartext, or ALPN h2 over TLS)",
        )));
        *r.status_mut() = StatusCode::HTTP_VERSION_NOT_SUPPORTED;
        return r;
    }
    answer(call(engine, ctx, req).await)
}

async fn call(
    engine: &Engine,
    ctx: &RequestCtx<'_>,
    req: Request<Incoming>,
) -> Result<Bytes, Failure> {
    let path = req.uri().path().to_string();
    let Some((service, method)) = service_method(&path) else {
        return Err(fail(
            Code::Unimplemented,
            format!("{path} is not a gRPC method path (/<Service>/<Method>)"),
        ));
    };
    let name = format!("{GRPC_PREFIX}{service}");
    // Unknown service: UNIMPLEMENTED, as gRPC servers answer for a service they do not
    // register (clients and tools read it as "not served here"); NOT_FOUND is for the
    // application's own entities.
    let Some(f) = engine.function_by_name(&name) else {
        return Err(fail(
            Code::Unimplemented,
            format!("unknown service {service}: no function {name} is deployed on this engine"),
        ));
    };
    let Some(method_id) = f.grpc_methods.iter().position(|m| m == method) else {
        return Err(fail(
            Code::Unimplemented,
            format!(
                "unknown method {method} of service {service} (it has: {})",
                f.grpc_methods.join(", ")
            ),
        ));
    };
    let method_id = u16::try_from(method_id).unwrap_or(u16::MAX);
    if ctx.draining {
        return Err(fail(Code::Unavailable, "the engine is shutting down"));
    }
    let encoding = req
        .headers()
        .get("grpc-encoding")
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    if let Some(enc) = encoding.as_deref().filter(|e| *e != "identity") {
        return Err(fail(
            Code::Unimplemented,
            format!("message compression {enc:?} is not supported; send messages uncompressed (identity)"),
        ));
    }
    let timeout = match req.headers().get("grpc-timeout") {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(parse_timeout).ok_or_else(|| {
            fail(
                Code::InvalidArgument,
                format!("malformed grpc-timeout {v:?}: 1-8 digits and a unit H, M, S, m, u or n"),
            )
        })?),
    };
    let max_payload = f.max_payload;
    let stall = timeout.map_or(ctx.body_timeout, |t| t.min(ctx.body_timeout));
    let started = tokio::time::Instant::now();
    let body = read_message(req.into_body(), max_payload, stall).await?;
    let timeout = match timeout {
        Some(t) => match t.checked_sub(started.elapsed()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                return Err(fail(
                    Code::DeadlineExceeded,
                    "the deadline passed while the request was read",
                ))
            }
        },
        None => None,
    };
    let options = CallOptions {
        method_id,
        timeout,
        ..CallOptions::default()
    };
    match engine.call_external_with(&name, body, options).await {
        Ok(out) => Ok(out.body),
        Err(r) => Err(fail(status_of(r.kind), r.message)),
    }
}

/// Reads the single request message of a unary call: the 5-byte prefix (compressed flag,
/// big-endian length) and exactly that many bytes, within `limit` and the stall timeout.
async fn read_message(mut body: Incoming, limit: u64, stall: Duration) -> Result<Bytes, Failure> {
    let mut buf = BytesMut::new();
    let cap = limit.saturating_add(5);
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => {
                return Err(fail(
                    Code::DeadlineExceeded,
                    format!("the request message stalled for {} ms", stall.as_millis()),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(fail(
                    Code::Internal,
                    format!("could not read the request: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if (buf.len() + data.len()) as u64 > cap {
            // The declared length, if the prefix arrived, says how large the message is.
            let declared = prefix(&buf).map_or(String::new(), |(_, n)| format!(" of {n} bytes"));
            return Err(fail(
                Code::ResourceExhausted,
                format!("request message{declared} exceeds the limit of {limit} bytes"),
            ));
        }
        buf.extend_from_slice(&data);
    }
    let Some((compressed, len)) = prefix(&buf) else {
        return Err(fail(
            Code::Internal,
            format!(
                "malformed request: {} bytes, fewer than the 5-byte message prefix",
                buf.len()
            ),
        ));
    };
    match compressed {
        0 => {}
        1 => {
            return Err(fail(
                Code::Internal,
                "malformed request: the message is flagged compressed but no grpc-encoding was negotiated",
            ))
        }
        flag => {
            return Err(fail(
                Code::Internal,
                format!("malformed request: compressed-flag byte {flag}, expected 0 or 1"),
            ))
        }
    }
    let have = buf.len() as u64 - 5;
    let len = u64::from(len);
    if len > limit {
        return Err(fail(
            Code::ResourceExhausted,
            format!("request message of {len} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    if have < len {
        return Err(fail(
            Code::Internal,
            format!("malformed request: the message prefix says {len} bytes, the stream ended after {have}"),
        ));
    }
    if have > len {
        return Err(fail(
            Code::Unimplemented,
            "more than one request message: only unary calls are supported",
        ));
    }
    Ok(buf.freeze().split_off(5))
}

fn prefix(buf: &[u8]) -> Option<(u8, u32)> {
    let p = buf.get(..5)?;
    Some((p[0], u32::from_be_bytes([p[1], p[2], p[3], p[4]])))
}

/// Parses a `grpc-timeout` value: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    let unit = v.chars().last()?;
    let digits = &v[..v.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n.checked_mul(3600)?),
        'M' => Duration::from_secs(n.checked_mul(60)?),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A response: the reply message and `grpc-status: 0`, or the failure's status and message.
fn answer(result: Result<Bytes, Failure>) -> Response<GrpcBody> {
    let mut trailers = HeaderMap::new();
    let data = match result {
        Ok(out) => {
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let mut framed = BytesMut::with_capacity(5 + out.len());
            framed.put_u8(0);
            framed.put_u32(u32::try_from(out.len()).unwrap_or(u32::MAX));
            framed.extend_from_slice(&out);
            Some(framed.freeze())
        }
        Err(f) => {
            trailers.insert("grpc-status", HeaderValue::from(u16::from(f.code as u8)));
            if let Ok(v) = HeaderValue::from_str(&percent_encode(&f.message)) {
                trailers.insert("grpc-message", v);
            }
            None
        }
    };
    let mut r = Response::new(GrpcBody {
        data,
        trailers: Some(trailers),
    });
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
    r
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_with_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "100", "123456789m", "10x", "-1m", "1.5S", "1é"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn messages_are_percent_encoded_and_kinds_map_to_statuses() {
        assert_eq!(
            percent_encode("50% done\nnext: é"),
            "50%25 done%0Anext: %C3%A9"
        );
        assert_eq!(status_of(ErrorKind::HandlerFailed), Code::Unknown);
        assert_eq!(status_of(ErrorKind::Timeout), Code::DeadlineExceeded);
        assert_eq!(status_of(ErrorKind::Overloaded), Code::ResourceExhausted);
        assert_eq!(
            status_of(ErrorKind::PayloadTooLarge),
            Code::ResourceExhausted
        );
        assert_eq!(status_of(ErrorKind::WorkerCrashed), Code::Unavailable);
        assert_eq!(status_of(ErrorKind::Shutdown), Code::Unavailable);
        assert_eq!(status_of(ErrorKind::FunctionUnavailable), Code::Unavailable);
        assert_eq!(status_of(ErrorKind::ProtocolError), Code::Internal);
    }

    #[test]
    fn paths_and_content_types() {
        assert_eq!(service_method("/shop.Cart/Add"), Some(("shop.Cart", "Add")));
        assert_eq!(service_method("/shop.Cart/"), None);
        assert_eq!(service_method("/a/b/c"), None);
        assert_eq!(service_method("/healthz"), None);
        assert!(grpc_content_type("application/grpc"));
        assert!(grpc_content_type("application/grpc+proto"));
        assert!(!grpc_content_type("application/grpcx"));
        assert!(!grpc_content_type("application/json"));
        assert_eq!(prefix(&[0, 0, 0, 1, 2]), Some((0, 258)));
        assert_eq!(prefix(&[0, 0]), None);
    }
}
