//! How a worker finds its engine: explicit options, or the environment the launcher sets.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ipc_root::IpcPaths;
use crate::protocol::validate_function_name;

/// Environment variable: the IPC root (default `/dev/shm/gloam-<uid>`).
pub const ENV_IPC_ROOT: &str = "GLOAM_IPC_ROOT";
/// Environment variable: the function this process serves (required).
pub const ENV_FUNCTION: &str = "GLOAM_FUNCTION";
/// Environment variable: which of the program's handlers to run (default: the function name).
/// Lets one program serve several functions under other names (`PyEcho` → handler `Echo`).
pub const ENV_HANDLER: &str = "GLOAM_HANDLER";
/// Environment variable: how many logical workers this process hosts (default 1).
pub const ENV_WORKERS: &str = "GLOAM_WORKERS";
/// Environment variable: `1` when the function has `debug = true` — the SDKs then put a failed
/// handler's stack trace in the error message its caller gets (it always goes to the worker's
/// log).
pub const ENV_DEBUG: &str = "GLOAM_DEBUG";
/// Environment variable the launcher sets to a fresh secret per worker process; the worker
/// presents it in `HELLO` (see [`crate::protocol::Hello::secret`]).
pub const ENV_WORKER_SECRET: &str = "GLOAM_WORKER_SECRET";

/// Whether `GLOAM_DEBUG=1`.
pub fn debug_from_env() -> bool {
    std::env::var(ENV_DEBUG).is_ok_and(|v| v == "1")
}

/// Options of one logical worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The engine's IPC root.
    pub ipc_root: PathBuf,
    /// The function served.
    pub function: String,
    /// The handler of the program to run for this function (usually the function's name).
    pub handler: String,
    /// The language runtime, reported to the engine (`rust`, `c`, `python`, `node`, `go`).
    pub language: String,
    /// How long to keep retrying the engine socket at start.
    pub connect_timeout: Duration,
}

impl WorkerOptions {
    /// Options for `function` on the default IPC root.
    pub fn new(function: impl Into<String>) -> WorkerOptions {
        let function = function.into();
        WorkerOptions {
            ipc_root: IpcPaths::default_root(),
            handler: function.clone(),
            function,
            language: "rust".into(),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Options from `GLOAM_FUNCTION`, `GLOAM_IPC_ROOT` and `GLOAM_HANDLER`, as set by the
    /// launcher.
    pub fn from_env() -> Result<WorkerOptions> {
        let function = std::env::var(ENV_FUNCTION).map_err(|_| {
            Error::InvalidConfig(format!(
                "{ENV_FUNCTION} is not set: start this program with `gloam up`, or set it to the function to serve"
            ))
        })?;
        validate_function_name(&function)
            .map_err(|reason| Error::InvalidConfig(format!("{ENV_FUNCTION}: {reason}")))?;
        let mut opts = WorkerOptions::new(function);
        if let Some(root) = std::env::var_os(ENV_IPC_ROOT) {
            opts.ipc_root = PathBuf::from(root);
        }
        if let Ok(handler) = std::env::var(ENV_HANDLER) {
            if !handler.is_empty() {
                opts.handler = handler;
            }
        }
        Ok(opts)
    }

    /// Sets the language reported to the engine.
    pub fn language(mut self, language: impl Into<String>) -> WorkerOptions {
        self.language = language.into();
        self
    }
}

/// The number of logical workers this process should host (`GLOAM_WORKERS`, default 1).
pub fn workers_from_env() -> Result<usize> {
    match std::env::var(ENV_WORKERS) {
        Err(_) => Ok(1),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(Error::InvalidConfig(format!(
                "{ENV_WORKERS}={v:?}: expected a number of workers from 1 to 1024"
            ))),
        },
    }
}
