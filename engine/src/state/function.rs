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

/// Most process groups remembered as having had a ready worker (see
/// [`FunctionState::ready_groups`]); the oldest is forgotten beyond it.
const READY_GROUPS: usize = 1024;

/// One function's dispatcher state.
#[derive(Debug)]
pub struct FunctionState {
    /// Its configuration.
    pub config: Arc<FunctionConfig>,
    /// Calls waiting for a worker, oldest first; ids of calls that ended while queued stay
    /// until popped (see [`FunctionState::pop_queued`]).
    queue: VecDeque<CallId>,
    /// Live calls in `queue`.
    queued: usize,
    /// Ready workers with no call, most recently freed last.
    pub idle: Vec<WorkerId>,
    /// Live calls running on its workers (τ counts these).
    pub running: usize,
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
            queue: VecDeque::new(),
            queued: 0,
            idle: Vec::new(),
            running: 0,
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

    /// Live calls waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Appends a call to the queue.
    pub fn enqueue(&mut self, id: CallId) {
        self.queue.push_back(id);
        self.queued += 1;
    }

    /// A queued call ended before it was dispatched; its id stays in the queue until popped
    /// or compacted away (`live` tells which ids still live).
    pub fn forget_queued(&mut self, live: impl Fn(CallId) -> bool) {
        self.queued = self.queued.saturating_sub(1);
        if self.queue.len() > self.queued + STALE_SLACK {
            self.queue.retain(|id| live(*id));
        }
    }

    /// The oldest queued call that still lives, taken out of the queue.
    pub fn pop_queued(&mut self, live: impl Fn(CallId) -> bool) -> Option<CallId> {
        while let Some(id) = self.queue.pop_front() {
            if live(id) {
                self.queued -= 1;
                return Some(id);
            }
        }
        None
    }

    /// Puts back a call just taken by [`FunctionState::pop_queued`] (at the front).
    pub fn pushed_back(&mut self, id: CallId) {
        self.queue.push_front(id);
        self.queued += 1;
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
        self.running < self.limiter.tau_queued(now, self.queued)
    }
}
