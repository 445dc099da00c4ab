//! Doorbells and the waiting policy: how a consumer sleeps on shared memory without missing a
//! message, and how long it polls first.
//!
//! A doorbell is a 32-bit word in shared memory, `AWAKE` (0) or `SLEEPING` (1), that doubles
//! as a futex (shared futexes: the word lives in a `MAP_SHARED` mapping). After publishing, a
//! producer runs `fence(SeqCst)` and reads the bell; only when it says `SLEEPING` does it swap
//! it to `AWAKE` and, if it won the swap, call `FUTEX_WAKE`. A consumer about to sleep stores
//! `SLEEPING`, runs `fence(SeqCst)`, re-checks what it waits for, and only then calls
//! `FUTEX_WAIT(bell, SLEEPING)`. The two fences form the store-buffering (Dekker) pattern:
//! either the producer sees `SLEEPING` and wakes the consumer, or the consumer sees the message
//! and does not sleep. While consumers are awake, a send costs no syscall at all.
//!
//! `core/tests/loom_bell.rs` checks this code under loom: no lost wake-up, no wake for a sleep
//! nobody announced, and a fence-less variant that does lose one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::region::{Region, SharedWord};
use crate::shared_map::SharedMap;

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;

/// A doorbell: the futex word a consumer sleeps on (keeps its mapping alive). Generic over
/// the memory only so that the `loom` model runs this very code (see [`crate::region`]).
pub struct Bell<M: Region = SharedMap> {
    map: Arc<M>,
    offset: usize,
}

impl<M: Region> Clone for Bell<M> {
    fn clone(&self) -> Bell<M> {
        Bell {
            map: self.map.clone(),
            offset: self.offset,
        }
    }
}

impl<M: Region> std::fmt::Debug for Bell<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bell")
            .field("offset", &self.offset)
            .finish()
    }
}

impl<M: Region> Bell<M> {
    /// The doorbell at `offset` of `map`.
    ///
    /// # Panics
    /// When `offset` is not a word of `map` (offsets are the layout's constants).
    pub fn new(map: &Arc<M>, offset: usize) -> Bell<M> {
        let _ = map.word(offset);
        Bell {
            map: map.clone(),
            offset,
        }
    }

    #[inline(always)]
    fn word(&self) -> &M::Word {
        self.map.word(self.offset)
    }

    /// Producer side, after publishing: wakes the consumer only if it sleeps.
    pub fn notify(&self) {
        self.map.fence(Ordering::SeqCst);
        if self.word().load(Ordering::Relaxed) == SLEEPING
            && self.word().swap(AWAKE, Ordering::AcqRel) == SLEEPING
        {
            self.word().futex_wake();
        }
    }

    /// Consumer side: announces the intent to sleep. The caller must re-check its rings
    /// afterwards and call [`Bell::cancel_sleep`] if it found work, else [`Bell::sleep`].
    pub fn prepare_sleep(&self) {
        self.word().store(SLEEPING, Ordering::Relaxed);
        self.map.fence(Ordering::SeqCst);
    }

    /// Consumer side: found work after `prepare_sleep`.
    pub fn cancel_sleep(&self) {
        self.word().store(AWAKE, Ordering::Relaxed);
    }

    /// Consumer side: sleeps until notified or `timeout` (spurious returns are possible).
    pub fn sleep(&self, timeout: Duration) {
        self.word().futex_wait(SLEEPING, timeout);
        self.word().store(AWAKE, Ordering::Relaxed);
    }

    /// Another thread of the consumer's process takes its place while it sleeps: producers
    /// stop ringing (the word says awake) and the taker reads the rings itself. `true` when
    /// the consumer was asleep and the bell was taken; give it back with
    /// [`Bell::prepare_sleep`], then re-check the rings and [`Bell::force_wake`] if needed.
    pub fn take_over(&self) -> bool {
        self.word()
            .compare_exchange(SLEEPING, AWAKE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Wakes the consumer whatever its state (close/wake from its own process).
    pub fn force_wake(&self) {
        self.word().store(AWAKE, Ordering::SeqCst);
        self.word().futex_wake();
    }
}

/// Whether waiting by spinning can pay in this process: only when it may run on two CPUs or
/// more. Pinned to one (by affinity or a CPU quota under one core), the peer it waits for
/// cannot run while it spins, so it should sleep at once. Read once at start by whoever waits.
pub fn spinning_can_pay() -> bool {
    std::thread::available_parallelism().map_or(true, |n| n.get() >= 2)
}

/// Yield cadence of [`spin_until_with`] when a third party shares the path (a call through
/// the engine: caller, engine and callee poll on two vCPUs, and the next hop may need this
/// very core). Measured, internal calls through the engine: p50 9.3 µs yielding every 16
/// empty polls, 10–13 µs every 64.
pub const YIELD_SHARED: u32 = 16;
/// Yield cadence when only the peer is on the path (a direct lane): each side has a core, and
/// a yield only delays noticing the message. Measured, lane calls: p50 1.2–1.8 µs every 64
/// empty polls, 1.8–2.6 µs every 16.
pub const YIELD_DIRECT: u32 = 64;

/// How a waiter spends the time before sleeping: poll with a `spin_loop` hint, yield the CPU
/// every [`YIELD_SHARED`] empty polls, and read the clock every 8 polls.
pub fn spin_until(budget: Duration, ready: impl FnMut() -> bool) -> bool {
    spin_until_with(budget, YIELD_SHARED, ready)
}

/// [`spin_until`], yielding every `yield_every` empty polls.
pub fn spin_until_with(
    budget: Duration,
    yield_every: u32,
    mut ready: impl FnMut() -> bool,
) -> bool {
    if ready() {
        return true;
    }
    if budget.is_zero() {
        return false;
    }
    let start = std::time::Instant::now();
    let mut polls = 0u32;
    loop {
        std::hint::spin_loop();
        if ready() {
            return true;
        }
        polls = polls.wrapping_add(1);
        if polls % yield_every.max(1) == 0 {
            std::thread::yield_now();
        }
        if polls % 8 == 0 && start.elapsed() >= budget {
            return false;
        }
    }
}
