//! Unit tests of the priority classes: background (asynchronous) calls run after every
//! interactive call and hold at most ⌈τ/2⌉ workers.

use gloam_core::protocol::{CallId, Header, Kind, Message};

use super::test_support::{state_of, worker, TestActions, TestState};
use super::{Action, Class, WorkerId};

fn call(st: &mut TestState, seq: u32, class: Class, now: u64) -> (CallId, TestActions) {
    let caller = if class == Class::Background {
        0x0001_0000
    } else {
        0
    };
    let id = CallId::new(caller, seq);
    let mut h = Header::new(Kind::Dispatch);
    h.set_call_id(id);
    let actions = st
        .admit_external_as(id, 1, u64::from(seq), Box::new(Message::new(h)), class, now)
        .map_err(|(r, _)| r)
        .unwrap_or_else(|r| panic!("refused: {r:?}"));
    (id, actions)
}

fn dispatched(actions: &TestActions) -> Vec<(WorkerId, CallId)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { worker, msg, .. } if msg.header.kind == Kind::Dispatch => {
                Some((*worker, msg.header.call_id()))
            }
            _ => None,
        })
        .collect()
}

fn answer(st: &mut TestState, w: WorkerId, id: CallId, now: u64) -> TestActions {
    let mut h = Header::new(Kind::Complete);
    h.set_call_id(id);
    st.worker_answered(w, Box::new(Message::new(h)), now)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn interactive_calls_pass_queued_background_ones_which_keep_to_half_of_tau() {
    // No limiter: τ = max_workers = 4, so background calls hold at most 2 workers.
    let mut st = state_of(
        "[functions.F]\nid = 1\ncommand = \"/bin/true\"\nmax_workers = 4\nlimiter = false\n",
    );
    let ws: Vec<WorkerId> = (0..4).map(|_| worker(&mut st, 1, 0, 0).0).collect();
    let mut running = Vec::new();
    for seq in 1..=5 {
        let (_, a) = call(&mut st, seq, Class::Background, 10);
        running.extend(dispatched(&a));
    }
    assert_eq!(running.len(), 2, "background calls hold ⌈τ/2⌉ workers");
    assert_eq!(
        st.function(1).map(|f| f.queued_of(Class::Background)),
        Some(3)
    );
    st.check_invariants(10).unwrap_or_else(|e| panic!("{e}"));
    // Interactive calls take the two workers left at once, ahead of the background queue.
    for seq in 10..12 {
        let (id, a) = call(&mut st, seq, Class::Interactive, 20);
        assert_eq!(dispatched(&a).iter().map(|d| d.1).collect::<Vec<_>>(), [id]);
    }
    // With every worker busy, an interactive call queues behind nothing: the next worker
    // freed takes it, not the older background calls.
    let (late, a) = call(&mut st, 12, Class::Interactive, 30);
    assert!(dispatched(&a).is_empty());
    let (w, bg) = running[0];
    let a = answer(&mut st, w, bg, 40);
    assert_eq!(dispatched(&a), [(w, late)]);
    st.check_invariants(40).unwrap_or_else(|e| panic!("{e}"));
    let _ = ws;
}
