//! Direct-call lanes: internal calls that skip the engine on their way.
//!
//! Over the rings an internal call makes four hops (caller → engine → callee → engine →
//! caller) through three polling parties, and on a 2-vCPU machine one of them is always off
//! its CPU. A *lane* removes the engine from the path: the engine **leases** an idle worker of
//! function F (the callee) to a worker that calls F again and again (the holder); the holder
//! then writes each call straight into the lease's *inbound slot*, and the callee writes the
//! answer straight into the lease's *reply slot*. The engine keeps the decisions: it grants and
//! revokes leases, counts every lane call from a record the callee leaves in its own ring
//! (without ringing the engine), and answers the holder itself when the callee dies.
//!
//! **Per-lease memory.** Each lease has a region of its own, a [`LeaseRegion`]: a sealed memfd
//! of one page that the engine creates at the grant and sends to both ends (a `LEASE` message
//! with its descriptor on the engine socket; the holder also gets the callee's doorbell region
//! so that it can wake it). Then the engine publishes the lease in the ends' own ring regions:
//! `inbound lease` in the callee's, `lane lease[lane]` in the holder's (see `ring.rs`). A
//! worker that sees a lease id it has not mapped yet reads its socket for it (once per lease,
//! never per call). When the lease is over the engine clears the two words (if they still name
//! that lease) and drops its mapping. A holder thus reaches nothing of its callee but the
//! lease's region and its doorbell, and a callee nothing of its holder but the lease's region:
//! garbage either writes there costs only that lease.
//!
//! Every lease has an id (28 bits, never 0) that travels *inside* the state words: a
//! transition is a compare-and-swap of (lease, phase) together, so nothing done for one lease
//! — a late answer, a revoke, a dead callee's failure — can land on another lease, and a
//! callee's records name the lease they belong to. The ends act on what the engine told them
//! in the `LEASE` message (function, callee, holder, lane, timeout); the copies of those in the
//! region are for the engine and for reading, and a peer may overwrite them.
//!
//! Layout of a lease region ([`LEASE_FILE_BYTES`]):
//!
//! ```text
//! 0     lane state: u32       lease << 4 | REVOKED | phase, or 0 (UNUSED)
//! 4     function: u32         the callee's function id
//! 8     callee: u32           the callee's worker id
//! 12    timeout_ms: u32       the callee function's own timeout (0 = none)
//! 16    holder: u32           the holder's worker id
//! 20    lane: u32             which of the holder's lanes
//! 64    lane doorbell: u32    the waiting holder thread sleeps here (one waiter)
//! 128   inbound state: u32    lease << 4 | EMPTY / FULL / RUNNING
//! 256   reply slot (1024)     the answer the callee (or the engine, for a dead callee) wrote
//! 1280  inbound slot (1024)   the call the holder wrote
//! 2304  free, to the end of the page
//! ```
//!
//! **The lane state machine** (one word; the lease bits never change while a lease lasts):
//!
//! | from         | to           | by      | when                                             |
//! |--------------|--------------|---------|--------------------------------------------------|
//! | UNUSED       | IDLE         | engine  | grant (the other fields written first)           |
//! | IDLE         | CALLING      | holder  | a call starts; only then is the inbound slot written |
//! | CALLING      | REPLIED      | callee  | the answer is in the reply slot                  |
//! | CALLING      | ABANDONED    | holder  | the call's deadline passed                       |
//! | ABANDONED    | IDLE         | callee  | the late answer was dropped                      |
//! | REPLIED      | IDLE         | holder  | the answer was read                              |
//! | any          | any \| REVOKED | engine | revoke: the holder starts no new call          |
//! | REPLIED\|R   | UNUSED       | holder  | the last answer was read: the lease is done      |
//! | CALLING      | REPLIED\|R   | engine  | the callee died: the reply slot holds the failure |
//!
//! The callee's transition keeps the REVOKED bit it found; when it finds it, the lease ends
//! with that answer and the callee tells the engine so. A revoke that finds IDLE or REPLIED
//! ends the lease at once (the callee has nothing of the holder's). A lane is never granted
//! twice: the holder's next lease on the same lane has a new region.
//!
//! **Ordering.** Every state change that hands data over is a `Release` store or a CAS with
//! `AcqRel`, and the reader `Acquire`s the state before touching the slot, so the slot bytes
//! are ordered with the state like a ring slot with its counter. The engine writes the region
//! before it sends it and publishes the lease words with `Release` after that; the ends read
//! them with `Acquire`. The engine publishes the callee's word before the holder's, so a
//! callee woken by its holder's first call finds its lease published. The inbound slot has one
//! writer at a time by construction: only the holder of the lane in CALLING writes it, and the
//! callee marks it EMPTY before it publishes REPLIED. The protocol's rights are tokens: a
//! [`LaneCall`] (from [`LeaseRegion::begin_call`]) is what lets a holder write the inbound
//! slot, an [`InboundCall`] (from [`LeaseRegion::take_inbound`]) what lets a callee answer.
//!
//! `core/tests/loom_lane.rs` runs these operations under loom for holder, callee and engine
//! threads (answers taken once and only if delivered, abandoned answers dropped, revokes,
//! dead callees, later leases left alone, one writer per slot), and the `ring_words` fuzz
//! target runs them over words a peer scribbled.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::bell::Bell;
use crate::error::Result;
use crate::protocol::{used_len, MESSAGE_SIZE};
use crate::region::{Region, SharedWord};
use crate::ring::{load_message, SharedRing, LEASE_WORDS};
use crate::shared_map::SharedMap;

/// Lanes a worker can hold at once (one per function it calls often).
pub const LANES: usize = 8;
/// Lease ids are 28 bits: the largest one (the engine wraps to 1 after it).
pub const MAX_LEASE: u32 = (1 << 28) - 1;
/// Size of a lease region: one page.
pub const LEASE_FILE_BYTES: usize = 4096;

// The lease words of a ring region.
pub(crate) const INBOUND_LEASE: usize = LEASE_WORDS;
pub(crate) const LANE_LEASE: usize = LEASE_WORDS + 4;
// The words and slots of a lease region.
pub(crate) const LANE_STATE: usize = 0;
pub(crate) const LANE_FUNCTION: usize = 4;
pub(crate) const LANE_CALLEE: usize = 8;
pub(crate) const LANE_TIMEOUT: usize = 12;
pub(crate) const LANE_HOLDER: usize = 16;
pub(crate) const LANE_INDEX: usize = 20;
pub(crate) const LANE_BELL: usize = 64;
pub(crate) const INBOUND_STATE: usize = 128;
pub(crate) const REPLY_SLOT: usize = 256;
pub(crate) const INBOUND_SLOT: usize = REPLY_SLOT + MESSAGE_SIZE;
// Both slots fit in the page.
const _: () = assert!(INBOUND_SLOT + MESSAGE_SIZE <= LEASE_FILE_BYTES);

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

/// Inbound phases (the low bits of the inbound state word).
pub mod inbound {
    #![allow(missing_docs)]
    pub const EMPTY: u32 = 0;
    pub const FULL: u32 = 1;
    pub const RUNNING: u32 = 2;
}

const LOW: u32 = 0xF;

fn lease_of(word: u32) -> u32 {
    word >> 4
}

fn with_lease(lease: u32, low: u32) -> u32 {
    lease << 4 | low
}

/// What the engine grants: the lease and its callee, as both ends learn it from the `LEASE`
/// message.
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

/// Who holds a lease: the holder's side of the `LEASE` message.
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

/// A holder's call in progress on a lease: the right to write the inbound slot once, and to
/// take the answer.
#[derive(Debug)]
pub struct LaneCall {
    lane: usize,
    grant: LaneGrant,
}

impl LaneCall {
    /// The holder's lane.
    pub fn lane(&self) -> usize {
        self.lane
    }
    /// What the engine granted on it.
    pub fn grant(&self) -> &LaneGrant {
        &self.grant
    }
}

/// A call a callee took from the inbound slot: the right to answer it.
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

/// One lease's region (see the module docs). `Clone`: every clone maps the same memory.
///
/// Generic over the memory only so that the `loom` model runs this very code (see
/// [`crate::region`]); everything else uses the default, shared memory.
pub struct LeaseRegion<M: Region = SharedMap> {
    map: Arc<M>,
}

impl<M: Region> Clone for LeaseRegion<M> {
    fn clone(&self) -> LeaseRegion<M> {
        LeaseRegion {
            map: self.map.clone(),
        }
    }
}

impl<M: Region> std::fmt::Debug for LeaseRegion<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseRegion").finish_non_exhaustive()
    }
}

impl LeaseRegion {
    /// Creates a lease region as a sealed memfd named `name` (engine side); returns it and
    /// the descriptor to send to both ends.
    pub fn create_sealed(name: &str) -> Result<(LeaseRegion, OwnedFd)> {
        let (map, fd) = SharedMap::create_sealed(name, LEASE_FILE_BYTES)?;
        Ok((LeaseRegion { map: Arc::new(map) }, fd))
    }

    /// Maps a lease region received as `fd` (worker side).
    pub fn from_fd(fd: &OwnedFd) -> Result<LeaseRegion> {
        Ok(LeaseRegion {
            map: Arc::new(SharedMap::from_fd(fd, LEASE_FILE_BYTES, "lease region")?),
        })
    }

    /// A lease region over memory this process already holds, e.g. a
    /// [`SharedMap::on_heap`] for tests, Miri and fuzz targets.
    pub fn from_map(map: Arc<SharedMap>) -> Result<LeaseRegion> {
        if map.len() < LEASE_FILE_BYTES {
            return Err(crate::Error::Internal(format!(
                "a lease region needs {LEASE_FILE_BYTES} bytes, the map has {}",
                map.len()
            )));
        }
        Ok(LeaseRegion { map })
    }
}

impl<M: Region> LeaseRegion<M> {
    /// The lease region in `map` (a model of one, in the `loom` tests).
    pub fn over(map: Arc<M>) -> LeaseRegion<M> {
        LeaseRegion { map }
    }

    fn word(&self, offset: usize) -> &M::Word {
        self.map.word(offset)
    }

    /// The lane's doorbell: the waiting holder sleeps on it, the callee (or the engine, for a
    /// dead callee) rings it after publishing the answer.
    pub fn lane_bell(&self) -> Bell<M> {
        Bell::new(&self.map, LANE_BELL)
    }

    /// Changes the lane state while it belongs to `lease`: `next(low bits)` gives the new low
    /// bits, or `None` to leave it. Returns the low bits it changed from, or `None` when
    /// nothing changed (the state is not `lease`'s, or `next` declined).
    fn lane_cas(&self, lease: u32, next: impl Fn(u32) -> Option<u32>) -> Option<u32> {
        let word = self.word(LANE_STATE);
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

    /// Writes `grant` into this (new) region for `holder`'s lane `lane`: the fields, the
    /// inbound slot EMPTY and the lane IDLE, all of lease `grant.lease`.
    pub fn grant(&self, grant: &LaneGrant, holder: u32, lane: usize) {
        let fields = [
            (LANE_FUNCTION, u32::from(grant.function_id)),
            (LANE_CALLEE, grant.callee),
            (LANE_TIMEOUT, grant.timeout_ms),
            (LANE_HOLDER, holder),
            (LANE_INDEX, lane as u32),
        ];
        for (at, value) in fields {
            self.word(at).store(value, Ordering::Relaxed);
        }
        self.word(INBOUND_STATE)
            .store(with_lease(grant.lease, inbound::EMPTY), Ordering::Relaxed);
        // Publishes everything above with the state (the engine also sends the region and
        // publishes the lease words only after this).
        self.word(LANE_STATE)
            .store(with_lease(grant.lease, phase::IDLE), Ordering::Release);
    }

    /// Revokes `lease`: the holder starts no new call on it. Returns the phase found — IDLE
    /// or REPLIED mean the lease is over now, CALLING or ABANDONED that it ends when the callee
    /// answers (the callee then reports it) — or `None` when the state is not that lease's
    /// (it is over, or a peer scribbled on it).
    pub fn revoke(&self, lease: u32) -> Option<u32> {
        self.lane_cas(lease, |low| Some(low | phase::REVOKED))
            .map(|low| low & phase::MASK)
    }

    /// Whether the callee has a call of `lease` in hand or written for it.
    pub fn inbound_busy(&self, lease: u32) -> bool {
        let s = self.word(INBOUND_STATE).load(Ordering::Acquire);
        lease_of(s) == lease && s & LOW != inbound::EMPTY
    }

    /// The header bytes of the last call written into the inbound slot.
    pub fn inbound_header(&self, out: &mut [u8; MESSAGE_SIZE]) {
        self.map
            .load(INBOUND_SLOT, out, crate::protocol::HEADER_SIZE);
    }

    /// The callee of `lease` died: puts `failure` in the reply slot if a call waits there,
    /// and revokes the lane either way. Returns whether a waiting call was failed.
    pub fn fail(&self, lease: u32, failure: &[u8; MESSAGE_SIZE]) -> bool {
        let word = self.word(LANE_STATE);
        loop {
            let s = word.load(Ordering::Acquire);
            if lease_of(s) != lease || s == phase::UNUSED {
                return false;
            }
            let next = match s & phase::MASK {
                phase::CALLING => {
                    // In CALLING the holder does not read the slot and the callee (the only
                    // other writer) is dead.
                    self.map.store(REPLY_SLOT, failure, used_len(failure));
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

    // ---- holder side ----------------------------------------------------------------------

    /// Starts a call on this lease, granted as `grant` on the holder's lane `lane`: the call's
    /// token when the lane was idle (its phase is now CALLING), `None` when the engine must
    /// carry the call.
    pub fn begin_call(&self, lane: usize, grant: &LaneGrant) -> Option<LaneCall> {
        let word = self.word(LANE_STATE);
        let idle = with_lease(grant.lease, phase::IDLE);
        word.compare_exchange(
            idle,
            with_lease(grant.lease, phase::CALLING),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .ok()?;
        Some(LaneCall {
            lane,
            grant: *grant,
        })
    }

    /// Whether the call still waits for its answer.
    pub fn waiting(&self, call: &LaneCall) -> bool {
        let s = self.word(LANE_STATE).load(Ordering::Acquire);
        lease_of(s) == call.grant.lease && s & phase::MASK == phase::CALLING
    }

    /// Gives up on the call (deadline): `true` when abandoned, `false` when the answer came
    /// first (read it with [`LeaseRegion::take_reply`]).
    pub fn abandon(&self, call: &LaneCall) -> bool {
        self.lane_cas(call.grant.lease, |low| {
            (low & phase::MASK == phase::CALLING)
                .then_some(phase::ABANDONED | (low & phase::REVOKED))
        })
        .is_some()
    }

    /// Copies the answer out of the reply slot (the phase is REPLIED, or a peer scribbled on
    /// the state: then `out` is whatever the slot holds, and the caller decodes it as
    /// untrusted) and frees the lane: IDLE for the next call, or UNUSED when the lease was
    /// revoked.
    pub fn take_reply(&self, call: LaneCall, out: &mut [u8; MESSAGE_SIZE]) {
        // REPLIED was acquired by `waiting` returning false: the writer finished the slot and
        // nobody writes it again before this holder changes the phase below.
        load_message(&*self.map, REPLY_SLOT, out);
        let lease = call.grant.lease;
        let word = self.word(LANE_STATE);
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

    /// Writes `msg` into the inbound slot and marks it FULL: the call of `call`.
    pub fn deliver_call(&self, call: &LaneCall, msg: &[u8; MESSAGE_SIZE]) {
        // The slot is EMPTY: the callee empties it before publishing the previous answer, and
        // the lane's CALLING phase makes this holder its only writer.
        self.map.store(INBOUND_SLOT, msg, used_len(msg));
        self.word(INBOUND_STATE).store(
            with_lease(call.grant.lease, inbound::FULL),
            Ordering::Release,
        );
    }

    // ---- callee side ----------------------------------------------------------------------

    /// Whether the holder wrote a call of `lease` into the inbound slot.
    pub fn inbound_full(&self, lease: u32) -> bool {
        self.word(INBOUND_STATE).load(Ordering::Acquire) == with_lease(lease, inbound::FULL)
    }

    /// Takes the call of `holder.lease` from the inbound slot (FULL → RUNNING): its token,
    /// or `None` when the slot holds no call of that lease. `holder` is what the engine said
    /// about the lease.
    pub fn take_inbound(
        &self,
        holder: Holder,
        out: &mut [u8; MESSAGE_SIZE],
    ) -> Option<InboundCall> {
        let state = self.word(INBOUND_STATE);
        if state.load(Ordering::Acquire) != with_lease(holder.lease, inbound::FULL) {
            return None;
        }
        // FULL was acquired: the holder finished writing and writes no more until this
        // callee publishes its answer.
        load_message(&*self.map, INBOUND_SLOT, out);
        state.store(
            with_lease(holder.lease, inbound::RUNNING),
            Ordering::Release,
        );
        Some(InboundCall { holder })
    }

    /// Marks the inbound slot EMPTY: done with the holder's call. Must come before the answer
    /// is published.
    pub fn finish_inbound(&self, call: &InboundCall) {
        self.word(INBOUND_STATE).store(
            with_lease(call.holder.lease, inbound::EMPTY),
            Ordering::Release,
        );
    }

    /// Publishes `answer` to the call of `call` (the callee called
    /// [`LeaseRegion::finish_inbound`] first).
    pub fn answer(&self, call: InboundCall, answer: &[u8; MESSAGE_SIZE]) -> Answered {
        let lease = call.holder.lease;
        let s = self.word(LANE_STATE).load(Ordering::Acquire);
        if lease_of(s) == lease && s & phase::MASK == phase::CALLING {
            // In CALLING only this callee writes the slot and the holder does not read it; if
            // the holder abandons meanwhile it never reads these bytes.
            self.map.store(REPLY_SLOT, answer, used_len(answer));
        }
        let found = self.lane_cas(lease, |low| {
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

impl<M: Region> SharedRing<M> {
    fn lane_lease_word(&self, lane: usize) -> &M::Word {
        assert!(lane < LANES, "lane {lane}");
        self.map.word(LANE_LEASE + 4 * lane)
    }

    /// The lease this worker serves as a callee, as the engine published it (0 = none).
    pub fn inbound_lease(&self) -> u32 {
        self.map.word(INBOUND_LEASE).load(Ordering::Acquire)
    }

    /// The lease on this worker's lane `lane` (`lane < LANES`), as the engine published it
    /// (0 = none).
    pub fn lane_lease(&self, lane: usize) -> u32 {
        self.lane_lease_word(lane).load(Ordering::Acquire)
    }

    /// Engine: publishes `lease` as the one this (callee's) worker serves. After the lease's
    /// region was sent, and before the holder's word.
    pub fn publish_inbound(&self, lease: u32) {
        self.map.word(INBOUND_LEASE).store(lease, Ordering::Release);
    }

    /// Engine: publishes `lease` on this (holder's) worker's lane `lane`.
    pub fn publish_lane(&self, lane: usize, lease: u32) {
        self.lane_lease_word(lane).store(lease, Ordering::Release);
    }

    /// Engine: the lease is over; clears the inbound word if it still names `lease`.
    pub fn clear_inbound(&self, lease: u32) -> bool {
        self.map
            .word(INBOUND_LEASE)
            .compare_exchange(lease, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Engine: the lease is over; clears lane `lane`'s word if it still names `lease`.
    pub fn clear_lane(&self, lane: usize, lease: u32) -> bool {
        self.lane_lease_word(lane)
            .compare_exchange(lease, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;
