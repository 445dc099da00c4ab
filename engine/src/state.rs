//! The engine's bookkeeping, free of I/O: functions and their queues, workers, in-flight calls
//! and deadlines. Every transition returns the messages to send; the caller sends them after
//! releasing the lock. Keeping this synchronous and pure makes "every call ends exactly once"
//! checkable in one place.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use gloam_core::protocol::{CallId, Header, Kind, Message, PayloadLocation};
use gloam_core::ErrorKind;

use crate::config::FunctionConfig;

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
    /// Ready workers with no call, most recently freed last.
    pub idle: Vec<u32>,
    /// Calls running now.
    pub running: usize,
    /// Ready workers.
    pub ready_workers: usize,
    /// Calls ended, by outcome (for status).
    pub completed: u64,
    /// Calls failed (handler error, crash, timeout, ...).
    pub failed: u64,
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
    functions: HashMap<u16, FunctionState>,
    names: HashMap<String, u16>,
    workers: HashMap<u32, WorkerEntry<S>>,
    free_ids: Vec<u32>,
    next_id: u32,
    calls: HashMap<CallId, CallRecord<R>>,
    deadlines: BTreeSet<(u64, CallId)>,
    next_external_seq: u32,
    draining: bool,
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
        let mut map = HashMap::new();
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
                    completed: 0,
                    failed: 0,
                },
            );
        }
        State {
            functions: map,
            names,
            workers: HashMap::new(),
            free_ids: Vec::new(),
            next_id: 1,
            calls: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_external_seq: 1,
            draining: false,
        }
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

    /// Stops admitting new calls (shutdown); calls in flight go on.
    pub fn start_draining(&mut self) {
        self.draining = true;
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
            },
        );
    }

    /// The worker finished its handshake: it takes queued work or becomes idle.
    pub fn worker_ready(&mut self, id: u32, now: u64) -> Actions<R, S> {
        let Some(w) = self.workers.get_mut(&id) else {
            return Vec::new();
        };
        w.ready = true;
        let function_id = w.function_id;
        if let Some(f) = self.functions.get_mut(&function_id) {
            f.ready_workers += 1;
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
        let Some(f) = self.functions.get_mut(&function_id) else {
            let refusal = Refusal::new(
                ErrorKind::FunctionNotFound,
                format!("no function with id {function_id}"),
            );
            return Err((refusal, reply));
        };
        if self.draining {
            let refusal = Refusal::new(
                ErrorKind::Shutdown,
                "the engine is shutting down".to_string(),
            );
            return Err((refusal, reply));
        }
        let idle = f.idle.pop();
        if idle.is_none() && f.queue.len() >= f.config.queue_bound {
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
                if let Some(f) = self.functions.get_mut(&function_id) {
                    f.queue.push_back(id);
                }
            }
        }
        Ok(actions)
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

    /// Gives the worker the oldest queued call whose record still exists, or makes it idle.
    fn take_next_or_idle(
        &mut self,
        worker: u32,
        function_id: u16,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let retiring = self.workers.get(&worker).is_none_or(|w| w.retiring);
        if retiring {
            return;
        }
        while let Some(next) = self
            .functions
            .get_mut(&function_id)
            .and_then(|f| f.queue.pop_front())
        {
            if self.calls.contains_key(&next) {
                self.dispatch_to(worker, next, now, actions);
                return;
            }
        }
        if let Some(f) = self.functions.get_mut(&function_id) {
            f.idle.push(worker);
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
                self.deadlines.remove(&(rec.deadline_ns, id));
                let ok = msg.header.kind == Kind::Complete;
                if let Some(f) = self.functions.get_mut(&function_id) {
                    if ok {
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
    fn fail_call(&mut self, id: CallId, kind: ErrorKind, text: &str, actions: &mut Actions<R, S>) {
        let Some(rec) = self.calls.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(rec.deadline_ns, id));
        if let Some(f) = self.functions.get_mut(&id.function()) {
            f.failed += 1;
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
            self.fail_call(id, ErrorKind::Timeout, &text, &mut actions);
        }
        (actions, None)
    }

    /// The earliest deadline in flight.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// A worker is gone (its process died or it misbehaved): fail its call, orphan the
    /// internal calls it made, free its id.
    pub fn remove_worker(&mut self, id: u32, reason: &str) -> Actions<R, S> {
        let mut actions = Vec::new();
        let Some(w) = self.workers.remove(&id) else {
            return actions;
        };
        if let Some(f) = self.functions.get_mut(&w.function_id) {
            if w.ready {
                f.ready_workers = f.ready_workers.saturating_sub(1);
            }
            f.idle.retain(|&i| i != id);
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

    /// Marks idle workers of every function for retirement and returns the `RETIRE` messages.
    pub fn retire_idle(&mut self) -> Actions<R, S> {
        let mut actions = Vec::new();
        for f in self.functions.values_mut() {
            for id in f.idle.drain(..) {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.retiring = true;
                    let mut h = Header::new(Kind::Retire);
                    h.worker_id = id;
                    actions.push(Action::Send {
                        worker: id,
                        sender: w.sender.clone(),
                        msg: Box::new(Message::new(h)),
                    });
                }
            }
        }
        actions
    }
}

/// Hands a result to its caller: the external handle, or the calling worker's channel.
fn route<R, S: Clone>(
    workers: &HashMap<u32, WorkerEntry<S>>,
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
