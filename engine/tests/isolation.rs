//! Isolation, end to end: a hostile function (`engine/examples/hostile.rs`) in a real
//! bubblewrap sandbox, and in a plain process, tries to escape; each attempt fails as
//! documented in `docs/architecture.md` ("Isolation"), and the engine and the other
//! function keep serving throughout.
//!
//! The sandbox needs an unprivileged engine: run as root, these tests start `gloam up` as
//! `nobody` (65534). Without `bwrap` on the machine they are skipped, unless
//! `GLOAM_TEST_SANDBOX=1` (CI) makes that a failure.
//!
//! The cgroup tests need a cgroup delegated to that user, `gloam` in each hierarchy
//! (`GLOAM_TEST_CGROUP_PARENT` overrides), as `ci/install-sandbox.sh` makes; without one they
//! are skipped, unless `GLOAM_TEST_SANDBOX=1`. The other tests use the engine's default (its
//! own cgroups, which `nobody` cannot write), so they exercise the rlimit fallbacks.

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
    stack_with("", isolation, extra)
}

/// [`stack`] with `engine` keys in `[engine]`.
fn stack_with(engine: &str, isolation: &str, extra: &str) -> Stack {
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
    let s = Stack::start_as(engine, &functions, engine_user(), &prepare);
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

/// The delegated cgroup parent, when this machine has one (see the module docs).
fn cgroup_parent() -> Option<String> {
    let parent = std::env::var("GLOAM_TEST_CGROUP_PARENT").unwrap_or_else(|_| "gloam".into());
    let found = ["memory", "unified", ""]
        .iter()
        .any(|h| Path::new("/sys/fs/cgroup").join(h).join(&parent).is_dir());
    if !found {
        assert!(
            std::env::var("GLOAM_TEST_SANDBOX").is_err(),
            "GLOAM_TEST_SANDBOX is set but no cgroup {parent} is delegated: run ci/install-sandbox.sh"
        );
        eprintln!("no cgroup {parent} is delegated: skipping the cgroup tests");
        return None;
    }
    Some(parent)
}

/// The directory of `pid`'s group in the hierarchy of `controller` (v1), or in v2.
fn group_dir(pid: u64, controller: &str) -> PathBuf {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroups");
    let v1 = own.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, cs, path) = (p.next()?, p.next()?, p.next()?);
        cs.split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    });
    match v1 {
        Some(path) => Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&path[1..]),
        None => {
            let path = own.lines().find_map(|l| l.strip_prefix("0::")).expect("v2");
            let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                .iter()
                .find(|r| Path::new(r).join("cgroup.controllers").exists())
                .expect("a v2 mount");
            Path::new(root).join(&path[1..])
        }
    }
}

/// CPU time in seconds used by the processes of group `dir` (their user + system time from
/// `/proc`, threads included; works the same for v1 and v2).
fn cpu_seconds(dir: &Path) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
    procs
        .lines()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let after = stat.rsplit_once(") ")?.1.to_string();
            let f: Vec<u64> = after
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|n| n.parse().ok())
                .collect();
            Some(f.iter().sum::<u64>() as f64 / ticks)
        })
        .sum()
}

/// Checks that the worker of `Hostile` sits in `<parent>/gloam-<engine>/Hostile/0` of each
/// hierarchy; returns its memory group.
fn placed(s: &Stack, parent: &str) -> PathBuf {
    let pid = pid_of(s, "Hostile");
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroups");
    eprintln!("the worker's cgroups:\n{own}");
    let memory = group_dir(pid, "memory");
    let text = memory.display().to_string();
    assert!(text.contains(&format!("/{parent}/gloam-")), "{text}");
    assert!(text.ends_with("/Hostile/0"), "{text}");
    memory
}

/// The limits of a sandboxed function, enforced by the kernel through its cgroup: memory
/// (the OOM killer, named in the call's error), processes, CPU time.
#[test]
fn cgroups_enforce_a_sandboxs_limits() {
    if !sandbox_available() {
        return;
    }
    let Some(parent) = cgroup_parent() else {
        return;
    };
    let limits = "memory_limit = \"64M\"\npids_limit = 24\ncpu_limit = 0.2\n";
    let mut s = stack_with(&format!("cgroup_parent = {parent:?}"), "sandbox", limits);
    let hostile = function_status(&s, "Hostile");
    let shown = hostile["limits"].as_str().unwrap_or_default().to_string();
    assert!(
        shown.starts_with("memory 64 MiB, cpu 0.2, pids 24 (cgroup v"),
        "{shown}"
    );
    let memory = placed(&s, &parent);
    let pid = pid_of(&s, "Hostile");

    // A fork bomb stops at pids.max (the sandbox's bwrap processes count too).
    let bomb = denied(&s, "fork:200");
    let started: usize = bomb
        .trim_start_matches("denied: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(started < 24, "{bomb}");
    let pids = group_dir(pid, "pids");
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .expect("pids.max")
            .trim(),
        "24"
    );

    // CPU: a function that spins gets about 0.2 CPU-seconds per second. Measured over the
    // middle of a 3 s spin; a busy machine can only lower it.
    let cpu = group_dir(pid, "cpu");
    let spinner = {
        let s_addr = s.addr.clone();
        std::thread::spawn(move || {
            let mut c = gloam_engine::client::HttpClient::new(s_addr.as_str()).expect("client");
            c.set_read_timeout(Some(Duration::from_secs(60)))
                .expect("timeout");
            c.post("/function/Hostile", b"spin:3000").expect("spin")
        })
    };
    s.wait_for("the spin to start", Duration::from_secs(10), || {
        s.function_stat("Hostile", "running") == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    let (t0, u0) = (std::time::Instant::now(), cpu_seconds(&cpu));
    std::thread::sleep(Duration::from_millis(1500));
    let (t1, u1) = (std::time::Instant::now(), cpu_seconds(&cpu));
    let rate = (u1 - u0) / (t1 - t0).as_secs_f64();
    eprintln!("cpu_limit 0.2: the group used {rate:.3} CPU-seconds per second");
    let spun = spinner.join().expect("spinner");
    assert_eq!(spun.status, 200, "{}", spun.text());
    assert!(
        rate <= 0.3,
        "{rate} CPU-seconds per second under cpu_limit = 0.2"
    );
    assert!(rate >= 0.05, "{rate}: the spin did not run");
    let stat = std::fs::read_to_string(cpu.join("cpu.stat")).expect("cpu.stat");
    assert!(
        stat.lines()
            .any(|l| l.starts_with("nr_throttled ") && !l.ends_with(" 0")),
        "{stat}"
    );

    // Memory: past memory_limit the kernel's OOM killer ends the worker; its call ends
    // WORKER_CRASHED saying so, and it is restarted; the other function serves throughout.
    let r = s.call("Hostile", b"alloc:128");
    let text = r.text().into_owned();
    eprintln!("alloc:128 -> {} {text}", r.status);
    assert_ne!(r.status, 200);
    assert!(text.contains("WORKER_CRASHED"), "{text}");
    assert!(
        text.contains("out of memory: the kernel's OOM killer ended it at memory_limit = 64 MiB"),
        "{text}"
    );
    let oom = ["memory.events", "memory.oom_control"]
        .iter()
        .find_map(|f| std::fs::read_to_string(memory.join(f)).ok())
        .expect("the OOM counter");
    assert!(oom.contains("oom_kill 1"), "{oom}");
    others_serve(&s);
    s.wait_for("Hostile's restart", Duration::from_secs(30), || {
        s.function_stat("Hostile", "workers") == 1 && s.function_stat("Hostile", "restarts") == 1
    });
    let last_exit = function_status(&s, "Hostile")["last_exit"].to_string();
    assert!(last_exit.contains("out of memory"), "{last_exit}");
    assert_eq!(attempt(&s, "alloc:16"), "ok: touched 16 MiB");
    assert_eq!(placed(&s, &parent), memory);
    others_serve(&s);
    let engine_group = memory
        .parent()
        .and_then(Path::parent)
        .expect("its group")
        .to_path_buf();
    s.stop();
    // The engine removed its groups when it stopped.
    assert!(!engine_group.exists(), "{} is left", engine_group.display());
}

/// With cgroups, a plain process gets the same limits (before, pids_limit needed a sandbox).
#[test]
fn cgroups_limit_a_plain_process_too() {
    let Some(parent) = cgroup_parent() else {
        return;
    };
    // The groups of an engine that is gone (no process has this pid) are removed at start.
    let stale: Vec<PathBuf> = ["memory", "pids", "unified", ""]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join(&parent))
        .filter(|p| p.join("cgroup.procs").exists())
        .map(|p| p.join("gloam-4294967-1"))
        .collect();
    for dir in &stale {
        std::fs::create_dir_all(dir.join("Gone/0")).expect("a stale group");
        // As the engine that made it would have left it.
        let uid = engine_user();
        for d in [dir.clone(), dir.join("Gone"), dir.join("Gone/0")] {
            std::os::unix::fs::chown(&d, uid, uid).expect("chown");
        }
    }
    let limits = "memory_limit = \"64M\"\npids_limit = 16\n";
    let mut s = stack_with(&format!("cgroup_parent = {parent:?}"), "process", limits);
    placed(&s, &parent);
    for dir in &stale {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    let bomb = denied(&s, "fork:100");
    assert!(bomb.contains("children, then"), "{bomb}");
    let r = s.call("Hostile", b"alloc:128");
    let text = r.text().into_owned();
    assert!(text.contains("WORKER_CRASHED"), "{text}");
    // "was killed by SIGKILL (out of memory…" or, when the launcher reaped it before the
    // engine read its exit code, "was killed (out of memory…": the group's counter tells.
    assert!(
        text.contains("was killed") && text.contains("(out of memory"),
        "{text}"
    );
    others_serve(&s);
    s.wait_for("Hostile's restart", Duration::from_secs(30), || {
        s.function_stat("Hostile", "workers") == 1
    });
    assert_eq!(attempt(&s, "alloc:16"), "ok: touched 16 MiB");
    s.stop();
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
