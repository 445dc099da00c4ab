//! The one place where Rust panics are stopped before they reach C.

use std::panic::{catch_unwind, AssertUnwindSafe};

use gloam_core::worker::panic_message;
use gloam_core::Error;

use crate::error::{gloam_error_t, gloam_status_e, write_error};

/// Runs the body of an `extern "C"` function: its `Err` becomes a status (and the message in
/// `err`), and a panic becomes `GLOAM_E_INTERNAL` instead of unwinding into C.
pub(crate) fn run(
    err: *mut gloam_error_t,
    body: impl FnOnce() -> Result<(), Error>,
) -> gloam_status_e {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => gloam_status_e::GLOAM_OK,
        Ok(Err(e)) => write_error(err, &e),
        Err(panic) => write_error(
            err,
            &Error::Internal(format!(
                "panic in libgloam: {}",
                panic_message(panic.as_ref())
            )),
        ),
    }
}

/// Like [`run`] for functions that return a value and cannot report errors: a panic gives
/// `T::default()`.
pub(crate) fn no_status<T: Default>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_default()
}
