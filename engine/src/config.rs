//! The deployment file `gloam.toml` (and Nightcore's `func_config.json`), parsed and resolved.
//!
//! [`Config::load`] reads a file, checks every key and resolves defaults and relative paths, so
//! the rest of the engine works with plain values: absolute paths, [`Duration`]s and assigned
//! function ids. Every error names the file, the function and the key, e.g.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gloam_core::ipc_root::IpcPaths;
use gloam_core::protocol::{validate_function_name, CallId, DEFAULT_MAX_PAYLOAD};
use gloam_core::worker::{ENV_FUNCTION, ENV_IPC_ROOT, ENV_WORKERS};
use serde::Deserialize;

use crate::limiter::LimiterConfig;

/// Environment variable the launcher sets to a worker process's slot index (0-based).
pub const ENV_PROCESS_INDEX: &str = "GLOAM_PROCESS_INDEX";

/// Default number of tokio I/O threads.
pub const DEFAULT_IO_THREADS: usize = 2;
/// Largest accepted `engine.io_threads`.
pub const MAX_IO_THREADS: usize = 64;
/// Default HTTP gateway address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default bound of a function's call queue.
pub const DEFAULT_QUEUE_BOUND: usize = 1024;
/// Default call deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default drain period on SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `max_workers` when the file does not set it (raised to `min_workers` if smaller).
pub const DEFAULT_MAX_WORKERS: usize = 16;

/// A configuration error. Its message names the file and, where there is one, the key
/// (`engine.<key>`, `functions.<Name>.<key>`, or a line for syntax errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    file: PathBuf,
    location: Option<String>,
    reason: String,
}

impl ConfigError {
    fn new(file: &Path, location: Option<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            location,
            reason: reason.into(),
        }
    }

    fn at(file: &Path, location: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(file, Some(location.into()), reason)
    }

    /// The file the error is about, as it was given.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Where in the file: a key path such as `functions.Foo.max_workers`, or `line 3, column 5`
    /// for a syntax error; `None` when the error is about the file as a whole.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// What is wrong, without the file and location.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn render(&self) -> String {
        match &self.location {
            Some(location) => format!("{}: {}: {}", self.file.display(), location, self.reason),
            None => format!("{}: {}", self.file.display(), self.reason),
        }
    }
}

/// A resolved deployment: the engine's settings and every function, sorted by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `[engine]` table with defaults applied.
    pub engine: EngineConfig,
    /// The functions, sorted by id; at least one.
    pub functions: Vec<FunctionConfig>,
    /// The file this was read from, as given (used in messages).
    pub source: PathBuf,
}

/// The `[engine]` table, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Directory for FIFOs, shared-memory payloads and `engine.sock` (absolute).
    pub ipc_root: PathBuf,
    /// Number of tokio worker threads, 1..=64.
    pub io_threads: usize,
    /// Address of the embedded HTTP gateway.
    pub listen: SocketAddr,
    /// Default bound of each function's call queue (at least 1).
    pub queue_bound: usize,
    /// Largest payload (input or output) in bytes; at most `u32::MAX`.
    pub max_payload: u64,
    /// Default call deadline for functions that do not set `timeout_ms`.
    pub default_timeout: Duration,
    /// How long in-flight calls may finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Directory for worker stdout/stderr logs (absolute).
    pub log_dir: PathBuf,
    /// How engine and workers exchange messages.
    pub transport: Transport,
    /// Lease idle workers to callers that call their function again and again, so those
    /// calls skip the engine (direct lanes; ring transport only).
    pub direct_calls: bool,
}

/// The message channel between the engine and its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Shared-memory rings with doorbells (the default: several times faster).
    #[default]
    Ring,
    /// A pair of named pipes per worker.
    Fifo,
}

/// One `[functions.<Name>]` table, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionConfig {
    /// The function's name (validated with [`validate_function_name`]).
    pub name: String,
    /// The function's id, 1..=[`CallId::MAX_FUNCTION`], unique in the deployment.
    pub id: u16,
    /// Program that runs the function's workers. A command containing `/` is resolved against
    /// [`dir`](Self::dir) and absolute; a bare name is left for a `PATH` lookup. `None`: the
    /// workers are started by hand.
    pub command: Option<PathBuf>,
    /// Arguments passed to `command`.
    pub args: Vec<String>,
    /// Extra environment variables for the worker processes, sorted by name.
    pub env: BTreeMap<String, String>,
    /// Working directory of the worker processes (absolute).
    pub dir: PathBuf,
    /// Logical workers started at launch (may be 0).
    pub min_workers: usize,
    /// Most logical workers the function may have; at least 1 and at least `min_workers`.
    pub max_workers: usize,
    /// Logical workers hosted by one worker process (at least 1).
    pub workers_per_process: usize,
    /// Call deadline.
    pub timeout: Duration,
    /// Largest payload in bytes; at most the engine's.
    pub max_payload: u64,
    /// Whether `GET /function/<name>` is accepted besides `POST`.
    pub allow_get: bool,
    /// Bound of the function's call queue (at least 1).
    pub queue_bound: usize,
    /// Managed concurrency: limiter, pool growth and shrink (see [`crate::limiter`]).
    pub concurrency: LimiterConfig,
}

impl FunctionConfig {
    /// Worker processes started at launch: `ceil(min_workers / workers_per_process)`.
    pub fn processes(&self) -> usize {
        self.min_workers.div_ceil(self.workers_per_process.max(1))
    }
}

impl Config {
    /// Reads and resolves a `gloam.toml`. Relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, format!("cannot read the file: {e}")))?;
        Config::parse(&text, path)
    }

    /// Parses and resolves the text of a `gloam.toml`. `source` names the file in messages and
    /// anchors relative paths (its directory; made absolute against the current directory).
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let raw: RawFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| toml_error(source, text, e))?;
        resolve(raw, source)
    }

    /// Reads Nightcore's `func_config.json` (a JSON array of `{funcName, funcId, minWorkers,
    /// maxWorkers, allowHttpGet, ...}` objects). Functions get no command and the engine gets
    /// the defaults. The second value lists what was ignored (`qsAsInput`, `grpcMethods`,
    /// unknown keys), one message per key.
    pub fn from_nightcore_json(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, format!("cannot read the file: {e}")))?;
        Config::parse_nightcore_json(&text, path)
    }

    /// [`from_nightcore_json`](Self::from_nightcore_json) on text already read.
    pub fn parse_nightcore_json(
        text: &str,
        source: &Path,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            // serde_json appends the position, which the location already gives.
            let message = e.to_string();
            let position = format!(" at line {} column {}", e.line(), e.column());
            let message = message.strip_suffix(&position).unwrap_or(&message);
            ConfigError::at(
                source,
                format!("line {}, column {}", e.line(), e.column()),
                format!("invalid JSON: {message}"),
            )
        })?;
        let (functions, warnings) = nightcore_functions(&value, source)?;
        let raw = RawFile {
            engine: RawEngine::default(),
            functions,
        };
        Ok((resolve(raw, source)?, warnings))
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionConfig> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The function with id `id`.
    pub fn function_by_id(&self, id: u16) -> Option<&FunctionConfig> {
        self.functions
            .binary_search_by_key(&id, |f| f.id)
            .ok()
            .and_then(|i| self.functions.get(i))
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    functions: BTreeMap<String, RawFunction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    ipc_root: Option<PathBuf>,
    io_threads: Option<u32>,
    listen: Option<String>,
    queue_bound: Option<u64>,
    max_payload: Option<u64>,
    default_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    log_dir: Option<PathBuf>,
    transport: Option<String>,
    direct_calls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    id: Option<u32>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    dir: Option<PathBuf>,
    min_workers: Option<u32>,
    max_workers: Option<u32>,
    workers_per_process: Option<u32>,
    timeout_ms: Option<u64>,
    max_payload: Option<u64>,
    #[serde(default)]
    allow_get: bool,
    queue_bound: Option<u64>,
    limiter: Option<bool>,
    rate_window_ms: Option<u64>,
    service_alpha: Option<f64>,
    limiter_headroom: Option<f64>,
    growth_interval_ms: Option<u64>,
    shrink: Option<bool>,
    shrink_grace_ms: Option<u64>,
    max_relative_queueing_delay: Option<f64>,
}

/// Turns a deserialization error into `<file>: <key path>: <reason>`, or `<file>: line L,
/// column C: <reason>` when there is no key (a syntax error).
fn toml_error(
    source: &Path,
    text: &str,
    err: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let segments: Vec<String> = err
        .path()
        .iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => toml_key(key),
            serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
            serde_path_to_error::Segment::Enum { variant } => toml_key(variant),
            serde_path_to_error::Segment::Unknown => "?".to_string(),
        })
        .collect();
    let inner = err.inner();
    let message = inner.message().trim().replace('\n', "; ");
    // serde_path_to_error already records the unknown key as the last path segment.
    if message.starts_with("unknown field `") {
        let reason = match message.split_once(", expected ") {
            Some((_, expected)) => format!("unknown key; expected {expected}"),
            None => "unknown key".to_string(),
        };
        return ConfigError::at(source, join_path(&segments), reason);
    }
    if segments.is_empty() {
        let location = inner.span().map(|span| line_column(text, span.start));
        return ConfigError::new(source, location, format!("invalid TOML: {message}"));
    }
    ConfigError::at(source, join_path(&segments), message)
}

fn join_path(segments: &[String]) -> String {
    segments.join(".").replace(".[", "[")
}

/// A key as TOML would write it: bare when it can be, quoted otherwise (`functions."a.b"`).
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn line_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

// ---------------------------------------------------------------------------------------------
// Resolution and semantic checks.

fn engine_key(key: &str) -> String {
    format!("engine.{key}")
}

fn function_key(name: &str, key: &str) -> String {
    format!("functions.{}.{key}", toml_key(name))
}

/// Makes `path` absolute against `base` and drops `.` components (`..` is kept: resolving it
/// lexically would be wrong across symlinks).
fn absolute(base: &Path, path: &Path) -> PathBuf {
    base.join(path).components().collect()
}

/// The directory of `source`, absolute.
fn config_dir(source: &Path) -> Result<PathBuf, ConfigError> {
    let parent = source.parent().unwrap_or(Path::new(""));
    if parent.is_absolute() {
        return Ok(parent.components().collect());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        ConfigError::new(
            source,
            None,
            format!("cannot resolve relative paths: the current directory is unavailable: {e}"),
        )
    })?;
    Ok(absolute(&cwd, parent))
}

fn no_nul(source: &Path, key: impl FnOnce() -> String, value: &str) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(ConfigError::at(source, key(), "contains a NUL byte"));
    }
    Ok(())
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn resolve(raw: RawFile, source: &Path) -> Result<Config, ConfigError> {
    let base = config_dir(source)?;
    let engine = resolve_engine(raw.engine, source, &base)?;
    if raw.functions.is_empty() {
        return Err(ConfigError::new(
            source,
            None,
            "no functions: add at least one [functions.<Name>] table",
        ));
    }

    // Explicit ids first, in sorted-name order, so the duplicate is reported on the later name.
    let mut taken: BTreeMap<u16, &str> = BTreeMap::new();
    for (name, function) in &raw.functions {
        validate_function_name(name).map_err(|reason| {
            ConfigError::at(source, format!("functions.{}", toml_key(name)), reason)
        })?;
        let Some(id) = function.id else { continue };
        let id = u16::try_from(id)
            .ok()
            .filter(|id| (1..=CallId::MAX_FUNCTION).contains(id))
            .ok_or_else(|| {
                ConfigError::at(
                    source,
                    function_key(name, "id"),
                    format!("{id} is out of range; ids are 1..={}", CallId::MAX_FUNCTION),
                )
            })?;
        if let Some(other) = taken.insert(id, name) {
            return Err(ConfigError::at(
                source,
                function_key(name, "id"),
                format!("id {id} is already used by function {other}"),
            ));
        }
    }
    let explicit: BTreeSet<u16> = taken.keys().copied().collect();
    let mut free = (1..=CallId::MAX_FUNCTION).filter(|id| !explicit.contains(id));

    let mut functions = Vec::with_capacity(raw.functions.len());
    for (name, function) in raw.functions {
        let id = match function.id {
            // Checked above.
            Some(id) => u16::try_from(id).unwrap_or(0),
            None => free.next().ok_or_else(|| {
                ConfigError::at(
                    source,
                    format!("functions.{}", toml_key(&name)),
                    format!(
                        "no free function id left (at most {})",
                        CallId::MAX_FUNCTION
                    ),
                )
            })?,
        };
        functions.push(resolve_function(
            name, id, function, &engine, source, &base,
        )?);
    }
    functions.sort_by_key(|f| f.id);
    Ok(Config {
        engine,
        functions,
        source: source.to_path_buf(),
    })
}

fn resolve_engine(raw: RawEngine, source: &Path, base: &Path) -> Result<EngineConfig, ConfigError> {
    let io_threads = match raw.io_threads {
        None => DEFAULT_IO_THREADS,
        Some(n) => {
            let n = to_usize(u64::from(n));
            if !(1..=MAX_IO_THREADS).contains(&n) {
                return Err(ConfigError::at(
                    source,
                    engine_key("io_threads"),
                    format!("{n} is out of range; must be 1..={MAX_IO_THREADS}"),
                ));
            }
            n
        }
    };
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        ConfigError::at(
            source,
            engine_key("listen"),
            format!("{listen_text:?} is not an address like \"127.0.0.1:8080\" or \"[::1]:8080\""),
        )
    })?;
    let queue_bound = match raw.queue_bound {
        None => DEFAULT_QUEUE_BOUND,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                engine_key("queue_bound"),
                "must be at least 1",
            ))
        }
        Some(n) => to_usize(n),
    };
    let max_payload = match raw.max_payload {
        None => DEFAULT_MAX_PAYLOAD,
        Some(n) => check_payload(n, source, || engine_key("max_payload"))?,
    };
    let default_timeout = match raw.default_timeout_ms {
        None => DEFAULT_TIMEOUT,
        Some(ms) => check_timeout(ms, source, || engine_key("default_timeout_ms"))?,
    };
    let drain_timeout = raw
        .drain_timeout_ms
        .map_or(DEFAULT_DRAIN_TIMEOUT, Duration::from_millis);
    let ipc_root = match raw.ipc_root {
        None => IpcPaths::default_root(),
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::at(source, engine_key("ipc_root"), "is empty"))
        }
        Some(p) => absolute(base, &p),
    };
    let log_dir = match raw.log_dir {
        None => base.join("logs"),
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::at(source, engine_key("log_dir"), "is empty"))
        }
        Some(p) => absolute(base, &p),
    };
    let transport = match raw.transport.as_deref() {
        None => Transport::default(),
        Some("ring") => Transport::Ring,
        Some("fifo") => Transport::Fifo,
        Some(other) => {
            return Err(ConfigError::at(
                source,
                engine_key("transport"),
                format!("{other:?} is not a transport; use \"ring\" or \"fifo\""),
            ))
        }
    };
    Ok(EngineConfig {
        transport,
        direct_calls: raw.direct_calls.unwrap_or(true),
        ipc_root,
        io_threads,
        listen,
        queue_bound,
        max_payload,
        default_timeout,
        drain_timeout,
        log_dir,
    })
}

fn check_payload(n: u64, source: &Path, key: impl FnOnce() -> String) -> Result<u64, ConfigError> {
    if n == 0 || n > u64::from(u32::MAX) {
        return Err(ConfigError::at(
            source,
            key(),
            format!("{n} is out of range; must be 1..={}", u32::MAX),
        ));
    }
    Ok(n)
}

fn check_timeout(
    ms: u64,
    source: &Path,
    key: impl FnOnce() -> String,
) -> Result<Duration, ConfigError> {
    if ms == 0 {
        return Err(ConfigError::at(source, key(), "must be at least 1 ms"));
    }
    Ok(Duration::from_millis(ms))
}

fn resolve_function(
    name: String,
    id: u16,
    raw: RawFunction,
    engine: &EngineConfig,
    source: &Path,
    base: &Path,
) -> Result<FunctionConfig, ConfigError> {
    let key = |k: &str| function_key(&name, k);

    let dir = match &raw.dir {
        None => base.to_path_buf(),
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::at(source, key("dir"), "is empty"))
        }
        Some(p) => absolute(base, p),
    };
    let command = match raw.command {
        None => None,
        Some(c) if c.trim().is_empty() => {
            return Err(ConfigError::at(source, key("command"), "is empty"))
        }
        Some(c) => {
            no_nul(source, || key("command"), &c)?;
            if c.contains('/') {
                Some(absolute(&dir, Path::new(&c)))
            } else {
                Some(PathBuf::from(c))
            }
        }
    };
    for (i, arg) in raw.args.iter().enumerate() {
        no_nul(source, || format!("{}[{i}]", key("args")), arg)?;
    }
    let reserved = [ENV_FUNCTION, ENV_IPC_ROOT, ENV_WORKERS, ENV_PROCESS_INDEX];
    for (var, value) in &raw.env {
        let var_key = || format!("{}.{}", key("env"), toml_key(var));
        if var.is_empty() || var.contains('=') || var.contains('\0') {
            return Err(ConfigError::at(
                source,
                var_key(),
                "is not a valid environment variable name",
            ));
        }
        if reserved.contains(&var.as_str()) {
            return Err(ConfigError::at(
                source,
                var_key(),
                "is set by the launcher and cannot be configured",
            ));
        }
        no_nul(source, var_key, value)?;
    }

    let min_workers = raw.min_workers.map_or(1, |n| to_usize(u64::from(n)));
    let max_workers = match raw.max_workers {
        None => min_workers.max(DEFAULT_MAX_WORKERS),
        Some(0) => {
            return Err(ConfigError::at(
                source,
                key("max_workers"),
                "must be at least 1",
            ))
        }
        Some(n) => {
            let n = to_usize(u64::from(n));
            if n < min_workers {
                return Err(ConfigError::at(
                    source,
                    key("max_workers"),
                    format!("{n} is less than min_workers ({min_workers})"),
                ));
            }
            n
        }
    };
    let max_logical = usize::try_from(CallId::MAX_CALLER).unwrap_or(usize::MAX);
    if max_workers > max_logical {
        let which = if raw.max_workers.is_some() {
            "max_workers"
        } else {
            "min_workers"
        };
        return Err(ConfigError::at(
            source,
            key(which),
            format!("{max_workers} is more than the {max_logical} workers a node can address"),
        ));
    }
    let workers_per_process = match raw.workers_per_process {
        None => 1,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                key("workers_per_process"),
                "must be at least 1",
            ))
        }
        Some(n) => to_usize(u64::from(n)),
    };
    let timeout = match raw.timeout_ms {
        None => engine.default_timeout,
        Some(ms) => check_timeout(ms, source, || key("timeout_ms"))?,
    };
    let max_payload = match raw.max_payload {
        None => engine.max_payload,
        Some(n) => {
            let n = check_payload(n, source, || key("max_payload"))?;
            if n > engine.max_payload {
                return Err(ConfigError::at(
                    source,
                    key("max_payload"),
                    format!(
                        "{n} is above engine.max_payload ({}); raise that first",
                        engine.max_payload
                    ),
                ));
            }
            n
        }
    };
    let queue_bound = match raw.queue_bound {
        None => engine.queue_bound,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                key("queue_bound"),
                "must be at least 1",
            ))
        }
        Some(n) => to_usize(n),
    };

    let defaults = LimiterConfig::default();
    let millis = |v: Option<u64>, name: &str, default: Duration| -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(0) => Err(ConfigError::at(source, key(name), "must be at least 1")),
            Some(ms) => Ok(Duration::from_millis(ms)),
        }
    };
    let service_alpha = match raw.service_alpha {
        None => defaults.service_alpha,
        Some(a) if a > 0.0 && a <= 1.0 => a,
        Some(a) => {
            return Err(ConfigError::at(
                source,
                key("service_alpha"),
                format!("{a} is not in (0, 1]"),
            ))
        }
    };
    let max_relative_queueing_delay = match raw.max_relative_queueing_delay {
        None => defaults.max_relative_queueing_delay,
        Some(k) if k >= 0.0 && k.is_finite() => k,
        Some(k) => {
            return Err(ConfigError::at(
                source,
                key("max_relative_queueing_delay"),
                format!("{k} must be a number >= 0 (0 = never shed)"),
            ))
        }
    };
    let headroom = match raw.limiter_headroom {
        None => defaults.headroom,
        Some(h) if h.is_finite() && h >= 1.0 => h,
        Some(h) => {
            return Err(ConfigError::at(
                source,
                key("limiter_headroom"),
                format!("{h} must be a number >= 1"),
            ))
        }
    };
    let shrink_grace = millis(
        raw.shrink_grace_ms,
        "shrink_grace_ms",
        defaults.shrink_grace.unwrap_or(Duration::from_secs(10)),
    )?;
    let concurrency = LimiterConfig {
        enabled: raw.limiter.unwrap_or(defaults.enabled),
        rate_window: millis(raw.rate_window_ms, "rate_window_ms", defaults.rate_window)?,
        service_alpha,
        headroom,
        growth_interval: millis(
            raw.growth_interval_ms,
            "growth_interval_ms",
            defaults.growth_interval,
        )?,
        shrink_grace: raw.shrink.unwrap_or(true).then_some(shrink_grace),
        max_relative_queueing_delay,
        min_workers,
        max_workers,
    };

    Ok(FunctionConfig {
        concurrency,
        name,
        id,
        command,
        args: raw.args,
        env: raw.env,
        dir,
        min_workers,
        max_workers,
        workers_per_process,
        timeout,
        max_payload,
        allow_get: raw.allow_get,
        queue_bound,
    })
}

// ---------------------------------------------------------------------------------------------
// Nightcore's func_config.json.

/// Where a Nightcore entry is: by name once known, by index before.
struct Entry<'a> {
    index: usize,
    name: Option<&'a str>,
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "functions.{}", toml_key(name)),
            None => write!(f, "[{}]", self.index),
        }
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn nightcore_functions(
    value: &serde_json::Value,
    source: &Path,
) -> Result<(BTreeMap<String, RawFunction>, Vec<String>), ConfigError> {
    let entries = value.as_array().ok_or_else(|| {
        ConfigError::new(
            source,
            None,
            format!(
                "expected a JSON array of function objects, found {}",
                json_type(value)
            ),
        )
    })?;
    let mut functions = BTreeMap::new();
    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    let mut warnings = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let mut at = Entry { index, name: None };
        let object = entry.as_object().ok_or_else(|| {
            ConfigError::at(
                source,
                at.to_string(),
                format!("expected an object, found {}", json_type(entry)),
            )
        })?;
        let name = match object.get("funcName") {
            Some(serde_json::Value::String(name)) => name.as_str(),
            Some(other) => {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.funcName"),
                    format!("expected a string, found {}", json_type(other)),
                ))
            }
            None => {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.funcName"),
                    "is missing",
                ))
            }
        };
        validate_function_name(name)
            .map_err(|reason| ConfigError::at(source, format!("{at}.funcName"), reason))?;
        if functions.contains_key(name) {
            return Err(ConfigError::at(
                source,
                format!("{at}.funcName"),
                format!("function {name} is defined twice"),
            ));
        }
        at.name = Some(name);

        let uint = |key: &str| -> Result<Option<u64>, ConfigError> {
            match object.get(key) {
                None => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    ConfigError::at(
                        source,
                        format!("{at}.{key}"),
                        format!("expected a non-negative integer, found {v}"),
                    )
                }),
            }
        };
        let id = uint("funcId")?
            .ok_or_else(|| ConfigError::at(source, format!("{at}.funcId"), "is missing"))?;
        if !(1..=u64::from(CallId::MAX_FUNCTION)).contains(&id) {
            return Err(ConfigError::at(
                source,
                format!("{at}.funcId"),
                format!("{id} is out of range; ids are 1..={}", CallId::MAX_FUNCTION),
            ));
        }
        if let Some(other) = ids.insert(id, name.to_string()) {
            return Err(ConfigError::at(
                source,
                format!("{at}.funcId"),
                format!("id {id} is already used by function {other}"),
            ));
        }
        let to_u32 = |key: &str, n: u64| {
            u32::try_from(n).map_err(|_| {
                ConfigError::at(source, format!("{at}.{key}"), format!("{n} is too large"))
            })
        };
        let min_workers = uint("minWorkers")?
            .map(|n| to_u32("minWorkers", n))
            .transpose()?;
        // Nightcore treats an absent or zero maxWorkers as "unbounded": keep Gloam's default.
        let max_workers = uint("maxWorkers")?
            .filter(|&n| n > 0)
            .map(|n| to_u32("maxWorkers", n))
            .transpose()?;
        if let (Some(min), Some(max)) = (min_workers, max_workers) {
            if max < min {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.maxWorkers"),
                    format!("{max} is less than minWorkers ({min})"),
                ));
            }
        }
        let allow_get = match object.get("allowHttpGet") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.allowHttpGet"),
                    format!("expected a boolean, found {}", json_type(other)),
                ))
            }
        };
        for key in object.keys() {
            let why = match key.as_str() {
                "funcName" | "funcId" | "minWorkers" | "maxWorkers" | "allowHttpGet" => continue,
                "qsAsInput" => {
                    "ignored: Gloam passes the request body as input, not the query string"
                }
                "grpcMethods" => "ignored: gRPC methods are not supported",
                _ => "unknown key, ignored",
            };
            warnings.push(format!(
                "{}: {at}.{}: {why}",
                source.display(),
                toml_key(key)
            ));
        }
        functions.insert(
            name.to_string(),
            RawFunction {
                // Checked to be at most CallId::MAX_FUNCTION above.
                id: u32::try_from(id).ok(),
                min_workers,
                max_workers,
                allow_get,
                ..RawFunction::default()
            },
        );
    }
    Ok((functions, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/gloam/gloam.toml"))
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_and_resolution() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("gloam.toml");
        std::fs::write(
            &path,
            r#"
            [functions.Foo]
            command = "../bin/foo"
            args = ["--x"]
            env = { KEY = "value" }

            [functions.Bar]
            command = "python3"
            dir = "bar"
            min_workers = 20
            workers_per_process = 8
            "#,
        )?;
        let config = Config::load(&path)?;
        assert_eq!(config.source, path);
        let e = &config.engine;
        assert_eq!(e.ipc_root, IpcPaths::default_root());
        assert_eq!(e.io_threads, 2);
        assert_eq!(e.listen, "127.0.0.1:8080".parse::<SocketAddr>()?);
        assert_eq!(e.queue_bound, 1024);
        assert_eq!(e.max_payload, DEFAULT_MAX_PAYLOAD);
        assert_eq!(e.default_timeout, Duration::from_secs(30));
        assert_eq!(e.drain_timeout, Duration::from_secs(5));
        assert_eq!(e.log_dir, dir.path().join("logs"));

        // Sorted by id; ids assigned in sorted-name order.
        let names: Vec<_> = config.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Bar", "Foo"]);
        let bar = config.function("Bar").ok_or(anyhow::anyhow!("Bar"))?;
        assert_eq!(bar.id, 1);
        assert_eq!(bar.command, Some(PathBuf::from("python3")));
        assert_eq!(bar.dir, dir.path().join("bar"));
        assert_eq!((bar.min_workers, bar.max_workers), (20, 20));
        assert_eq!(bar.processes(), 3);

        let foo = config.function_by_id(2).ok_or(anyhow::anyhow!("id 2"))?;
        assert_eq!(foo.name, "Foo");
        assert_eq!(foo.command, Some(dir.path().join("../bin/foo")));
        assert!(foo.command.as_deref().is_some_and(Path::is_absolute));
        assert_eq!(foo.args, ["--x"]);
        assert_eq!(foo.env.get("KEY").map(String::as_str), Some("value"));
        assert_eq!(foo.dir, dir.path());
        assert_eq!((foo.min_workers, foo.max_workers), (1, 16));
        assert_eq!(foo.workers_per_process, 1);
        assert_eq!(foo.processes(), 1);
        assert_eq!(foo.timeout, Duration::from_secs(30));
        assert_eq!(foo.max_payload, DEFAULT_MAX_PAYLOAD);
        assert!(!foo.allow_get);
        assert_eq!(foo.queue_bound, 1024);
        Ok(())
    }

    #[test]
    fn engine_values_flow_into_function_defaults() -> anyhow::Result<()> {
        let config = parse(
            r#"
            [engine]
            ipc_root = "ipc"
            io_threads = 4
            listen = "[::1]:9000"
            queue_bound = 7
            max_payload = 1000
            default_timeout_ms = 250
            drain_timeout_ms = 0
            log_dir = "/var/log/gloam"

            [functions.A]
            [functions.B]
            id = 2
            timeout_ms = 10
            max_payload = 999
            queue_bound = 3
            allow_get = true
            min_workers = 0
            max_workers = 4
            "#,
        )?;
        assert_eq!(config.engine.ipc_root, Path::new("/etc/gloam/ipc"));
        assert_eq!(config.engine.io_threads, 4);
        assert_eq!(config.engine.listen, "[::1]:9000".parse::<SocketAddr>()?);
        assert_eq!(config.engine.drain_timeout, Duration::ZERO);
        assert_eq!(config.engine.log_dir, Path::new("/var/log/gloam"));
        let a = &config.functions[0];
        assert_eq!((a.name.as_str(), a.id), ("A", 1));
        assert_eq!(a.command, None);
        assert_eq!(a.timeout, Duration::from_millis(250));
        assert_eq!((a.max_payload, a.queue_bound), (1000, 7));
        let b = &config.functions[1];
        assert_eq!(
            (b.timeout, b.max_payload, b.queue_bound),
            (Duration::from_millis(10), 999, 3)
        );
        assert!(b.allow_get);
        assert_eq!((b.min_workers, b.max_workers, b.processes()), (0, 4, 0));
        Ok(())
    }

    #[test]
    fn missing_ids_skip_taken_ones() -> anyhow::Result<()> {
        let config =
            parse("[functions.a]\n[functions.b]\nid = 1\n[functions.c]\n[functions.d]\nid = 3\n")?;
        let ids: Vec<_> = config
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f.id))
            .collect();
        assert_eq!(ids, [("b", 1), ("a", 2), ("d", 3), ("c", 4)]);
        Ok(())
    }

    #[test]
    fn type_errors_name_file_function_and_key() {
        assert_eq!(
            error("[functions.Foo]\nmax_workers = \"x\"\n"),
            "/etc/gloam/gloam.toml: functions.Foo.max_workers: invalid type: string \"x\", expected u32"
        );
        assert_eq!(
            error("[engine]\nio_threads = -1\n[functions.Foo]\n"),
            "/etc/gloam/gloam.toml: engine.io_threads: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(
            error("[functions.Foo]\nenv = { A = 1 }\n"),
            "/etc/gloam/gloam.toml: functions.Foo.env.A: invalid type: integer `1`, expected a string"
        );
        let e = error("[functions.\"a.b\"]\nargs = [1]\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: functions.\"a.b\".args[0]: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = error("[functions.Foo]\ncolour = \"red\"\n");
        assert!(
            e.starts_with(
                "/etc/gloam/gloam.toml: functions.Foo.colour: unknown key; expected one of `id`"
            ),
            "{e}"
        );
        let e = error("[engine]\nthreads = 2\n[functions.Foo]\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: engine.threads: unknown key"),
            "{e}"
        );
        let e = error("[engin]\n[functions.Foo]\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: engin: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = error("[functions.Foo]\nid = 1\nmin_workers = = 2\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: line 3, column "),
            "{e}"
        );
        let e = error("[functions.Foo]\nid = 1\nid = 2\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: line 3, column "),
            "{e}"
        );
        assert!(e.contains(": invalid TOML: duplicate key `id`"), "{e}");
    }

    #[test]
    fn semantic_errors() {
        let cases = [
            (
                "[functions.\"bad name\"]\n",
                "/etc/gloam/gloam.toml: functions.\"bad name\": function name \"bad name\" has the character ' '",
            ),
            (
                "[functions.A]\nid = 3\n[functions.B]\nid = 3\n",
                "/etc/gloam/gloam.toml: functions.B.id: id 3 is already used by function A",
            ),
            (
                "[functions.A]\nid = 4096\n",
                "/etc/gloam/gloam.toml: functions.A.id: 4096 is out of range; ids are 1..=4095",
            ),
            (
                "[functions.A]\nid = 0\n",
                "/etc/gloam/gloam.toml: functions.A.id: 0 is out of range",
            ),
            (
                "[functions.A]\nmin_workers = 5\nmax_workers = 2\n",
                "/etc/gloam/gloam.toml: functions.A.max_workers: 2 is less than min_workers (5)",
            ),
            (
                "[functions.A]\nmax_workers = 0\n",
                "/etc/gloam/gloam.toml: functions.A.max_workers: must be at least 1",
            ),
            (
                "[functions.A]\nworkers_per_process = 0\n",
                "/etc/gloam/gloam.toml: functions.A.workers_per_process: must be at least 1",
            ),
            (
                "[engine]\nmax_payload = 100\n[functions.A]\nmax_payload = 101\n",
                "/etc/gloam/gloam.toml: functions.A.max_payload: 101 is above engine.max_payload (100)",
            ),
            (
                "[engine]\nmax_payload = 4294967296\n[functions.A]\n",
                "/etc/gloam/gloam.toml: engine.max_payload: 4294967296 is out of range",
            ),
            (
                "[engine]\nio_threads = 0\n[functions.A]\n",
                "/etc/gloam/gloam.toml: engine.io_threads: 0 is out of range; must be 1..=64",
            ),
            (
                "[engine]\nio_threads = 65\n[functions.A]\n",
                "/etc/gloam/gloam.toml: engine.io_threads: 65 is out of range",
            ),
            (
                "[engine]\nlisten = \"localhost\"\n[functions.A]\n",
                "/etc/gloam/gloam.toml: engine.listen: \"localhost\" is not an address",
            ),
            (
                "[engine]\nqueue_bound = 0\n[functions.A]\n",
                "/etc/gloam/gloam.toml: engine.queue_bound: must be at least 1",
            ),
            (
                "[functions.A]\nqueue_bound = 0\n",
                "/etc/gloam/gloam.toml: functions.A.queue_bound: must be at least 1",
            ),
            (
                "[functions.A]\ntimeout_ms = 0\n",
                "/etc/gloam/gloam.toml: functions.A.timeout_ms: must be at least 1 ms",
            ),
            (
                "[functions.A]\ncommand = \"\"\n",
                "/etc/gloam/gloam.toml: functions.A.command: is empty",
            ),
            (
                "[functions.A]\nenv = { GLOAM_FUNCTION = \"x\" }\n",
                "/etc/gloam/gloam.toml: functions.A.env.GLOAM_FUNCTION: is set by the launcher",
            ),
            ("", "/etc/gloam/gloam.toml: no functions"),
            ("[engine]\nio_threads = 2\n", "/etc/gloam/gloam.toml: no functions"),
        ];
        for (text, expected) in cases {
            let e = error(text);
            assert!(
                e.starts_with(expected),
                "for {text:?}:\n got {e}\nwant {expected}"
            );
        }
    }

    #[test]
    fn error_accessors() {
        let Err(e) = parse("[functions.A]\nqueue_bound = 0\n") else {
            panic!("expected an error");
        };
        assert_eq!(e.file(), Path::new("/etc/gloam/gloam.toml"));
        assert_eq!(e.location(), Some("functions.A.queue_bound"));
        assert_eq!(e.reason(), "must be at least 1");
    }

    #[test]
    fn load_names_a_missing_file() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let path = dir.path().join("missing.toml");
        let Err(e) = Config::load(&path) else {
            panic!("expected an error");
        };
        assert!(e
            .to_string()
            .starts_with(&format!("{}: cannot read the file", path.display())));
    }

    #[test]
    fn relative_source_resolves_against_current_dir() -> anyhow::Result<()> {
        let config = Config::parse("[functions.A]\ndir = \"w\"\n", Path::new("gloam.toml"))?;
        let cwd = std::env::current_dir()?;
        assert_eq!(config.functions[0].dir, cwd.join("w"));
        assert_eq!(config.engine.log_dir, cwd.join("logs"));
        Ok(())
    }

    #[test]
    fn nightcore_json() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("func_config.json");
        std::fs::write(
            &path,
            r#"[
                {"funcName": "Foo", "funcId": 1, "minWorkers": 2, "maxWorkers": 8, "allowHttpGet": true, "qsAsInput": true},
                {"funcName": "grpc:shop.Cart", "funcId": 9, "grpcMethods": ["Add"], "maxWorkers": 0, "extra": 1}
            ]"#,
        )?;
        let (config, warnings) = Config::from_nightcore_json(&path)?;
        let foo = config.function("Foo").ok_or(anyhow::anyhow!("Foo"))?;
        assert_eq!((foo.id, foo.min_workers, foo.max_workers), (1, 2, 8));
        assert!(foo.allow_get);
        assert_eq!(foo.command, None);
        let cart = config
            .function("grpc:shop.Cart")
            .ok_or(anyhow::anyhow!("Cart"))?;
        assert_eq!((cart.id, cart.min_workers, cart.max_workers), (9, 1, 16));
        assert!(!cart.allow_get);
        assert_eq!(config.engine.log_dir, dir.path().join("logs"));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        let p = path.display();
        assert!(warnings[0].starts_with(&format!("{p}: functions.Foo.qsAsInput: ignored")));
        assert!(warnings[1].starts_with(&format!(
            "{p}: functions.\"grpc:shop.Cart\".extra: unknown key"
        )));
        assert!(warnings[2].starts_with(&format!(
            "{p}: functions.\"grpc:shop.Cart\".grpcMethods: ignored"
        )));
        Ok(())
    }

    #[test]
    fn nightcore_json_errors() {
        let src = Path::new("fc.json");
        let cases = [
            (
                "{}",
                "fc.json: expected a JSON array of function objects, found an object",
            ),
            ("[1]", "fc.json: [0]: expected an object, found a number"),
            ("[{}]", "fc.json: [0].funcName: is missing"),
            (
                "[{\"funcName\": 3}]",
                "fc.json: [0].funcName: expected a string, found a number",
            ),
            (
                "[{\"funcName\": \"A\"}]",
                "fc.json: functions.A.funcId: is missing",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 5000}]",
                "fc.json: functions.A.funcId: 5000 is out of range",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 1}, {\"funcName\": \"B\", \"funcId\": 1}]",
                "fc.json: functions.B.funcId: id 1 is already used by function A",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 1, \"minWorkers\": 4, \"maxWorkers\": 2}]",
                "fc.json: functions.A.maxWorkers: 2 is less than minWorkers (4)",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 1, \"minWorkers\": -1}]",
                "fc.json: functions.A.minWorkers: expected a non-negative integer, found -1",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 1, \"allowHttpGet\": 1}]",
                "fc.json: functions.A.allowHttpGet: expected a boolean",
            ),
            ("[]", "fc.json: no functions"),
            (
                "[\n{",
                "fc.json: line 2, column 1: invalid JSON: EOF while parsing an object",
            ),
        ];
        for (text, expected) in cases {
            match Config::parse_nightcore_json(text, src) {
                Ok(c) => panic!("for {text:?}: expected an error, got {c:?}"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.starts_with(expected),
                        "for {text:?}:\n got {e}\nwant {expected}"
                    );
                }
            }
        }
    }
}
