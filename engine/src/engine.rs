//! The engine: owns the state, sends what the state decides, runs the deadline timer and takes
//! external calls from the gateway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, Notify};

use gloam_core::clock::now_ns;
use gloam_core::ipc_root::{IpcPaths, PayloadSide};
use gloam_core::lane::{self, LaneGrant};
use gloam_core::protocol::{flags, Header, Kind, Message, PayloadLocation, INLINE_CAPACITY};
use gloam_core::table::FunctionTable;
use gloam_core::{shm, ErrorKind};

use crate::config::{Config, Transport};
use crate::launcher::Launcher;
use crate::ring_link::{RingLink, RingPoller};
use crate::state::{Action, LeaseRef, Outcome, Refusal, ReplyTo, State, Timing};

/// Longest an I/O thread polls for an external call's answer.
const EXTERNAL_SPIN_CAP: Duration = Duration::from_micros(200);
/// Above this many calls in flight, I/O threads never poll (they are needed elsewhere).
const EXTERNAL_SPIN_MAX_IN_FLIGHT: usize = 2;

/// How often idle pools are checked for shrinking.
const SHRINK_CHECK: Duration = Duration::from_secs(1);

/// How the engine reaches one worker.
#[derive(Debug)]
pub enum WorkerLink {
    /// The write end of the worker's engine → worker FIFO.
    Fifo(pipe::Sender),
    /// The worker's ring file.
    Ring(Arc<RingLink>),
}

/// A shared handle on a worker's link.
pub type WorkerSender = Arc<WorkerLink>;
/// Where an external call's outcome is delivered.
pub type ExternalReply = oneshot::Sender<Outcome>;
pub(crate) type EngineState = State<ExternalReply, WorkerSender>;
pub(crate) type EngineAction = Action<ExternalReply, WorkerSender>;

/// The output of a successful external call.
#[derive(Debug)]
pub struct CallOutput {
    /// The output bytes.
    pub body: Bytes,
    /// Where the time went.
    pub timing: Timing,
}

/// One engine per node.
pub struct Engine {
    state: Mutex<EngineState>,
    paths: IpcPaths,
    config: Arc<Config>,
    table: Vec<u8>,
    timer: Notify,
    timer_next: AtomicU64,
    launchers: Mutex<HashMap<u16, Launcher>>,
    poller: Option<Arc<RingPoller>>,
}

impl Engine {
    /// An engine for `config` on the IPC root `paths` (created and locked by the caller). With
    /// the ring transport this creates the engine's doorbell and starts the ring poller thread.
    pub fn new(config: Arc<Config>, paths: IpcPaths) -> gloam_core::Result<Arc<Engine>> {
        let poller = match config.engine.transport {
            Transport::Ring => Some(RingPoller::new(&paths)?),
            Transport::Fifo => None,
        };
        let table = FunctionTable::new(
            config
                .functions
                .iter()
                .map(|f| (f.id, f.name.clone()))
                .collect(),
            config.engine.max_payload,
        )
        .encode();
        let mut state = State::new(&config.functions);
        state.set_direct_calls(poller.is_some() && config.engine.direct_calls);
        let engine = Arc::new(Engine {
            state: Mutex::new(state),
            paths,
            config,
            table,
            timer: Notify::new(),
            timer_next: AtomicU64::new(u64::MAX),
            launchers: Mutex::new(HashMap::new()),
            poller,
        });
        if let Some(p) = &engine.poller {
            p.spawn(Arc::downgrade(&engine)).map_err(|e| {
                gloam_core::Error::Internal(format!("starting the ring poller: {e}"))
            })?;
        }
        Ok(engine)
    }

    /// The ring poller, with the ring transport.
    pub(crate) fn poller(&self) -> Option<&Arc<RingPoller>> {
        self.poller.as_ref()
    }

    /// Tells the ring poller how many calls are in flight (it polls while some are).
    fn publish_in_flight(&self, st: &EngineState) {
        if let Some(p) = &self.poller {
            p.set_in_flight(st.calls_in_flight());
        }
    }

    /// Removes worker `worker` (gone or misbehaving): fails its call, removes its files, and
    /// stops reading its link. Idempotent.
    pub(crate) fn disconnect_worker(&self, worker: u32, reason: &str) {
        if let Some(p) = &self.poller {
            if let Err(bad) = p.remove(self, worker) {
                tracing::warn!(worker, "while disconnecting: {bad}");
            }
        }
        let actions = {
            let mut st = self.lock();
            let actions = st.remove_worker(worker, reason, now_ns());
            self.publish_in_flight(&st);
            actions
        };
        let crashed = actions
            .iter()
            .any(|a| matches!(a, Action::Send { .. } | Action::Reply { .. }));
        if crashed {
            tracing::warn!(worker, "worker {reason} while running a call");
        } else {
            tracing::debug!(worker, "worker {reason}");
        }
        self.apply(actions);
        gloam_core::channel::remove_fifos(&self.paths, worker);
        for file in self.paths.shm_files_of_caller(worker) {
            shm::remove(&file);
        }
    }

    /// Stops the ring poller thread.
    pub fn stop_poller(&self) {
        if let Some(p) = &self.poller {
            p.stop();
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, EngineState> {
        // The state is only mutated through methods that keep it consistent at every return;
        // a panic in one of them is a bug we would rather survive than cascade.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The IPC paths.
    pub fn paths(&self) -> &IpcPaths {
        &self.paths
    }

    /// The encoded function table sent in `WELCOME`.
    pub(crate) fn table(&self) -> &[u8] {
        &self.table
    }

    /// Hands the launcher of `function_id` to the engine, which grows and shrinks its pool.
    pub fn add_launcher(&self, function_id: u16, launcher: Launcher) {
        lock(&self.launchers).insert(function_id, launcher);
    }

    /// Takes every launcher back (shutdown).
    pub fn take_launchers(&self) -> Vec<Launcher> {
        lock(&self.launchers).drain().map(|(_, l)| l).collect()
    }

    /// Retires long-idle workers beyond 2τ, once a second, for as long as the engine runs.
    pub async fn run_shrinker(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SHRINK_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let actions = self.lock().shrink(now_ns());
            self.apply(actions);
        }
    }

    /// Performs what the state decided: sends messages, hands over outcomes, removes files.
    pub(crate) fn apply(&self, actions: Vec<EngineAction>) {
        for action in actions {
            match action {
                Action::Send {
                    worker,
                    sender,
                    mut msg,
                } => {
                    msg.header.send_ts = now_ns();
                    match sender.as_ref() {
                        WorkerLink::Ring(link) => {
                            link.send(&msg.to_bytes());
                        }
                        WorkerLink::Fifo(_) => send_to_worker(worker, sender, msg.to_bytes()),
                    }
                }
                Action::Reply { to, outcome } => {
                    if let Err(Outcome::Complete(msg, _)) = to.send(outcome) {
                        // The HTTP client went away: nobody will read the output file.
                        if msg.header.payload_loc == PayloadLocation::Shm {
                            shm::remove_call(
                                &self.paths,
                                msg.header.call_id(),
                                PayloadSide::Output,
                            );
                        }
                    }
                }
                Action::RemoveShm(id, side) => shm::remove_call(&self.paths, id, side),
                Action::Grow(function_id) => match lock(&self.launchers).get(&function_id) {
                    Some(l) => {
                        tracing::debug!(function = %l.spec().function, "pool grows by one process");
                        l.add_process();
                    }
                    None => tracing::debug!(function_id, "no launcher to grow the pool"),
                },
                Action::RetireProcess { function_id, pid } => {
                    if let Some(l) = lock(&self.launchers).get(&function_id) {
                        tracing::info!(function = %l.spec().function, pid, "pool shrinks: retiring an idle process");
                        l.retire_pid(pid);
                    }
                }
                Action::Grant {
                    lease,
                    function_id,
                    timeout_ms,
                } => self.grant(&lease, function_id, timeout_ms),
                Action::Revoke { lease, holder_gone } => self.revoke(&lease, holder_gone),
                Action::FailLane { lease, text } => self.fail_lane(&lease, &text),
            }
        }
    }

    /// Writes a lease into both files, or ends it at once when the holder's lane still holds
    /// an answer it has not read.
    fn grant(&self, lease: &LeaseRef<WorkerSender>, function_id: u16, timeout_ms: u32) {
        if let Some((holder, callee)) = ring_links(lease) {
            if holder.file().lane_reusable(usize::from(lease.lane)) {
                let grant = LaneGrant {
                    function_id,
                    callee: lease.callee,
                    callee_nonce: callee.file().nonce(),
                    timeout_ms,
                };
                holder.file().grant_lane(
                    usize::from(lease.lane),
                    grant,
                    lease.holder,
                    callee.file(),
                );
                tracing::debug!(
                    holder = lease.holder,
                    callee = lease.callee,
                    lane = lease.lane,
                    "direct lane granted"
                );
                return;
            }
        }
        self.end_lease(lease);
    }

    /// Revokes a lease; ends it at once when the callee has none of the holder's calls.
    fn revoke(&self, lease: &LeaseRef<WorkerSender>, holder_gone: bool) {
        let Some((holder, callee)) = ring_links(lease) else {
            return self.end_lease(lease);
        };
        let found = holder.file().revoke_lane(usize::from(lease.lane));
        // A dead holder may have begun a call it never handed over: only a call in the
        // callee's inbound slot keeps the lease until the callee answers.
        let busy = matches!(found, lane::phase::CALLING | lane::phase::ABANDONED)
            && (!holder_gone || callee.file().inbound_busy());
        tracing::debug!(
            holder = lease.holder,
            callee = lease.callee,
            busy,
            "direct lane revoked"
        );
        if !busy {
            self.end_lease(lease);
        }
    }

    fn end_lease(&self, lease: &LeaseRef<WorkerSender>) {
        let actions = {
            let mut st = self.lock();
            let actions = st.end_lease(lease.callee, lease.holder, now_ns());
            self.publish_in_flight(&st);
            actions
        };
        self.apply(actions);
    }

    /// The callee of a lease died: the holder's waiting call, if any, fails with
    /// `WorkerCrashed`.
    fn fail_lane(&self, lease: &LeaseRef<WorkerSender>, text: &str) {
        let Some((holder, callee)) = ring_links(lease) else {
            return;
        };
        let mut call = [0u8; gloam_core::protocol::MESSAGE_SIZE];
        callee.file().inbound_header(&mut call);
        let mut h = Header::new(Kind::Failed);
        if let Ok(sent) = Header::decode(&call, u64::MAX) {
            h.set_call_id(sent.call_id());
        }
        h.worker_id = lease.holder;
        let failure = Message::failure(h, ErrorKind::WorkerCrashed, text).to_bytes();
        if holder.file().fail_lane(usize::from(lease.lane), &failure) {
            tracing::warn!(
                callee = lease.callee,
                "worker {text} while running a direct call"
            );
        }
        holder.file().lane_bell(usize::from(lease.lane)).notify();
    }

    /// Reads the lane-call records waiting in every ring (status and metrics count them).
    pub fn sync_direct_calls(&self) {
        if let Some(p) = &self.poller {
            p.drain_all(self);
        }
    }

    /// Wakes the deadline timer if `deadline` is earlier than what it sleeps towards.
    pub(crate) fn note_deadline(&self, deadline: u64) {
        if deadline < self.timer_next.load(Ordering::Acquire) {
            self.timer.notify_one();
        }
    }

    /// Fails every call whose deadline passed, then sleeps until the next deadline. Sleeps
    /// without waking while no call is in flight.
    pub async fn run_timer(self: Arc<Self>) {
        loop {
            let (actions, next) = {
                let mut st = self.lock();
                let expired = st.expire(now_ns());
                self.publish_in_flight(&st);
                expired
            };
            self.apply(actions);
            self.timer_next
                .store(next.unwrap_or(u64::MAX), Ordering::Release);
            match next {
                Some(deadline) => {
                    let wait = Duration::from_nanos(deadline.saturating_sub(now_ns()));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.timer.notified() => {}
                    }
                }
                None => self.timer.notified().await,
            }
        }
    }

    /// Runs an external call of function `name` with `input`; `timeout` overrides the
    /// function's own.
    pub async fn call_external(
        &self,
        name: &str,
        input: Bytes,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, Refusal> {
        let (function_id, max_payload) = {
            let st = self.lock();
            let f = st.function_by_name(name).ok_or_else(|| Refusal {
                kind: ErrorKind::FunctionNotFound,
                message: format!("function {name:?} is not deployed on this engine"),
            })?;
            (f.config.id, f.config.max_payload)
        };
        if input.len() as u64 > max_payload {
            return Err(Refusal {
                kind: ErrorKind::PayloadTooLarge,
                message: format!(
                    "input of {} bytes exceeds the limit of {max_payload} bytes of function {name}",
                    input.len()
                ),
            });
        }
        let now = now_ns();
        let id = self.lock().next_external_id(function_id);
        let mut h = Header::new(Kind::Dispatch);
        h.set_call_id(id);
        if let Some(t) = timeout {
            h.deadline_ns = now.saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
        }
        let msg = if input.len() <= INLINE_CAPACITY {
            Message::with_inline(h, &input).map_err(internal)?
        } else {
            shm::write(&self.paths, id, PayloadSide::Input, &input, max_payload).map_err(|e| {
                Refusal {
                    kind: e.kind(),
                    message: e.to_string(),
                }
            })?;
            h.payload_loc = PayloadLocation::Shm;
            h.payload_len = input.len() as u32;
            Message::new(h)
        };
        let (tx, rx) = oneshot::channel();
        let admitted = {
            let mut st = self.lock();
            let admitted = st.admit(id, ReplyTo::External(tx), Box::new(msg), now);
            self.publish_in_flight(&st);
            admitted
        };
        let actions = match admitted {
            Ok(actions) => actions,
            Err((refusal, _)) => {
                shm::remove_call(&self.paths, id, PayloadSide::Input);
                return Err(refusal);
            }
        };
        if let Some(d) = self.lock().next_deadline() {
            self.note_deadline(d);
        }
        self.apply(actions);
        let outcome = match (self.external_spin(function_id), &self.poller) {
            (Some(budget), Some(poller)) => {
                // This thread polls the rings itself while it waits, and holds the poller's
                // doorbell so that the answer does not also wake the poller thread: the call
                // then involves two parties (this thread and the worker), not three.
                let held = poller.hold();
                // With the poller asleep only this thread and the worker poll: the lane case.
                let cadence = if held {
                    gloam_core::ring::YIELD_DIRECT
                } else {
                    gloam_core::ring::YIELD_SHARED
                };
                let polled = spin_for(rx, budget, cadence, || poller.poll_once(self));
                if held {
                    poller.release();
                }
                match polled {
                    Ok(answer) => answer,
                    Err(rx) => rx.await,
                }
            }
            _ => rx.await,
        };
        match outcome {
            Ok(Outcome::Complete(msg, timing)) => Ok(CallOutput {
                body: self.read_output(&msg)?,
                timing,
            }),
            Ok(Outcome::Failed(kind, message)) => Err(Refusal { kind, message }),
            Err(_) => Err(Refusal {
                kind: ErrorKind::Internal,
                message: "the call was dropped without an answer".into(),
            }),
        }
    }

    /// How long an I/O thread may poll for a fast function's answer before parking. Waking a
    /// parked thread costs ~20 µs on these machines, more than most such calls take; polling
    /// pays only when the function usually answers within a few tens of µs and the engine is
    /// not busy with many calls (the poll holds an I/O thread).
    fn external_spin(&self, function_id: u16) -> Option<Duration> {
        self.poller.as_ref()?;
        let st = self.lock();
        if st.calls_in_flight() > EXTERNAL_SPIN_MAX_IN_FLIGHT {
            return None;
        }
        let t = st.function(function_id)?.limiter.service_ns()?;
        let budget = Duration::from_nanos((2.0 * t) as u64 + 10_000);
        (budget <= EXTERNAL_SPIN_CAP).then_some(budget)
    }

    fn read_output(&self, msg: &Message) -> Result<Bytes, Refusal> {
        match msg.header.payload_loc {
            PayloadLocation::Shm => {
                let id = msg.header.call_id();
                let out = shm::open(&self.paths, id, PayloadSide::Output, msg.header.payload_len)
                    .map(|view| Bytes::copy_from_slice(view.bytes()));
                shm::remove_call(&self.paths, id, PayloadSide::Output);
                out.map_err(|e| Refusal {
                    kind: e.kind(),
                    message: e.to_string(),
                })
            }
            _ => Ok(Bytes::copy_from_slice(msg.inline_payload())),
        }
    }

    /// Handles one message from worker `worker`. An error disconnects that worker.
    pub(crate) fn on_worker_message(&self, worker: u32, bytes: &[u8]) -> Result<(), String> {
        let msg =
            Message::decode(bytes, self.config.engine.max_payload).map_err(|e| e.to_string())?;
        let now = now_ns();
        match msg.header.kind {
            Kind::Complete | Kind::Failed if msg.header.flags & flags::LANE != 0 => {
                let actions = self.lock().lane_call_done(worker, &msg, now);
                self.apply(actions);
                Ok(())
            }
            Kind::Complete | Kind::Failed => {
                let actions = {
                    let mut st = self.lock();
                    let actions = st.finish(worker, Box::new(msg), now)?;
                    self.publish_in_flight(&st);
                    actions
                };
                self.apply(actions);
                Ok(())
            }
            Kind::Invoke => {
                if msg.header.caller != worker {
                    return Err(format!(
                        "INVOKE names caller {} but came from worker {worker}",
                        msg.header.caller
                    ));
                }
                self.on_invoke(worker, msg, now);
                Ok(())
            }
            other => Err(format!("unexpected {other:?} message on a worker channel")),
        }
    }

    fn on_invoke(&self, worker: u32, msg: Message, now: u64) {
        let id = msg.header.call_id();
        let mut st = self.lock();
        let refusal = match st.function(id.function()) {
            None => Some(Refusal {
                kind: ErrorKind::FunctionNotFound,
                message: format!("no function with id {}", id.function()),
            }),
            Some(f) if u64::from(msg.header.payload_len) > f.config.max_payload => Some(Refusal {
                kind: ErrorKind::PayloadTooLarge,
                message: format!(
                    "input of {} bytes exceeds the limit of {} bytes of function {}",
                    msg.header.payload_len, f.config.max_payload, f.config.name
                ),
            }),
            Some(_) => None,
        };
        let actions = match refusal {
            Some(r) => {
                if msg.header.payload_loc == PayloadLocation::Shm {
                    shm::remove_call(&self.paths, id, PayloadSide::Input);
                }
                st.refuse_internal(worker, id, &r)
            }
            None => match st.admit(id, ReplyTo::Worker(worker), Box::new(msg), now) {
                Ok(actions) => actions,
                Err((r, _)) => {
                    shm::remove_call(&self.paths, id, PayloadSide::Input);
                    st.refuse_internal(worker, id, &r)
                }
            },
        };
        let next = st.next_deadline();
        self.publish_in_flight(&st);
        drop(st);
        if let Some(d) = next {
            self.note_deadline(d);
        }
        self.apply(actions);
    }

    /// Stops admitting calls and waits (bounded) until the calls in flight have ended; when
    /// `limit` passes first, ends those still in flight with `Shutdown`. Returns how many calls
    /// and leases were left when the wait ended.
    pub async fn drain(&self, limit: Duration) -> usize {
        let revokes = self.lock().start_draining();
        self.apply(revokes);
        let start = tokio::time::Instant::now();
        loop {
            let left = {
                let st = self.lock();
                st.calls_in_flight() + st.leases()
            };
            if left == 0 || start.elapsed() >= limit {
                if left > 0 {
                    // The period is over: every call still in flight ends with SHUTDOWN now.
                    let actions = {
                        let mut st = self.lock();
                        let actions = st.end_calls_in_flight(limit, now_ns());
                        self.publish_in_flight(&st);
                        actions
                    };
                    self.apply(actions);
                }
                return left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Functions with a launch command that have no ready worker yet.
    pub fn functions_without_workers(&self) -> Vec<String> {
        let st = self.lock();
        let mut names: Vec<String> = st
            .functions()
            .filter(|f| f.config.command.is_some() && f.config.min_workers > 0)
            .filter(|f| f.ready_workers == 0)
            .map(|f| f.config.name.clone())
            .collect();
        names.sort();
        names
    }
}

/// Polls `rx` for up to `budget`, running `poll` between polls and yielding the CPU every
/// `yield_every`: the answer, or `rx` back to be awaited.
fn spin_for(
    mut rx: oneshot::Receiver<Outcome>,
    budget: Duration,
    yield_every: u32,
    mut poll: impl FnMut(),
) -> Result<Result<Outcome, oneshot::error::RecvError>, oneshot::Receiver<Outcome>> {
    let mut ready = None;
    gloam_core::ring::spin_until_with(budget, yield_every, || match rx.try_recv() {
        Ok(v) => {
            ready = Some(Some(v));
            true
        }
        Err(oneshot::error::TryRecvError::Empty) => {
            poll();
            false
        }
        Err(oneshot::error::TryRecvError::Closed) => {
            ready = Some(None);
            true
        }
    });
    match ready {
        Some(Some(v)) => Ok(Ok(v)),
        // Closed: awaiting gives the RecvError.
        Some(None) | None => Err(rx),
    }
}

/// The ring links of both ends of a lease (leases exist only with the ring transport).
fn ring_links(lease: &LeaseRef<WorkerSender>) -> Option<(&Arc<RingLink>, &Arc<RingLink>)> {
    match (lease.holder_sender.as_ref(), lease.callee_sender.as_ref()) {
        (WorkerLink::Ring(h), WorkerLink::Ring(c)) => Some((h, c)),
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    Refusal {
        kind: ErrorKind::Internal,
        message: e.to_string(),
    }
}

/// Writes one message to a worker's FIFO: at once when the pipe has room (the common case),
/// else from a task that waits for room. 1024 bytes < PIPE_BUF: a write is whole or nothing.
fn send_to_worker(worker: u32, link: WorkerSender, bytes: [u8; 1024]) {
    let WorkerLink::Fifo(sender) = link.as_ref() else {
        return;
    };
    match sender.try_write(&bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            tokio::spawn(async move {
                let WorkerLink::Fifo(sender) = link.as_ref() else {
                    return;
                };
                loop {
                    if sender.writable().await.is_err() {
                        return;
                    }
                    match sender.try_write(&bytes) {
                        Ok(_) => return,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => {
                            tracing::warn!(worker, error = %e, "could not write to worker");
                            return;
                        }
                    }
                }
            });
        }
        Err(e) => tracing::warn!(worker, error = %e, "could not write to worker"),
    }
}
