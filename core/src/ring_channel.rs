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
//! Direct lanes (see [`crate::lane`]) run over lease regions: the engine sends each on the
//! socket (a `LEASE` message, see [`crate::lease`]) before it publishes the lease in this
//! worker's ring region, so a worker that sees a lease it does not know yet reads the socket
//! and finds it there — once per lease. A holder keeps the lease of each lane, a callee the
//! lease it serves; a call in progress keeps its lease's mapping alive however the lease ends.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::channel::{Channel, Received, Wait};
use crate::clock::now_ns;
use crate::engine_socket::EngineSocket;
use crate::error::{Error, ErrorKind, Result};
use crate::lane::{InboundCall, LaneCall, LaneGrant, LANES};
use crate::lease::{LeaseEnd, Role};
use crate::protocol::{offset, Header, Kind, Message, MESSAGE_SIZE};
use crate::ring::{self, Bell, BellRegion, Consumer, Producer, RingFile, SharedRing};
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

/// A tally being filled, and when its first call was counted (monotonic ns).
#[derive(Default)]
struct OpenTally {
    tally: Tally,
    since_ns: u64,
}

/// What a lane's cache says, in one word: `lease << 32 | USABLE | function`, where `lease` is
/// the lease last looked up for the lane and USABLE says its region is mapped (else the engine
/// sent no such lease, and it is not looked up again).
const USABLE: u64 = 1 << 16;

fn known_usable(lease: u32, function_id: u16) -> u64 {
    u64::from(lease) << 32 | USABLE | u64::from(function_id)
}

fn known_missing(lease: u32) -> u64 {
    u64::from(lease) << 32
}

/// The receiving side, under one lock: the engine → worker ring and the lease this worker
/// serves as a callee (the lease id last seen published, and its end if it was mapped).
struct Rx {
    consumer: Consumer,
    inbound: Option<(u32, Option<Arc<LeaseEnd>>)>,
}

/// A logical worker's end of its ring region.
pub struct RingChannel {
    shared: SharedRing,
    /// The lease of each lane this worker holds, as last looked up.
    lanes: [Mutex<Option<Arc<LeaseEnd>>>; LANES],
    /// Each lane's cache in one word (see [`USABLE`]): the fast path reads only this.
    lane_known: [AtomicU64; LANES],
    /// The lane call in this worker's hands (taken from its lease's inbound slot).
    in_hand: Mutex<Option<(InboundCall, Arc<LeaseEnd>)>>,
    /// The lane calls answered since the last record, and since when.
    tally: Mutex<OpenTally>,
    /// The last message received came on the lane (not from the engine).
    lane_served: AtomicBool,
    /// This process may run on one CPU only ([`ring::spinning_can_pay`] is false): the peer
    /// it waits for runs only when it gives the CPU up, so every poll yields.
    one_cpu: bool,
    worker_id: u32,
    /// The payload limit, for checking the calls holders write.
    max_payload: u64,
    rx: Mutex<Rx>,
    tx: Mutex<Producer>,
    my_bell: Bell,
    engine_bell: Bell,
    socket: Arc<EngineSocket>,
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
    /// How many empty polls between yields: `usual`, or every poll on one CPU.
    fn cadence(&self, usual: u32) -> u32 {
        if self.one_cpu {
            1
        } else {
            usual
        }
    }

    /// Maps worker `worker_id`'s ring region, its doorbell region and the engine's doorbell
    /// region, all received with `WELCOME` (`max_payload` from its function table).
    /// `socket` is the engine socket (the engine sends leases on it, and its closing tells
    /// that the engine died).
    pub fn open_worker_side(
        worker_id: u32,
        max_payload: u64,
        ring: &OwnedFd,
        bell: &OwnedFd,
        engine_bell: &OwnedFd,
        socket: Arc<EngineSocket>,
    ) -> Result<RingChannel> {
        let (tx, rx, shared) = RingFile::from_fd(ring)?.into_worker_side();
        let my_bell = BellRegion::from_fd(bell, "worker doorbell")?.bell();
        let engine_bell = BellRegion::from_fd(engine_bell, "engine doorbell")?.bell();
        Ok(RingChannel {
            rx: Mutex::new(Rx {
                consumer: rx,
                inbound: None,
            }),
            tx: Mutex::new(tx),
            my_bell,
            engine_bell,
            shared,
            lanes: std::array::from_fn(|_| Mutex::new(None)),
            lane_known: std::array::from_fn(|_| AtomicU64::new(0)),
            in_hand: Mutex::new(None),
            tally: Mutex::new(OpenTally::default()),
            lane_served: AtomicBool::new(false),
            one_cpu: !ring::spinning_can_pay(),
            worker_id,
            max_payload,
            socket,
            closed: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        })
    }

    fn engine_gone(&self) -> bool {
        self.socket.engine_gone()
    }

    fn shutdown(&self) -> Error {
        Error::Shutdown("ring channel closed".into())
    }

    /// This worker's end `role` of lease `lease`, from the socket.
    fn take_lease(&self, lease: u32, role: Role) -> Option<LeaseEnd> {
        self.socket.take_lease(lease, role)
    }

    /// Looks up lease `lease`, just published on lane `lane`: maps it (once) and returns the
    /// lane's cache word.
    fn map_lane(&self, lane: usize, lease: u32) -> u64 {
        let mut slot = lock(&self.lanes[lane]);
        let known = self.lane_known[lane].load(Ordering::Acquire);
        if known >> 32 == u64::from(lease) {
            // Another thread of this worker did it.
            return known;
        }
        let end = self
            .take_lease(lease, Role::Holder)
            .filter(|e| e.holder.lane == lane && e.holder.worker == self.worker_id);
        let known = match &end {
            Some(e) => known_usable(lease, e.grant.function_id),
            None => known_missing(lease),
        };
        *slot = end.map(Arc::new);
        self.lane_known[lane].store(known, Ordering::Release);
        known
    }

    /// Starts a call to `function_id` on one of this worker's idle lanes: the call's token and
    /// its lease, or `None` when the engine must carry the call.
    fn begin_lane_call(&self, function_id: u16) -> Option<(LaneCall, Arc<LeaseEnd>)> {
        for lane in 0..LANES {
            let lease = self.shared.lane_lease(lane);
            if lease == 0 {
                continue;
            }
            let mut known = self.lane_known[lane].load(Ordering::Acquire);
            if known >> 32 != u64::from(lease) {
                known = self.map_lane(lane, lease);
            }
            if known != known_usable(lease, function_id) {
                continue;
            }
            let Some(end) = lock(&self.lanes[lane]).clone() else {
                continue;
            };
            if end.grant.lease != lease {
                continue;
            }
            if let Some(call) = end.region.begin_call(lane, &end.grant) {
                return Some((call, end));
            }
        }
        None
    }

    /// The lease this worker serves as a callee, if one is published and mapped; a newly
    /// published one is looked up here (once).
    fn inbound_end(
        &self,
        seen: &mut Option<(u32, Option<Arc<LeaseEnd>>)>,
    ) -> Option<Arc<LeaseEnd>> {
        let lease = self.shared.inbound_lease();
        if lease == 0 {
            return None;
        }
        match seen {
            Some((l, end)) if *l == lease => end.clone(),
            _ => {
                let end = self
                    .take_lease(lease, Role::Callee)
                    .filter(|e| e.grant.callee == self.worker_id)
                    .map(Arc::new);
                *seen = Some((lease, end.clone()));
                end
            }
        }
    }

    /// Whether a lane call waits in the inbound slot, or a new lease was published (it may
    /// bring one).
    fn inbound_pending(&self, seen: &Option<(u32, Option<Arc<LeaseEnd>>)>) -> bool {
        let lease = self.shared.inbound_lease();
        if lease == 0 {
            return false;
        }
        match seen {
            Some((l, Some(end))) if *l == lease => end.region.inbound_full(lease),
            Some((l, None)) if *l == lease => false,
            _ => true,
        }
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

    /// Waits for the answer to `call` on lease `end` until `deadline_ns` (0 = none).
    fn wait_lane(
        &self,
        call: LaneCall,
        end: &LeaseEnd,
        deadline_ns: u64,
        spin: Duration,
    ) -> Result<[u8; MESSAGE_SIZE]> {
        let mut out = [0u8; MESSAGE_SIZE];
        let (region, bell) = (&end.region, &end.lane_bell);
        loop {
            if !region.waiting(&call) {
                region.take_reply(call, &mut out);
                return Ok(out);
            }
            let closed = self.closed.load(Ordering::Acquire);
            let left = match deadline_ns {
                0 => LIVENESS_CHECK,
                d => Duration::from_nanos(d.saturating_sub(now_ns())),
            };
            if closed || left.is_zero() {
                if region.abandon(&call) {
                    return Err(if closed {
                        self.shutdown()
                    } else {
                        Error::Timeout("the direct call got no answer by its deadline".into())
                    });
                }
                continue;
            }
            let waiting = || region.waiting(&call) && !self.closed.load(Ordering::Acquire);
            if ring::spin_until_with(spin.min(left), self.cadence(ring::YIELD_DIRECT), || {
                !waiting()
            }) {
                continue;
            }
            bell.prepare_sleep();
            if !waiting() {
                bell.cancel_sleep();
                continue;
            }
            bell.sleep(left.min(LIVENESS_CHECK));
            if waiting() && self.engine_gone() && region.abandon(&call) {
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
        if h.payload_loc != crate::protocol::PayloadLocation::Inline {
            // Only the engine passes payload descriptors on; a holder sends large inputs
            // through it.
            return Err("a lane call's input must be inline".into());
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
            .map(drop)
    }
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
        let (call, end) = self.begin_lane_call(function_id)?;
        let msg = build(call.grant());
        let mut deadline = [0u8; 8];
        deadline.copy_from_slice(&msg[offset::DEADLINE_NS..offset::DEADLINE_NS + 8]);
        end.region.deliver_call(&call, &msg);
        if let Some(bell) = &end.callee_bell {
            bell.notify();
        }
        Some(self.wait_lane(call, &end, u64::from_le_bytes(deadline), spin))
    }

    fn answer_lane(&self, h: &Header, answer: &[u8; MESSAGE_SIZE]) -> Result<bool> {
        let Some((call, end)) = lock(&self.in_hand).take() else {
            return Err(Error::Internal(
                "a lane answer with no lane call in hand".into(),
            ));
        };
        let holder = call.holder();
        end.region.finish_inbound(&call);
        let answered = end.region.answer(call, answer);
        if answered.delivered {
            end.lane_bell.notify();
        }
        let outcome = match h.kind {
            // The holder gave up at the deadline: for the engine's counts the call timed out.
            _ if !answered.delivered => Some(ErrorKind::Timeout),
            Kind::Failed => Some(h.status.unwrap_or(ErrorKind::Internal)),
            _ => None,
        };
        let lease_ended = answered.lease_ended;
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
        Ok(answered.delivered)
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
        let mut guard = lock(&self.rx);
        let rx = &mut *guard;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(self.shutdown());
            }
            if rx.consumer.try_pop(buf) {
                self.lane_served.store(false, Ordering::Relaxed);
                return Ok(Received::Message);
            }
            if let Some(end) = self.inbound_end(&mut rx.inbound) {
                if let Some(call) = end.region.take_inbound(end.holder, buf) {
                    *lock(&self.in_hand) = Some((call, end));
                    self.lane_served.store(true, Ordering::Relaxed);
                    match self.check_inbound(buf) {
                        Ok(()) => return Ok(Received::Message),
                        // The holder wrote something that is no call: it gets a failure, and
                        // this worker goes on serving.
                        Err(why) => self.refuse_inbound(&why)?,
                    }
                    continue;
                }
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
            let interrupted = |inbound: &Option<(u32, Option<Arc<LeaseEnd>>)>| {
                self.closed.load(Ordering::Acquire)
                    || self.woken.load(Ordering::Acquire)
                    || self.inbound_pending(inbound)
            };
            // A callee serving a lane expects its next call from the holder alone.
            let cadence = self.cadence(if self.lane_served.load(Ordering::Relaxed) {
                ring::YIELD_DIRECT
            } else {
                ring::YIELD_SHARED
            });
            if ring::spin_until_with(spin.min(left), cadence, || {
                rx.consumer.has_message() || interrupted(&rx.inbound)
            }) {
                continue;
            }
            self.flush_tally();
            self.my_bell.prepare_sleep();
            if rx.consumer.has_message() || interrupted(&rx.inbound) {
                self.my_bell.cancel_sleep();
                continue;
            }
            self.my_bell.sleep(left.min(LIVENESS_CHECK));
            if !rx.consumer.has_message() && !interrupted(&rx.inbound) && self.engine_gone() {
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
        for lane in &self.lanes {
            if let Some(end) = lock(lane).as_ref() {
                end.lane_bell.force_wake();
            }
        }
    }
}
