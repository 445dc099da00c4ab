//! The gateway's answers (HTTP/1.1 keep-alive and h2c): `POST /function/{name}`, the status page,
//! `/healthz`, `/readyz`, `/metrics`, `/_/status`; gRPC requests go to [`super::grpc`],
//! asynchronous calls to [`super::async_routes`]. Connections are handled in [`super::server`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use gloam_core::ErrorKind;

use super::grpc::{self, GrpcBody};
use super::page;
use super::stats::GatewayStats;
use crate::engine::Engine;
use crate::state::{Refusal, Timing};
use crate::status;

/// Request header: the call's deadline in milliseconds from now.
pub const TIMEOUT_HEADER: &str = "x-gloam-timeout";
/// Request header: the gRPC method of a `grpc:<Service>` function to call over plain HTTP
/// (default: its first method).
pub const METHOD_HEADER: &str = "x-gloam-method";
/// Response header: where the time of an external call went (`queue`, `run`, `handler`, µs).
pub const TIMING_HEADER: &str = "x-gloam-timing";

/// What a request's handler needs from the gateway.
#[derive(Debug)]
pub struct RequestCtx<'a> {
    /// The engine is shutting down (answers say so; the connection closes after).
    pub draining: bool,
    /// How long the request body may stall before the request is answered 408.
    pub body_timeout: Duration,
    /// The gateway's counters, for `/metrics`.
    pub stats: &'a GatewayStats,
    /// The connection cap, for `/metrics`.
    pub max_connections: usize,
    /// The listener serves gRPC only (`engine.grpc_listen`).
    pub grpc_only: bool,
}

/// A response body: a whole HTTP body, or a gRPC message with its trailers.
pub type GatewayBody = Either<Full<Bytes>, GrpcBody>;

/// What answers the requests the HTTP front door reads: the engine itself (the embedded
/// gateway), or the cluster gateway, which sends calls on to the engines that joined it.
pub trait Backend: Send + Sync + 'static {
    /// Answers one request.
    fn handle<'a>(
        &'a self,
        ctx: &'a RequestCtx<'a>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<GatewayBody>> + Send + 'a;
}

impl Backend for Engine {
    fn handle<'a>(
        &'a self,
        ctx: &'a RequestCtx<'a>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<GatewayBody>> + Send + 'a {
        handle(self, ctx, req)
    }
}

/// Answers one request: gRPC when it says so by its content-type, when its path names a
/// method of a deployed `grpc:<Service>` function, or on the gRPC-only listener; HTTP else.
async fn handle(
    engine: &Engine,
    ctx: &RequestCtx<'_>,
    req: Request<Incoming>,
) -> Response<GatewayBody> {
    let path = req.uri().path();
    // The HTTP call routes first: no lookup of a gRPC service on their path.
    let http_call = ["/function/", "/async-function/", "/calls/"]
        .iter()
        .any(|p| path.starts_with(p));
    if ctx.grpc_only || grpc::is_grpc(req.headers()) || (!http_call && grpc::serves(engine, path)) {
        return grpc::handle(engine, ctx, req).await.map(Either::Right);
    }
    handle_http(engine, ctx, req).await.map(Either::Left)
}

async fn handle_http(
    engine: &Engine,
    ctx: &RequestCtx<'_>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if let Some(name) = path.strip_prefix("/function/") {
        return call(engine, ctx, name.to_string(), req).await;
    }
    if let Some(name) = path.strip_prefix("/async-function/") {
        return super::async_routes::submit(engine, ctx, name.to_string(), req).await;
    }
    if let Some(id) = path.strip_prefix("/calls/") {
        if req.method() == Method::GET {
            return super::async_routes::result(engine, id);
        }
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/") => page::index(),
        (&Method::GET, page::APP_JS_PATH) => page::script(),
        (&Method::GET, page::STYLE_CSS_PATH) => page::style(),
        (&Method::GET, "/healthz") => match engine.core_threads_alive() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, "UNHEALTHY", &why),
        },
        (&Method::GET, "/readyz") if ctx.draining => refusal(Refusal {
            kind: ErrorKind::Shutdown,
            message: "the engine is shutting down".into(),
        }),
        (&Method::GET, "/readyz") => {
            let missing = engine.functions_without_workers();
            if missing.is_empty() {
                text(StatusCode::OK, "ready\n")
            } else {
                let failing = engine.unavailable_functions();
                let mut message = format!("no ready worker yet for: {}", missing.join(", "));
                for (_, why) in failing {
                    message.push_str("; ");
                    message.push_str(&why);
                }
                error(StatusCode::SERVICE_UNAVAILABLE, "NOT_READY", &message)
            }
        }
        (&Method::GET, "/metrics") => {
            let mut body = crate::metrics::render(&status::metrics_snapshot(engine));
            ctx.stats.render(ctx.max_connections, &mut body);
            if let Some(a) = engine.async_calls() {
                a.render_metrics(&mut body);
            }
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/_/status") => {
            let body = serde_json::to_vec(&status::snapshot(engine)).unwrap_or_default();
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!(
                "no route {} {path}; call functions with POST /function/<name>",
                req.method()
            ),
        ),
    }
}

async fn call(
    engine: &Engine,
    ctx: &RequestCtx<'_>,
    name: String,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (max_payload, allow_get, methods) = match engine.function_by_name(&name) {
        Some(f) => (f.max_payload, f.allow_get, &f.grpc_methods),
        None => {
            return refusal(Refusal {
                kind: ErrorKind::FunctionNotFound,
                message: format!("function {name:?} is not deployed on this engine"),
            })
        }
    };
    let method_id = match method_of(&name, methods, req.headers()) {
        Ok(m) => m,
        Err(r) => return refusal(r),
    };
    let (body, timeout) = match call_input(ctx, &name, allow_get, max_payload, req).await {
        Ok(input) => input,
        Err(answer) => return answer,
    };
    let options = crate::external::CallOptions {
        method_id,
        timeout,
        ..Default::default()
    };
    match engine.call_external_with(&name, body, options).await {
        Ok(out) => output(out.body, out.timing),
        Err(r) => refusal(r),
    }
}

/// The method id `X-Gloam-Method` names among `methods` (0 without the header).
pub(crate) fn method_of(
    name: &str,
    methods: &[String],
    headers: &hyper::HeaderMap,
) -> Result<u16, Refusal> {
    let Some(v) = headers.get(METHOD_HEADER) else {
        return Ok(0);
    };
    match methods
        .iter()
        .position(|m| v.to_str().is_ok_and(|v| v.trim() == m))
    {
        Some(i) => Ok(u16::try_from(i).unwrap_or(u16::MAX)),
        None => Err(Refusal {
            kind: ErrorKind::InvalidArgument,
            message: format!(
                "function {name} has no method {v:?} (header X-Gloam-Method; it has: {})",
                if methods.is_empty() {
                    "none".to_string()
                } else {
                    methods.join(", ")
                }
            ),
        }),
    }
}

/// Checks a call's method and `X-Gloam-Timeout` header and reads its body (at most
/// `max_payload` bytes): the input and the deadline, or the answer that refuses the request.
pub(crate) async fn call_input(
    ctx: &RequestCtx<'_>,
    name: &str,
    allow_get: bool,
    max_payload: u64,
    req: Request<Incoming>,
) -> Result<(Bytes, Option<Duration>), Response<Full<Bytes>>> {
    match *req.method() {
        Method::POST => {}
        Method::GET if allow_get => {}
        _ => {
            return Err(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                &format!(
                    "function {name} accepts POST{}",
                    if allow_get { " and GET" } else { "" }
                ),
            ))
        }
    }
    let timeout = match req.headers().get(TIMEOUT_HEADER) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(ms) if ms > 0 => Some(Duration::from_millis(ms)),
            _ => {
                return Err(refusal(Refusal {
                    kind: ErrorKind::InvalidArgument,
                    message: format!(
                    "header X-Gloam-Timeout must be a positive number of milliseconds, got {v:?}"
                ),
                }))
            }
        },
    };
    let too_large = |size: String| {
        refusal(Refusal {
            kind: ErrorKind::PayloadTooLarge,
            message: format!(
                "input of {size} bytes exceeds the limit of {max_payload} bytes of function {name}"
            ),
        })
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let body = match read_body(req.into_body(), max_payload, ctx.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::Stalled) => {
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                &format!(
                    "the request body stalled for {} ms (engine.idle_timeout_ms)",
                    ctx.body_timeout.as_millis()
                ),
            );
            // The rest of the body will not be read: the connection cannot carry another.
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return Err(r);
        }
        Err(BodyError::TooLarge(seen)) => {
            return Err(too_large(declared.unwrap_or(seen).to_string()));
        }
        Err(BodyError::Read(e)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("could not read the request body: {e}"),
            ))
        }
    };
    Ok((body, timeout))
}

/// The `200` answer of a call: its output, with where the time went in `X-Gloam-Timing` and
/// `Server-Timing`.
pub(crate) fn output(body: Bytes, t: Timing) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "queue={};run={};handler={}",
        t.queued_ns / 1000,
        t.running_ns / 1000,
        t.processing_ns / 1000
    )) {
        r.headers_mut().insert(TIMING_HEADER, v);
    }
    // The same split for browsers' developer tools (durations in ms).
    let overhead = t.running_ns.saturating_sub(t.processing_ns);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "queue;dur={:.3}, dispatch;dur={:.3}, handler;dur={:.3}",
        t.queued_ns as f64 / 1e6,
        overhead as f64 / 1e6,
        t.processing_ns as f64 / 1e6
    )) {
        r.headers_mut().insert("server-timing", v);
    }
    r
}

/// After a body proved too large, this much more is read and thrown away so that the client,
/// still sending, gets the 413 instead of a reset connection. Beyond it, the connection closes.
const DISCARD_CAP: u64 = 64 << 20;

pub(crate) enum BodyError {
    /// Over the limit; how many bytes were seen.
    TooLarge(u64),
    Read(hyper::Error),
    /// No byte arrived for the stall timeout.
    Stalled,
}

/// Reads the body up to `limit` bytes, never buffering more, waiting at most `stall` for
/// each frame.
pub(crate) async fn read_body(
    mut body: Incoming,
    limit: u64,
    stall: Duration,
) -> Result<Bytes, BodyError> {
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0u64;
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => return Err(BodyError::Stalled),
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > limit {
            while seen <= limit.saturating_add(DISCARD_CAP) {
                match tokio::time::timeout(stall, body.frame()).await {
                    Ok(Some(Ok(f))) => seen += f.data_ref().map_or(0, |d| d.len() as u64),
                    _ => break,
                }
            }
            return Err(BodyError::TooLarge(seen));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

pub(crate) fn refusal(r: Refusal) -> Response<Full<Bytes>> {
    let status =
        StatusCode::from_u16(r.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = error(status, r.kind.as_str(), &r.message);
    if matches!(
        r.kind,
        ErrorKind::Overloaded | ErrorKind::Shutdown | ErrorKind::FunctionUnavailable
    ) {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": kind, "message": message });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}
