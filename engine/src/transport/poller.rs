//! The ring poller: one thread that reads every worker's worker → engine ring and flushes the
//! engine → worker backlogs.
//!
//! While calls are in flight it keeps polling (with yields), since the next message is coming
//! soon and waking a sleeping thread on this kind of machine costs ~20 µs; 20 µs after the
//! last message (or 1 ms into an in-flight call with no message) it sleeps on the engine's
//! doorbell, which any worker rings after publishing — but only when the poller announced it
//! sleeps (notification suppression). An idle engine therefore uses no CPU. The records
//! callees leave of direct-lane calls are read but awaited by nobody: they do not count as
//! messages for staying awake, and callees ring for them only every half ring.
//!
//! The thread is supervised: a panic while handling one worker's message disconnects that
//! worker (the engine keeps serving the others), and a panic anywhere else restarts the loop.
//! [`RingPoller::alive`] says whether the thread still runs (`/healthz` asks).

use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use gloam_core::ring::{self, Bell, BellRegion};

use super::ring_link::{Drained, RingLink};
use super::Inbound;
use crate::state::WorkerId;

/// Polling after the last message before sleeping.
const LINGER: Duration = Duration::from_micros(20);
/// Polling while calls are in flight but no message comes.
const IN_FLIGHT_SPIN: Duration = Duration::from_millis(1);
/// The poller wakes at least this often (new links, shutdown).
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// How soon a sleeping poller looks again at a backlog waiting for room.
const BACKLOG_RETRY: Duration = Duration::from_millis(1);
/// Messages taken from one ring per pass, so that one busy worker does not starve the rest.
const BATCH: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The set of live ring links, the engine's doorbell, and the thread that polls them.
pub struct RingPoller {
    links: Mutex<Vec<Arc<RingLink>>>,
    generation: AtomicU64,
    bell: Bell,
    bell_region: OwnedFd,
    in_flight: AtomicUsize,
    stop: AtomicBool,
    running: AtomicBool,
    restarts: AtomicU64,
    /// Whether busy polling can pay on this machine (two CPUs or more for the engine; see
    /// [`ring::spinning_can_pay`]): when not, the poller yields the CPU at every poll.
    spin: bool,
    /// Polling periods that ended with a message (the sleep and wake-up they saved)...
    spins_paid: AtomicU64,
    /// ... and those that ran out and slept anyway (CPU spent for nothing).
    spins_wasted: AtomicU64,
}

impl RingPoller {
    /// Creates the engine's doorbell (a sealed memfd each worker gets with `WELCOME`).
    pub fn new() -> gloam_core::Result<Arc<RingPoller>> {
        let (bell, bell_region) = BellRegion::create_sealed("gloam-engine-bell")?;
        Ok(Arc::new(RingPoller {
            links: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            bell: bell.bell(),
            bell_region,
            in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            running: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            spin: ring::spinning_can_pay(),
            spins_paid: AtomicU64::new(0),
            spins_wasted: AtomicU64::new(0),
        }))
    }

    /// The doorbell region's descriptor, for `WELCOME`.
    pub fn bell_region(&self) -> &OwnedFd {
        &self.bell_region
    }

    /// Starts watching `link`.
    pub fn add(&self, link: Arc<RingLink>) {
        lock(&self.links).push(link);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.bell.force_wake();
    }

    /// Stops watching worker `worker`'s link and hands what it left in its ring to `sink`.
    pub fn remove(&self, sink: &dyn Inbound, worker: WorkerId) -> Result<(), String> {
        let link = {
            let mut links = lock(&self.links);
            let at = links.iter().position(|l| l.worker() == worker);
            at.map(|i| links.swap_remove(i))
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        match link {
            Some(link) => drain_one(sink, &link, usize::MAX).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The link of worker `worker`, if watched.
    pub fn link(&self, worker: WorkerId) -> Option<Arc<RingLink>> {
        lock(&self.links)
            .iter()
            .find(|l| l.worker() == worker)
            .cloned()
    }

    /// Handles every message waiting in every ring now, from the calling thread (the tallies
    /// of lane calls are not rung for; status and metrics read them first).
    pub fn drain_all(&self, sink: &dyn Inbound) {
        self.pass(sink, usize::MAX);
    }

    /// One pass over every ring from the calling thread (an I/O thread waiting for an
    /// external call's answer polls the rings itself).
    pub fn poll_once(&self, sink: &dyn Inbound) {
        self.pass(sink, BATCH);
    }

    /// Handles up to `limit` waiting messages of each ring; disconnects workers that sent
    /// malformed ones (after releasing the list, which disconnecting changes).
    fn pass(&self, sink: &dyn Inbound, limit: usize) {
        let mut bad: Vec<(WorkerId, String)> = Vec::new();
        {
            let links = lock(&self.links);
            for link in links.iter().filter(|l| l.has_message()) {
                if let Err(reason) = drain_one(sink, link, limit) {
                    bad.push((link.worker(), reason));
                }
            }
        }
        for (worker, reason) in bad {
            sink.disconnected(worker, &reason);
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

    /// Whether the poller thread runs (false once it stopped or died).
    pub fn alive(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// How many times the loop was restarted after a panic.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Polling periods that found a message, and those that ran out (then slept).
    pub fn spins(&self) -> (u64, u64) {
        (
            self.spins_paid.load(Ordering::Relaxed),
            self.spins_wasted.load(Ordering::Relaxed),
        )
    }

    /// Runs the poller on a thread of its own until [`RingPoller::stop`] or until `sink` is
    /// dropped.
    pub fn spawn(self: &Arc<Self>, sink: Weak<dyn Inbound>) -> std::io::Result<()> {
        let poller = self.clone();
        self.running.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("gloam-rings".into())
            .spawn(move || {
                let _alive = Alive(&poller.running);
                while !poller.stop.load(Ordering::Acquire) {
                    match catch_unwind(AssertUnwindSafe(|| poller.run(&sink))) {
                        Ok(()) => return,
                        Err(panic) => {
                            poller.restarts.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(
                                "the ring poller panicked ({}); restarting it",
                                gloam_core::worker::panic_message(panic.as_ref())
                            );
                        }
                    }
                }
            });
        if spawned.is_err() {
            self.running.store(false, Ordering::Release);
        }
        spawned.map(|_| ())
    }

    fn run(&self, sink: &Weak<dyn Inbound>) {
        let mut links: Vec<Arc<RingLink>> = Vec::new();
        let mut seen_generation = u64::MAX;
        let mut last_progress = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            let Some(sink) = sink.upgrade() else {
                return;
            };
            let generation = self.generation.load(Ordering::Acquire);
            if generation != seen_generation {
                links = lock(&self.links).clone();
                seen_generation = generation;
            }
            let mut got = Drained::default();
            let mut bad: Vec<(WorkerId, String)> = Vec::new();
            for link in &links {
                link.flush();
                match drain_one(sink.as_ref(), link, BATCH) {
                    Ok(d) => {
                        got.messages += d.messages;
                        got.urgent += d.urgent;
                    }
                    Err(reason) => bad.push((link.worker(), reason)),
                }
            }
            for (worker, reason) in bad {
                sink.disconnected(worker, &reason);
            }
            drop(sink);
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
            // On one CPU, every poll yields: the worker it waits for runs at once, and the
            // poller is back as soon as it yields or sleeps (cheaper than a futex wake-up).
            let cadence = if self.spin { ring::YIELD_SHARED } else { 1 };
            let any = || links.iter().any(|l| l.has_message());
            if idle_for < budget {
                let paid = ring::spin_until_with(budget - idle_for, cadence, || {
                    any()
                        || self.generation.load(Ordering::Acquire) != seen_generation
                        || self.stop.load(Ordering::Acquire)
                });
                let count = if paid {
                    &self.spins_paid
                } else {
                    &self.spins_wasted
                };
                count.fetch_add(1, Ordering::Relaxed);
                if paid {
                    continue;
                }
            }
            self.bell.prepare_sleep();
            if any()
                || self.generation.load(Ordering::Acquire) != seen_generation
                || self.stop.load(Ordering::Acquire)
            {
                self.bell.cancel_sleep();
                continue;
            }
            // A backlog waits for its worker to make room, which nobody rings for: look again
            // soon (a worker that never makes room is stuck, and its call's deadline ends it).
            let backlog = links.iter().any(|l| l.has_backlog());
            self.bell
                .sleep(if backlog { BACKLOG_RETRY } else { MAX_SLEEP });
        }
    }
}

/// Drains one link into `sink`; a panic while handling a message counts as a malformed
/// message from that worker (it is disconnected; nothing else is affected).
fn drain_one(sink: &dyn Inbound, link: &RingLink, limit: usize) -> Result<Drained, String> {
    let worker = link.worker();
    match catch_unwind(AssertUnwindSafe(|| {
        link.drain(limit, |bytes| sink.message(worker, link.socket(), bytes))
    })) {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(reason)) => Err(format!("sent a malformed message: {reason}")),
        Err(panic) => Err(format!(
            "sent a message the engine failed on ({})",
            gloam_core::worker::panic_message(panic.as_ref())
        )),
    }
}

/// Clears the poller's liveness flag when its thread ends, however it ends.
struct Alive<'a>(&'a AtomicBool);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
