//! Unit tests of the state, event by event, on a simulated clock.

use gloam_core::protocol::{flags, CallId, Header, Kind, Message};
use gloam_core::tally::Tally;
use gloam_core::ErrorKind;

use super::*;

use super::test_support::*;

fn grants(actions: &TestActions) -> Vec<(LeaseId, WorkerId, WorkerId)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Grant(l) => Some((l.id, l.holder, l.callee)),
            _ => None,
        })
        .collect()
}

fn revokes(actions: &TestActions) -> Vec<LeaseId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Revoke { lease, .. } => Some(lease.id),
            _ => None,
        })
        .collect()
}

fn overs(actions: &TestActions) -> Vec<LeaseId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::LeaseOver(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn tally(holder: WorkerId, lease: LeaseId, calls: u32, end: bool, callee: WorkerId) -> Message {
    let mut t = Tally {
        holder: holder.raw(),
        lease,
        ..Tally::default()
    };
    for _ in 0..calls {
        t.record(None, 1_000, 500);
    }
    t.to_message(callee.raw(), end)
}

#[test]
fn a_restarted_worker_never_receives_its_predecessors_answers() {
    // G (id 1) calls F (id 2); F's only worker holds G's call while G dies and G's slot is
    // reused by a new worker that makes a call with the same sequence number.
    let mut st = state_of(
        "[functions.G]\nid = 1\ncommand = \"/bin/true\"\n\
         [functions.F]\nid = 2\ncommand = \"/bin/true\"\nmax_workers = 2\n",
    );
    let (g1, _) = worker(&mut st, 1, 0, 0);
    let (f, _) = worker(&mut st, 2, 0, 0);
    let (orphan, a) = internal(&mut st, g1, 2, 1, MS);
    assert_eq!(dispatched(&a), vec![f]);
    st.worker_gone(g1, "exited", 2 * MS);
    let (g2, _) = worker(&mut st, 1, 0, 3 * MS);
    assert_eq!(g2.slot(), g1.slot(), "the slot is reused");
    assert_ne!(g2, g1, "with another generation");
    let (fresh, _) = internal(&mut st, g2, 2, 1, 4 * MS);
    assert_ne!(fresh, orphan, "the same sequence makes another call id");
    // F answers the orphan: nothing reaches g2, and g2's own call is dispatched next.
    let a = answer(&mut st, f, orphan, 5 * MS);
    assert!(internal_replies(&a).is_empty(), "{a:?}");
    assert_eq!(dispatched(&a), vec![f]);
    let a = answer(&mut st, f, fresh, 6 * MS);
    assert_eq!(internal_replies(&a), vec![(g2, fresh, None)]);
    st.check_invariants(6 * MS).unwrap();
}

#[test]
fn a_call_past_its_deadline_frees_its_slot_and_a_hung_worker_is_killed() {
    let mut st = state("max_workers = 1\ntimeout_ms = 50");
    let (w, _) = worker(&mut st, 1, 4242, 0);
    let (c1, a) = external(&mut st, 1, 1, 0);
    assert_eq!(dispatched(&a), vec![w]);
    let (_c2, a) = external(&mut st, 1, 2, MS);
    assert!(dispatched(&a).is_empty(), "one worker, busy");
    // Both deadlines pass: both callers get TIMEOUT; the worker stays busy with c1.
    let a = st.expire(60 * MS);
    let mut r = replies(&a);
    r.sort_unstable_by_key(|(to, _)| *to);
    assert_eq!(
        r,
        vec![(1, Some(ErrorKind::Timeout)), (2, Some(ErrorKind::Timeout))]
    );
    assert_eq!(st.function(1).unwrap().running, 0, "the τ slot is free");
    st.check_invariants(60 * MS).unwrap();
    // A new call waits for the hung worker (and times out in turn).
    let (_c3, a) = external(&mut st, 1, 3, 70 * MS);
    assert!(dispatched(&a).is_empty());
    // The grace passes: the worker is killed.
    let a = st.expire(1061 * MS);
    assert_eq!(kills(&a), vec![w]);
    assert!(kills(&st.expire(2000 * MS)).is_empty(), "killed once");
    let a = st.worker_gone(w, "killed", 2001 * MS);
    assert!(replies(&a).is_empty(), "its call had ended already");
    // Its replacement serves the next call.
    let (c4, _) = external(&mut st, 1, 4, 2001 * MS);
    let (w2, a) = worker(&mut st, 1, 4243, 2002 * MS);
    assert_eq!(dispatched(&a), vec![w2]);
    let a = answer(&mut st, w2, c4, 2003 * MS);
    assert_eq!(replies(&a), vec![(4, None)]);
    let _ = c1;
    st.check_invariants(2003 * MS).unwrap();
}

#[test]
fn a_late_answer_frees_the_worker_without_reaching_anyone() {
    let mut st = state("timeout_ms = 50");
    let (w, _) = worker(&mut st, 1, 0, 0);
    let (c1, _) = external(&mut st, 1, 1, 0);
    assert_eq!(
        replies(&st.expire(51 * MS)),
        vec![(1, Some(ErrorKind::Timeout))]
    );
    let a = answer(&mut st, w, c1, 60 * MS);
    assert!(replies(&a).is_empty());
    assert_eq!(st.function(1).unwrap().idle, vec![w]);
    assert!(
        kills(&st.expire(5000 * MS)).is_empty(),
        "it answered: not hung"
    );
    // Answering again is a protocol violation.
    let mut h = Header::new(Kind::Complete);
    h.set_call_id(c1);
    assert!(st
        .worker_answered(w, Box::new(Message::new(h)), 61 * MS)
        .is_err());
}

#[test]
fn queue_drains_on_completion_and_on_new_workers_with_min_zero() {
    let mut st = state("min_workers = 0\nmax_workers = 4");
    st.launcher_started(1, 0);
    // No worker at all: the call waits, and the pool is asked to grow.
    let (c1, a) = external(&mut st, 1, 1, 0);
    assert!(dispatched(&a).is_empty());
    assert_eq!(grows(&a), 1);
    // The new worker takes it at once (τ ≥ 1 even with min_workers = 0).
    let (w, a) = worker(&mut st, 1, 0, MS);
    assert_eq!(dispatched(&a), vec![w]);
    let (c2, a) = external(&mut st, 1, 2, 2 * MS);
    assert!(dispatched(&a).is_empty(), "one worker, busy: queued");
    let a = answer(&mut st, w, c1, 3 * MS);
    assert_eq!(dispatched(&a), vec![w], "completion drains the queue");
    assert_eq!(replies(&a), vec![(1, None)]);
    let a = answer(&mut st, w, c2, 4 * MS);
    assert!(dispatched(&a).is_empty());
    assert_eq!(st.function(1).unwrap().idle.len(), 1);
    st.check_invariants(4 * MS).unwrap();
}

#[test]
fn growth_is_rate_limited_and_never_passes_max_workers_whatever_restarts() {
    let mut st = state("min_workers = 1\nmax_workers = 3\ngrowth_interval_ms = 100");
    st.launcher_started(1, 1);
    let (w, _) = worker(&mut st, 1, 0, 0);
    let (_, a) = external(&mut st, 1, 1, MS);
    assert_eq!(dispatched(&a), vec![w]);
    let (_, a) = external(&mut st, 1, 2, 2 * MS);
    assert_eq!(grows(&a), 1);
    let (_, a) = external(&mut st, 1, 3, 3 * MS);
    assert_eq!(grows(&a), 0, "within the growth interval");
    let (_, a) = external(&mut st, 1, 4, 150 * MS);
    assert_eq!(grows(&a), 1, "after the interval");
    let (_, a) = external(&mut st, 1, 5, 400 * MS);
    assert_eq!(grows(&a), 0, "3 slots = max_workers");
    // The worker dies and its slot restarts it: still 3 slots, no growth for it.
    st.worker_gone(w, "exited", 401 * MS);
    let (_, a) = external(&mut st, 1, 6, 600 * MS);
    assert_eq!(grows(&a), 0, "a restart is not a new slot");
    assert_eq!(st.function(1).unwrap().pool.slots, 3);
    // Workers beyond max_workers are refused at the handshake.
    for _ in 0..3 {
        worker(&mut st, 1, 0, 601 * MS);
    }
    let refused = st.reserve_worker(1).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Overloaded);
    assert!(
        refused.message.contains("max_workers (3)"),
        "{}",
        refused.message
    );
    st.check_invariants(601 * MS).unwrap();
}

#[test]
fn limiter_holds_calls_back_to_tau() {
    // 4 idle workers; a steady 200/s of 1 ms calls needs τ = 1 (no headroom here).
    let mut st = state("min_workers = 1\nmax_workers = 4\nlimiter_headroom = 1");
    let workers: Vec<WorkerId> = (0..4).map(|_| worker(&mut st, 1, 0, 0).0).collect();
    let mut now = MS;
    for seq in 1..=300u32 {
        now += 5 * MS;
        let (id, a) = external(&mut st, 1, seq, now);
        let w = dispatched(&a)[0];
        assert!(workers.contains(&w));
        answer(&mut st, w, id, now + MS);
    }
    assert_eq!(st.function(1).unwrap().limiter.tau(now), 1);
    let (_, a) = external(&mut st, 1, 1000, now + MS);
    assert_eq!(dispatched(&a).len(), 1);
    let (_, a) = external(&mut st, 1, 1001, now + 2 * MS);
    assert!(dispatched(&a).is_empty(), "a second call waits for τ = 1");
    assert_eq!(st.function(1).unwrap().queued(), 1);
    st.check_invariants(now + 2 * MS).unwrap();
}

#[test]
fn idle_pool_shrinks_to_twice_tau_by_process_group() {
    let mut st = state("min_workers = 1\nmax_workers = 8\nshrink_grace_ms = 1000");
    st.launcher_started(1, 6);
    for group in 0..6 {
        worker(&mut st, 1, 200 + group, 0);
    }
    assert!(st.shrink(500 * MS).is_empty(), "not idle long enough");
    let a = st.shrink(2000 * MS);
    let retired: Vec<u32> = a
        .iter()
        .filter_map(|a| match a {
            Action::RetireProcess { group, .. } => Some(*group),
            _ => None,
        })
        .collect();
    assert_eq!(retired.len(), 4, "keep max(2τ, min) = 2 of 6");
    let f = st.function(1).unwrap();
    assert_eq!((f.ready_workers - f.retiring, f.idle.len()), (2, 2));
    assert_eq!((f.pool.slots, f.pool.retiring), (2, 4));
    assert!(
        st.shrink(3000 * MS).is_empty(),
        "never below 2τ / min_workers"
    );
    st.check_invariants(3000 * MS).unwrap();
    // A retired process's workers leave; its slot is gone for good.
    let gone: Vec<WorkerId> = st.workers().filter(|w| w.retiring).map(|w| w.id).collect();
    for w in gone {
        st.worker_gone(w, "retired", 3001 * MS);
    }
    assert_eq!(st.function(1).unwrap().pool.retiring, 0);
    st.check_invariants(3001 * MS).unwrap();
}

/// Functions G (id 1, the caller) and F (id 2), one worker each.
fn lease_state() -> (TestState, WorkerId, WorkerId) {
    let mut st = state_of(
        "[functions.G]\nid = 1\ncommand = \"/bin/true\"\n\
         [functions.F]\nid = 2\ncommand = \"/bin/true\"\nmax_workers = 1\n",
    );
    let (a, _) = worker(&mut st, 1, 0, 0);
    let (b, _) = worker(&mut st, 2, 0, 0);
    (st, a, b)
}

/// Two quick internal calls from `a` to F: the second one's answer grants the lease.
fn lease(st: &mut TestState, a: WorkerId, b: WorkerId, t: u64) -> LeaseId {
    let (id, _) = internal(st, a, 2, 1 + (t / MS) as u32, t);
    assert!(grants(&answer(st, b, id, t + MS)).is_empty());
    let (id, _) = internal(st, a, 2, 2 + (t / MS) as u32, t + 2 * MS);
    let g = grants(&answer(st, b, id, t + 3 * MS));
    assert_eq!(g.len(), 1);
    assert_eq!((g[0].1, g[0].2), (a, b));
    assert_eq!(st.function(2).unwrap().leased, 1);
    assert!(st.function(2).unwrap().idle.is_empty());
    g[0].0
}

#[test]
fn a_frequent_caller_is_leased_a_callee_that_comes_back_when_others_need_it() {
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 200 * MS);
    // Lane calls are counted from the callee's tallies.
    let a1 = st
        .lane_tally(b, &tally(a, l, 2, false, b), 204 * MS)
        .unwrap();
    assert!(a1.is_empty());
    let f = st.function(2).unwrap();
    assert_eq!((f.direct_calls, f.completed), (2, 4));
    // An external call finds no idle worker: it waits and the lease is revoked.
    let (ext, a1) = external(&mut st, 2, 9, 205 * MS);
    assert_eq!(revokes(&a1), vec![l]);
    assert!(dispatched(&a1).is_empty());
    // The callee's last record says the lease ended: it takes the queued call.
    let a1 = st
        .lane_tally(b, &tally(a, l, 0, true, b), 206 * MS)
        .unwrap();
    assert_eq!(dispatched(&a1), vec![b]);
    assert_eq!(st.function(2).unwrap().leased, 0);
    answer(&mut st, b, ext, 207 * MS);
    st.check_invariants(207 * MS).unwrap();
}

#[test]
fn a_record_of_an_earlier_lease_ends_nothing() {
    let (mut st, a, b) = lease_state();
    let first = lease(&mut st, a, b, 0);
    // The engine finds the lane idle at revoke: the lease ends; later a new one is granted.
    st.start_draining(10 * MS);
    st.lease_ended(first, 11 * MS);
    let (mut st2, a2, b2) = lease_state();
    let old = lease(&mut st2, a2, b2, 0);
    st2.lease_ended(old, 10 * MS);
    let new = lease(&mut st2, a2, b2, 100 * MS);
    assert_ne!(new, old);
    // A late LANE_END of the old lease leaves the new one in force.
    st2.lane_tally(b2, &tally(a2, old, 1, true, b2), 200 * MS)
        .unwrap();
    assert_eq!(st2.leases(), 1);
    assert_eq!(st2.worker(b2).unwrap().phase, Phase::Leased { lease: new });
    st2.check_invariants(200 * MS).unwrap();
    assert_eq!(st.leases(), 0);
}

#[test]
fn a_revoked_lease_that_never_ends_kills_its_callee_or_its_lying_holder() {
    // The engine saw the callee holding the holder's call: the callee is hung.
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 0);
    let (_ext, act) = external(&mut st, 2, 9, 10 * MS);
    assert_eq!(revokes(&act), vec![l]);
    st.lease_observed(l, Some(CallId::new(a.raw(), 3).0), 11 * MS);
    // F's timeout is 30 s; the hung grace 1 s.
    assert!(kills(&st.expire(30_000 * MS)).is_empty());
    assert_eq!(kills(&st.expire(31_020 * MS)), vec![b]);
    // The callee never had a call: the holder, whose lane claims one, is the one dropped.
    let (mut st2, a2, b2) = lease_state();
    let l2 = lease(&mut st2, a2, b2, 0);
    external(&mut st2, 2, 9, 10 * MS);
    st2.lease_observed(l2, None, 11 * MS);
    assert_eq!(kills(&st2.expire(31_020 * MS)), vec![a2]);
    let act = st2.worker_gone(a2, "killed", 31_021 * MS);
    assert_eq!(
        revokes(&act),
        vec![l2],
        "its lease is revoked again, holder gone"
    );
    st2.lease_ended(l2, 31_022 * MS);
    st2.check_invariants(31_022 * MS).unwrap();
    let act = st.worker_gone(b, "killed", 31_021 * MS);
    assert!(act.iter().any(|a| matches!(a, Action::FailLane { .. })));
    assert_eq!(st.leases(), 0);
    st.check_invariants(31_021 * MS).unwrap();
}

#[test]
fn a_callee_hung_on_an_abandoned_lane_call_is_killed() {
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 0);
    let call = CallId::new(a.raw(), 77).0;
    assert!(kills(&st.lease_observed(l, Some(call), 10 * MS)).is_empty());
    assert!(kills(&st.lease_observed(l, Some(call + 1), 20_000 * MS)).is_empty());
    assert!(kills(&st.lease_observed(l, Some(call + 1), 30_000 * MS)).is_empty());
    assert_eq!(
        kills(&st.lease_observed(l, Some(call + 1), 51_001 * MS)),
        vec![b]
    );
}

#[test]
fn leases_end_with_their_holder_or_their_callee() {
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 0);
    // The holder dies: its lease is revoked (the engine ends it when the lane is free).
    let act = st.worker_gone(a, "exited", 10 * MS);
    assert_eq!(revokes(&act), vec![l]);
    assert!(dispatched(&st.lease_ended(l, 11 * MS)).is_empty());
    assert_eq!(st.function(2).unwrap().idle.len(), 1);
    st.check_invariants(11 * MS).unwrap();

    // The callee dies while leased: the holder's waiting call is failed by the engine.
    let (mut st, a, b) = lease_state();
    lease(&mut st, a, b, 0);
    let act = st.worker_gone(b, "exited", 10 * MS);
    assert!(act
        .iter()
        .any(|x| matches!(x, Action::FailLane { text, .. } if text.contains("exited"))));
    assert_eq!(st.function(2).unwrap().leased, 0);
    assert_eq!(st.leases(), 0);
    st.check_invariants(10 * MS).unwrap();
}

#[test]
fn every_end_of_a_lease_tells_the_engine_once() {
    // Revoked idle: the engine reports it over.
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 0);
    let (_ext, act) = external(&mut st, 2, 9, 10 * MS);
    assert!(overs(&act).is_empty(), "a revoke alone ends nothing");
    assert_eq!(overs(&st.lease_ended(l, 11 * MS)), vec![l]);
    assert!(overs(&st.lease_ended(l, 12 * MS)).is_empty(), "once");
    // Revoked busy: the callee's last record ends it.
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 0);
    external(&mut st, 2, 9, 10 * MS);
    let act = st.lane_tally(b, &tally(a, l, 1, true, b), 11 * MS).unwrap();
    assert_eq!(overs(&act), vec![l]);
    // The callee dies: the holder's lane is failed, then the lease is over.
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 0);
    let act = st.worker_gone(b, "exited", 10 * MS);
    let fail = act
        .iter()
        .position(|x| matches!(x, Action::FailLane { .. }));
    let over = act
        .iter()
        .position(|x| matches!(x, Action::LeaseOver(id) if *id == l));
    assert!(fail.is_some() && over > fail, "{act:?}");
    // The holder dies, then its callee before the engine saw the lane free.
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 0);
    assert!(overs(&st.worker_gone(a, "exited", 10 * MS)).is_empty());
    assert_eq!(overs(&st.worker_gone(b, "exited", 11 * MS)), vec![l]);
    assert_eq!(st.leases(), 0);
    st.check_invariants(11 * MS).unwrap();
}

#[test]
fn draining_revokes_every_lease_and_the_end_of_the_drain_ends_every_call() {
    let (mut st, a, b) = lease_state();
    let l = lease(&mut st, a, b, 0);
    assert_eq!(revokes(&st.start_draining(MS)), vec![l]);
    assert_eq!(st.leases(), 1, "until the engine sees the lane free");
    st.lease_ended(l, 2 * MS);
    assert_eq!(st.leases(), 0);
    // A call admitted before the drain and still running ends with SHUTDOWN.
    let mut st = state("");
    let (w, _) = worker(&mut st, 1, 0, 0);
    let (c, _) = external(&mut st, 1, 1, 0);
    st.start_draining(MS);
    let mut h = Header::new(Kind::Dispatch);
    h.set_call_id(CallId::new(0, 2));
    let refused = st
        .admit_external(CallId::new(0, 2), 1, 2, Box::new(Message::new(h)), 2 * MS)
        .map_err(|(r, _)| r.kind);
    assert_eq!(refused.err(), Some(ErrorKind::Shutdown));
    let act = st.abort_in_flight("the engine stopped", 3 * MS);
    assert_eq!(replies(&act), vec![(1, Some(ErrorKind::Shutdown))]);
    assert_eq!(st.calls_in_flight(), 0);
    st.check_invariants(3 * MS).unwrap();
    // Its worker's late answer is no violation.
    assert!(replies(&answer(&mut st, w, c, 4 * MS)).is_empty());
}

#[test]
fn protocol_violations_are_named() {
    let mut st = state("");
    let (w, _) = worker(&mut st, 1, 0, 0);
    // An answer to a call it does not run.
    let mut h = Header::new(Kind::Complete);
    h.set_call_id(CallId::new(0, 99));
    let e = st
        .worker_answered(w, Box::new(Message::new(h)), MS)
        .unwrap_err();
    assert!(e.contains("does not run"), "{e}");
    // An INVOKE naming another caller.
    let mut h = Header::new(Kind::Invoke);
    h.set_call_id(CallId::new(w.raw() + 1, 1));
    h.function_id = 1;
    let e = st
        .admit_internal(w, Box::new(Message::new(h)), MS)
        .unwrap_err();
    assert!(e.contains("names caller"), "{e}");
    // An INVOKE reusing a call id in flight.
    let (id, _) = internal(&mut st, w, 1, 5, 2 * MS);
    let mut h = Header::new(Kind::Invoke);
    h.set_call_id(id);
    h.function_id = 1;
    let e = st
        .admit_internal(w, Box::new(Message::new(h)), 3 * MS)
        .unwrap_err();
    assert!(e.contains("reuses call id"), "{e}");
    // A tally whose counts disagree.
    let mut bad = tally(w, 1, 1, false, w);
    bad.header.flags |= flags::LANE;
    let mut t = Tally::from_message(&bad).unwrap();
    t.duration.counts[0] += 5;
    assert!(st
        .lane_tally(w, &t.to_message(w.raw(), false), 4 * MS)
        .is_err());
}

#[test]
fn unknown_functions_and_oversized_inputs_are_refused_to_the_caller() {
    let mut st = state("max_payload = 100");
    let (w, _) = worker(&mut st, 1, 0, 0);
    let (id, act) = internal(&mut st, w, 9, 1, MS);
    assert_eq!(
        internal_replies(&act),
        vec![(w, id, Some(ErrorKind::FunctionNotFound))]
    );
    let mut h = Header::new(Kind::Invoke);
    h.set_call_id(CallId::new(w.raw(), 2));
    h.function_id = 1;
    h.payload_len = 1000;
    h.payload_loc = gloam_core::protocol::PayloadLocation::Descriptor;
    let act = st
        .admit_internal(w, Box::new(Message::new(h)), 2 * MS)
        .unwrap();
    assert!(act.iter().any(|a| matches!(
        a,
        Action::DropPayload(_, gloam_core::payload::PayloadSide::Input)
    )));
    assert_eq!(
        internal_replies(&act)[0].2,
        Some(ErrorKind::PayloadTooLarge)
    );
    st.check_invariants(2 * MS).unwrap();
}
