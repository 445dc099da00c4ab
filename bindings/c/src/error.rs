//! Status codes and the caller-owned error record.

use std::ffi::{c_char, CString};

use gloam_core::{Error, ErrorKind};

/// The outcome of a fallible call: `GLOAM_OK` (0) or the `ErrorKind` code of the failure.
///
/// The numbers are Gloam's stable wire values and never change.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum gloam_status_e {
    /// Success.
    GLOAM_OK = 0,
    /// An argument is invalid (a NULL pointer, a bad name, ...); the message names it.
    GLOAM_E_INVALID_ARGUMENT = 1,
    /// A configuration value is invalid (e.g. `GLOAM_FUNCTION` unset).
    GLOAM_E_INVALID_CONFIG = 2,
    /// The called function is not deployed; the message names it.
    GLOAM_E_FUNCTION_NOT_FOUND = 3,
    /// A payload exceeds the configured limit; the message gives both sizes.
    GLOAM_E_PAYLOAD_TOO_LARGE = 4,
    /// The called handler failed; the message is the handler's.
    GLOAM_E_HANDLER_FAILED = 5,
    /// The worker running the call died before answering.
    GLOAM_E_WORKER_CRASHED = 6,
    /// The deadline passed before the call finished.
    GLOAM_E_TIMEOUT = 7,
    /// The function's queue is full; retry later.
    GLOAM_E_OVERLOADED = 8,
    /// A peer sent bytes that are not a Gloam message.
    GLOAM_E_PROTOCOL_ERROR = 9,
    /// The worker was retired or closed, or the engine is going away.
    GLOAM_E_SHUTDOWN = 10,
    /// An operating-system call failed; the message names the operation and the path.
    GLOAM_E_IO = 11,
    /// A bug in Gloam (including a caught panic). Please report it.
    GLOAM_E_INTERNAL = 12,
    /// The called function has no worker and its workers cannot start (missing command,
    /// exit before ready, no handler for it); the message gives the reason.
    GLOAM_E_FUNCTION_UNAVAILABLE = 13,
}

impl From<ErrorKind> for gloam_status_e {
    fn from(kind: ErrorKind) -> Self {
        use gloam_status_e::*;
        match kind {
            ErrorKind::InvalidArgument => GLOAM_E_INVALID_ARGUMENT,
            ErrorKind::InvalidConfig => GLOAM_E_INVALID_CONFIG,
            ErrorKind::FunctionNotFound => GLOAM_E_FUNCTION_NOT_FOUND,
            ErrorKind::PayloadTooLarge => GLOAM_E_PAYLOAD_TOO_LARGE,
            ErrorKind::HandlerFailed => GLOAM_E_HANDLER_FAILED,
            ErrorKind::WorkerCrashed => GLOAM_E_WORKER_CRASHED,
            ErrorKind::Timeout => GLOAM_E_TIMEOUT,
            ErrorKind::Overloaded => GLOAM_E_OVERLOADED,
            ErrorKind::ProtocolError => GLOAM_E_PROTOCOL_ERROR,
            ErrorKind::Shutdown => GLOAM_E_SHUTDOWN,
            ErrorKind::Io => GLOAM_E_IO,
            ErrorKind::Internal => GLOAM_E_INTERNAL,
            ErrorKind::FunctionUnavailable => GLOAM_E_FUNCTION_UNAVAILABLE,
        }
    }
}

/// Details of a failure, filled by any function that takes a `gloam_error_t *err`.
///
/// The storage is the caller's (usually a stack variable). Passing `NULL` for `err` is allowed:
/// the status code alone is returned. The library writes `*err` only when it returns a failure
/// status, and does not free a message already there: call gloam_error_free() before reusing
/// the same record, or zero-initialise it (`gloam_error_t err = {0};`).
///
/// \par Ownership
/// `message` is a NUL-terminated UTF-8 string allocated by the library; release it with
/// gloam_error_free(), never with free().
///
/// \par Thread safety
/// A plain struct: use each record from one thread at a time.
#[repr(C)]
#[derive(Debug)]
pub struct gloam_error_t {
    /// The status that was returned.
    pub status: gloam_status_e,
    /// What went wrong, naming the parameter, function or file; owned by the library.
    pub message: *mut c_char,
}

/// Releases the message held by `err` and resets it to `GLOAM_OK` / `NULL`.
///
/// @param err the record to clear; `NULL` is a no-op, and so is a record without a message.
///
/// # Safety
/// `err` is NULL or points to a `gloam_error_t` whose `message` is NULL or was set by this
/// library and not freed since.
///
/// \par Thread safety
/// Safe from any thread, for distinct records.
#[no_mangle]
pub unsafe extern "C" fn gloam_error_free(err: *mut gloam_error_t) {
    crate::boundary::no_status(|| {
        if err.is_null() {
            return;
        }
        // SAFETY: non-NULL, points to a caller-owned record (function contract).
        let err = unsafe { &mut *err };
        if !err.message.is_null() {
            // SAFETY: the message came from `CString::into_raw` in `write_error` (contract).
            drop(unsafe { CString::from_raw(err.message) });
        }
        err.message = std::ptr::null_mut();
        err.status = gloam_status_e::GLOAM_OK;
    })
}

/// Static text naming a status, e.g. `"FUNCTION_NOT_FOUND"` (`"OK"` for `GLOAM_OK`).
///
/// @param status any integer; values outside the enum give `"UNKNOWN"`.
/// @return a NUL-terminated static string: never NULL, never to be freed.
///
/// \par Thread safety
/// Safe from any thread.
#[no_mangle]
pub extern "C" fn gloam_status_str(status: i32) -> *const c_char {
    let text: &'static [u8] = match u8::try_from(status).ok() {
        Some(0) => b"OK\0",
        Some(code) => match ErrorKind::from_code(code) {
            Some(kind) => status_text(kind),
            None => b"UNKNOWN\0",
        },
        None => b"UNKNOWN\0",
    };
    text.as_ptr().cast()
}

fn status_text(kind: ErrorKind) -> &'static [u8] {
    match kind {
        ErrorKind::InvalidArgument => b"INVALID_ARGUMENT\0",
        ErrorKind::InvalidConfig => b"INVALID_CONFIG\0",
        ErrorKind::FunctionNotFound => b"FUNCTION_NOT_FOUND\0",
        ErrorKind::PayloadTooLarge => b"PAYLOAD_TOO_LARGE\0",
        ErrorKind::HandlerFailed => b"HANDLER_FAILED\0",
        ErrorKind::WorkerCrashed => b"WORKER_CRASHED\0",
        ErrorKind::Timeout => b"TIMEOUT\0",
        ErrorKind::Overloaded => b"OVERLOADED\0",
        ErrorKind::ProtocolError => b"PROTOCOL_ERROR\0",
        ErrorKind::Shutdown => b"SHUTDOWN\0",
        ErrorKind::Io => b"IO\0",
        ErrorKind::Internal => b"INTERNAL\0",
        ErrorKind::FunctionUnavailable => b"FUNCTION_UNAVAILABLE\0",
    }
}

/// Stores `e` in `err` (if non-NULL) and returns its status.
pub(crate) fn write_error(err: *mut gloam_error_t, e: &Error) -> gloam_status_e {
    let status = gloam_status_e::from(e.kind());
    if !err.is_null() {
        // Interior NULs would truncate the C string: replace them rather than lose the text.
        let text = e.to_string().replace('\0', "\u{FFFD}");
        let message = CString::new(text).map_or(std::ptr::null_mut(), CString::into_raw);
        // SAFETY: non-NULL `err` points to caller-owned writable storage (every caller's
        // contract); `write` does not read or drop the old, possibly uninitialised, value.
        unsafe { err.write(gloam_error_t { status, message }) };
    }
    status
}
