//! Shared-memory rings: the fast transport between the engine and a logical worker.
//!
//! One file per logical worker (`<ipc-root>/fifo/<id>.ring`, mode 0600, created by the engine,
//! mapped by both) holds two single-producer / single-consumer rings of 64 slots of 1024 bytes,
//! one per direction, and the worker's *doorbell*. The engine has one doorbell of its own
//! (`<ipc-root>/engine.bell`) for all its workers, so one thread can sleep on one word while
//! watching every ring.
//!
//! ```text
//! ring file                               engine.bell
//!   0      worker doorbell (u32)            0   engine doorbell (u32)
//!   256    ring engine → worker
//!   66048  ring worker → engine
//!   132352 direct-call lanes (see `lane.rs`)
//! ring (66048 bytes)
//!   0      tail: u32, written by the producer only (alone on a 128-byte line)
//!   128    head: u32, written by the consumer only (alone on a 128-byte line)
//!   256    64 slots × 1024 bytes
//! ```
//!
//! **Ordering.** Counters run free and wrap; slot = counter mod 64; empty when `head == tail`,
//! full when `tail − head == 64`. The producer writes a slot, then publishes it with
//! `tail.store(Release)`; the consumer reads `tail` with `Acquire`, copies the slot out, then
//! returns it with `head.store(Release)`, which orders its reads before the producer's next
//! `Acquire` of `head` — the producer never overwrites a slot still being read. Each side
//! caches the other's counter and re-reads it only when the cache says empty/full.
//!
//! **Doorbells (notification suppression).** A doorbell is `AWAKE` (0) or `SLEEPING` (1) and
//! doubles as the futex word (shared futexes: the word lives in a `MAP_SHARED` file). After
//! publishing, a producer runs `fence(SeqCst)` and reads the bell; only when it says `SLEEPING`
//! does it swap it to `AWAKE` and, if it won the swap, call `FUTEX_WAKE`. A consumer about to
//! sleep stores `SLEEPING`, runs `fence(SeqCst)`, re-checks all its rings, and only then calls
//! `FUTEX_WAIT(bell, SLEEPING)`. The two fences form the store-buffering (Dekker) pattern: either
//! the producer sees `SLEEPING` and wakes the consumer, or the consumer sees the message and does
//! not sleep. While consumers are awake, a send costs no syscall at all.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::MmapRaw;

use crate::error::{Error, Result};
use crate::protocol::{used_len, HEADER_SIZE, MESSAGE_SIZE};

/// Slots per ring (a power of two).
pub const SLOTS: u32 = 64;
const LINE: usize = 128;
const RING_BYTES: usize = 2 * LINE + SLOTS as usize * MESSAGE_SIZE;
/// Offset of the worker's doorbell in a ring file.
pub const WORKER_BELL: usize = 0;
/// Offset of the engine → worker ring.
pub const TO_WORKER: usize = 2 * LINE;
/// Offset of the worker → engine ring.
pub const TO_ENGINE: usize = TO_WORKER + RING_BYTES;
/// End of the two rings; the direct-call lanes follow (see [`crate::lane`]).
pub const RINGS_END: usize = TO_ENGINE + RING_BYTES;
/// Size of a ring file.
pub const RING_FILE_BYTES: usize = crate::lane::LANES_END;
/// Size of the engine's doorbell file.
pub const BELL_FILE_BYTES: usize = LINE;

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;

/// A shared mapping of a ring or bell file.
#[derive(Debug)]
pub struct SharedMap {
    map: MmapRaw,
}

impl SharedMap {
    /// Creates `path` (mode 0600, exclusive) with `len` zero bytes and maps it.
    pub fn create(path: &Path, len: usize) -> Result<SharedMap> {
        let _ = std::fs::remove_file(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("create ring file", path, e))?;
        file.set_len(len as u64)
            .map_err(|e| Error::io("size ring file", path, e))?;
        SharedMap::map(&file, path, len)
    }

    /// Maps an existing file of `len` bytes.
    pub fn open(path: &Path, len: usize) -> Result<SharedMap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open ring file", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat ring file", path, e))?
            .len();
        if size != len as u64 {
            return Err(Error::RemoteProtocol(format!(
                "ring file {} has {size} bytes, expected {len}",
                path.display()
            )));
        }
        SharedMap::map(&file, path, len)
    }

    fn map(file: &std::fs::File, path: &Path, len: usize) -> Result<SharedMap> {
        let map = MmapRaw::map_raw(file).map_err(|e| Error::io("map ring file", path, e))?;
        if map.len() < len {
            return Err(Error::Internal(format!(
                "mapping of {} is short",
                path.display()
            )));
        }
        Ok(SharedMap { map })
    }

    /// A pointer to `len` bytes at `offset` (checked to lie inside the mapping).
    pub(crate) fn bytes_at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset + len <= self.map.len());
        // SAFETY: the range was just checked to lie inside the mapping.
        unsafe { self.map.as_mut_ptr().add(offset) }
    }

    pub(crate) fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset + 4 <= self.map.len() && offset % 4 == 0);
        // SAFETY: the mapping is page-aligned, `offset` is a multiple of 4 within it, and every
        // process accesses this word only through atomics, so an `AtomicU32` view is sound for
        // as long as `self` (the mapping) lives.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU32) }
    }
}

/// A ring inside a shared mapping (keeps the mapping alive).
#[derive(Clone)]
struct RingRef {
    map: Arc<SharedMap>,
    offset: usize,
}

impl RingRef {
    fn new(map: &Arc<SharedMap>, offset: usize) -> RingRef {
        assert!(offset + RING_BYTES <= map.map.len());
        RingRef {
            map: map.clone(),
            offset,
        }
    }
    fn tail(&self) -> &AtomicU32 {
        self.map.word(self.offset)
    }
    fn head(&self) -> &AtomicU32 {
        self.map.word(self.offset + LINE)
    }
    fn slot(&self, counter: u32) -> *mut u8 {
        let index = (counter % SLOTS) as usize;
        // SAFETY: `index < SLOTS`, so the slot lies inside this ring, which `RingRef::new` checked
        // lies inside the mapping.
        unsafe {
            self.map
                .map
                .as_mut_ptr()
                .add(self.offset + 2 * LINE + index * MESSAGE_SIZE)
        }
    }
}

/// The producing end of a ring. Not `Sync`: one producer at a time (callers wrap it in a lock
/// when several threads send).
pub struct Producer {
    ring: RingRef,
    tail: u32,
    cached_head: u32,
}

impl Producer {
    fn new(ring: RingRef) -> Producer {
        let tail = ring.tail().load(Ordering::Acquire);
        let cached_head = ring.head().load(Ordering::Acquire);
        Producer {
            ring,
            tail,
            cached_head,
        }
    }

    /// Messages published and not yet taken, as last seen (an upper bound).
    pub fn pending(&self) -> u32 {
        self.tail.wrapping_sub(self.cached_head)
    }

    /// Copies `msg` into the next slot and publishes it; `false` when the ring is full.
    pub fn try_push(&mut self, msg: &[u8; MESSAGE_SIZE]) -> bool {
        if self.tail.wrapping_sub(self.cached_head) >= SLOTS {
            self.cached_head = self.ring.head().load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.cached_head) >= SLOTS {
                return false;
            }
        }
        // SAFETY: the slot at `tail` is free (tail − head < SLOTS) and only this producer
        // writes it until `tail` is published below.
        unsafe { copy_used(msg.as_ptr(), self.ring.slot(self.tail), used_len(msg)) };
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail().store(self.tail, Ordering::Release);
        true
    }
}

/// The consuming end of a ring. One consumer at a time.
pub struct Consumer {
    ring: RingRef,
    head: u32,
    cached_tail: u32,
}

impl Consumer {
    fn new(ring: RingRef) -> Consumer {
        let head = ring.head().load(Ordering::Acquire);
        let cached_tail = ring.tail().load(Ordering::Acquire);
        Consumer {
            ring,
            head,
            cached_tail,
        }
    }

    /// Whether a message is waiting.
    pub fn has_message(&mut self) -> bool {
        if self.head == self.cached_tail {
            self.cached_tail = self.ring.tail().load(Ordering::Acquire);
        }
        self.head != self.cached_tail
    }

    /// Copies the oldest message into `out` and frees its slot; `false` when empty.
    pub fn try_pop(&mut self, out: &mut [u8; MESSAGE_SIZE]) -> bool {
        if !self.has_message() {
            return false;
        }
        // SAFETY: the slot at `head` was published by the producer (head < tail, Acquire
        // above) and is not reused until `head` is advanced below.
        unsafe { copy_message_out(self.ring.slot(self.head), out) };
        self.head = self.head.wrapping_add(1);
        self.ring.head().store(self.head, Ordering::Release);
        true
    }
}

/// Copies the first `len` bytes of a message.
///
/// # Safety
/// `src` and `dst` must be valid for `len` bytes and not overlap.
pub(crate) unsafe fn copy_used(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len.min(MESSAGE_SIZE)) }
}

/// Copies the meaningful part of the message at `src` (header first, then as much inline
/// payload as the header says) into `out`; the rest of `out` is left as it was.
///
/// # Safety
/// `src` must be valid for [`MESSAGE_SIZE`] bytes and not be written concurrently.
pub(crate) unsafe fn copy_message_out(src: *const u8, out: &mut [u8; MESSAGE_SIZE]) {
    // SAFETY: `src` is valid for the whole message (caller), `out` is a distinct buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), HEADER_SIZE);
        let len = used_len(out);
        std::ptr::copy_nonoverlapping(
            src.add(HEADER_SIZE),
            out.as_mut_ptr().add(HEADER_SIZE),
            len - HEADER_SIZE,
        );
    }
}

/// A doorbell: the futex word a consumer sleeps on (keeps its mapping alive).
#[derive(Clone)]
pub struct Bell {
    map: Arc<SharedMap>,
    offset: usize,
}

impl Bell {
    /// The doorbell at `offset` of `map`.
    pub fn new(map: &Arc<SharedMap>, offset: usize) -> Bell {
        let _ = map.word(offset);
        Bell {
            map: map.clone(),
            offset,
        }
    }

    fn word(&self) -> &AtomicU32 {
        self.map.word(self.offset)
    }

    /// Producer side, after publishing: wakes the consumer only if it sleeps.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.word().load(Ordering::Relaxed) == SLEEPING
            && self.word().swap(AWAKE, Ordering::AcqRel) == SLEEPING
        {
            futex_wake(self.word());
        }
    }

    /// Consumer side: announces the intent to sleep. The caller must re-check its rings
    /// afterwards and call [`Bell::cancel_sleep`] if it found work, else [`Bell::sleep`].
    pub fn prepare_sleep(&self) {
        self.word().store(SLEEPING, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Consumer side: found work after `prepare_sleep`.
    pub fn cancel_sleep(&self) {
        self.word().store(AWAKE, Ordering::Relaxed);
    }

    /// Consumer side: sleeps until notified or `timeout` (spurious returns are possible).
    pub fn sleep(&self, timeout: Duration) {
        futex_wait(self.word(), SLEEPING, timeout);
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
        futex_wake(self.word());
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 in a shared mapping that outlives the call; the
    // timeout pointer is valid for the call. Errors (EAGAIN: the word changed, EINTR,
    // ETIMEDOUT) all mean "poll again", so the result is ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32 in a shared mapping; waking has no other effect.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0,
            0,
            0,
        );
    }
}

/// A logical worker's ring file, mapped: both rings, the worker's doorbell and its lanes.
#[derive(Debug, Clone)]
pub struct RingFile {
    pub(crate) map: Arc<SharedMap>,
}

impl RingFile {
    /// Creates the file (engine side).
    pub fn create(path: &Path) -> Result<RingFile> {
        Ok(RingFile {
            map: Arc::new(SharedMap::create(path, RING_FILE_BYTES)?),
        })
    }

    /// Maps an existing file (worker side).
    pub fn open(path: &Path) -> Result<RingFile> {
        Ok(RingFile {
            map: Arc::new(SharedMap::open(path, RING_FILE_BYTES)?),
        })
    }

    /// The producer of the engine → worker ring (engine side).
    pub fn to_worker_producer(&self) -> Producer {
        Producer::new(RingRef::new(&self.map, TO_WORKER))
    }
    /// The consumer of the engine → worker ring (worker side).
    pub fn to_worker_consumer(&self) -> Consumer {
        Consumer::new(RingRef::new(&self.map, TO_WORKER))
    }
    /// The producer of the worker → engine ring (worker side).
    pub fn to_engine_producer(&self) -> Producer {
        Producer::new(RingRef::new(&self.map, TO_ENGINE))
    }
    /// The consumer of the worker → engine ring (engine side).
    pub fn to_engine_consumer(&self) -> Consumer {
        Consumer::new(RingRef::new(&self.map, TO_ENGINE))
    }
    /// Sets both rings' counters to `value` (tests: exercise the u32 wrap-around). Only valid
    /// before any producer or consumer of this file exists.
    #[doc(hidden)]
    pub fn preset_counters(&self, value: u32) {
        for ring in [TO_WORKER, TO_ENGINE] {
            self.map.word(ring).store(value, Ordering::SeqCst);
            self.map.word(ring + LINE).store(value, Ordering::SeqCst);
        }
    }

    /// The worker's doorbell.
    pub fn worker_bell(&self) -> Bell {
        Bell::new(&self.map, WORKER_BELL)
    }
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
