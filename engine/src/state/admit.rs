//! Calls arrive: admission (refuse, dispatch or queue), dispatch, and the queue moving.

use gloam_core::payload::PayloadSide;
use gloam_core::protocol::{CallId, Header, Kind, Message, PayloadLocation};
use gloam_core::ErrorKind;

use super::calls::CallRecord;
use super::function::Class;
use super::{Action, Actions, Phase, Refusal, ReplyTo, State, Timer, Timing, WorkerId};

impl<R, S: Clone> State<R, S> {
    /// Admits an external call `id` of `function_id` (its `DISPATCH` message, deadline from
    /// the client or 0): dispatched to an idle worker, or queued. Refused (nothing kept) when
    /// the function is unknown, the engine drains, the queue is full, or `id` is in flight.
    pub fn admit_external(
        &mut self,
        id: CallId,
        function_id: u16,
        to: R,
        msg: Box<Message>,
        now: u64,
    ) -> Result<Actions<R, S>, (Refusal, R)> {
        self.admit_external_as(id, function_id, to, msg, Class::Interactive, now)
    }

    /// [`admit_external`](Self::admit_external) for a call of `class`: a background call
    /// (an asynchronous one) waits in its own queue, behind every interactive call, and holds
    /// at most its share of τ (see [`Class`]).
    pub fn admit_external_as(
        &mut self,
        id: CallId,
        function_id: u16,
        to: R,
        msg: Box<Message>,
        class: Class,
        now: u64,
    ) -> Result<Actions<R, S>, (Refusal, R)> {
        let run_now = match self.admission(id, function_id, class, now) {
            Ok(run_now) => run_now,
            Err(r) => return Err((r, to)),
        };
        let mut actions = Vec::new();
        self.enter(
            id,
            function_id,
            (ReplyTo::External(to), class),
            msg,
            run_now,
            now,
            &mut actions,
        );
        Ok(actions)
    }

    /// An `INVOKE` from worker `caller`: admitted like an external call, or refused with a
    /// `FAILED` reply to the caller. `Err`: the message breaks the protocol (the engine
    /// disconnects the caller).
    pub fn admit_internal(
        &mut self,
        caller: WorkerId,
        msg: Box<Message>,
        now: u64,
    ) -> Result<Actions<R, S>, String> {
        let id = msg.header.call_id();
        let Some(w) = self.workers.get_mut(caller) else {
            return Ok(Vec::new());
        };
        if msg.header.caller != caller.raw() {
            return Err(format!(
                "INVOKE names caller {} but came from worker {caller}",
                msg.header.caller
            ));
        }
        if !w.ready() {
            return Err("INVOKE before the handshake finished".to_string());
        }
        if self.calls.contains(id) {
            return Err(format!("INVOKE reuses call id {id}, still in flight"));
        }
        let function_id = msg.header.function_id;
        w.streak.called(function_id, now);
        let mut actions = Vec::new();
        let admitted = match self.function(function_id) {
            Some(f) if u64::from(msg.header.payload_len) > f.config.max_payload => {
                Err(Refusal::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "input of {} bytes exceeds the limit of {} bytes of function {}",
                        msg.header.payload_len, f.config.max_payload, f.config.name
                    ),
                ))
            }
            _ => self.admission(id, function_id, Class::Interactive, now),
        };
        match admitted {
            Ok(run_now) => {
                let reply = (ReplyTo::Worker(caller), Class::Interactive);
                self.enter(id, function_id, reply, msg, run_now, now, &mut actions);
            }
            Err(r) => {
                if msg.header.payload_loc == PayloadLocation::Descriptor {
                    actions.push(Action::DropPayload(id, PayloadSide::Input));
                }
                let mut h = Header::new(Kind::Failed);
                h.set_call_id(id);
                h.function_id = function_id;
                let failure = Box::new(Message::failure(h, r.kind, &r.message));
                self.route(
                    ReplyTo::Worker(caller),
                    failure,
                    Timing::default(),
                    &mut actions,
                );
            }
        }
        Ok(actions)
    }

    /// Whether call `id` of `function_id` may enter now, and whether it can run at once.
    /// Counts an admitted arrival (λ), or a refusal's outcome.
    fn admission(
        &mut self,
        id: CallId,
        function_id: u16,
        class: Class,
        now: u64,
    ) -> Result<bool, Refusal> {
        if self.calls.contains(id) {
            return Err(Refusal::new(
                ErrorKind::Internal,
                format!("call id {id} is already in flight"),
            ));
        }
        let draining = self.draining;
        let Some(f) = self.function_mut(function_id) else {
            return Err(Refusal::new(
                ErrorKind::FunctionNotFound,
                format!("no function with id {function_id}"),
            ));
        };
        if draining {
            f.metrics.count(Some(ErrorKind::Shutdown));
            return Err(Refusal::new(
                ErrorKind::Shutdown,
                "the engine is shutting down",
            ));
        }
        if let (0, Some(why)) = (f.ready_workers, &f.unavailable) {
            let refusal = Refusal::new(ErrorKind::FunctionUnavailable, why.clone());
            f.metrics.count(Some(ErrorKind::FunctionUnavailable));
            return Err(refusal);
        }
        // An interactive call waits only behind interactive ones; a background one behind all.
        let can_run = |f: &super::FunctionState| match class {
            Class::Interactive => {
                f.queued_of(Class::Interactive) == 0 && !f.idle.is_empty() && f.below_tau(now)
            }
            Class::Background => {
                f.queued() == 0
                    && !f.idle.is_empty()
                    && f.below_tau(now)
                    && f.background_may_start(now)
            }
        };
        let run_now = can_run(f);
        if !run_now && f.queued_of(class) >= f.config.queue_bound {
            f.metrics.count(Some(ErrorKind::Overloaded));
            return Err(Refusal::new(
                ErrorKind::Overloaded,
                format!(
                    "function {} has {} calls queued (queue_bound {})",
                    f.config.name,
                    f.queued_of(class),
                    f.config.queue_bound
                ),
            ));
        }
        if let (false, Class::Interactive, Some(standing)) = (run_now, class, f.overloaded_for(now))
        {
            f.metrics.count(Some(ErrorKind::Overloaded));
            let target = f.config.queue_target.unwrap_or_default();
            return Err(Refusal::new(
                ErrorKind::Overloaded,
                format!(
                    "function {} is overloaded: its calls have waited over {} ms (and 4 times \
                     their running time) in the queue for the last {} ms (queue_target_ms); \
                     retry later",
                    f.config.name,
                    target.as_millis(),
                    standing / 1_000_000
                ),
            ));
        }
        // Only admitted calls count towards λ: a refused one would raise τ with nobody left
        // to use it until the next event.
        f.limiter.on_arrival(now);
        let run_now = run_now || can_run(f);
        Ok(run_now)
    }

    /// Records an admitted call and dispatches or queues it.
    #[allow(clippy::too_many_arguments)]
    fn enter(
        &mut self,
        id: CallId,
        function_id: u16,
        (reply, class): (ReplyTo<R>, Class),
        mut msg: Box<Message>,
        run_now: bool,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let Some(f) = self.function_mut(function_id) else {
            return;
        };
        let timeout_ns = u64::try_from(f.config.timeout.as_nanos()).unwrap_or(u64::MAX);
        let own = now.saturating_add(timeout_ns);
        let deadline_ns = match msg.header.deadline_ns {
            0 => own,
            d => d.min(own),
        };
        msg.header.kind = Kind::Dispatch;
        msg.header.function_id = function_id;
        msg.header.deadline_ns = deadline_ns;
        let input_by_fd = msg.header.payload_loc == PayloadLocation::Descriptor;
        let timer = self.timers.insert(deadline_ns, Timer::Deadline(id));
        let record = CallRecord {
            reply,
            function_id,
            queued: Some(msg),
            worker: None,
            pipelined: false,
            recv_ns: now,
            dispatch_ns: 0,
            deadline_ns,
            timer,
            input_by_fd,
            class,
        };
        if self.calls.insert(id, record).is_err() {
            // Checked by `admission` under the same lock.
            self.timers.cancel(timer);
            return;
        }
        let idle = if run_now {
            self.function_mut(function_id).and_then(|f| f.idle.pop())
        } else {
            None
        };
        match idle {
            Some(w) => {
                self.dispatch_to(w, id, now, actions);
                // The arrival raised λ, so τ (and background calls' share of it) may let a
                // waiting background call start too.
                if self.function(function_id).is_some_and(|f| f.queued() > 0) {
                    self.drain_queue(function_id, now, actions);
                }
            }
            None => {
                let reclaim = self.function_mut(function_id).is_some_and(|f| {
                    f.enqueue(id, class);
                    f.idle.is_empty() && f.leased > 0
                });
                if reclaim {
                    self.reclaim_lease(function_id, now, actions);
                }
                self.drain_queue(function_id, now, actions);
            }
        }
    }

    /// Sends queued call `id` to `worker` (taken off the idle list by the caller).
    pub(super) fn dispatch_to(
        &mut self,
        worker: WorkerId,
        id: CallId,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let (Some(w), Some(rec)) = (self.workers.get_mut(worker), self.calls.get_mut(id)) else {
            return;
        };
        let Some(mut msg) = rec.queued.take() else {
            return;
        };
        w.phase = Phase::Busy {
            call: id,
            ended: false,
        };
        rec.worker = Some(worker);
        rec.dispatch_ns = now;
        msg.header.worker_id = worker.raw();
        let sender = w.sender.clone();
        let (function_id, class) = (rec.function_id, rec.class);
        if let Some(f) = self.function_mut(function_id) {
            f.running += 1;
            if class == Class::Background {
                f.running_background += 1;
            }
        }
        actions.push(Action::Send {
            worker,
            sender,
            msg,
        });
        self.offer_slot(worker);
    }

    /// Makes a free worker idle (unless it retires or is being killed), then lets its
    /// function's queue move.
    pub(super) fn take_next_or_idle(
        &mut self,
        worker: WorkerId,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let Some(w) = self.workers.get_mut(worker) else {
            return;
        };
        w.phase = Phase::Idle { since: now };
        let available = !w.retiring && !w.killed;
        let function_id = w.function_id;
        if available {
            if let Some(f) = self.function_mut(function_id) {
                f.idle.push(worker);
            }
        }
        self.drain_queue(function_id, now, actions);
    }

    /// Dispatches queued calls to idle workers while fewer than τ run; sheds internal calls
    /// that waited too long (when configured); pipelines what still waits onto busy workers
    /// (when it pays, see `pipeline`); asks for a worker when calls still wait.
    pub(super) fn drain_queue(&mut self, function_id: u16, now: u64, actions: &mut Actions<R, S>) {
        loop {
            let calls = &self.calls;
            let Some(f) = self
                .functions
                .get_mut(usize::from(function_id))
                .and_then(Option::as_mut)
            else {
                return;
            };
            if f.idle.is_empty() || !f.below_tau(now) {
                break;
            }
            let Some(next) = f.pop_queued(now, |id| calls.contains(id)) else {
                break;
            };
            if self.shed_if_overdue(function_id, next, now, actions) {
                continue;
            }
            let Some(worker) = self.function_mut(function_id).and_then(|f| f.idle.pop()) else {
                break;
            };
            self.dispatch_to(worker, next, now, actions);
        }
        self.fill_pipelines(function_id, now, actions);
        self.maybe_grow(function_id, now, actions);
    }

    /// Call `id` was just taken off its function's queue: feeds the function's overload
    /// tracking (`queue_target_ms`), and sheds the call if it is an internal call that waited
    /// longer than the limiter allows (`max_relative_queueing_delay`). Returns whether it
    /// shed it.
    pub(super) fn shed_if_overdue(
        &mut self,
        function_id: u16,
        id: CallId,
        now: u64,
        actions: &mut Actions<R, S>,
    ) -> bool {
        let Some(rec) = self.calls.get(id) else {
            return false;
        };
        let waited = now.saturating_sub(rec.recv_ns);
        let internal = matches!(rec.reply, ReplyTo::Worker(_));
        let interactive = rec.class == Class::Interactive;
        let Some(f) = self.function_mut(function_id) else {
            return false;
        };
        if interactive {
            f.left_queue(waited, now);
        }
        if !internal || !f.limiter.should_shed(waited) {
            return false;
        }
        let text = format!(
            "internal call to {} shed after waiting {} us in the queue (max_relative_queueing_delay)",
            f.config.name,
            waited / 1000
        );
        // Back in the queue's count: `end_call` forgets it as it does any queued call. Only
        // internal calls are shed, and they are interactive.
        if let Some(f) = self.function_mut(function_id) {
            f.pushed_back(id, Class::Interactive);
        }
        let ending = super::end::Ending::Failed(ErrorKind::Overloaded, text);
        self.end_call(id, ending, now, true, actions);
        true
    }
}
