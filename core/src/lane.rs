//! Direct-call lanes: internal calls that skip the engine on their way.
//!
//! Over the rings an internal call makes four hops (caller → engine → callee → engine →
//! caller) through three polling parties, and on a 2-vCPU machine one of them is always off
//! its CPU. A *lane* removes the engine from the path: the engine **leases** an idle worker of
//! function F (the callee) to a worker that calls F again and again (the holder); the holder
//! then writes each call straight into the callee's *inbound slot*, and the callee writes the
//! answer straight into the holder's *lane*. The engine keeps the decisions: it grants and
//! revokes leases, counts every lane call from a record the callee leaves in its own ring
//! (without ringing the engine), and answers the holder itself when the callee dies. It hands
//! each end the other's ring region as a file descriptor when it grants the lease.
//!
//! Every lease has an id (28 bits, never 0) that travels *inside* the state words: a
//! transition is a compare-and-swap of (lease, phase) together, so nothing done for one lease
//! — a late answer, a revoke, a dead callee's failure — can land on a later lease of the same
//! lane, and a callee's records name the lease they belong to.
//!
//! Layout, in a ring region (`ring.rs`):
//!
//! ```text
//! 128     inbound state: u32          lease << 4 | EMPTY / FULL / RUNNING
//! 132     inbound holder: u32         the worker this one is leased to
//! 136     inbound holder lane: u32    which of the holder's lanes
//! 132352  inbound slot (1024 bytes)   the call the holder wrote
//! 133376  LANES × (128-byte control line + 1024-byte reply slot), the lanes this worker holds
//!           0  state: u32     lease << 4 | REVOKED | phase, or 0 (UNUSED)
//!           4  function: u32  the callee's function id
//!           8  callee: u32    the callee's worker id
//!           16 timeout_ms: u32  the callee function's own timeout (0 = none)
//!           64 doorbell: u32    the waiting holder thread sleeps here (one waiter per lane)
//! ```
//!
//! **The lane state machine** (one word; the lease bits never change while a lease lasts):
//!
//! | from         | to           | by      | when                                             |
//! |--------------|--------------|---------|--------------------------------------------------|
//! | UNUSED       | IDLE         | engine  | grant (descriptor and callee fields written first) |
//! | IDLE         | CALLING      | holder  | a call starts; only then is the inbound slot written |
//! | CALLING      | REPLIED      | callee  | the answer is in the reply slot                  |
//! | CALLING      | ABANDONED    | holder  | the call's deadline passed                       |
//! | ABANDONED    | IDLE         | callee  | the late answer was dropped                      |
//! | REPLIED      | IDLE         | holder  | the answer was read                              |
//! | any          | any \| REVOKED | engine | revoke: the holder starts no new call          |
//! | REPLIED\|R   | UNUSED       | holder  | the last answer was read: the lane may be granted again |
//! | CALLING      | REPLIED\|R   | engine  | the callee died: the reply slot holds the failure |
//!
//! The callee's transition keeps the REVOKED bit it found; when it finds it, the lease ends
//! with that answer and the callee tells the engine so. A revoke that finds IDLE or REPLIED
//! ends the lease at once (the callee has nothing of the holder's). IDLE\|R and UNUSED are
//! the states in which the engine may grant the lane again.
//!
//! **Ordering.** Every state change that hands data over is a `Release` store or a CAS with
//! `AcqRel`, and the reader `Acquire`s the state before touching the slot, so the slot bytes
//! are ordered with the state like a ring slot with its counter. The inbound slot has one
//! writer at a time by construction: only the holder of a lane in CALLING writes it, and the
//! callee marks it EMPTY before it publishes REPLIED. The protocol's rights are tokens: a
//! [`LaneCall`] (from [`SharedRing::begin_lane_call`]) is what lets a holder write a callee's
//! inbound slot, an [`InboundCall`] (from [`SharedRing::take_inbound`]) what lets a callee
//! answer into a holder's lane.
//!
//! `core/tests/loom_lane.rs` runs these operations under loom for holder, callee and engine
//! threads (answers taken once and only if delivered, abandoned answers dropped, revokes,
//! dead callees, later leases left alone, one writer per slot), and the `ring_words` fuzz
//! target runs them over words a peer scribbled.

use std::sync::atomic::Ordering;

use crate::bell::Bell;
use crate::protocol::{used_len, MESSAGE_SIZE};
use crate::region::{Region, SharedWord};
use crate::ring::{load_message, SharedRing, INBOUND_CONTROL, RINGS_END};

/// Lanes a worker can hold at once (one per function it calls often).
pub const LANES: usize = 8;
/// Lease ids are 28 bits: the largest one (the engine wraps to 1 after it).
pub const MAX_LEASE: u32 = (1 << 28) - 1;

pub(crate) const INBOUND_STATE: usize = INBOUND_CONTROL;
pub(crate) const INBOUND_HOLDER: usize = INBOUND_CONTROL + 4;
pub(crate) const INBOUND_HOLDER_LANE: usize = INBOUND_CONTROL + 8;
pub(crate) const INBOUND_SLOT: usize = RINGS_END;
pub(crate) const LANE_BASE: usize = INBOUND_SLOT + MESSAGE_SIZE;
pub(crate) const LANE_CONTROL: usize = 128;
pub(crate) const LANE_BYTES: usize = LANE_CONTROL + MESSAGE_SIZE;
// The words of a lane's control line.
pub(crate) const LANE_STATE: usize = 0;
pub(crate) const LANE_FUNCTION: usize = 4;
pub(crate) const LANE_CALLEE: usize = 8;
pub(crate) const LANE_TIMEOUT: usize = 16;
pub(crate) const LANE_BELL: usize = 64;
/// End of the lanes area: the size of a ring region.
pub const LANES_END: usize = LANE_BASE + LANES * LANE_BYTES;

/// Lane phases (the low bits of the state word).
pub mod phase {
    #![allow(missing_docs)]
    pub const UNUSED: u32 = 0;
    pub const IDLE: u32 = 1;
    pub const CALLING: u32 = 2;
    pub const REPLIED: u32 = 3;
    pub const ABANDONED: u32 = 4;
    /// The bit the engine sets to revoke a lease.
    pub const REVOKED: u32 = 8;
    pub const MASK: u32 = 7;
}

const EMPTY: u32 = 0;
const FULL: u32 = 1;
const RUNNING: u32 = 2;
const LOW: u32 = 0xF;

fn lease_of(word: u32) -> u32 {
    word >> 4
}

fn with_lease(lease: u32, low: u32) -> u32 {
    lease << 4 | low
}

/// What the engine writes into a lane when it grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneGrant {
    /// The lease (1..=[`MAX_LEASE`]).
    pub lease: u32,
    /// The callee's function.
    pub function_id: u16,
    /// The callee's worker id.
    pub callee: u32,
    /// The callee function's own timeout in ms (0 = none).
    pub timeout_ms: u32,
}

/// Who a callee is leased to, as its inbound control says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The holder's worker id.
    pub worker: u32,
    /// Which of its lanes.
    pub lane: usize,
    /// The lease.
    pub lease: u32,
}

/// How a callee's answer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// The holder got it (false: the holder had given up on the call, or the lease is over).
    pub delivered: bool,
    /// The engine had revoked the lease (or it is over): it ends with this answer.
    pub lease_ended: bool,
}

/// A holder's call in progress on one of its lanes: the right to write the callee's inbound
/// slot once, and to take the answer.
#[derive(Debug)]
pub struct LaneCall {
    lane: usize,
    grant: LaneGrant,
}

impl LaneCall {
    /// The lane.
    pub fn lane(&self) -> usize {
        self.lane
    }
    /// What the engine granted on it.
    pub fn grant(&self) -> &LaneGrant {
        &self.grant
    }
}

/// A call a callee took from its inbound slot: the right to answer it into its holder's lane.
#[derive(Debug)]
pub struct InboundCall {
    holder: Holder,
}

impl InboundCall {
    /// Who made the call.
    pub fn holder(&self) -> Holder {
        self.holder
    }
}

impl<M: Region> SharedRing<M> {
    fn lane_word(&self, lane: usize, field: usize) -> &M::Word {
        assert!(lane < LANES, "lane {lane}");
        self.map.word(LANE_BASE + lane * LANE_BYTES + field)
    }

    fn lane_state(&self, lane: usize) -> &M::Word {
        self.lane_word(lane, LANE_STATE)
    }

    fn lane_slot(&self, lane: usize) -> usize {
        LANE_BASE + lane * LANE_BYTES + LANE_CONTROL
    }

    /// The doorbell of lane `lane` (`lane < LANES`): its holder sleeps on it, the callee (or
    /// the engine, for a dead callee) rings it after publishing the answer.
    pub fn lane_bell(&self, lane: usize) -> Bell<M> {
        assert!(lane < LANES, "lane {lane}");
        Bell::new(&self.map, LANE_BASE + lane * LANE_BYTES + LANE_BELL)
    }

    /// Changes lane `lane`'s state while it still belongs to `lease`: `next(low bits)` gives
    /// the new low bits, or `None` to leave it. Returns the low bits it changed from, or
    /// `None` when nothing changed (the lane is not `lease`'s, or `next` declined).
    fn lane_cas(&self, lane: usize, lease: u32, next: impl Fn(u32) -> Option<u32>) -> Option<u32> {
        let word = self.lane_state(lane);
        let mut s = word.load(Ordering::Acquire);
        loop {
            if lease_of(s) != lease || s == phase::UNUSED {
                return None;
            }
            let low = next(s & LOW)?;
            match word.compare_exchange(
                s,
                with_lease(lease, low),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(s & LOW),
                Err(now) => s = now,
            }
        }
    }

    // ---- engine side ------------------------------------------------------------------

    /// Whether lane `lane` of this (holder's) region may be granted.
    pub fn lane_reusable(&self, lane: usize) -> bool {
        let s = self.lane_state(lane).load(Ordering::Acquire);
        s == phase::UNUSED || s & LOW == phase::IDLE | phase::REVOKED
    }

    /// Grants lane `lane` of this (holder's) region on the callee whose region is `callee`.
    /// The lane must be reusable and the callee idle and leased to nobody.
    pub fn grant_lane(&self, lane: usize, grant: LaneGrant, holder: u32, callee: &SharedRing<M>) {
        let m = &callee.map;
        m.word(INBOUND_STATE)
            .store(with_lease(grant.lease, EMPTY), Ordering::Relaxed);
        m.word(INBOUND_HOLDER).store(holder, Ordering::Relaxed);
        m.word(INBOUND_HOLDER_LANE)
            .store(lane as u32, Ordering::Relaxed);
        self.lane_word(lane, LANE_FUNCTION)
            .store(u32::from(grant.function_id), Ordering::Relaxed);
        self.lane_word(lane, LANE_CALLEE)
            .store(grant.callee, Ordering::Relaxed);
        self.lane_word(lane, LANE_TIMEOUT)
            .store(grant.timeout_ms, Ordering::Relaxed);
        // Publishes everything above to the holder, and through its CAS and its FULL store,
        // to the callee.
        self.lane_state(lane)
            .store(with_lease(grant.lease, phase::IDLE), Ordering::Release);
    }

    /// Revokes `lease` on lane `lane`: the holder starts no new call on it. Returns the phase
    /// found — IDLE or REPLIED mean the lease is over now, CALLING or ABANDONED that it ends
    /// when the callee answers (the callee then reports it) — or `None` when the lane is not
    /// that lease's (it is over).
    pub fn revoke_lane(&self, lane: usize, lease: u32) -> Option<u32> {
        self.lane_cas(lane, lease, |low| Some(low | phase::REVOKED))
            .map(|low| low & phase::MASK)
    }

    /// Whether the callee (this region) has a call of `lease` in hand or written for it.
    pub fn inbound_busy(&self, lease: u32) -> bool {
        let s = self.map.word(INBOUND_STATE).load(Ordering::Acquire);
        lease_of(s) == lease && s & LOW != EMPTY
    }

    /// The header bytes of the last call written into this (callee's) inbound slot.
    pub fn inbound_header(&self, out: &mut [u8; MESSAGE_SIZE]) {
        self.map
            .load(INBOUND_SLOT, out, crate::protocol::HEADER_SIZE);
    }

    /// The callee of `lease` died: puts `failure` in the reply slot of lane `lane` if a call
    /// waits there, and revokes the lane either way. Returns whether a waiting call was failed.
    pub fn fail_lane(&self, lane: usize, lease: u32, failure: &[u8; MESSAGE_SIZE]) -> bool {
        let word = self.lane_state(lane);
        loop {
            let s = word.load(Ordering::Acquire);
            if lease_of(s) != lease || s == phase::UNUSED {
                return false;
            }
            let next = match s & phase::MASK {
                phase::CALLING => {
                    // In CALLING the holder does not read the slot and the callee (the only
                    // other writer) is dead.
                    self.map
                        .store(self.lane_slot(lane), failure, used_len(failure));
                    phase::REPLIED | phase::REVOKED
                }
                phase::ABANDONED => phase::IDLE | phase::REVOKED,
                _ => (s & LOW) | phase::REVOKED,
            };
            if word
                .compare_exchange(
                    s,
                    with_lease(lease, next),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return s & phase::MASK == phase::CALLING;
            }
        }
    }

    // ---- holder side (its own region) ---------------------------------------------------

    /// Starts a call on an idle lane to `function_id`: the call's token when one was taken
    /// (its phase is now CALLING), `None` when the engine must carry the call.
    pub fn begin_lane_call(&self, function_id: u16) -> Option<LaneCall> {
        for lane in 0..LANES {
            let word = self.lane_state(lane);
            let s = word.load(Ordering::Acquire);
            if s & LOW != phase::IDLE
                || self.lane_word(lane, LANE_FUNCTION).load(Ordering::Relaxed)
                    != u32::from(function_id)
            {
                continue;
            }
            let lease = lease_of(s);
            if word
                .compare_exchange(
                    s,
                    with_lease(lease, phase::CALLING),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                let grant = LaneGrant {
                    lease,
                    function_id,
                    callee: self.lane_word(lane, LANE_CALLEE).load(Ordering::Relaxed),
                    timeout_ms: self.lane_word(lane, LANE_TIMEOUT).load(Ordering::Relaxed),
                };
                return Some(LaneCall { lane, grant });
            }
        }
        None
    }

    /// Gives a lane back without having written the call (the callee's region could not be
    /// mapped): CALLING → IDLE, keeping a REVOKED bit (then the lane is simply done).
    pub fn cancel_lane_call(&self, call: LaneCall) {
        self.lane_cas(call.lane, call.grant.lease, |low| {
            Some(phase::IDLE | (low & phase::REVOKED))
        });
    }

    /// Whether the call still waits for its answer.
    pub fn lane_waiting(&self, call: &LaneCall) -> bool {
        let s = self.lane_state(call.lane).load(Ordering::Acquire);
        lease_of(s) == call.grant.lease && s & phase::MASK == phase::CALLING
    }

    /// Gives up on the call (deadline): `true` when abandoned, `false` when the answer came
    /// first (read it with [`SharedRing::take_lane_reply`]).
    pub fn abandon_lane_call(&self, call: &LaneCall) -> bool {
        self.lane_cas(call.lane, call.grant.lease, |low| {
            (low & phase::MASK == phase::CALLING)
                .then_some(phase::ABANDONED | (low & phase::REVOKED))
        })
        .is_some()
    }

    /// Copies the answer out of the call's lane (its phase is REPLIED) and frees the lane:
    /// IDLE for the next call, or UNUSED (grantable again) when the lease was revoked.
    pub fn take_lane_reply(&self, call: LaneCall, out: &mut [u8; MESSAGE_SIZE]) {
        // REPLIED was acquired by `lane_waiting` returning false: the writer finished the
        // slot and nobody writes it again before this holder changes the phase below.
        load_message(&*self.map, self.lane_slot(call.lane), out);
        let lease = call.grant.lease;
        let word = self.lane_state(call.lane);
        let mut s = word.load(Ordering::Acquire);
        loop {
            if lease_of(s) != lease || s & phase::MASK != phase::REPLIED {
                return;
            }
            let next = if s & phase::REVOKED != 0 {
                phase::UNUSED
            } else {
                with_lease(lease, phase::IDLE)
            };
            match word.compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    // ---- holder side, on the callee's region --------------------------------------------

    /// Writes `msg` into this (callee's) inbound slot and marks it FULL: the call of `call`.
    pub fn deliver_call(&self, call: &LaneCall, msg: &[u8; MESSAGE_SIZE]) {
        // The slot is EMPTY: the callee empties it before publishing the previous answer, and
        // the lane's CALLING phase makes this holder its only writer.
        self.map.store(INBOUND_SLOT, msg, used_len(msg));
        self.map
            .word(INBOUND_STATE)
            .store(with_lease(call.grant.lease, FULL), Ordering::Release);
    }

    // ---- callee side (its own region) ---------------------------------------------------

    /// Whether the holder wrote a call into this (callee's) inbound slot.
    pub fn inbound_full(&self) -> bool {
        self.map.word(INBOUND_STATE).load(Ordering::Acquire) & LOW == FULL
    }

    /// Takes the call from this (callee's) inbound slot (FULL → RUNNING): its token, or
    /// `None` when the slot is not full.
    pub fn take_inbound(&self, out: &mut [u8; MESSAGE_SIZE]) -> Option<InboundCall> {
        let state = self.map.word(INBOUND_STATE);
        let s = state.load(Ordering::Acquire);
        if s & LOW != FULL {
            return None;
        }
        // FULL was acquired: the holder finished writing and writes no more until this
        // callee publishes its answer.
        load_message(&*self.map, INBOUND_SLOT, out);
        state.store(with_lease(lease_of(s), RUNNING), Ordering::Release);
        let m = &self.map;
        Some(InboundCall {
            holder: Holder {
                worker: m.word(INBOUND_HOLDER).load(Ordering::Acquire),
                lane: m.word(INBOUND_HOLDER_LANE).load(Ordering::Acquire) as usize % LANES,
                lease: lease_of(s),
            },
        })
    }

    /// Marks this (callee's) inbound slot EMPTY: done with the holder's call. Must come before
    /// the answer is published in the holder's lane.
    pub fn finish_inbound(&self, call: &InboundCall) {
        self.map
            .word(INBOUND_STATE)
            .store(with_lease(call.holder.lease, EMPTY), Ordering::Release);
    }

    // ---- callee side, on the holder's region --------------------------------------------

    /// Publishes `answer` to the call of `call` in this (holder's) region's lane (the callee
    /// called [`SharedRing::finish_inbound`] on its own region first).
    pub fn answer_lane(&self, call: InboundCall, answer: &[u8; MESSAGE_SIZE]) -> Answered {
        let (lane, lease) = (call.holder.lane, call.holder.lease);
        let word = self.lane_state(lane);
        let s = word.load(Ordering::Acquire);
        if lease_of(s) == lease && s & phase::MASK == phase::CALLING {
            // In CALLING only this callee writes the slot and the holder does not read it; if
            // the holder abandons meanwhile it never reads these bytes.
            self.map
                .store(self.lane_slot(lane), answer, used_len(answer));
        }
        let found = self.lane_cas(lane, lease, |low| {
            let revoked = low & phase::REVOKED;
            match low & phase::MASK {
                phase::CALLING => Some(phase::REPLIED | revoked),
                phase::ABANDONED => Some(phase::IDLE | revoked),
                _ => None,
            }
        });
        match found {
            Some(low) => Answered {
                delivered: low & phase::MASK == phase::CALLING,
                lease_ended: low & phase::REVOKED != 0,
            },
            // Not a call of this lease (any more): the lane is left alone.
            None => Answered {
                delivered: false,
                lease_ended: true,
            },
        }
    }
}

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;
