//! Loom models of the direct-lane state machine (`core/src/lane.rs`), run on the real
//! [`SharedRing`] lane code over [`ModelRegion`]s (see `core/src/model.rs`: every state word
//! is a loom atomic, and the inbound and reply slots are loom cells, so any read or write of
//! a slot that is not ordered with a write of it fails the model).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p gloam-core --release --test loom_lane` (or
//! `ci/loom.sh`). `LOOM_MAX_PREEMPTIONS` bounds the exploration (default here: 2, about
//! 810,000 executions in 2-3 minutes on 2 busy CPUs, most of them in the two-holder models;
//! 3 takes hours).
//!
//! The parties are threads running the protocol's calls in the order the workers and the
//! engine make them, and waiting as they do, on the real doorbells: the **holder**
//! (`RingChannel::lane_call` / `wait_lane`: begin, deliver and ring the callee, look, give up
//! at its deadline or sleep on the lane's bell, take the reply), the **callee** (`recv_spin` /
//! `answer_lane`: take the inbound call, finish it, answer and ring the lane's bell, send a
//! `LANE_END` record and ring the engine when the answer says the lease ended; sleep on its
//! own bell when idle) and the **engine** (`engine/src/lanes.rs`: revoke with the lease id
//! and judge the lease over or busy, wait for the record, fail the lane of a dead callee and
//! ring its holder, grant a later lease once the lane is reusable). Records travel over a
//! loom atomic with release/acquire, as over a ring. A dead callee is a thread that stops
//! after a given step; the engine learns of its death by joining it (the kernel orders a
//! process's exit before the engine sees its socket close). The engine's rule for "over"
//! (`lanes::revoke` with the holder alive) is restated here, since it lives in the engine.
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
//! - nothing of lease N changes a lane granted to lease N+1: late revokes and failures of N
//!   return "not mine", and the final state words are those of lease N+1;
//! - the inbound slot has one writer at a time, and the reply slot too (loom's causality
//!   check on the slot cells), across leases and across holders — also when the engine
//!   ends the lease of a dead holder and hands its callee to another holder.

#![cfg(loom)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gloam_core::bell::Bell;
use gloam_core::lane::{phase, Answered, LaneGrant};
use gloam_core::model::ModelRegion;
use gloam_core::protocol::{offset, Header, Kind, Message, MESSAGE_SIZE};
use gloam_core::ring::{SharedRing, WORKER_BELL};
use loom::sync::atomic::{AtomicBool, AtomicU32};
use loom::sync::{Condvar, Mutex};
use loom::thread;

const F: u16 = 7;
const CALLEE: u32 = 2;
/// Tag of the engine's failure for a dead callee's call.
const FAILURE: u32 = 999;
/// An answer's tag is its call's plus this.
const ANSWER: u32 = 100;

/// Runs `f` under loom with the preemption bound of `LOOM_MAX_PREEMPTIONS` (default 2).
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    // An execution of these models takes more steps than loom's default allows.
    builder.max_branches = builder.max_branches.max(20_000);
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f()
    });
    eprintln!("{} executions explored", runs.load(Ordering::Relaxed));
}

/// A header-only message whose `sequence` is `tag`.
fn msg(tag: u32) -> [u8; MESSAGE_SIZE] {
    let mut h = Header::new(Kind::Dispatch);
    h.sequence = tag;
    Message::new(h).to_bytes()
}

fn tag_of(bytes: &[u8; MESSAGE_SIZE]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset::SEQUENCE..offset::SEQUENCE + 4]);
    u32::from_le_bytes(b)
}

/// A holder (worker id `id`) with lane 0 modelled.
struct Holder {
    id: u32,
    region: Arc<ModelRegion>,
    ring: SharedRing<ModelRegion>,
    done: AtomicBool,
}

impl Holder {
    fn new(id: u32) -> Holder {
        let region = Arc::new(ModelRegion::new(1));
        Holder {
            id,
            ring: SharedRing::over(region.clone()),
            region,
            done: AtomicBool::new(false),
        }
    }
}

/// The parties' shared memory: holders' regions, the callee's, and the callee's records.
struct World {
    holders: Vec<Holder>,
    callee_region: Arc<ModelRegion>,
    callee: SharedRing<ModelRegion>,
    /// The lease of the callee's last `LANE_END` record (0: none yet): the record "ring".
    lease_end: AtomicU32,
    /// The engine's doorbell (the callee rings it after a `LANE_END` record).
    engine_bell: Bell<ModelRegion>,
    /// Leases granted so far (a test-only signal for holders that wait for a grant).
    granted: Mutex<u32>,
    grants: Condvar,
}

impl World {
    fn new(holders: u32) -> Arc<World> {
        let callee_region = Arc::new(ModelRegion::new(0));
        Arc::new(World {
            holders: (1..=holders).map(Holder::new).collect(),
            callee: SharedRing::over(callee_region.clone()),
            callee_region,
            lease_end: AtomicU32::new(0),
            engine_bell: Bell::new(&Arc::new(ModelRegion::new(0)), WORKER_BELL),
            granted: Mutex::new(0),
            grants: Condvar::new(),
        })
    }

    /// Holder `holder` makes no more calls (and tells the callee, which may sleep).
    fn done(&self, holder: u32) {
        self.holder(holder).done.store(true, Ordering::Release);
        self.callee.worker_bell().notify();
    }

    /// Blocks until the engine granted `lease` (test-only signal).
    fn wait_grant(&self, lease: u32) {
        let mut g = self.granted.lock().unwrap();
        while *g < lease {
            g = self.grants.wait(g).unwrap();
        }
    }

    fn holder(&self, id: u32) -> &Holder {
        &self.holders[(id - 1) as usize]
    }

    /// The engine grants lane 0 of holder `holder` on the callee to `lease`.
    fn grant(&self, holder: u32, lease: u32) {
        let h = self.holder(holder);
        assert!(h.ring.lane_reusable(0));
        let grant = LaneGrant {
            lease,
            function_id: F,
            callee: CALLEE,
            timeout_ms: 0,
        };
        h.ring.grant_lane(0, grant, h.id, &self.callee);
        *self.granted.lock().unwrap() = lease;
        self.grants.notify_all();
    }
}

/// How a holder's call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No lane for the function (the engine would carry the call).
    NoLane,
    /// The answer taken: its tag, and the call's lease.
    Answer { tag: u32, lease: u32 },
    /// Given up on at the deadline.
    Abandoned { lease: u32 },
}

/// When a holder gives up.
#[derive(Debug, Clone, Copy)]
enum Patience {
    /// Waits for the answer (no deadline).
    Forever,
    /// Gives up at its first look that finds no answer.
    None,
}

/// A holder's call `tag` on its lane: `RingChannel::lane_call` and `wait_lane`, polling.
fn call(w: &World, holder: u32, tag: u32, patience: Patience) -> Outcome {
    let h = w.holder(holder);
    let Some(call) = h.ring.begin_lane_call(F) else {
        return Outcome::NoLane;
    };
    assert_eq!(call.lane(), 0);
    let lease = call.grant().lease;
    w.callee.deliver_call(&call, &msg(tag));
    w.callee.worker_bell().notify();
    let bell = h.ring.lane_bell(0);
    loop {
        if !h.ring.lane_waiting(&call) {
            let mut out = [0u8; MESSAGE_SIZE];
            h.ring.take_lane_reply(call, &mut out);
            return Outcome::Answer {
                tag: tag_of(&out),
                lease,
            };
        }
        if let Patience::None = patience {
            if h.ring.abandon_lane_call(&call) {
                return Outcome::Abandoned { lease };
            }
            continue;
        }
        // `wait_lane`'s sleep (its spin budget spent).
        bell.prepare_sleep();
        if !h.ring.lane_waiting(&call) {
            bell.cancel_sleep();
            continue;
        }
        bell.sleep(Duration::from_secs(1));
    }
}

/// A call the callee served.
#[derive(Debug, Clone, Copy)]
struct Served {
    holder: u32,
    tag: u32,
    lease: u32,
    answered: Answered,
}

/// How far a callee gets before it dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Life {
    /// Dies before taking its call.
    DiesAtOnce,
    /// Dies with the call taken.
    DiesAfterTake,
    /// Dies with the call finished, before answering.
    DiesAfterFinish,
    /// Answers its one call, then dies.
    DiesAfterAnswer,
    /// Serves every call until its holders are done.
    Lives,
}

/// The callee: `recv_spin`'s inbound check and `answer_lane`, until every holder is done.
fn serve(w: &World, life: Life) -> Vec<Served> {
    let mut served = Vec::new();
    if life == Life::DiesAtOnce {
        return served;
    }
    loop {
        let mut buf = [0u8; MESSAGE_SIZE];
        if let Some(inbound) = w.callee.take_inbound(&mut buf) {
            let from = inbound.holder();
            assert_eq!(from.lane, 0);
            let tag = tag_of(&buf);
            if life == Life::DiesAfterTake {
                return served;
            }
            w.callee.finish_inbound(&inbound);
            if life == Life::DiesAfterFinish {
                return served;
            }
            let answered = w
                .holder(from.worker)
                .ring
                .answer_lane(inbound, &msg(tag + ANSWER));
            if answered.delivered {
                w.holder(from.worker).ring.lane_bell(0).notify();
            }
            if answered.lease_ended {
                w.lease_end.store(from.lease, Ordering::Release);
                w.engine_bell.notify();
            }
            served.push(Served {
                holder: from.worker,
                tag,
                lease: from.lease,
                answered,
            });
            if life == Life::DiesAfterAnswer {
                return served;
            }
            continue;
        }
        let idle =
            || !w.callee.inbound_full() && w.holders.iter().all(|h| h.done.load(Ordering::Acquire));
        if idle() {
            return served;
        }
        // `recv_spin`'s sleep.
        let bell = w.callee.worker_bell();
        bell.prepare_sleep();
        if w.callee.inbound_full() || idle() {
            bell.cancel_sleep();
            continue;
        }
        bell.sleep(Duration::from_secs(1));
    }
}

/// The engine's revoke (`engine/src/lanes.rs::revoke`, the holder alive): `true` when the
/// lease is over now, `false` when the callee's record will end it.
fn revoke(w: &World, holder: u32, lease: u32) -> bool {
    let found = w.holder(holder).ring.revoke_lane(0, lease);
    let over = !matches!(found, Some(phase::CALLING | phase::ABANDONED));
    if over {
        // The callee has no call of the lease in hand: its inbound slot is empty for it.
        assert!(
            !w.callee.inbound_busy(lease),
            "revoke judged lease {lease} over ({found:?}) with its call in the callee's hands"
        );
    }
    over
}

/// Waits for the callee's `LANE_END` record of `lease` (the engine's poller sleep).
fn wait_lease_end(w: &World, lease: u32) {
    let ended = || w.lease_end.load(Ordering::Acquire) == lease;
    while !ended() {
        w.engine_bell.prepare_sleep();
        if ended() {
            w.engine_bell.cancel_sleep();
            break;
        }
        w.engine_bell.sleep(Duration::from_secs(1));
    }
}

/// Every answer a holder took is its own call's and was reported delivered by the callee
/// (once); every delivered answer was taken.
fn check_answers(holder: u32, calls: &[(u32, Outcome)], served: &[Served]) {
    for &(tag, outcome) in calls {
        let by_callee: Vec<&Served> = served
            .iter()
            .filter(|s| s.holder == holder && s.tag == tag)
            .collect();
        assert!(by_callee.len() <= 1, "call {tag} served twice");
        let delivered = by_callee.first().is_some_and(|s| s.answered.delivered);
        match outcome {
            Outcome::Answer { tag: got, lease } => {
                assert_eq!(got, tag + ANSWER, "call {tag} got another call's answer");
                assert!(delivered, "call {tag} took an answer never delivered");
                assert_eq!(by_callee[0].lease, lease);
            }
            Outcome::Abandoned { .. } => assert!(!delivered, "abandoned call {tag} delivered"),
            Outcome::NoLane => assert!(by_callee.is_empty()),
        }
    }
}

#[test]
fn a_revoke_during_traffic_ends_the_lease_and_a_later_lease_is_untouched() {
    check(|| {
        let w = World::new(1);
        w.grant(1, 1);
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
        if !revoke(&w, 1, 1) {
            wait_lease_end(&w, 1);
        }
        let granted = w.holder(1).ring.lane_reusable(0);
        if granted {
            w.grant(1, 2);
            // Late operations of lease 1 find the lane not theirs.
            assert_eq!(w.holder(1).ring.revoke_lane(0, 1), None);
            assert!(!w.holder(1).ring.fail_lane(0, 1, &msg(FAILURE)));
        }
        let calls = holder.join().unwrap();
        let served = callee.join().unwrap();
        check_answers(1, &calls, &served);
        let h = &w.holder(1).region;
        if granted {
            assert_eq!(h.lane_state(0), ModelRegion::lane_word(2, phase::IDLE));
            assert_eq!(w.callee_region.inbound_state(), 2 << 4);
        } else {
            assert!(w.holder(1).ring.lane_reusable(0), "lease 1 never ended");
            assert_eq!(w.callee_region.inbound_state(), 1 << 4);
        }
        // Only lease 2 serves calls after lease 1's revoke.
        for s in &served {
            assert!(s.lease == 2 || s.lease == 1);
        }
    });
}

#[test]
fn an_abandoned_call_is_never_delivered_and_the_lane_serves_the_next_call() {
    check(|| {
        let w = World::new(1);
        w.grant(1, 1);
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
        assert_eq!(
            w.holder(1).region.lane_state(0),
            ModelRegion::lane_word(1, phase::IDLE)
        );
    });
}

/// A callee that dies at `life` while its holder waits (`patience`): the engine fails the
/// call, then grants the lane again.
fn dead_callee(life: Life, patience: Patience) {
    check(move || {
        let w = World::new(1);
        w.grant(1, 1);
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
        let failed = w.holder(1).ring.fail_lane(0, 1, &msg(FAILURE));
        w.holder(1).ring.lane_bell(0).notify();
        let outcome = holder.join().unwrap();
        // The holder is done with lease 1: the lane may carry a new callee's lease 2, which
        // nothing of lease 1 touches.
        w.grant(1, 2);
        assert_eq!(w.holder(1).ring.revoke_lane(0, 1), None);
        assert!(!w.holder(1).ring.fail_lane(0, 1, &msg(FAILURE)));
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
        assert_eq!(
            w.holder(1).region.lane_state(0),
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
        let w = World::new(2);
        w.grant(1, 1);
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
        if !revoke(&w, 1, 1) {
            wait_lease_end(&w, 1);
        }
        w.grant(2, 2);
        let one = first.join().unwrap();
        let two = second.join().unwrap();
        let served = callee.join().unwrap();
        check_answers(1, &[(1, one)], &served);
        check_answers(2, &[(2, two)], &served);
        assert!(matches!(two, Outcome::Answer { lease: 2, .. }));
        assert_eq!(
            w.holder(2).region.lane_state(0),
            ModelRegion::lane_word(2, phase::IDLE)
        );
    });
}

/// How far a holder gets before it dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HolderLife {
    /// Dies with the call begun, never written.
    AfterBegin,
    /// Dies with the call written into the callee's slot.
    AfterDeliver,
}

/// A holder that dies at `life` on lease 1; the engine revokes the lease as the engine does
/// for a dead holder (over unless the callee's inbound slot holds a call of it), then hands
/// the callee to holder 2 with lease 2.
fn dead_holder(life: HolderLife) {
    check(move || {
        let w = World::new(2);
        w.grant(1, 1);
        let first = {
            let w = w.clone();
            thread::spawn(move || {
                let h = w.holder(1);
                let Some(c) = h.ring.begin_lane_call(F) else {
                    return;
                };
                if life == HolderLife::AfterDeliver {
                    w.callee.deliver_call(&c, &msg(1));
                    w.callee.worker_bell().notify();
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
        let found = w.holder(1).ring.revoke_lane(0, 1);
        let busy =
            matches!(found, Some(phase::CALLING | phase::ABANDONED)) && w.callee.inbound_busy(1);
        if busy {
            wait_lease_end(&w, 1);
        }
        w.grant(2, 2);
        let two = second.join().unwrap();
        let served = callee.join().unwrap();
        check_answers(2, &[(2, two)], &served);
        assert!(matches!(two, Outcome::Answer { lease: 2, .. }));
        // The dead holder's call, if the callee got it, was served on lease 1 only.
        for s in served.iter().filter(|s| s.holder == 1) {
            assert_eq!((s.tag, s.lease), (1, 1));
        }
        assert_eq!(
            w.holder(2).region.lane_state(0),
            ModelRegion::lane_word(2, phase::IDLE)
        );
        assert_eq!(w.callee_region.inbound_state(), 2 << 4);
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
