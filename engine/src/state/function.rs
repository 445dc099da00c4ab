//! One function's dispatcher: its queue, its idle workers, the calls it runs against τ, and
//! what its calls did.

use std::collections::VecDeque;
use std::sync::Arc;

use gloam_core::protocol::CallId;

use super::ids::WorkerId;
use super::pool::Pool;
use crate::config::FunctionConfig;
use crate::limiter::Limiter;
use crate::metrics::FunctionMetrics;

/// The queue is compacted when it holds this many more ended ids than live ones.
const STALE_SLACK: usize = 64;

/// The priority class of a call: interactive calls (synchronous, external or internal) are
/// always dispatched before background ones (asynchronous calls), and background calls hold
/// at most half of τ (rounded up) at once, so a burst of them leaves room for interactive
/// calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Class {
    /// A caller waits for the answer.
    #[default]
    Interactive,
    /// An asynchronous call: accepted, stored, run when interactive calls leave room.
    Background,
}

/// The calls of one class waiting for a worker, oldest first; ids of calls that ended while
/// queued stay until popped or compacted away.
#[derive(Debug, Default)]
struct ClassQueue {
    ids: VecDeque<CallId>,
    /// Live calls in `ids`.
    live: usize,
}

impl ClassQueue {
    fn pop(&mut self, live: &impl Fn(CallId) -> bool) -> Option<CallId> {
        while let Some(id) = self.ids.pop_front() {
            if live(id) {
                self.live -= 1;
                return Some(id);
            }
        }
        None
    }

    fn forget(&mut self, live: impl Fn(CallId) -> bool) {
        self.live = self.live.saturating_sub(1);
        if self.ids.len() > self.live + STALE_SLACK {
            self.ids.retain(|id| live(*id));
        }
    }
}

/// Most process groups remembered as having had a ready worker (see
/// [`FunctionState::ready_groups`]); the oldest is forgotten beyond it.
const READY_GROUPS: usize = 1024;

/// How long calls leaving a function's queue must keep waiting longer than its
/// `queue_target` before new calls are shed (CoDel's interval).
pub const SHED_INTERVAL_NS: u64 = 100_000_000;

/// A queueing delay counts as standing only above this many times the function's usual
/// running time too: calls of a slow function may queue behind a few running ones.
pub const SHED_SERVICE_TIMES: f64 = 4.0;

/// One function's dispatcher state.
#[derive(Debug)]
pub struct FunctionState {
    /// Its configuration.
    pub config: Arc<FunctionConfig>,
    /// Interactive calls waiting for a worker (see [`FunctionState::pop_queued`]).
    queue: ClassQueue,
    /// Background calls waiting for a worker.
    background: ClassQueue,
    /// Background calls among `running`.
    pub running_background: usize,
    /// Ready workers with no call, most recently freed last.
    pub idle: Vec<WorkerId>,
    /// Live calls running on its workers (τ counts these).
    pub running: usize,
    /// Since when every interactive call that left the queue had waited longer than
    /// `config.queue_target` (`None`: the last one did not, or the queue emptied).
    standing_since: Option<u64>,
    /// Live calls pipelined behind a running call (not in `running`; see
    /// [`super::Options::pipeline_below_ns`]).
    pub pipelined: usize,
    /// Workers that may take a pipelined call (each listed once; checked when taken).
    pub(super) pipeline_slots: Vec<WorkerId>,
    /// Workers whose handshake is under way.
    pub connecting: usize,
    /// Ready workers (including retiring and leased ones).
    pub ready_workers: usize,
    /// Ready workers asked to retire that have not disconnected yet.
    pub retiring: usize,
    /// Workers leased to a caller (direct lanes): not idle, not counted in `running`.
    pub leased: usize,
    /// Its worker processes, as the launcher runs them.
    pub pool: Pool,
    /// The concurrency limiter (λ, t, τ).
    pub limiter: Limiter,
    /// What its calls did (scraped by `/metrics`).
    pub metrics: FunctionMetrics,
    /// Calls that ended well.
    pub completed: u64,
    /// Calls that ended with a failure (handler error, crash, timeout, ...).
    pub failed: u64,
    /// Calls that ran on a direct lane (also counted in `completed`/`failed`).
    pub direct_calls: u64,
    /// When a lease of this function was last revoked for other callers.
    pub revoked_at: Option<u64>,
    /// Why its workers cannot start, while it has no ready worker: its calls fail at once
    /// with `FUNCTION_UNAVAILABLE` (set when a process exits before it is ready or cannot be
    /// started; cleared when a worker becomes ready).
    pub unavailable: Option<String>,
    /// Worker processes that exited (or could not be started) and were started again.
    pub restarts: u64,
    /// How the last of them ended, as the launcher told it.
    pub last_exit: Option<String>,
    /// Process groups that had a ready worker and whose exit the launcher has not reported
    /// yet: an exit of one of these is a crash, of any other a failure to start.
    ready_groups: VecDeque<u32>,
}

impl FunctionState {
    /// A dispatcher for `config`, with no worker yet.
    pub fn new(config: &FunctionConfig) -> FunctionState {
        FunctionState {
            config: Arc::new(config.clone()),
            queue: ClassQueue::default(),
            background: ClassQueue::default(),
            running_background: 0,
            idle: Vec::new(),
            running: 0,
            pipelined: 0,
            standing_since: None,
            pipeline_slots: Vec::new(),
            connecting: 0,
            ready_workers: 0,
            retiring: 0,
            leased: 0,
            pool: Pool::new(config),
            limiter: Limiter::new(config.concurrency.clone()),
            metrics: FunctionMetrics::default(),
            completed: 0,
            failed: 0,
            direct_calls: 0,
            revoked_at: None,
            unavailable: None,
            restarts: 0,
            last_exit: None,
            ready_groups: VecDeque::new(),
        }
    }

    /// A worker of process group `group` (0 = unknown) became ready.
    pub(super) fn group_ready(&mut self, group: u32) {
        if group == 0 || self.ready_groups.contains(&group) {
            return;
        }
        if self.ready_groups.len() == READY_GROUPS {
            self.ready_groups.pop_front();
        }
        self.ready_groups.push_back(group);
    }

    /// The process of group `group` exited: whether it had a ready worker (forgotten now).
    pub(super) fn group_exited(&mut self, group: u32) -> bool {
        match self.ready_groups.iter().position(|g| *g == group) {
            Some(at) => {
                self.ready_groups.remove(at);
                true
            }
            None => false,
        }
    }

    /// Whether calls are refused at once: no ready worker, and the last start failed.
    pub fn refuses_calls(&self) -> bool {
        self.ready_workers == 0 && self.unavailable.is_some()
    }

    /// Live calls waiting in the queue, both classes.
    pub fn queued(&self) -> usize {
        self.queue.live + self.background.live
    }

    /// Live calls of `class` waiting in the queue.
    pub fn queued_of(&self, class: Class) -> usize {
        match class {
            Class::Interactive => self.queue.live,
            Class::Background => self.background.live,
        }
    }

    /// Appends a call of `class` to its queue.
    pub fn enqueue(&mut self, id: CallId, class: Class) {
        let q = match class {
            Class::Interactive => &mut self.queue,
            Class::Background => &mut self.background,
        };
        q.ids.push_back(id);
        q.live += 1;
    }

    /// A queued call of `class` ended before it was dispatched; its id stays in the queue
    /// until popped or compacted away (`live` tells which ids still live).
    pub fn forget_queued(&mut self, class: Class, live: impl Fn(CallId) -> bool) {
        match class {
            Class::Interactive => self.queue.forget(live),
            Class::Background => self.background.forget(live),
        }
    }

    /// The next queued call to run, taken out of its queue: the oldest interactive one, else
    /// the oldest background one while background calls hold less than their share of τ.
    pub fn pop_queued(&mut self, now: u64, live: impl Fn(CallId) -> bool) -> Option<CallId> {
        if let Some(id) = self.queue.pop(&live) {
            return Some(id);
        }
        if self.background_may_start(now) {
            return self.background.pop(&live);
        }
        None
    }

    /// An interactive call left the queue at `now` after waiting `waited` ns: keeps track of
    /// a standing queueing delay (CoDel's "first above time"), above `queue_target` and above
    /// [`SHED_SERVICE_TIMES`] times the usual running time.
    pub fn left_queue(&mut self, waited: u64, now: u64) {
        let Some(target) = self.config.queue_target else {
            return;
        };
        let target = (target.as_nanos() as f64)
            .max(SHED_SERVICE_TIMES * self.limiter.service_ns().unwrap_or(0.0));
        if self.queue.live == 0 || waited as f64 <= target {
            self.standing_since = None;
        } else if self.standing_since.is_none() {
            self.standing_since = Some(now);
        }
    }

    /// How long the queue has kept a delay above `queue_target` while calls still wait, when
    /// that is a whole [`SHED_INTERVAL_NS`] or more: new interactive calls are shed then.
    pub fn overloaded_for(&self, now: u64) -> Option<u64> {
        let since = self.standing_since.filter(|_| self.queue.live > 0)?;
        let standing = now.saturating_sub(since);
        (standing >= SHED_INTERVAL_NS).then_some(standing)
    }

    /// The oldest queued interactive call, taken out of its queue.
    pub fn pop_interactive(&mut self, live: impl Fn(CallId) -> bool) -> Option<CallId> {
        self.queue.pop(&live)
    }

    /// Background calls may hold at most ⌈τ/2⌉ workers at once.
    pub fn background_cap(&self, now: u64) -> usize {
        self.limiter
            .tau_queued(now, self.queued())
            .div_ceil(2)
            .max(1)
    }

    /// Whether one more background call may start now (τ and its share allowing).
    pub fn background_may_start(&self, now: u64) -> bool {
        self.running_background < self.background_cap(now)
    }

    /// Puts back a call of `class` just taken by [`FunctionState::pop_queued`] (at the front).
    pub fn pushed_back(&mut self, id: CallId, class: Class) {
        let q = match class {
            Class::Interactive => &mut self.queue,
            Class::Background => &mut self.background,
        };
        q.ids.push_front(id);
        q.live += 1;
    }

    /// Takes `worker` out of the idle list, if it is there.
    pub fn unidle(&mut self, worker: WorkerId) -> bool {
        match self.idle.iter().position(|w| *w == worker) {
            Some(at) => {
                self.idle.remove(at);
                true
            }
            None => false,
        }
    }

    /// Whether another call may start now: fewer than τ run.
    pub fn below_tau(&self, now: u64) -> bool {
        self.running < self.limiter.tau_queued(now, self.queued())
    }

    /// Whether a queued call could run now on an idle worker (the dispatcher must not leave
    /// it waiting): an interactive one within τ, or a background one within τ and its share.
    pub fn runnable_waiting(&self, now: u64) -> bool {
        !self.idle.is_empty()
            && self.below_tau(now)
            && (self.queue.live > 0 || (self.background.live > 0 && self.background_may_start(now)))
    }
}
