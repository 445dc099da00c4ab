//! Loom models of the direct-lane state machine (`core/src/lane.rs`), run on the real
//! [`LeaseRegion`] lane code and [`SharedRing`] lease words over [`ModelRegion`]s (see
//! `core/src/model.rs`: every state word is a loom atomic, and the inbound and reply slots are
//! loom cells, so any read or write of a slot that is not ordered with a write of it fails the
//! model).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p gloam-core --release --test loom_lane` (or
//! `ci/loom.sh`). `LOOM_MAX_PREEMPTIONS` bounds the exploration (default here: 2; see
//! `ci/loom.sh` for the run times; 3 takes hours).
//!
//! The parties are threads running the protocol's calls in the order the workers and the
//! engine make them, and waiting as they do, on the real doorbells: the **holder**
//! (`RingChannel::lane_call` / `wait_lane`: read its lane's lease word, begin on that lease's
//! region, deliver and ring the callee's doorbell, look, give up at its deadline or sleep on
//! the lane's bell, take the reply), the **callee** (`recv_spin` / `answer_lane`: read its
//! inbound lease word, take the call from that lease's region, finish it, answer and ring the
//! lane's bell, send a `LANE_END` record and ring the engine when the answer says the lease
//! ended; sleep on its own doorbell when idle) and the **engine** (`engine/src/lanes.rs`:
//! grant — write the lease's region, publish the callee's word, then the holder's — revoke
//! with the lease id and judge the lease over or busy, wait for the record, fail the lane of a
//! dead callee and ring its holder, clear the words of a lease that is over, grant the next
//! lease in a region of its own). A worker finds a published lease's region as it would on
//! its socket (the models make the regions up front; a region is untouched until its grant).
//! Records travel over a loom atomic with release/acquire, as over a ring. A dead callee is a
//! thread that stops after a given step; the engine learns of its death by joining it (the
//! kernel orders a process's exit before the engine sees its socket close). The engine's rule
//! for "over" (`lanes::revoke` with the holder alive) is restated here, since it lives in the
//! engine.
//!
//! **What every model asserts, for every interleaving:**
//!
//! - a call's answer is taken by its holder at most once (the [`LaneCall`] token is consumed)
//!   and only when the callee's answer reported it delivered (or the engine failed the call
//!   for a dead callee) — and it is *that call's* answer, never an earlier one;
//! - an abandoned call's late answer is never delivered, and the lane is usable again
//!   afterwards (the holder's next call on it gets its own answer);
//! - a revoke that the engine judges over finds the callee's inbound slot empty for that
//!   lease, and a lease the engine waited for ends with the callee's record;
//! - nothing of lease N changes lease N+1: every lease region's state words name only that
//!   lease, late revokes and ends of N leave N+1 published, and the final state words are
//!   those of lease N+1;
//! - the inbound slot has one writer at a time, and the reply slot too (loom's causality
//!   check on the slot cells), across leases and across holders — also when the engine
//!   ends the lease of a dead holder and hands its callee to another holder.
//!
//! [`LeaseRegion`]: gloam_core::lane::LeaseRegion
//! [`SharedRing`]: gloam_core::ring::SharedRing
//! [`LaneCall`]: gloam_core::lane::LaneCall

#![cfg(loom)]

#[path = "loom/lanes.rs"]
mod lanes;

use gloam_core::lane::phase;
use gloam_core::model::ModelRegion;
use lanes::*;
use loom::thread;

#[test]
fn a_revoke_during_traffic_ends_the_lease_and_a_later_lease_is_untouched() {
    check(|| {
        let w = World::new(1, &[1, 1]);
        w.grant(1);
        let holder = {
            let w = w.clone();
            thread::spawn(move || {
                let calls = vec![
                    (1, call(&w, 1, 1, Patience::Forever)),
                    (2, call(&w, 1, 2, Patience::Forever)),
                ];
                w.done(1);
                calls
            })
        };
        let callee = {
            let w = w.clone();
            thread::spawn(move || serve(&w, Life::Lives))
        };
        // The engine.
        if !revoke(&w, 1) {
            wait_lease_end(&w, 1);
        }
        // Lease 2 on the same lane, in a region of its own; lease 1's end is carried out
        // late, and a late revoke of lease 1 comes too (it finds lease 1 revoked, or UNUSED
        // once the holder took its last answer): lease 2 stays published.
        w.grant(2);
        let _ = w.lease(1).region.revoke(1);
        w.lease(1).assert_ended();
        w.over(1);
        assert_eq!(w.holder(1).ring.lane_lease(0), 2);
        assert_eq!(w.callee_ring.inbound_lease(), 2);
        let calls = holder.join().unwrap();
        let served = callee.join().unwrap();
        check_answers(1, &calls, &served);
        w.check_lease_words();
        assert_eq!(
            w.lease(2).model.lane_state(),
            ModelRegion::lane_word(2, phase::IDLE)
        );
        assert_eq!(w.lease(2).model.inbound_state(), 2 << 4);
        // Only lease 2 serves calls after lease 1's revoke.
        for s in &served {
            assert!(s.lease == 2 || s.lease == 1);
        }
    });
}

#[test]
fn an_abandoned_call_is_never_delivered_and_the_lane_serves_the_next_call() {
    check(|| {
        let w = World::new(1, &[1]);
        w.grant(1);
        let holder = {
            let w = w.clone();
            thread::spawn(move || {
                let first = call(&w, 1, 1, Patience::None);
                let mut calls = vec![(1, first)];
                if let Outcome::Abandoned { .. } = first {
                    // The lane is busy until the callee drops the late answer.
                    loop {
                        match call(&w, 1, 2, Patience::Forever) {
                            Outcome::NoLane => thread::yield_now(),
                            second => {
                                calls.push((2, second));
                                break;
                            }
                        }
                    }
                }
                w.done(1);
                calls
            })
        };
        let served = serve(&w, Life::Lives);
        let calls = holder.join().unwrap();
        check_answers(1, &calls, &served);
        for s in &served {
            assert!(!s.answered.lease_ended);
        }
        w.check_lease_words();
        assert_eq!(
            w.lease(1).model.lane_state(),
            ModelRegion::lane_word(1, phase::IDLE)
        );
    });
}

/// A callee that dies at `life` while its holder waits (`patience`): the engine fails the
/// call, ends the lease, then grants the lane again (to another callee, in a new region).
fn dead_callee(life: Life, patience: Patience) {
    check(move || {
        let w = World::new(1, &[1, 1]);
        w.grant(1);
        let holder = {
            let w = w.clone();
            thread::spawn(move || call(&w, 1, 1, patience))
        };
        let callee = {
            let w = w.clone();
            thread::spawn(move || serve(&w, life))
        };
        // The engine sees the callee's process gone.
        let served = callee.join().unwrap();
        let failed = w.lease(1).region.fail(1, &msg(FAILURE));
        w.lease(1).region.lane_bell().notify();
        w.over(1);
        let outcome = holder.join().unwrap();
        // The holder is done with lease 1: the lane may carry a new callee's lease 2, which
        // nothing of lease 1 touches.
        w.grant(2);
        // Late operations of lease 1 touch only lease 1's region (it may be UNUSED by now:
        // the holder took the failure).
        let _ = w.lease(1).region.revoke(1);
        assert!(!w.lease(1).region.fail(1, &msg(FAILURE)));
        w.lease(1).assert_ended();
        w.over(1);
        assert_eq!(w.holder(1).ring.lane_lease(0), 2);
        let delivered = served.first().is_some_and(|s| s.answered.delivered);
        match outcome {
            Outcome::Answer { tag, lease: 1 } if tag == FAILURE => {
                assert!(
                    failed && !delivered,
                    "a failure the engine did not put there"
                )
            }
            Outcome::Answer { tag, lease: 1 } => {
                assert_eq!(tag, 1 + ANSWER);
                assert!(delivered && !failed);
            }
            Outcome::Abandoned { lease: 1 } => assert!(!delivered && !failed),
            // The engine's failure revoked the idle lane before the call began.
            Outcome::NoLane => assert!(served.is_empty() && !failed),
            other => panic!("unexpected {other:?}"),
        }
        w.check_lease_words();
        assert_eq!(
            w.lease(2).model.lane_state(),
            ModelRegion::lane_word(2, phase::IDLE)
        );
    });
}

#[test]
fn a_dead_callee_fails_the_waiting_call_exactly_once() {
    for life in [
        Life::DiesAtOnce,
        Life::DiesAfterTake,
        Life::DiesAfterFinish,
        Life::DiesAfterAnswer,
    ] {
        dead_callee(life, Patience::Forever);
    }
}

#[test]
fn a_dead_callee_and_an_abandoning_holder_agree() {
    for life in [Life::DiesAfterTake, Life::DiesAfterAnswer] {
        dead_callee(life, Patience::None);
    }
}

#[test]
fn a_callee_released_to_another_holder_has_one_writer_at_a_time() {
    check(|| {
        let w = World::new(2, &[1, 2]);
        w.grant(1);
        let first = {
            let w = w.clone();
            thread::spawn(move || {
                let c = call(&w, 1, 1, Patience::Forever);
                w.done(1);
                c
            })
        };
        let second = {
            let w = w.clone();
            thread::spawn(move || {
                w.wait_grant(2);
                let c = call(&w, 2, 2, Patience::Forever);
                w.done(2);
                c
            })
        };
        let callee = {
            let w = w.clone();
            thread::spawn(move || serve(&w, Life::Lives))
        };
        // The engine hands the callee to holder 2 once lease 1 is over.
        if !revoke(&w, 1) {
            wait_lease_end(&w, 1);
        }
        w.over(1);
        w.grant(2);
        let one = first.join().unwrap();
        let two = second.join().unwrap();
        let served = callee.join().unwrap();
        check_answers(1, &[(1, one)], &served);
        check_answers(2, &[(2, two)], &served);
        assert!(matches!(two, Outcome::Answer { lease: 2, .. }));
        w.check_lease_words();
        assert_eq!(
            w.lease(2).model.lane_state(),
            ModelRegion::lane_word(2, phase::IDLE)
        );
        assert_eq!(
            w.holder(1).ring.lane_lease(0),
            0,
            "lease 1's word was cleared"
        );
    });
}

/// How far a holder gets before it dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HolderLife {
    /// Dies with the call begun, never written.
    AfterBegin,
    /// Dies with the call written into the inbound slot.
    AfterDeliver,
}

/// A holder that dies at `life` on lease 1; the engine revokes the lease as the engine does
/// for a dead holder (over unless the inbound slot holds a call of it), then hands the callee
/// to holder 2 with lease 2.
fn dead_holder(life: HolderLife) {
    check(move || {
        let w = World::new(2, &[1, 2]);
        w.grant(1);
        let first = {
            let w = w.clone();
            thread::spawn(move || {
                let region = &w.lease(1).region;
                let Some(c) = region.begin_call(0, &grant_of(1)) else {
                    return;
                };
                if life == HolderLife::AfterDeliver {
                    region.deliver_call(&c, &msg(1));
                    w.callee_bell.notify();
                }
            })
        };
        let second = {
            let w = w.clone();
            thread::spawn(move || {
                w.wait_grant(2);
                let c = call(&w, 2, 2, Patience::Forever);
                w.done(2);
                c
            })
        };
        let callee = {
            let w = w.clone();
            thread::spawn(move || serve(&w, Life::Lives))
        };
        // The engine sees holder 1's process gone: it will call no more.
        first.join().unwrap();
        w.done(1);
        let region = &w.lease(1).region;
        let found = region.revoke(1);
        let busy =
            matches!(found, Some(phase::CALLING | phase::ABANDONED)) && region.inbound_busy(1);
        if busy {
            wait_lease_end(&w, 1);
        }
        w.over(1);
        w.grant(2);
        let two = second.join().unwrap();
        let served = callee.join().unwrap();
        check_answers(2, &[(2, two)], &served);
        assert!(matches!(two, Outcome::Answer { lease: 2, .. }));
        // The dead holder's call, if the callee got it, was served on lease 1 only.
        for s in served.iter().filter(|s| s.holder == 1) {
            assert_eq!((s.tag, s.lease), (1, 1));
        }
        w.check_lease_words();
        assert_eq!(
            w.lease(2).model.lane_state(),
            ModelRegion::lane_word(2, phase::IDLE)
        );
        assert_eq!(w.lease(2).model.inbound_state(), 2 << 4);
    });
}

#[test]
fn a_dead_holders_lease_ends_and_its_callee_serves_the_next_holder() {
    // (A holder that dies after its call is answered leaves the lease as one that is
    // revoked idle: `a_callee_released_to_another_holder_has_one_writer_at_a_time`.)
    for life in [HolderLife::AfterBegin, HolderLife::AfterDeliver] {
        dead_holder(life);
    }
}
