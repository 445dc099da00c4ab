//! `gloam_serve`: handlers as C callbacks, one thread per logical worker.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Mutex;

use gloam_core::worker::{workers_from_env, WorkerOptions};
use gloam_core::{Error, ErrorKind};

use crate::args;
use crate::buffer::gloam_buffer_t;
use crate::call::gloam_call_t;
use crate::error::{gloam_error_t, gloam_status_e};
use crate::worker::gloam_worker_t;

/// What a handler sees of its call, passed to every #gloam_handler_fn.
///
/// \par Lifetime
/// Valid only until the handler returns; do not keep it.
///
/// \par Thread safety
/// During the handler, any thread may use it (e.g. threads started by the handler for
/// concurrent gloam_ctx_invoke() calls); join them before returning.
pub struct gloam_ctx_t {
    worker: *const gloam_worker_t,
    call: *const gloam_call_t,
    outcome: Mutex<Outcome>,
}

#[derive(Default)]
struct Outcome {
    output: Vec<u8>,
    failure: Option<String>,
    /// Where gloam_ctx_fail() was called from (the handler's C frames).
    trace: Option<String>,
    /// The message of the handler's latest failed gloam_ctx_invoke() of each kind, for a
    /// handler that passes the status on by returning it.
    invoke_failures: Vec<(ErrorKind, String)>,
}

impl Outcome {
    fn note_invoke_failure(&mut self, e: &Error) {
        let kind = e.kind();
        let message = e.wire_message();
        match self.invoke_failures.iter_mut().find(|(k, _)| *k == kind) {
            Some(slot) => slot.1 = message,
            None => self.invoke_failures.push((kind, message)),
        }
    }

    /// How the call ends when the handler returned `rc`: `None` completes it with the output;
    /// else the kind and message it fails with.
    fn failure(self, rc: c_int) -> Option<(ErrorKind, String)> {
        if rc == 0 && self.failure.is_none() {
            return None;
        }
        // A returned status of a kind that may pass on is the call's kind.
        let returned = u8::try_from(rc)
            .ok()
            .and_then(ErrorKind::from_code)
            .filter(|k| k.can_pass_on());
        let Some(kind) = returned else {
            let message = self
                .failure
                .unwrap_or_else(|| format!("handler returned {rc}"));
            return Some((ErrorKind::HandlerFailed, message));
        };
        let message = match self.failure {
            Some(message) => kind.bare_message(&message).to_string(),
            None => self
                .invoke_failures
                .into_iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, m)| m)
                .unwrap_or_else(|| format!("handler returned GLOAM_E_{}", kind.as_str())),
        };
        Some((kind, message))
    }
}

/// A handler: runs one call.
///
/// @param user_data the pointer given to gloam_serve().
/// @param ctx the call's context: set its output with gloam_ctx_set_output(), fail it with
///        gloam_ctx_fail(), make internal calls with gloam_ctx_invoke().
/// @param input the input bytes (NULL when `input_len` is 0), valid until the handler returns.
/// @param input_len the input's length.
/// @return 0 to complete the call with the output set (empty if none); any other value fails
///         it. Returning the status of a failed gloam_ctx_invoke() passes that error on: a
///         status whose kind may pass on (`GLOAM_E_FUNCTION_NOT_FOUND`,
///         `GLOAM_E_PAYLOAD_TOO_LARGE`, `GLOAM_E_HANDLER_FAILED`, `GLOAM_E_WORKER_CRASHED`,
///         `GLOAM_E_TIMEOUT`, `GLOAM_E_OVERLOADED`, `GLOAM_E_SHUTDOWN`, `GLOAM_E_FUNCTION_UNAVAILABLE`) is the call's error
///         kind (e.g. HTTP 504 for `GLOAM_E_TIMEOUT`), with the message given to
///         gloam_ctx_fail(), else that of the handler's latest gloam_ctx_invoke() failed with
///         that status. Any other value fails it with `HANDLER_FAILED` and the message given to
///         gloam_ctx_fail(), or a default naming the value.
///
/// \par Thread safety
/// Called on the thread of one logical worker; with `GLOAM_WORKERS` > 1 several handlers run
/// at once on different threads, sharing `user_data`.
pub type gloam_handler_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        ctx: *mut gloam_ctx_t,
        input: *const u8,
        input_len: usize,
    ) -> c_int,
>;

/// A named handler for gloam_serve().
///
/// \par Thread safety
/// A plain struct, read during gloam_serve().
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gloam_handler_t {
    /// The handler's name, NUL-terminated (matched against `GLOAM_HANDLER`/`GLOAM_FUNCTION`).
    pub name: *const c_char,
    /// The function to run.
    pub func: gloam_handler_fn,
}

/// Serves the function named by `GLOAM_FUNCTION` with the handler named by `GLOAM_HANDLER`
/// (default: the function's name), on `GLOAM_WORKERS` logical workers: the calling thread runs
/// one and one thread is started for each other. Returns when every worker was retired or the
/// engine went away.
///
/// @param handlers the program's handlers; read during the call, the names copied.
/// @param n how many.
/// @param user_data passed to every handler unchanged.
/// @param[out] err optional error details.
/// @return `GLOAM_OK` after a clean shutdown; `GLOAM_E_INVALID_CONFIG` when the environment is
///         incomplete or no handler has the requested name; or the first worker's error.
///
/// # Safety
/// `handlers` points to `n` valid entries with NUL-terminated names; the callbacks are safe to
/// call with `user_data` from several threads.
///
/// \par Thread safety
/// Blocks the calling thread; call it once per process.
///
/// ```c
/// static int echo(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
///     (void)ud;
///     return gloam_ctx_set_output(ctx, in, len) == GLOAM_OK ? 0 : 1;
/// }
/// int main(void) {
///     gloam_handler_t handlers[] = {{"Echo", echo}};
///     return gloam_serve(handlers, 1, NULL, NULL) == GLOAM_OK ? 0 : 1;
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn gloam_serve(
    handlers: *const gloam_handler_t,
    n: usize,
    user_data: *mut c_void,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    crate::boundary::run(err, || {
        if handlers.is_null() && n > 0 {
            return Err(args::invalid("handlers", format!("is NULL with n = {n}")));
        }
        let list: &[gloam_handler_t] = if n == 0 {
            &[]
        } else {
            // SAFETY: non-NULL, `n` valid entries (contract).
            unsafe { std::slice::from_raw_parts(handlers, n) }
        };
        let served = serve_env(list, user_data);
        if let Err(e) = &served {
            // A C program usually just exits: say why where its output goes.
            if e.kind() != ErrorKind::Shutdown {
                let function = std::env::var(gloam_core::worker::ENV_FUNCTION).unwrap_or_default();
                eprintln!("gloam_serve: {function}: {e}");
            }
        }
        served
    })
}

/// gloam_serve() once its arguments are read.
fn serve_env(list: &[gloam_handler_t], user_data: *mut c_void) -> Result<(), Error> {
    {
        let opts = WorkerOptions::from_env()?.language("c");
        let workers = workers_from_env()?;
        let debug = gloam_core::worker::debug_from_env();
        let mut chosen = None;
        let mut known = Vec::new();
        for (i, h) in list.iter().enumerate() {
            // SAFETY: NUL-terminated names (contract).
            let name = unsafe { args::opt_cstr(h.name, "handlers[i].name") }?
                .ok_or_else(|| args::invalid("handlers[i].name", format!("entry {i} is NULL")))?;
            let func = h
                .func
                .ok_or_else(|| args::invalid("handlers[i].func", format!("entry {i} is NULL")))?;
            if name == opts.handler {
                chosen = Some(func);
            }
            known.push(name.to_string());
        }
        let func = chosen.ok_or_else(|| {
            Error::InvalidConfig(format!(
                "this program has no handler {:?} (it has: {})",
                opts.handler,
                known.join(", ")
            ))
        })?;
        let user = UserData(user_data);
        std::thread::scope(|s| {
            let others: Vec<_> = (1..workers)
                .map(|_| s.spawn(|| worker_main(&opts, func, user, debug)))
                .collect();
            let mut result = worker_main(&opts, func, user, debug);
            for t in others {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("worker thread panicked".into())));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }
}

type RawHandler = unsafe extern "C" fn(*mut c_void, *mut gloam_ctx_t, *const u8, usize) -> c_int;

#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: gloam_serve's contract makes the handlers safe to call with `user_data` from several
// threads; Rust never dereferences it.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

fn worker_main(
    opts: &WorkerOptions,
    func: RawHandler,
    user: UserData,
    debug: bool,
) -> Result<(), Error> {
    let worker = gloam_worker_t::connect(opts)?;
    while let Some(call) = worker.inner.next_call()? {
        let call = gloam_call_t::new(&worker.inner, call);
        let mut ctx = gloam_ctx_t {
            worker: &worker,
            call: &call,
            outcome: Mutex::new(Outcome::default()),
        };
        let input = call.inner.input();
        let in_ptr = if input.is_empty() {
            std::ptr::null()
        } else {
            input.as_ptr()
        };
        // SAFETY: the handler is a valid C function (gloam_serve's contract); `ctx` and the
        // input outlive the call.
        let rc = unsafe { func(user.0, &mut ctx, in_ptr, input.len()) };
        let mut outcome = ctx
            .outcome
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let output = std::mem::take(&mut outcome.output);
        let trace = outcome.trace.take();
        let sent = match outcome.failure(rc) {
            None => worker.inner.complete(call.inner, &output),
            Some((kind, mut message)) => {
                // The worker log gets every failure, with where gloam_ctx_fail() was called.
                let id = call.inner.id();
                match &trace {
                    Some(t) => eprintln!(
                        "gloam: handler {} failed call {id} (returned {rc}): {message}\n{t}",
                        opts.handler
                    ),
                    None => eprintln!(
                        "gloam: handler {} failed call {id} (returned {rc}): {message}",
                        opts.handler
                    ),
                }
                if let (true, Some(t)) = (debug, &trace) {
                    message.push('\n');
                    message.push_str(t);
                }
                worker.inner.fail(call.inner, kind, &message)
            }
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Shutdown => return Ok(()),
            Err(e) => eprintln!("gloam: could not answer a call: {e}"),
        }
    }
    Ok(())
}

/// # Safety
/// `ctx` is NULL or a live context.
unsafe fn ctx_ref<'a>(ctx: *const gloam_ctx_t) -> Result<&'a gloam_ctx_t, Error> {
    // SAFETY: forwarded contract.
    unsafe { args::non_null(ctx, "ctx") }
}

/// Sets (replaces) the call's output; the bytes are copied.
///
/// @return `GLOAM_OK`, or `GLOAM_E_INVALID_ARGUMENT`.
///
/// # Safety
/// `ctx` is NULL or live; `data` points to `len` bytes.
///
/// \par Thread safety
/// Any thread during the handler.
#[no_mangle]
pub unsafe extern "C" fn gloam_ctx_set_output(
    ctx: *mut gloam_ctx_t,
    data: *const u8,
    len: usize,
) -> gloam_status_e {
    crate::boundary::run(std::ptr::null_mut(), || {
        // SAFETY: NULL or live (contract).
        let ctx = unsafe { ctx_ref(ctx) }?;
        // SAFETY: `len` readable bytes (contract).
        let data = unsafe { args::bytes(data, len, "data") }?;
        let mut o = ctx.outcome.lock().unwrap_or_else(|p| p.into_inner());
        o.output.clear();
        o.output.extend_from_slice(data);
        Ok(())
    })
}

/// Appends bytes to the call's output (copied).
///
/// # Safety
/// As gloam_ctx_set_output().
///
/// \par Thread safety
/// Any thread during the handler.
#[no_mangle]
pub unsafe extern "C" fn gloam_ctx_append_output(
    ctx: *mut gloam_ctx_t,
    data: *const u8,
    len: usize,
) -> gloam_status_e {
    crate::boundary::run(std::ptr::null_mut(), || {
        // SAFETY: NULL or live (contract).
        let ctx = unsafe { ctx_ref(ctx) }?;
        // SAFETY: `len` readable bytes (contract).
        let data = unsafe { args::bytes(data, len, "data") }?;
        let mut o = ctx.outcome.lock().unwrap_or_else(|p| p.into_inner());
        o.output.extend_from_slice(data);
        Ok(())
    })
}

/// Marks the call as failed with `message` (UTF-8, copied): the caller sees `HANDLER_FAILED`
/// with it, unless the handler returns a status that passes on (see #gloam_handler_fn), which
/// is then the call's error kind, with this message.
///
/// # Safety
/// `ctx` is NULL or live; `message` points to `len` bytes.
///
/// \par Thread safety
/// Any thread during the handler.
#[no_mangle]
pub unsafe extern "C" fn gloam_ctx_fail(
    ctx: *mut gloam_ctx_t,
    message: *const c_char,
    len: usize,
) -> gloam_status_e {
    crate::boundary::run(std::ptr::null_mut(), || {
        // SAFETY: NULL or live (contract).
        let ctx = unsafe { ctx_ref(ctx) }?;
        // SAFETY: `len` readable bytes (contract).
        let msg = unsafe { args::bytes(message.cast(), len, "message") }?;
        let trace = crate::trace::here("gloam_ctx_fail");
        let mut o = ctx.outcome.lock().unwrap_or_else(|p| p.into_inner());
        o.failure = Some(String::from_utf8_lossy(msg).into_owned());
        o.trace = Some(trace);
        Ok(())
    })
}

/// The call being run (for gloam_call_id(), gloam_call_deadline_ns(), ...); NULL when `ctx` is
/// NULL. Owned by the library, valid until the handler returns.
///
/// # Safety
/// `ctx` is NULL or live.
///
/// \par Thread safety
/// Any thread during the handler.
#[no_mangle]
pub unsafe extern "C" fn gloam_ctx_call(ctx: *const gloam_ctx_t) -> *const gloam_call_t {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        unsafe { ctx.as_ref() }.map_or(std::ptr::null(), |c| c.call)
    })
}

/// The worker running the call; NULL when `ctx` is NULL. Owned by the library.
///
/// # Safety
/// `ctx` is NULL or live.
///
/// \par Thread safety
/// Any thread during the handler.
#[no_mangle]
pub unsafe extern "C" fn gloam_ctx_worker(ctx: *const gloam_ctx_t) -> *const gloam_worker_t {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        unsafe { ctx.as_ref() }.map_or(std::ptr::null(), |c| c.worker)
    })
}

/// Calls function `name` from the running handler: gloam_worker_invoke() for this call.
///
/// A failure is also remembered by the context: a handler that returns the status passes the
/// error on, with its kind and message (see #gloam_handler_fn).
///
/// ```c
/// gloam_status_e st = gloam_ctx_invoke(ctx, "Slow", 4, in, len, &out, NULL);
/// if (st != GLOAM_OK)
///     return st; // e.g. GLOAM_E_TIMEOUT: the caller sees TIMEOUT (HTTP 504)
/// ```
///
/// # Safety
/// `ctx` is NULL or live; `name`/`input` point to the given lengths; `output` and `err` are
/// NULL or writable.
///
/// \par Thread safety
/// Any number of threads at once during the handler.
#[no_mangle]
pub unsafe extern "C" fn gloam_ctx_invoke(
    ctx: *const gloam_ctx_t,
    name: *const c_char,
    name_len: usize,
    input: *const u8,
    input_len: usize,
    output: *mut gloam_buffer_t,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    crate::boundary::run(err, || {
        // SAFETY: NULL or writable (contract).
        let output = unsafe { args::out_ptr(output, "output") }?;
        *output = gloam_buffer_t::empty();
        // SAFETY: NULL or live (contract).
        let ctx = unsafe { ctx_ref(ctx) }?;
        // SAFETY: the context's worker and call are live during the handler.
        let (worker, call) = unsafe { (&*ctx.worker, &*ctx.call) };
        // SAFETY: `name_len` readable bytes (contract).
        let name = unsafe { args::text(name, name_len, "name") }?;
        // SAFETY: `input_len` readable bytes (contract).
        let input = unsafe { args::bytes(input, input_len, "input") }?;
        match worker.inner.invoke(call.inner.parent_ref(), name, input) {
            Ok(out) => {
                *output = gloam_buffer_t::from_vec(out);
                Ok(())
            }
            Err(e) => {
                ctx.outcome
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .note_invoke_failure(&e);
                Err(e)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(outcome: Outcome, rc: c_int) -> Option<(ErrorKind, String)> {
        outcome.failure(rc)
    }

    #[test]
    fn zero_without_a_failure_completes() {
        assert_eq!(ends(Outcome::default(), 0), None);
    }

    #[test]
    fn a_returned_invoke_status_passes_the_error_on() {
        let mut o = Outcome::default();
        o.note_invoke_failure(&Error::Timeout("call to Slow did not finish".into()));
        o.note_invoke_failure(&Error::WorkerCrashed("worker 3 died".into()));
        assert_eq!(
            ends(o, gloam_status_e::GLOAM_E_TIMEOUT as c_int),
            Some((ErrorKind::Timeout, "call to Slow did not finish".into()))
        );
        // The latest failure of the kind gives the message.
        let mut o = Outcome::default();
        o.note_invoke_failure(&Error::Timeout("first".into()));
        o.note_invoke_failure(&Error::Timeout("second".into()));
        assert_eq!(ends(o, 7), Some((ErrorKind::Timeout, "second".into())));
        // Without such a failure the kind still passes, with a message naming it.
        assert_eq!(
            ends(Outcome::default(), 6),
            Some((
                ErrorKind::WorkerCrashed,
                "handler returned GLOAM_E_WORKER_CRASHED".into()
            ))
        );
    }

    #[test]
    fn gloam_ctx_fail_gives_the_message_and_the_status_the_kind() {
        let o = Outcome {
            failure: Some("timeout: Slow took too long".into()),
            ..Outcome::default()
        };
        assert_eq!(
            ends(o, 7),
            Some((ErrorKind::Timeout, "Slow took too long".into()))
        );
        let o = Outcome {
            failure: Some("Fail was called".into()),
            ..Outcome::default()
        };
        assert_eq!(
            ends(o, 0),
            Some((ErrorKind::HandlerFailed, "Fail was called".into()))
        );
    }

    #[test]
    fn other_values_are_plain_handler_failures() {
        for rc in [1, 2, 9, 11, 12, 14, -1, 256 + 7] {
            let mut o = Outcome::default();
            o.note_invoke_failure(&Error::RemoteProtocol("bad bytes".into()));
            assert_eq!(
                ends(o, rc),
                Some((ErrorKind::HandlerFailed, format!("handler returned {rc}"))),
                "{rc}"
            );
        }
    }
}
