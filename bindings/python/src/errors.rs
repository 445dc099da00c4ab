//! Core errors as Python exceptions.
//!
//! The exception classes are defined in Python (`gloam/_errors.py`, one per `ErrorKind` under
//! `gloam.GloamError`) so they are ordinary, picklable classes; this file only looks the right
//! one up by the kind's stable name.

use gloam_core::{Error, ErrorKind};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;

static ERROR_FOR: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

/// Converts a core error into the `gloam` exception of its kind.
pub fn to_py(err: Error) -> PyErr {
    error(err.kind(), &err.to_string())
}

/// The `gloam` exception for `kind` with `message`.
pub fn error(kind: ErrorKind, message: &str) -> PyErr {
    Python::with_gil(|py| {
        let made = ERROR_FOR
            .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                Ok(py.import("gloam._errors")?.getattr("error_for")?.unbind())
            })
            .and_then(|f| f.call1(py, (kind.as_str(), message)));
        match made {
            Ok(exc) => PyErr::from_value(exc.into_bound(py)),
            // Only when the package is broken; keep the original text visible.
            Err(e) => PyRuntimeError::new_err(format!(
                "{}: {message} (and gloam._errors is unusable: {e})",
                kind.as_str()
            )),
        }
    })
}

/// How a call ends when its handler raised a `gloam` exception of error kind `kind` (a name
/// such as `"TIMEOUT"`) whose message is `message`: `(kind, message)` to fail the call with —
/// the same kind, with the message without the prefix naming the kind (`timeout: ...`) — when
/// the kind may be passed on (the outcomes of a call: `FUNCTION_NOT_FOUND`,
/// `PAYLOAD_TOO_LARGE`, `HANDLER_FAILED`, `WORKER_CRASHED`, `TIMEOUT`, `OVERLOADED`,
/// `SHUTDOWN`); `None` for the kinds about this process (and unknown names), which fail the
/// call as a plain handler error.
#[pyfunction]
pub fn pass_on(kind: &str, message: &str) -> Option<(&'static str, String)> {
    let kind = ErrorKind::from_name(kind).filter(|k| k.can_pass_on())?;
    Some((kind.as_str(), kind.bare_message(message).to_string()))
}
