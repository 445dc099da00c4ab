//! The gateway's asynchronous-call routes: `POST /async-function/NAME` (`202` and a call id)
//! and `GET /calls/ID` (the result, `202` while pending, `404` unknown or expired). See
//! [`crate::async_calls`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use gloam_core::ErrorKind;

use super::http::{error, method_of, read_body, refusal, BodyError, RequestCtx};
use crate::async_calls::Lookup;
use crate::engine::Engine;
use crate::state::Refusal;

/// Request header: where the result of an asynchronous call is POSTed.
pub const CALLBACK_HEADER: &str = "x-callback-url";
/// Response header: the id of an asynchronous call.
pub const CALL_ID_HEADER: &str = "x-call-id";

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `POST /async-function/NAME`.
pub(super) async fn submit(
    engine: &Engine,
    ctx: &RequestCtx<'_>,
    name: String,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(calls) = engine.async_calls() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "asynchronous calls are not enabled on this engine",
        );
    };
    let Some(f) = engine.function_by_name(&name) else {
        return refusal(Refusal::new(
            ErrorKind::FunctionNotFound,
            format!("function {name:?} is not deployed on this engine"),
        ));
    };
    if req.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("asynchronous calls of {name} are POST requests"),
        );
    }
    if ctx.draining {
        return refusal(Refusal::new(
            ErrorKind::Shutdown,
            "the engine is shutting down",
        ));
    }
    let method_id = match method_of(&name, &f.grpc_methods, req.headers()) {
        Ok(m) => m,
        Err(r) => return refusal(r),
    };
    let callback = match req.headers().get(CALLBACK_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(url)) => Some(url.to_string()),
        Some(Err(_)) => {
            return refusal(Refusal::new(
                ErrorKind::InvalidArgument,
                "X-Callback-Url is not text",
            ))
        }
    };
    let max_payload = f.max_payload;
    let body = match read_body(req.into_body(), max_payload, ctx.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(seen)) => {
            return refusal(Refusal::new(
                ErrorKind::PayloadTooLarge,
                format!(
                "input of {seen} bytes exceeds the limit of {max_payload} bytes of function {name}"
            ),
            ))
        }
        Err(BodyError::Stalled) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "the request body stalled (engine.idle_timeout_ms)",
            )
        }
        Err(BodyError::Read(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("could not read the request body: {e}"),
            )
        }
    };
    match calls
        .submit(&name, method_id, body, callback.as_deref())
        .await
    {
        Ok(id) => {
            let mut r = json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"call_id": id, "status_url": format!("/calls/{id}")}),
            );
            if let Ok(v) = HeaderValue::from_str(&id) {
                r.headers_mut().insert(CALL_ID_HEADER, v);
            }
            r
        }
        Err(r) => refusal(r),
    }
}

/// `GET /calls/ID`.
pub(super) fn result(engine: &Engine, id: &str) -> Response<Full<Bytes>> {
    let Some(calls) = engine.async_calls() else {
        return error(
            StatusCode::NOT_FOUND,
            "CALL_NOT_FOUND",
            "asynchronous calls are not enabled on this engine",
        );
    };
    match calls.lookup(id) {
        Ok(Lookup::NotFound) => error(
            StatusCode::NOT_FOUND,
            "CALL_NOT_FOUND",
            &format!("no asynchronous call {id:?} (unknown, or its result expired)"),
        ),
        Ok(Lookup::Pending) => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"call_id": id, "status": "pending"}),
        ),
        Ok(Lookup::Done(out)) => Response::new(Full::new(out)),
        Ok(Lookup::Failed(kind, message)) => refusal(Refusal { kind, message }),
        Err(r) => refusal(r),
    }
}
