//! What `gloam up` tells the person at its terminal (stderr, lines starting `gloam: `): workers
//! that cannot start, with the reason and the last lines of their stderr; crashes and
//! restarts; builds; readiness. Worker output itself is echoed by the launcher
//! (`<function>.<slot> | <line>`).

use std::io::Write;

use crate::engine::EndNews;
use crate::launcher::ProcessExit;
use crate::state::ProcessEnd;

/// Lines of a failed process's stderr repeated in its report.
const REPORT_LINES: usize = 5;

/// Writes `lines` to stderr at once (so they are not interleaved with worker output).
pub fn say(lines: &[String]) {
    let mut err = std::io::stderr().lock();
    for line in lines {
        let _ = writeln!(err, "gloam: {line}");
    }
    let _ = err.flush();
}

/// The report of a process that ended by itself: `echoed` tells whether its output already
/// went to the console (then a crash's output is not repeated; a failure to start always
/// shows the last lines of stderr).
pub fn process_ended(exit: &ProcessExit, news: &EndNews, echoed: bool) -> Vec<String> {
    let name = &exit.function;
    let mut lines = Vec::new();
    let start_failed = matches!(exit.end, ProcessEnd::NotStarted { .. }) || news.unavailable;
    if start_failed {
        lines.push(format!("{name} cannot start: {}", news.what));
    } else {
        lines.push(format!(
            "{name}.{} {}",
            exit.slot,
            news.what.replacen("its ", "", 1)
        ));
    }
    let show_tail = start_failed || !echoed;
    if show_tail && !exit.stderr_tail.is_empty() {
        // The lines leading to the one that says why (a runtime's banner may follow it).
        let reason = match &exit.end {
            ProcessEnd::Exited { last_line, .. } => last_line.as_deref(),
            ProcessEnd::NotStarted { .. } => None,
        };
        let tail = &exit.stderr_tail;
        let end = reason
            .and_then(|r| tail.iter().rposition(|l| l.trim() == r))
            .map_or(tail.len(), |i| i + 1);
        let from = end.saturating_sub(REPORT_LINES);
        lines.push(format!("  its stderr ({}):", exit.stderr_log.display()));
        for l in &tail[from..end] {
            lines.push(format!("  | {l}"));
        }
    }
    let mut next = format!(
        "  restarting in {} ms (restart {})",
        exit.restart_in.as_millis(),
        news.restarts
    );
    if news.unavailable {
        next.push_str(&format!(
            "; calls to {name} answer 503 FUNCTION_UNAVAILABLE until a worker is ready"
        ));
        if news.failed_calls > 0 {
            next.push_str(&format!(" ({} waiting calls failed)", news.failed_calls));
        }
    }
    lines.push(next);
    lines
}

/// Whether a start failure already told in full is worth a line again: the first few times,
/// then about once a minute once the backoff reached its cap of 5 s.
pub fn worth_repeating(restarts: u64) -> bool {
    restarts <= 5 || restarts % 12 == 0
}

/// The short report of a start failure already told in full.
pub fn still_failing(exit: &ProcessExit, news: &EndNews) -> String {
    format!(
        "{} still cannot start (restart {}; next try in {} ms)",
        exit.function,
        news.restarts,
        exit.restart_in.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_start_failure_names_the_cause_and_shows_stderr() {
        let exit = ProcessExit {
            function: "Foo".into(),
            function_id: 1,
            slot: 0,
            end: ProcessEnd::Exited {
                group: 9,
                status: "exit code 1".into(),
                last_line: Some("ModuleNotFoundError: No module named 'gloam'".into()),
            },
            stderr_tail: (0..8).map(|i| format!("l{i}")).collect(),
            stderr_log: PathBuf::from("logs/Foo.0.stderr"),
            restart_in: Duration::from_millis(400),
        };
        let news = EndNews {
            unavailable: true,
            restarts: 3,
            what: "its worker process exited before it was ready (exit code 1): ModuleNotFoundError: No module named 'gloam'".into(),
            failed_calls: 2,
        };
        let lines = process_ended(&exit, &news, true);
        assert_eq!(
            lines[0],
            "Foo cannot start: its worker process exited before it was ready (exit code 1): ModuleNotFoundError: No module named 'gloam'"
        );
        assert_eq!(lines[1], "  its stderr (logs/Foo.0.stderr):");
        assert_eq!(
            &lines[2..7],
            ["  | l3", "  | l4", "  | l5", "  | l6", "  | l7"]
        );
        assert_eq!(
            lines[7],
            "  restarting in 400 ms (restart 3); calls to Foo answer 503 FUNCTION_UNAVAILABLE until a worker is ready (2 waiting calls failed)"
        );
        // A crash whose output was echoed: one line and the restart.
        let news = EndNews {
            unavailable: false,
            restarts: 1,
            what: "its worker process exited (killed by SIGSEGV)".into(),
            failed_calls: 0,
        };
        let lines = process_ended(&exit, &news, true);
        assert_eq!(
            lines,
            [
                "Foo.0 worker process exited (killed by SIGSEGV)",
                "  restarting in 400 ms (restart 1)"
            ]
        );
        // The lines shown end with the reason, not with what follows it.
        let mut banner = exit.clone();
        banner.stderr_tail = ["a", "b", "Error: no handler", "}", "Node.js v20"]
            .map(String::from)
            .to_vec();
        banner.end = ProcessEnd::Exited {
            group: 9,
            status: "exit code 1".into(),
            last_line: Some("Error: no handler".into()),
        };
        let news = EndNews {
            unavailable: true,
            ..EndNews::default()
        };
        let lines = process_ended(&banner, &news, true);
        assert_eq!(&lines[2..5], ["  | a", "  | b", "  | Error: no handler"]);
    }

    #[test]
    fn a_crash_loop_is_told_less_and_less() {
        let told: Vec<u64> = (1..=60).filter(|r| worth_repeating(*r)).collect();
        assert_eq!(told, [1, 2, 3, 4, 5, 12, 24, 36, 48, 60]);
    }
}
