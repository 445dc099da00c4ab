//! Direct-call lanes: internal calls that skip the engine on their way.
//!
//! Over the rings an internal call makes four hops (caller → engine → callee → engine →
//! caller) through three polling parties, and on a 2-vCPU machine one of them is always off
//! its CPU. A *lane* removes the engine from the path: the engine **leases** an idle worker of
//! function F (the callee) to a worker that calls F again and again (the holder); the holder
//! then writes each call straight into the callee's *inbound slot*, and the callee writes the
//! answer straight into the holder's *lane*. The engine keeps the decisions: it grants and
//! revokes leases, counts every lane call from a record the callee leaves in its own ring
//! (without ringing the engine), and answers the holder itself when the callee dies.
//!
//! Layout, after the rings of a ring file (`ring.rs`):
//!
//! ```text
//! 128     nonce: u32                 set by the engine when it creates the file
//! 132     inbound state: u32         EMPTY / FULL / RUNNING
//! 136     inbound holder: u32        the worker this one is leased to
//! 140     inbound holder lane: u32   which of the holder's lanes
//! 144     inbound holder nonce: u32  the holder's file nonce (ids are recycled)
//! 132352  inbound slot (1024 bytes)  the call the holder wrote
//! 133376  LANES × (128-byte control line + 1024-byte reply slot), the lanes this worker holds
//!           0  state: u32     UNUSED, or a phase | REVOKED
//!           4  function: u32  the callee's function id
//!           8  callee: u32    the callee's worker id
//!           12 callee nonce: u32
//!           16 timeout_ms: u32  the callee function's own timeout (0 = none)
//!           64 doorbell: u32    the waiting holder thread sleeps here (one waiter per lane:
//!                               the worker's own doorbell may have another sleeper, its
//!                               receive loop, and one sleeper's wake-up would hide the other's)
//! ```
//!
//! **The lane state machine** (one word, changed only by compare-and-swap or by its owner):
//!
//! | from         | to           | by      | when                                             |
//! |--------------|--------------|---------|--------------------------------------------------|
//! | UNUSED       | IDLE         | engine  | grant (descriptor and callee fields written first) |
//! | IDLE         | CALLING      | holder  | a call starts; only then is the inbound slot written |
//! | CALLING      | REPLIED      | callee  | the answer is in the reply slot                  |
//! | CALLING      | ABANDONED    | holder  | the call's deadline passed                       |
//! | ABANDONED    | IDLE         | callee  | the late answer was dropped                      |
//! | REPLIED      | IDLE         | holder  | the answer was read                              |
//! | any          | any \| REVOKED | engine | revoke (`fetch_or`): the holder starts no new call |
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
//! callee marks it EMPTY before it publishes REPLIED.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::protocol::{used_len, MESSAGE_SIZE};
use crate::ring::{copy_message_out, copy_used, Bell, RingFile, RINGS_END};

/// Lanes a worker can hold at once (one per function it calls often).
pub const LANES: usize = 8;

const NONCE: usize = 128;
const INBOUND_STATE: usize = 132;
const INBOUND_HOLDER: usize = 136;
const INBOUND_HOLDER_LANE: usize = 140;
const INBOUND_HOLDER_NONCE: usize = 144;
const INBOUND_SLOT: usize = RINGS_END;
const LANE_BASE: usize = INBOUND_SLOT + MESSAGE_SIZE;
const LANE_CONTROL: usize = 128;
const LANE_BELL: usize = 64;
const LANE_BYTES: usize = LANE_CONTROL + MESSAGE_SIZE;
/// End of the lanes area: the size of a ring file.
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

/// What the engine writes into a lane when it grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneGrant {
    /// The callee's function.
    pub function_id: u16,
    /// The callee's worker id.
    pub callee: u32,
    /// The callee's file nonce.
    pub callee_nonce: u32,
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
    /// Its file nonce.
    pub nonce: u32,
}

/// How a callee's answer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// The holder got it (false: the holder had given up on the call).
    pub delivered: bool,
    /// The engine had revoked the lease: it ends with this answer.
    pub lease_ended: bool,
}

impl RingFile {
    fn lane_word(&self, lane: usize, field: usize) -> &AtomicU32 {
        assert!(lane < LANES);
        self.map.word(LANE_BASE + lane * LANE_BYTES + field)
    }

    /// The doorbell of lane `lane`: its holder sleeps on it, the callee (or the engine, for a
    /// dead callee) rings it after publishing the answer.
    pub fn lane_bell(&self, lane: usize) -> Bell {
        assert!(lane < LANES);
        Bell::new(&self.map, LANE_BASE + lane * LANE_BYTES + LANE_BELL)
    }

    fn lane_slot(&self, lane: usize) -> *mut u8 {
        assert!(lane < LANES);
        self.map
            .bytes_at(LANE_BASE + lane * LANE_BYTES + LANE_CONTROL, MESSAGE_SIZE)
    }

    fn inbound_slot(&self) -> *mut u8 {
        self.map.bytes_at(INBOUND_SLOT, MESSAGE_SIZE)
    }

    /// This file's nonce (tells a recycled worker id's new file from the old one).
    pub fn nonce(&self) -> u32 {
        self.map.word(NONCE).load(Ordering::Acquire)
    }

    /// Engine side, at creation: sets the nonce.
    pub fn set_nonce(&self, nonce: u32) {
        self.map.word(NONCE).store(nonce, Ordering::Release);
    }

    // ---- engine side ------------------------------------------------------------------

    /// Whether lane `lane` of this (holder's) file may be granted.
    pub fn lane_reusable(&self, lane: usize) -> bool {
        let s = self.lane_word(lane, 0).load(Ordering::Acquire);
        s == phase::UNUSED || s == phase::IDLE | phase::REVOKED
    }

    /// Grants lane `lane` of this (holder's) file on `callee`, whose file is `callee_file`.
    /// The lane must be reusable and the callee idle and leased to nobody.
    pub fn grant_lane(&self, lane: usize, grant: LaneGrant, holder: u32, callee_file: &RingFile) {
        let m = &callee_file.map;
        m.word(INBOUND_STATE).store(EMPTY, Ordering::Relaxed);
        m.word(INBOUND_HOLDER).store(holder, Ordering::Relaxed);
        m.word(INBOUND_HOLDER_LANE)
            .store(lane as u32, Ordering::Relaxed);
        m.word(INBOUND_HOLDER_NONCE)
            .store(self.nonce(), Ordering::Relaxed);
        self.lane_word(lane, 4)
            .store(u32::from(grant.function_id), Ordering::Relaxed);
        self.lane_word(lane, 8)
            .store(grant.callee, Ordering::Relaxed);
        self.lane_word(lane, 12)
            .store(grant.callee_nonce, Ordering::Relaxed);
        self.lane_word(lane, 16)
            .store(grant.timeout_ms, Ordering::Relaxed);
        // Publishes everything above to the holder, and through its CAS and its FULL store,
        // to the callee.
        self.lane_word(lane, 0)
            .store(phase::IDLE, Ordering::Release);
    }

    /// Revokes lane `lane`: the holder starts no new call on it. Returns the phase found;
    /// IDLE, REPLIED or UNUSED mean the lease is over now, CALLING or ABANDONED that it ends
    /// when the callee answers (the callee then reports it).
    pub fn revoke_lane(&self, lane: usize) -> u32 {
        self.lane_word(lane, 0)
            .fetch_or(phase::REVOKED, Ordering::AcqRel)
            & phase::MASK
    }

    /// Whether the callee (this file) has a call from its holder in hand or written for it.
    pub fn inbound_busy(&self) -> bool {
        self.map.word(INBOUND_STATE).load(Ordering::Acquire) != EMPTY
    }

    /// The header bytes of the last call written into this (callee's) inbound slot.
    pub fn inbound_header(&self, out: &mut [u8; MESSAGE_SIZE]) {
        // SAFETY: the slot lies in the mapping; the callee is dead when the engine reads it,
        // so nobody writes it concurrently except a dying holder (bytes, not a contract).
        unsafe { std::ptr::copy_nonoverlapping(self.inbound_slot(), out.as_mut_ptr(), 64) };
    }

    /// The callee of lane `lane` died: puts `failure` in the reply slot if a call is waiting,
    /// and revokes the lane either way. Returns whether a waiting call was failed.
    pub fn fail_lane(&self, lane: usize, failure: &[u8; MESSAGE_SIZE]) -> bool {
        let word = self.lane_word(lane, 0);
        loop {
            let s = word.load(Ordering::Acquire);
            let next = match s & phase::MASK {
                phase::CALLING => {
                    // SAFETY: in CALLING the holder does not read the slot and the callee (the
                    // only other writer) is dead.
                    unsafe { copy_used(failure.as_ptr(), self.lane_slot(lane), used_len(failure)) };
                    phase::REPLIED | phase::REVOKED
                }
                phase::ABANDONED => phase::IDLE | phase::REVOKED,
                phase::UNUSED => return false,
                _ => s | phase::REVOKED,
            };
            if word
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return s & phase::MASK == phase::CALLING;
            }
        }
    }

    // ---- holder side ------------------------------------------------------------------

    /// Starts a call on an idle lane to `function_id`: `Some((lane, grant))` when one was
    /// taken (its phase is now CALLING), `None` when the engine must carry the call.
    pub fn begin_lane_call(&self, function_id: u16) -> Option<(usize, LaneGrant)> {
        for lane in 0..LANES {
            let word = self.lane_word(lane, 0);
            if word.load(Ordering::Relaxed) != phase::IDLE
                || self.lane_word(lane, 4).load(Ordering::Relaxed) != u32::from(function_id)
            {
                continue;
            }
            if word
                .compare_exchange(
                    phase::IDLE,
                    phase::CALLING,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                let grant = LaneGrant {
                    function_id,
                    callee: self.lane_word(lane, 8).load(Ordering::Relaxed),
                    callee_nonce: self.lane_word(lane, 12).load(Ordering::Relaxed),
                    timeout_ms: self.lane_word(lane, 16).load(Ordering::Relaxed),
                };
                return Some((lane, grant));
            }
        }
        None
    }

    /// Gives a lane back without having written a call (the callee's file could not be
    /// mapped): CALLING → IDLE, keeping a REVOKED bit (then the lane is simply done).
    pub fn cancel_lane_call(&self, lane: usize) {
        let word = self.lane_word(lane, 0);
        let mut s = word.load(Ordering::Acquire);
        loop {
            let next = if s & phase::REVOKED != 0 {
                phase::IDLE | phase::REVOKED
            } else {
                phase::IDLE
            };
            match word.compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    /// Writes `call` into this (callee's) inbound slot and marks it FULL. Only the holder of a
    /// lane in CALLING on this callee may call this.
    pub fn deliver_call(&self, call: &[u8; MESSAGE_SIZE]) {
        // SAFETY: the slot is EMPTY (the callee empties it before publishing the previous
        // answer, and the lane's CALLING phase makes this holder its only writer).
        unsafe { copy_used(call.as_ptr(), self.inbound_slot(), used_len(call)) };
        self.map.word(INBOUND_STATE).store(FULL, Ordering::Release);
    }

    /// Whether lane `lane` still waits for its answer.
    pub fn lane_waiting(&self, lane: usize) -> bool {
        self.lane_word(lane, 0).load(Ordering::Acquire) & phase::MASK == phase::CALLING
    }

    /// Gives up on the call in lane `lane` (deadline): `true` when abandoned, `false` when the
    /// answer came first (read it with [`RingFile::take_lane_reply`]).
    pub fn abandon_lane_call(&self, lane: usize) -> bool {
        let word = self.lane_word(lane, 0);
        let mut s = word.load(Ordering::Acquire);
        loop {
            if s & phase::MASK != phase::CALLING {
                return false;
            }
            let next = phase::ABANDONED | (s & phase::REVOKED);
            match word.compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Copies the answer out of lane `lane` (its phase is REPLIED) and frees the lane.
    pub fn take_lane_reply(&self, lane: usize, out: &mut [u8; MESSAGE_SIZE]) {
        let word = self.lane_word(lane, 0);
        let s = word.load(Ordering::Acquire);
        debug_assert_eq!(s & phase::MASK, phase::REPLIED);
        // SAFETY: REPLIED was acquired above: the writer finished the slot and nobody writes
        // it again before this holder changes the phase below.
        unsafe { copy_message_out(self.lane_slot(lane), out) };
        // Only the engine may change a REPLIED lane concurrently (adding REVOKED): retry then.
        let mut s = s;
        loop {
            let next = if s & phase::REVOKED != 0 {
                phase::UNUSED
            } else {
                phase::IDLE
            };
            match word.compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    // ---- callee side ------------------------------------------------------------------

    /// Whether the holder wrote a call into this (callee's) inbound slot.
    pub fn inbound_full(&self) -> bool {
        self.map.word(INBOUND_STATE).load(Ordering::Acquire) == FULL
    }

    /// Takes the call from this (callee's) inbound slot: FULL → RUNNING.
    pub fn take_inbound(&self, out: &mut [u8; MESSAGE_SIZE]) -> bool {
        if !self.inbound_full() {
            return false;
        }
        // SAFETY: FULL was acquired: the holder finished writing and writes no more until
        // this callee publishes its answer.
        unsafe { copy_message_out(self.inbound_slot(), out) };
        self.map
            .word(INBOUND_STATE)
            .store(RUNNING, Ordering::Release);
        true
    }

    /// Who this (callee's) lease is held by.
    pub fn holder(&self) -> Holder {
        let m = &self.map;
        Holder {
            worker: m.word(INBOUND_HOLDER).load(Ordering::Acquire),
            lane: m.word(INBOUND_HOLDER_LANE).load(Ordering::Acquire) as usize % LANES,
            nonce: m.word(INBOUND_HOLDER_NONCE).load(Ordering::Acquire),
        }
    }

    /// Marks this (callee's) inbound slot EMPTY: done with the holder's call.
    pub fn finish_inbound(&self) {
        self.map.word(INBOUND_STATE).store(EMPTY, Ordering::Release);
    }

    /// Callee side, on the holder's file: publishes `answer` in lane `lane` (the callee must
    /// have called [`RingFile::finish_inbound`] on its own file first).
    pub fn answer_lane(&self, lane: usize, answer: &[u8; MESSAGE_SIZE]) -> Answered {
        let word = self.lane_word(lane, 0);
        let mut s = word.load(Ordering::Acquire);
        if s & phase::MASK == phase::CALLING {
            // SAFETY: in CALLING only this callee writes the slot and the holder does not
            // read it; if the holder abandons meanwhile it never reads these bytes.
            unsafe { copy_used(answer.as_ptr(), self.lane_slot(lane), used_len(answer)) };
        }
        loop {
            let revoked = s & phase::REVOKED;
            let (next, delivered) = match s & phase::MASK {
                phase::CALLING => (phase::REPLIED | revoked, true),
                phase::ABANDONED => (phase::IDLE | revoked, false),
                // Not a call of ours (a stale lease): leave the lane alone.
                _ => {
                    return Answered {
                        delivered: false,
                        lease_ended: true,
                    }
                }
            };
            match word.compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Answered {
                        delivered,
                        lease_ended: revoked != 0,
                    }
                }
                Err(now) => s = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (tempfile::TempDir, RingFile, RingFile) {
        let dir = tempfile::tempdir().unwrap();
        let holder = RingFile::create(&dir.path().join("1.ring")).unwrap();
        let callee = RingFile::create(&dir.path().join("2.ring")).unwrap();
        holder.set_nonce(11);
        callee.set_nonce(22);
        (dir, holder, callee)
    }

    fn grant(holder: &RingFile, callee: &RingFile) {
        assert!(holder.lane_reusable(3));
        holder.grant_lane(
            3,
            LaneGrant {
                function_id: 7,
                callee: 2,
                callee_nonce: callee.nonce(),
                timeout_ms: 500,
            },
            1,
            callee,
        );
    }

    /// A message whose every byte counts (a full inline payload of `b`).
    fn msg(b: u8) -> [u8; MESSAGE_SIZE] {
        let h = crate::protocol::Header::new(crate::protocol::Kind::Dispatch);
        crate::protocol::Message::with_inline(h, &[b; crate::protocol::INLINE_CAPACITY])
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn a_call_goes_holder_to_callee_and_back() {
        let (_d, holder, callee) = files();
        grant(&holder, &callee);
        assert!(holder.begin_lane_call(8).is_none(), "other function");
        let (lane, g) = holder.begin_lane_call(7).unwrap();
        assert_eq!(
            (lane, g.callee, g.callee_nonce, g.timeout_ms),
            (3, 2, 22, 500)
        );
        assert!(holder.begin_lane_call(7).is_none(), "one call per lane");
        callee.deliver_call(&msg(1));
        let mut got = msg(0);
        assert!(callee.take_inbound(&mut got));
        assert_eq!(got, msg(1));
        assert!(!callee.take_inbound(&mut got));
        assert_eq!(
            callee.holder(),
            Holder {
                worker: 1,
                lane: 3,
                nonce: 11
            }
        );
        callee.finish_inbound();
        assert!(holder.lane_waiting(3));
        let a = holder.answer_lane(3, &msg(2));
        assert_eq!(
            a,
            Answered {
                delivered: true,
                lease_ended: false
            }
        );
        assert!(!holder.lane_waiting(3));
        holder.take_lane_reply(3, &mut got);
        assert_eq!(got, msg(2));
        assert!(
            holder.begin_lane_call(7).is_some(),
            "the lane is idle again"
        );
    }

    #[test]
    fn revoking_an_idle_lane_ends_the_lease_at_once() {
        let (_d, holder, callee) = files();
        grant(&holder, &callee);
        assert_eq!(holder.revoke_lane(3), phase::IDLE);
        assert!(holder.begin_lane_call(7).is_none());
        assert!(holder.lane_reusable(3));
    }

    #[test]
    fn revoking_during_a_call_ends_the_lease_with_the_answer() {
        let (_d, holder, callee) = files();
        grant(&holder, &callee);
        let (lane, _) = holder.begin_lane_call(7).unwrap();
        callee.deliver_call(&msg(1));
        assert_eq!(holder.revoke_lane(lane), phase::CALLING);
        assert!(!holder.lane_reusable(lane));
        let mut got = msg(0);
        assert!(callee.take_inbound(&mut got));
        callee.finish_inbound();
        let a = holder.answer_lane(lane, &msg(2));
        assert_eq!(
            a,
            Answered {
                delivered: true,
                lease_ended: true
            }
        );
        holder.take_lane_reply(lane, &mut got);
        assert_eq!(got, msg(2));
        assert!(holder.lane_reusable(lane));
        assert!(holder.begin_lane_call(7).is_none());
    }

    #[test]
    fn an_abandoned_call_drops_its_late_answer_and_frees_the_lane() {
        let (_d, holder, callee) = files();
        grant(&holder, &callee);
        let (lane, _) = holder.begin_lane_call(7).unwrap();
        callee.deliver_call(&msg(1));
        assert!(holder.abandon_lane_call(lane));
        assert!(
            holder.begin_lane_call(7).is_none(),
            "busy until the callee answers"
        );
        let a = holder.answer_lane(lane, &msg(2));
        assert!(!a.delivered && !a.lease_ended);
        assert!(holder.begin_lane_call(7).is_some());
    }

    #[test]
    fn a_dead_callee_fails_the_waiting_call() {
        let (_d, holder, callee) = files();
        grant(&holder, &callee);
        let (lane, _) = holder.begin_lane_call(7).unwrap();
        callee.deliver_call(&msg(1));
        assert!(holder.fail_lane(lane, &msg(9)));
        assert!(!holder.lane_waiting(lane));
        let mut got = msg(0);
        holder.take_lane_reply(lane, &mut got);
        assert_eq!(got, msg(9));
        assert!(holder.lane_reusable(lane));
        // An idle lane of a dead callee is only revoked.
        let (_d2, holder, callee) = files();
        grant(&holder, &callee);
        assert!(!holder.fail_lane(3, &msg(9)));
        assert!(holder.begin_lane_call(7).is_none());
        assert!(holder.lane_reusable(3));
    }

    #[test]
    fn a_holder_that_cannot_reach_the_callee_gives_the_lane_back() {
        let (_d, holder, callee) = files();
        grant(&holder, &callee);
        let (lane, _) = holder.begin_lane_call(7).unwrap();
        holder.cancel_lane_call(lane);
        assert!(holder.begin_lane_call(7).is_some());
    }
}
