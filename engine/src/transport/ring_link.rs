//! The engine's end of one worker's ring region and doorbell region (see `gloam_core::ring`).
//!
//! Both are sealed memfds the engine created; the worker got them by descriptor, so it cannot
//! shrink them under the engine, and nothing else can open them. The ring region goes to this
//! worker alone; the doorbell region also to the holders of leases on this worker. Sends go to the ring, or,
//! when the ring is full, to a backlog the poller flushes as the worker makes room: never a
//! spin under a lock, never a dropped message.

use std::collections::VecDeque;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use gloam_core::protocol::{self, offset, MESSAGE_SIZE};
use gloam_core::ring::{Bell, BellRegion, Consumer, Producer, RingFile, SharedRing};

use super::peer_socket::{PeerSocket, Unsent};
use super::MAX_BACKLOG;
use crate::state::WorkerId;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The engine → worker ring and what waits for room in it.
struct Outgoing {
    producer: Producer,
    backlog: VecDeque<[u8; MESSAGE_SIZE]>,
}

/// What one pass over a worker → engine ring handled.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drained {
    /// Messages handled.
    pub messages: usize,
    /// Messages somebody waits on (all but the records of lane calls).
    pub urgent: usize,
}

/// One worker's ring region, as the engine holds it.
pub struct RingLink {
    worker: WorkerId,
    shared: SharedRing,
    /// The ring region's descriptor (for `WELCOME` only).
    region: OwnedFd,
    /// The doorbell region's descriptor (for `WELCOME`, and for the holders of leases on this
    /// worker).
    bell_region: OwnedFd,
    /// The worker's handshake socket (a duplicate): leases and payload descriptors.
    socket: PeerSocket,
    tx: Mutex<Outgoing>,
    rx: Mutex<Consumer>,
    /// The backlog is not empty (the poller flushes it).
    pending: AtomicBool,
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
    /// Creates worker `worker`'s ring region and doorbell region; `socket` is its handshake
    /// socket. Returns the link; [`RingLink::region`] and [`RingLink::bell_region`] are the
    /// descriptors to send with `WELCOME`.
    pub fn create(worker: WorkerId, socket: OwnedFd) -> gloam_core::Result<RingLink> {
        let (file, region) = RingFile::create_sealed(&format!("gloam-ring-{worker}"))?;
        let (bell, bell_region) = BellRegion::create_sealed(&format!("gloam-bell-{worker}"))?;
        let (producer, consumer, shared) = file.into_engine_side();
        Ok(RingLink {
            worker,
            worker_bell: bell.bell(),
            shared,
            region,
            bell_region,
            socket: PeerSocket::new(socket),
            tx: Mutex::new(Outgoing {
                producer,
                backlog: VecDeque::new(),
            }),
            rx: Mutex::new(consumer),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            kick: tokio::sync::Notify::new(),
        })
    }

    /// The worker.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The ring region's descriptor.
    pub fn region(&self) -> &OwnedFd {
        &self.region
    }

    /// The doorbell region's descriptor.
    pub fn bell_region(&self) -> &OwnedFd {
        &self.bell_region
    }

    /// The lease words of the ring region.
    pub fn shared(&self) -> &SharedRing {
        &self.shared
    }

    /// Sends one message and rings the worker's bell if it sleeps. When the ring is full the
    /// message waits in the backlog (flushed by [`RingLink::flush`]); `false` when the
    /// backlog is over [`MAX_BACKLOG`] (the link is kicked: the worker does not read).
    pub fn send(&self, msg: &[u8; MESSAGE_SIZE]) -> bool {
        let queued = {
            let mut tx = lock(&self.tx);
            if tx.backlog.is_empty() && tx.producer.try_push(msg) {
                false
            } else if tx.backlog.len() >= MAX_BACKLOG {
                drop(tx);
                tracing::warn!(worker = %self.worker, "worker does not read its ring; dropping it");
                self.kick();
                return false;
            } else {
                tx.backlog.push_back(*msg);
                self.pending.store(true, Ordering::Release);
                true
            }
        };
        if !queued {
            self.worker_bell.notify();
        } else {
            // Whatever fits now goes now; the poller does the rest.
            self.flush();
        }
        true
    }

    /// Moves what the backlog holds into the ring as far as there is room.
    pub fn flush(&self) {
        if !self.pending.load(Ordering::Acquire) {
            return;
        }
        let moved = {
            let mut tx = lock(&self.tx);
            let mut moved = 0;
            while let Some(msg) = tx.backlog.front() {
                let msg = *msg;
                if !tx.producer.try_push(&msg) {
                    break;
                }
                tx.backlog.pop_front();
                moved += 1;
            }
            if tx.backlog.is_empty() {
                self.pending.store(false, Ordering::Release);
            }
            moved
        };
        if moved > 0 {
            self.worker_bell.notify();
        }
    }

    /// Whether messages wait in the backlog.
    pub fn has_backlog(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Handles up to `limit` messages waiting in the worker → engine ring with `handle`.
    pub fn drain(
        &self,
        limit: usize,
        mut handle: impl FnMut(&[u8; MESSAGE_SIZE]) -> Result<(), String>,
    ) -> Result<Drained, String> {
        let mut rx = lock(&self.rx);
        let mut buf = [0u8; MESSAGE_SIZE];
        let mut got = Drained::default();
        while got.messages < limit && rx.try_pop(&mut buf) {
            got.messages += 1;
            if !is_lane_record(&buf) {
                got.urgent += 1;
            }
            handle(&buf)?;
        }
        Ok(got)
    }

    /// Whether a message waits in the worker → engine ring.
    pub fn has_message(&self) -> bool {
        lock(&self.rx).has_message()
    }

    /// The worker's socket.
    pub fn socket(&self) -> &PeerSocket {
        &self.socket
    }

    /// Sends the worker `msg` (a `LEASE` message) with `fds` attached. `false` when it cannot
    /// be sent now (the worker has too much unread on its socket, or the socket failed — then
    /// the worker is dropped).
    pub fn send_lease(&self, msg: &[u8; MESSAGE_SIZE], fds: &[RawFd]) -> bool {
        match self.socket.send(msg, fds) {
            Ok(()) => true,
            Err(Unsent::Full) => false,
            Err(Unsent::Broken(why)) => {
                tracing::warn!(worker = %self.worker, "sending a lease failed ({why}); dropping it");
                self.kick();
                false
            }
        }
    }

    /// Drops the worker: the link stops, and its owner reports the worker gone.
    pub fn kick(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.kick.notify_one();
        }
    }

    /// Whether the link was kicked.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the link was kicked.
    pub async fn kicked(&self) {
        if self.is_closed() {
            return;
        }
        self.kick.notified().await
    }
}

/// Whether `msg` is the record of calls that ran on a direct lane: counted by the engine,
/// awaited by nobody, so it does not keep the poller polling.
fn is_lane_record(msg: &[u8; MESSAGE_SIZE]) -> bool {
    let flags = u16::from_le_bytes([msg[offset::FLAGS], msg[offset::FLAGS + 1]]);
    flags & protocol::flags::LANE != 0
}
