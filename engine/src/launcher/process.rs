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

/// `exit code N`, `killed by SIGSEGV`, ...
pub(super) fn describe(status: ExitStatus) -> String {
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

/// Whether any process is left in the group led by `pid`.
fn group_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    !matches!(killpg(Pid::from_raw(raw), None), Err(Errno::ESRCH))
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
