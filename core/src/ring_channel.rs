//! The worker side of the ring transport: a [`Channel`] over a logical worker's ring region.
//!
//! Waiting follows the policy measured in `ring-transport-study.md`: poll with yields for a
//! bounded spin (long enough to catch a reply that is about to come, short enough not to
//! starve the peer on a 2-vCPU machine), then sleep on the worker's doorbell. While asleep the
//! worker checks every second that the engine still holds the handshake socket, so a dead
//! engine is noticed instead of waited for (launched workers also die with the engine through
//! `PR_SET_PDEATHSIG`; this covers workers started by hand). An idle worker thus wakes once a
//! second, nothing more.
//!
//! The peers of direct lanes (see [`crate::lane`]) are the ring regions of other workers; the
//! engine sends each one on the socket (a `PEER` message with its descriptor) before it
//! publishes the lease that needs it, so a worker that does not know a peer yet reads the
//! socket and finds it there.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::channel::{Channel, Received, Wait};
use crate::clock::now_ns;
use crate::error::{Error, ErrorKind, Result};
use crate::ipc_root::{IpcPaths, PayloadSide};
use crate::lane::{InboundCall, LaneGrant, LANES};
use crate::protocol::{offset, Header, Kind, Message, PayloadLocation, MESSAGE_SIZE};
use crate::ring::{self, Bell, Consumer, EngineBell, Producer, RingFile, SharedRing};
use crate::shm;
use crate::socket::{Blocking, MessageReader};
use crate::tally::Tally;

/// How long a sleeping worker goes between checks that the engine is alive.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
/// Spin before sleeping when waiting for a new call (the study's "linger").
pub const LINGER: Duration = Duration::from_micros(20);

/// Lane records waiting in the worker → engine ring before the worker rings the engine.
const RECORDS_BEFORE_NOTIFY: u32 = ring::SLOTS / 2;
/// Lane calls counted in one record at most.
const TALLY_CALLS: u32 = 64;
/// A tally older than this is sent with the next call's answer (a sleeping callee sends it
/// before it sleeps).
const TALLY_AGE_NS: u64 = 10_000_000;
/// Peer regions kept mapped (every lane's callee and a holder or two).
const PEERS_KEPT: usize = 2 * LANES + 2;

/// A tally being filled, and when its first call was counted (monotonic ns).
#[derive(Default)]
struct OpenTally {
    tally: Tally,
    since_ns: u64,
}

/// The peers the engine sent, newest last, and the socket reader they come from.
#[derive(Default)]
struct Peers {
    reader: MessageReader,
    known: Vec<(u32, SharedRing)>,
}

/// A logical worker's end of its ring region.
pub struct RingChannel {
    shared: SharedRing,
    paths: IpcPaths,
    /// The callee of each lane this worker holds, as last looked up (fast path).
    lane_peers: [Mutex<Option<(u32, SharedRing)>>; LANES],
    /// The holder of this worker's lease, as last looked up.
    holder_peer: Mutex<Option<(u32, SharedRing)>>,
    /// Every peer the engine sent.
    peers: Mutex<Peers>,
    /// The lane call in this worker's hands (taken from its inbound slot).
    inbound: Mutex<Option<InboundCall>>,
    /// The lane calls answered since the last record, and since when.
    tally: Mutex<OpenTally>,
    /// The last message received came on the lane (not from the engine).
    lane_served: AtomicBool,
    worker_id: u32,
    /// The payload limit, for checking the calls holders write.
    max_payload: u64,
    rx: Mutex<Consumer>,
    tx: Mutex<Producer>,
    my_bell: Bell,
    engine_bell: Bell,
    engine_socket: OwnedFd,
    closed: AtomicBool,
    woken: AtomicBool,
}

impl std::fmt::Debug for RingChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingChannel")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RingChannel {
    /// Maps worker `worker_id`'s ring region and the engine's doorbell, both received with
    /// `WELCOME` (`max_payload` from its function table). `engine_socket` is the handshake socket (kept: the engine sends peers on it,
    /// and its closing tells that the engine died).
    pub fn open_worker_side(
        paths: &IpcPaths,
        worker_id: u32,
        max_payload: u64,
        ring: &OwnedFd,
        engine_bell: &OwnedFd,
        engine_socket: OwnedFd,
    ) -> Result<RingChannel> {
        let (tx, rx, shared) = RingFile::from_fd(ring)?.into_worker_side();
        let engine_bell = EngineBell::from_fd(engine_bell)?.bell();
        Ok(RingChannel {
            rx: Mutex::new(rx),
            tx: Mutex::new(tx),
            my_bell: shared.worker_bell(),
            engine_bell,
            shared,
            paths: paths.clone(),
            lane_peers: std::array::from_fn(|_| Mutex::new(None)),
            holder_peer: Mutex::new(None),
            peers: Mutex::new(Peers::default()),
            inbound: Mutex::new(None),
            tally: Mutex::new(OpenTally::default()),
            lane_served: AtomicBool::new(false),
            worker_id,
            max_payload,
            engine_socket,
            closed: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        })
    }

    fn engine_gone(&self) -> bool {
        let mut fds = [PollFd::new(
            self.engine_socket.as_fd(),
            PollFlags::from_bits_retain(libc::POLLRDHUP),
        )];
        // The engine closing its end shows as RDHUP (or HUP/ERR); unread PEER messages are
        // only POLLIN, which is not asked for.
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    fn shutdown(&self) -> Error {
        Error::Shutdown("ring channel closed".into())
    }

    /// Worker `worker`'s ring region, from `cache` or from the peers the engine sent; `None`
    /// when the engine sent no such peer (the lease is stale).
    fn peer(&self, cache: &Mutex<Option<(u32, SharedRing)>>, worker: u32) -> Option<SharedRing> {
        let mut cached = lock(cache);
        if let Some((id, ring)) = cached.as_ref() {
            if *id == worker {
                return Some(ring.clone());
            }
        }
        let ring = self.find_peer(worker)?;
        *cached = Some((worker, ring.clone()));
        Some(ring)
    }

    /// Looks `worker` up among the peers the engine sent, reading the socket for new ones.
    fn find_peer(&self, worker: u32) -> Option<SharedRing> {
        let mut peers = lock(&self.peers);
        let lookup = |known: &[(u32, SharedRing)]| {
            known
                .iter()
                .rev()
                .find(|(id, _)| *id == worker)
                .map(|(_, r)| r.clone())
        };
        if let Some(r) = lookup(&peers.known) {
            return Some(r);
        }
        loop {
            match peers.reader.read(self.engine_socket.as_fd(), Blocking::No) {
                Ok(Some(got)) => {
                    let Some(peer) = peer_of(&got.bytes, &got.fds) else {
                        tracing::warn!("ignored a malformed PEER message from the engine");
                        continue;
                    };
                    if peers.known.len() >= PEERS_KEPT {
                        peers.known.remove(0);
                    }
                    peers.known.push(peer);
                }
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "reading peers from the engine socket");
                    break;
                }
            }
        }
        lookup(&peers.known)
    }

    /// Publishes `msg` to the engine; rings the engine only when `notify` (the engine reads
    /// unrung messages on its next pass).
    fn push(&self, msg: &[u8; MESSAGE_SIZE], notify: bool) -> Result<()> {
        {
            let mut tx = lock(&self.tx);
            let mut tries = 0u32;
            while !tx.try_push(msg) {
                // Full: the engine drains continuously; yield, then back off, and give up only
                // if the engine is gone.
                tries += 1;
                if self.closed.load(Ordering::Acquire) {
                    return Err(self.shutdown());
                }
                self.engine_bell.notify();
                if tries < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                    if tries % 256 == 0 && self.engine_gone() {
                        return Err(Error::Shutdown("the engine went away".into()));
                    }
                }
            }
            if !notify && tx.pending() < RECORDS_BEFORE_NOTIFY {
                return Ok(());
            }
        }
        self.engine_bell.notify();
        Ok(())
    }

    /// Sends the tally to the engine (ringing only when the lease ended) and starts anew.
    fn flush(&self, tally: &mut Tally, lease_ended: bool) -> Result<()> {
        let record = tally.to_message(self.worker_id, lease_ended).to_bytes();
        *tally = Tally::default();
        self.push(&record, lease_ended)
    }

    /// Sends what the tally holds, if anything (before sleeping).
    fn flush_tally(&self) {
        let mut open = lock(&self.tally);
        if open.tally.calls() > 0 {
            if let Err(e) = self.flush(&mut open.tally, false) {
                tracing::debug!(error = %e, "could not send the lane tally");
            }
        }
    }

    /// Waits for the answer to `call` until `deadline_ns` (0 = none).
    fn wait_lane(
        &self,
        call: crate::lane::LaneCall,
        deadline_ns: u64,
        spin: Duration,
    ) -> Result<[u8; MESSAGE_SIZE]> {
        let mut out = [0u8; MESSAGE_SIZE];
        let bell = self.shared.lane_bell(call.lane());
        loop {
            if !self.shared.lane_waiting(&call) {
                self.shared.take_lane_reply(call, &mut out);
                return Ok(out);
            }
            let closed = self.closed.load(Ordering::Acquire);
            let left = match deadline_ns {
                0 => LIVENESS_CHECK,
                d => Duration::from_nanos(d.saturating_sub(now_ns())),
            };
            if closed || left.is_zero() {
                if self.shared.abandon_lane_call(&call) {
                    return Err(if closed {
                        self.shutdown()
                    } else {
                        Error::Timeout("the direct call got no answer by its deadline".into())
                    });
                }
                continue;
            }
            let waiting =
                || self.shared.lane_waiting(&call) && !self.closed.load(Ordering::Acquire);
            if ring::spin_until_with(spin.min(left), ring::YIELD_DIRECT, || !waiting()) {
                continue;
            }
            bell.prepare_sleep();
            if !waiting() {
                bell.cancel_sleep();
                continue;
            }
            bell.sleep(left.min(LIVENESS_CHECK));
            if waiting() && self.engine_gone() && self.shared.abandon_lane_call(&call) {
                return Err(Error::Shutdown("the engine went away".into()));
            }
        }
    }
}

impl RingChannel {
    /// Checks a call a holder wrote into the inbound slot (untrusted like anything a peer
    /// writes), and marks it as a lane call so that its answer goes back on the lane.
    fn check_inbound(&self, buf: &mut [u8; MESSAGE_SIZE]) -> std::result::Result<(), String> {
        let h = Header::decode(buf, self.max_payload).map_err(|e| e.to_string())?;
        if h.kind != Kind::Dispatch {
            return Err(format!("a {:?} message in the inbound slot", h.kind));
        }
        let mut flags = u16::from_le_bytes([buf[offset::FLAGS], buf[offset::FLAGS + 1]]);
        flags |= crate::protocol::flags::LANE;
        buf[offset::FLAGS..offset::FLAGS + 2].copy_from_slice(&flags.to_le_bytes());
        Ok(())
    }

    /// Fails the lane call in hand, which could not be read.
    fn refuse_inbound(&self, why: &str) -> Result<()> {
        let mut h = Header::new(Kind::Failed);
        h.worker_id = self.worker_id;
        let failure = Message::failure(
            h,
            ErrorKind::ProtocolError,
            &format!("the callee could not read the direct call: {why}"),
        );
        tracing::warn!("refused a malformed direct call: {why}");
        self.answer_lane(&failure.header, &failure.to_bytes())
    }
}

/// The (worker id, region) a `PEER` message names, if it is one with one descriptor.
pub(crate) fn peer_of(bytes: &[u8; MESSAGE_SIZE], fds: &[OwnedFd]) -> Option<(u32, SharedRing)> {
    let h = Header::decode(bytes, 0).ok()?;
    if h.kind != Kind::Peer || fds.len() != 1 {
        return None;
    }
    let ring = RingFile::from_fd(&fds[0]).ok()?.into_peer();
    Some((h.worker_id, ring))
}

impl Channel for RingChannel {
    fn send(&self, msg: &[u8; MESSAGE_SIZE]) -> Result<()> {
        self.push(msg, true)
    }

    fn lane_call(
        &self,
        function_id: u16,
        build: &mut dyn FnMut(&LaneGrant) -> [u8; MESSAGE_SIZE],
        spin: Duration,
    ) -> Option<Result<[u8; MESSAGE_SIZE]>> {
        let call = self.shared.begin_lane_call(function_id)?;
        let Some(callee) = self.peer(&self.lane_peers[call.lane()], call.grant().callee) else {
            self.shared.cancel_lane_call(call);
            return None;
        };
        let msg = build(call.grant());
        let mut deadline = [0u8; 8];
        deadline.copy_from_slice(&msg[offset::DEADLINE_NS..offset::DEADLINE_NS + 8]);
        callee.deliver_call(&call, &msg);
        callee.worker_bell().notify();
        Some(self.wait_lane(call, u64::from_le_bytes(deadline), spin))
    }

    fn answer_lane(&self, h: &Header, answer: &[u8; MESSAGE_SIZE]) -> Result<()> {
        let Some(call) = lock(&self.inbound).take() else {
            return Err(Error::Internal(
                "a lane answer with no lane call in hand".into(),
            ));
        };
        let holder = call.holder();
        self.shared.finish_inbound(&call);
        let answered = self.peer(&self.holder_peer, holder.worker).map(|ring| {
            let a = ring.answer_lane(call, answer);
            if a.delivered {
                ring.lane_bell(holder.lane).notify();
            }
            a
        });
        let delivered = answered.is_some_and(|a| a.delivered);
        if !delivered && h.kind == Kind::Complete && h.payload_loc == PayloadLocation::Shm {
            // Nobody will read the output file.
            shm::remove_call(&self.paths, h.call_id(), PayloadSide::Output);
        }
        let outcome = match (answered, h.kind) {
            // The holder gave up at the deadline: for the engine's counts the call timed out.
            (Some(a), _) if !a.delivered => Some(ErrorKind::Timeout),
            (_, Kind::Failed) => Some(h.status.unwrap_or(ErrorKind::Internal)),
            _ => None,
        };
        let lease_ended = answered.is_none_or(|a| a.lease_ended);
        let now = now_ns();
        let mut open = lock(&self.tally);
        let other = open.tally.holder != holder.worker || open.tally.lease != holder.lease;
        if open.tally.calls() > 0 && other {
            self.flush(&mut open.tally, false)?;
        }
        if open.tally.calls() == 0 {
            open.tally.holder = holder.worker;
            open.tally.lease = holder.lease;
            open.since_ns = now;
        }
        open.tally
            .record(outcome, h.processing_ns, u64::from(h.dispatch_delay_ns));
        let old = now.saturating_sub(open.since_ns) >= TALLY_AGE_NS;
        if lease_ended || old || open.tally.calls() >= TALLY_CALLS {
            self.flush(&mut open.tally, lease_ended)?;
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8; MESSAGE_SIZE], wait: Wait) -> Result<Received> {
        self.recv_spin(buf, wait, LINGER)
    }

    fn recv_spin(
        &self,
        buf: &mut [u8; MESSAGE_SIZE],
        wait: Wait,
        spin: Duration,
    ) -> Result<Received> {
        let deadline = match wait {
            Wait::Timeout(d) => Some(Instant::now() + d),
            _ => None,
        };
        let mut rx = lock(&self.rx);
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(self.shutdown());
            }
            if rx.try_pop(buf) {
                self.lane_served.store(false, Ordering::Relaxed);
                return Ok(Received::Message);
            }
            if let Some(call) = self.shared.take_inbound(buf) {
                *lock(&self.inbound) = Some(call);
                self.lane_served.store(true, Ordering::Relaxed);
                match self.check_inbound(buf) {
                    Ok(()) => return Ok(Received::Message),
                    // The holder wrote something that is no call: it gets a failure, and
                    // this worker goes on serving.
                    Err(why) => self.refuse_inbound(&why)?,
                }
                continue;
            }
            if self.woken.swap(false, Ordering::AcqRel) {
                return Ok(Received::Woken);
            }
            let left = match (wait, deadline) {
                (Wait::NonBlocking, _) => return Ok(Received::TimedOut),
                (_, Some(d)) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Received::TimedOut);
                    }
                    left
                }
                _ => LIVENESS_CHECK,
            };
            let interrupted = || {
                self.closed.load(Ordering::Acquire)
                    || self.woken.load(Ordering::Acquire)
                    || self.shared.inbound_full()
            };
            // A callee serving a lane expects its next call from the holder alone.
            let cadence = if self.lane_served.load(Ordering::Relaxed) {
                ring::YIELD_DIRECT
            } else {
                ring::YIELD_SHARED
            };
            if ring::spin_until_with(spin.min(left), cadence, || {
                rx.has_message() || interrupted()
            }) {
                continue;
            }
            self.flush_tally();
            self.my_bell.prepare_sleep();
            if rx.has_message() || interrupted() {
                self.my_bell.cancel_sleep();
                continue;
            }
            self.my_bell.sleep(left.min(LIVENESS_CHECK));
            if !rx.has_message() && !interrupted() && self.engine_gone() {
                return Err(Error::Shutdown("the engine went away".into()));
            }
        }
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.my_bell.force_wake();
    }

    fn close(&self) {
        self.flush_tally();
        self.closed.store(true, Ordering::Release);
        self.my_bell.force_wake();
        for lane in 0..LANES {
            self.shared.lane_bell(lane).force_wake();
        }
    }
}

/// A `PEER` message for worker `worker` (its descriptor travels beside it).
pub fn peer_message(worker: u32) -> Message {
    let mut h = Header::new(Kind::Peer);
    h.worker_id = worker;
    Message::new(h)
}
