//! The deployment file `gloam.toml` (and Nightcore's `func_config.json`), parsed and resolved.
//!
//! [`Config::load`] reads a file, checks every key and resolves defaults and relative paths, so
//! the rest of the engine works with plain values: absolute paths,
//! [`Duration`](std::time::Duration)s and assigned function ids. Every error names the file, the
//! function and the key, e.g.
//! `gloam.toml: functions.Foo.max_workers: invalid type: string "x", expected u32`.
//!
//! ```
//! use gloam_engine::config::Config;
//! use std::path::Path;
//!
//! let text = r#"
//!     [functions.Hello]
//!     command = "./hello"
//! "#;
//! let config = Config::parse(text, Path::new("/srv/app/gloam.toml")).unwrap();
//! let hello = config.function("Hello").unwrap();
//! assert_eq!(hello.id, 1);
//! assert_eq!(hello.command.as_deref(), Some(Path::new("/srv/app/hello")));
//! ```

// One job per file: `model` (the resolved types and defaults), `read` (the TOML file as written
// and its errors), `resolve` (defaults, paths, ids, `[engine]`), `function` (one
// `[functions.<Name>]` table), `programs` (`[[programs]]`: one program, several functions),
// `nightcore` (the `func_config.json` import), `async_calls` (the `[async]` table), `isolation` (sandboxes and resource limits).
mod async_calls;
mod function;
mod isolation;
mod model;
mod nightcore;
mod nightcore_host;
mod programs;
mod read;
mod resolve;
pub(crate) use resolve::check_join;
#[cfg(test)]
mod testing;

pub use async_calls::{
    AsyncConfig, DEFAULT_ASYNC_QUEUE_BOUND, DEFAULT_ASYNC_STORE, DEFAULT_CALLBACK_ATTEMPTS,
    DEFAULT_CALLBACK_BACKOFF, DEFAULT_CALLBACK_TIMEOUT, DEFAULT_RESULT_TTL,
};
pub use isolation::{
    size_text, Isolation, IsolationConfig, Limits, DEFAULT_TMP_SIZE, MIN_MEMORY_LIMIT,
};
pub use model::{
    Config, ConfigError, EngineConfig, FunctionConfig, TlsConfig, Transport, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_HUNG_GRACE, DEFAULT_IDLE_TIMEOUT, DEFAULT_IO_THREADS,
    DEFAULT_LISTEN, DEFAULT_MAX_WORKERS, DEFAULT_PIPELINE_BELOW, DEFAULT_QUEUE_BOUND,
    DEFAULT_QUEUE_TARGET, DEFAULT_TIMEOUT, ENV_PROCESS_INDEX, GRPC_PREFIX, MAX_GRPC_METHODS,
    MAX_IO_THREADS, MAX_PIPELINE_BELOW,
};
pub use nightcore_host::{cworker_path, serve_nightcore_libraries, CWORKER};
