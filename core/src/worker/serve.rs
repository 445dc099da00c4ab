//! The plain Rust API: handlers as closures, one thread per logical worker.
//!
//! ```no_run
//! use gloam_core::{serve, Ctx, HandlerError, Handlers};
//!
//! fn foo(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
//!     let bar = ctx.invoke("Bar", input)?;
//!     Ok([b"From function Bar: ".as_slice(), &bar].concat())
//! }
//!
//! fn main() -> gloam_core::Result<()> {
//!     serve(Handlers::new().handler("Foo", foo).handler("Bar", |_ctx, input| Ok(input.to_vec())))
//! }
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::CallId;

use super::call::Call;
use super::logical_worker::Worker;
use super::options::{workers_from_env, WorkerOptions};

/// The error a handler returns: an [`ErrorKind`] and a message for the caller.
///
/// Anything that implements `Display` converts into it, so `?` works on most errors. A plain
/// error fails the call with `HANDLER_FAILED` and its text. The [`Error`] of a failed internal
/// call keeps its kind when passed on (see [`ErrorKind::can_pass_on`]): a handler that does
/// `ctx.invoke("Slow", input)?` fails its own call with `TIMEOUT` (HTTP 504) when `Slow` timed
/// out, with `WORKER_CRASHED` (502) when it crashed, with the callee's message; kinds that
/// describe this process rather than a call (`PROTOCOL_ERROR`, `IO`, ...) still give
/// `HANDLER_FAILED`. The kind is found by a downcast of the converted value: an [`Error`], or
/// one boxed as `Box<dyn std::error::Error (+ Send + Sync)>`. An error of your own type that
/// wraps one loses the kind unless you convert it with [`HandlerError::with_kind`].
///
/// ```
/// use gloam_core::{Error, ErrorKind, HandlerError};
/// let passed: HandlerError = Error::Timeout("call to Slow did not finish".into()).into();
/// assert_eq!(passed.kind(), ErrorKind::Timeout);
/// assert_eq!(passed.message(), "call to Slow did not finish");
/// let plain: HandlerError = "not a number".parse::<u32>().unwrap_err().into();
/// assert_eq!(plain.kind(), ErrorKind::HandlerFailed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    kind: ErrorKind,
    message: String,
}

impl HandlerError {
    /// A plain handler failure with `message` (the caller sees `HANDLER_FAILED`).
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError {
            kind: ErrorKind::HandlerFailed,
            message: message.into(),
        }
    }

    /// A failure of `kind` with `message`, as when passing on an error of that kind: a kind
    /// that may not pass on ([`ErrorKind::can_pass_on`]) becomes `HANDLER_FAILED`, and a
    /// passed-on message loses the prefix naming its kind ([`ErrorKind::bare_message`]).
    pub fn with_kind(kind: ErrorKind, message: impl Into<String>) -> HandlerError {
        let message = message.into();
        if kind.can_pass_on() {
            HandlerError {
                kind,
                message: kind.bare_message(&message).to_string(),
            }
        } else {
            HandlerError {
                kind: ErrorKind::HandlerFailed,
                message,
            }
        }
    }

    /// The kind the call fails with.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A core error passed on: its kind when it may pass on (with the message a peer would
    /// receive), else a plain failure with its whole text.
    fn passed_on(e: &Error) -> HandlerError {
        if e.kind().can_pass_on() {
            HandlerError::with_kind(e.kind(), e.wire_message())
        } else {
            HandlerError::new(e.to_string())
        }
    }
}

impl<E: std::fmt::Display + 'static> From<E> for HandlerError {
    fn from(e: E) -> HandlerError {
        let any: &dyn Any = &e;
        let core = any
            .downcast_ref::<Error>()
            .or_else(|| {
                any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>()
                    .and_then(|b| b.downcast_ref::<Error>())
            })
            .or_else(|| {
                any.downcast_ref::<Box<dyn std::error::Error>>()
                    .and_then(|b| b.downcast_ref::<Error>())
            });
        match core {
            Some(core) => HandlerError::passed_on(core),
            None => HandlerError::new(e.to_string()),
        }
    }
}

/// What a handler sees of its call.
pub struct Ctx<'a> {
    worker: &'a Worker,
    call: &'a Call,
}

impl Ctx<'_> {
    /// Calls function `name` through the engine (an internal call) and returns its output.
    /// `Ctx` is `Sync`: several threads may invoke at once (e.g. with `std::thread::scope`).
    pub fn invoke(&self, name: &str, input: &[u8]) -> Result<Vec<u8>> {
        self.worker.invoke(self.call.parent_ref(), name, input)
    }
    /// The function being run.
    pub fn function(&self) -> &str {
        self.worker.function()
    }
    /// The gRPC method this call is for (`"Get"` for `/shop.Cart/Get` served by function
    /// `grpc:shop.Cart`); `""` for a plain function's call.
    pub fn method(&self) -> &str {
        self.worker.method_of(self.call)
    }
    /// The call's id. An asynchronous call (`POST /async-function/NAME`) keeps its id when it
    /// runs again after an engine restart, so a handler can deduplicate on it.
    pub fn call_id(&self) -> CallId {
        self.call.id()
    }
    /// The call's deadline (`CLOCK_MONOTONIC` ns, 0 = none).
    pub fn deadline_ns(&self) -> u64 {
        self.call.deadline_ns()
    }
    /// The worker running the call.
    pub fn worker(&self) -> &Worker {
        self.worker
    }
}

/// The signature of a Rust handler.
pub type HandlerFn = dyn Fn(&Ctx<'_>, &[u8]) -> Result<Vec<u8>, HandlerError> + Send + Sync;

type BoxedHandler = Arc<HandlerFn>;

/// Handlers by function name. A program may hold handlers for several functions; the launcher
/// tells each process which one to serve (`GLOAM_FUNCTION`).
#[derive(Default, Clone)]
pub struct Handlers {
    map: HashMap<String, BoxedHandler>,
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Handlers {
        Handlers::default()
    }
    /// Adds the handler of function `name`.
    pub fn handler(
        mut self,
        name: &str,
        f: impl Fn(&Ctx<'_>, &[u8]) -> Result<Vec<u8>, HandlerError> + Send + Sync + 'static,
    ) -> Handlers {
        self.map.insert(name.to_string(), Arc::new(f));
        self
    }
    fn get(&self, name: &str) -> Result<BoxedHandler> {
        self.map.get(name).cloned().ok_or_else(|| {
            let mut known: Vec<_> = self.map.keys().cloned().collect();
            known.sort();
            Error::InvalidConfig(format!(
                "this program has no handler for function {name:?} (it has: {})",
                known.join(", ")
            ))
        })
    }
}

/// Serves the function named by `GLOAM_FUNCTION` (with the handler named by `GLOAM_HANDLER`,
/// default the same name) with `GLOAM_WORKERS` logical workers (one
/// thread each) until the engine retires them or goes away.
pub fn serve(handlers: Handlers) -> Result<()> {
    let opts = WorkerOptions::from_env()?;
    let n = workers_from_env()?;
    serve_with(&opts, n, handlers)
}

/// Like [`serve`] with explicit options and worker count.
pub fn serve_with(opts: &WorkerOptions, workers: usize, handlers: Handlers) -> Result<()> {
    let handler = handlers.get(&opts.handler)?;
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let opts = opts.clone();
            let handler = handler.clone();
            std::thread::spawn(move || -> Result<()> {
                let worker = Worker::connect(&opts)?;
                run_loop(&worker, handler.as_ref())
            })
        })
        .collect();
    let mut first_err = None;
    for t in threads {
        let r = t
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("worker thread panicked".into())));
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Runs `handler` for every call `worker` receives, until retirement or shutdown.
pub fn run_loop(worker: &Worker, handler: &HandlerFn) -> Result<()> {
    while let Some(call) = worker.next_call()? {
        let ctx = Ctx {
            worker,
            call: &call,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| handler(&ctx, call.input())));
        let sent = match outcome {
            Ok(Ok(output)) => worker.complete(call, &output),
            // The kind is HANDLER_FAILED, or one passed on from an internal call.
            Ok(Err(e)) => {
                // The worker's log gets every failure (a panic is printed by its hook, with
                // its place and, under RUST_BACKTRACE=1, its stack).
                eprintln!(
                    "gloam: handler of {} failed call {}: {}",
                    worker.function(),
                    call.id(),
                    e.message()
                );
                worker.fail(call, e.kind(), e.message())
            }
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                worker.fail(
                    call,
                    ErrorKind::HandlerFailed,
                    &format!("handler panicked: {msg}"),
                )
            }
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Shutdown => return Ok(()),
            Err(e) => tracing::warn!(error = %e, "could not answer a call"),
        }
    }
    Ok(())
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_question_mark<E: std::fmt::Display + 'static>(e: E) -> HandlerError {
        let failing = || -> Result<(), HandlerError> { Err(e)? };
        match failing() {
            Err(h) => h,
            Ok(()) => HandlerError::new("unreachable"),
        }
    }

    #[test]
    fn a_passed_on_core_error_keeps_its_kind_and_message() {
        for kind in ErrorKind::ALL.into_iter().filter(|k| k.can_pass_on()) {
            let e = Error::remote(kind, "call to Slow did not finish");
            let wire = e.wire_message();
            let h = through_question_mark(e);
            assert_eq!(h.kind(), kind);
            assert_eq!(h.message(), wire, "{kind}");
        }
        let h = through_question_mark(Error::Timeout("call to Slow did not finish".into()));
        assert_eq!(
            (h.kind(), h.message()),
            (ErrorKind::Timeout, "call to Slow did not finish")
        );
    }

    #[test]
    fn kinds_about_this_process_become_handler_failed_with_their_text() {
        for kind in ErrorKind::ALL.into_iter().filter(|k| !k.can_pass_on()) {
            let e = Error::remote(kind, "details");
            let text = e.to_string();
            let h = through_question_mark(e);
            assert_eq!(h.kind(), ErrorKind::HandlerFailed, "{kind}");
            assert_eq!(h.message(), text);
        }
    }

    #[test]
    fn boxed_core_errors_keep_their_kind_and_other_errors_do_not() {
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Error::WorkerCrashed("the worker died".into()));
        assert_eq!(
            through_question_mark(boxed).kind(),
            ErrorKind::WorkerCrashed
        );
        let boxed: Box<dyn std::error::Error> = Box::new(Error::Overloaded("queue full".into()));
        assert_eq!(through_question_mark(boxed).kind(), ErrorKind::Overloaded);
        let parse = "x".parse::<u32>().map_err(|e| e.to_string());
        let h = through_question_mark(parse.unwrap_err());
        assert_eq!(h.kind(), ErrorKind::HandlerFailed);
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout: not ours");
        let h = through_question_mark(io);
        assert_eq!(
            (h.kind(), h.message()),
            (ErrorKind::HandlerFailed, "timeout: not ours")
        );
    }

    #[test]
    fn with_kind_applies_the_pass_on_rule() {
        let h = HandlerError::with_kind(ErrorKind::Timeout, "timeout: call to X did not finish");
        assert_eq!(
            (h.kind(), h.message()),
            (ErrorKind::Timeout, "call to X did not finish")
        );
        let h = HandlerError::with_kind(ErrorKind::ProtocolError, "protocol error: bad byte");
        assert_eq!(
            (h.kind(), h.message()),
            (ErrorKind::HandlerFailed, "protocol error: bad byte")
        );
        assert_eq!(HandlerError::new("plain").kind(), ErrorKind::HandlerFailed);
    }
}
