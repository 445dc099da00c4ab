//! The engine's bookkeeping, free of I/O: a synchronous state machine. Each event (a call
//! arrives, a worker answers, a worker is gone, time passes, ...) is one method call under the
//! engine's lock; it returns the [`Action`]s to carry out, which the engine performs after
//! releasing the lock and which never call back into the state. Every call ends in one place,
//! [`State::end_call`], whatever ends it.
//!
//! One module per concern: `ids` (worker ids with generations), `workers` (the registry),
//! `calls` (the call table), `timers` (the timing wheel), `function` (a function's queue, idle
//! workers and τ), `pool` (process slots), `leases` (direct lanes); the event handlers are
//! spread over `admit`, `end`, `lease_ops`, `pool_ops` and `launch_ops` (what the launcher
//! reports: processes that exit or cannot start, which can make a function unavailable).

mod action;
mod admit;
mod calls;
mod end;
mod function;
mod ids;
mod invariants;
mod launch_ops;
mod lease_ops;
mod leases;
mod pipeline;
mod pool;
mod pool_ops;
mod timers;
mod workers;

#[cfg(test)]
mod class_tests;
#[cfg(test)]
mod launch_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod overload_tests;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use gloam_core::lane::LANES;

pub use action::{Action, Actions, LeaseRef, Outcome, Refusal, ReplyTo, Timing};
pub use calls::{CallRecord, IdMap};
pub use function::{Class, FunctionState};
pub use ids::{LeaseId, WorkerId};
pub use launch_ops::ProcessEnd;
pub use leases::Lease;
pub use pool::Pool;
pub use workers::{Phase, Pipelined, WorkerEntry};

use calls::Calls;
use leases::Leases;
use timers::TimerWheel;
use workers::Workers;

use crate::config::FunctionConfig;
use gloam_core::ErrorKind;

/// Engine-wide settings of the state.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Lease workers to frequent callers (direct lanes; ring transport).
    pub direct_calls: bool,
    /// A worker still running a call this long after its deadline is killed.
    pub hung_grace_ns: u64,
    /// Pipelining: when every worker of a function is busy and its calls usually take less
    /// than this, a waiting interactive call is sent to a busy worker behind its call, so
    /// the worker starts it without a round trip through the engine (0 = never).
    pub pipeline_below_ns: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            direct_calls: false,
            hung_grace_ns: crate::config::DEFAULT_HUNG_GRACE.as_nanos() as u64,
            pipeline_below_ns: 0,
        }
    }
}

/// What a timer stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// A call's deadline.
    Deadline(gloam_core::protocol::CallId),
    /// A worker whose call ended at its deadline has still not answered it.
    Hung {
        worker: WorkerId,
        call: gloam_core::protocol::CallId,
    },
    /// A revoked lease has still not ended.
    Revoke(LeaseId),
}

/// The whole engine state, behind one lock (see the [module docs](self)).
#[derive(Debug)]
pub struct State<R, S> {
    /// Functions by id (index = id).
    functions: Vec<Option<FunctionState>>,
    names: HashMap<String, u16>,
    workers: Workers<S>,
    calls: Calls<R>,
    timers: TimerWheel<Timer>,
    leases: Leases,
    /// Ids reserved for workers whose link is being made, and their functions.
    reserved: Vec<(WorkerId, u16)>,
    draining: bool,
    options: Options,
    /// Times the lock around this state was taken (counted by the engine).
    locks: u64,
    /// Hung workers killed.
    killed: u64,
}

impl<R, S: Clone> State<R, S> {
    /// A state for these functions, its clock starting at `now`.
    pub fn new(functions: &[FunctionConfig], options: Options, now: u64) -> State<R, S> {
        let top = functions
            .iter()
            .map(|f| usize::from(f.id))
            .max()
            .unwrap_or(0);
        let mut table: Vec<Option<FunctionState>> = (0..=top).map(|_| None).collect();
        let mut names = HashMap::new();
        for f in functions {
            names.insert(f.name.clone(), f.id);
            table[usize::from(f.id)] = Some(FunctionState::new(f));
        }
        State {
            functions: table,
            names,
            workers: Workers::default(),
            calls: Calls::default(),
            timers: TimerWheel::new(now),
            leases: Leases::default(),
            reserved: Vec::new(),
            draining: false,
            options,
            locks: 0,
            killed: 0,
        }
    }

    /// Counts one taking of the lock around this state (see [`State::locks`]).
    pub fn count_lock(&mut self) {
        self.locks += 1;
    }

    /// Times the lock around this state was taken.
    pub fn locks(&self) -> u64 {
        self.locks
    }

    /// Hung workers the state asked the engine to kill.
    pub fn killed(&self) -> u64 {
        self.killed
    }

    // ---- queries ------------------------------------------------------------------------

    /// The function with `id`.
    pub fn function(&self, id: u16) -> Option<&FunctionState> {
        self.functions.get(usize::from(id)).and_then(Option::as_ref)
    }

    fn function_mut(&mut self, id: u16) -> Option<&mut FunctionState> {
        self.functions
            .get_mut(usize::from(id))
            .and_then(Option::as_mut)
    }

    /// The function called `name`.
    pub fn function_by_name(&self, name: &str) -> Option<&FunctionState> {
        self.names.get(name).and_then(|id| self.function(*id))
    }

    /// Every function, by id.
    pub fn functions(&self) -> impl Iterator<Item = &FunctionState> {
        self.functions.iter().filter_map(Option::as_ref)
    }

    /// Every connected worker.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerEntry<S>> {
        self.workers.iter()
    }

    /// The worker `id`, if connected.
    pub fn worker(&self, id: WorkerId) -> Option<&WorkerEntry<S>> {
        self.workers.get(id)
    }

    /// Calls in flight.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Leases in force (including revoked ones whose callee has not answered yet).
    pub fn leases(&self) -> usize {
        self.leases.len()
    }

    /// Every lease in force, with its id.
    pub fn lease_list(&self) -> Vec<(LeaseId, Lease)> {
        self.leases.iter().map(|(id, l)| (*id, *l)).collect()
    }

    /// Whether `holder` holds a lease on `callee` (revoked or not): the payloads of the
    /// callee's lane answers go to it.
    pub fn lease_between(&self, holder: WorkerId, callee: WorkerId) -> bool {
        self.leases
            .iter()
            .any(|(_, l)| l.holder == holder && l.callee == callee)
    }

    /// Whether the engine stopped admitting calls.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// When the timer thread should next call [`State::expire`].
    pub fn next_wake(&self, now: u64) -> Option<u64> {
        self.timers.next_wake(now)
    }

    /// The earliest timer set since the last call, if any: the timer thread must wake for it
    /// if it sleeps towards a later one.
    pub fn take_earliest_new_timer(&mut self) -> Option<u64> {
        self.timers.take_earliest_new()
    }

    // ---- workers come and go --------------------------------------------------------------

    /// A launcher now runs `processes` worker processes of `function_id` (the pool may grow).
    pub fn launcher_started(&mut self, function_id: u16, processes: usize) {
        if let Some(f) = self.function_mut(function_id) {
            f.pool.launch(processes);
        }
    }

    /// A worker of `function_id` started its handshake: reserves its id (it counts as
    /// connecting from now on). Refused when the function already has `max_workers` workers
    /// or every worker id is in use. Follow with [`State::worker_connected`] once its link
    /// exists, or [`State::release_worker`].
    pub fn reserve_worker(&mut self, function_id: u16) -> Result<WorkerId, Refusal> {
        let Some(f) = self.function(function_id) else {
            return Err(Refusal::new(
                ErrorKind::FunctionNotFound,
                format!("no function with id {function_id}"),
            ));
        };
        if f.connecting + f.ready_workers >= f.config.max_workers {
            return Err(Refusal::new(
                ErrorKind::Overloaded,
                format!(
                    "function {} already has its max_workers ({}) workers",
                    f.config.name, f.config.max_workers
                ),
            ));
        }
        let id = self.workers.reserve().ok_or_else(|| {
            Refusal::new(
                ErrorKind::Overloaded,
                format!("all {} worker ids are in use", ids::MAX_SLOT),
            )
        })?;
        if let Some(f) = self.function_mut(function_id) {
            f.connecting += 1;
        }
        self.reserved.push((id, function_id));
        Ok(id)
    }

    /// The worker of reserved id `id` has its link (`sender`): registered, not ready yet.
    /// `pid` and `group` come from its socket's credentials.
    pub fn worker_connected(
        &mut self,
        id: WorkerId,
        pid: u32,
        group: u32,
        language: &str,
        sender: S,
    ) {
        let Some(at) = self.reserved.iter().position(|(r, _)| *r == id) else {
            return;
        };
        let (_, function_id) = self.reserved.swap_remove(at);
        self.workers.insert(WorkerEntry {
            id,
            function_id,
            pid,
            group,
            language: language.to_string(),
            sender,
            phase: Phase::Connecting,
            next: None,
            slotted: false,
            retiring: false,
            killed: false,
            lanes: [None; LANES],
            streak: workers::Streak::default(),
        });
    }

    /// Gives back a reserved id whose worker never got a link.
    pub fn release_worker(&mut self, id: WorkerId) {
        let Some(at) = self.reserved.iter().position(|(r, _)| *r == id) else {
            return;
        };
        let (_, function_id) = self.reserved.swap_remove(at);
        self.workers.release(id);
        if let Some(f) = self.function_mut(function_id) {
            f.connecting = f.connecting.saturating_sub(1);
        }
    }

    /// Worker `id` finished its handshake: it takes queued work or becomes idle.
    /// `cold_start_ns`: how long its process took from start to ready, when known.
    pub fn worker_ready(
        &mut self,
        id: WorkerId,
        now: u64,
        cold_start_ns: Option<u64>,
    ) -> Actions<R, S> {
        let mut actions = Vec::new();
        let Some(w) = self.workers.get_mut(id) else {
            return actions;
        };
        if w.phase != Phase::Connecting {
            return actions;
        }
        w.phase = Phase::Idle { since: now };
        let (function_id, group) = (w.function_id, w.group);
        if let Some(f) = self.function_mut(function_id) {
            f.connecting = f.connecting.saturating_sub(1);
            f.ready_workers += 1;
            // A worker is ready: the function serves calls again.
            f.unavailable = None;
            f.group_ready(group);
            if let Some(ns) = cold_start_ns {
                f.metrics.cold_start.record(ns);
            }
        }
        self.take_next_or_idle(id, now, &mut actions);
        actions
    }

    /// Stops admitting new calls (shutdown) and revokes every lease; calls in flight go on.
    pub fn start_draining(&mut self, now: u64) -> Actions<R, S> {
        self.draining = true;
        let mut actions = Vec::new();
        for lease in self.leases.ids_where(|l| l.revoked.is_none()) {
            self.revoke(lease, false, now, &mut actions);
        }
        actions
    }
}
