//! What the launcher tells a worker process through its environment, and the shared clock.

use pyo3::prelude::*;

use crate::errors::to_py;

/// Reads `GLOAM_FUNCTION`, `GLOAM_HANDLER` and `GLOAM_IPC_ROOT`.
///
/// Returns `(function, handler, ipc_root)`; raises `gloam.InvalidConfig` when `GLOAM_FUNCTION`
/// is missing or not a valid function name.
#[pyfunction]
pub fn options_from_env() -> PyResult<(String, String, String)> {
    let opts = gloam_core::WorkerOptions::from_env().map_err(to_py)?;
    Ok((
        opts.function,
        opts.handler,
        opts.ipc_root.to_string_lossy().into_owned(),
    ))
}

/// The number of logical workers this process hosts (`GLOAM_WORKERS`, default 1).
#[pyfunction]
pub fn workers_from_env() -> PyResult<usize> {
    gloam_core::worker::workers_from_env().map_err(to_py)
}

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock deadlines are expressed in.
#[pyfunction]
pub fn now_ns() -> u64 {
    gloam_core::clock::now_ns()
}
