//! The engine side of the ring transport: one link per worker and one poller thread.
//!
//! The poller thread reads every worker's worker → engine ring. While calls are in flight it
//! keeps polling (with yields), since the next message is coming soon and waking a sleeping
//! thread on this kind of machine costs ~20 µs; 20 µs after the last message (or 1 ms into an
//! in-flight call with no message) it sleeps on the engine's doorbell, which any worker rings
//! after publishing — but only when the poller announced it sleeps (notification suppression).
//! An idle engine therefore uses no CPU. The records callees leave of direct-lane calls are
//! read but awaited by nobody: they do not count as messages for staying awake, and callees
//! ring for them only every half ring.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use gloam_core::ipc_root::IpcPaths;
use gloam_core::protocol::{self, offset, MESSAGE_SIZE};
use gloam_core::ring::{self, Bell, Consumer, Producer, RingFile, SharedMap};

use crate::engine::Engine;

/// Polling after the last message before sleeping.
const LINGER: Duration = Duration::from_micros(20);
/// Polling while calls are in flight but no message comes.
const IN_FLIGHT_SPIN: Duration = Duration::from_millis(1);
/// The poller wakes at least this often (new links, shutdown).
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// Messages taken from one ring per pass, so that one busy worker does not starve the rest.
const BATCH: usize = 16;

/// What one pass over a ring handled.
#[derive(Debug, Default, Clone, Copy)]
struct Drained {
    messages: usize,
    /// Messages somebody waits on (all but the records of lane calls).
    urgent: usize,
}

/// Whether `msg` is the record of a call that ran on a direct lane: counted by the engine,
/// awaited by nobody, so it does not keep the poller polling.
fn is_lane_record(msg: &[u8; MESSAGE_SIZE]) -> bool {
    let flags = u16::from_le_bytes([msg[offset::FLAGS], msg[offset::FLAGS + 1]]);
    flags & protocol::flags::LANE != 0
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One worker's ring file, as the engine holds it.
pub struct RingLink {
    worker: u32,
    file: RingFile,
    tx: Mutex<Producer>,
    rx: Mutex<Consumer>,
    worker_bell: Bell,
    closed: AtomicBool,
    kick: tokio::sync::Notify,
}

impl std::fmt::Debug for RingLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingLink")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl RingLink {
    /// Creates worker `worker`'s ring file.
    pub fn create(paths: &IpcPaths, worker: u32) -> gloam_core::Result<RingLink> {
        let file = RingFile::create(&paths.ring_file(worker))?;
        // Tells this file from an earlier one of the same (recycled) worker id.
        file.set_nonce((gloam_core::clock::now_ns() as u32).wrapping_mul(2_654_435_761) | 1);
        Ok(RingLink {
            worker,
            tx: Mutex::new(file.to_worker_producer()),
            rx: Mutex::new(file.to_engine_consumer()),
            worker_bell: file.worker_bell(),
            file,
            closed: AtomicBool::new(false),
            kick: tokio::sync::Notify::new(),
        })
    }

    /// Sends one message to the worker and rings its bell if it sleeps. A worker holds at
    /// most one call plus the replies to its own internal calls, so a full ring means a stuck
    /// or dying worker: after a bounded wait the message is dropped (its call then ends by
    /// deadline or by the worker's disconnection).
    pub fn send(&self, msg: &[u8; MESSAGE_SIZE]) -> bool {
        let pushed = {
            let mut tx = lock(&self.tx);
            let start = Instant::now();
            loop {
                if tx.try_push(msg) {
                    break true;
                }
                if self.closed.load(Ordering::Acquire)
                    || start.elapsed() > Duration::from_millis(50)
                {
                    break false;
                }
                self.worker_bell.notify();
                std::thread::yield_now();
            }
        };
        self.worker_bell.notify();
        if !pushed {
            tracing::warn!(
                worker = self.worker,
                "worker's ring stayed full; message dropped"
            );
        }
        pushed
    }

    /// Handles every message waiting in the worker → engine ring (at most `limit`).
    fn drain(&self, engine: &Engine, limit: usize) -> Result<Drained, String> {
        let mut rx = lock(&self.rx);
        let mut buf = [0u8; MESSAGE_SIZE];
        let mut got = Drained::default();
        while got.messages < limit && rx.try_pop(&mut buf) {
            got.messages += 1;
            if !is_lane_record(&buf) {
                got.urgent += 1;
            }
            engine
                .on_worker_message(self.worker, &buf)
                .map_err(|e| format!("sent a malformed message: {e}"))?;
        }
        Ok(got)
    }

    /// The worker's ring file (its lanes and inbound slot).
    pub fn file(&self) -> &RingFile {
        &self.file
    }

    /// Resolves once the engine dropped this link (its task then closes the worker's socket).
    pub async fn kicked(&self) {
        self.kick.notified().await
    }

    fn has_message(&self) -> bool {
        lock(&self.rx).has_message()
    }
}

/// The poller: the set of live ring links and the engine's doorbell.
pub struct RingPoller {
    links: Mutex<Vec<Arc<RingLink>>>,
    generation: AtomicU64,
    bell: Bell,
    in_flight: AtomicUsize,
    stop: AtomicBool,
}

impl RingPoller {
    /// Creates the engine's doorbell file.
    pub fn new(paths: &IpcPaths) -> gloam_core::Result<Arc<RingPoller>> {
        let map = Arc::new(SharedMap::create(
            &paths.engine_bell(),
            ring::BELL_FILE_BYTES,
        )?);
        Ok(Arc::new(RingPoller {
            links: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            bell: Bell::new(&map, 0),
            in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }))
    }

    /// Starts watching `link`.
    pub fn add(&self, link: Arc<RingLink>) {
        lock(&self.links).push(link);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.bell.force_wake();
    }

    /// Stops watching worker `worker`'s link and handles what it left in its ring.
    pub fn remove(&self, engine: &Engine, worker: u32) -> Result<(), String> {
        let link = {
            let mut links = lock(&self.links);
            let at = links.iter().position(|l| l.worker == worker);
            at.map(|i| links.swap_remove(i))
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        match link {
            Some(link) => {
                link.closed.store(true, Ordering::Release);
                link.kick.notify_one();
                link.drain(engine, usize::MAX).map(|_| ())
            }
            None => Ok(()),
        }
    }

    /// Handles every message waiting in every ring now, from the calling thread (the tallies
    /// of lane calls are not rung for; status and metrics read them first).
    pub fn drain_all(&self, engine: &Engine) {
        self.pass(engine, usize::MAX);
    }

    /// One pass over every ring from the calling thread (an I/O thread waiting for an
    /// external call's answer polls the rings itself).
    pub fn poll_once(&self, engine: &Engine) {
        self.pass(engine, BATCH);
    }

    /// Handles up to `limit` waiting messages of each ring; disconnects workers that sent
    /// malformed ones (after releasing the list, which disconnecting changes).
    fn pass(&self, engine: &Engine, limit: usize) {
        let mut bad = Vec::new();
        {
            let links = lock(&self.links);
            for link in links.iter().filter(|l| l.has_message()) {
                if let Err(reason) = link.drain(engine, limit) {
                    bad.push((link.worker, reason));
                }
            }
        }
        for (worker, reason) in bad {
            engine.disconnect_worker(worker, &reason);
        }
    }

    /// Takes the poller's doorbell over while it sleeps, so that workers publishing messages
    /// do not wake it: the caller polls the rings itself meanwhile and must call
    /// [`RingPoller::release`] when it stops. `false`: the poller was awake; nothing held.
    pub fn hold(&self) -> bool {
        self.bell.take_over()
    }

    /// Gives the doorbell back to the sleeping poller, and wakes it if a message came that
    /// nobody rang for.
    pub fn release(&self) {
        self.bell.prepare_sleep();
        if lock(&self.links).iter().any(|l| l.has_message()) {
            self.bell.force_wake();
        }
    }

    /// Tells the poller how many calls are in flight (it polls while some are).
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n, Ordering::Relaxed);
    }

    /// Ends the poller thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.bell.force_wake();
    }

    /// Runs the poller on a thread of its own until [`RingPoller::stop`].
    pub fn spawn(self: &Arc<Self>, engine: Weak<Engine>) -> std::io::Result<()> {
        let poller = self.clone();
        std::thread::Builder::new()
            .name("gloam-rings".into())
            .spawn(move || poller.run(engine))
            .map(|_| ())
    }

    fn run(&self, engine: Weak<Engine>) {
        let mut links: Vec<Arc<RingLink>> = Vec::new();
        let mut seen_generation = u64::MAX;
        let mut last_progress = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let generation = self.generation.load(Ordering::Acquire);
            if generation != seen_generation {
                links = lock(&self.links).clone();
                seen_generation = generation;
            }
            let mut got = Drained::default();
            let mut bad = Vec::new();
            for link in &links {
                match link.drain(&engine, BATCH) {
                    Ok(d) => {
                        got.messages += d.messages;
                        got.urgent += d.urgent;
                    }
                    Err(reason) => bad.push((link.worker, reason)),
                }
            }
            for (worker, reason) in bad {
                engine.disconnect_worker(worker, &reason);
            }
            drop(engine);
            if got.urgent > 0 {
                last_progress = Instant::now();
            }
            if got.messages > 0 {
                continue;
            }
            let idle_for = last_progress.elapsed();
            let budget = if self.in_flight.load(Ordering::Relaxed) > 0 {
                IN_FLIGHT_SPIN
            } else {
                LINGER
            };
            let any = || links.iter().any(|l| l.has_message());
            if idle_for < budget
                && ring::spin_until(budget - idle_for, || {
                    any()
                        || self.generation.load(Ordering::Acquire) != seen_generation
                        || self.stop.load(Ordering::Acquire)
                })
            {
                continue;
            }
            self.bell.prepare_sleep();
            if any()
                || self.generation.load(Ordering::Acquire) != seen_generation
                || self.stop.load(Ordering::Acquire)
            {
                self.bell.cancel_sleep();
                continue;
            }
            self.bell.sleep(MAX_SLEEP);
        }
    }
}
