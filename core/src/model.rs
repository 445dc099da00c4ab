//! Models of the shared regions for the `loom` tests (built only with `--cfg loom`).
//!
//! [`ModelRegion`] implements [`Region`] with loom's primitives, so [`crate::bell::Bell`], the
//! lease words of [`crate::ring::SharedRing`] and the lane state machine of
//! [`crate::lane::LeaseRegion`] run unchanged under loom's exploration of thread interleavings
//! and of the values a relaxed or acquire load may return. A model is of one kind of region:
//! a bell region ([`ModelRegion::bell`]), the lease words of a ring region
//! ([`ModelRegion::ring`]) or a lease region ([`ModelRegion::lease`]).
//!
//! - every word the protocols use is a `loom` `AtomicU32` (a doorbell, the lease words of the
//!   first `lanes` lanes and the inbound lease, a lease region's words). The lease words of
//!   the other lanes read as 0 (no lease) without a loom operation and must never be
//!   written: the protocols run as if those lanes were never granted, at no exploration cost;
//! - a message slot (a lease region's inbound and reply slots) is one
//!   `loom::cell::UnsafeCell`: the word-by-word relaxed copies of real shared memory become
//!   accesses loom checks for *causality*. A write to a slot that is not ordered (by
//!   happens-before) with every other read and write of it fails the model, which makes
//!   "one writer at a time, and no read of a slot being written" a checked property;
//! - [`Region::fence`] is loom's `fence`;
//! - a futex is a "hash bucket" (a loom `Mutex`) and a `Condvar`: `futex_wait` reads the word
//!   under the bucket lock and returns at once if it changed (`EAGAIN`), else blocks until a
//!   `futex_wake` on the word — the kernel's semantics, without time-outs or spurious
//!   returns. A consumer that sleeps while nobody will wake it therefore blocks for good, and
//!   loom reports the deadlock: a lost wake-up fails the model. [`ModelRegion::wakes`] counts
//!   the `futex_wake` calls.

use std::sync::atomic::Ordering;
use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU32;
use loom::sync::{Condvar, Mutex};

use crate::lane::{
    phase, INBOUND_LEASE, INBOUND_SLOT, INBOUND_STATE, LANES, LANE_BELL, LANE_CALLEE,
    LANE_FUNCTION, LANE_HOLDER, LANE_INDEX, LANE_LEASE, LANE_STATE, LANE_TIMEOUT, REPLY_SLOT,
};
use crate::protocol::MESSAGE_SIZE;
use crate::region::{Region, SharedWord};
use crate::ring::BELL;

/// A word of the model: a loom atomic (with a futex when it is a doorbell), or the lease word
/// of an unmodelled lane, which reads 0 and must not be written.
#[derive(Debug)]
pub enum ModelWord {
    /// A word loom sees.
    Live {
        /// Its value.
        value: AtomicU32,
        /// The futex of a doorbell.
        futex: Option<Futex>,
    },
    /// The lease word of an unmodelled lane.
    Frozen,
}

/// The kernel side of a futex.
#[derive(Debug)]
pub struct Futex {
    bucket: Mutex<FutexState>,
    woken: Condvar,
}

#[derive(Debug, Default)]
struct FutexState {
    /// Bumped by every wake: a waiter returns when it changes.
    generation: u64,
    /// `futex_wake` calls.
    wakes: u32,
}

impl ModelWord {
    fn live(futex: bool) -> ModelWord {
        ModelWord::Live {
            value: AtomicU32::new(0),
            futex: futex.then(|| Futex {
                bucket: Mutex::new(FutexState::default()),
                woken: Condvar::new(),
            }),
        }
    }

    fn value(&self, what: &str) -> &AtomicU32 {
        match self {
            ModelWord::Live { value, .. } => value,
            ModelWord::Frozen => panic!("{what} on the lease word of an unmodelled lane"),
        }
    }

    fn futex(&self) -> &Futex {
        match self {
            ModelWord::Live { futex: Some(f), .. } => f,
            _ => panic!("a futex call on a word that is no doorbell"),
        }
    }
}

impl SharedWord for ModelWord {
    fn load(&self, order: Ordering) -> u32 {
        match self {
            ModelWord::Live { value, .. } => value.load(order),
            ModelWord::Frozen => 0,
        }
    }
    fn store(&self, v: u32, order: Ordering) {
        match self {
            // loom 0.7 lets a plain store slip between the read and the write of another
            // thread's read-modify-write of the same word (tokio-rs/loom#254 and #389; the
            // fix, loom PR #391, is not released), an order C++'s RMW atomicity forbids. On a
            // doorbell — the consumer's plain stores against the producers' `swap` — that
            // yields lost wake-ups the real protocol cannot have, so there a store is a swap
            // of the same ordering: it is placed after every RMW before it, as the language
            // requires. (A swap also reads, and may continue another thread's release
            // sequence: a happens-before edge the real code lacks, which can only make a
            // later load return a newer value.) On the other words no plain store races with
            // an RMW: the grant writes a region nobody uses yet, the inbound state has no RMW,
            // and the engine's stores and compare-and-swaps of lease words come from one
            // thread at a time (the engine's lease table is locked while it writes them).
            ModelWord::Live {
                value,
                futex: Some(_),
                ..
            } => {
                value.swap(v, order);
            }
            _ => self.value("store").store(v, order),
        }
    }
    fn swap(&self, v: u32, order: Ordering) -> u32 {
        self.value("swap").swap(v, order)
    }
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        self.value("compare_exchange")
            .compare_exchange(current, new, success, failure)
    }
    fn futex_wait(&self, expected: u32, _timeout: Duration) {
        let futex = self.futex();
        let mut st = futex.bucket.lock().unwrap_or_else(|p| p.into_inner());
        // The kernel compares under the bucket lock: a wake that comes later finds the
        // waiter, one that came earlier changed the word.
        if self.value("futex_wait").load(Ordering::SeqCst) != expected {
            return;
        }
        let generation = st.generation;
        while st.generation == generation {
            st = futex.woken.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
    fn futex_wake(&self) {
        let futex = self.futex();
        let mut st = futex.bucket.lock().unwrap_or_else(|p| p.into_inner());
        st.generation += 1;
        st.wakes += 1;
        futex.woken.notify_all();
    }
}

/// A message slot of the model.
#[derive(Debug)]
struct ModelSlot {
    start: usize,
    bytes: UnsafeCell<[u8; MESSAGE_SIZE]>,
}

/// A model of one region (see the module docs). Create it inside `loom::model`.
#[derive(Debug)]
pub struct ModelRegion {
    words: Vec<(usize, ModelWord)>,
    slots: Vec<ModelSlot>,
    /// The lease words of unmodelled lanes (a ring region's model only).
    frozen: Option<std::ops::Range<usize>>,
    frozen_word: ModelWord,
    /// Whether [`Region::fence`] is a real fence (false only in the mutant model that shows
    /// the doorbell model catches a missing fence).
    fenced: bool,
}

// SAFETY: the slots' cells are only touched through `UnsafeCell::with`/`with_mut`, and loom
// fails the model on any access that is not ordered with a write of the same cell: sharing
// the region between loom threads is what the model checks.
unsafe impl Sync for ModelRegion {}

impl ModelRegion {
    fn build(words: Vec<(usize, ModelWord)>, slots: &[usize], fenced: bool) -> ModelRegion {
        ModelRegion {
            words,
            slots: slots
                .iter()
                .map(|&start| ModelSlot {
                    start,
                    bytes: UnsafeCell::new([0; MESSAGE_SIZE]),
                })
                .collect(),
            frozen: None,
            frozen_word: ModelWord::Frozen,
            fenced,
        }
    }

    /// A bell region: its doorbell at [`BELL`].
    pub fn bell() -> ModelRegion {
        ModelRegion::build(vec![(BELL, ModelWord::live(true))], &[], true)
    }

    /// The same, with fences that do nothing: a mutant that must fail the doorbell model.
    pub fn bell_without_fences() -> ModelRegion {
        ModelRegion::build(vec![(BELL, ModelWord::live(true))], &[], false)
    }

    /// The lease words of a ring region: the inbound lease and the lease words of its first
    /// `lanes` lanes (at most [`LANES`]); the other lanes' words read 0.
    pub fn ring(lanes: usize) -> ModelRegion {
        let lanes = lanes.min(LANES);
        let mut words = vec![(INBOUND_LEASE, ModelWord::live(false))];
        for lane in 0..lanes {
            words.push((LANE_LEASE + 4 * lane, ModelWord::live(false)));
        }
        let mut region = ModelRegion::build(words, &[], true);
        region.frozen = Some(LANE_LEASE..LANE_LEASE + 4 * LANES);
        region
    }

    /// A lease region: its words, its lane doorbell, its inbound and reply slots.
    pub fn lease() -> ModelRegion {
        let mut words: Vec<(usize, ModelWord)> = [
            LANE_STATE,
            LANE_FUNCTION,
            LANE_CALLEE,
            LANE_TIMEOUT,
            LANE_HOLDER,
            LANE_INDEX,
            INBOUND_STATE,
        ]
        .into_iter()
        .map(|at| (at, ModelWord::live(false)))
        .collect();
        words.push((LANE_BELL, ModelWord::live(true)));
        ModelRegion::build(words, &[REPLY_SLOT, INBOUND_SLOT], true)
    }

    /// `futex_wake` calls made on the word at `offset` so far.
    pub fn wakes(&self, offset: usize) -> u32 {
        let futex = self.word(offset).futex();
        futex.bucket.lock().unwrap_or_else(|p| p.into_inner()).wakes
    }

    /// A lease region's lane state word (lease << 4 | low bits), read with `Acquire`.
    pub fn lane_state(&self) -> u32 {
        self.word(LANE_STATE).load(Ordering::Acquire)
    }

    /// A lease region's inbound state word (lease << 4 | EMPTY 0 / FULL 1 / RUNNING 2), read
    /// with `Acquire`.
    pub fn inbound_state(&self) -> u32 {
        self.word(INBOUND_STATE).load(Ordering::Acquire)
    }

    /// Every word of a lease region that names a lease (its two state words), read with
    /// `Acquire`: (lane state, inbound state).
    pub fn lease_words(&self) -> (u32, u32) {
        (self.lane_state(), self.inbound_state())
    }

    /// The state word a lane holds in `phase` for `lease` (phases: [`phase`]).
    pub fn lane_word(lease: u32, low: u32) -> u32 {
        if low == phase::UNUSED {
            0
        } else {
            lease << 4 | low
        }
    }

    fn slot(&self, offset: usize, words: usize) -> (&ModelSlot, usize) {
        let Some(slot) = self
            .slots
            .iter()
            .find(|s| (s.start..s.start + MESSAGE_SIZE).contains(&offset))
        else {
            panic!("no modelled slot at {offset}");
        };
        let at = offset - slot.start;
        assert!(
            at % 8 == 0 && at + 8 * words <= MESSAGE_SIZE,
            "copy at {offset}"
        );
        (slot, at)
    }
}

impl Region for ModelRegion {
    type Word = ModelWord;

    fn word(&self, offset: usize) -> &ModelWord {
        match self.words.iter().find(|(o, _)| *o == offset) {
            Some((_, w)) => w,
            None if self.frozen.as_ref().is_some_and(|f| f.contains(&offset)) => &self.frozen_word,
            None => panic!("no modelled word at {offset}"),
        }
    }

    fn load(&self, offset: usize, out: &mut [u8], len: usize) {
        let words = len.min(out.len()).div_ceil(8);
        if words == 0 {
            return;
        }
        let (slot, at) = self.slot(offset, words);
        slot.bytes.with(|bytes| {
            // SAFETY: loom checks that this read is ordered with every write of the cell.
            let bytes = unsafe { &*bytes };
            for (i, chunk) in out.chunks_mut(8).take(words).enumerate() {
                let from = at + 8 * i;
                chunk.copy_from_slice(&bytes[from..from + chunk.len()]);
            }
        });
    }

    fn fence(&self, order: Ordering) {
        if self.fenced {
            loom::sync::atomic::fence(order)
        }
    }

    fn store(&self, offset: usize, data: &[u8], len: usize) {
        let words = len.min(data.len()).div_ceil(8);
        if words == 0 {
            return;
        }
        let (slot, at) = self.slot(offset, words);
        slot.bytes.with_mut(|bytes| {
            // SAFETY: loom checks that this write is ordered with every access of the cell.
            let bytes = unsafe { &mut *bytes };
            for (i, chunk) in data.chunks(8).take(words).enumerate() {
                let from = at + 8 * i;
                bytes[from..from + chunk.len()].copy_from_slice(chunk);
            }
        });
    }
}
