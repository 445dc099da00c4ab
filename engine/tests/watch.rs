//! `gloam up --watch`: a change of a function's sources rebuilds it and replaces its workers
//! while calls keep coming, none of them dropped; a failed build leaves the workers running.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{rust_fn, within, Stack};

fn pids(s: &Stack, function: &str) -> Vec<u64> {
    let status = s.status();
    let mut pids: Vec<u64> = status["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter(|w| w["function"] == function)
                .filter_map(|w| w["pid"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[test]
fn a_rebuild_replaces_the_workers_without_dropping_a_call() {
    within(Duration::from_secs(180), || {
        // max_workers = min_workers: the new processes start only as the old ones leave.
        let functions = rust_fn(
            "Echo",
            "Echo",
            "min_workers = 2\nmax_workers = 2\nwatch = [\"src.txt\"]\n\
             build = \"grep -q broken src.txt && exit 1; echo built >> builds.log\"\n",
        );
        // The function's directory is the stack's (where its gloam.toml is).
        let s = Stack::start_with_args("", &functions, &["--watch"]);
        s.wait_for("the watcher", Duration::from_secs(30), || {
            s.stderr_text().contains("for changes")
        });
        let src = s.dir.path().join("src.txt");
        std::fs::write(&src, "v1").expect("write");
        let builds = s.dir.path().join("builds.log");
        // `gloam: ready` needs one ready worker per function; wait for the second too.
        s.wait_for("both Echo workers", Duration::from_secs(30), || {
            pids(&s, "Echo").len() == 2
        });
        let before = pids(&s, "Echo");

        // Calls keep coming from two clients meanwhile.
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..2)
            .map(|i| {
                let (stop, mut client) = (stop.clone(), s.client());
                std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let body = format!("client {i}");
                        let r = client
                            .post("/function/Echo", body.as_bytes())
                            .expect("call");
                        answers.push((r.status, r.body == body.as_bytes()));
                    }
                    answers
                })
            })
            .collect();

        // The file was written after the watcher read the sources: that is the change.
        s.wait_for("the rebuild", Duration::from_secs(60), || {
            std::fs::read_to_string(&builds).is_ok_and(|b| b.lines().count() >= 2)
        });
        s.wait_for("new workers", Duration::from_secs(60), || {
            let now = pids(&s, "Echo");
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        });
        let after = pids(&s, "Echo");

        // A build that fails leaves the workers alone.
        std::fs::write(&src, "broken").expect("write");
        s.wait_for(
            "the failed build on the console",
            Duration::from_secs(60),
            || s.stderr_text().contains("keep their running workers"),
        );
        assert_eq!(pids(&s, "Echo"), after);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let answers: Vec<(u16, bool)> = clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect();
        assert!(answers.len() > 20, "only {} calls", answers.len());
        let bad: Vec<_> = answers
            .iter()
            .filter(|(st, ok)| *st != 200 || !ok)
            .collect();
        if !bad.is_empty() {
            eprintln!("ENGINE STDERR:\n{}", s.stderr_text());
        }
        assert!(
            bad.is_empty(),
            "{} of {} calls failed: {bad:?}",
            bad.len(),
            answers.len()
        );
        let console = s.stderr_text();
        assert!(
            console.contains("gloam: sources of Echo changed"),
            "{console}"
        );
        assert!(console.contains("replacing its workers"), "{console}");
        assert!(
            console.contains("the build of Echo failed (exit code 1)"),
            "{console}"
        );
        let mut s = s;
        s.stop();
    });
}
