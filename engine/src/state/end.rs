//! Calls end: the one place where they do ([`State::end_call`]), and the events that end
//! them — an answer, a deadline, a worker gone, the engine stopping.

use gloam_core::payload::PayloadSide;
use gloam_core::protocol::{CallId, Header, Kind, Message, PayloadLocation};
use gloam_core::ErrorKind;

use super::{Action, Actions, Outcome, Phase, ReplyTo, State, Timer, Timing, WorkerId};

/// How a call ends.
#[derive(Debug)]
pub(super) enum Ending {
    /// Its worker answered (`COMPLETE` or `FAILED`).
    Answered(Box<Message>),
    /// The engine ends it with a failure.
    Failed(ErrorKind, String),
}

impl<R, S: Clone> State<R, S> {
    /// Ends call `id`, if it is still in flight: frees what it held (its τ slot, its timer,
    /// its input file), counts it, and routes its result to its caller. `cancel_timer`: false
    /// when the deadline timer itself fired. Returns the worker that was running it, which is
    /// left to the event that ended the call (freed on an answer, marked hung on a deadline,
    /// gone on a crash).
    pub(super) fn end_call(
        &mut self,
        id: CallId,
        ending: Ending,
        now: u64,
        cancel_timer: bool,
        actions: &mut Actions<R, S>,
    ) -> Option<WorkerId> {
        let Some(rec) = self.calls.remove(id) else {
            if let Ending::Answered(msg) = ending {
                drop_result(&msg, actions);
            }
            return None;
        };
        if cancel_timer {
            self.timers.cancel(rec.timer);
        }
        if rec.input_by_fd {
            actions.push(Action::DropPayload(id, PayloadSide::Input));
        }
        let dispatched = rec.worker.is_some();
        let calls = &self.calls;
        if let Some(f) = self
            .functions
            .get_mut(usize::from(rec.function_id))
            .and_then(Option::as_mut)
        {
            if rec.pipelined {
                f.pipelined = f.pipelined.saturating_sub(1);
            } else if dispatched {
                f.running = f.running.saturating_sub(1);
                if rec.class == super::Class::Background {
                    f.running_background = f.running_background.saturating_sub(1);
                }
            } else {
                f.forget_queued(rec.class, |c| calls.contains(c));
            }
            let status = match &ending {
                Ending::Answered(msg) if msg.header.kind == Kind::Complete => None,
                Ending::Answered(msg) => Some(msg.header.status.unwrap_or(ErrorKind::Internal)),
                Ending::Failed(kind, _) => Some(*kind),
            };
            let m = &mut f.metrics;
            m.ended(now, status, now.saturating_sub(rec.recv_ns));
            if let Ending::Answered(msg) = &ending {
                let running = now.saturating_sub(rec.dispatch_ns);
                m.queueing
                    .record(rec.dispatch_ns.saturating_sub(rec.recv_ns));
                m.processing.record(msg.header.processing_ns);
                m.overhead
                    .record(running.saturating_sub(msg.header.processing_ns));
                if status.is_none() {
                    f.limiter.on_completion(running);
                }
            }
            if status.is_none() {
                f.completed += 1;
            } else {
                f.failed += 1;
            }
        }
        let (msg, timing) = match ending {
            Ending::Answered(msg) => {
                let timing = Timing {
                    queued_ns: rec.dispatch_ns.saturating_sub(rec.recv_ns),
                    running_ns: now.saturating_sub(rec.dispatch_ns),
                    processing_ns: msg.header.processing_ns,
                };
                (msg, timing)
            }
            Ending::Failed(kind, text) => {
                let mut h = Header::new(Kind::Failed);
                h.set_call_id(id);
                h.function_id = rec.function_id;
                (
                    Box::new(Message::failure(h, kind, &text)),
                    Timing::default(),
                )
            }
        };
        self.route(rec.reply, msg, timing, actions);
        rec.worker
    }

    /// Hands a result to its caller: the external handle, or the calling worker's channel
    /// (if that incarnation still lives; else the result and its output file are dropped).
    pub(super) fn route(
        &self,
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
            ReplyTo::Worker(caller) => match self.workers.get(caller) {
                Some(w) => {
                    msg.header.worker_id = caller.raw();
                    actions.push(Action::Send {
                        worker: caller,
                        sender: w.sender.clone(),
                        msg,
                    });
                }
                None => drop_result(&msg, actions),
            },
        }
    }

    /// Worker `worker` answered (`COMPLETE` or `FAILED`) the call it runs. `Err` names the
    /// protocol violation (it answered a call it does not run); the engine disconnects it.
    pub fn worker_answered(
        &mut self,
        worker: WorkerId,
        msg: Box<Message>,
        now: u64,
    ) -> Result<Actions<R, S>, String> {
        let mut actions = Vec::new();
        let id = msg.header.call_id();
        let Some(w) = self.workers.get(worker) else {
            drop_result(&msg, &mut actions);
            return Ok(actions);
        };
        let (live, pipelined) = match (w.phase, w.next) {
            (Phase::Busy { call, ended }, _) if call == id => (!ended, false),
            (Phase::Busy { .. }, Some(next)) if next.call == id => (!next.ended, true),
            _ => {
                return Err(format!(
                    "worker {worker} answered call {id}, which it does not run"
                ))
            }
        };
        let holder = match self.calls.get(id).map(|r| &r.reply) {
            Some(ReplyTo::Worker(h)) if live && msg.header.kind == Kind::Complete => Some(*h),
            _ => None,
        };
        // The answer is routed after the worker's next steps: a lease granted on this answer
        // is in place before the holder, answered, makes its next call.
        let mut answer = Vec::new();
        if live {
            self.end_call(id, Ending::Answered(msg), now, true, &mut answer);
        } else {
            // Its call already ended at the deadline: the late result goes nowhere.
            drop_result(&msg, &mut answer);
        }
        if pipelined {
            self.pipelined_answered(worker, now, &mut actions);
        } else if !self.start_pipelined(worker, now, &mut actions) {
            self.take_next_or_idle(worker, now, &mut actions);
        }
        if let Some(holder) = holder {
            self.maybe_lease(holder, worker, now, &mut actions);
        }
        actions.append(&mut answer);
        Ok(actions)
    }

    /// A worker is gone (its process died, it broke the protocol, or it was killed): its call
    /// fails with `WORKER_CRASHED`, its leases end, its id's slot is freed.
    pub fn worker_gone(&mut self, id: WorkerId, reason: &str, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        for lease in self.leases.ids_where(|l| l.holder == id) {
            // Its lanes: the callees come back once the engine sees them free.
            self.revoke(lease, true, now, &mut actions);
        }
        let Some(w) = self.workers.remove(id) else {
            return actions;
        };
        let function_id = w.function_id;
        let name = self
            .function(function_id)
            .map_or(String::new(), |f| f.config.name.clone());
        let text = format!("worker {id} of {name} (pid {}) {reason}", w.pid);
        let group_left = w.group != 0
            && !self
                .workers
                .iter()
                .any(|o| o.function_id == function_id && o.group == w.group);
        if let Some(f) = self.function_mut(function_id) {
            if w.ready() {
                f.ready_workers = f.ready_workers.saturating_sub(1);
            } else {
                f.connecting = f.connecting.saturating_sub(1);
            }
            if w.retiring {
                f.retiring = f.retiring.saturating_sub(1);
                if group_left {
                    f.pool.retired();
                }
            }
            f.unidle(id);
        }
        if w.retiring && group_left {
            // Room for a process a roll still owes.
            self.refill(function_id, &mut actions);
        }
        match w.phase {
            Phase::Leased { lease } => self.callee_gone(lease, &text, &mut actions),
            Phase::Busy { call, ended } => {
                // Whatever output it wrote before dying is nobody's now.
                actions.push(Action::DropPayload(call, PayloadSide::Output));
                if !ended {
                    let crashed = Ending::Failed(ErrorKind::WorkerCrashed, text.clone());
                    self.end_call(call, crashed, now, true, &mut actions);
                }
            }
            Phase::Connecting | Phase::Idle { .. } => {}
        }
        if let Some(next) = w.next {
            actions.push(Action::DropPayload(next.call, PayloadSide::Output));
            if !next.ended {
                let crashed = Ending::Failed(ErrorKind::WorkerCrashed, text.clone());
                self.end_call(next.call, crashed, now, true, &mut actions);
            }
        }
        if let Some(f) = self.function(function_id) {
            // A worker fewer may leave queued calls waiting for growth.
            if f.queued() > 0 {
                self.drain_queue(function_id, now, &mut actions);
            }
        }
        actions
    }

    /// Handles every timer due at `now`: calls past their deadline end with `TIMEOUT` (a
    /// worker running one is marked hung, and killed if it has not answered after the grace
    /// period); revoked leases that never ended kill their callee.
    pub fn expire(&mut self, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        let mut fired = Vec::new();
        self.timers.advance(now, &mut fired);
        for timer in fired {
            match timer {
                Timer::Deadline(id) => self.deadline(id, now, &mut actions),
                Timer::Hung { worker, call } => {
                    let hung = self
                        .workers
                        .get(worker)
                        .is_some_and(|w| !w.killed && w.phase == Phase::Busy { call, ended: true });
                    if hung {
                        let grace_ms = self.options.hung_grace_ns / 1_000_000;
                        let reason =
                            format!("still running call {call} {grace_ms} ms after its deadline");
                        self.kill(worker, reason, &mut actions);
                    }
                }
                Timer::Revoke(lease) => self.revoke_overdue(lease, &mut actions),
            }
        }
        actions
    }

    fn deadline(&mut self, id: CallId, now: u64, actions: &mut Actions<R, S>) {
        let Some(rec) = self.calls.get(id) else {
            return;
        };
        let name = self
            .function(rec.function_id)
            .map_or(String::new(), |f| f.config.name.clone());
        let text = match rec.worker {
            None => format!("call to {name} waited in the queue past its deadline"),
            Some(_) => format!("call to {name} did not finish by its deadline"),
        };
        let function_id = rec.function_id;
        let ending = Ending::Failed(ErrorKind::Timeout, text);
        if let Some(worker) = self.end_call(id, ending, now, false, actions) {
            if self.left_running(worker, id) {
                let at = now.saturating_add(self.options.hung_grace_ns);
                self.timers.insert(at, Timer::Hung { worker, call: id });
            }
            // Its τ slot is free: a queued call may run on an idle worker.
            self.drain_queue(function_id, now, actions);
        }
    }

    /// Call `id` ended while `worker` still runs it: the worker stays busy with it (and out
    /// of τ) until it answers or is killed. Returns whether that is the case (false also
    /// when `id` was pipelined behind the call it runs: it is marked ended, and watched once
    /// the worker starts it).
    fn left_running(&mut self, worker: WorkerId, id: CallId) -> bool {
        let Some(w) = self.workers.get_mut(worker) else {
            return false;
        };
        if let Some(next) = w.next.as_mut().filter(|n| n.call == id) {
            next.ended = true;
            return false;
        }
        if w.phase
            != (Phase::Busy {
                call: id,
                ended: false,
            })
        {
            return false;
        }
        w.phase = Phase::Busy {
            call: id,
            ended: true,
        };
        true
    }

    /// Asks the engine to kill worker `id` (once).
    pub(super) fn kill(&mut self, id: WorkerId, reason: String, actions: &mut Actions<R, S>) {
        let Some(w) = self.workers.get_mut(id) else {
            return;
        };
        if w.killed {
            return;
        }
        w.killed = true;
        self.killed += 1;
        let (function_id, group) = (w.function_id, w.group);
        if let Some(f) = self.function_mut(function_id) {
            f.unidle(id);
        }
        actions.push(Action::Kill {
            worker: id,
            function_id,
            group,
            reason,
        });
    }

    /// The drain period is over: every call still in flight ends with `SHUTDOWN`.
    pub fn abort_in_flight(&mut self, why: &str, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        for id in self.calls.ids() {
            let ending = Ending::Failed(ErrorKind::Shutdown, why.to_string());
            if let Some(worker) = self.end_call(id, ending, now, true, &mut actions) {
                self.left_running(worker, id);
            }
        }
        actions
    }
}

/// Drops a result nobody will read, with its output.
pub(super) fn drop_result<R, S>(msg: &Message, actions: &mut Actions<R, S>) {
    if msg.header.kind == Kind::Complete && msg.header.payload_loc == PayloadLocation::Descriptor {
        actions.push(Action::DropPayload(
            msg.header.call_id(),
            PayloadSide::Output,
        ));
    }
}
