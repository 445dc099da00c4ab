//! Starts a function's worker processes and keeps them running.
//!
//! A [`Launcher`] owns a set of *process slots*. Each slot has one supervisor task that spawns
//! the worker process, waits for it and, when it exits while the launcher is not stopping,
//! reports it ([`LaunchEvent::Ended`]: how it ended and the last lines of its stderr) and
//! restarts it with exponential backoff (100 ms doubling up to 5 s, back to 100 ms once a
//! process has lived 10 s; [`Launcher::restart_now`] cuts a wait short). A process that cannot
//! be started at all is reported and retried the same way. [`Launcher::stop`] sends SIGTERM,
//! waits for a grace period, then SIGKILLs and reaps, so no worker process outlives it.
//!
//! A process's stdout and stderr go through the launcher: appended to
//! `<log_dir>/<function>.<slot>.stdout|stderr` as they come and, unless quiet, echoed to the
//! console line by line as `<function>.<slot> | <line>` (see `output.rs`).
//!
//! With limits and usable cgroups (`cgroup/`), each process slot has a cgroup of its own with
//! the limits, which the process joins before it executes anything; else the limits are
//! rlimits.
//!
//! Each worker process runs in its own process group (so anything it forks is signalled with
//! it) and gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies if the engine dies without stopping it.
//! The launcher holds no reference to the engine: it reports through a channel.

pub mod cgroup;
mod output;
mod process;
mod runtime;
mod sandbox;
mod seccomp;
mod secret;
mod supervise;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, FunctionConfig, IsolationConfig};
use crate::state::ProcessEnd;

pub use cgroup::{EngineGroups, FunctionGroup, OomWatch, Plan};
pub use output::TAIL_LINES;
pub(crate) use process::memory_hint;
pub use sandbox::{check as check_sandbox, check_limits, BWRAP, PRLIMIT};
pub use secret::Verdict;
pub use supervise::LOG_ROTATE_BYTES;

/// First restart delay after a worker process exits.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Largest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A process that ran at least this long resets the backoff to [`INITIAL_BACKOFF`].
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Set to `1` for the processes of a function with `debug = true`: the SDKs put a failed
/// handler's stack trace in the error message too.
pub use gloam_core::worker::ENV_DEBUG;

/// What to run for one function, and how many processes.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    /// The function's name; passed as `GLOAM_FUNCTION` and used in log file names.
    pub function: String,
    /// The function's id (in reports).
    pub function_id: u16,
    /// The program: an absolute path, or a bare name looked up in `PATH`.
    pub command: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment variables (on top of the engine's own environment).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub dir: PathBuf,
    /// Process slots started by [`Launcher::start`].
    pub processes: usize,
    /// Logical workers per process; passed as `GLOAM_WORKERS`.
    pub workers_per_process: usize,
    /// The engine's IPC root; passed as `GLOAM_IPC_ROOT`.
    pub ipc_root: PathBuf,
    /// Directory for `<function>.<slot>.stdout` / `.stderr` (created when missing).
    pub log_dir: PathBuf,
    /// Sets `GLOAM_DEBUG=1` (stack traces in error messages).
    pub debug: bool,
    /// Process or sandbox, and the limits of each process.
    pub isolation: IsolationConfig,
    /// Paths a sandbox must not show (absolute): the log directory, the configuration file,
    /// the store of asynchronous calls, the other functions' directories.
    pub hide: Vec<PathBuf>,
    /// A process none of whose workers has connected by then is killed and reported as
    /// unable to start.
    pub start_timeout: Duration,
    /// The function's cgroup, which enforces its limits; `None`: no limit, or cgroups are
    /// unusable and the limits are rlimits (set by [`LaunchSpec::with_cgroup`]).
    pub cgroup: Option<FunctionGroup>,
}

impl LaunchSpec {
    /// The spec for a configured function of `config`; `None` when it has no `command` (its
    /// workers are started by hand).
    pub fn from_config(function: &FunctionConfig, config: &Config) -> Option<LaunchSpec> {
        let command = function.command.clone()?;
        let engine = &config.engine;
        // The store of asynchronous calls (beside the configuration by default) holds every
        // function's inputs and results.
        let mut hide = vec![
            engine.log_dir.clone(),
            absolute_source(&config.source),
            config.async_calls.store.clone(),
        ];
        hide.extend(
            config
                .functions
                .iter()
                .filter(|f| f.dir != function.dir)
                .map(|f| f.dir.clone()),
        );
        Some(LaunchSpec {
            function: function.name.clone(),
            function_id: function.id,
            command,
            args: function.args.clone(),
            env: function
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dir: function.dir.clone(),
            processes: function.processes(),
            workers_per_process: function.workers_per_process,
            ipc_root: engine.ipc_root.clone(),
            log_dir: engine.log_dir.clone(),
            debug: function.debug,
            isolation: function.isolation.clone(),
            hide,
            start_timeout: function.start_timeout,
            cgroup: None,
        })
    }

    /// This spec with the function's cgroup (its limits are enforced there, not as rlimits).
    pub fn with_cgroup(mut self, cgroup: Option<FunctionGroup>) -> LaunchSpec {
        self.cgroup = cgroup;
        self
    }

    /// What enforces the limits: `cgroup v1`, `cgroup v2`, `rlimit`; `None` without limits.
    pub fn limits_mechanism(&self) -> Option<&'static str> {
        if !self.isolation.limits.any() {
            return None;
        }
        Some(match &self.cgroup {
            Some(g) => g.version().as_str(),
            None => "rlimit",
        })
    }

    /// The files a slot's stdout and stderr are appended to.
    pub fn log_paths(&self, slot: usize) -> (PathBuf, PathBuf) {
        let stem = format!("{}.{slot}", self.function);
        (
            self.log_dir.join(format!("{stem}.stdout")),
            self.log_dir.join(format!("{stem}.stderr")),
        )
    }
}

/// `source` made absolute against the current directory.
fn absolute_source(source: &std::path::Path) -> PathBuf {
    std::env::current_dir()
        .map(|cwd| cwd.join(source))
        .unwrap_or_else(|_| source.to_path_buf())
}

/// Where a launcher reports, and whether it echoes worker output.
#[derive(Debug, Clone, Default)]
pub struct LaunchHooks {
    /// Receives every process end; without it, ends are logged as warnings.
    pub events: Option<mpsc::UnboundedSender<LaunchEvent>>,
    /// Echo every line of the workers' output on stderr as `<function>.<slot> | <line>`.
    pub echo: bool,
}

/// What a launcher reports.
#[derive(Debug, Clone)]
pub enum LaunchEvent {
    /// A process exited by itself or could not be started; it is started again after
    /// `restart_in`.
    Ended(ProcessExit),
}

/// A process that exited by itself (not retired, not stopped) or could not be started.
#[derive(Debug, Clone)]
pub struct ProcessExit {
    /// The function.
    pub function: String,
    /// Its id.
    pub function_id: u16,
    /// The process slot.
    pub slot: usize,
    /// How it ended.
    pub end: ProcessEnd,
    /// The last lines it wrote on stderr (at most [`TAIL_LINES`]).
    pub stderr_tail: Vec<String>,
    /// Its stderr log file.
    pub stderr_log: PathBuf,
    /// When it is started again.
    pub restart_in: Duration,
}

impl ProcessExit {
    /// One line: `Foo.0: worker process exited (exit code 1): <last line>; restarting in 200ms`.
    pub fn summary(&self) -> String {
        let what = match &self.end {
            ProcessEnd::Exited {
                status, last_line, ..
            } => match last_line {
                Some(line) => format!("worker process exited ({status}): {line}"),
                None => format!("worker process exited ({status})"),
            },
            ProcessEnd::NotStarted { error } => format!("cannot start a worker process: {error}"),
        };
        format!(
            "{}.{}: {what}; restarting in {:?}",
            self.function, self.slot, self.restart_in
        )
    }
}

/// Supervises a function's worker processes; see the [module docs](self).
///
/// Dropping a `Launcher` without [`stop`](Self::stop) kills its processes without a grace
/// period (in the background, on the runtime it was started on).
#[derive(Debug)]
pub struct Launcher {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug)]
pub(super) struct Shared {
    spec: LaunchSpec,
    hooks: LaunchHooks,
    /// `Some(deadline)` once stopping: SIGKILL whatever is still running at `deadline`.
    stop: watch::Sender<Option<Instant>>,
    /// Bumped to cut the backoff of waiting slots short.
    kick: watch::Sender<u64>,
    pids: Mutex<BTreeMap<usize, u32>>,
    /// What each slot's current process was given at spawn: its secret (checked at the
    /// handshake) and when (its cold start is measured from there).
    issued: Mutex<BTreeMap<usize, Issued>>,
    restarts: AtomicU64,
    next_slot: AtomicUsize,
    /// Slots whose process was asked to retire: when it exits, the slot ends.
    retiring: Mutex<std::collections::BTreeSet<usize>>,
}

/// What a slot's process was given at spawn.
#[derive(Debug)]
pub(super) struct Issued {
    pub(super) secret: String,
    pub(super) spawned: std::time::Instant,
    /// One of its workers presented the secret (it reached the engine).
    pub(super) connected: bool,
    /// Its slot's cgroup with a memory limit, and the OOM kills counted there before it.
    pub(super) oom: Option<OomWatch>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Launcher {
    /// Starts `spec.processes` supervised worker processes, logging their ends.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start(spec: LaunchSpec) -> Launcher {
        Launcher::start_with(spec, LaunchHooks::default())
    }

    /// [`start`](Self::start), reporting and echoing as `hooks` say.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start_with(spec: LaunchSpec, hooks: LaunchHooks) -> Launcher {
        let processes = spec.processes;
        let (stop, _) = watch::channel(None);
        let (kick, _) = watch::channel(0);
        let launcher = Launcher {
            shared: Arc::new(Shared {
                spec,
                hooks,
                stop,
                kick,
                pids: Mutex::new(BTreeMap::new()),
                issued: Mutex::new(BTreeMap::new()),
                restarts: AtomicU64::new(0),
                next_slot: AtomicUsize::new(0),
                retiring: Mutex::new(std::collections::BTreeSet::new()),
            }),
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::new(Vec::new()),
        };
        for _ in 0..processes {
            launcher.add_process();
        }
        launcher
    }

    /// The spec this launcher runs.
    pub fn spec(&self) -> &LaunchSpec {
        &self.shared.spec
    }

    /// Adds one more supervised process slot (index = number of slots so far). Does nothing
    /// once stopping.
    pub fn add_process(&self) {
        if self.shared.stop.borrow().is_some() {
            return;
        }
        let slot = self.shared.next_slot.fetch_add(1, Ordering::Relaxed);
        let task = self
            .runtime
            .spawn(supervise::supervise(self.shared.clone(), slot));
        lock(&self.tasks).push(task);
    }

    /// The slot whose process leads process group `group` (each worker process runs in its
    /// own group, so a worker's group names its slot however it was wrapped: `sh -c`, ...).
    fn slot_of_group(&self, group: u32) -> Option<usize> {
        lock(&self.shared.pids)
            .iter()
            .find(|(_, p)| **p == group)
            .map(|(slot, _)| *slot)
    }

    /// Whether a worker that connected from process group `group` and presented `secret` is
    /// one of this launcher's processes: the slot whose process leads `group` must have been
    /// given `secret` (compared in constant time).
    pub fn verify(&self, group: u32, secret: &str) -> Verdict {
        let Some(slot) = self.slot_of_group(group) else {
            return Verdict::UnknownProcess;
        };
        let mut issued = lock(&self.shared.issued);
        let verdict = secret::check(issued.get(&slot).map(|i| &i.secret), secret);
        if verdict == Verdict::Valid {
            if let Some(i) = issued.get_mut(&slot) {
                i.connected = true;
            }
        }
        verdict
    }

    /// When the process leading group `group` was spawned (before any sandbox set-up).
    pub fn spawned_at(&self, group: u32) -> Option<std::time::Instant> {
        let slot = self.slot_of_group(group)?;
        lock(&self.shared.issued).get(&slot).map(|i| i.spawned)
    }

    /// How to tell whether the process leading group `group` was killed by the kernel's OOM
    /// killer (its slot's cgroup has a memory limit); `None`: it cannot be told.
    pub fn oom_watch(&self, group: u32) -> Option<OomWatch> {
        let slot = self.slot_of_group(group)?;
        lock(&self.shared.issued).get(&slot)?.oom.clone()
    }

    /// Marks the process of group `group` as retiring (the engine asked its workers to
    /// finish): when it exits, its slot ends instead of restarting it. Returns whether the
    /// group is one of ours.
    pub fn retire_group(&self, group: u32) -> bool {
        match self.slot_of_group(group) {
            Some(slot) => {
                lock(&self.shared.retiring).insert(slot);
                true
            }
            None => false,
        }
    }

    /// Kills the process group `group` (a hung worker's) with SIGKILL; its slot restarts it
    /// like any crash. Returns whether the group is one of ours (nothing else is signalled).
    pub fn kill_group(&self, group: u32) -> bool {
        if self.slot_of_group(group).is_none() {
            return false;
        }
        process::signal_group(group, Signal::SIGKILL);
        true
    }

    /// Restarts at once the slots waiting to restart a process (their backoff reset): the
    /// program was rebuilt.
    pub fn restart_now(&self) {
        self.shared.kick.send_modify(|n| *n += 1);
    }

    /// Number of process slots (running or waiting to restart).
    pub fn slots(&self) -> usize {
        self.shared.next_slot.load(Ordering::Relaxed)
    }

    /// Pids of the worker processes currently running, by slot order.
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.shared.pids).values().copied().collect()
    }

    /// How many times a slot started (or tried to start) a process again after the previous
    /// one exited or could not be spawned.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Stops every worker process: SIGTERM to each process group, up to `grace` for them to
    /// exit, then SIGKILL; returns once all are reaped. Pending restarts are cancelled at once.
    pub async fn stop(self, grace: Duration) {
        self.signal_stop(Instant::now() + grace);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(function = %self.shared.spec.function, "launcher task failed: {e}");
            }
        }
    }

    fn signal_stop(&self, deadline: Instant) {
        self.shared.stop.send_if_modified(|stop| {
            if stop.is_some() {
                return false;
            }
            *stop = Some(deadline);
            true
        });
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.signal_stop(Instant::now());
    }
}

#[cfg(test)]
mod tests;
