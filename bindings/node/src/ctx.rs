//! `Ctx`: what a handler sees of its call, and internal calls (`ctx.invoke`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gloam_core::clock::now_ns;
use gloam_core::{Call, ErrorKind, ParentRef, Worker};
use napi::bindgen_prelude::Buffer;
use napi::{Env, JsObject, JsUnknown};
use napi_derive::napi;

use crate::convert::to_bytes;
use crate::errors::{from_core, js_error};

/// The context of one call, passed to a handler as its first argument.
///
/// Created by Gloam, never by user code. It stays usable after the handler returns, but
/// internal calls made through it still carry the call's id and deadline.
#[napi]
pub struct Ctx {
    worker: Arc<Worker>,
    parent: ParentRef,
    deadline_ms: Option<f64>,
    method: String,
}

impl Ctx {
    /// The context of `call`, received by `worker`.
    pub(crate) fn new(worker: &Arc<Worker>, call: &Call) -> Ctx {
        let parent = call.parent_ref();
        Ctx {
            worker: Arc::clone(worker),
            parent,
            deadline_ms: epoch_ms(parent.deadline_ns),
            method: worker.method_of(call).to_string(),
        }
    }
}

/// A `CLOCK_MONOTONIC` deadline as milliseconds since the Unix epoch (`None` for 0 = none).
fn epoch_ms(deadline_ns: u64) -> Option<f64> {
    if deadline_ns == 0 {
        return None;
    }
    let now_epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0);
    let left_ms = (deadline_ns as f64 - now_ns() as f64) / 1e6;
    Some((now_epoch_ms + left_ms).round())
}

#[napi]
impl Ctx {
    /// The gRPC method this call is for: `'SayHello'` for `/demo.Greeter/SayHello` served by
    /// function `grpc:demo.Greeter` (the input is that method's raw protobuf message);
    /// `''` for a plain function.
    #[napi(getter)]
    pub fn method(&self) -> String {
        self.method.clone()
    }

    /// The name of the function being run (`GLOAM_FUNCTION`).
    #[napi(getter)]
    pub fn function_name(&self) -> String {
        self.worker.function().to_string()
    }

    /// The call's id: a 64-bit number as decimal text (unique among the engine's calls in
    /// flight).
    #[napi(getter)]
    pub fn call_id(&self) -> String {
        self.parent.call_id.0.to_string()
    }

    /// The call's deadline in milliseconds since the Unix epoch (comparable with `Date.now()`),
    /// or `null` if the call has none. Internal calls made with `invoke` inherit it.
    #[napi(getter)]
    pub fn deadline(&self) -> Option<f64> {
        self.deadline_ms
    }

    /// Calls function `name` through the engine (an internal call) and resolves with its
    /// output. Never blocks the JavaScript thread; several calls may be in flight at once.
    ///
    /// `input` may be a `Buffer`, a `Uint8Array` or a string (sent as UTF-8); omitted means
    /// empty. The Promise rejects with an `Error` whose `code` is `GLOAM_E_<KIND>`, e.g.
    /// `GLOAM_E_FUNCTION_NOT_FOUND`, `GLOAM_E_PAYLOAD_TOO_LARGE`, `GLOAM_E_TIMEOUT` or
    /// `GLOAM_E_HANDLER_FAILED` (with the callee's message).
    ///
    /// @example
    /// const out = await ctx.invoke('Bar', Buffer.from('world'))
    #[napi(
        ts_args_type = "name: string, input?: Buffer | Uint8Array | string | null",
        ts_return_type = "Promise<Buffer>"
    )]
    pub fn invoke(
        &self,
        env: Env,
        name: String,
        input: Option<JsUnknown>,
    ) -> napi::Result<JsObject> {
        let input = match input {
            Some(v) => to_bytes(&env, v, "invoke input")
                .map_err(|m| js_error(&env, ErrorKind::InvalidArgument, &m))?,
            None => Vec::new(),
        };
        let (deferred, promise) = env.create_deferred::<Buffer, _>()?;
        let worker = Arc::clone(&self.worker);
        let parent = self.parent;
        // A thread per internal call, not the libuv pool: the core's `invoke` blocks until the
        // callee answers, and callees may themselves wait on calls (a bounded pool could
        // deadlock). A thread costs tens of microseconds against a round trip of similar size.
        std::thread::Builder::new()
            .name("gloam-invoke".into())
            .spawn(move || {
                let result = worker.invoke(parent, &name, &input);
                deferred.resolve(move |env| match result {
                    Ok(out) => Ok(Buffer::from(out)),
                    Err(e) => Err(from_core(&env, &e)),
                });
            })
            .map_err(|e| {
                js_error(
                    &env,
                    ErrorKind::Internal,
                    &format!("could not start a thread for an internal call: {e}"),
                )
            })?;
        Ok(promise)
    }

    /// Calls function `name` like `invoke` but waits for the output on the
    /// JavaScript thread and returns it: no thread, no event-loop wake-up, so a fast callee
    /// answers in microseconds (over a direct lane, a few; through `invoke`, tens). The event
    /// loop is blocked meanwhile: use it for calls that answer quickly, `invoke` for the rest
    /// and for concurrency. Throws an `Error` with the same `code`s as `invoke`.
    ///
    /// @example
    /// const out = ctx.invokeSync('Bar', Buffer.from('world'))
    #[napi(ts_args_type = "name: string, input?: Buffer | Uint8Array | string | null")]
    pub fn invoke_sync(
        &self,
        env: Env,
        name: String,
        input: Option<JsUnknown>,
    ) -> napi::Result<Buffer> {
        let input = match input {
            Some(v) => to_bytes(&env, v, "invokeSync input")
                .map_err(|m| js_error(&env, ErrorKind::InvalidArgument, &m))?,
            None => Vec::new(),
        };
        self.worker
            .invoke(self.parent, &name, &input)
            .map(Buffer::from)
            .map_err(|e| from_core(&env, &e))
    }
}
