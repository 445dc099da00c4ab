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
