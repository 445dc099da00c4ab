//! One process slot: spawn, wait, report, restart with backoff — until stopped or retired.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gloam_core::worker::{ENV_FUNCTION, ENV_IPC_ROOT, ENV_WORKERS, ENV_WORKER_SECRET};
use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use super::cgroup::{OomWatch, SlotGroup};
use super::output::{pump, Sink, Tail};
use super::process::{describe, signal_group, terminate};
use super::sandbox;
use super::{
    lock, LaunchEvent, LaunchSpec, ProcessExit, Shared, ENV_DEBUG, HEALTHY_RUN, INITIAL_BACKOFF,
    MAX_BACKOFF,
};
use crate::config::ENV_PROCESS_INDEX;
use crate::state::ProcessEnd;

/// How long an exited process's output may take to drain from its pipes (something it forked
/// may hold them open) before its exit is reported with what arrived.
const DRAIN_OUTPUT: Duration = Duration::from_millis(500);

/// How long a process that never connected gets between SIGTERM and SIGKILL.
const START_KILL_GRACE: Duration = Duration::from_secs(1);

/// Returns once `timeout` has passed without any worker of `slot`'s process connecting;
/// never returns when one did.
async fn unconnected_after(shared: &Shared, slot: usize, timeout: Duration) {
    tokio::time::sleep(timeout).await;
    let connected = lock(&shared.issued).get(&slot).is_some_and(|i| i.connected);
    if connected {
        std::future::pending::<()>().await;
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

/// A running process and the tasks copying its output.
struct Running {
    child: Child,
    pumps: Vec<tokio::task::JoinHandle<()>>,
    tail: Arc<Tail>,
}

/// One process slot: spawn, wait, restart with backoff, until stopped; then its cgroup (if
/// any) is removed.
pub(super) async fn supervise(shared: Arc<Shared>, slot: usize) {
    let mut leaf = None;
    run_slot(&shared, slot, &mut leaf).await;
    if let Some(leaf) = leaf {
        // Waits (briefly) for stragglers it kills: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || leaf.remove()).await;
    }
}

/// The slot's cgroup leaf, created the first time the slot spawns a process (with the
/// function's limits) and kept across restarts.
fn slot_group(spec: &LaunchSpec, slot: usize, leaf: &mut Option<SlotGroup>) -> io::Result<()> {
    if let (None, Some(group)) = (&leaf, &spec.cgroup) {
        *leaf = Some(group.slot(slot)?);
    }
    Ok(())
}

async fn run_slot(shared: &Arc<Shared>, slot: usize, leaf: &mut Option<SlotGroup>) {
    let spec = &shared.spec;
    let (_, stderr_path) = spec.log_paths(slot);
    let mut stop = shared.stop.subscribe();
    let mut kick = shared.kick.subscribe();
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

        // A fresh secret per process, recorded before it can connect; no secret, no process.
        let mut oom = None;
        let spawned = slot_group(spec, slot, leaf)
            .and_then(|()| super::secret::fresh())
            .and_then(|secret| {
                oom = leaf.as_ref().and_then(|group| {
                    let baseline = group.oom_kills()?;
                    Some(OomWatch {
                        group: group.clone(),
                        baseline,
                    })
                });
                let issued = super::Issued {
                    secret: secret.clone(),
                    spawned: std::time::Instant::now(),
                    connected: false,
                    oom: oom.clone(),
                };
                lock(&shared.issued).insert(slot, issued);
                spawn(spec, slot, shared.hooks.echo, &secret, leaf.as_ref())
            });
        let end = match spawned {
            Ok(Running {
                mut child,
                pumps,
                tail,
            }) => {
                let started = Instant::now();
                let pid = child.id();
                if let Some(pid) = pid {
                    lock(&shared.pids).insert(slot, pid);
                }
                tracing::debug!(function = %spec.function, slot, pid, "worker process started");
                let mut never_connected = false;
                let exited = tokio::select! {
                    status = child.wait() => Some(status),
                    deadline = stopping(&mut stop) => {
                        terminate(&mut child, pid, deadline, spec, slot).await;
                        None
                    }
                    () = unconnected_after(shared, slot, spec.start_timeout) => {
                        never_connected = true;
                        let grace = Instant::now() + START_KILL_GRACE;
                        terminate(&mut child, pid, grace, spec, slot).await;
                        Some(child.wait().await)
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
                let _ = tokio::time::timeout(DRAIN_OUTPUT, futures_join(pumps)).await;
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = INITIAL_BACKOFF;
                }
                let status = match status {
                    _ if never_connected => format!(
                        "did not connect to the engine within {} ms (start_timeout_ms), so it was stopped",
                        spec.start_timeout.as_millis()
                    ),
                    Ok(status) => describe(status, spec, oom.as_ref().and_then(OomWatch::killed)),
                    Err(e) => format!("unknown status ({e})"),
                };
                tracing::debug!(
                    function = %spec.function,
                    slot,
                    pid,
                    stderr = %stderr_path.display(),
                    "worker process exited ({status}); restarting in {backoff:?}"
                );
                (
                    ProcessEnd::Exited {
                        group: pid.unwrap_or(0),
                        status,
                        last_line: tail.reason_line(),
                    },
                    tail.lines(),
                )
            }
            Err(e) => {
                tracing::debug!(
                    function = %spec.function,
                    slot,
                    "cannot start worker process: {e}; retrying in {backoff:?}"
                );
                (
                    ProcessEnd::NotStarted {
                        error: e.to_string(),
                    },
                    Vec::new(),
                )
            }
        };
        let (end, stderr_tail) = end;
        let exit = ProcessExit {
            function: spec.function.clone(),
            function_id: spec.function_id,
            slot,
            end,
            stderr_tail,
            stderr_log: stderr_path.clone(),
            restart_in: backoff,
        };
        match &shared.hooks.events {
            Some(events) => {
                let _ = events.send(LaunchEvent::Ended(exit));
            }
            None => tracing::warn!("{}", exit.summary()),
        }

        // A kick (sources rebuilt) restarts now, with the backoff reset.
        kick.borrow_and_update();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            _ = kick.changed() => backoff = INITIAL_BACKOFF,
            _ = stopping(&mut stop) => return,
        }
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
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

/// A pipe holding the sandbox's seccomp program (far smaller than a pipe's buffer), write end
/// closed: the read end, close-on-exec until the child clears it.
fn seccomp_pipe() -> io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    File::from(write).write_all(&super::seccomp::program()?)?;
    Ok(read)
}

fn spawn(
    spec: &LaunchSpec,
    slot: usize,
    echo: bool,
    secret: &str,
    leaf: Option<&SlotGroup>,
) -> io::Result<Running> {
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
    let stdout_log = open_log(&stdout_path)?;
    let stderr_log = open_log(&stderr_path)?;

    // A sandbox's seccomp program goes to bwrap through a pipe it inherits.
    let seccomp = match spec.isolation.mode {
        crate::config::Isolation::Sandbox => Some(seccomp_pipe()?),
        crate::config::Isolation::Process => None,
    };
    let seccomp_fd = seccomp.as_ref().map(AsRawFd::as_raw_fd);
    let sandboxed = sandbox::wrap(spec, seccomp_fd);
    let mut command = match &sandboxed {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
        None => Command::new(&spec.command),
    };
    command
        .args(&spec.args)
        .env(ENV_WORKER_SECRET, secret)
        .current_dir(&spec.dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(ENV_FUNCTION, &spec.function)
        .env(ENV_IPC_ROOT, &spec.ipc_root)
        .env(ENV_WORKERS, spec.workers_per_process.to_string())
        .env(ENV_PROCESS_INDEX, slot.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Own process group: stop() signals the worker and everything it forked.
        .process_group(0);
    if spec.debug {
        command.env(ENV_DEBUG, "1");
    }
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    let no_new_privs = sandboxed.is_some();
    // Without cgroups, memory_limit is the address-space limit (see docs/architecture.md).
    let address_space = match spec.cgroup {
        Some(_) => None,
        None => spec
            .isolation
            .limits
            .memory
            .map(|m| libc::rlim_t::try_from(m).unwrap_or(libc::RLIM_INFINITY)),
    };
    // The slot's cgroup: the child joins it itself, in pre_exec, by writing `0` ("the writing
    // process") into each hierarchy's `cgroup.procs`, opened here (close-on-exec, so closed by
    // the exec; the kernel checks the opener's credentials). So it is in its group before it
    // executes anything, and so is everything it starts. Not clone3(CLONE_INTO_CGROUP): it
    // is v2 only (CI's machines are v1) and std's Command cannot pass it.
    let procs = match leaf {
        Some(group) => group.open_procs()?,
        None => Vec::new(),
    };
    let mut join = [-1; 3];
    for (fd, file) in join.iter_mut().zip(&procs) {
        *fd = file.as_raw_fd();
    }
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // async-signal-safe calls write(2), prctl(2), fcntl(2), setrlimit(2) and getppid(2); it
    // allocates nothing and touches no locks. The death signal fires when the forking *thread*
    // exits; tokio runtime threads live as long as the runtime, which outlives the launcher.
    unsafe {
        command.pre_exec(move || {
            for fd in join.into_iter().filter(|fd| *fd >= 0) {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // bwrap reads the program from this descriptor: keep it across exec.
            if let Some(fd) = seccomp_fd {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(bytes) = address_space {
                let limit = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // The engine may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        let what = match e.kind() {
            io::ErrorKind::NotFound if !spec.dir.is_dir() => {
                format!("its directory {} does not exist", spec.dir.display())
            }
            io::ErrorKind::NotFound if spec.command.components().count() == 1 => {
                format!("{} is not in PATH", spec.command.display())
            }
            io::ErrorKind::PermissionDenied if leaf.is_some() => format!(
                "{e} (when joining its cgroup, the group of its function in {} must be \
                 writable by the engine's user, or when executing it)",
                spec.cgroup.as_ref().map_or(String::new(), |g| g
                    .dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "))
            ),
            _ => e.to_string(),
        };
        io::Error::new(
            e.kind(),
            format!(
                "cannot run {} in {}: {what}",
                spec.command.display(),
                spec.dir.display()
            ),
        )
    })?;
    let prefix: Arc<str> = format!("{}.{slot}", spec.function).into();
    let echo = echo.then_some(prefix);
    let tail = Arc::new(Tail::default());
    let mut pumps = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        let sink = Sink {
            echo: echo.clone(),
            tail: None,
        };
        pumps.push(tokio::spawn(pump(out, stdout_log, sink)));
    }
    if let Some(err) = child.stderr.take() {
        let sink = Sink {
            echo,
            tail: Some(tail.clone()),
        };
        pumps.push(tokio::spawn(pump(err, stderr_log, sink)));
    }
    Ok(Running { child, pumps, tail })
}
