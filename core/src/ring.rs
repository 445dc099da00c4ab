//! Shared-memory rings: the fast transport between the engine and a logical worker.
//!
//! Each logical worker has a *ring region* of its own (a sealed memfd the engine creates and
//! hands to that worker alone over the engine socket; see [`crate::shared_map`]): two
//! single-producer / single-consumer rings of 64 slots of 1024 bytes, one per direction, and
//! a control line of words only the engine writes, which say which direct-lane leases the
//! worker is part of (see [`crate::lane`]). No other worker ever gets a ring region that is
//! not its own, so whatever appears in a worker's rings is that worker's doing.
//!
//! Doorbells live in regions of their own, [`BellRegion`]s of one futex word: one per worker
//! (given to the worker and the engine with `WELCOME`, and to the holders of leases on the
//! worker, so that they can wake it) and one for the engine (given to every worker), so one
//! engine thread can sleep on one word while watching every ring.
//!
//! ```text
//! ring region (private to a worker and the engine)
//!   0      inbound lease: u32      the lease this worker serves as a callee (0 = none)
//!   4      lane lease: u32 × LANES the lease on each of its lanes as a holder (0 = none)
//!   128    ring engine → worker
//!   65920  ring worker → engine
//!   131712 end
//! ring (65792 bytes)
//!   0      tail: u32, written by the producer only (alone on a 128-byte line)
//!   128    head: u32, written by the consumer only (alone on a 128-byte line)
//!   256    64 slots × 1024 bytes
//! bell region (a worker's, or the engine's)
//!   0      doorbell: u32
//! ```
//!
//! The lease words are written by the engine only: it publishes a lease there after it sent
//! the lease's own region to both ends, and clears the words when the lease is over (only if
//! they still name that lease). A worker that writes them harms only itself: it would look
//! for leases it was never given.
//!
//! **Ordering.** Counters run free and wrap; slot = counter mod 64; empty when `head == tail`,
//! full when `tail − head == 64`. The producer writes a slot, then publishes it with
//! `tail.store(Release)`; the consumer reads `tail` with `Acquire`, copies the slot out, then
//! returns it with `head.store(Release)`, which orders its reads before the producer's next
//! `Acquire` of `head` — the producer never overwrites a slot still being read. Each side
//! caches the other's counter and re-reads it only when the cache says empty/full. A peer that
//! writes garbage counters can only make this side see a full or empty ring, or read a slot it
//! is rewriting: the copy is atomic word by word, and the message is decoded (and checked) from
//! the private copy.
//!
//! **One producer and one consumer per ring.** A [`RingFile`] is split once, by the side that
//! holds it ([`RingFile::into_engine_side`] or [`RingFile::into_worker_side`]), into the
//! [`Producer`] and [`Consumer`] of its two rings — neither is `Clone` — and a [`SharedRing`]
//! handle for the lease words, which only uses atomic words.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

pub use crate::bell::{
    spin_until, spin_until_with, spinning_can_pay, Bell, YIELD_DIRECT, YIELD_SHARED,
};
use crate::error::Result;
use crate::protocol::{used_len, HEADER_SIZE, MESSAGE_SIZE};
use crate::region::Region;
use crate::shared_map::SharedMap;

/// Slots per ring (a power of two).
pub const SLOTS: u32 = 64;
const LINE: usize = 128;
const RING_BYTES: usize = 2 * LINE + SLOTS as usize * MESSAGE_SIZE;
/// Offset of the lease words in a ring region (see [`crate::lane`]): the inbound lease, then
/// one lease per lane.
pub const LEASE_WORDS: usize = 0;
/// Offset of the engine → worker ring.
pub const TO_WORKER: usize = LINE;
/// Offset of the worker → engine ring.
pub const TO_ENGINE: usize = TO_WORKER + RING_BYTES;
/// End of the two rings: the size of a ring region.
pub const RINGS_END: usize = TO_ENGINE + RING_BYTES;
/// Size of a ring region.
pub const RING_FILE_BYTES: usize = RINGS_END;
/// Offset of the doorbell in a bell region.
pub const BELL: usize = 0;
/// Size of a bell region (a worker's or the engine's doorbell).
pub const BELL_FILE_BYTES: usize = LINE;

/// A ring inside a shared mapping (keeps the mapping alive).
struct RingRef {
    map: Arc<SharedMap>,
    offset: usize,
}

impl RingRef {
    fn tail(&self) -> &AtomicU32 {
        self.map.word(self.offset)
    }
    fn head(&self) -> &AtomicU32 {
        self.map.word(self.offset + LINE)
    }
    fn slot(&self, counter: u32) -> usize {
        self.offset + 2 * LINE + (counter % SLOTS) as usize * MESSAGE_SIZE
    }
}

/// The producing end of a ring. Not `Clone`, not `Sync`: one producer per ring (callers wrap
/// it in a lock when several threads send).
pub struct Producer {
    ring: RingRef,
    tail: u32,
    cached_head: u32,
}

impl Producer {
    fn new(map: &Arc<SharedMap>, offset: usize) -> Producer {
        let ring = RingRef {
            map: map.clone(),
            offset,
        };
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
        self.ring
            .map
            .store(self.ring.slot(self.tail), msg, used_len(msg));
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail().store(self.tail, Ordering::Release);
        true
    }
}

/// The consuming end of a ring. Not `Clone`, not `Sync`: one consumer per ring.
pub struct Consumer {
    ring: RingRef,
    head: u32,
    cached_tail: u32,
}

impl Consumer {
    fn new(map: &Arc<SharedMap>, offset: usize) -> Consumer {
        let ring = RingRef {
            map: map.clone(),
            offset,
        };
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
        load_message(&*self.ring.map, self.ring.slot(self.head), out);
        self.head = self.head.wrapping_add(1);
        self.ring.head().store(self.head, Ordering::Release);
        true
    }
}

/// Copies the meaningful part of the message at `offset` (header first, then as much inline
/// payload as the copied header says) into `out`; the rest of `out` is left as it was.
pub(crate) fn load_message<M: Region>(map: &M, offset: usize, out: &mut [u8; MESSAGE_SIZE]) {
    map.load(offset, out, HEADER_SIZE);
    let len = used_len(out);
    map.load(
        offset + HEADER_SIZE,
        &mut out[HEADER_SIZE..],
        len - HEADER_SIZE,
    );
}

/// A logical worker's ring region, mapped and not split yet.
#[derive(Debug)]
pub struct RingFile {
    map: Arc<SharedMap>,
}

impl RingFile {
    /// Creates a worker's ring region as a sealed memfd (engine side); returns it and the
    /// descriptor to hand to the worker.
    pub fn create_sealed(name: &str) -> Result<(RingFile, OwnedFd)> {
        let (map, fd) = SharedMap::create_sealed(name, RING_FILE_BYTES)?;
        Ok((RingFile { map: Arc::new(map) }, fd))
    }

    /// Maps a ring region received as `fd` (worker side).
    pub fn from_fd(fd: &OwnedFd) -> Result<RingFile> {
        Ok(RingFile {
            map: Arc::new(SharedMap::from_fd(fd, RING_FILE_BYTES, "ring region")?),
        })
    }

    /// Creates a ring file at `path` (tests and benchmarks).
    pub fn create(path: &Path) -> Result<RingFile> {
        Ok(RingFile {
            map: Arc::new(SharedMap::create(path, RING_FILE_BYTES)?),
        })
    }

    /// Maps the ring file at `path` (tests and benchmarks).
    pub fn open(path: &Path) -> Result<RingFile> {
        Ok(RingFile {
            map: Arc::new(SharedMap::open(path, RING_FILE_BYTES)?),
        })
    }

    /// A ring region over memory this process already holds, e.g. a
    /// [`SharedMap::on_heap`] for tests, Miri and fuzz targets, where both ends live in one
    /// process (call it once per side with clones of `map`).
    pub fn from_map(map: Arc<SharedMap>) -> Result<RingFile> {
        if map.len() < RING_FILE_BYTES {
            return Err(crate::Error::Internal(format!(
                "a ring region needs {RING_FILE_BYTES} bytes, the map has {}",
                map.len()
            )));
        }
        Ok(RingFile { map })
    }

    /// Sets both rings' counters to `value` (tests: exercise the u32 wrap-around); only
    /// before the region is split.
    #[doc(hidden)]
    pub fn preset_counters(&self, value: u32) {
        for ring in [TO_WORKER, TO_ENGINE] {
            self.map.word(ring).store(value, Ordering::SeqCst);
            self.map.word(ring + LINE).store(value, Ordering::SeqCst);
        }
    }

    /// The engine's ends: the producer of the engine → worker ring, the consumer of the
    /// worker → engine ring, and the lease words.
    pub fn into_engine_side(self) -> (Producer, Consumer, SharedRing) {
        (
            Producer::new(&self.map, TO_WORKER),
            Consumer::new(&self.map, TO_ENGINE),
            SharedRing { map: self.map },
        )
    }

    /// The worker's ends: the producer of the worker → engine ring, the consumer of the
    /// engine → worker ring, and the lease words.
    pub fn into_worker_side(self) -> (Producer, Consumer, SharedRing) {
        (
            Producer::new(&self.map, TO_ENGINE),
            Consumer::new(&self.map, TO_WORKER),
            SharedRing { map: self.map },
        )
    }
}

/// The lease words of a ring region (see [`crate::lane`]): the engine publishes and clears
/// leases there, the worker reads them. `Clone`.
///
/// Generic over the memory only so that the `loom` model of the lanes runs this very code
/// (see [`crate::region`]); everything else uses the default, shared memory.
pub struct SharedRing<M: Region = SharedMap> {
    pub(crate) map: Arc<M>,
}

impl<M: Region> Clone for SharedRing<M> {
    fn clone(&self) -> SharedRing<M> {
        SharedRing {
            map: self.map.clone(),
        }
    }
}

impl<M: Region> std::fmt::Debug for SharedRing<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRing").finish_non_exhaustive()
    }
}

impl<M: Region> SharedRing<M> {
    /// The lease words of the ring region in `map` (a model of one, in the `loom` tests;
    /// real regions come from [`RingFile`]).
    pub fn over(map: Arc<M>) -> SharedRing<M> {
        SharedRing { map }
    }
}

/// A doorbell's region: one futex word in a sealed memfd of its own ([`BELL_FILE_BYTES`]).
/// Each worker has one (its holders get it to wake it), and so has the engine.
#[derive(Debug, Clone)]
pub struct BellRegion {
    map: Arc<SharedMap>,
}

impl BellRegion {
    /// Creates one as a sealed memfd named `name` (engine side); returns it and the
    /// descriptor to hand out.
    pub fn create_sealed(name: &str) -> Result<(BellRegion, OwnedFd)> {
        let (map, fd) = SharedMap::create_sealed(name, BELL_FILE_BYTES)?;
        Ok((BellRegion { map: Arc::new(map) }, fd))
    }

    /// Maps a bell region received as `fd`; `what` names it in errors.
    pub fn from_fd(fd: &OwnedFd, what: &str) -> Result<BellRegion> {
        Ok(BellRegion {
            map: Arc::new(SharedMap::from_fd(fd, BELL_FILE_BYTES, what)?),
        })
    }

    /// Creates one at `path` (tests and benchmarks).
    pub fn create(path: &Path) -> Result<BellRegion> {
        Ok(BellRegion {
            map: Arc::new(SharedMap::create(path, BELL_FILE_BYTES)?),
        })
    }

    /// Maps the one at `path` (tests and benchmarks).
    pub fn open(path: &Path) -> Result<BellRegion> {
        Ok(BellRegion {
            map: Arc::new(SharedMap::open(path, BELL_FILE_BYTES)?),
        })
    }

    /// One over memory this process already holds (tests, Miri, fuzz targets).
    pub fn from_map(map: Arc<SharedMap>) -> Result<BellRegion> {
        if map.len() < BELL_FILE_BYTES {
            return Err(crate::Error::Internal(format!(
                "a bell region needs {BELL_FILE_BYTES} bytes, the map has {}",
                map.len()
            )));
        }
        Ok(BellRegion { map })
    }

    /// The doorbell.
    pub fn bell(&self) -> Bell {
        Bell::new(&self.map, BELL)
    }
}
