//! Isolation, end to end: a hostile function (`engine/examples/hostile.rs`) in a real
//! bubblewrap sandbox, and in a plain process, tries to escape; each attempt fails as
//! documented in `docs/architecture.md` ("Isolation"), and the engine and the other
//! function keep serving throughout.
//!
//! The sandbox needs an unprivileged engine: run as root, these tests start `gloam up` as
//! `nobody` (65534). Without `bwrap` on the machine they are skipped, unless
//! `GLOAM_TEST_SANDBOX=1` (CI) makes that a failure.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{gloam_bin, rust_fn, Stack};

const NOBODY: u32 = 65534;

fn hostile_bin() -> PathBuf {
    let p = gloam_bin().with_file_name("examples").join("hostile");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p gloam-engine --examples` (cargo test does)",
        p.display()
    );
    p
}

/// The user to run the engine as: `nobody` when the tests run as root.
fn engine_user() -> Option<u32> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then_some(NOBODY)
}

fn sandbox_available() -> bool {
    let found = std::process::Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("GLOAM_TEST_SANDBOX").is_err(),
            "GLOAM_TEST_SANDBOX is set but bwrap is not installed"
        );
        eprintln!("bwrap is not installed: skipping the sandbox tests");
    }
    found
}

/// `Hostile` (sandboxed or not, with `extra` keys) and `Plain` (a process-mode echo whose
/// directory holds a secret file), each in its own directory.
fn stack(isolation: &str, extra: &str) -> Stack {
    let functions = format!(
        "[functions.Hostile]\ncommand = {cmd:?}\ndir = \"hostile\"\nenv = {{ GLOAM_HANDLER = \"Try\" }}\n\
         isolation = {isolation:?}\n{extra}\n{plain}",
        cmd = hostile_bin().display().to_string(),
        plain = rust_fn("Plain", "Echo", "dir = \"plain\""),
    );
    let prepare = |dir: &Path| {
        std::fs::create_dir_all(dir.join("hostile")).expect("mkdir");
        std::fs::create_dir_all(dir.join("plain")).expect("mkdir");
        std::fs::write(dir.join("plain/secret.txt"), "Plain's secret").expect("write");
    };
    let s = Stack::start_as("", &functions, engine_user(), &prepare);
    s.wait_for("both functions' workers", Duration::from_secs(30), || {
        s.function_stat("Hostile", "workers") == 1 && s.function_stat("Plain", "workers") == 1
    });
    s
}

/// What `Hostile` answers to `attempt` (its call must succeed).
fn attempt(s: &Stack, attempt: &str) -> String {
    let r = s.call("Hostile", attempt.as_bytes());
    assert_eq!(r.status, 200, "{attempt}: {}", r.text());
    eprintln!("{attempt} -> {}", r.text());
    r.text().into_owned()
}

fn denied(s: &Stack, what: &str) -> String {
    let answer = attempt(s, what);
    assert!(answer.starts_with("denied: "), "{what}: {answer}");
    answer
}

/// `Plain` still answers, and the engine is healthy.
fn others_serve(s: &Stack) {
    assert_eq!(s.call("Plain", b"still here").text(), "still here");
    assert_eq!(s.client().get("/healthz").expect("healthz").status, 200);
}

fn function_status(s: &Stack, name: &str) -> serde_json::Value {
    s.status()["functions"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .cloned()
        .expect("the function's status")
}

fn pid_of(s: &Stack, function: &str) -> u64 {
    s.status()["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["function"] == function))
        .and_then(|w| w["pid"].as_u64())
        .expect("a worker pid")
}

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
    let bomb = denied(&s, "fork:200");
    let started: usize = bomb
        .trim_start_matches("denied: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
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
    assert_eq!(hostile["limits"], "memory 256 MiB, pids 24");
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

#[test]
fn gloam_up_refuses_what_it_cannot_enforce() {
    let functions = format!(
        "[functions.Hostile]\ncommand = {cmd:?}\nisolation = \"sandbox\"\ncpu_limit = 0.5\n",
        cmd = hostile_bin().display().to_string(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gloam.toml");
    std::fs::write(
        &path,
        format!(
            "[engine]\nipc_root = {:?}\nlisten = \"127.0.0.1:0\"\n{functions}",
            dir.path().join("ipc").display().to_string()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(gloam_bin())
        .arg("up")
        .arg(&path)
        .output()
        .expect("run gloam up");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // As root the engine refuses sandboxes at all; else it names the key it cannot enforce.
    assert!(
        err.contains("functions.Hostile.cpu_limit") || err.contains("needs an unprivileged engine"),
        "{err}"
    );
}

/// `gloam up --isolation sandbox` sandboxes a function whose file says nothing of isolation,
/// and refuses to start when the engine's user cannot run its command, naming the command,
/// where its symlink leads and the user (a virtualenv made from a Python under `/root`).
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
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    assert!(!out.status.success());
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
}
