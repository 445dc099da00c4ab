//! Isolation limits through cgroups, end to end: the hostile function (`engine/examples/hostile.rs`)
//! in a sandbox and in a plain process, with `memory_limit`, `pids_limit` and `cpu_limit`
//! enforced by the kernel through the engine's per-function groups.
//!
//! They need a cgroup delegated to the engine's user (`nobody` when the tests run as root),
//! `gloam` in each hierarchy (`GLOAM_TEST_CGROUP_PARENT` overrides), as `ci/install-sandbox.sh`
//! makes; without one they are skipped, unless `GLOAM_TEST_SANDBOX=1` (CI) makes that a
//! failure.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::hostile::*;
use support::Stack;

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
    let (started, bomb) = fork_bomb(&s, 200);
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
