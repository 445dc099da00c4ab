//! How a C program describes the worker it wants.

use std::ffi::c_char;
use std::time::Duration;

use gloam_core::worker::workers_from_env;
use gloam_core::{Error, WorkerOptions};

use crate::args;
use crate::error::{gloam_error_t, gloam_status_e};

/// Options for gloam_worker_new(). Zero-initialise it and set what you need.
///
/// Strings are NUL-terminated UTF-8, borrowed only during the call.
///
/// \par Thread safety
/// A plain struct, read only during gloam_worker_new().
#[repr(C)]
#[derive(Debug)]
pub struct gloam_worker_options_t {
    /// The engine's IPC root; NULL: `GLOAM_IPC_ROOT`, else `/dev/shm/gloam-<uid>`.
    pub ipc_root: *const c_char,
    /// The function served (required).
    pub function: *const c_char,
    /// The handler of the program to run for it; NULL: the function's name.
    pub handler: *const c_char,
    /// The language reported to the engine; NULL: `"c"`.
    pub language: *const c_char,
    /// How long to retry connecting to the engine, in ms; 0: 10 s.
    pub connect_timeout_ms: u64,
}

/// Builds core options from C options.
///
/// # Safety
/// The string fields are NULL or NUL-terminated.
pub(crate) unsafe fn to_core(o: &gloam_worker_options_t) -> Result<WorkerOptions, Error> {
    // SAFETY: string fields are NULL or NUL-terminated (contract).
    let function = unsafe { args::opt_cstr(o.function, "opts->function") }?
        .ok_or_else(|| args::invalid("opts->function", "must not be NULL"))?;
    gloam_core::protocol::validate_function_name(function)
        .map_err(|reason| args::invalid("opts->function", reason))?;
    let mut opts = WorkerOptions::new(function).language("c");
    if let Some(root) = std::env::var_os(gloam_core::worker::ENV_IPC_ROOT) {
        opts.ipc_root = root.into();
    }
    // SAFETY: as above.
    if let Some(root) = unsafe { args::opt_cstr(o.ipc_root, "opts->ipc_root") }? {
        opts.ipc_root = root.into();
    }
    // SAFETY: as above.
    if let Some(h) = unsafe { args::opt_cstr(o.handler, "opts->handler") }? {
        opts.handler = h.to_string();
    }
    // SAFETY: as above.
    if let Some(l) = unsafe { args::opt_cstr(o.language, "opts->language") }? {
        opts.language = l.to_string();
    }
    if o.connect_timeout_ms != 0 {
        opts.connect_timeout = Duration::from_millis(o.connect_timeout_ms);
    }
    Ok(opts)
}

/// The number of logical workers this process should host (`GLOAM_WORKERS`, default 1).
///
/// @param[out] n receives the count (1..1024).
/// @param[out] err optional error details.
/// @return `GLOAM_OK`, `GLOAM_E_INVALID_CONFIG` for a bad `GLOAM_WORKERS`, or
///         `GLOAM_E_INVALID_ARGUMENT` when `n` is NULL.
///
/// # Safety
/// `n` is NULL or writable; `err` is NULL or writable.
///
/// \par Thread safety
/// Safe from any thread (reads the environment).
#[no_mangle]
pub unsafe extern "C" fn gloam_workers_from_env(
    n: *mut usize,
    err: *mut gloam_error_t,
) -> gloam_status_e {
    crate::boundary::run(err, || {
        // SAFETY: NULL or writable (contract).
        let n = unsafe { args::out_ptr(n, "n") }?;
        *n = workers_from_env()?;
        Ok(())
    })
}
