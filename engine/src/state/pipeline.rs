//! Pipelining: under load, a waiting call goes to a busy worker behind the call it runs, so
//! that the worker starts it as soon as it answers, without a round trip through the engine
//! (and without sleeping in between). Only interactive calls of functions whose calls usually
//! take less than [`super::Options::pipeline_below_ns`] are pipelined, at most one per worker:
//! a pipelined call waits at most about one short call longer than it would have in the
//! queue. A pipelined call is not counted in `running` (τ) until its worker starts it, which
//! the engine learns from the answer to the call before it.

use gloam_core::protocol::CallId;

use super::function::{Class, FunctionState};
use super::workers::Pipelined;
use super::{Action, Actions, Phase, State, Timer, WorkerId};

impl<R, S: Clone> State<R, S> {
    /// Whether `f`'s calls are short enough to pipeline.
    fn pipelines(&self, f: &FunctionState) -> bool {
        let below = self.options.pipeline_below_ns;
        below > 0 && f.limiter.service_ns().is_some_and(|t| t < below as f64)
    }

    /// Lists `worker` among its function's pipeline slots, if it can take a pipelined call
    /// and is not listed yet.
    pub(super) fn offer_slot(&mut self, worker: WorkerId) {
        if self.options.pipeline_below_ns == 0 {
            return;
        }
        let Some(w) = self.workers.get_mut(worker) else {
            return;
        };
        if w.slotted || !w.pipelinable() {
            return;
        }
        w.slotted = true;
        let function_id = w.function_id;
        if let Some(f) = self.function_mut(function_id) {
            f.pipeline_slots.push(worker);
        }
    }

    /// A worker of `function_id` that can take a pipelined call now, taken off the slots
    /// (entries that went stale — the worker is gone, idle, or holds one already — are
    /// dropped on the way).
    fn take_slot(&mut self, function_id: u16) -> Option<WorkerId> {
        loop {
            let worker = self.function_mut(function_id)?.pipeline_slots.pop()?;
            let Some(w) = self.workers.get_mut(worker) else {
                continue;
            };
            w.slotted = false;
            if w.function_id == function_id && w.pipelinable() {
                return Some(worker);
            }
        }
    }

    /// Pipelines waiting interactive calls of `function_id` onto its busy workers, while
    /// there are both (after [`State::drain_queue`] used the idle workers τ allows).
    pub(super) fn fill_pipelines(
        &mut self,
        function_id: u16,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        loop {
            let Some(f) = self.function(function_id) else {
                return;
            };
            if f.queued_of(Class::Interactive) == 0 || !self.pipelines(f) {
                return;
            }
            let Some(worker) = self.take_slot(function_id) else {
                return;
            };
            let calls = &self.calls;
            let Some(f) = self
                .functions
                .get_mut(usize::from(function_id))
                .and_then(Option::as_mut)
            else {
                return;
            };
            let Some(id) = f.pop_interactive(|id| calls.contains(id)) else {
                return;
            };
            if self.shed_if_overdue(function_id, id, now, actions) {
                // The slot stays usable for the next call.
                self.offer_slot(worker);
                continue;
            }
            self.pipeline_to(worker, id, now, actions);
        }
    }

    /// Sends queued call `id` to busy `worker`, behind the call it runs.
    fn pipeline_to(&mut self, worker: WorkerId, id: CallId, now: u64, actions: &mut Actions<R, S>) {
        let (Some(w), Some(rec)) = (self.workers.get_mut(worker), self.calls.get_mut(id)) else {
            return;
        };
        let Some(mut msg) = rec.queued.take() else {
            return;
        };
        w.next = Some(Pipelined {
            call: id,
            ended: false,
        });
        rec.worker = Some(worker);
        rec.pipelined = true;
        rec.dispatch_ns = now;
        msg.header.worker_id = worker.raw();
        let sender = w.sender.clone();
        let function_id = rec.function_id;
        if let Some(f) = self.function_mut(function_id) {
            f.pipelined += 1;
        }
        actions.push(Action::Send {
            worker,
            sender,
            msg,
        });
    }

    /// `worker` answered the call it ran; if it holds a pipelined call, that one is the call
    /// it runs now (if it ended while it waited, the worker is watched as for a call past its
    /// deadline). Returns false when it held none.
    pub(super) fn start_pipelined(
        &mut self,
        worker: WorkerId,
        now: u64,
        actions: &mut Actions<R, S>,
    ) -> bool {
        let Some(w) = self.workers.get_mut(worker) else {
            return false;
        };
        let Some(next) = w.next.take() else {
            return false;
        };
        w.phase = Phase::Busy {
            call: next.call,
            ended: next.ended,
        };
        let function_id = w.function_id;
        if next.ended {
            // The worker refuses a call past its deadline at once; one that does not is hung.
            let at = now.saturating_add(self.options.hung_grace_ns);
            self.timers.insert(
                at,
                Timer::Hung {
                    worker,
                    call: next.call,
                },
            );
        } else {
            if let Some(rec) = self.calls.get_mut(next.call) {
                rec.pipelined = false;
                rec.dispatch_ns = now;
            }
            if let Some(f) = self.function_mut(function_id) {
                f.pipelined = f.pipelined.saturating_sub(1);
                f.running += 1;
            }
            self.offer_slot(worker);
        }
        self.drain_queue(function_id, now, actions);
        true
    }

    /// `worker` answered its pipelined call before the one it runs (a handler that runs
    /// calls concurrently): it can take another.
    pub(super) fn pipelined_answered(
        &mut self,
        worker: WorkerId,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let Some(w) = self.workers.get_mut(worker) else {
            return;
        };
        w.next = None;
        let function_id = w.function_id;
        self.offer_slot(worker);
        self.drain_queue(function_id, now, actions);
    }
}
