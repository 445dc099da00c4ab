//! The engine's bookkeeping, free of I/O: functions and their queues, workers, in-flight calls
//! and deadlines. Every transition returns the messages to send; the caller sends them after
//! releasing the lock. Keeping this synchronous and pure makes "every call ends exactly once"
//! checkable in one place.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use gloam_core::protocol::{CallId, Header, Kind, Message, PayloadLocation};
use gloam_core::tally::Tally;
use gloam_core::ErrorKind;

use crate::config::FunctionConfig;
use crate::limiter::Limiter;
use crate::metrics::FunctionMetrics;

/// A map keyed by an engine-assigned integer id (function, worker, call). SipHash's defence
/// against chosen keys buys nothing for ids the engine itself hands out, and it showed in
/// profiles of the per-call path; a multiplicative hash is enough.
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of the integer written into it.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A pool-growth request not answered by a new worker within this long is forgotten.
const GROWTH_PATIENCE_NS: u64 = 10_000_000_000;
/// Internal calls from one worker to one function, each made within [`LEASE_GAP_NS`] of the
/// previous one's answer, after which the engine leases that worker a callee (a direct lane).
const LEASE_AFTER_CALLS: u32 = 2;
/// See [`LEASE_AFTER_CALLS`].
const LEASE_GAP_NS: u64 = 10_000_000;
/// After a lease of a function was revoked for other callers, no new lease of it for this
/// long (a function in demand is not leased and revoked back and forth).
const LEASE_COOLDOWN_NS: u64 = 50_000_000;
/// Lanes a worker may hold (`gloam_core::lane::LANES`).
const LANES: u8 = gloam_core::lane::LANES as u8;

/// Who receives a call's result.
#[derive(Debug)]
pub enum ReplyTo<R> {
    /// An external caller (the gateway), through this handle.
    External(R),
    /// The worker that made the internal call.
    Worker(u32),
    /// The caller is gone; the result is dropped (and its files removed).
    Nobody,
}

/// A call the engine knows about, from receipt to its one ending.
#[derive(Debug)]
pub struct CallRecord<R> {
    /// Where the result goes.
    pub reply: ReplyTo<R>,
    /// The `DISPATCH` message to send to a worker (kept while queued).
    pub dispatch: Box<Message>,
    /// The worker running it, once dispatched.
    pub worker: Option<u32>,
    /// Engine timestamps (monotonic ns).
    pub recv_ns: u64,
    /// Set at dispatch.
    pub dispatch_ns: u64,
    /// Absolute deadline (monotonic ns).
    pub deadline_ns: u64,
}

impl<R> CallRecord<R> {
    /// Whether the input travels in a shm file the engine must remove at the end.
    pub fn input_in_shm(&self) -> bool {
        self.dispatch.header.payload_loc == PayloadLocation::Shm
    }
}

/// One function's dispatcher state.
#[derive(Debug)]
pub struct FunctionState {
    /// Its configuration.
    pub config: Arc<FunctionConfig>,
    /// Calls waiting for a worker, oldest first (ids whose record is gone are skipped).
    pub queue: VecDeque<CallId>,
    /// Ready workers with no call and the time each became idle, most recently freed last.
    pub idle: Vec<(u32, u64)>,
    /// Calls running now.
    pub running: usize,
    /// Ready workers (including those asked to retire and not gone yet).
    pub ready_workers: usize,
    /// Workers asked to retire that have not disconnected yet.
    pub retiring: usize,
    /// Workers requested from the launcher that have not connected yet, and when.
    pub requested: usize,
    requested_at: u64,
    /// The concurrency limiter (λ, t, τ).
    pub limiter: Limiter,
    /// What its calls did (scraped by `/metrics`).
    pub metrics: FunctionMetrics,
    /// Calls ended, by outcome (for status).
    pub completed: u64,
    /// Calls failed (handler error, crash, timeout, ...).
    pub failed: u64,
    /// Workers leased to a caller (direct lanes), not in `idle` and not counted in `running`.
    pub leased: usize,
    /// Calls that ran on a direct lane (also counted in `completed`/`failed`).
    pub direct_calls: u64,
    /// When a lease of this function was last revoked for other callers.
    revoked_at: Option<u64>,
}

/// A connected logical worker.
#[derive(Debug)]
pub struct WorkerEntry<S> {
    /// The function it serves.
    pub function_id: u16,
    /// Its process id.
    pub pid: u32,
    /// Its language runtime.
    pub language: String,
    /// How to reach it.
    pub sender: S,
    /// Ready for calls (handshake finished).
    pub ready: bool,
    /// The call it runs, if any (kept after that call timed out, until the worker answers).
    pub current: Option<CallId>,
    /// Retirement requested.
    pub retiring: bool,
    /// As a callee: the worker it is leased to.
    pub lease: Option<Lease>,
    /// As a caller: the lanes it holds (bit i = lane i).
    pub lanes: u8,
    /// As a caller: its run of internal calls to one function.
    streak: Streak,
}

/// A callee's lease: which worker holds it, on which of that worker's lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The holder (caller).
    pub holder: u32,
    /// The holder's lane.
    pub lane: u8,
    /// Revoked, ending when the callee answers its current call.
    pub revoking: bool,
}

/// A caller's run of internal calls to one function, each made within [`LEASE_GAP_NS`] of
/// the previous one's answer.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    function_id: u16,
    calls: u32,
    /// When the last of them was answered.
    last_ns: u64,
}

impl Streak {
    fn called(&mut self, function_id: u16, now: u64) {
        if self.function_id == function_id && now.saturating_sub(self.last_ns) <= LEASE_GAP_NS {
            self.calls = self.calls.saturating_add(1);
        } else {
            *self = Streak {
                function_id,
                calls: 1,
                last_ns: now,
            };
        }
    }
}

/// A message to send to a worker, or a result to hand to an external caller.
#[derive(Debug)]
pub enum Action<R, S> {
    /// Send `msg` to worker `worker` via `sender`.
    Send {
        /// The worker's id.
        worker: u32,
        /// Its sender.
        sender: S,
        /// The message.
        msg: Box<Message>,
    },
    /// Deliver an outcome to an external caller.
    Reply {
        /// The caller's handle.
        to: R,
        /// The outcome.
        outcome: Outcome,
    },
    /// Remove a shm payload file of this call.
    RemoveShm(CallId, gloam_core::ipc_root::PayloadSide),
    /// Ask the launcher of this function for one more worker process.
    Grow(u16),
    /// The process `pid` of this function was asked to retire: do not restart it.
    RetireProcess {
        /// The function.
        function_id: u16,
        /// The process.
        pid: u32,
    },
    /// Write a lease into the holder's lane and the callee's inbound control (if the lane is
    /// not reusable yet, the engine ends the lease at once with [`State::end_lease`]).
    Grant {
        /// The lease.
        lease: LeaseRef<S>,
        /// The callee's function.
        function_id: u16,
        /// Its own timeout in ms (0 = none).
        timeout_ms: u32,
    },
    /// Revoke a lease; if the lane shows no call in the callee's hands the engine ends it
    /// at once, else the callee's record of its answer ends it.
    Revoke {
        /// The lease.
        lease: LeaseRef<S>,
        /// The holder is gone: a call it began but never handed over does not count.
        holder_gone: bool,
    },
    /// The callee of a lease died: fail the call waiting in the holder's lane, if any.
    FailLane {
        /// The lease.
        lease: LeaseRef<S>,
        /// The failure text.
        text: String,
    },
}

/// The two ends of a lease, for the engine to reach their files.
#[derive(Debug)]
pub struct LeaseRef<S> {
    /// The holder (caller).
    pub holder: u32,
    /// Its sender.
    pub holder_sender: S,
    /// The holder's lane.
    pub lane: u8,
    /// The callee.
    pub callee: u32,
    /// Its sender.
    pub callee_sender: S,
}

/// How an external call ended.
#[derive(Debug)]
pub enum Outcome {
    /// The worker's `COMPLETE` message (output inline or in a shm file).
    Complete(Box<Message>, Timing),
    /// A failure with its kind and text.
    Failed(ErrorKind, String),
}

/// Per-call times reported back to the gateway (ns).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Receive → dispatch.
    pub queued_ns: u64,
    /// Dispatch → completion seen by the engine.
    pub running_ns: u64,
    /// Handler time reported by the worker.
    pub processing_ns: u64,
}

/// The whole engine state, behind one lock.
#[derive(Debug)]
pub struct State<R, S> {
    functions: IdMap<u16, FunctionState>,
    names: HashMap<String, u16>,
    workers: IdMap<u32, WorkerEntry<S>>,
    free_ids: Vec<u32>,
    next_id: u32,
    calls: IdMap<CallId, CallRecord<R>>,
    deadlines: BTreeSet<(u64, CallId)>,
    next_external_seq: u32,
    draining: bool,
    direct_calls: bool,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error kind.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

impl Refusal {
    fn new(kind: ErrorKind, message: String) -> Refusal {
        Refusal { kind, message }
    }
}

type Actions<R, S> = Vec<Action<R, S>>;

impl<R, S: Clone> State<R, S> {
    /// A state for these functions.
    pub fn new(functions: &[FunctionConfig]) -> State<R, S> {
        let mut map = IdMap::default();
        let mut names = HashMap::new();
        for f in functions {
            names.insert(f.name.clone(), f.id);
            map.insert(
                f.id,
                FunctionState {
                    config: Arc::new(f.clone()),
                    queue: VecDeque::new(),
                    idle: Vec::new(),
                    running: 0,
                    ready_workers: 0,
                    retiring: 0,
                    requested: 0,
                    requested_at: 0,
                    limiter: Limiter::new(f.concurrency.clone()),
                    metrics: FunctionMetrics::default(),
                    completed: 0,
                    failed: 0,
                    leased: 0,
                    direct_calls: 0,
                    revoked_at: None,
                },
            );
        }
        State {
            functions: map,
            names,
            workers: IdMap::default(),
            free_ids: Vec::new(),
            next_id: 1,
            calls: IdMap::default(),
            deadlines: BTreeSet::new(),
            next_external_seq: 1,
            draining: false,
            direct_calls: false,
        }
    }

    /// Lets the engine lease workers to frequent callers (direct lanes; ring transport).
    pub fn set_direct_calls(&mut self, on: bool) {
        self.direct_calls = on;
    }

    /// Leases in force (including revoked ones whose callee has not answered yet).
    pub fn leases(&self) -> usize {
        self.functions.values().map(|f| f.leased).sum()
    }

    /// The function called `name`.
    pub fn function_by_name(&self, name: &str) -> Option<&FunctionState> {
        self.names.get(name).and_then(|id| self.functions.get(id))
    }

    /// The function with `id`.
    pub fn function(&self, id: u16) -> Option<&FunctionState> {
        self.functions.get(&id)
    }

    /// All functions.
    pub fn functions(&self) -> impl Iterator<Item = &FunctionState> {
        self.functions.values()
    }

    /// All workers.
    pub fn workers(&self) -> impl Iterator<Item = (&u32, &WorkerEntry<S>)> {
        self.workers.iter()
    }

    /// Calls in flight.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Stops admitting new calls (shutdown) and revokes every lease; calls in flight go on.
    pub fn start_draining(&mut self) -> Actions<R, S> {
        self.draining = true;
        let mut actions = Vec::new();
        let callees: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.lease.is_some_and(|l| !l.revoking))
            .map(|(id, _)| *id)
            .collect();
        for callee in callees {
            self.revoke(callee, false, &mut actions);
        }
        actions
    }

    /// Ends every call still in flight (running or queued) with `Shutdown`: the drain period
    /// `drain` is over, and each caller gets an answer now instead of losing its connection
    /// when the engine stops. Goes through `fail_call`, so a call ends
    /// exactly once; a worker's late answer is dropped as after a deadline.
    pub fn end_calls_in_flight(&mut self, drain: std::time::Duration, now: u64) -> Actions<R, S> {
        let text = format!(
            "the engine is shutting down: the call did not finish within the drain period \
             (drain_timeout_ms = {})",
            drain.as_millis()
        );
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        let mut actions = Vec::new();
        for id in ids {
            self.fail_call(id, ErrorKind::Shutdown, &text, now, &mut actions);
        }
        actions
    }

    /// The next sequence number for an external call.
    pub fn next_external_id(&mut self, function_id: u16) -> CallId {
        let seq = self.next_external_seq;
        self.next_external_seq = self.next_external_seq.wrapping_add(1).max(1);
        CallId::new(function_id, 0, 0, seq)
    }

    /// Reserves a worker id (recycled ids first).
    pub fn reserve_worker_id(&mut self) -> Result<u32, Refusal> {
        match self.free_ids.pop() {
            Some(id) => Ok(id),
            None if self.next_id <= CallId::MAX_CALLER => {
                self.next_id += 1;
                Ok(self.next_id - 1)
            }
            None => Err(Refusal::new(
                ErrorKind::Overloaded,
                format!("all {} worker ids are in use", CallId::MAX_CALLER),
            )),
        }
    }

    /// Gives back an id reserved for a worker whose handshake failed.
    pub fn release_worker_id(&mut self, id: u32) {
        if !self.workers.contains_key(&id) && !self.free_ids.contains(&id) {
            self.free_ids.push(id);
        }
    }

    /// Registers logical worker `id` (reserved with [`State::reserve_worker_id`]).
    pub fn add_worker(&mut self, id: u32, function_id: u16, pid: u32, language: &str, sender: S) {
        self.workers.insert(
            id,
            WorkerEntry {
                function_id,
                pid,
                language: language.to_string(),
                sender,
                ready: false,
                current: None,
                retiring: false,
                lease: None,
                lanes: 0,
                streak: Streak::default(),
            },
        );
    }

    /// The worker finished its handshake: it takes queued work or becomes idle.
    /// `cold_start_ns`: how long its process took from start to ready, when known.
    pub fn worker_ready(&mut self, id: u32, now: u64, cold_start_ns: Option<u64>) -> Actions<R, S> {
        let Some(w) = self.workers.get_mut(&id) else {
            return Vec::new();
        };
        w.ready = true;
        let function_id = w.function_id;
        if let Some(f) = self.functions.get_mut(&function_id) {
            f.ready_workers += 1;
            f.requested = f.requested.saturating_sub(1);
            if let Some(ns) = cold_start_ns {
                f.metrics.cold_start.record(ns);
            }
        }
        let mut actions = Vec::new();
        self.take_next_or_idle(id, function_id, now, &mut actions);
        actions
    }

    /// Admits a call: dispatches it to an idle worker or queues it.
    pub fn admit(
        &mut self,
        id: CallId,
        reply: ReplyTo<R>,
        dispatch: Box<Message>,
        now: u64,
    ) -> Result<Actions<R, S>, (Refusal, ReplyTo<R>)> {
        let function_id = id.function();
        if let ReplyTo::Worker(caller) = &reply {
            if let Some(w) = self.workers.get_mut(caller) {
                w.streak.called(function_id, now);
            }
        }
        let Some(f) = self.functions.get_mut(&function_id) else {
            let refusal = Refusal::new(
                ErrorKind::FunctionNotFound,
                format!("no function with id {function_id}"),
            );
            return Err((refusal, reply));
        };
        if self.draining {
            f.metrics.count(Some(ErrorKind::Shutdown));
            let refusal = Refusal::new(
                ErrorKind::Shutdown,
                "the engine is shutting down".to_string(),
            );
            return Err((refusal, reply));
        }
        f.limiter.on_arrival(now);
        let can_run = f.running < f.limiter.tau(now) && f.queue.is_empty();
        let idle = if can_run {
            f.idle.pop().map(|(w, _)| w)
        } else {
            None
        };
        if idle.is_none() && f.queue.len() >= f.config.queue_bound {
            f.metrics.count(Some(ErrorKind::Overloaded));
            let refusal = Refusal::new(
                ErrorKind::Overloaded,
                format!(
                    "function {} has {} calls queued (queue_bound {})",
                    f.config.name,
                    f.queue.len(),
                    f.config.queue_bound
                ),
            );
            return Err((refusal, reply));
        }
        let timeout_ns = u64::try_from(f.config.timeout.as_nanos()).unwrap_or(u64::MAX);
        let own_deadline = now.saturating_add(timeout_ns);
        let deadline_ns = match dispatch.header.deadline_ns {
            0 => own_deadline,
            d => d.min(own_deadline),
        };
        let mut dispatch = dispatch;
        dispatch.header.kind = Kind::Dispatch;
        dispatch.header.deadline_ns = deadline_ns;
        self.calls.insert(
            id,
            CallRecord {
                reply,
                dispatch,
                worker: None,
                recv_ns: now,
                dispatch_ns: 0,
                deadline_ns,
            },
        );
        self.deadlines.insert((deadline_ns, id));
        let mut actions = Vec::new();
        match idle {
            Some(w) => self.dispatch_to(w, id, now, &mut actions),
            None => {
                let mut reclaim = false;
                if let Some(f) = self.functions.get_mut(&function_id) {
                    f.queue.push_back(id);
                    reclaim = f.idle.is_empty() && f.leased > 0;
                }
                if reclaim {
                    self.reclaim_lease(function_id, now, &mut actions);
                }
                self.drain_queue(function_id, now, &mut actions);
            }
        }
        Ok(actions)
    }

    /// A call of `function_id` waits and no worker is idle: revoke one of its leases (the
    /// callee comes back when its current lane call, if any, ends).
    fn reclaim_lease(&mut self, function_id: u16, now: u64, actions: &mut Actions<R, S>) {
        let callee = self
            .workers
            .iter()
            .find(|(_, w)| w.function_id == function_id && w.lease.is_some_and(|l| !l.revoking))
            .map(|(id, _)| *id);
        if let Some(callee) = callee {
            if let Some(f) = self.functions.get_mut(&function_id) {
                f.revoked_at = Some(now);
            }
            self.revoke(callee, false, actions);
        }
    }

    fn lease_ref(&self, callee: u32) -> Option<LeaseRef<S>> {
        let w = self.workers.get(&callee)?;
        let lease = w.lease?;
        let holder = self.workers.get(&lease.holder)?;
        Some(LeaseRef {
            holder: lease.holder,
            holder_sender: holder.sender.clone(),
            lane: lease.lane,
            callee,
            callee_sender: w.sender.clone(),
        })
    }

    fn revoke(&mut self, callee: u32, holder_gone: bool, actions: &mut Actions<R, S>) {
        let Some(lease) = self.lease_ref(callee) else {
            return;
        };
        if let Some(l) = self.workers.get_mut(&callee).and_then(|w| w.lease.as_mut()) {
            l.revoking = true;
        }
        actions.push(Action::Revoke { lease, holder_gone });
    }

    /// Leases `callee` (just idle) to `holder` when the holder keeps calling its function.
    fn maybe_lease(&mut self, holder: u32, callee: u32, now: u64, actions: &mut Actions<R, S>) {
        if !self.direct_calls || self.draining {
            return;
        }
        let Some(function_id) = self.workers.get(&callee).map(|w| w.function_id) else {
            return;
        };
        let Some(h) = self.workers.get_mut(&holder) else {
            return;
        };
        let s = &mut h.streak;
        s.last_ns = now;
        let hot = s.function_id == function_id && s.calls >= LEASE_AFTER_CALLS;
        let free_lane = (0..LANES).find(|i| h.lanes & (1 << i) == 0);
        let (Some(lane), false, true) = (free_lane, h.retiring, hot) else {
            return;
        };
        let Some(f) = self.functions.get_mut(&function_id) else {
            return;
        };
        let cooling = f
            .revoked_at
            .is_some_and(|t| now.saturating_sub(t) < LEASE_COOLDOWN_NS);
        let Some(at) = f.idle.iter().position(|(w, _)| *w == callee) else {
            return;
        };
        if cooling || !f.queue.is_empty() {
            return;
        }
        f.idle.remove(at);
        f.leased += 1;
        let timeout_ms = u32::try_from(f.config.timeout.as_millis()).unwrap_or(u32::MAX);
        if let Some(h) = self.workers.get_mut(&holder) {
            h.lanes |= 1 << lane;
            h.streak.calls = 0;
        }
        if let Some(c) = self.workers.get_mut(&callee) {
            c.lease = Some(Lease {
                holder,
                lane,
                revoking: false,
            });
        }
        if let Some(lease) = self.lease_ref(callee) {
            actions.push(Action::Grant {
                lease,
                function_id,
                timeout_ms,
            });
        }
    }

    /// Ends `callee`'s lease to `holder` (revoked and done, or never written): the callee
    /// takes queued work or becomes idle. Ignored unless that lease is in force.
    pub fn end_lease(&mut self, callee: u32, holder: u32, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        let Some(w) = self.workers.get_mut(&callee) else {
            return actions;
        };
        let Some(lease) = w.lease.filter(|l| l.holder == holder) else {
            return actions;
        };
        w.lease = None;
        let function_id = w.function_id;
        if let Some(f) = self.functions.get_mut(&function_id) {
            f.leased = f.leased.saturating_sub(1);
        }
        if let Some(h) = self.workers.get_mut(&holder) {
            h.lanes &= !(1 << lease.lane);
        }
        self.take_next_or_idle(callee, function_id, now, &mut actions);
        actions
    }

    /// A callee's tally of the calls it ran on its lane (see `gloam_core::tally`): counts
    /// them, feeds the limiter, and ends the lease when the record says so.
    pub fn lane_call_done(&mut self, callee: u32, record: &Message, now: u64) -> Actions<R, S> {
        let Some(function_id) = self.workers.get(&callee).map(|w| w.function_id) else {
            return Vec::new();
        };
        let tally = match Tally::from_message(record) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(worker = callee, "ignored a lane tally: {e}");
                return Vec::new();
            }
        };
        let calls = tally.calls();
        if let Some(f) = self.functions.get_mut(&function_id) {
            let ok = u64::from(tally.outcomes[0]);
            f.direct_calls += u64::from(calls);
            f.completed += ok;
            f.failed += u64::from(calls) - ok;
            if calls > 0 {
                f.limiter.on_arrivals(now, calls);
                f.limiter
                    .on_completion(tally.duration.sum_ns / u64::from(calls));
            }
            let m = &mut f.metrics;
            for (slot, n) in m.outcomes.iter_mut().zip(tally.outcomes) {
                *slot += u64::from(n);
            }
            m.duration.add_tally(&tally.duration);
            m.recent.add_tally(now, &tally.duration);
            m.processing.add_tally(&tally.processing);
            m.overhead.add_tally(&tally.delay);
            let mut queued = gloam_core::tally::TallyHistogram::default();
            queued.counts[0] = calls;
            m.queueing.add_tally(&queued);
        }
        if record.header.flags & gloam_core::protocol::flags::LANE_END != 0 {
            self.end_lease(callee, tally.holder, now)
        } else {
            Vec::new()
        }
    }

    fn dispatch_to(&mut self, worker: u32, id: CallId, now: u64, actions: &mut Actions<R, S>) {
        let (Some(w), Some(rec)) = (self.workers.get_mut(&worker), self.calls.get_mut(&id)) else {
            return;
        };
        w.current = Some(id);
        rec.worker = Some(worker);
        rec.dispatch_ns = now;
        let mut msg = rec.dispatch.clone();
        msg.header.worker_id = worker;
        if let Some(f) = self.functions.get_mut(&id.function()) {
            f.running += 1;
        }
        actions.push(Action::Send {
            worker,
            sender: w.sender.clone(),
            msg,
        });
    }

    /// Makes a free worker idle (unless it is retiring), then lets the queue move.
    fn take_next_or_idle(
        &mut self,
        worker: u32,
        function_id: u16,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let retiring = self.workers.get(&worker).is_none_or(|w| w.retiring);
        if !retiring {
            if let Some(f) = self.functions.get_mut(&function_id) {
                f.idle.push((worker, now));
            }
        }
        self.drain_queue(function_id, now, actions);
    }

    /// Dispatches queued calls to idle workers while fewer than τ run; sheds internal calls
    /// that waited too long (when configured); asks for a worker when calls still wait and
    /// the pool is below τ.
    fn drain_queue(&mut self, function_id: u16, now: u64, actions: &mut Actions<R, S>) {
        let Some(f) = self.functions.get(&function_id) else {
            return;
        };
        let tau = f.limiter.tau_queued(now, f.queue.len());
        loop {
            let Some(f) = self.functions.get_mut(&function_id) else {
                return;
            };
            if f.running >= tau || f.idle.is_empty() {
                break;
            }
            let Some(next) = f.queue.pop_front() else {
                break;
            };
            let Some(rec) = self.calls.get(&next) else {
                continue; // ended while queued (deadline)
            };
            let waited = now.saturating_sub(rec.recv_ns);
            if matches!(rec.reply, ReplyTo::Worker(_)) && f.limiter.should_shed(waited) {
                let text = format!(
                    "internal call to {} shed after waiting {} us in the queue (max_relative_queueing_delay)",
                    f.config.name,
                    waited / 1000
                );
                self.fail_call(next, ErrorKind::Overloaded, &text, now, actions);
                continue;
            }
            let Some((worker, _)) = f.idle.pop() else {
                break;
            };
            self.dispatch_to(worker, next, now, actions);
        }
        self.maybe_grow(function_id, tau, now, actions);
    }

    /// Asks for one more worker process when calls wait and the pool is below τ.
    fn maybe_grow(&mut self, function_id: u16, tau: usize, now: u64, actions: &mut Actions<R, S>) {
        let Some(f) = self.functions.get_mut(&function_id) else {
            return;
        };
        if f.requested > 0 && now.saturating_sub(f.requested_at) > GROWTH_PATIENCE_NS {
            f.requested = 0; // that process never came: allow asking again
        }
        let pool = f.ready_workers.saturating_sub(f.retiring) + f.requested;
        let waiting = f.queue.iter().any(|id| self.calls.contains_key(id));
        if waiting
            && f.idle.is_empty()
            && pool < tau
            && pool < f.config.max_workers
            && f.config.command.is_some()
            && f.limiter.try_grow(now)
        {
            f.requested += f.config.workers_per_process;
            f.requested_at = now;
            actions.push(Action::Grow(function_id));
        }
    }

    /// Retires idle worker processes beyond max(2τ, min_workers) that stayed idle for the
    /// function's shrink grace (a process goes only when all its logical workers qualify).
    pub fn shrink(&mut self, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        let ids: Vec<u16> = self.functions.keys().copied().collect();
        for fid in ids {
            let Some(f) = self.functions.get(&fid) else {
                continue;
            };
            let Some(grace) = f.limiter.config().shrink_grace else {
                continue;
            };
            let grace = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
            let keep = f.limiter.keep_workers(now);
            let mut live = f.ready_workers.saturating_sub(f.retiring);
            if live <= keep {
                continue;
            }
            let long_idle: Vec<u32> = f
                .idle
                .iter()
                .filter(|(_, since)| now.saturating_sub(*since) >= grace)
                .map(|(w, _)| *w)
                .collect();
            let mut pids: Vec<u32> = long_idle
                .iter()
                .filter_map(|w| self.workers.get(w).map(|e| e.pid))
                .collect();
            pids.sort_unstable();
            pids.dedup();
            for pid in pids {
                let members: Vec<u32> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| w.function_id == fid && w.pid == pid && w.ready)
                    .map(|(id, _)| *id)
                    .collect();
                if !members.iter().all(|m| long_idle.contains(m)) || live < keep + members.len() {
                    continue;
                }
                live -= members.len();
                for id in members {
                    self.retire(fid, id, &mut actions);
                }
                actions.push(Action::RetireProcess {
                    function_id: fid,
                    pid,
                });
            }
        }
        actions
    }

    /// Revokes every lease worker `holder` holds. When the holder is gone, leases already being
    /// revoked are revoked again: a call it began but never handed over no longer keeps them.
    fn revoke_held_by(&mut self, holder: u32, holder_gone: bool, actions: &mut Actions<R, S>) {
        let callees: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                w.lease
                    .is_some_and(|l| l.holder == holder && (holder_gone || !l.revoking))
            })
            .map(|(id, _)| *id)
            .collect();
        for callee in callees {
            self.revoke(callee, holder_gone, actions);
        }
    }

    fn retire(&mut self, function_id: u16, id: u32, actions: &mut Actions<R, S>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.retiring {
            return;
        }
        w.retiring = true;
        let holds_lanes = w.lanes != 0;
        let mut h = Header::new(Kind::Retire);
        h.worker_id = id;
        actions.push(Action::Send {
            worker: id,
            sender: w.sender.clone(),
            msg: Box::new(Message::new(h)),
        });
        if let Some(f) = self.functions.get_mut(&function_id) {
            f.idle.retain(|(i, _)| *i != id);
            f.retiring += 1;
        }
        if holds_lanes {
            self.revoke_held_by(id, false, actions);
        }
    }

    /// A worker answered (`COMPLETE` or `FAILED`) the call it runs.
    ///
    /// Returns the actions, or an error naming the protocol violation (the worker answered a
    /// call it does not run).
    pub fn finish(
        &mut self,
        worker: u32,
        msg: Box<Message>,
        now: u64,
    ) -> Result<Actions<R, S>, String> {
        let id = msg.header.call_id();
        let Some(w) = self.workers.get_mut(&worker) else {
            return Ok(Vec::new());
        };
        if w.current != Some(id) {
            return Err(format!(
                "worker {worker} answered call {id}, but it runs {}",
                w.current.map_or("nothing".to_string(), |c| c.to_string())
            ));
        }
        w.current = None;
        let function_id = w.function_id;
        if let Some(f) = self.functions.get_mut(&function_id) {
            f.running = f.running.saturating_sub(1);
        }
        let mut actions = Vec::new();
        self.take_next_or_idle(worker, function_id, now, &mut actions);
        match self.calls.remove(&id) {
            Some(rec) => {
                if let (ReplyTo::Worker(holder), Kind::Complete) = (&rec.reply, msg.header.kind) {
                    let holder = *holder;
                    self.maybe_lease(holder, worker, now, &mut actions);
                }
                self.deadlines.remove(&(rec.deadline_ns, id));
                let ok = msg.header.kind == Kind::Complete;
                if let Some(f) = self.functions.get_mut(&function_id) {
                    let running = now.saturating_sub(rec.dispatch_ns);
                    let m = &mut f.metrics;
                    m.ended(now, msg.header.status, now.saturating_sub(rec.recv_ns));
                    m.queueing
                        .record(rec.dispatch_ns.saturating_sub(rec.recv_ns));
                    m.processing.record(msg.header.processing_ns);
                    m.overhead
                        .record(running.saturating_sub(msg.header.processing_ns));
                    if ok {
                        f.limiter.on_completion(running);
                        f.completed += 1;
                    } else {
                        f.failed += 1;
                    }
                }
                if rec.input_in_shm() {
                    actions.push(Action::RemoveShm(
                        id,
                        gloam_core::ipc_root::PayloadSide::Input,
                    ));
                }
                let timing = Timing {
                    queued_ns: rec.dispatch_ns.saturating_sub(rec.recv_ns),
                    running_ns: now.saturating_sub(rec.dispatch_ns),
                    processing_ns: msg.header.processing_ns,
                };
                route(&self.workers, rec.reply, msg, timing, &mut actions);
            }
            None => {
                // The call already ended (deadline): drop the late result and its file.
                if msg.header.payload_loc == PayloadLocation::Shm {
                    actions.push(Action::RemoveShm(
                        id,
                        gloam_core::ipc_root::PayloadSide::Output,
                    ));
                }
            }
        }
        Ok(actions)
    }

    /// Ends `id` with a failure, if it is still in flight.
    fn fail_call(
        &mut self,
        id: CallId,
        kind: ErrorKind,
        text: &str,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let Some(rec) = self.calls.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(rec.deadline_ns, id));
        if let Some(f) = self.functions.get_mut(&id.function()) {
            f.failed += 1;
            f.metrics
                .ended(now, Some(kind), now.saturating_sub(rec.recv_ns));
        }
        if rec.input_in_shm() {
            actions.push(Action::RemoveShm(
                id,
                gloam_core::ipc_root::PayloadSide::Input,
            ));
        }
        let mut h = Header::new(Kind::Failed);
        h.set_call_id(id);
        let msg = Box::new(Message::failure(h, kind, text));
        route(&self.workers, rec.reply, msg, Timing::default(), actions);
    }

    /// Fails an internal call that could not be admitted, straight back to its caller.
    pub fn refuse_internal(&self, caller: u32, id: CallId, refusal: &Refusal) -> Actions<R, S> {
        let Some(w) = self.workers.get(&caller) else {
            return Vec::new();
        };
        let mut h = Header::new(Kind::Failed);
        h.set_call_id(id);
        h.worker_id = caller;
        vec![Action::Send {
            worker: caller,
            sender: w.sender.clone(),
            msg: Box::new(Message::failure(h, refusal.kind, &refusal.message)),
        }]
    }

    /// Ends every call whose deadline has passed; returns the actions and the next deadline.
    pub fn expire(&mut self, now: u64) -> (Actions<R, S>, Option<u64>) {
        let mut actions = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                return (actions, Some(deadline));
            }
            self.deadlines.pop_first();
            let (name, queued) = match self.calls.get(&id) {
                Some(rec) => (
                    self.functions
                        .get(&id.function())
                        .map_or(String::new(), |f| f.config.name.clone()),
                    rec.worker.is_none(),
                ),
                None => continue,
            };
            let text = if queued {
                format!("call to {name} waited in the queue past its deadline")
            } else {
                format!("call to {name} did not finish by its deadline")
            };
            self.fail_call(id, ErrorKind::Timeout, &text, now, &mut actions);
        }
        (actions, None)
    }

    /// The earliest deadline in flight.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// A worker is gone (its process died or it misbehaved): fail its call, orphan the
    /// internal calls it made, free its id.
    pub fn remove_worker(&mut self, id: u32, reason: &str, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        if self.workers.get(&id).is_some_and(|w| w.lanes != 0) {
            self.revoke_held_by(id, true, &mut actions);
        }
        let Some(w) = self.workers.remove(&id) else {
            return actions;
        };
        if let Some(f) = self.functions.get_mut(&w.function_id) {
            if w.ready {
                f.ready_workers = f.ready_workers.saturating_sub(1);
            }
            if w.retiring {
                f.retiring = f.retiring.saturating_sub(1);
            }
            f.idle.retain(|(i, _)| *i != id);
        }
        if let Some(lease) = w.lease {
            if let Some(f) = self.functions.get_mut(&w.function_id) {
                f.leased = f.leased.saturating_sub(1);
            }
            if let Some(h) = self.workers.get_mut(&lease.holder) {
                h.lanes &= !(1 << lease.lane);
                let name = self
                    .functions
                    .get(&w.function_id)
                    .map_or(String::new(), |f| f.config.name.clone());
                actions.push(Action::FailLane {
                    lease: LeaseRef {
                        holder: lease.holder,
                        holder_sender: h.sender.clone(),
                        lane: lease.lane,
                        callee: id,
                        callee_sender: w.sender.clone(),
                    },
                    text: format!("worker {id} of {name} (pid {}) {reason}", w.pid),
                });
            }
        }
        if let Some(call) = w.current {
            if let Some(f) = self.functions.get_mut(&w.function_id) {
                f.running = f.running.saturating_sub(1);
            }
            actions.push(Action::RemoveShm(
                call,
                gloam_core::ipc_root::PayloadSide::Output,
            ));
            let name = self
                .functions
                .get(&w.function_id)
                .map_or(String::new(), |f| f.config.name.clone());
            self.fail_call(
                call,
                ErrorKind::WorkerCrashed,
                &format!("worker {id} of {name} (pid {}) {reason}", w.pid),
                now,
                &mut actions,
            );
        }
        for rec in self.calls.values_mut() {
            if matches!(rec.reply, ReplyTo::Worker(c) if c == id) {
                rec.reply = ReplyTo::Nobody;
            }
        }
        self.free_ids.push(id);
        actions
    }
}

/// Hands a result to its caller: the external handle, or the calling worker's channel.
fn route<R, S: Clone>(
    workers: &IdMap<u32, WorkerEntry<S>>,
    reply: ReplyTo<R>,
    mut msg: Box<Message>,
    timing: Timing,
    actions: &mut Actions<R, S>,
) {
    match reply {
        ReplyTo::External(to) => {
            let outcome = match msg.header.kind {
                Kind::Complete => Outcome::Complete(msg, timing),
                _ => Outcome::Failed(
                    msg.header.status.unwrap_or(ErrorKind::Internal),
                    msg.failure_text(),
                ),
            };
            actions.push(Action::Reply { to, outcome });
        }
        ReplyTo::Worker(caller) => match workers.get(&caller) {
            Some(w) => {
                msg.header.worker_id = caller;
                actions.push(Action::Send {
                    worker: caller,
                    sender: w.sender.clone(),
                    msg,
                });
            }
            None => drop_result(&msg, actions),
        },
        ReplyTo::Nobody => drop_result(&msg, actions),
    }
}

fn drop_result<R, S>(msg: &Message, actions: &mut Actions<R, S>) {
    if msg.header.kind == Kind::Complete && msg.header.payload_loc == PayloadLocation::Shm {
        actions.push(Action::RemoveShm(
            msg.header.call_id(),
            gloam_core::ipc_root::PayloadSide::Output,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MS: u64 = 1_000_000;
    type TestState = State<u64, u32>;

    fn state(function: &str) -> TestState {
        let text = format!("[functions.F]\ncommand = \"/bin/true\"\n{function}\n");
        let config = Config::parse(&text, std::path::Path::new("/t/gloam.toml")).unwrap();
        State::new(&config.functions)
    }

    fn add_ready(st: &mut TestState, pid: u32, now: u64) -> (u32, Vec<Action<u64, u32>>) {
        let id = st.reserve_worker_id().unwrap();
        st.add_worker(id, 1, pid, "test", id);
        (id, st.worker_ready(id, now, None))
    }

    fn call(st: &mut TestState, seq: u32, now: u64) -> (CallId, Vec<Action<u64, u32>>) {
        let id = CallId::new(1, 0, 0, seq);
        let mut h = Header::new(Kind::Dispatch);
        h.set_call_id(id);
        let actions = st
            .admit(
                id,
                ReplyTo::External(u64::from(seq)),
                Box::new(Message::new(h)),
                now,
            )
            .map_err(|(r, _)| r)
            .unwrap();
        (id, actions)
    }

    fn complete(st: &mut TestState, worker: u32, id: CallId, now: u64) -> Vec<Action<u64, u32>> {
        let mut h = Header::new(Kind::Complete);
        h.set_call_id(id);
        st.finish(worker, Box::new(Message::new(h)), now).unwrap()
    }

    fn sends(actions: &[Action<u64, u32>]) -> Vec<u32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { worker, msg, .. } if msg.header.kind == Kind::Dispatch => {
                    Some(*worker)
                }
                _ => None,
            })
            .collect()
    }

    fn grows(actions: &[Action<u64, u32>]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Grow(_)))
            .count()
    }

    /// Functions G (id 1, the caller) and F (id 2), one worker each, direct calls on.
    fn lease_state() -> (TestState, u32, u32) {
        let text = "[functions.G]\nid = 1\ncommand = \"/bin/true\"\n\
                    [functions.F]\nid = 2\ncommand = \"/bin/true\"\nmax_workers = 1\n";
        let config = Config::parse(text, std::path::Path::new("/t/gloam.toml")).unwrap();
        let mut st = State::new(&config.functions);
        st.set_direct_calls(true);
        let mut ready = |function_id| {
            let id = st.reserve_worker_id().unwrap();
            st.add_worker(id, function_id, 100 + id, "test", id);
            st.worker_ready(id, 0, None);
            id
        };
        let (a, b) = (ready(1), ready(2));
        (st, a, b)
    }

    fn internal(st: &mut TestState, caller: u32, seq: u32, now: u64) -> CallId {
        let id = CallId::new(2, 0, caller, seq);
        let mut h = Header::new(Kind::Invoke);
        h.set_call_id(id);
        st.admit(id, ReplyTo::Worker(caller), Box::new(Message::new(h)), now)
            .map_err(|(r, _)| r)
            .unwrap();
        id
    }

    fn grants(actions: &[Action<u64, u32>]) -> Vec<(u32, u32, u8)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Grant { lease, .. } => Some((lease.holder, lease.callee, lease.lane)),
                _ => None,
            })
            .collect()
    }

    fn revokes(actions: &[Action<u64, u32>]) -> Vec<(u32, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Revoke { lease, holder_gone } => Some((lease.callee, *holder_gone)),
                _ => None,
            })
            .collect()
    }

    /// Two quick internal calls from `a` to F: the second one's answer grants the lease.
    fn lease(st: &mut TestState, a: u32, b: u32, t: u64) {
        let id = internal(st, a, 1, t);
        assert!(grants(&complete(st, b, id, t + MS)).is_empty());
        let id = internal(st, a, 2, t + 2 * MS);
        assert_eq!(grants(&complete(st, b, id, t + 3 * MS)), vec![(a, b, 0)]);
        assert_eq!(st.function(2).unwrap().leased, 1);
        assert!(st.function(2).unwrap().idle.is_empty());
    }

    #[test]
    fn a_frequent_caller_is_leased_a_callee_that_comes_back_when_others_need_it() {
        let (mut st, a, b) = lease_state();
        // Calls far apart make no streak.
        let id = internal(&mut st, a, 1, 0);
        complete(&mut st, b, id, MS);
        let id = internal(&mut st, a, 2, 100 * MS);
        assert!(grants(&complete(&mut st, b, id, 101 * MS)).is_empty());
        lease(&mut st, a, b, 200 * MS);

        // Lane calls are counted from the callee's tallies.
        let mut tally = Tally {
            holder: a,
            ..Tally::default()
        };
        tally.record(None, 1_000, 500);
        tally.record(Some(ErrorKind::HandlerFailed), 1_000, 500);
        assert!(st
            .lane_call_done(b, &tally.to_message(b, false), 204 * MS)
            .is_empty());
        let f = st.function(2).unwrap();
        assert_eq!((f.direct_calls, f.completed, f.failed), (2, 5, 1));
        assert_eq!(f.metrics.duration.count, 6);

        // An external call finds no idle worker: it waits and the lease is revoked.
        let (ext, actions) = call_f(&mut st, 9, 205 * MS);
        assert_eq!(revokes(&actions), vec![(b, false)]);
        assert!(sends(&actions).is_empty());
        // The callee's last record says the lease ended: it takes the queued call.
        let last = Tally {
            holder: a,
            ..Tally::default()
        };
        assert_eq!(
            sends(&st.lane_call_done(b, &last.to_message(b, true), 206 * MS)),
            vec![b]
        );
        assert_eq!(st.function(2).unwrap().leased, 0);
        complete(&mut st, b, ext, 207 * MS);
        // Within the cool-down there is no new lease; after it there is.
        let id = internal(&mut st, a, 10, 208 * MS);
        complete(&mut st, b, id, 209 * MS);
        let id = internal(&mut st, a, 11, 210 * MS);
        assert!(grants(&complete(&mut st, b, id, 211 * MS)).is_empty());
        lease(&mut st, a, b, 300 * MS);
    }

    #[test]
    fn leases_end_with_their_holder_or_their_callee() {
        let (mut st, a, b) = lease_state();
        lease(&mut st, a, b, 0);
        // The holder dies: its lease is revoked (the engine ends it when the lane is free).
        let actions = st.remove_worker(a, "exited", 10 * MS);
        assert_eq!(revokes(&actions), vec![(b, true)]);
        assert!(sends(&st.end_lease(b, a, 11 * MS)).is_empty());
        assert_eq!(st.function(2).unwrap().idle.len(), 1);

        // The callee dies while leased: the holder's waiting call is failed by the engine.
        let (mut st, a, b) = lease_state();
        lease(&mut st, a, b, 0);
        let actions = st.remove_worker(b, "exited", 10 * MS);
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::FailLane { text, .. } if text.contains("exited"))));
        assert_eq!(st.function(2).unwrap().leased, 0);
        assert_eq!(st.leases(), 0);
    }

    #[test]
    fn draining_revokes_every_lease() {
        let (mut st, a, b) = lease_state();
        lease(&mut st, a, b, 0);
        assert_eq!(revokes(&st.start_draining()), vec![(b, false)]);
        assert_eq!(st.leases(), 1, "until the engine sees the lane free");
        st.end_lease(b, a, MS);
        assert_eq!(st.leases(), 0);
    }

    fn call_f(st: &mut TestState, seq: u32, now: u64) -> (CallId, Vec<Action<u64, u32>>) {
        let id = CallId::new(2, 0, 0, seq);
        let mut h = Header::new(Kind::Dispatch);
        h.set_call_id(id);
        let actions = st
            .admit(id, ReplyTo::External(9), Box::new(Message::new(h)), now)
            .map_err(|(r, _)| r)
            .unwrap();
        (id, actions)
    }

    #[test]
    fn queue_drains_on_completion_and_on_new_workers_with_min_zero() {
        let mut st = state("min_workers = 0\nmax_workers = 4");
        // No worker at all: the call waits, and the pool is asked to grow.
        let (c1, actions) = call(&mut st, 1, 0);
        assert!(sends(&actions).is_empty());
        assert_eq!(grows(&actions), 1);
        // The new worker takes it at once (τ ≥ 1 even with min_workers = 0).
        let (w, actions) = add_ready(&mut st, 100, MS);
        assert_eq!(sends(&actions), vec![w]);
        let (c2, actions) = call(&mut st, 2, 2 * MS);
        assert!(sends(&actions).is_empty(), "one worker, busy: queued");
        let actions = complete(&mut st, w, c1, 3 * MS);
        assert_eq!(sends(&actions), vec![w], "completion drains the queue");
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Reply { to: 1, .. })));
        let actions = complete(&mut st, w, c2, 4 * MS);
        assert!(sends(&actions).is_empty());
        assert_eq!(st.function(1).unwrap().idle.len(), 1);
    }

    #[test]
    fn growth_is_rate_limited_bounded_and_resumes() {
        let mut st = state("min_workers = 1\nmax_workers = 3\ngrowth_interval_ms = 100");
        let (w, _) = add_ready(&mut st, 100, 0);
        let (c0, a) = call(&mut st, 1, MS);
        assert_eq!(sends(&a), vec![w]);
        let (_, a) = call(&mut st, 2, 2 * MS);
        assert_eq!(grows(&a), 1);
        let (_, a) = call(&mut st, 3, 3 * MS);
        assert_eq!(grows(&a), 0, "within the growth interval");
        let (_, a) = call(&mut st, 4, 150 * MS);
        assert_eq!(grows(&a), 1, "after the interval");
        let (_, a) = call(&mut st, 5, 400 * MS);
        assert_eq!(grows(&a), 0, "1 ready + 2 requested = max_workers");
        // The requested workers arrive and take queued calls in order.
        let (w2, a) = add_ready(&mut st, 101, 401 * MS);
        assert_eq!(sends(&a), vec![w2]);
        let (w3, a) = add_ready(&mut st, 102, 402 * MS);
        assert_eq!(sends(&a), vec![w3]);
        let a = complete(&mut st, w, c0, 403 * MS);
        assert_eq!(sends(&a), vec![w]);
    }

    #[test]
    fn limiter_holds_calls_back_to_tau() {
        // 4 idle workers; a steady 200/s of 1 ms calls needs τ = 1 (no headroom here).
        let mut st = state("min_workers = 1\nmax_workers = 4\nlimiter_headroom = 1");
        let workers: Vec<u32> = (0..4).map(|i| add_ready(&mut st, 100 + i, 0).0).collect();
        let mut now = MS;
        for seq in 1..=300u32 {
            now += 5 * MS;
            let (id, a) = call(&mut st, seq, now);
            let w = sends(&a)[0];
            assert!(workers.contains(&w));
            complete(&mut st, w, id, now + MS);
        }
        assert_eq!(st.function(1).unwrap().limiter.tau(now), 1);
        let (_, a) = call(&mut st, 1000, now + MS);
        assert_eq!(sends(&a).len(), 1);
        let (_, a) = call(&mut st, 1001, now + 2 * MS);
        assert!(
            sends(&a).is_empty(),
            "a second concurrent call waits for τ = 1"
        );
        assert_eq!(st.function(1).unwrap().queue.len(), 1);
    }

    #[test]
    fn idle_pool_shrinks_to_twice_tau_after_the_grace() {
        let mut st = state("min_workers = 1\nmax_workers = 8\nshrink_grace_ms = 1000");
        for pid in 0..6 {
            add_ready(&mut st, 200 + pid, 0);
        }
        assert!(st.shrink(500 * MS).is_empty(), "not idle long enough");
        let a = st.shrink(2000 * MS);
        let retired = a
            .iter()
            .filter(|a| matches!(a, Action::RetireProcess { .. }))
            .count();
        assert_eq!(retired, 4, "keep max(2τ, min) = 2 of 6");
        let f = st.function(1).unwrap();
        assert_eq!((f.ready_workers - f.retiring, f.idle.len()), (2, 2));
        assert!(
            st.shrink(3000 * MS).is_empty(),
            "never below 2τ / min_workers"
        );
    }

    #[test]
    fn queued_calls_past_their_deadline_time_out_without_dispatch() {
        let mut st = state("timeout_ms = 50");
        let (w, _) = add_ready(&mut st, 100, 0);
        let (c1, _) = call(&mut st, 1, 0);
        let (c2, _) = call(&mut st, 2, 0);
        let (a, _) = st.expire(60 * MS);
        let timeouts = a
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Reply {
                        outcome: Outcome::Failed(ErrorKind::Timeout, _),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(timeouts, 2);
        // The running call's late answer is dropped; the expired queued call is never sent.
        let a = complete(&mut st, w, c1, 70 * MS);
        assert!(sends(&a).is_empty());
        assert!(!a.iter().any(|a| matches!(a, Action::Reply { .. })));
        assert_eq!(st.calls_in_flight(), 0);
        let _ = c2;
    }

    #[test]
    fn calls_still_in_flight_when_the_drain_ends_fail_with_shutdown_once() {
        let mut st = state("");
        let (w, _) = add_ready(&mut st, 100, 0);
        let (running, _) = call(&mut st, 1, 0);
        let (_queued, _) = call(&mut st, 2, 0);
        st.start_draining();
        let a = st.end_calls_in_flight(std::time::Duration::from_millis(250), 10 * MS);
        let ended: Vec<&str> = a
            .iter()
            .filter_map(|a| match a {
                Action::Reply {
                    outcome: Outcome::Failed(ErrorKind::Shutdown, text),
                    ..
                } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 2, "{a:?}");
        assert!(ended.iter().all(|t| t.contains("drain_timeout_ms = 250")));
        assert_eq!(st.calls_in_flight(), 0);
        // The running call's late answer is dropped, and nothing is left to end.
        let a = complete(&mut st, w, running, 20 * MS);
        assert!(!a.iter().any(|a| matches!(a, Action::Reply { .. })));
        assert!(st
            .end_calls_in_flight(std::time::Duration::ZERO, 30 * MS)
            .is_empty());
    }
}
