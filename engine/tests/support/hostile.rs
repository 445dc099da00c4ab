//! The hostile function's stack for the isolation tests (`isolation.rs`, `isolation_cgroups.rs`):
//! `Hostile` (`engine/examples/hostile.rs`, sandboxed or not) beside `Plain`, an echo whose
//! directory holds a secret, with the engine run as `nobody` when the tests run as root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{gloam_bin, rust_fn, Stack};

/// The user the engine runs as when the tests run as root.
pub const NOBODY: u32 = 65534;

pub fn hostile_bin() -> PathBuf {
    let p = gloam_bin().with_file_name("examples").join("hostile");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p gloam-engine --examples` (cargo test does)",
        p.display()
    );
    p
}

/// The user to run the engine as: `nobody` when the tests run as root.
pub fn engine_user() -> Option<u32> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then_some(NOBODY)
}

pub fn sandbox_available() -> bool {
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
pub fn stack(isolation: &str, extra: &str) -> Stack {
    stack_with("", isolation, extra)
}

/// [`stack`] with `engine` keys in `[engine]`.
pub fn stack_with(engine: &str, isolation: &str, extra: &str) -> Stack {
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
pub fn attempt(s: &Stack, attempt: &str) -> String {
    let r = s.call("Hostile", attempt.as_bytes());
    assert_eq!(r.status, 200, "{attempt}: {}", r.text());
    eprintln!("{attempt} -> {}", r.text());
    r.text().into_owned()
}

pub fn denied(s: &Stack, what: &str) -> String {
    let answer = attempt(s, what);
    assert!(answer.starts_with("denied: "), "{what}: {answer}");
    answer
}

/// `Plain` still answers, and the engine is healthy.
pub fn others_serve(s: &Stack) {
    assert_eq!(s.call("Plain", b"still here").text(), "still here");
    assert_eq!(s.client().get("/healthz").expect("healthz").status, 200);
}

pub fn function_status(s: &Stack, name: &str) -> serde_json::Value {
    s.status()["functions"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .cloned()
        .expect("the function's status")
}

pub fn pid_of(s: &Stack, function: &str) -> u64 {
    s.status()["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["function"] == function))
        .and_then(|w| w["pid"].as_u64())
        .expect("a worker pid")
}

/// `Hostile` starts `n` sleeping children at once and is stopped by a limit: how many it
/// started, and its whole answer.
pub fn fork_bomb(s: &Stack, n: usize) -> (usize, String) {
    let bomb = denied(s, &format!("fork:{n}"));
    let started = bomb
        .trim_start_matches("denied: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    (started, bomb)
}
