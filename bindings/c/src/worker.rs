//! The worker handle: connect, receive calls, answer them, make internal calls.

use std::ffi::{c_char, c_int, CString};
use std::time::Duration;

use gloam_core::channel::Wait;
use gloam_core::{ErrorKind, Worker, WorkerOptions};

use crate::args;
use crate::buffer::gloam_buffer_t;
use crate::call::gloam_call_t;
use crate::error::{gloam_error_t, gloam_status_e};
use crate::options::{self, gloam_worker_options_t};

/// A logical worker connected to the engine.
///
/// \par Thread safety
/// Shareable between threads: one thread at a time receives (`recv`, `try_recv`,
/// `recv_timeout`), any thread may complete or fail a call it owns, and any number of threads
/// may call gloam_worker_invoke() at once. gloam_worker_wake() and gloam_worker_close() may be
/// called from any thread at any time. gloam_worker_free() must come after every other use.
pub struct gloam_worker_t {
    pub(crate) inner: Worker,
    function: CString,
    handler: CString,
}

impl gloam_worker_t {
    pub(crate) fn connect(opts: &WorkerOptions) -> gloam_core::Result<gloam_worker_t> {
        let inner = Worker::connect(opts)?;
        Ok(gloam_worker_t {
            inner,
            function: c_string(&opts.function),
            handler: c_string(&opts.handler),
        })
    }
}

fn c_string(s: &str) -> CString {
    // Function names are validated ASCII; the fallback only guards the impossible case.
    CString::new(s).unwrap_or_default()
}

/// Connects a worker configured by the environment the engine's launcher sets
/// (`GLOAM_FUNCTION`, `GLOAM_HANDLER`, `GLOAM_IPC_ROOT`).
///
/// @param language the language reported to the engine (NUL-terminated); NULL: `"c"`.
/// @param[out] out receives the new worker; free it with gloam_worker_free().
/// @param[out] err optional error details.
/// @return `GLOAM_OK`; `GLOAM_E_INVALID_CONFIG` when `GLOAM_FUNCTION` is unset;
///         `GLOAM_E_IO`/`GLOAM_E_SHUTDOWN` when the engine cannot be reached.
///
/// # Safety
/// `language` is NULL or NUL-terminated; `out` is NULL or writable; `err` is NULL or writable.
///
/// \par Thread safety
/// Safe from any thread.
///
/// ```c
/// gloam_worker_t *w = NULL;
/// gloam_error_t err = {0};
/// if (gloam_worker_new_from_env(NULL, &w, &err) != GLOAM_OK) {
///     fprintf(stderr, "%s\n", err.message);
///     gloam_error_free(&err);
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_new_from_env(
    language: *const c_char,
    out: *mut *mut gloam_worker_t,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    crate::boundary::run(err, || {
        // SAFETY: NULL or writable (contract).
        let out = unsafe { args::out_ptr(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: NULL or NUL-terminated (contract).
        let language = unsafe { args::opt_cstr(language, "language") }?.unwrap_or("c");
        let opts = WorkerOptions::from_env()?.language(language);
        *out = Box::into_raw(Box::new(gloam_worker_t::connect(&opts)?));
        Ok(())
    })
}

/// Connects a worker with explicit options.
///
/// @param opts the options (see gloam_worker_options_t); only read during the call.
/// @param[out] out receives the new worker; free it with gloam_worker_free().
/// @param[out] err optional error details.
/// @return `GLOAM_OK`, `GLOAM_E_INVALID_ARGUMENT` (naming the field), or the connection error.
///
/// # Safety
/// `opts` is NULL or a valid options struct; `out` and `err` are NULL or writable.
///
/// \par Thread safety
/// Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_new(
    opts: *const gloam_worker_options_t,
    out: *mut *mut gloam_worker_t,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    crate::boundary::run(err, || {
        // SAFETY: NULL or writable (contract).
        let out = unsafe { args::out_ptr(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: NULL or valid (contract).
        let opts = unsafe { args::non_null(opts, "opts") }?;
        // SAFETY: its strings are NULL or NUL-terminated (contract).
        let opts = unsafe { options::to_core(opts) }?;
        *out = Box::into_raw(Box::new(gloam_worker_t::connect(&opts)?));
        Ok(())
    })
}

/// Disconnects and frees a worker. `NULL` is a no-op.
///
/// Calls not yet answered are failed by the engine (`WORKER_CRASHED`).
///
/// # Safety
/// `worker` is NULL or a worker from gloam_worker_new*(), not freed yet, and no other thread
/// uses it any more.
///
/// \par Thread safety
/// Must not race with any other use of the same worker.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_free(worker: *mut gloam_worker_t) {
    crate::boundary::no_status(|| {
        if !worker.is_null() {
            // SAFETY: from `Box::into_raw` in `gloam_worker_new*`, freed once (contract).
            drop(unsafe { Box::from_raw(worker) });
        }
    })
}

/// The function this worker serves, NUL-terminated (NULL when `worker` is NULL).
///
/// \par Ownership
/// Owned by the worker: valid until gloam_worker_free().
///
/// # Safety
/// `worker` is NULL or live.
///
/// \par Thread safety
/// Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_function(worker: *const gloam_worker_t) -> *const c_char {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        unsafe { worker.as_ref() }.map_or(std::ptr::null(), |w| w.function.as_ptr())
    })
}

/// The handler this worker should run (`GLOAM_HANDLER`, default the function's name),
/// NUL-terminated (NULL when `worker` is NULL). Owned by the worker.
///
/// # Safety
/// `worker` is NULL or live.
///
/// \par Thread safety
/// Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_handler(worker: *const gloam_worker_t) -> *const c_char {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        unsafe { worker.as_ref() }.map_or(std::ptr::null(), |w| w.handler.as_ptr())
    })
}

unsafe fn recv_with(
    worker: *const gloam_worker_t,
    call: *mut *mut gloam_call_t,
    err: *mut gloam_error_t,
    wait: Wait,
) -> gloam_status_e {
    crate::boundary::run(err, || {
        // SAFETY: NULL or writable (caller's contract).
        let call = unsafe { args::out_ptr(call, "call") }?;
        *call = std::ptr::null_mut();
        // SAFETY: NULL or live (caller's contract).
        let worker = unsafe { args::non_null(worker, "worker") }?;
        if let Some(c) = worker.inner.recv(wait)? {
            *call = Box::into_raw(Box::new(gloam_call_t::new(&worker.inner, c)));
        }
        Ok(())
    })
}

/// Waits for the next call.
///
/// @param worker the worker.
/// @param[out] call receives the call, or NULL when gloam_worker_wake() interrupted the wait.
/// @param[out] err optional error details.
/// @return `GLOAM_OK`; `GLOAM_E_SHUTDOWN` when the engine retired the worker, the engine went
///         away or gloam_worker_close() was called: stop serving then.
///
/// \par Ownership
/// The call is the program's until passed to gloam_worker_complete() or gloam_worker_fail().
///
/// # Safety
/// `worker` is NULL or live; `call` and `err` are NULL or writable.
///
/// \par Thread safety
/// One receiving thread per worker at a time.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_recv(
    worker: *const gloam_worker_t,
    call: *mut *mut gloam_call_t,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    // SAFETY: forwarded contract.
    unsafe { recv_with(worker, call, err, Wait::Forever) }
}

/// Like gloam_worker_recv() without waiting: `*call` is NULL when no call is pending.
///
/// # Safety
/// As gloam_worker_recv().
///
/// \par Thread safety
/// One receiving thread per worker at a time.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_try_recv(
    worker: *const gloam_worker_t,
    call: *mut *mut gloam_call_t,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    // SAFETY: forwarded contract.
    unsafe { recv_with(worker, call, err, Wait::NonBlocking) }
}

/// Like gloam_worker_recv(), waiting at most `timeout_ms` milliseconds: `*call` is NULL when
/// none came in time (or on a wake).
///
/// # Safety
/// As gloam_worker_recv().
///
/// \par Thread safety
/// One receiving thread per worker at a time.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_recv_timeout(
    worker: *const gloam_worker_t,
    timeout_ms: u64,
    call: *mut *mut gloam_call_t,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    let wait = Wait::Timeout(Duration::from_millis(timeout_ms));
    // SAFETY: forwarded contract.
    unsafe { recv_with(worker, call, err, wait) }
}

/// Makes a waiting receive return `GLOAM_OK` with `*call == NULL`. NULL is a no-op.
///
/// # Safety
/// `worker` is NULL or live.
///
/// \par Thread safety
/// Safe from any thread, e.g. a signal-handling thread.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_wake(worker: *const gloam_worker_t) {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        if let Some(w) = unsafe { worker.as_ref() } {
            w.inner.wake();
        }
    })
}

/// Closes the worker: waiting and later receives and internal calls return
/// `GLOAM_E_SHUTDOWN`. It still has to be freed. NULL is a no-op.
///
/// # Safety
/// `worker` is NULL or live.
///
/// \par Thread safety
/// Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_close(worker: *const gloam_worker_t) {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        if let Some(w) = unsafe { worker.as_ref() } {
            w.inner.close();
        }
    })
}

/// Takes ownership of `call` (NULL allowed) and returns it.
///
/// # Safety
/// `call` is NULL or from gloam_worker_recv*() and not consumed yet.
unsafe fn take_call(call: *mut gloam_call_t) -> Option<Box<gloam_call_t>> {
    // SAFETY: from `Box::into_raw` in `recv_with`, consumed once (contract).
    (!call.is_null()).then(|| unsafe { Box::from_raw(call) })
}

/// Completes `call` with `output` and frees the call.
///
/// @param worker the worker that received the call.
/// @param call the call; consumed (freed) in every case, also on failure.
/// @param output the output bytes (may be NULL when `output_len` is 0); copied.
/// @param output_len the output's length.
/// @param[out] err optional error details.
/// @return `GLOAM_OK`; `GLOAM_E_PAYLOAD_TOO_LARGE` when the output is over the limit (the
///         caller then gets that error); `GLOAM_E_SHUTDOWN` when the engine is gone.
///
/// # Safety
/// `worker` is NULL or live; `call` is NULL or an unconsumed call of this worker that no other
/// thread uses any more; `output` points to `output_len` bytes.
///
/// \par Thread safety
/// Any thread, once per call.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_complete(
    worker: *const gloam_worker_t,
    call: *mut gloam_call_t,
    output: *const u8,
    output_len: usize,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    crate::boundary::run(err, || {
        // SAFETY: see the function's contract.
        let call = unsafe { take_call(call) };
        // SAFETY: NULL or live (contract).
        let worker = unsafe { args::non_null(worker, "worker") }?;
        let call = call.ok_or_else(|| args::invalid("call", "must not be NULL"))?;
        // SAFETY: `output_len` readable bytes (contract).
        let output = unsafe { args::bytes(output, output_len, "output") };
        match output {
            Ok(output) => worker.inner.complete(call.inner, output),
            Err(e) => {
                // Answer the caller anyway so it does not wait for its deadline.
                let _ = worker
                    .inner
                    .fail(call.inner, ErrorKind::Internal, &e.to_string());
                Err(e)
            }
        }
    })
}

/// Fails `call` with a message for the caller (who sees `HANDLER_FAILED`) and frees it. To
/// pass on the error of an internal call with its kind, use gloam_worker_fail_with_status().
///
/// @param worker the worker that received the call.
/// @param call the call; consumed (freed) in every case.
/// @param message the message, UTF-8 without a needed NUL (NULL when `message_len` is 0);
///        invalid UTF-8 is replaced.
/// @param message_len its length in bytes.
/// @param[out] err optional error details.
/// @return `GLOAM_OK`, or `GLOAM_E_SHUTDOWN` when the engine is gone.
///
/// # Safety
/// As gloam_worker_complete().
///
/// \par Thread safety
/// Any thread, once per call.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_fail(
    worker: *const gloam_worker_t,
    call: *mut gloam_call_t,
    message: *const c_char,
    message_len: usize,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    let status = c_int::from(ErrorKind::HandlerFailed.code());
    // SAFETY: the same contract, forwarded.
    unsafe { gloam_worker_fail_with_status(worker, call, status, message, message_len, err) }
}

/// Fails `call` with the error `status` and a message for the caller, and frees it: how a
/// receive loop passes on the error of an internal call with its kind.
///
/// A status whose kind may pass on — `GLOAM_E_FUNCTION_NOT_FOUND`, `GLOAM_E_PAYLOAD_TOO_LARGE`,
/// `GLOAM_E_HANDLER_FAILED`, `GLOAM_E_WORKER_CRASHED`, `GLOAM_E_TIMEOUT`,
/// `GLOAM_E_OVERLOADED`, `GLOAM_E_SHUTDOWN`, `GLOAM_E_FUNCTION_UNAVAILABLE`: what a call can end with — is the call's error
/// kind (e.g. HTTP 504 for `GLOAM_E_TIMEOUT`), and the message loses the prefix naming that
/// kind (`timeout: ...`), which a `gloam_error_t` message carries. Any other value (the
/// statuses about this process, such as `GLOAM_E_PROTOCOL_ERROR` or `GLOAM_E_IO`, and values
/// outside the enum) fails the call as gloam_worker_fail() does, with `HANDLER_FAILED` and
/// the message unchanged: a handler cannot make its caller believe the engine or the request
/// was at fault.
///
/// @param worker the worker that received the call.
/// @param call the call; consumed (freed) in every case.
/// @param status the error's status, e.g. what gloam_worker_invoke() returned.
/// @param message the message, UTF-8 without a needed NUL (NULL when `message_len` is 0);
///        invalid UTF-8 is replaced.
/// @param message_len its length in bytes.
/// @param[out] err optional error details.
/// @return `GLOAM_OK`, or `GLOAM_E_SHUTDOWN` when the engine is gone.
///
/// # Safety
/// As gloam_worker_complete().
///
/// \par Thread safety
/// Any thread, once per call.
///
/// ```c
/// gloam_status_e st = gloam_worker_invoke(w, call, "Slow", 4, in, len, &out, &err);
/// if (st != GLOAM_OK)
///     gloam_worker_fail_with_status(w, call, st, err.message, strlen(err.message), NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_fail_with_status(
    worker: *const gloam_worker_t,
    call: *mut gloam_call_t,
    status: c_int,
    message: *const c_char,
    message_len: usize,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    crate::boundary::run(err, || {
        // SAFETY: see the function's contract.
        let call = unsafe { take_call(call) };
        // SAFETY: NULL or live (contract).
        let worker = unsafe { args::non_null(worker, "worker") }?;
        let call = call.ok_or_else(|| args::invalid("call", "must not be NULL"))?;
        // SAFETY: `message_len` readable bytes (contract).
        let text = match unsafe { args::bytes(message.cast(), message_len, "message") } {
            Ok(b) => String::from_utf8_lossy(b).into_owned(),
            Err(e) => e.to_string(),
        };
        let passed = u8::try_from(status)
            .ok()
            .and_then(ErrorKind::from_code)
            .filter(|k| k.can_pass_on());
        match passed {
            Some(kind) => worker
                .inner
                .fail(call.inner, kind, kind.bare_message(&text)),
            None => worker
                .inner
                .fail(call.inner, ErrorKind::HandlerFailed, &text),
        }
    })
}

/// Calls function `name` with `input` through the engine (an internal call) and waits for its
/// output. The internal call inherits `parent`'s deadline.
///
/// @param worker the worker running `parent`.
/// @param parent the call being run; only read.
/// @param name the function's name, UTF-8, `name_len` bytes (no NUL needed).
/// @param name_len its length.
/// @param input the input bytes (NULL when `input_len` is 0); read during the call only.
/// @param input_len its length.
/// @param[out] output receives the output; free it with gloam_buffer_free(). Set to
///        `{NULL, 0}` on failure.
/// @param[out] err optional error details.
/// @return `GLOAM_OK`, or the callee's failure: `GLOAM_E_FUNCTION_NOT_FOUND`,
///         `GLOAM_E_PAYLOAD_TOO_LARGE`, `GLOAM_E_HANDLER_FAILED` (with its message),
///         `GLOAM_E_WORKER_CRASHED`, `GLOAM_E_TIMEOUT`, `GLOAM_E_OVERLOADED`, `GLOAM_E_SHUTDOWN`, `GLOAM_E_FUNCTION_UNAVAILABLE`.
///
/// # Safety
/// `worker` and `parent` are NULL or live, `parent` not consumed during the call; `name` and
/// `input` point to the given number of bytes; `output` and `err` are NULL or writable.
///
/// \par Thread safety
/// Any number of threads may invoke at once, for the same parent or different ones.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_invoke(
    worker: *const gloam_worker_t,
    parent: *const gloam_call_t,
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
        let worker = unsafe { args::non_null(worker, "worker") }?;
        // SAFETY: NULL or live (contract).
        let parent = unsafe { args::non_null(parent, "parent") }?;
        // SAFETY: `name_len` readable bytes (contract).
        let name = unsafe { args::text(name, name_len, "name") }?;
        // SAFETY: `input_len` readable bytes (contract).
        let input = unsafe { args::bytes(input, input_len, "input") }?;
        let out = worker
            .inner
            .invoke(parent.inner.parent_ref(), name, input)?;
        *output = gloam_buffer_t::from_vec(out);
        Ok(())
    })
}

/// Like gloam_worker_invoke() with the parent given by value (its id and deadline, from
/// gloam_call_id() and gloam_call_deadline_ns()) instead of the call itself, so the internal
/// call does not depend on the parent staying alive (e.g. a wait abandoned by a Go context).
///
/// # Safety
/// As gloam_worker_invoke(), without the `parent` pointer.
///
/// \par Thread safety
/// Any number of threads at once.
#[no_mangle]
pub unsafe extern "C" fn gloam_worker_invoke_with_parent(
    worker: *const gloam_worker_t,
    parent_id: u64,
    parent_deadline_ns: u64,
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
        let worker = unsafe { args::non_null(worker, "worker") }?;
        // SAFETY: `name_len` readable bytes (contract).
        let name = unsafe { args::text(name, name_len, "name") }?;
        // SAFETY: `input_len` readable bytes (contract).
        let input = unsafe { args::bytes(input, input_len, "input") }?;
        let parent = gloam_core::ParentRef {
            call_id: gloam_core::CallId(parent_id),
            deadline_ns: parent_deadline_ns,
        };
        let out = worker.inner.invoke(parent, name, input)?;
        *output = gloam_buffer_t::from_vec(out);
        Ok(())
    })
}
