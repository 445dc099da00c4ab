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

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::CallId;

use super::call::Call;
use super::logical_worker::Worker;
use super::options::{workers_from_env, WorkerOptions};

/// The error a handler returns: a message for the caller (who sees `HANDLER_FAILED`).
///
/// Anything that implements `Display` converts into it, so `?` works on most errors,
/// including the [`Error`] of a failed internal call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError {
            message: message.into(),
        }
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::fmt::Display> From<E> for HandlerError {
    fn from(e: E) -> HandlerError {
        HandlerError::new(e.to_string())
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
    /// The call's id.
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
            Ok(Err(e)) => worker.fail(call, ErrorKind::HandlerFailed, e.message()),
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
