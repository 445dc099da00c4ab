//! Processes seen from outside: whether one is gone, and a hard limit on a whole test.

use std::sync::mpsc;
use std::time::Duration;

/// Whether process `pid` no longer runs: it does not exist, or it is a zombie nobody reaped
/// yet (it holds nothing any more).
pub fn process_gone(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command name, which may hold spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("X");
    matches!(state, "Z" | "X" | "x")
}

/// Sends SIGKILL to process `pid` (a worker of the test's own stack).
pub fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("kill -9 {pid}: {e}"));
}

/// Ends the test binary when a test runs past its limit: a hang must fail, not stall CI.
/// Dropping it (the test finished) disarms it.
pub struct Deadline(Option<mpsc::Sender<()>>);

impl Deadline {
    /// Arms the limit for the test `what`.
    pub fn new(what: &'static str, limit: Duration) -> Deadline {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("test {what} did not finish within {limit:?}");
                std::process::exit(101);
            }
        });
        Deadline(Some(tx))
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// Whether a thread of process `pid` is blocked in `nanosleep`/`clock_nanosleep` right now
/// (`/proc/<pid>/task/*/syscall`): the example's `Sleep` handler is in its sleep — the worker
/// waiting for its next message blocks on a futex or in `poll`, never there.
pub fn in_nanosleep(pid: u32) -> bool {
    let sleeps = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|t| {
        std::fs::read_to_string(t.path().join("syscall"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<libc::c_long>().ok())
            .is_some_and(|n| sleeps.contains(&n))
    })
}

/// The inodes of the memfds whose name starts with `prefix` that process `pid` (`None`: this
/// one) maps or holds a descriptor of (`/proc/<pid>/maps` and `/proc/<pid>/fd`): which shared
/// memory a process can reach.
pub fn memfds(pid: Option<u32>, prefix: &str) -> std::collections::BTreeSet<u64> {
    let proc = pid.map_or("/proc/self".to_string(), |p| format!("/proc/{p}"));
    let want = format!("/memfd:{prefix}");
    let mut found = std::collections::BTreeSet::new();
    let maps = std::fs::read_to_string(format!("{proc}/maps")).unwrap();
    for line in maps.lines() {
        // address perms offset dev inode path
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 6 && fields[5].starts_with(&want) {
            found.insert(fields[4].parse().unwrap());
        }
    }
    for entry in std::fs::read_dir(format!("{proc}/fd")).unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy().starts_with(&want) {
            use std::os::unix::fs::MetadataExt;
            if let Ok(meta) = std::fs::metadata(entry.path()) {
                found.insert(meta.ino());
            }
        }
    }
    found
}
