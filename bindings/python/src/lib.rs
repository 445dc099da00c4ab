//! `gloam._gloam`: the native half of Gloam's Python SDK.
//!
//! It wraps `gloam-core` directly (not the C ABI) and stays small: a logical [`worker::PyWorker`]
//! whose methods release the GIL whenever they wait or take a core lock, the received
//! [`call::PyCall`], error mapping, and the bridge from `tracing` to Python's `logging` (a
//! bounded queue that a Python thread drains, so core threads never take the GIL). The asyncio
//! side (event loop, executors, handler dispatch, the log-draining thread) lives in the
//! pure-Python package `gloam`.

use pyo3::prelude::*;

mod call;
mod env;
mod errors;
mod logging;
mod worker;

/// The native module. Private: use the `gloam` package.
#[pymodule]
fn _gloam(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("INLINE_CAPACITY", gloam_core::protocol::INLINE_CAPACITY)?;
    m.add_class::<worker::PyWorker>()?;
    m.add_class::<call::PyCall>()?;
    m.add_function(wrap_pyfunction!(env::options_from_env, m)?)?;
    m.add_function(wrap_pyfunction!(env::workers_from_env, m)?)?;
    m.add_function(wrap_pyfunction!(env::now_ns, m)?)?;
    m.add_function(wrap_pyfunction!(logging::install_logging, m)?)?;
    m.add_function(wrap_pyfunction!(logging::take_log_records, m)?)?;
    m.add("LOG_QUEUE_CAPACITY", logging::CAPACITY)?;
    m.add_function(wrap_pyfunction!(errors::pass_on, m)?)?;
    Ok(())
}
