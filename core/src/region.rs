//! The memory the lock-free protocols run over, as two small traits.
//!
//! The doorbell protocol ([`crate::bell`]) and the lane state machine ([`crate::lane`]) touch
//! their regions (a doorbell region, a ring region's lease words, a lease region) only
//! through 32-bit atomic words, a fence, the futex calls and word-by-word copies of message
//! slots. [`Region`] and [`SharedWord`] name exactly those operations, so
//! the same protocol code runs over real shared memory ([`SharedMap`], whose word is the
//! standard [`AtomicU32`]) and, in the `loom` models (`core/tests/loom_*.rs`, built with
//! `--cfg loom`), over a model of it whose every operation the model checker sees.
//!
//! For [`SharedMap`] every method is an `#[inline(always)]` forward to the operation the
//! protocol code called before these traits existed: after monomorphisation the production
//! path is the same code.

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::Duration;

use crate::shared_map::SharedMap;

/// A 32-bit word of shared memory: the atomic operations the protocols use on it, and the
/// futex calls of a doorbell.
pub trait SharedWord {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, value: u32, order: Ordering);
    /// Atomic swap; returns the previous value.
    fn swap(&self, value: u32, order: Ordering) -> u32;
    /// Atomic compare-and-swap; `Ok(previous)` when it stored `new`, else `Err(current)`.
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// Sleeps while the word holds `expected` (checked atomically with going to sleep), until
    /// [`SharedWord::futex_wake`] or `timeout`; may return early (spurious wake-ups).
    fn futex_wait(&self, expected: u32, timeout: Duration);
    /// Wakes every thread sleeping in [`SharedWord::futex_wait`] on this word.
    fn futex_wake(&self);
}

/// A ring region's memory: its words, copies of its message slots, and the fence that orders
/// its accesses.
pub trait Region {
    /// The type of one 32-bit word.
    type Word: SharedWord;
    /// The word at `offset` (a multiple of 4 inside the region).
    ///
    /// # Panics
    /// When `offset` is not a word of the region (offsets are the layout's constants).
    fn word(&self, offset: usize) -> &Self::Word;
    /// Copies `len` bytes (rounded up to whole 8-byte words, at most `out.len()`) from
    /// `offset` into `out`; see [`SharedMap::load`].
    fn load(&self, offset: usize, out: &mut [u8], len: usize);
    /// Copies the first `len` bytes of `data` (rounded up to whole 8-byte words, at most
    /// `data.len()`) to `offset`; see [`SharedMap::store`].
    fn store(&self, offset: usize, data: &[u8], len: usize);
    /// A memory fence of the same memory model as the words' operations.
    fn fence(&self, order: Ordering);
}

impl SharedWord for AtomicU32 {
    #[inline(always)]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    #[inline(always)]
    fn store(&self, value: u32, order: Ordering) {
        AtomicU32::store(self, value, order)
    }
    #[inline(always)]
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, value, order)
    }
    #[inline(always)]
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }
    fn futex_wait(&self, expected: u32, timeout: Duration) {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `self` is a valid, aligned u32 in a shared mapping that outlives the call;
        // the timeout pointer is valid for the call. Errors (EAGAIN: the word changed, EINTR,
        // ETIMEDOUT) all mean "poll again", so the result is ignored.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0,
            );
        }
    }
    fn futex_wake(&self) {
        // SAFETY: `self` is a valid, aligned u32 in a shared mapping; waking has no other
        // effect.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
                0,
                0,
                0,
            );
        }
    }
}

impl Region for SharedMap {
    type Word = AtomicU32;
    #[inline(always)]
    fn word(&self, offset: usize) -> &AtomicU32 {
        SharedMap::word(self, offset)
    }
    #[inline(always)]
    fn load(&self, offset: usize, out: &mut [u8], len: usize) {
        SharedMap::load(self, offset, out, len)
    }
    #[inline(always)]
    fn store(&self, offset: usize, data: &[u8], len: usize) {
        SharedMap::store(self, offset, data, len)
    }
    #[inline(always)]
    fn fence(&self, order: Ordering) {
        fence(order)
    }
}
