//! `isolation = "sandbox"`: the bubblewrap (`bwrap`) command line that runs a worker process
//! in namespaces of its own, and the checks `gloam up` makes before it starts any.
//!
//! What the sandbox shows (see `docs/architecture.md`, "Isolation"):
//! - `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`, `/opt` of the host read-only, or the function's
//!   `rootfs` read-only as `/`; the function's `dir`, its command, `sandbox_paths` and its
//!   command's runtime (`runtime.rs`) read-only at the same, canonical, paths (`views`);
//! - a private `/tmp` of `tmp_size` bytes, a fresh `/proc` (its own PID namespace) and a
//!   minimal `/dev` without `/dev/tty`;
//! - of the IPC root, only `engine.sock` (a worker's channel, ring or pipes, its leases and
//!   its payloads come by descriptor over the socket); the log directory, the configuration
//!   file, the store of asynchronous calls and the other functions' directories are hidden
//!   when they lie inside something shown.
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

use super::runtime::{find_in_path, last_link, runtime_paths};
use super::{LaunchSpec, Plan};
use crate::config::{Config, FunctionConfig, Isolation};

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
    let views = views(spec);
    for v in &views {
        a.pair("--ro-bind", &v.path, &v.path);
    }
    shown.extend(views.into_iter().map(|v| v.path));
    let dir = real(&spec.dir);
    // Hidden things inside what is shown: an empty directory over a directory, /dev/null
    // over a file.
    for h in spec.hide.iter().map(|h| real(h)) {
        let inside = shown.iter().any(|s| h.starts_with(s) && h != *s);
        let holds_dir = dir.starts_with(&h);
        if !inside || holds_dir {
            continue;
        }
        if h.is_dir() {
            a.one("--tmpfs", &h);
        } else if h.exists() {
            a.pair("--ro-bind", Path::new("/dev/null"), &h);
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
    a.one("--chdir", &dir);
    if let Some(fd) = seccomp_fd {
        a.flags(&["--seccomp", &fd.to_string()]);
    }
    a.flags(&["--"]);
    if let (Some(pids), None) = (iso.limits.pids, &spec.cgroup) {
        a.flags(&[PRLIMIT, &format!("--nproc={pids}:{pids}"), "--"]);
    }
    a.0.push(program(&spec.command).into_os_string());
    Some((PathBuf::from(BWRAP), a.0))
}

/// A host path a sandbox shows read-only at the same place, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct View {
    /// Canonical (no symlink, `.` or `..` in it), so that it is bound where the worker looks.
    pub path: PathBuf,
    /// `its dir`, `its command`, `sandbox_paths`, `the virtualenv of its command`, ...
    pub what: String,
}

/// What `spec`'s sandbox shows besides the system directories (or `rootfs`): its `dir`, its
/// command (found in `PATH` when it is a bare name), `sandbox_paths` and, without `rootfs`,
/// the command's runtime (`runtime.rs`) when it lies outside the system directories. A path
/// inside another one shown is left out (the outer bind shows it).
pub(super) fn views(spec: &LaunchSpec) -> Vec<View> {
    let mut all = vec![View {
        path: real(&spec.dir),
        what: "its dir".into(),
    }];
    let command = if spec.command.is_absolute() {
        Some(program(&spec.command))
    } else {
        let path_var = spec
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| OsString::from(v))
            .or_else(|| std::env::var_os("PATH"));
        find_in_path(spec.command.as_os_str(), path_var.as_deref()).map(|p| program(&p))
    };
    let rootfs = spec.isolation.rootfs.is_some();
    if let Some(command) = &command {
        // A bare name found under /usr is shown with /usr already.
        if spec.command.is_absolute() || rootfs || !under_system_dirs(command) {
            all.push(View {
                path: command.clone(),
                what: "its command".into(),
            });
        }
    }
    all.extend(spec.isolation.sandbox_paths.iter().map(|p| View {
        path: real(p),
        what: "sandbox_paths".into(),
    }));
    if let (Some(command), false) = (&command, rootfs) {
        for r in runtime_paths(command) {
            if !under_system_dirs(&r.path) {
                all.push(View {
                    path: r.path,
                    what: format!("{} of its command {}", r.what, command.display()),
                });
            }
        }
    }
    let mut views: Vec<View> = Vec::with_capacity(all.len());
    for v in all {
        if views.iter().any(|w| v.path.starts_with(&w.path)) {
            continue;
        }
        views.retain(|w| !w.path.starts_with(&v.path));
        views.push(v);
    }
    views
}

/// `path` canonical when it exists (else as it is: bwrap then names it).
fn real(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The path the sandbox runs `command` by: its directory canonical, its file name kept (a
/// virtualenv's `bin/python` must stay itself, not the interpreter it links to, for Python to
/// find `pyvenv.cfg`). A bare name stays a bare name (looked up in `PATH` inside).
fn program(command: &Path) -> PathBuf {
    match (command.parent(), command.file_name()) {
        (Some(dir), Some(name)) if command.is_absolute() => real(dir).join(name),
        _ => command.to_path_buf(),
    }
}

fn under_system_dirs(path: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|d| path.starts_with(d))
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
    readable_views(config, &sandboxed)?;
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

/// Checks that the engine's user can read everything the sandboxes of `sandboxed` show: bwrap
/// binds them as that user, and a worker that cannot reach its runtime only fails later, less
/// clearly.
fn readable_views(config: &Config, sandboxed: &[&FunctionConfig]) -> Result<(), String> {
    use nix::unistd::{access, AccessFlags};
    for f in sandboxed {
        let Some(spec) = LaunchSpec::from_config(f, config) else {
            continue;
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        if spec.command.is_absolute() {
            let command = program(&spec.command);
            if let Err(e) = access(&command, AccessFlags::X_OK) {
                let target = last_link(&command);
                let via = if target == command {
                    String::new()
                } else {
                    format!(" (a link to {})", target.display())
                };
                return Err(format!(
                    "functions.{}: its command {}{via} cannot be run by this engine's user \
                     (uid {uid}): {}; make it readable to that user (every directory above \
                     it too), or run gloam as a user who can",
                    f.name,
                    command.display(),
                    e.desc()
                ));
            }
        }
        for v in views(&spec) {
            let needs = if v.path.is_dir() || v.what == "its command" {
                AccessFlags::R_OK | AccessFlags::X_OK
            } else {
                AccessFlags::R_OK
            };
            if let Err(e) = access(&v.path, needs) {
                return Err(format!(
                    "functions.{}: its sandbox shows {} ({}), which this engine's user (uid \
                     {uid}) cannot reach: {}; make it readable to that user (every directory \
                     above it too), or run gloam as a user who can read it",
                    f.name,
                    v.path.display(),
                    v.what,
                    e.desc()
                ));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    use super::*;
    use crate::config::IsolationConfig;

    /// A sandboxed spec whose paths go through `..`, as `gloam.toml`'s relative paths do.
    fn spec(root: &Path, command: &str, sandbox_paths: Vec<PathBuf>) -> LaunchSpec {
        LaunchSpec {
            function: "F".into(),
            function_id: 1,
            command: root.join("app/..").join(command),
            args: Vec::new(),
            env: Vec::new(),
            dir: root.join("app/../app"),
            processes: 1,
            workers_per_process: 1,
            ipc_root: root.join("ipc"),
            log_dir: root.join("logs"),
            debug: false,
            isolation: IsolationConfig {
                mode: Isolation::Sandbox,
                sandbox_paths,
                ..Default::default()
            },
            hide: vec![root.join("app/../app/gloam.toml")],
            cgroup: None,
            start_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_sandbox_shows_the_virtualenv_of_its_command_and_binds_canonical_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        for d in [
            "app/sub",
            "venv/bin",
            "venv/lib/python3.11/site-packages",
            "src",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("app/gloam.toml"), "").unwrap();
        // A virtualenv of the system's Python (shown anyway) with an editable package.
        symlink("/usr/bin/python3", root.join("venv/bin/python")).unwrap();
        std::fs::write(root.join("venv/pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        std::fs::write(
            root.join("venv/lib/python3.11/site-packages/pkg.pth"),
            format!("{}\n", root.join("src").display()),
        )
        .unwrap();
        let s = spec(&root, "venv/bin/python", vec![root.join("app/sub")]);

        let views = views(&s);
        let shown: Vec<(&Path, &str)> = views
            .iter()
            .map(|v| (v.path.as_path(), v.what.as_str()))
            .collect();
        let command = format!("of its command {}", root.join("venv/bin/python").display());
        assert_eq!(
            shown,
            vec![
                (root.join("app").as_path(), "its dir"),
                (
                    root.join("venv").as_path(),
                    format!("the virtualenv {command}").as_str()
                ),
                (
                    root.join("src").as_path(),
                    format!("a directory a .pth file of the virtualenv adds {command}").as_str()
                ),
            ]
        );

        let (program, args) = wrap(&s, None).unwrap();
        assert_eq!(program, PathBuf::from(BWRAP));
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let has = |pair: &[String]| args.windows(pair.len()).any(|w| w == pair);
        let app = root.join("app").display().to_string();
        let toml = root.join("app/gloam.toml").display().to_string();
        assert!(has(&["--chdir".into(), app]), "{args:?}");
        assert!(
            has(&["--ro-bind".into(), "/dev/null".into(), toml]),
            "{args:?}"
        );
        assert_eq!(
            args.last().map(String::as_str),
            Some(root.join("venv/bin/python").to_str().unwrap())
        );
        assert!(!args.iter().any(|a| a.contains("..")), "{args:?}");
    }

    #[test]
    fn a_bare_command_outside_the_system_directories_is_shown() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::create_dir_all(root.join("tools/bin")).unwrap();
        let tool = root.join("tools/bin/tool");
        std::fs::write(&tool, "").unwrap();
        let exec = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
        std::fs::set_permissions(&tool, exec).unwrap();
        let mut s = spec(&root, "x", Vec::new());
        s.command = PathBuf::from("tool");
        s.env = vec![(
            "PATH".into(),
            format!("/usr/bin:{}", root.join("tools/bin").display()),
        )];
        let views = views(&s);
        assert_eq!(views.len(), 2, "{views:?}");
        assert_eq!(views[1].path, tool);
        assert_eq!(views[1].what, "its command");
        // A bare name found in /usr/bin needs nothing more.
        s.command = PathBuf::from("sh");
        assert_eq!(views_of(&s), vec![root.join("app")]);
    }

    fn views_of(s: &LaunchSpec) -> Vec<PathBuf> {
        views(s).into_iter().map(|v| v.path).collect()
    }
}
