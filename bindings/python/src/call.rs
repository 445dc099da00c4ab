//! A call received by a logical worker, as Python sees it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use gloam_core::{Call, ErrorKind, ParentRef};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::error;

/// A received call: its id, deadline and input. Answered once, with `Worker.complete` or
/// `Worker.fail`; after that its input is gone.
#[pyclass(module = "gloam._gloam", name = "Call", frozen)]
pub struct PyCall {
    call: Mutex<Option<Call>>,
    parent: ParentRef,
    function_id: u16,
    method: String,
}

impl PyCall {
    /// `call`, received by `worker` (which knows its method's name).
    pub fn new(worker: &gloam_core::Worker, call: Call) -> PyCall {
        PyCall {
            parent: call.parent_ref(),
            function_id: call.function_id(),
            method: worker.method_of(&call).to_string(),
            call: Mutex::new(Some(call)),
        }
    }

    /// What internal calls made on behalf of this call need (id and deadline).
    pub fn parent(&self) -> ParentRef {
        self.parent
    }

    /// Takes the call out to answer it; fails if it was answered already.
    pub fn take(&self) -> PyResult<Call> {
        self.lock().take().ok_or_else(|| {
            error(
                ErrorKind::InvalidArgument,
                &format!("call {:#x} was already answered", self.parent.call_id.0),
            )
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Call>> {
        // The lock guards no invariant a panic could break: recover the data.
        self.call.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl PyCall {
    /// The call id (a 64-bit integer, unique among the calls in flight on the engine).
    #[getter]
    fn call_id(&self) -> u64 {
        self.parent.call_id.0
    }

    /// The gRPC method the call is for (`"SayHello"` for `/demo.Greeter/SayHello` served by
    /// function `grpc:demo.Greeter`); `""` for a plain function.
    #[getter]
    fn method(&self) -> &str {
        &self.method
    }

    /// The deadline as `CLOCK_MONOTONIC` nanoseconds; 0 means none.
    #[getter]
    fn deadline_ns(&self) -> u64 {
        self.parent.deadline_ns
    }

    /// The id of the function called.
    #[getter]
    fn function_id(&self) -> u16 {
        self.function_id
    }

    /// A copy of the input bytes (empty once the call was answered).
    #[getter]
    fn input<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        match self.lock().as_ref() {
            Some(call) => PyBytes::new(py, call.input()),
            None => PyBytes::new(py, b""),
        }
    }

    /// Whether the call still waits for its answer.
    #[getter]
    fn pending(&self) -> bool {
        self.lock().is_some()
    }

    fn __repr__(&self) -> String {
        format!(
            "<gloam._gloam.Call id={:#x} deadline_ns={}>",
            self.parent.call_id.0, self.parent.deadline_ns
        )
    }
}
