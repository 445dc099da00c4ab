//! `isolation = "sandbox"`: the bubblewrap (`bwrap`) command line that runs a worker process
//! in namespaces of its own, and the checks `gloam up` makes before it starts any.
//!
//! What the sandbox shows (see `docs/architecture.md`, "Isolation"):
//! - `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`, `/opt` of the host read-only, or the function's
//!   `rootfs` read-only as `/`; the function's `dir`, its command and `sandbox_paths`
//!   read-only at the same paths;
//! - a private `/tmp` of `tmp_size` bytes, a fresh `/proc` (its own PID namespace) and a
//!   minimal `/dev` without `/dev/tty`;
//! - of the IPC root, only `engine.sock` (a worker's channel, ring or pipes, its leases and
//!   its payloads come by descriptor over the socket); the log directory, the configuration
//!   file and the other functions' directories are hidden when they lie inside something shown.
//!
//! Its own user, mount, PID, IPC, UTS and cgroup namespaces (and network, unless `network =
//! true`), no further user namespaces, every capability dropped, `no_new_privs` (set by the
//! launcher before `bwrap` runs), the default seccomp profile of `seccomp.rs`. The limits are
//! the slot's cgroup's (`cgroup/`; the process joins it before `bwrap` runs); without cgroups,
//! `pids_limit` is `RLIMIT_NPROC` set inside the sandbox's user namespace (by `prlimit`), where
//! it counts the sandbox's own tasks only.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{LaunchSpec, Plan};
use crate::config::{Config, Isolation};

/// The bubblewrap program.
pub const BWRAP: &str = "bwrap";
/// The util-linux program that sets `RLIMIT_NPROC` inside the sandbox.
pub const PRLIMIT: &str = "prlimit";

/// Host directories shown read-only when there is no `rootfs` (those that exist).
const SYSTEM_DIRS: [&str; 9] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];

/// The program and arguments that run `spec`'s command in a sandbox (the command and its
/// arguments come last); `None` for `isolation = "process"`.
pub(super) fn wrap(
    spec: &LaunchSpec,
    seccomp_fd: Option<std::os::fd::RawFd>,
) -> Option<(PathBuf, Vec<OsString>)> {
    let iso = &spec.isolation;
    if iso.mode != Isolation::Sandbox {
        return None;
    }
    let mut a = Args::default();
    a.flags(&[
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--hostname",
        "gloam",
    ]);
    if !iso.network {
        a.flags(&["--unshare-net"]);
    }
    let mut shown: Vec<PathBuf> = Vec::new();
    match &iso.rootfs {
        Some(root) => {
            a.pair("--ro-bind", root, Path::new("/"));
            shown.push(PathBuf::from("/"));
        }
        None => {
            for dir in SYSTEM_DIRS.map(Path::new) {
                match std::fs::read_link(dir) {
                    // usrmerge: /bin -> usr/bin.
                    Ok(target) => a.pair("--symlink", &target, dir),
                    Err(_) if dir.is_dir() => {
                        a.pair("--ro-bind", dir, dir);
                        shown.push(dir.to_path_buf());
                    }
                    Err(_) => {}
                }
            }
        }
    }
    a.one("--proc", Path::new("/proc"));
    a.one("--dev", Path::new("/dev"));
    // The engine's controlling terminal (if any) must not be reachable: TIOCSTI.
    a.pair("--ro-bind", Path::new("/dev/null"), Path::new("/dev/tty"));
    a.flags(&["--size", &iso.tmp_size.to_string()]);
    a.one("--tmpfs", Path::new("/tmp"));
    let mut ro = vec![spec.dir.clone()];
    if spec.command.is_absolute() && !spec.command.starts_with(&spec.dir) {
        ro.push(spec.command.clone());
    }
    ro.extend(iso.sandbox_paths.iter().cloned());
    for p in &ro {
        a.pair("--ro-bind", p, p);
    }
    shown.extend(ro);
    // Hidden things inside what is shown: an empty directory over a directory, /dev/null
    // over a file.
    for h in &spec.hide {
        let inside = shown.iter().any(|s| h.starts_with(s) && h != s);
        let holds_dir = spec.dir.starts_with(h);
        if !inside || holds_dir {
            continue;
        }
        if h.is_dir() {
            a.one("--tmpfs", h);
        } else if h.exists() {
            a.pair("--ro-bind", Path::new("/dev/null"), h);
        }
    }
    // The IPC root: only the socket (channels and payloads come by descriptor).
    let root = &spec.ipc_root;
    a.one("--tmpfs", root);
    a.pair(
        "--bind",
        &root.join("engine.sock"),
        &root.join("engine.sock"),
    );
    a.one("--chdir", &spec.dir);
    if let Some(fd) = seccomp_fd {
        a.flags(&["--seccomp", &fd.to_string()]);
    }
    a.flags(&["--"]);
    if let (Some(pids), None) = (iso.limits.pids, &spec.cgroup) {
        a.flags(&[PRLIMIT, &format!("--nproc={pids}:{pids}"), "--"]);
    }
    a.0.push(spec.command.clone().into_os_string());
    Some((PathBuf::from(BWRAP), a.0))
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }
    fn one(&mut self, flag: &str, path: &Path) {
        self.0.push(flag.into());
        self.0.push(path.into());
    }
    fn pair(&mut self, flag: &str, from: &Path, to: &Path) {
        self.0.push(flag.into());
        self.0.push(from.into());
        self.0.push(to.into());
    }
}

/// Checks that this machine can run every sandboxed function of `config` as configured, its
/// limits enforced as `plan` says; the error names the function and the missing feature. Runs
/// `bwrap` once.
pub fn check(config: &Config, plan: &Plan) -> Result<(), String> {
    let sandboxed: Vec<_> = config
        .functions
        .iter()
        .filter(|f| f.isolation.mode == Isolation::Sandbox && f.command.is_some())
        .collect();
    let Some(first) = sandboxed.first() else {
        return Ok(());
    };
    let names = || {
        sandboxed
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Err(format!(
            "isolation = \"sandbox\" ({}) needs an unprivileged engine: run as root, a \
             sandbox's user maps to root and root-owned files stay readable; run gloam as an \
             ordinary user",
            names()
        ));
    }
    if let Err(e) = super::seccomp::program() {
        return Err(format!("isolation = \"sandbox\" ({}): {e}", names()));
    }
    let mut probe = Command::new(BWRAP);
    probe.args([
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        "1048576",
        "--tmpfs",
        "/tmp",
        "--",
    ]);
    let needs_prlimit =
        plan.place.is_err() && sandboxed.iter().any(|f| f.isolation.limits.pids.is_some());
    if needs_prlimit {
        probe.args([PRLIMIT, "--nproc=64:64", "--", "true"]);
    } else {
        probe.arg("true");
    }
    let out = probe.output().map_err(|e| {
        format!(
            "isolation = \"sandbox\" ({}) needs bubblewrap: cannot run {BWRAP}: {e} (install \
             the bubblewrap package)",
            names()
        )
    })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!(
            "isolation = \"sandbox\" ({}): this machine cannot make a sandbox ({BWRAP}: {why}); \
             it needs unprivileged user namespaces{}",
            names(),
            if needs_prlimit {
                format!(" and {PRLIMIT} (util-linux) for pids_limit")
            } else {
                String::new()
            }
        ));
    }
    tracing::debug!(function = %first.name, "bubblewrap works");
    Ok(())
}

/// Checks that the limits of `config` can be enforced as `plan` says: without a usable cgroup,
/// `cpu_limit` cannot be, nor `pids_limit` on a plain process, and a configured
/// `engine.cgroup_parent` must be usable. The error names the key, the cause and the fix.
pub fn check_limits(config: &Config, plan: &Plan) -> Result<(), String> {
    let Err(why) = &plan.place else {
        return Ok(());
    };
    if plan.needed.is_empty() {
        return Ok(());
    }
    const FIX: &str = "an admin delegates one: creates a group in each cgroup hierarchy \
                       (e.g. /sys/fs/cgroup/memory/gloam, .../pids/gloam, .../cpu/gloam, or one \
                       v2 group with those controllers), chowns it to the engine's user and sets \
                       [engine] cgroup_parent = \"gloam\" (ci/install-sandbox.sh does it for CI)";
    if let Some(parent) = &config.engine.cgroup_parent {
        return Err(format!(
            "engine.cgroup_parent = {:?}: cannot hold the workers' cgroups: {why}; {FIX}",
            parent.display().to_string()
        ));
    }
    for f in config.functions.iter().filter(|f| f.command.is_some()) {
        let limits = &f.isolation.limits;
        let refused = if limits.cpu.is_some() {
            Some(("cpu_limit", ""))
        } else if limits.pids.is_some() && f.isolation.mode == Isolation::Process {
            Some((
                "pids_limit",
                " (with isolation = \"sandbox\" it is enforced inside the sandbox without one)",
            ))
        } else {
            None
        };
        if let Some((key, note)) = refused {
            return Err(format!(
                "functions.{}.{key}: needs a cgroup the engine may write, and there is none \
                 ({why}){note}; {FIX}",
                f.name
            ));
        }
    }
    Ok(())
}
