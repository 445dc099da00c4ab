//! The pool grows while calls wait and shrinks when workers stay idle (see `pool.rs`); a roll
//! (the program was rebuilt) replaces every process of a function.

use gloam_core::protocol::{Header, Kind, Message};

use super::{Action, Actions, Phase, State, WorkerId};

impl<R, S: Clone> State<R, S> {
    /// Asks for one more worker process when calls wait, no worker is idle and the pool's
    /// workers (ready, starting or restarting) number fewer than τ — within `max_workers`
    /// and at most once per growth interval.
    pub(super) fn maybe_grow(&mut self, function_id: u16, now: u64, actions: &mut Actions<R, S>) {
        let Some(f) = self.function_mut(function_id) else {
            return;
        };
        let tau = f.limiter.tau_queued(now, f.queued());
        if f.queued() > 0
            && f.idle.is_empty()
            && f.pool.capacity() < tau
            && f.pool.can_grow()
            && f.limiter.try_grow(now)
        {
            f.pool.grew();
            actions.push(Action::Grow(function_id));
        }
    }

    /// Retires idle worker processes beyond max(2τ, min_workers) that stayed idle for the
    /// function's shrink grace (a process goes only when all its logical workers qualify).
    /// Workers the engine did not launch are left alone.
    pub fn shrink(&mut self, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        let ids: Vec<u16> = self.functions().map(|f| f.config.id).collect();
        for function_id in ids {
            let Some(f) = self.function(function_id) else {
                continue;
            };
            let Some(grace) = f.limiter.config().shrink_grace else {
                continue;
            };
            if !f.pool.launched {
                continue;
            }
            let grace = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
            let keep = f.limiter.keep_workers(now);
            let mut live = f.ready_workers.saturating_sub(f.retiring);
            if live <= keep {
                continue;
            }
            let long_idle = |w: WorkerId| {
                self.workers.get(w).is_some_and(|w| match w.phase {
                    Phase::Idle { since } => now.saturating_sub(since) >= grace,
                    _ => false,
                })
            };
            let mut groups: Vec<u32> = f
                .idle
                .iter()
                .filter(|w| long_idle(**w))
                .filter_map(|w| self.workers.get(*w).map(|e| e.group))
                .filter(|g| *g != 0)
                .collect();
            groups.sort_unstable();
            groups.dedup();
            let mut retire = Vec::new();
            for group in groups {
                let members: Vec<WorkerId> = self
                    .workers
                    .iter()
                    .filter(|w| w.function_id == function_id && w.group == group && !w.retiring)
                    .map(|w| w.id)
                    .collect();
                if !members.iter().all(|m| f.idle.contains(m) && long_idle(*m))
                    || live < keep + members.len()
                {
                    continue;
                }
                live -= members.len();
                retire.push((group, members));
            }
            for (group, members) in retire {
                for id in members {
                    self.retire(id, now, &mut actions);
                }
                if let Some(f) = self.function_mut(function_id) {
                    f.pool.retire();
                }
                actions.push(Action::RetireProcess { function_id, group });
            }
        }
        actions
    }

    /// The function's program was rebuilt: every ready process of it is asked to retire (its
    /// calls in flight finish on it; queued and new calls wait for the new ones) and as many
    /// new processes are asked for, as `max_workers` allows now and the rest as the old ones
    /// leave. Workers the engine did not launch are left alone.
    pub fn roll(&mut self, function_id: u16, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        if !self.function(function_id).is_some_and(|f| f.pool.launched) {
            return actions;
        }
        let mut groups: Vec<u32> = self
            .workers
            .iter()
            .filter(|w| w.function_id == function_id && w.group != 0 && !w.retiring)
            .filter(|w| w.ready())
            .map(|w| w.group)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for group in &groups {
            let members: Vec<WorkerId> = self
                .workers
                .iter()
                .filter(|w| w.function_id == function_id && w.group == *group)
                .map(|w| w.id)
                .collect();
            for id in members {
                self.retire(id, now, &mut actions);
            }
            if let Some(f) = self.function_mut(function_id) {
                f.pool.retire();
                f.pool.refill += 1;
            }
            actions.push(Action::RetireProcess {
                function_id,
                group: *group,
            });
        }
        self.refill(function_id, &mut actions);
        actions
    }

    /// Adds back the slots a roll retired, as `max_workers` leaves room.
    pub(super) fn refill(&mut self, function_id: u16, actions: &mut Actions<R, S>) {
        let Some(f) = self.function_mut(function_id) else {
            return;
        };
        while f.pool.refill > 0 && f.pool.can_grow() {
            f.pool.refill -= 1;
            f.pool.grew();
            actions.push(Action::Grow(function_id));
        }
    }

    /// Asks worker `id` to finish its call and leave; its leases as a holder are revoked.
    fn retire(&mut self, id: WorkerId, now: u64, actions: &mut Actions<R, S>) {
        let Some(w) = self.workers.get_mut(id) else {
            return;
        };
        if w.retiring {
            return;
        }
        w.retiring = true;
        let function_id = w.function_id;
        let mut h = Header::new(Kind::Retire);
        h.worker_id = id.raw();
        actions.push(Action::Send {
            worker: id,
            sender: w.sender.clone(),
            msg: Box::new(Message::new(h)),
        });
        if let Some(f) = self.function_mut(function_id) {
            f.unidle(id);
            f.retiring += 1;
        }
        for lease in self
            .leases
            .ids_where(|l| l.holder == id && l.revoked.is_none())
        {
            self.revoke(lease, false, now, actions);
        }
    }
}
