//! Unit tests of pipelining: a waiting short call sent behind a running one, on a simulated
//! clock.

use gloam_core::ErrorKind;

use super::test_support::*;
use super::*;

const US: u64 = 1000;

/// Function F with one worker `w` that has served one call of `service` ns, pipelining calls
/// that usually take under 500 µs.
fn warm(extra: &str, service: u64) -> (TestState, WorkerId) {
    let mut st = state(&format!("max_workers = 1\n{extra}"));
    st.options.pipeline_below_ns = 500 * US;
    let (w, _) = worker(&mut st, 1, 0, 0);
    let (c, _) = external(&mut st, 1, 1, 0);
    answer(&mut st, w, c, service);
    (st, w)
}

fn counts(st: &TestState) -> (usize, usize, usize) {
    let f = st.function(1).unwrap();
    (f.running, f.pipelined, f.queued())
}

#[test]
fn a_waiting_short_call_runs_behind_the_running_one_and_starts_when_it_answers() {
    let (mut st, w) = warm("", 100 * US);
    let (c2, a) = external(&mut st, 1, 2, MS);
    assert_eq!(dispatched(&a), vec![w], "idle: dispatched");
    let (c3, a) = external(&mut st, 1, 3, MS + 10 * US);
    assert_eq!(dispatched(&a), vec![w], "busy: pipelined behind c2");
    assert_eq!(counts(&st), (1, 1, 0), "a pipelined call is not in τ");
    let (c4, a) = external(&mut st, 1, 4, MS + 20 * US);
    assert!(dispatched(&a).is_empty(), "one pipelined call per worker");
    assert_eq!(counts(&st), (1, 1, 1));
    st.check_invariants(MS + 20 * US).unwrap();

    // c2 answers: c3 is what the worker runs now, and c4 goes behind it.
    let a = answer(&mut st, w, c2, MS + 100 * US);
    assert_eq!(replies(&a), vec![(2, None)]);
    assert_eq!(dispatched(&a), vec![w]);
    assert_eq!(counts(&st), (1, 1, 0));
    st.check_invariants(MS + 100 * US).unwrap();
    let a = answer(&mut st, w, c3, MS + 200 * US);
    assert_eq!(replies(&a), vec![(3, None)]);
    assert!(dispatched(&a).is_empty());
    assert_eq!(counts(&st), (1, 0, 0));
    let a = answer(&mut st, w, c4, MS + 300 * US);
    assert_eq!(replies(&a), vec![(4, None)]);
    assert_eq!(counts(&st), (0, 0, 0));
    assert_eq!(st.function(1).unwrap().idle, vec![w]);
    st.check_invariants(MS + 300 * US).unwrap();
}

#[test]
fn calls_that_usually_take_long_wait_in_the_queue() {
    let (mut st, w) = warm("", 2 * MS);
    let (_c2, a) = external(&mut st, 1, 2, 3 * MS);
    assert_eq!(dispatched(&a), vec![w]);
    let (_c3, a) = external(&mut st, 1, 3, 3 * MS);
    assert!(dispatched(&a).is_empty());
    assert_eq!(counts(&st), (1, 0, 1));
    st.check_invariants(3 * MS).unwrap();
}

#[test]
fn a_pipelined_call_answered_first_frees_the_place_behind() {
    let (mut st, w) = warm("", 100 * US);
    let (c2, _) = external(&mut st, 1, 2, MS);
    let (c3, _) = external(&mut st, 1, 3, MS);
    let (c4, _) = external(&mut st, 1, 4, MS);
    // A handler that runs calls concurrently answers c3 first: c4 takes its place.
    let a = answer(&mut st, w, c3, MS + 50 * US);
    assert_eq!(replies(&a), vec![(3, None)]);
    assert_eq!(dispatched(&a), vec![w]);
    assert_eq!(counts(&st), (1, 1, 0));
    st.check_invariants(MS + 50 * US).unwrap();
    let a = answer(&mut st, w, c2, MS + 100 * US);
    assert_eq!(replies(&a), vec![(2, None)]);
    let a = answer(&mut st, w, c4, MS + 150 * US);
    assert_eq!(replies(&a), vec![(4, None)]);
    assert_eq!(counts(&st), (0, 0, 0));
    st.check_invariants(MS + 150 * US).unwrap();
}

#[test]
fn a_worker_that_dies_fails_its_pipelined_call_too() {
    let (mut st, w) = warm("", 100 * US);
    external(&mut st, 1, 2, MS);
    external(&mut st, 1, 3, MS);
    let a = st.worker_gone(w, "killed by signal 9", 2 * MS);
    let mut r = replies(&a);
    r.sort_unstable_by_key(|(to, _)| *to);
    assert_eq!(
        r,
        vec![
            (2, Some(ErrorKind::WorkerCrashed)),
            (3, Some(ErrorKind::WorkerCrashed))
        ]
    );
    assert_eq!(counts(&st), (0, 0, 0));
    st.check_invariants(2 * MS).unwrap();
}

#[test]
fn a_pipelined_call_past_its_deadline_ends_once_and_its_worker_must_refuse_it() {
    let (mut st, w) = warm("timeout_ms = 50", 100 * US);
    let (c2, _) = external(&mut st, 1, 2, MS);
    let (c3, _) = external(&mut st, 1, 3, MS);
    // Both deadlines pass while c2 runs: both callers get TIMEOUT, once.
    let a = st.expire(60 * MS);
    let mut r = replies(&a);
    r.sort_unstable_by_key(|(to, _)| *to);
    assert_eq!(
        r,
        vec![(2, Some(ErrorKind::Timeout)), (3, Some(ErrorKind::Timeout))]
    );
    assert_eq!(counts(&st), (0, 0, 0));
    st.check_invariants(60 * MS).unwrap();
    // c2 finally answers: nobody hears it; the worker now holds c3, already ended.
    let a = answer(&mut st, w, c2, 70 * MS);
    assert!(replies(&a).is_empty());
    st.check_invariants(70 * MS).unwrap();
    // A worker that refuses c3 at once is fine...
    let a = answer(&mut st, w, c3, 71 * MS);
    assert!(replies(&a).is_empty());
    assert_eq!(st.function(1).unwrap().idle, vec![w]);
    assert!(
        kills(&st.expire(5000 * MS)).is_empty(),
        "it answered: not hung"
    );
    st.check_invariants(5000 * MS).unwrap();
}

#[test]
fn a_worker_that_runs_an_ended_pipelined_call_is_killed_as_hung() {
    let (mut st, w) = warm("timeout_ms = 50", 100 * US);
    let (c2, _) = external(&mut st, 1, 2, MS);
    external(&mut st, 1, 3, MS);
    st.expire(60 * MS);
    // c2 answers just before its grace ends; c3 (ended) never does, and gets a grace of
    // its own from the moment the worker takes it.
    answer(&mut st, w, c2, 1050 * MS);
    let a = st.expire(2100 * MS);
    assert_eq!(kills(&a), vec![w], "killed after the grace");
    let a = st.worker_gone(w, "killed", 2101 * MS);
    assert!(replies(&a).is_empty(), "its calls had ended already");
    st.check_invariants(2101 * MS).unwrap();
}
