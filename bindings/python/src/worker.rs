//! One logical worker: every method that waits, or takes a lock of the core, releases the GIL.
//!
//! A core lock must never be waited for while holding the GIL: a thread that holds that lock
//! could itself be waiting for the GIL, a deadlock. (The core's own threads never take the
//! GIL: its log events go through a queue, see `logging.rs`.) Methods that only read fields
//! set at connection time keep the GIL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gloam_core::channel::Wait;
use gloam_core::{ErrorKind, Worker, WorkerOptions};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::call::PyCall;
use crate::errors::{error, to_py};

/// A logical worker connected to the engine: it receives calls one at a time, answers them and
/// makes internal calls.
///
/// Thread-safe: one thread may wait in `recv` while others call `invoke`, `complete`, `fail`,
/// `wake` or `close`. Every method that waits releases the GIL.
#[pyclass(module = "gloam._gloam", name = "Worker", frozen)]
pub struct PyWorker {
    inner: Arc<Worker>,
}

#[pymethods]
impl PyWorker {
    /// Connects to the engine at `ipc_root` as a worker of `function` and performs the
    /// handshake (retrying the engine socket for up to `connect_timeout` seconds).
    #[new]
    #[pyo3(signature = (function, ipc_root, *, connect_timeout = 10.0))]
    fn new(
        py: Python<'_>,
        function: String,
        ipc_root: PathBuf,
        connect_timeout: f64,
    ) -> PyResult<PyWorker> {
        let mut opts = WorkerOptions::new(function).language("python");
        opts.ipc_root = ipc_root;
        opts.connect_timeout = seconds(connect_timeout, "connect_timeout")?;
        let worker = py.allow_threads(|| Worker::connect(&opts)).map_err(to_py)?;
        Ok(PyWorker {
            inner: Arc::new(worker),
        })
    }

    /// The worker id the engine assigned.
    #[getter]
    fn id(&self) -> u32 {
        self.inner.id()
    }

    /// The function served.
    #[getter]
    fn function(&self) -> &str {
        self.inner.function()
    }

    /// The id of the function served.
    #[getter]
    fn function_id(&self) -> u16 {
        self.inner.function_id()
    }

    /// The largest payload (input or output) in bytes.
    #[getter]
    fn max_payload(&self) -> u64 {
        self.inner.max_payload()
    }

    /// The names of the functions deployed on the engine.
    #[getter]
    fn functions(&self) -> Vec<String> {
        let entries = self.inner.table().entries();
        entries.iter().map(|(_, name)| name.clone()).collect()
    }

    /// Waits for the next call, at most `timeout` seconds (`None`: no limit).
    ///
    /// Returns `None` when the wait ran out or `wake` was called; raises `gloam.Shutdown` when
    /// the engine retired this worker or the worker was closed.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyCall>> {
        let wait = match timeout {
            None => Wait::Forever,
            Some(t) => Wait::Timeout(seconds(t, "timeout")?),
        };
        let got = py.allow_threads(|| self.inner.recv(wait)).map_err(to_py)?;
        Ok(got.map(|c| PyCall::new(&self.inner, c)))
    }

    /// Waits for the next call of a serve loop: `None` once the worker is retired or the
    /// engine is gone (the loop should end); raises `gloam.ProtocolError` if the engine sent
    /// something undecodable. Other receive errors are logged and skipped.
    fn next_call(&self, py: Python<'_>) -> PyResult<Option<PyCall>> {
        let got = py.allow_threads(|| self.inner.next_call()).map_err(to_py)?;
        Ok(got.map(|c| PyCall::new(&self.inner, c)))
    }

    /// Makes a waiting `recv` return `None`.
    ///
    /// Releases the GIL: it takes the worker's inbox lock, which a core thread may hold while
    /// it waits for something that needs the GIL (see the module doc).
    fn wake(&self, py: Python<'_>) {
        py.allow_threads(|| self.inner.wake());
    }

    /// Closes the worker: waiting and later `recv` and `invoke` raise `gloam.Shutdown`.
    ///
    /// Releases the GIL: it takes core locks (the inbox's, the ring channel's tally) and may
    /// send a last tally to the engine.
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.inner.close());
    }

    /// Answers `call` with `output`. An output over the payload limit fails the call with
    /// `PAYLOAD_TOO_LARGE` instead and raises `gloam.PayloadTooLarge` (the caller is answered
    /// either way).
    fn complete(&self, py: Python<'_>, call: &PyCall, output: &[u8]) -> PyResult<()> {
        let call = call.take()?;
        py.allow_threads(|| self.inner.complete(call, output))
            .map_err(to_py)
    }

    /// Fails `call` with the error `kind` (a name such as `"HANDLER_FAILED"`) and `message`.
    fn fail(&self, py: Python<'_>, call: &PyCall, kind: &str, message: &str) -> PyResult<()> {
        let kind = ErrorKind::from_name(kind).ok_or_else(|| {
            error(
                ErrorKind::InvalidArgument,
                &format!("invalid argument `kind`: {kind:?} is not a Gloam error kind"),
            )
        })?;
        let call = call.take()?;
        py.allow_threads(|| self.inner.fail(call, kind, message))
            .map_err(to_py)
    }

    /// Calls function `name` with `data` on behalf of `parent` (an internal call through the
    /// engine) and returns its output. Blocks, with the GIL released, until the answer or the
    /// parent's deadline; several threads may invoke at once for the same parent.
    fn invoke<'py>(
        &self,
        py: Python<'py>,
        parent: &PyCall,
        name: &str,
        data: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let parent = parent.parent();
        let out = py
            .allow_threads(|| self.inner.invoke(parent, name, data))
            .map_err(to_py)?;
        Ok(PyBytes::new(py, &out))
    }

    fn __repr__(&self) -> String {
        format!(
            "<gloam._gloam.Worker id={} function={:?}>",
            self.inner.id(),
            self.inner.function()
        )
    }
}

/// A non-negative, finite number of seconds as a `Duration`.
fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        error(
            ErrorKind::InvalidArgument,
            &format!("invalid argument `{name}`: {value} is not a number of seconds >= 0"),
        )
    })
}
