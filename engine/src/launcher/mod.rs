//! Starts a function's worker processes and keeps them running.
//!
//! A [`Launcher`] owns a set of *process slots*. Each slot has one supervisor task that spawns
//! the worker process, waits for it and, when it exits while the launcher is not stopping,
//! restarts it with exponential backoff (100 ms doubling up to 5 s, back to 100 ms once a
//! process has lived 10 s). [`Launcher::stop`] sends SIGTERM, waits for a grace period, then
//! SIGKILLs and reaps, so no worker process outlives it.
//!
//! Each worker process runs in its own process group (so anything it forks is signalled with
//! it) and gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies if the engine dies without stopping it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gloam_core::worker::{ENV_FUNCTION, ENV_IPC_ROOT, ENV_WORKERS};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{EngineConfig, FunctionConfig, ENV_PROCESS_INDEX};

/// First restart delay after a worker process exits.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Largest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A process that ran at least this long resets the backoff to [`INITIAL_BACKOFF`].
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// How often [`Launcher::stop`] checks whether a stopped process's group is empty.
const GROUP_POLL: Duration = Duration::from_millis(10);

/// What to run for one function, and how many processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The function's name; passed as `GLOAM_FUNCTION` and used in log file names.
    pub function: String,
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
}

impl LaunchSpec {
    /// The spec for a configured function; `None` when it has no `command` (its workers are
    /// started by hand).
    pub fn from_config(function: &FunctionConfig, engine: &EngineConfig) -> Option<LaunchSpec> {
        let command = function.command.clone()?;
        Some(LaunchSpec {
            function: function.name.clone(),
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
struct Shared {
    spec: LaunchSpec,
    /// `Some(deadline)` once stopping: SIGKILL whatever is still running at `deadline`.
    stop: watch::Sender<Option<Instant>>,
    pids: Mutex<BTreeMap<usize, u32>>,
    restarts: AtomicU64,
    next_slot: AtomicUsize,
    /// Slots whose process was asked to retire: when it exits, the slot ends.
    retiring: Mutex<std::collections::BTreeSet<usize>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Launcher {
    /// Starts `spec.processes` supervised worker processes.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start(spec: LaunchSpec) -> Launcher {
        let processes = spec.processes;
        let (stop, _) = watch::channel(None);
        let launcher = Launcher {
            shared: Arc::new(Shared {
                spec,
                stop,
                pids: Mutex::new(BTreeMap::new()),
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
        let task = self.runtime.spawn(supervise(self.shared.clone(), slot));
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
        signal_group(group, Signal::SIGKILL);
        true
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

/// Waits until the launcher is stopping; returns the SIGKILL deadline.
async fn stopping(stop: &mut watch::Receiver<Option<Instant>>) -> Instant {
    match stop.wait_for(Option::is_some).await {
        Ok(deadline) => deadline.unwrap_or_else(Instant::now),
        // The sender lives in `Shared`, which the caller holds; treat its loss as "stop now".
        Err(_) => Instant::now(),
    }
}

/// One process slot: spawn, wait, restart with backoff, until stopped.
async fn supervise(shared: Arc<Shared>, slot: usize) {
    let spec = &shared.spec;
    let (_, stderr_path) = spec.log_paths(slot);
    let mut stop = shared.stop.subscribe();
    let mut backoff = INITIAL_BACKOFF;
    let mut first = true;
    loop {
        if stop.borrow().is_some() {
            return;
        }
        if !first {
            shared.restarts.fetch_add(1, Ordering::Relaxed);
        }
        first = false;

        match spawn(spec, slot) {
            Ok(mut child) => {
                let started = Instant::now();
                let pid = child.id();
                if let Some(pid) = pid {
                    lock(&shared.pids).insert(slot, pid);
                }
                tracing::debug!(function = %spec.function, slot, pid, "worker process started");
                let exited = tokio::select! {
                    status = child.wait() => Some(status),
                    deadline = stopping(&mut stop) => {
                        terminate(&mut child, pid, deadline, spec, slot).await;
                        None
                    }
                };
                lock(&shared.pids).remove(&slot);
                let Some(status) = exited else { return };
                if lock(&shared.retiring).remove(&slot) {
                    tracing::info!(function = %spec.function, slot, pid, "worker process retired");
                    return;
                }
                // Whatever the crashed process left behind in its group goes with it.
                if let Some(pid) = pid {
                    signal_group(pid, Signal::SIGKILL);
                }
                if stop.borrow().is_some() {
                    return;
                }
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = INITIAL_BACKOFF;
                }
                let status = match status {
                    Ok(status) => describe(status),
                    Err(e) => format!("unknown status ({e})"),
                };
                tracing::warn!(
                    function = %spec.function,
                    slot,
                    pid,
                    stderr = %stderr_path.display(),
                    "worker process exited ({status}); restarting in {backoff:?}"
                );
            }
            Err(e) => {
                tracing::error!(
                    function = %spec.function,
                    slot,
                    command = %spec.command.display(),
                    dir = %spec.dir.display(),
                    "cannot start worker process: {e}; retrying in {backoff:?}"
                );
            }
        }

        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopping(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// A worker log over this size is rotated (to `<name>.1`, replacing the previous one) when its
/// process is (re)started, so a crash-looping worker cannot fill the disk.
pub const LOG_ROTATE_BYTES: u64 = 16 << 20;

fn open_log(path: &Path) -> io::Result<File> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        let _ = std::fs::rename(path, rotated);
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))
}

fn spawn(spec: &LaunchSpec, slot: usize) -> io::Result<Child> {
    std::fs::create_dir_all(&spec.log_dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot create log directory {}: {e}",
                spec.log_dir.display()
            ),
        )
    })?;
    let (stdout_path, stderr_path) = spec.log_paths(slot);
    let stdout = open_log(&stdout_path)?;
    let stderr = open_log(&stderr_path)?;

    let mut command = Command::new(&spec.command);
    command
        .args(&spec.args)
        .current_dir(&spec.dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(ENV_FUNCTION, &spec.function)
        .env(ENV_IPC_ROOT, &spec.ipc_root)
        .env(ENV_WORKERS, spec.workers_per_process.to_string())
        .env(ENV_PROCESS_INDEX, slot.to_string())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        // Own process group: stop() signals the worker and everything it forked.
        .process_group(0);
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // async-signal-safe calls prctl(2) and getppid(2); it allocates nothing and touches no
    // locks. The death signal fires when the forking *thread* exits; tokio runtime threads
    // live as long as the runtime, which outlives the launcher.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The engine may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot run {} in {}: {e}",
                spec.command.display(),
                spec.dir.display()
            ),
        )
    })
}

/// Sends `signal` to the process group led by `pid`; a group that is already gone is fine.
fn signal_group(pid: u32, signal: Signal) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            tracing::warn!(pid, "cannot send {signal} to process group {pid}: {e}");
            false
        }
    }
}

/// Whether any process is left in the group led by `pid`.
fn group_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    !matches!(killpg(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// SIGTERM, wait until `deadline`, SIGKILL, reap.
async fn terminate(
    child: &mut Child,
    pid: Option<u32>,
    deadline: Instant,
    spec: &LaunchSpec,
    slot: usize,
) {
    let Some(pid) = pid else {
        // Already reaped.
        return;
    };
    signal_group(pid, Signal::SIGTERM);
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(_) => {
            // The leader is gone; give the rest of its group the same grace.
            while group_alive(pid) && Instant::now() < deadline {
                tokio::time::sleep(GROUP_POLL).await;
            }
            signal_group(pid, Signal::SIGKILL);
        }
        Err(_) => {
            tracing::warn!(
                function = %spec.function,
                slot,
                pid,
                "worker process ignored SIGTERM; killing it"
            );
            signal_group(pid, Signal::SIGKILL);
            // In case it left its process group.
            if let Err(e) = child.start_kill() {
                tracing::debug!(pid, "start_kill: {e}");
            }
            if let Err(e) = child.wait().await {
                tracing::error!(function = %spec.function, slot, pid, "cannot reap worker process: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
