//! Unit tests of overload shedding (`queue_target_ms`), on a simulated clock.

use gloam_core::protocol::CallId;
use gloam_core::ErrorKind;

use super::test_support::*;

#[test]
fn a_standing_queue_sheds_new_calls_until_it_drains() {
    let mut st = state("max_workers = 1\nqueue_target_ms = 10");
    let (w, _) = worker(&mut st, 1, 0, 0);
    // Calls usually take 1 ms (4 times that is under the target).
    let (c0, _) = external(&mut st, 1, 100, 0);
    answer(&mut st, w, c0, MS);
    let (c1, _) = external(&mut st, 1, 1, 2 * MS);
    let (c2, _) = external(&mut st, 1, 2, 2 * MS);
    external(&mut st, 1, 3, 2 * MS);
    // c2 leaves the queue after 20 ms, above the target: the delay stands from then on.
    answer(&mut st, w, c1, 22 * MS);
    // Not for a whole interval yet: calls still queue.
    let (c4, _) = external(&mut st, 1, 4, 50 * MS);
    answer(&mut st, w, c2, 130 * MS);
    // 108 ms of a standing delay: a new call is refused at once, naming the cause.
    let refusal = try_external(&mut st, 1, 5, 130 * MS).unwrap_err();
    assert_eq!(refusal.kind, ErrorKind::Overloaded);
    assert!(
        refusal.message.contains("function F is overloaded")
            && refusal.message.contains("queue_target_ms"),
        "{}",
        refusal.message
    );
    st.check_invariants(130 * MS).unwrap();
    // The calls already queued are still served, and once the queue empties calls queue
    // again.
    let a = answer(&mut st, w, CallId::new(0, 3), 140 * MS);
    assert_eq!(replies(&a), vec![(3, None)]);
    assert_eq!(dispatched(&a), vec![w], "c4 runs");
    let (_c6, a) = external(&mut st, 1, 6, 141 * MS);
    assert!(dispatched(&a).is_empty(), "queued behind c4, not shed");
    let a = answer(&mut st, w, c4, 150 * MS);
    assert_eq!(replies(&a), vec![(4, None)]);
    st.check_invariants(150 * MS).unwrap();
}

#[test]
fn a_slow_function_may_queue_a_few_of_its_running_times() {
    let mut st = state("max_workers = 1\nqueue_target_ms = 10");
    let (w, _) = worker(&mut st, 1, 0, 0);
    // Calls take 100 ms; each waits behind one running call, up to 100 ms.
    let mut running = external(&mut st, 1, 1, 0).0;
    for seq in 2..20u32 {
        let t = u64::from(seq - 1) * 100 * MS;
        let (next, _) = external(&mut st, 1, seq, t - 99 * MS);
        answer(&mut st, w, running, t);
        running = next;
    }
    st.check_invariants(2000 * MS).unwrap();
}

#[test]
fn a_queue_whose_calls_leave_within_the_target_sheds_nothing() {
    let mut st = state("max_workers = 1\nqueue_target_ms = 10");
    let (w, _) = worker(&mut st, 1, 0, 0);
    let mut running = external(&mut st, 1, 1, 0).0;
    for seq in 2..200u32 {
        let t = u64::from(seq) * 5 * MS;
        // One call always waits, 5 ms each: under the target however long it lasts.
        let (next, _) = external(&mut st, 1, seq, t - 4 * MS);
        answer(&mut st, w, running, t);
        running = next;
    }
    st.check_invariants(1000 * MS).unwrap();
}

#[test]
fn shedding_is_off_with_a_zero_target() {
    let mut st = state("max_workers = 1\nqueue_target_ms = 0");
    let (w, _) = worker(&mut st, 1, 0, 0);
    let (c1, _) = external(&mut st, 1, 1, 0);
    let (c2, _) = external(&mut st, 1, 2, 0);
    external(&mut st, 1, 3, 0);
    answer(&mut st, w, c1, 500 * MS);
    answer(&mut st, w, c2, 1000 * MS);
    assert!(try_external(&mut st, 1, 4, 1001 * MS).is_ok());
}
