//! The resolved configuration: what the rest of the engine reads, the defaults, and the error
//! every reader of a configuration file reports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(doc)]
use gloam_core::protocol::{validate_function_name, CallId};

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
/// Default time a client has to send a request head: from the connection's start for its
/// first request, from the first byte of the head for later ones.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay idle (no request in progress, no byte moving) before
/// the gateway closes it; also how long a request body may stall.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a worker may keep running a call past its deadline before it is killed.
pub const DEFAULT_HUNG_GRACE: Duration = Duration::from_secs(2);
/// Default bound on a function's usual call time for its calls to be pipelined.
pub const DEFAULT_PIPELINE_BELOW: Duration = Duration::from_micros(500);
/// Largest `pipeline_below_us`: a pipelined call may wait about this long behind another.
pub const MAX_PIPELINE_BELOW: Duration = Duration::from_millis(100);
/// Default time a started worker process has to connect to the engine.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default queueing delay a function's calls may keep before new calls are shed.
pub const DEFAULT_QUEUE_TARGET: Duration = Duration::from_millis(50);

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
    pub(super) fn new(
        file: &Path,
        location: Option<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            location,
            reason: reason.into(),
        }
    }

    pub(super) fn at(
        file: &Path,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
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
    /// The `[async]` table: asynchronous calls.
    pub async_calls: super::async_calls::AsyncConfig,
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
    /// Default overload target: once calls leaving a function's queue have waited longer than
    /// this for a whole 100 ms (CoDel's interval), new calls are shed (`None`: never).
    pub queue_target: Option<Duration>,
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
    /// Most HTTP connections the gateway holds open at once; `None`: derived at start from
    /// the descriptor limit, minus a reserve for workers (see [`crate::descriptors`]).
    pub max_connections: Option<usize>,
    /// How long a client may take to send a request head (see
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// How long a connection may stay idle between requests, and a request body may stall.
    pub idle_timeout: Duration,
    /// How long a worker may keep running a call past its deadline (its caller already has
    /// `TIMEOUT`) before the engine kills it and its launcher starts a new one.
    pub hung_grace: Duration,
    /// Under load, calls of functions whose calls usually take less than this are sent to a
    /// busy worker behind its call (zero: never; see the state's `pipeline` module).
    pub pipeline_below: Duration,
    /// The gateway to join (`host:port`), if any (`gloam up --join` overrides it).
    pub join: Option<String>,
    /// The token presented when joining (`GLOAM_JOIN_TOKEN` in the environment wins).
    pub join_token: Option<String>,
    /// A PEM file of CA certificates: with it the engine joins over TLS and checks the
    /// gateway's certificate against it (absolute).
    pub join_ca: Option<PathBuf>,
    /// This node's name in the gateway's status and metrics (default: the host name).
    pub node_name: Option<String>,
    /// A second address where the gateway serves gRPC only (gRPC is also served on `listen`).
    pub grpc_listen: Option<SocketAddr>,
    /// The gateway's certificate: with it, both listeners speak TLS (HTTP/1.1 and HTTP/2 by
    /// ALPN) instead of plain TCP.
    pub tls: Option<TlsConfig>,
    /// `engine.isolation`: the default of every function's `isolation`.
    pub isolation: super::isolation::Isolation,
    /// `engine.cgroup_parent`: the cgroup, relative to the root of each cgroup hierarchy,
    /// under which the engine creates its workers' groups (a group the admin delegated to the
    /// engine's user); `None`: the engine's own cgroup. See `launcher/cgroup/`.
    pub cgroup_parent: Option<PathBuf>,
}

/// The gateway's certificate chain and private key (PEM files, absolute paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
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
    /// Overload target of its queue (see [`EngineConfig::queue_target`]).
    pub queue_target: Option<Duration>,
    /// Managed concurrency: limiter, pool growth and shrink (see [`crate::limiter`]).
    pub concurrency: LimiterConfig,
    /// The gRPC methods of a function named `grpc:<Service>` (index = method id): the
    /// gateway maps `/<Service>/<Method>` to this function and the method's index. Empty for
    /// a plain function.
    pub grpc_methods: Vec<String>,
    /// Shell command that builds the program (`sh -c`, in `dir`), run by `gloam up` and
    /// `gloam build` before the workers start.
    pub build: Option<String>,
    /// Files and directories whose changes `gloam up --watch` rebuilds and restarts for
    /// (absolute; default: `dir`).
    pub watch: Vec<PathBuf>,
    /// Failed handlers' stack traces go into the error message too (`GLOAM_DEBUG=1`).
    pub debug: bool,
    /// The `[[programs]]` entry that gave the command, if any (its name).
    pub program: Option<String>,
    /// Safe to run twice: behind `gloam gateway`, a call lost with its engine is retried once
    /// on another engine instead of failing with `ENGINE_LOST`.
    pub idempotent: bool,
    /// A started worker process that has not connected to the engine by then is killed and
    /// reported as unable to start (`start_timeout_ms`).
    pub start_timeout: Duration,
    /// How its worker processes are isolated, and their resource limits.
    pub isolation: super::isolation::IsolationConfig,
}

/// Prefix of the functions that serve a gRPC service: `grpc:<Service>`.
pub const GRPC_PREFIX: &str = "grpc:";
/// Most gRPC methods one service may have.
pub const MAX_GRPC_METHODS: usize = 1024;

impl FunctionConfig {
    /// Worker processes started at launch: `ceil(min_workers / workers_per_process)`.
    pub fn processes(&self) -> usize {
        self.min_workers.div_ceil(self.workers_per_process.max(1))
    }
}

impl Config {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::parse;

    #[test]
    fn error_accessors() {
        let Err(e) = parse("[functions.A]\nqueue_bound = 0\n") else {
            panic!("expected an error");
        };
        assert_eq!(e.file(), Path::new("/etc/gloam/gloam.toml"));
        assert_eq!(e.location(), Some("functions.A.queue_bound"));
        assert_eq!(e.reason(), "must be at least 1");
    }
}
