//! The launcher against real child processes (`/bin/sh` scripts).

use super::*;
use anyhow::{anyhow, Context};
use std::path::Path;

const TEST_TIMEOUT: Duration = Duration::from_secs(20);

fn spec(dir: &Path, script: &str, processes: usize) -> LaunchSpec {
    LaunchSpec {
        function: "Echo".to_string(),
        function_id: 1,
        command: PathBuf::from("/bin/sh"),
        args: vec!["-c".to_string(), script.to_string()],
        env: vec![("MY_VAR".to_string(), "my value".to_string())],
        dir: dir.to_path_buf(),
        processes,
        workers_per_process: 3,
        ipc_root: dir.join("ipc"),
        log_dir: dir.join("logs"),
        debug: false,
        isolation: Default::default(),
        hide: Vec::new(),
        start_timeout: Duration::from_secs(30),
        cgroup: None,
    }
}

/// Polls `condition` until it holds (the test's timeout bounds the wait).
async fn until(mut condition: impl FnMut() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Gone, or a zombie waiting for a reaper that is not us.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[tokio::test]
async fn environment_and_directory_reach_the_child() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let script = r#"printf '%s|%s|%s|%s|%s|%s\n' "$GLOAM_FUNCTION" "$GLOAM_IPC_ROOT" \
        "$GLOAM_WORKERS" "$GLOAM_PROCESS_INDEX" "$MY_VAR" "$(pwd -P)" > env.tmp.$GLOAM_PROCESS_INDEX
        mv env.tmp.$GLOAM_PROCESS_INDEX env.$GLOAM_PROCESS_INDEX
        exec sleep 1000"#;
    let launcher = Launcher::start(spec(dir.path(), script, 2));
    let root = dir.path().canonicalize()?;
    tokio::time::timeout(TEST_TIMEOUT, async {
        until(|| dir.path().join("env.0").exists() && dir.path().join("env.1").exists()).await;
        until(|| launcher.pids().len() == 2).await;
    })
    .await
    .context("children did not start")?;
    for slot in 0..2 {
        let line = read(&dir.path().join(format!("env.{slot}")));
        let expected = format!(
            "Echo|{}|3|{slot}|my value|{}\n",
            dir.path().join("ipc").display(),
            root.display()
        );
        assert_eq!(line, expected);
    }
    assert_eq!(launcher.restarts(), 0);
    tokio::time::timeout(TEST_TIMEOUT, launcher.stop(Duration::from_secs(5)))
        .await
        .context("stop hung")?;
    Ok(())
}

#[tokio::test]
async fn output_goes_to_the_log_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let launcher = Launcher::start(spec(
        dir.path(),
        "echo to-stdout; echo to-stderr >&2; exec sleep 1000",
        1,
    ));
    let (out, err) = launcher.spec().log_paths(0);
    assert_eq!(out, dir.path().join("logs/Echo.0.stdout"));
    tokio::time::timeout(TEST_TIMEOUT, async {
        until(|| read(&out) == "to-stdout\n" && read(&err) == "to-stderr\n").await;
    })
    .await
    .context("log files never got the output")?;
    tokio::time::timeout(TEST_TIMEOUT, launcher.stop(Duration::from_secs(5)))
        .await
        .context("stop hung")?;
    Ok(())
}

#[tokio::test]
async fn an_exited_child_is_restarted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The first run exits; later runs stay up.
    let script = r#"echo $$ >> starts
        if [ ! -e once ]; then touch once; exit 3; fi
        exec sleep 1000"#;
    let launcher = Launcher::start(spec(dir.path(), script, 1));
    let starts = dir.path().join("starts");
    tokio::time::timeout(TEST_TIMEOUT, async {
        until(|| read(&starts).lines().count() == 2 && launcher.pids().len() == 1).await;
    })
    .await
    .context("child was not restarted")?;
    assert_eq!(launcher.restarts(), 1);
    let text = read(&starts);
    let pids: Vec<u32> = text
        .lines()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("starts file: {text:?}"))?;
    assert_ne!(pids[0], pids[1]);
    assert_eq!(launcher.pids(), [pids[1]]);
    tokio::time::timeout(TEST_TIMEOUT, launcher.stop(Duration::from_secs(5)))
        .await
        .context("stop hung")?;
    Ok(())
}

#[tokio::test]
async fn stop_kills_a_child_that_ignores_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The shell and its own child both ignore SIGTERM.
    let script = "trap '' TERM; sleep 1000 & echo $! > sleeper.tmp; mv sleeper.tmp sleeper; wait";
    let launcher = Launcher::start(spec(dir.path(), script, 1));
    let sleeper = dir.path().join("sleeper");
    tokio::time::timeout(TEST_TIMEOUT, async {
        until(|| sleeper.exists() && launcher.pids().len() == 1).await;
    })
    .await
    .context("child did not start")?;
    let shell = *launcher.pids().first().ok_or(anyhow!("no pid"))?;
    let grandchild: u32 = read(&sleeper).trim().parse()?;
    assert!(!process_gone(shell) && !process_gone(grandchild));

    tokio::time::timeout(TEST_TIMEOUT, launcher.stop(Duration::from_millis(200)))
        .await
        .context("stop hung")?;
    assert!(process_gone(shell), "shell {shell} survived stop()");
    tokio::time::timeout(TEST_TIMEOUT, until(|| process_gone(grandchild)))
        .await
        .context("grandchild survived stop()")?;
    Ok(())
}

#[tokio::test]
async fn spawn_errors_are_retried_and_stop_cancels_the_backoff() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut spec = spec(dir.path(), "", 1);
    spec.command = dir.path().join("no-such-program");
    let launcher = Launcher::start(spec);
    tokio::time::timeout(TEST_TIMEOUT, until(|| launcher.restarts() >= 2))
        .await
        .context("spawn was not retried")?;
    assert!(launcher.pids().is_empty());
    tokio::time::timeout(TEST_TIMEOUT, launcher.stop(Duration::from_secs(5)))
        .await
        .context("stop hung")?;
    Ok(())
}

#[tokio::test]
async fn ends_are_reported_with_the_stderr_tail_and_a_kick_restarts_at_once() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let hooks = LaunchHooks {
        events: Some(tx),
        echo: false,
    };
    let script =
        "echo starting; echo 'first line' >&2; echo 'Error: no handler for Echo' >&2; exit 3";
    let launcher = Launcher::start_with(spec(dir.path(), script, 1), hooks);
    let first = tokio::time::timeout(TEST_TIMEOUT, rx.recv())
        .await
        .context("no report")?
        .ok_or(anyhow!("channel closed"))?;
    let LaunchEvent::Ended(exit) = first;
    assert_eq!(
        (exit.function.as_str(), exit.function_id, exit.slot),
        ("Echo", 1, 0)
    );
    assert_eq!(
        exit.stderr_tail,
        ["first line", "Error: no handler for Echo"]
    );
    match &exit.end {
        ProcessEnd::Exited {
            status, last_line, ..
        } => {
            assert_eq!(status, "exit code 3");
            assert_eq!(last_line.as_deref(), Some("Error: no handler for Echo"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(exit.restart_in, INITIAL_BACKOFF);
    assert_eq!(
        exit.summary(),
        "Echo.0: worker process exited (exit code 3): Error: no handler for Echo; restarting in 100ms"
    );
    // Let the backoff grow, then kick: the next start comes at once with the backoff reset.
    for _ in 0..3 {
        tokio::time::timeout(TEST_TIMEOUT, rx.recv()).await?;
    }
    launcher.restart_now();
    let LaunchEvent::Ended(after) = tokio::time::timeout(TEST_TIMEOUT, rx.recv())
        .await?
        .ok_or(anyhow!("closed"))?;
    assert!(
        after.restart_in <= INITIAL_BACKOFF * 2,
        "{:?}",
        after.restart_in
    );
    tokio::time::timeout(TEST_TIMEOUT, launcher.stop(Duration::from_secs(5)))
        .await
        .context("stop hung")?;
    // A missing program is reported as not started, naming it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut missing = spec(dir.path(), "", 1);
    missing.command = dir.path().join("no-such-program");
    let launcher = Launcher::start_with(
        missing,
        LaunchHooks {
            events: Some(tx),
            echo: false,
        },
    );
    let LaunchEvent::Ended(exit) = tokio::time::timeout(TEST_TIMEOUT, rx.recv())
        .await?
        .ok_or(anyhow!("closed"))?;
    match &exit.end {
        ProcessEnd::NotStarted { error } => {
            assert!(error.contains("no-such-program"), "{error}");
            assert!(error.contains("No such file"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    launcher.stop(Duration::from_secs(1)).await;
    Ok(())
}

#[tokio::test]
async fn add_process_adds_a_slot() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let launcher = Launcher::start(spec(dir.path(), "exec sleep 1000", 1));
    launcher.add_process();
    assert_eq!(launcher.slots(), 2);
    tokio::time::timeout(TEST_TIMEOUT, until(|| launcher.pids().len() == 2))
        .await
        .context("second process did not start")?;
    let pids = launcher.pids();
    tokio::time::timeout(TEST_TIMEOUT, launcher.stop(Duration::from_secs(5)))
        .await
        .context("stop hung")?;
    for pid in pids {
        assert!(process_gone(pid), "{pid} survived stop()");
    }
    Ok(())
}

#[test]
fn spec_from_config() -> anyhow::Result<()> {
    let config = crate::config::Config::parse(
        "[engine]\nlog_dir = \"/l\"\nipc_root = \"/i\"\n\
         [functions.A]\ncommand = \"/bin/a\"\nmin_workers = 5\nworkers_per_process = 2\n\
         env = { K = \"v\" }\n[functions.B]\n",
        Path::new("/c/gloam.toml"),
    )?;
    let a = config.function("A").ok_or(anyhow!("A"))?;
    let spec = LaunchSpec::from_config(a, &config).ok_or(anyhow!("no spec"))?;
    assert_eq!(spec.command, Path::new("/bin/a"));
    assert_eq!((spec.processes, spec.workers_per_process), (3, 2));
    assert_eq!(spec.env, [("K".to_string(), "v".to_string())]);
    assert_eq!(spec.dir, Path::new("/c"));
    assert_eq!(spec.log_dir, Path::new("/l"));
    assert_eq!(spec.ipc_root, Path::new("/i"));
    let b = config.function("B").ok_or(anyhow!("B"))?;
    assert_eq!(LaunchSpec::from_config(b, &config), None);
    Ok(())
}
