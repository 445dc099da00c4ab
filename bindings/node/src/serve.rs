//! `serve`: one Rust thread per logical worker receives calls and hands them to JavaScript.

use std::sync::{Arc, Mutex};

use gloam_core::worker::workers_from_env;
use gloam_core::{Call, Error, ErrorKind, Worker, WorkerOptions};
use napi::bindgen_prelude::ToNapiValue;
use napi::threadsafe_function::{
    ErrorStrategy, ThreadSafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{CallContext, Env, JsFunction, JsObject, JsUnknown, NapiValue, ValueType};
use napi_derive::napi;

use crate::convert::{error_message, to_bytes};
use crate::ctx::Ctx;
use crate::errors::{from_core, js_error};

/// What a handler produced: the output, or the message of what it threw / rejected with.
type Outcome = Result<Vec<u8>, String>;

/// A call being run in JavaScript. Its answer is sent from the JavaScript thread as soon as the
/// handler settles (a single 1 KiB write), so the receive thread never waits for it and no
/// thread wake-up sits on the call's path. Dropped unanswered — the handler's Promise was
/// garbage-collected without settling — it fails the call, so the caller is never left waiting.
struct Pending {
    worker: Arc<Worker>,
    call: Mutex<Option<Call>>,
}

impl Pending {
    fn settle(&self, outcome: Outcome) {
        let Some(call) = self.call.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let sent = match outcome {
            Ok(output) => match self.worker.complete(call, &output) {
                // The caller got PAYLOAD_TOO_LARGE instead; nothing else to do here.
                Err(e) if e.kind() == ErrorKind::PayloadTooLarge => Ok(()),
                other => other,
            },
            Err(message) => self.worker.fail(call, ErrorKind::HandlerFailed, &message),
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Shutdown => {}
            Err(e) => eprintln!("gloam: could not answer a call: {e}"),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.settle(Err("the handler's Promise never settled".into()));
    }
}

/// One call handed to the JavaScript thread.
struct Job {
    ctx: Ctx,
    input: Vec<u8>,
    pending: Arc<Pending>,
}

/// Runs `handler(ctx, input)` and settles through `ok` / `fail`. `new Promise` turns a
/// synchronous throw into a rejection, and `resolve` adopts a returned Promise, so both sync and
/// async handlers end in exactly one of the two callbacks. It never throws itself. Called
/// without arguments (the call could not be prepared, and is already answered), it does nothing.
const DISPATCH_JS: &str = "(function gloamDispatch(handler, ctx, input, ok, fail) {\n\
  if (ok === undefined) return;\n\
  new Promise(function (resolve) { resolve(handler(ctx, input)); }).then(ok, fail);\n\
})";

/// Serves the function named by `GLOAM_FUNCTION` with `handlers[GLOAM_HANDLER]` (default:
/// `handlers[GLOAM_FUNCTION]`), hosting `GLOAM_WORKERS` logical workers in this process.
/// These variables are set by `gloam up`.
///
/// A handler gets `(ctx, input: Buffer)` and returns a `Buffer`, `Uint8Array` or string (or
/// `undefined` for empty output), or a Promise of one. If it throws or rejects, the call fails
/// with `HANDLER_FAILED` and the error's message; the process keeps serving.
///
/// Resolves once every worker has been retired or the engine has stopped (the process can then
/// exit); rejects with a `GLOAM_E_*` coded error if a worker cannot connect. Throws right away
/// (`GLOAM_E_INVALID_CONFIG`) if the environment is incomplete or no handler matches.
///
/// @example
/// const gloam = require('gloam')
/// gloam.serve({
///   Bar: (ctx, input) => 'Hello, ' + input,
///   Foo: async (ctx, input) => Buffer.concat([Buffer.from('Bar said: '), await ctx.invoke('Bar', input)]),
/// })
#[napi(
    ts_args_type = "handlers: Record<string, (ctx: Ctx, input: Buffer) => Buffer | Uint8Array | string | undefined | Promise<Buffer | Uint8Array | string | undefined>>",
    ts_return_type = "Promise<void>"
)]
pub fn serve(env: Env, handlers: JsObject) -> napi::Result<JsObject> {
    let opts = WorkerOptions::from_env()
        .map_err(|e| from_core(&env, &e))?
        .language("node");
    let workers = workers_from_env().map_err(|e| from_core(&env, &e))?;
    let handler = find_handler(&env, &handlers, &opts.handler)?;

    let dispatch: JsObject = env.run_script(DISPATCH_JS)?;
    let bind: JsFunction = dispatch.get_named_property("bind")?;
    let bound = bind.call(
        Some(&dispatch),
        &[env.get_undefined()?.into_unknown(), handler.into_unknown()],
    )?;
    // SAFETY: `Function.prototype.bind` returns a function.
    let bound: JsFunction = unsafe { bound.cast() };
    let tsfn: ThreadsafeFunction<Job, ErrorStrategy::Fatal> = bound
        .create_threadsafe_function(0, |cx: ThreadSafeCallContext<Job>| {
            Ok(dispatch_args(cx.env, cx.value))
        })?;

    let (deferred, promise) = env.create_deferred::<(), _>()?;
    let threads: Vec<_> = (0..workers)
        .map(|i| {
            let opts = opts.clone();
            let tsfn = tsfn.clone();
            std::thread::Builder::new()
                .name(format!("gloam-worker-{i}"))
                .spawn(move || run_worker(&opts, tsfn))
        })
        .collect();
    // Only the worker threads hold the threadsafe function from now on: when the last one
    // ends, it is released and no longer keeps the event loop alive.
    drop(tsfn);
    let mut spawned = Vec::with_capacity(threads.len());
    for t in threads {
        match t {
            Ok(h) => spawned.push(h),
            Err(e) => {
                return Err(js_error(
                    &env,
                    ErrorKind::Internal,
                    &format!("could not start a worker thread: {e}"),
                ))
            }
        }
    }
    std::thread::Builder::new()
        .name("gloam-serve".into())
        .spawn(move || {
            let mut first_err: Option<Error> = None;
            for h in spawned {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("worker thread panicked".into())));
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
            deferred.resolve(move |env| match first_err {
                None => Ok(()),
                Some(e) => Err(from_core(&env, &e)),
            });
        })
        .map_err(|e| {
            js_error(
                &env,
                ErrorKind::Internal,
                &format!("could not start a thread: {e}"),
            )
        })?;
    Ok(promise)
}

fn find_handler(env: &Env, handlers: &JsObject, name: &str) -> napi::Result<JsFunction> {
    let value: JsUnknown = handlers.get_named_property(name)?;
    if value.get_type()? == ValueType::Function {
        // SAFETY: the type was just checked.
        return Ok(unsafe { value.cast() });
    }
    let mut known = Vec::new();
    let keys = handlers.get_property_names()?;
    for i in 0..keys.get_array_length()? {
        let key: napi::JsString = keys.get_element(i)?;
        known.push(key.into_utf8()?.into_owned()?);
    }
    known.sort();
    Err(js_error(
        env,
        ErrorKind::InvalidConfig,
        &format!(
            "this program has no handler for function {name:?} (it has: {}); set GLOAM_HANDLER or add it to serve()",
            known.join(", ")
        ),
    ))
}

/// On the JavaScript thread: the arguments of the bound dispatcher, `(ctx, input, ok, fail)`.
/// Infallible towards napi (an error here would be fatal): a failure is answered on the call.
fn dispatch_args(env: Env, job: Job) -> Vec<JsUnknown> {
    let Job {
        ctx,
        input,
        pending,
    } = job;
    let on_error = pending.clone();
    let build = || -> napi::Result<Vec<JsUnknown>> {
        // SAFETY: converting a class instance on the JS thread of `env`.
        let ctx = unsafe {
            let raw = Ctx::to_napi_value(env.raw(), ctx)?;
            JsUnknown::from_raw(env.raw(), raw)?
        };
        let input = env
            .create_buffer_with_data(input)?
            .into_raw()
            .into_unknown();
        let on_ok = pending.clone();
        let ok = env.create_function_from_closure("gloamOk", move |cx: CallContext<'_>| {
            let value: JsUnknown = cx.get(0)?;
            on_ok.settle(to_bytes(cx.env, value, "handler result"));
            cx.env.get_undefined()
        })?;
        let fail = env.create_function_from_closure("gloamFail", move |cx: CallContext<'_>| {
            let value: JsUnknown = cx.get(0)?;
            pending.settle(Err(error_message(value)));
            cx.env.get_undefined()
        })?;
        Ok(vec![ctx, input, ok.into_unknown(), fail.into_unknown()])
    };
    match build() {
        Ok(args) => args,
        Err(e) => {
            on_error.settle(Err(format!("could not start the handler: {e}")));
            // No arguments: the dispatcher returns without running the handler.
            Vec::new()
        }
    }
}

/// One logical worker: connect, then receive → run in JavaScript → answer, until shutdown.
fn run_worker(
    opts: &WorkerOptions,
    tsfn: ThreadsafeFunction<Job, ErrorStrategy::Fatal>,
) -> Result<(), Error> {
    let worker = Arc::new(Worker::connect(opts)?);
    while let Some(call) = worker.next_call()? {
        let job = Job {
            ctx: Ctx::new(&worker, &call),
            input: call.input().to_vec(),
            pending: Arc::new(Pending {
                worker: worker.clone(),
                call: Mutex::new(Some(call)),
            }),
        };
        // On failure the job (and its `Pending`) is dropped, which fails the call.
        let status = tsfn.call(job, ThreadsafeFunctionCallMode::NonBlocking);
        if status != napi::Status::Ok {
            return Err(Error::Shutdown(format!(
                "the JavaScript thread is not accepting calls ({status})"
            )));
        }
    }
    Ok(())
}
