//! Signalling and reaping worker processes by process group.

use std::process::ExitStatus;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::time::Instant;

use super::LaunchSpec;

/// How often [`terminate`] checks whether a stopped process's group is empty.
const GROUP_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// `exit code N`, `killed by SIGSEGV`, ... A sandbox's `bwrap` exits with 128 + N when its
/// process was killed by signal N, so for a sandbox that is told as the signal. With a
/// `memory_limit`, a kill that may come from it says so; `oom_killed` is what the slot's
/// cgroup counted (`None`: no cgroup, the limit is an rlimit).
pub(super) fn describe(status: ExitStatus, spec: &LaunchSpec, oom_killed: Option<bool>) -> String {
    use std::os::unix::process::ExitStatusExt;
    let sandboxed = spec.isolation.mode == crate::config::Isolation::Sandbox;
    let signal = match (status.code(), status.signal()) {
        (Some(code), _) if sandboxed && code > 128 => code - 128,
        (Some(code), _) => {
            let oom = match (oom_killed, spec.isolation.limits.memory) {
                (Some(true), Some(m)) => format!(
                    " (out of memory: the kernel's OOM killer ended one of its processes at \
                     memory_limit = {})",
                    crate::config::size_text(m)
                ),
                _ => String::new(),
            };
            return format!("exit code {code}{oom}");
        }
        (None, Some(signal)) => signal,
        (None, None) => return status.to_string(),
    };
    let name = match Signal::try_from(signal) {
        Ok(signal) => format!("killed by {signal}"),
        Err(_) => format!("killed by signal {signal}"),
    };
    match spec.isolation.limits.memory {
        Some(m) => format!("{name}{}", memory_hint(signal, m, oom_killed)),
        None => name,
    }
}

/// What a death by `signal` may say of a `memory_limit` of `bytes`. With a cgroup
/// (`oom_killed` known), the group's OOM-kill counter says whether the kernel's OOM killer
/// ended it; without (an rlimit), that the limit may be why (SIGKILL: likely the OOM killer;
/// SIGABRT: a runtime whose allocation failed).
pub(crate) fn memory_hint(signal: i32, bytes: u64, oom_killed: Option<bool>) -> String {
    let limit = crate::config::size_text(bytes);
    match (oom_killed, signal) {
        (Some(true), _) => {
            format!(" (out of memory: the kernel's OOM killer ended it at memory_limit = {limit})")
        }
        (Some(false), _) => String::new(),
        (None, libc::SIGKILL) => format!(" (memory_limit is {limit}: likely out of memory)"),
        (None, libc::SIGABRT) => {
            format!(" (memory_limit is {limit}: an allocation past it fails)")
        }
        (None, _) => String::new(),
    }
}

/// Sends `signal` to the process group led by `pid`; a group that is already gone is fine.
pub(super) fn signal_group(pid: u32, signal: Signal) -> bool {
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

/// Whether any process that has not exited is left in the group led by `pid`. Zombies do not
/// count: a sandbox's init whose `bwrap` parent was signalled with the group is left to the
/// system's reaper, which may be slow (or absent, in a container).
fn group_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if matches!(killpg(Pid::from_raw(raw), None), Err(Errno::ESRCH)) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.filter_map(Result::ok).any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // After the command's closing ')': state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        group == Some(pid) && !matches!(state, Some("Z" | "X"))
    })
}

/// SIGTERM, wait until `deadline`, SIGKILL, reap.
pub(super) async fn terminate(
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
