//! `serve`: one Rust thread per logical worker receives calls and hands them to JavaScript;
//! when calls come in quick succession the JavaScript thread receives them itself for a while.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gloam_core::channel::Wait;
use gloam_core::clock::now_ns;
use gloam_core::worker::workers_from_env;
use gloam_core::worker::Next;
use gloam_core::{Call, Error, ErrorKind, Worker, WorkerOptions};
use napi::bindgen_prelude::{External, FromNapiValue, ToNapiValue};
use napi::threadsafe_function::{
    ErrorStrategy, ThreadSafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{CallContext, Env, JsFunction, JsObject, JsUnknown, NapiRaw, NapiValue, Ref, ValueType};
use napi_derive::napi;

use crate::convert::{thrown, to_bytes};
use crate::ctx::Ctx;
use crate::errors::{from_core, handler_failure, js_error};

/// What a handler produced: the output, or the error kind and message the call fails with.
type Outcome = Result<Vec<u8>, (ErrorKind, String)>;

/// A plain handler failure (`HANDLER_FAILED`) with `message`.
fn failed(message: String) -> (ErrorKind, String) {
    (ErrorKind::HandlerFailed, message)
}

/// A call being run in JavaScript. Its answer is sent from the JavaScript thread as soon as the
/// handler settles (a single 1 KiB write), so the receive thread never waits for it and no
/// thread wake-up sits on the call's path. Dropped unanswered — the handler's Promise was
/// garbage-collected without settling — it fails the call, so the caller is never left waiting.
struct Pending {
    receiver: Arc<Receiver>,
    call: Mutex<Option<Call>>,
}

impl Pending {
    fn settle(&self, outcome: Outcome) {
        let Some(call) = self.call.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let sent = match outcome {
            Ok(output) => match self.receiver.worker.complete(call, &output) {
                // The caller got PAYLOAD_TOO_LARGE instead; nothing else to do here.
                Err(e) if e.kind() == ErrorKind::PayloadTooLarge => Ok(()),
                other => other,
            },
            Err((kind, message)) => self.receiver.worker.fail(call, kind, &message),
        };
        self.receiver.answered();
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Shutdown => {}
            Err(e) => eprintln!("gloam: could not answer a call: {e}"),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.settle(Err(failed("the handler's Promise never settled".into())));
    }
}

/// Longest the JavaScript thread waits for a worker's next call after answering one.
const MAX_JS_LINGER: Duration = Duration::from_micros(200);
/// How long the JavaScript thread waits for the Rust thread to leave its receive.
const TAKE_OVER_WAIT: Duration = Duration::from_micros(100);
/// A streak of calls run in place on the JavaScript thread ends after this long, so that the
/// event loop gets its turn (timers, I/O, other workers' calls).
const MAX_JS_STREAK: Duration = Duration::from_millis(2);

/// One logical worker's receiving. Its Rust thread receives calls and hands them to the
/// JavaScript thread through a threadsafe function — an event-loop wake-up (tens of µs) per
/// call. So when calls come in quick succession, the JavaScript thread, having answered one,
/// receives the next itself for a short adaptive while (the Rust thread waits meanwhile) and
/// runs it in place.
struct Receiver {
    worker: Arc<Worker>,
    /// Who receives: while the JavaScript thread does, the Rust thread waits (parked).
    turn: Mutex<Turn>,
    turn_changed: Condvar,
    /// Calls handed to the JavaScript thread and not yet started there.
    handed: AtomicUsize,
    /// A give-back is scheduled for when the event loop next turns.
    give_back_scheduled: AtomicBool,
    /// When a call was last answered (monotonic ns), and the moving average of the gap between
    /// an answer and the next call (0 = none yet).
    answered_ns: AtomicU64,
    gap_ns: AtomicU64,
}

impl Receiver {
    fn new(worker: Arc<Worker>) -> Receiver {
        Receiver {
            worker,
            turn: Mutex::new(Turn::default()),
            turn_changed: Condvar::new(),
            handed: AtomicUsize::new(0),
            give_back_scheduled: AtomicBool::new(false),
            answered_ns: AtomicU64::new(0),
            gap_ns: AtomicU64::new(0),
        }
    }

    fn answered(&self) {
        self.answered_ns.store(now_ns(), Ordering::Relaxed);
    }

    /// A call arrived: updates the gap average.
    fn arrived(&self) {
        let answered = self.answered_ns.load(Ordering::Relaxed);
        if answered == 0 {
            return;
        }
        let gap = now_ns().saturating_sub(answered);
        let old = self.gap_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            gap
        } else {
            old - old / 8 + gap / 8
        };
        self.gap_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// How long the JavaScript thread should wait for the next call: twice the usual gap when
    /// calls come quickly, nothing when they come rarely.
    fn linger(&self) -> Option<Duration> {
        let gap = Duration::from_nanos(self.gap_ns.load(Ordering::Relaxed));
        if gap.is_zero() {
            return Some(Duration::from_micros(20));
        }
        (gap * 2 <= MAX_JS_LINGER).then(|| (gap * 2).max(Duration::from_micros(20)))
    }

    fn job(self: &Arc<Self>, call: Call) -> Job {
        self.arrived();
        Job {
            ctx: Ctx::new(&self.worker, &call),
            input: call.input().to_vec(),
            pending: Arc::new(Pending {
                receiver: self.clone(),
                call: Mutex::new(Some(call)),
            }),
        }
    }

    fn lock_turn(&self) -> std::sync::MutexGuard<'_, Turn> {
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rust thread: waits (parked) while the JavaScript thread receives.
    fn wait_for_turn(&self) {
        let mut turn = self.lock_turn();
        while turn.js_receiving {
            turn.rust_parked = true;
            self.turn_changed.notify_all();
            turn = self
                .turn_changed
                .wait(turn)
                .unwrap_or_else(|p| p.into_inner());
        }
        turn.rust_parked = false;
    }

    /// JavaScript thread: takes the receiving over; `false` when the Rust thread did not park
    /// in time or handed a call over meanwhile (that call must run first).
    fn take_over(&self) -> bool {
        {
            let mut turn = self.lock_turn();
            if turn.js_receiving && turn.rust_parked {
                return true; // still held from the last call of this streak
            }
            turn.js_receiving = true;
        }
        // Wakes the Rust thread out of its receive; it parks in `wait_for_turn`. It is usually
        // polling for the next call, so this thread polls for its parking too (sleeping on the
        // condition variable would cost a wake-up, the thing this avoids).
        self.worker.wake();
        gloam_core::ring::spin_until(TAKE_OVER_WAIT, || {
            self.lock_turn().rust_parked || self.handed.load(Ordering::Acquire) > 0
        });
        let mut turn = self.lock_turn();
        let ok = turn.rust_parked && self.handed.load(Ordering::Acquire) == 0;
        if !ok {
            turn.js_receiving = false;
            self.turn_changed.notify_all();
        }
        ok
    }

    /// JavaScript thread: gives the receiving back.
    fn give_back(&self) {
        self.lock_turn().js_receiving = false;
        self.turn_changed.notify_all();
    }
}

/// Who receives a worker's calls.
#[derive(Debug, Default)]
struct Turn {
    js_receiving: bool,
    rust_parked: bool,
}

/// The dispatcher's reference and the start of the current streak (see `JS_SIDE`).
type JsSide = (ManuallyDrop<Ref<()>>, Option<Instant>);

thread_local! {
    /// The bound dispatcher `(ctx, input, ok, fail)` of this JavaScript thread, and when the
    /// current streak of calls run in place began. The reference is never dropped by the
    /// thread-local's destructor (at process exit, after a retirement): napi would panic on
    /// its count, printing a spurious report in the worker's log; `serve` unrefs it instead.
    static JS_SIDE: RefCell<Option<JsSide>> = const { RefCell::new(None) };
}

/// JavaScript thread, right after a call of `receiver` was answered: when calls come quickly,
/// waits a little for the next one and runs it in place.
fn linger(env: Env, receiver: &Arc<Receiver>) {
    let Some(budget) = receiver.linger() else {
        end_streak();
        return;
    };
    let streak_ok = JS_SIDE.with(|side| match side.borrow_mut().as_mut() {
        Some((_, streak)) => {
            let start = *streak.get_or_insert_with(Instant::now);
            if start.elapsed() > MAX_JS_STREAK {
                *streak = None; // let the event loop turn; the next call comes the usual way
                false
            } else {
                true
            }
        }
        None => false,
    });
    // A call already handed over waits for this thread's event loop: no lingering then.
    if !streak_ok || receiver.handed.load(Ordering::Acquire) > 0 || !receiver.take_over() {
        receiver.give_back();
        end_streak();
        return;
    }
    let until = Instant::now() + budget;
    let call = loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        match receiver.worker.recv(Wait::Timeout(left)) {
            Ok(Some(call)) => break Some(call),
            Ok(None) => continue,
            Err(_) => break None, // the Rust thread sees the same and handles it
        }
    };
    match call {
        Some(call) => {
            // Keep receiving through the streak: the next linger (after this call settles)
            // needs no hand-over. The receiving goes back when the event loop next turns
            // (an async handler that waits on I/O, or the end of the streak).
            if !schedule_give_back(env, receiver) {
                receiver.give_back();
            }
            run_in_place(env, receiver.job(call));
        }
        None => {
            receiver.give_back();
            end_streak();
        }
    }
}

/// Gives `receiver`'s receiving back to its Rust thread when the event loop next turns
/// (`setImmediate`), once per streak. `false` when it could not be scheduled.
fn schedule_give_back(env: Env, receiver: &Arc<Receiver>) -> bool {
    if receiver.give_back_scheduled.swap(true, Ordering::AcqRel) {
        return true;
    }
    let schedule = || -> napi::Result<()> {
        let set_immediate: JsFunction = env.get_global()?.get_named_property("setImmediate")?;
        let r = receiver.clone();
        let give_back = env.create_function_from_closure("gloamGiveBack", move |cx| {
            r.give_back_scheduled.store(false, Ordering::Release);
            r.give_back();
            end_streak();
            cx.env.get_undefined()
        })?;
        set_immediate.call(None, &[give_back])?;
        Ok(())
    };
    let ok = schedule().is_ok();
    if !ok {
        receiver.give_back_scheduled.store(false, Ordering::Release);
    }
    ok
}

/// The JavaScript thread goes back to its event loop: the next streak starts afresh.
fn end_streak() {
    JS_SIDE.with(|side| {
        if let Some((_, streak)) = side.borrow_mut().as_mut() {
            *streak = None;
        }
    });
}

/// JavaScript thread: runs `job` through the bound dispatcher now.
fn run_in_place(env: Env, job: Job) {
    let args = dispatch_args(env, job);
    if args.is_empty() {
        return;
    }
    let called = JS_SIDE.with(|side| -> napi::Result<()> {
        let side = side.borrow();
        let Some((dispatch, _)) = side.as_ref() else {
            return Err(napi::Error::from_reason("no dispatcher on this thread"));
        };
        let dispatch: JsFunction = env.get_reference_value(dispatch)?;
        dispatch.call(None, &args).map(|_| ())
    });
    if let Err(e) = called {
        // The handler never ran: its Pending fails the call when collected.
        eprintln!("gloam: could not run a call on the JavaScript thread: {e}");
    }
}

/// One call handed to the JavaScript thread.
struct Job {
    ctx: Ctx,
    input: Vec<u8>,
    pending: Arc<Pending>,
}

/// Runs `handler(ctx, input)` and settles through `ok(pending, value)` / `fail(pending, error)`
/// (two native functions made once; `pending` is the call's External). `new Promise` turns a
/// synchronous throw into a rejection, and `resolve` adopts a returned Promise, so both sync and
/// async handlers end in exactly one of the two callbacks. It never throws itself. Called
/// without a `pending` (the call could not be prepared, and is already answered), it does
/// nothing.
const DISPATCH_JS: &str = "(function gloamDispatch(handler, ok, fail, ctx, input, pending) {\n\
  if (pending === undefined) return;\n\
  new Promise(function (resolve) { resolve(handler(ctx, input)); })\n\
    .then(function (v) { ok(pending, v); }, function (e) { fail(pending, e); });\n\
})";

/// Serves the function named by `GLOAM_FUNCTION` with `handlers[GLOAM_HANDLER]` (default:
/// `handlers[GLOAM_FUNCTION]`), hosting `GLOAM_WORKERS` logical workers in this process.
/// These variables are set by `gloam up`.
///
/// A handler gets `(ctx, input: Buffer)` and returns a `Buffer`, `Uint8Array` or string (or
/// `undefined`/`null` for empty output), or a Promise of one. If it throws or rejects, the
/// call fails with `HANDLER_FAILED` and the error's message (with `GLOAM_DEBUG=1`, its stack's
/// frames too); the process keeps serving, and the stack goes to stderr.
///
/// Passing an error on keeps its kind: an error of `ctx.invoke` / `ctx.invokeSync` that the
/// handler lets through (rethrown, or a rejection left uncaught) fails the call with its
/// `err.code` when that is the outcome of a call — `GLOAM_E_FUNCTION_NOT_FOUND`,
/// `GLOAM_E_PAYLOAD_TOO_LARGE`, `GLOAM_E_HANDLER_FAILED`, `GLOAM_E_WORKER_CRASHED`,
/// `GLOAM_E_TIMEOUT`, `GLOAM_E_OVERLOADED`, `GLOAM_E_SHUTDOWN`, `GLOAM_E_FUNCTION_UNAVAILABLE` —
/// so a callee's timeout reaches the HTTP client as 504 `TIMEOUT`. Other codes describe this
/// process and stay `HANDLER_FAILED`.
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
    ts_args_type = "handlers: Record<string, (ctx: Ctx, input: Buffer) => Buffer | Uint8Array | string | null | undefined | void | Promise<Buffer | Uint8Array | string | null | undefined | void>>",
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
    let ok = env.create_function_from_closure("gloamOk", |cx: CallContext<'_>| {
        let pending = pending_of(&cx)?;
        let value: JsUnknown = cx.get(1)?;
        pending.settle(to_bytes(cx.env, value, "handler result").map_err(failed));
        linger(*cx.env, &pending.receiver);
        cx.env.get_undefined()
    })?;
    let debug = gloam_core::worker::debug_from_env();
    let handler_name = opts.handler.clone();
    let fail = env.create_function_from_closure("gloamFail", move |cx: CallContext<'_>| {
        let pending = pending_of(&cx)?;
        let value: JsUnknown = cx.get(1)?;
        // A Gloam error passed on (e.g. an `await ctx.invoke` rejection left uncaught) keeps
        // its kind; anything else is HANDLER_FAILED.
        let t = thrown(value);
        // The worker's log (stderr, which `gloam up` shows) gets the stack of every failure.
        match &t.stack {
            Some(stack) => eprintln!("gloam: handler {handler_name} failed: {stack}"),
            None => eprintln!("gloam: handler {handler_name} failed: {}", t.message),
        }
        let (kind, mut message) = handler_failure(t.code.as_deref(), t.message);
        if let (true, Some(stack)) = (debug, &t.stack) {
            // `stack` starts with the message: keep its frames only.
            let frames = stack.find("\n    at ").map_or("", |i| &stack[i..]);
            message.push_str(frames);
        }
        pending.settle(Err((kind, message)));
        linger(*cx.env, &pending.receiver);
        cx.env.get_undefined()
    })?;
    let bound = bind.call(
        Some(&dispatch),
        &[
            env.get_undefined()?.into_unknown(),
            handler.into_unknown(),
            ok.into_unknown(),
            fail.into_unknown(),
        ],
    )?;
    // SAFETY: `Function.prototype.bind` returns a function.
    let bound: JsFunction = unsafe { bound.cast() };
    let dispatch_ref = env.create_reference(&bound)?;
    JS_SIDE.with(|side| {
        let new = (ManuallyDrop::new(dispatch_ref), None);
        if let Some((old, _)) = side.borrow_mut().replace(new) {
            let _ = ManuallyDrop::into_inner(old).unref(env);
        }
    });
    let tsfn: ThreadsafeFunction<Job, ErrorStrategy::Fatal> =
        bound.create_threadsafe_function(0, |cx: ThreadSafeCallContext<Job>| {
            cx.value
                .pending
                .receiver
                .handed
                .fetch_sub(1, Ordering::AcqRel);
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

/// The call's `Pending`, from the External passed as the first argument.
fn pending_of(cx: &CallContext<'_>) -> napi::Result<Arc<Pending>> {
    let value: JsUnknown = cx.get(0)?;
    // SAFETY: a value of this callback's own arguments, on the JS thread of `cx.env`; the
    // type tag is checked (a foreign External is an error, not a cast).
    let external =
        unsafe { External::<Arc<Pending>>::from_napi_value(cx.env.raw(), NapiRaw::raw(&value))? };
    Ok(Arc::clone(&external))
}

/// On the JavaScript thread: the arguments of the bound dispatcher, `(ctx, input, pending)`.
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
        // Dropped when collected; unanswered by then, the call fails (`Pending`'s Drop).
        // SAFETY: creating a value on the JS thread of `env`.
        let pending = unsafe {
            let raw = External::to_napi_value(env.raw(), External::new(pending))?;
            JsUnknown::from_raw(env.raw(), raw)?
        };
        Ok(vec![ctx, input, pending])
    };
    match build() {
        Ok(args) => args,
        Err(e) => {
            on_error.settle(Err(failed(format!("could not start the handler: {e}"))));
            // No arguments: the dispatcher returns without running the handler.
            Vec::new()
        }
    }
}

/// One logical worker: connect, then receive → run in JavaScript → answer, until shutdown
/// (leaving the receiving to the JavaScript thread while it lingers, see [`Receiver`]).
fn run_worker(
    opts: &WorkerOptions,
    tsfn: ThreadsafeFunction<Job, ErrorStrategy::Fatal>,
) -> Result<(), Error> {
    let receiver = Arc::new(Receiver::new(Arc::new(Worker::connect(opts)?)));
    loop {
        receiver.wait_for_turn();
        let call = match receiver.worker.next_event()? {
            Next::Call(call) => call,
            Next::Woken => continue,
            Next::Done => return Ok(()),
        };
        // On failure the job (and its `Pending`) is dropped, which fails the call.
        receiver.handed.fetch_add(1, Ordering::AcqRel);
        let status = tsfn.call(receiver.job(call), ThreadsafeFunctionCallMode::NonBlocking);
        if status != napi::Status::Ok {
            receiver.handed.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Shutdown(format!(
                "the JavaScript thread is not accepting calls ({status})"
            )));
        }
    }
}
