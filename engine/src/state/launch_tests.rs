//! Unit tests of what the launcher reports: processes that cannot start make a function
//! unavailable (calls fail at once), crashes do not, and a ready worker ends it.

use gloam_core::protocol::{CallId, Header, Kind, Message};
use gloam_core::ErrorKind;

use super::test_support::{
    answer, external, internal, internal_replies, replies, state, worker, MS,
};
use super::{Action, Outcome, ProcessEnd};

fn early_exit(group: u32) -> ProcessEnd {
    ProcessEnd::Exited {
        group,
        status: "exit code 1".into(),
        last_line: Some("error: this program has no handler for function \"F\"".into()),
    }
}

fn failure_text(actions: &super::test_support::TestActions) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply {
                outcome: Outcome::Failed(_, text),
                ..
            } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_process_that_exits_before_ready_fails_queued_and_new_calls_at_once() {
    let mut st = state("min_workers = 1\ntimeout_ms = 30000");
    st.launcher_started(1, 1);
    // A call arrives before any worker: it waits.
    let (_, actions) = external(&mut st, 1, 1, 0);
    assert!(replies(&actions).is_empty());
    // The process dies before its worker is ready: the call fails now, not at its deadline.
    let actions = st.process_ended(1, &early_exit(4242), MS);
    assert_eq!(
        replies(&actions),
        [(1, Some(ErrorKind::FunctionUnavailable))]
    );
    let text = &failure_text(&actions)[0];
    assert!(
        text.starts_with("function F has no worker: its worker process exited before it was ready (exit code 1): error: this program has no handler"),
        "{text}"
    );
    let f = st.function(1).unwrap();
    assert_eq!((f.restarts, f.queued()), (1, 0));
    assert_eq!(
        f.last_exit.as_deref(),
        text.strip_prefix("function F has no worker: ")
    );
    st.check_invariants(MS).unwrap();

    // New calls are refused with the reason, external and internal alike.
    let id = CallId::new(0, 2);
    let mut h = Header::new(Kind::Dispatch);
    h.set_call_id(id);
    let refused = st.admit_external(id, 1, 2, Box::new(Message::new(h)), 2 * MS);
    let Err((r, _)) = refused else {
        panic!("admitted while unavailable")
    };
    assert_eq!(r.kind, ErrorKind::FunctionUnavailable);
    assert_eq!(&r.message, text);
    assert_eq!(st.function(1).unwrap().metrics.outcomes[13], 2);
    st.check_invariants(2 * MS).unwrap();
}

#[test]
fn a_ready_worker_ends_unavailability_and_a_start_failure_counts_a_restart() {
    let mut st = state("min_workers = 1");
    st.launcher_started(1, 1);
    let not_started = ProcessEnd::NotStarted {
        error: "cannot run /nope/fn in /srv: No such file or directory".into(),
    };
    st.process_ended(1, &not_started, MS);
    st.process_ended(1, &not_started, 2 * MS);
    let f = st.function(1).unwrap();
    assert!(f.refuses_calls());
    assert_eq!(f.restarts, 2);
    assert!(f.unavailable.as_deref().is_some_and(|t| t
        .ends_with("cannot be started: cannot run /nope/fn in /srv: No such file or directory")));
    // The fixed program starts: calls are served again.
    let (w, _) = worker(&mut st, 1, 77, 3 * MS);
    assert!(!st.function(1).unwrap().refuses_calls());
    assert!(st.function(1).unwrap().unavailable.is_none());
    let (id, actions) = external(&mut st, 1, 1, 4 * MS);
    assert_eq!(super::test_support::dispatched(&actions), [w]);
    let actions = answer(&mut st, w, id, 5 * MS);
    assert_eq!(replies(&actions), [(1, None)]);
    st.check_invariants(5 * MS).unwrap();
}

#[test]
fn a_crash_after_ready_keeps_calls_waiting_for_the_restart() {
    let mut st = state("min_workers = 1\ntimeout_ms = 30000");
    st.launcher_started(1, 1);
    let (w, _) = worker(&mut st, 1, 55, 0);
    // The worker dies (its socket closes first), then the launcher reports the exit.
    let _ = st.worker_gone(w, "disconnected", MS);
    let (_, actions) = external(&mut st, 1, 1, 2 * MS);
    assert!(replies(&actions).is_empty());
    let crash = ProcessEnd::Exited {
        group: 55,
        status: "killed by SIGSEGV".into(),
        last_line: None,
    };
    let actions = st.process_ended(1, &crash, 3 * MS);
    assert!(
        replies(&actions).is_empty(),
        "a crash is not unavailability"
    );
    let f = st.function(1).unwrap();
    assert_eq!((f.restarts, f.queued(), f.refuses_calls()), (1, 1, false));
    assert_eq!(
        f.last_exit.as_deref(),
        Some("its worker process exited (killed by SIGSEGV)")
    );
    // The restarted process's exit before ready, though, is.
    let actions = st.process_ended(1, &early_exit(56), 4 * MS);
    assert_eq!(
        replies(&actions),
        [(1, Some(ErrorKind::FunctionUnavailable))]
    );
    st.check_invariants(4 * MS).unwrap();
}

#[test]
fn a_failing_slot_beside_a_ready_worker_changes_nothing_but_the_count() {
    let mut st = state("min_workers = 2\ntimeout_ms = 30000");
    st.launcher_started(1, 2);
    let (w, _) = worker(&mut st, 1, 10, 0);
    let actions = st.process_ended(1, &early_exit(11), MS);
    assert!(actions.is_empty());
    let f = st.function(1).unwrap();
    assert!(!f.refuses_calls() && f.unavailable.is_none());
    assert_eq!(f.restarts, 1);
    // Its calls are served meanwhile.
    let (_, actions) = external(&mut st, 1, 1, 2 * MS);
    assert_eq!(super::test_support::dispatched(&actions), [w]);
    st.check_invariants(2 * MS).unwrap();
}

#[test]
fn an_internal_call_to_an_unavailable_function_fails_at_once() {
    let mut st = super::test_support::state_of(
        "[functions.A]\nid = 1\ncommand = \"/bin/true\"\n\
         [functions.B]\nid = 2\ncommand = \"/bin/true\"\n",
    );
    st.launcher_started(1, 1);
    st.launcher_started(2, 1);
    let (a, _) = worker(&mut st, 1, 10, 0);
    let _ = st.process_ended(2, &early_exit(20), MS);
    let (id, actions) = internal(&mut st, a, 2, 1, 2 * MS);
    assert_eq!(
        internal_replies(&actions),
        [(a, id, Some(ErrorKind::FunctionUnavailable))]
    );
    st.check_invariants(2 * MS).unwrap();
}

#[test]
fn a_roll_replaces_every_process_and_calls_in_flight_finish() {
    let mut st = state("min_workers = 2\nmax_workers = 2\ntimeout_ms = 30000");
    st.launcher_started(1, 2);
    let (a, _) = worker(&mut st, 1, 10, 0);
    let (b, _) = worker(&mut st, 1, 11, 0);
    let (busy, actions) = external(&mut st, 1, 1, MS);
    let running_on = super::test_support::dispatched(&actions)[0];
    let actions = st.roll(1, 2 * MS);
    let retired: Vec<_> = actions
        .iter()
        .filter_map(|x| match x {
            Action::RetireProcess { group, .. } => Some(*group),
            _ => None,
        })
        .collect();
    assert_eq!(retired, [10, 11]);
    // max_workers = 2: no room for new processes until the old ones leave.
    assert_eq!(super::test_support::grows(&actions), 0);
    assert_eq!(st.function(1).unwrap().pool.refill, 2);
    st.check_invariants(2 * MS).unwrap();
    // A new call waits (no worker takes calls while retiring); the running one completes.
    let (_, actions) = external(&mut st, 1, 2, 3 * MS);
    assert!(super::test_support::dispatched(&actions).is_empty());
    let actions = answer(&mut st, running_on, busy, 4 * MS);
    assert_eq!(replies(&actions), [(1, None)]);
    // The old workers leave: each frees room for a new process.
    let idle = if running_on == a { b } else { a };
    let actions = st.worker_gone(idle, "retired", 5 * MS);
    assert_eq!(super::test_support::grows(&actions), 1);
    let actions = st.worker_gone(running_on, "retired", 6 * MS);
    assert_eq!(super::test_support::grows(&actions), 1);
    assert_eq!(st.function(1).unwrap().pool.refill, 0);
    // The new worker takes the waiting call.
    let (c, actions) = worker(&mut st, 1, 12, 7 * MS);
    assert_eq!(super::test_support::dispatched(&actions), [c]);
    st.check_invariants(7 * MS).unwrap();
}
