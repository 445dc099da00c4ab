//! The parties of the lane models (`core/tests/loom_lane.rs`): the shared memory of a callee,
//! its holders and their leases, and the holder, callee and engine operations as the workers
//! and the engine run them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gloam_core::bell::Bell;
use gloam_core::lane::{phase, Answered, Holder as LeaseHolder, LaneGrant, LeaseRegion};
use gloam_core::model::ModelRegion;
use gloam_core::protocol::{offset, Header, Kind, Message, MESSAGE_SIZE};
use gloam_core::ring::{SharedRing, BELL};
use loom::sync::atomic::{AtomicBool, AtomicU32};
use loom::sync::{Condvar, Mutex};

pub const F: u16 = 7;
pub const CALLEE: u32 = 2;
/// Tag of the engine's failure for a dead callee's call.
pub const FAILURE: u32 = 999;
/// An answer's tag is its call's plus this.
pub const ANSWER: u32 = 100;

/// Runs `f` under loom with the preemption bound of `LOOM_MAX_PREEMPTIONS` (default 2).
pub fn check(f: impl Fn() + Sync + Send + 'static) {
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
pub fn msg(tag: u32) -> [u8; MESSAGE_SIZE] {
    let mut h = Header::new(Kind::Dispatch);
    h.sequence = tag;
    Message::new(h).to_bytes()
}

pub fn tag_of(bytes: &[u8; MESSAGE_SIZE]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset::SEQUENCE..offset::SEQUENCE + 4]);
    u32::from_le_bytes(b)
}

/// What the engine grants as lease `lease` (what both ends learn from its `LEASE` message).
pub fn grant_of(lease: u32) -> LaneGrant {
    LaneGrant {
        lease,
        function_id: F,
        callee: CALLEE,
        timeout_ms: 0,
    }
}

/// A holder: the lease words of its ring region, lane 0 modelled.
pub struct Holder {
    pub ring: SharedRing<ModelRegion>,
    pub done: AtomicBool,
}

impl Holder {
    pub fn new() -> Holder {
        Holder {
            ring: SharedRing::over(Arc::new(ModelRegion::ring(1))),
            done: AtomicBool::new(false),
        }
    }
}

/// One lease: its region (made up front, untouched until the engine grants it) and its holder.
pub struct Lease {
    pub id: u32,
    pub holder: u32,
    pub model: Arc<ModelRegion>,
    pub region: LeaseRegion<ModelRegion>,
}

impl Lease {
    /// The lease is over for its holder: its lane state is UNUSED, or still this lease's and
    /// revoked (the holder has not taken the last answer yet); never another lease's.
    pub fn assert_ended(&self) {
        let s = self.model.lane_state();
        assert!(
            s == phase::UNUSED || (s >> 4 == self.id && s & phase::REVOKED != 0),
            "lease {}: lane state {s:#x}",
            self.id
        );
    }
}

/// The parties' shared memory: holders' ring regions, the callee's, the leases' regions, the
/// callee's doorbell, and the callee's records.
pub struct World {
    pub holders: Vec<Holder>,
    /// Lease `n` is `leases[n - 1]`.
    pub leases: Vec<Lease>,
    pub callee_ring: SharedRing<ModelRegion>,
    pub callee_bell: Bell<ModelRegion>,
    /// The lease of the callee's last `LANE_END` record (0: none yet): the record "ring".
    pub lease_end: AtomicU32,
    /// The engine's doorbell (the callee rings it after a `LANE_END` record).
    pub engine_bell: Bell<ModelRegion>,
    /// Leases granted so far (a test-only signal for holders that wait for a grant).
    pub granted: Mutex<u32>,
    pub grants: Condvar,
}

impl World {
    /// `holders` holders; lease `n` (from 1) goes to holder `lease_holders[n - 1]`.
    pub fn new(holders: u32, lease_holders: &[u32]) -> Arc<World> {
        Arc::new(World {
            holders: (1..=holders).map(|_| Holder::new()).collect(),
            leases: lease_holders
                .iter()
                .enumerate()
                .map(|(i, &holder)| {
                    let model = Arc::new(ModelRegion::lease());
                    Lease {
                        id: i as u32 + 1,
                        holder,
                        region: LeaseRegion::over(model.clone()),
                        model,
                    }
                })
                .collect(),
            callee_ring: SharedRing::over(Arc::new(ModelRegion::ring(0))),
            callee_bell: Bell::new(&Arc::new(ModelRegion::bell()), BELL),
            lease_end: AtomicU32::new(0),
            engine_bell: Bell::new(&Arc::new(ModelRegion::bell()), BELL),
            granted: Mutex::new(0),
            grants: Condvar::new(),
        })
    }

    /// Holder `holder` makes no more calls (and tells the callee, which may sleep).
    pub fn done(&self, holder: u32) {
        self.holder(holder).done.store(true, Ordering::Release);
        self.callee_bell.notify();
    }

    /// Blocks until the engine granted `lease` (test-only signal).
    pub fn wait_grant(&self, lease: u32) {
        let mut g = self.granted.lock().unwrap();
        while *g < lease {
            g = self.grants.wait(g).unwrap();
        }
    }

    pub fn holder(&self, id: u32) -> &Holder {
        &self.holders[(id - 1) as usize]
    }

    /// Lease `id`, as the worker that sees it published maps it (from its socket).
    pub fn lease(&self, id: u32) -> &Lease {
        &self.leases[(id - 1) as usize]
    }

    /// The engine grants `lease` (`engine/src/lanes.rs::grant`): writes its region, then
    /// publishes it in the callee's ring region, then in its holder's lane 0.
    pub fn grant(&self, lease: u32) {
        let l = self.lease(lease);
        l.region.grant(&grant_of(lease), l.holder, 0);
        self.callee_ring.publish_inbound(lease);
        self.holder(l.holder).ring.publish_lane(0, lease);
        *self.granted.lock().unwrap() = lease;
        self.grants.notify_all();
    }

    /// The engine's end of `lease` (`lanes::over`): clears the words that still name it.
    pub fn over(&self, lease: u32) {
        let l = self.lease(lease);
        self.holder(l.holder).ring.clear_lane(0, lease);
        self.callee_ring.clear_inbound(lease);
    }

    /// Every lease region's state words name that lease (or no lease): nothing done for one
    /// lease changed another's words.
    pub fn check_lease_words(&self) {
        for l in &self.leases {
            let (lane, inbound) = l.model.lease_words();
            for word in [lane, inbound] {
                assert!(
                    word == 0 || word >> 4 == l.id,
                    "lease {}'s region holds {word:#x}",
                    l.id
                );
            }
        }
    }
}

/// How a holder's call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No lane for the function (the engine would carry the call).
    NoLane,
    /// The answer taken: its tag, and the call's lease.
    Answer { tag: u32, lease: u32 },
    /// Given up on at the deadline.
    Abandoned { lease: u32 },
}

/// When a holder gives up.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// Waits for the answer (no deadline).
    Forever,
    /// Gives up at its first look that finds no answer.
    None,
}

/// A holder's call `tag` on its lane 0: `RingChannel::lane_call` and `wait_lane` (the lease
/// read from its ring region, its region as mapped from the socket).
pub fn call(w: &World, holder: u32, tag: u32, patience: Patience) -> Outcome {
    let h = w.holder(holder);
    let lease = h.ring.lane_lease(0);
    if lease == 0 {
        return Outcome::NoLane;
    }
    let region = &w.lease(lease).region;
    let Some(call) = region.begin_call(0, &grant_of(lease)) else {
        return Outcome::NoLane;
    };
    assert_eq!(call.lane(), 0);
    region.deliver_call(&call, &msg(tag));
    w.callee_bell.notify();
    let bell = region.lane_bell();
    loop {
        if !region.waiting(&call) {
            let mut out = [0u8; MESSAGE_SIZE];
            region.take_reply(call, &mut out);
            return Outcome::Answer {
                tag: tag_of(&out),
                lease,
            };
        }
        if let Patience::None = patience {
            if region.abandon(&call) {
                return Outcome::Abandoned { lease };
            }
            continue;
        }
        // `wait_lane`'s sleep (its spin budget spent).
        bell.prepare_sleep();
        if !region.waiting(&call) {
            bell.cancel_sleep();
            continue;
        }
        bell.sleep(Duration::from_secs(1));
    }
}

/// A call the callee served.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub holder: u32,
    pub tag: u32,
    pub lease: u32,
    pub answered: Answered,
}

/// How far a callee gets before it dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Life {
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

/// Whether a call waits in the inbound slot of the lease the callee's ring region names
/// (`RingChannel::inbound_pending`).
fn inbound_pending(w: &World) -> bool {
    let lease = w.callee_ring.inbound_lease();
    lease != 0 && w.lease(lease).region.inbound_full(lease)
}

/// The callee: `recv_spin`'s inbound check and `answer_lane`, until every holder is done.
pub fn serve(w: &World, life: Life) -> Vec<Served> {
    let mut served = Vec::new();
    if life == Life::DiesAtOnce {
        return served;
    }
    loop {
        let mut buf = [0u8; MESSAGE_SIZE];
        let lease = w.callee_ring.inbound_lease();
        let taken = (lease != 0).then(|| w.lease(lease)).and_then(|l| {
            let holder = LeaseHolder {
                worker: l.holder,
                lane: 0,
                lease,
            };
            Some((l, l.region.take_inbound(holder, &mut buf)?))
        });
        if let Some((l, inbound)) = taken {
            let from = inbound.holder();
            let tag = tag_of(&buf);
            if life == Life::DiesAfterTake {
                return served;
            }
            l.region.finish_inbound(&inbound);
            if life == Life::DiesAfterFinish {
                return served;
            }
            let answered = l.region.answer(inbound, &msg(tag + ANSWER));
            if answered.delivered {
                l.region.lane_bell().notify();
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
            || !inbound_pending(w) && w.holders.iter().all(|h| h.done.load(Ordering::Acquire));
        if idle() {
            return served;
        }
        // `recv_spin`'s sleep.
        w.callee_bell.prepare_sleep();
        if inbound_pending(w) || idle() {
            w.callee_bell.cancel_sleep();
            continue;
        }
        w.callee_bell.sleep(Duration::from_secs(1));
    }
}

/// The engine's revoke (`engine/src/lanes.rs::revoke`, the holder alive): `true` when the
/// lease is over now, `false` when the callee's record will end it.
pub fn revoke(w: &World, lease: u32) -> bool {
    let region = &w.lease(lease).region;
    let found = region.revoke(lease);
    let over = !matches!(found, Some(phase::CALLING | phase::ABANDONED));
    if over {
        // The callee has no call of the lease in hand: its inbound slot is empty for it.
        assert!(
            !region.inbound_busy(lease),
            "revoke judged lease {lease} over ({found:?}) with its call in the callee's hands"
        );
    }
    over
}

/// Waits for the callee's `LANE_END` record of `lease` (the engine's poller sleep).
pub fn wait_lease_end(w: &World, lease: u32) {
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
pub fn check_answers(holder: u32, calls: &[(u32, Outcome)], served: &[Served]) {
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
