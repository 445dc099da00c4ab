//! Isolation, end to end: a hostile function (`engine/examples/hostile.rs`) in a real
//! bubblewrap sandbox, and in a plain process, tries to escape; each attempt fails as
//! documented in `docs/architecture.md` ("Isolation"), and the engine and the other
//! function keep serving throughout.
//!
//! The sandbox needs an unprivileged engine: run as root, these tests start `gloam up` as
//! `nobody` (65534). Without `bwrap` on the machine they are skipped, unless
//! `GLOAM_TEST_SANDBOX=1` (CI) makes that a failure.
//!
//! These tests use the engine's default cgroup parent (its own cgroups, which `nobody` cannot
//! write), so they exercise the rlimit fallbacks; `isolation_cgroups.rs` has the cgroups.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::gloam_bin;
use support::hostile::*;

#[test]
fn a_sandboxed_function_cannot_escape() {
    if !sandbox_available() {
        return;
    }
    let limits = "pids_limit = 24\nmemory_limit = \"256M\"\ntmp_size = \"1M\"\n";
    let mut s = stack("sandbox", limits);
    let dir = s.dir.path().to_path_buf();

    // Files: the host's secrets, another function's files, the configuration, the host's
    // directories; its own directory is read-only, /tmp private.
    denied(&s, "read:/etc/shadow");
    denied(
        &s,
        &format!("read:{}", dir.join("plain/secret.txt").display()),
    );
    let config = attempt(&s, &format!("read:{}", dir.join("gloam.toml").display()));
    assert!(
        config.starts_with("denied") || config == "ok: 0 bytes",
        "{config}"
    );
    // Of the IPC root only the socket: no channel or payload of any worker has a name there
    // (rings, pipes and payloads come by descriptor), so none can be opened from inside.
    let root = attempt(&s, &format!("ls:{}", s.ipc_root().display()));
    assert_eq!(root, "ok: engine.sock");
    denied(&s, "write:/etc/hostile");
    denied(&s, &format!("write:{}", dir.join("hostile/x").display()));
    assert_eq!(attempt(&s, "write:/tmp/x"), "ok: written");
    let full = denied(&s, "fill:4");
    assert!(full.contains("No space left"), "{full}");

    // Processes: it sees only its own, and cannot signal the engine or another worker.
    let procs = attempt(&s, "procs");
    let n: usize = procs
        .trim_start_matches("ok: ")
        .trim_end_matches(" processes")
        .parse()
        .unwrap_or(usize::MAX);
    assert!(n <= 4, "sees {procs}");
    let engine_pid = s.child.as_ref().map(|c| c.id()).expect("engine");
    denied(&s, &format!("kill:{engine_pid}"));
    denied(&s, &format!("kill:{}", pid_of(&s, "Plain")));

    // Network: its own namespace, so not even the gateway on the host's loopback.
    denied(&s, &format!("tcp:{}", s.addr));

    // Privileges: no new ones, no capabilities.
    let me = attempt(&s, "self");
    assert!(me.contains("NoNewPrivs: 1"), "{me}");
    assert!(me.contains("CapEff: 0000000000000000"), "{me}");
    // The default seccomp profile: the kernel keyrings are out of reach.
    let keys = denied(&s, "keyctl");
    assert!(keys.contains("Operation not permitted"), "{keys}");

    // A fork bomb stops at pids_limit.
    let (started, bomb) = fork_bomb(&s, 200);
    assert!(started < 24, "{bomb}");

    // The engine socket: neither as another function nor as itself without its secret.
    let other = denied(&s, "hello:Plain");
    assert!(
        other.contains("none of the function's worker processes"),
        "{other}"
    );
    let itself = denied(&s, "hello:Hostile");
    assert!(
        itself.contains("did not present its process's secret"),
        "{itself}"
    );
    others_serve(&s);

    // Memory: past memory_limit the worker dies; its call ends WORKER_CRASHED, naming the
    // limit when the engine could read how the process ended before it was reaped (a race
    // with the sandbox's init), and the function's last exit names it in any case. It is
    // restarted like any crash.
    let r = s.call("Hostile", b"alloc:512");
    assert_ne!(r.status, 200);
    let text = r.text();
    eprintln!("alloc:512 -> {} {text}", r.status);
    assert!(text.contains("WORKER_CRASHED"), "{text}");
    assert!(
        text.contains("memory_limit is 256 MiB") || text.ends_with(" exited\"}"),
        "{text}"
    );
    s.wait_for("Hostile's restart", Duration::from_secs(30), || {
        s.function_stat("Hostile", "workers") == 1 && s.function_stat("Hostile", "restarts") == 1
    });
    let last_exit = function_status(&s, "Hostile")["last_exit"].to_string();
    assert!(
        last_exit.contains("killed by SIGABRT (memory_limit is 256 MiB"),
        "{last_exit}"
    );
    assert_eq!(attempt(&s, "alloc:16"), "ok: touched 16 MiB");
    others_serve(&s);

    let hostile = function_status(&s, "Hostile");
    assert_eq!(hostile["isolation"], "sandbox");
    assert_eq!(hostile["limits"], "memory 256 MiB, pids 24 (rlimit)");
    s.stop();
}

/// Shared memory by descriptor: in its sandbox a function finds nothing of the IPC root but
/// the engine's socket (no payload of anyone's to open), and its own large inputs and outputs
/// still arrive whole.
#[test]
fn a_sandboxed_function_sees_no_payload_but_its_own() {
    if !sandbox_available() {
        return;
    }
    let mut s = stack("sandbox", "");
    let root = s.ipc_root();
    assert_eq!(
        attempt(&s, &format!("ls:{}", root.display())),
        "ok: engine.sock"
    );
    denied(&s, &format!("ls:{}", root.join("shm").display()));
    // Meanwhile Plain (outside any sandbox) answers a large call: its payloads exist, by
    // descriptor only.
    let big = vec![b'p'; 300_000];
    assert!(s.call("Plain", &big).body == big);
    let text = "x".repeat(200_000);
    let r = s.call("Hostile", format!("echo:{text}").as_bytes());
    assert_eq!(r.status, 200);
    assert!(
        r.text() == format!("ok: {text}"),
        "a large answer arrived changed"
    );
    others_serve(&s);
    s.stop();
}

#[test]
fn a_process_cannot_pose_as_a_worker() {
    let mut s = stack("process", "");
    let other = denied(&s, "hello:Plain");
    assert!(
        other.contains("none of the function's worker processes"),
        "{other}"
    );
    let itself = denied(&s, "hello:Hostile");
    assert!(
        itself.contains("did not present its process's secret"),
        "{itself}"
    );
    let root = s.ipc_root();
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("engine.sock")), 0o600);
    others_serve(&s);
    s.stop();
}

/// `gloam up` and `gloam validate` (as the engine's user) on `engine` and `functions`: their
/// stderr and stdout, after checking that `up` refused to start.
fn refusal(engine: &str, functions: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gloam.toml");
    std::fs::write(
        &path,
        format!(
            "[engine]\nipc_root = {:?}\nlisten = \"127.0.0.1:0\"\n{engine}\n{functions}",
            dir.path().join("ipc").display().to_string()
        ),
    )
    .expect("write");
    let run = |what: &str| {
        let mut c = std::process::Command::new(gloam_bin());
        c.arg(what).arg(&path);
        if let Some(uid) = engine_user() {
            use std::os::unix::process::CommandExt;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).expect("chown");
            std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("chown");
            c.uid(uid).gid(uid);
        }
        c.output().expect("run gloam")
    };
    let up = run("up");
    assert!(!up.status.success());
    let validate = run("validate");
    assert!(!validate.status.success());
    let all = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    (all(&up), all(&validate))
}

#[test]
fn gloam_up_refuses_what_it_cannot_enforce() {
    let cmd = hostile_bin().display().to_string();
    // Without a usable cgroup, no CPU quota: the message names the key, the cause and the fix.
    let (up, validate) = refusal(
        "",
        &format!("[functions.Hostile]\ncommand = {cmd:?}\ncpu_limit = 0.5\n"),
    );
    for err in [&up, &validate] {
        assert!(
            err.contains("functions.Hostile.cpu_limit: needs a cgroup the engine may write")
                && err.contains("cgroup v1: ")
                && err.contains("cgroup_parent"),
            "{err}"
        );
    }
    // A delegated parent that is not there.
    let (up, validate) = refusal(
        "cgroup_parent = \"no-such-group\"",
        &format!("[functions.Hostile]\ncommand = {cmd:?}\nmemory_limit = \"64M\"\n"),
    );
    for err in [&up, &validate] {
        assert!(
            err.contains(
                "engine.cgroup_parent = \"no-such-group\": cannot hold the workers' cgroups"
            ) && err.contains("/no-such-group does not exist"),
            "{err}"
        );
    }
}

/// `gloam up --isolation sandbox` sandboxes a function whose file says nothing of isolation,
/// and refuses to start when the engine's user cannot run its command, naming the command,
/// where its symlink leads and the user (a virtualenv made from a Python under `/root`);
/// `gloam validate --isolation sandbox` says the same.
#[test]
fn gloam_up_names_a_command_its_user_cannot_run() {
    if !sandbox_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::create_dir_all(root.join("private")).expect("mkdir");
    std::fs::create_dir_all(root.join("venv/bin")).expect("mkdir");
    std::fs::copy(hostile_bin(), root.join("private/python")).expect("copy");
    std::os::unix::fs::symlink(root.join("private/python"), root.join("venv/bin/python"))
        .expect("symlink");
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod");
    let path = root.join("gloam.toml");
    std::fs::write(
        &path,
        format!(
            "[engine]\nipc_root = {:?}\nlisten = \"127.0.0.1:0\"\n[functions.Py]\n\
             command = \"venv/bin/python\"\n",
            root.join("ipc").display().to_string()
        ),
    )
    .expect("write");
    use std::os::unix::process::CommandExt;
    let mut up = std::process::Command::new(gloam_bin());
    up.args(["up", "--isolation", "sandbox"]).arg(&path);
    let uid = engine_user();
    if let Some(uid) = uid {
        up.uid(uid).gid(uid);
    }
    let out = up.output().expect("run gloam up");
    // `gloam validate --isolation sandbox` checks the file as that `up` runs it.
    let mut validate = std::process::Command::new(gloam_bin());
    validate
        .args(["validate", "--isolation", "sandbox"])
        .arg(&path);
    if let Some(uid) = uid {
        validate.uid(uid).gid(uid);
    }
    let checked = validate.output().expect("run gloam validate");
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    assert!(!out.status.success());
    assert!(!checked.status.success());
    let checked = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--isolation sandbox: every function's workers run sandboxed (1 functions)"),
        "{err}"
    );
    // SAFETY: geteuid has no preconditions.
    let uid = uid.unwrap_or_else(|| unsafe { libc::geteuid() });
    let expected = format!(
        "functions.Py: its command {} (a link to {}) cannot be run by this engine's user (uid \
         {uid}): Permission denied",
        root.join("venv/bin/python").display(),
        root.join("private/python").display()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(checked.contains("--isolation sandbox"), "{checked}");
    assert!(checked.contains(&expected), "{checked}");
}
