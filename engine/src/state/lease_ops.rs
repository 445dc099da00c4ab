//! Leases granted, revoked and ended (see `leases.rs` and `gloam_core::lane`).

use gloam_core::protocol::{flags, Message};
use gloam_core::tally::{Tally, TallyHistogram};

use super::leases::{Lease, LEASE_COOLDOWN_NS};
use super::{Action, Actions, LeaseId, LeaseRef, Phase, State, Timer, WorkerId};

impl<R, S: Clone> State<R, S> {
    /// Both ends of lease `id`, for an action (`None` if either end is gone).
    fn lease_ref(&self, id: LeaseId) -> Option<LeaseRef<S>> {
        let l = self.leases.get(id)?;
        let holder = self.workers.get(l.holder)?;
        let callee = self.workers.get(l.callee)?;
        let f = self.function(l.function_id)?;
        Some(LeaseRef {
            id,
            holder: l.holder,
            holder_sender: holder.sender.clone(),
            lane: l.lane,
            callee: l.callee,
            callee_sender: callee.sender.clone(),
            function_id: l.function_id,
            timeout_ms: u32::try_from(f.config.timeout.as_millis()).unwrap_or(u32::MAX),
        })
    }

    /// Leases `callee` (just freed, idle) to `holder` when the holder keeps calling its
    /// function, a lane is free, and nobody else waits for the function's workers.
    pub(super) fn maybe_lease(
        &mut self,
        holder: WorkerId,
        callee: WorkerId,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        if !self.options.direct_calls || self.draining {
            return;
        }
        let Some(function_id) = self.workers.get(callee).map(|w| w.function_id) else {
            return;
        };
        let Some(h) = self.workers.get_mut(holder) else {
            return;
        };
        h.streak.last_ns = now;
        let lane = match h.free_lane() {
            Some(lane) if h.streak.hot(function_id) && !h.retiring && !h.killed => lane,
            _ => return,
        };
        let Some(f) = self.function_mut(function_id) else {
            return;
        };
        let cooling = f
            .revoked_at
            .is_some_and(|t| now.saturating_sub(t) < LEASE_COOLDOWN_NS);
        if cooling || f.queued() > 0 || !f.unidle(callee) {
            return;
        }
        f.leased += 1;
        let id = self.leases.add(Lease {
            holder,
            lane,
            callee,
            function_id,
            revoked: None,
            watched: None,
        });
        if let Some(h) = self.workers.get_mut(holder) {
            h.lanes[usize::from(lane)] = Some(id);
            h.streak.calls = 0;
        }
        if let Some(c) = self.workers.get_mut(callee) {
            c.phase = Phase::Leased { lease: id };
        }
        if let Some(lease) = self.lease_ref(id) {
            actions.push(Action::Grant(lease));
        }
    }

    /// A call of `function_id` waits and no worker is idle: revoke one of its leases (the
    /// callee comes back when its current lane call, if any, ends).
    pub(super) fn reclaim_lease(
        &mut self,
        function_id: u16,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let Some(lease) = self
            .leases
            .ids_where(|l| l.function_id == function_id && l.revoked.is_none())
            .into_iter()
            .next()
        else {
            return;
        };
        if let Some(f) = self.function_mut(function_id) {
            f.revoked_at = Some(now);
        }
        self.revoke(lease, false, now, actions);
    }

    /// Revokes lease `id` (again, when the holder is now gone). It ends when the engine finds
    /// the lane free, or with the callee's next record; if neither happens within the callee
    /// function's timeout plus the hung grace, the callee is killed.
    pub(super) fn revoke(
        &mut self,
        id: LeaseId,
        holder_gone: bool,
        now: u64,
        actions: &mut Actions<R, S>,
    ) {
        let Some(l) = self.leases.get(id).copied() else {
            return;
        };
        if l.revoked.is_some() && !holder_gone {
            return;
        }
        let Some(lease) = self.lease_ref(id) else {
            return;
        };
        if l.revoked.is_none() {
            let timeout = u64::from(lease.timeout_ms).saturating_mul(1_000_000);
            let at = now
                .saturating_add(timeout)
                .saturating_add(self.options.hung_grace_ns);
            let timer = self.timers.insert(at, Timer::Revoke(id));
            if let Some(l) = self.leases.get_mut(id) {
                l.revoked = Some(timer);
            }
        }
        actions.push(Action::Revoke { lease, holder_gone });
    }

    /// The engine found lease `id` over (the lane could not be granted, or a revoke found no
    /// call in the callee's hands): the callee takes queued work or becomes idle.
    pub fn lease_ended(&mut self, id: LeaseId, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        self.end_lease(id, now, &mut actions);
        actions
    }

    fn end_lease(&mut self, id: LeaseId, now: u64, actions: &mut Actions<R, S>) {
        let Some(l) = self.leases.remove(id) else {
            return;
        };
        actions.push(Action::LeaseOver(id));
        if let Some(timer) = l.revoked {
            self.timers.cancel(timer);
        }
        if let Some(h) = self.workers.get_mut(l.holder) {
            if h.lanes[usize::from(l.lane)] == Some(id) {
                h.lanes[usize::from(l.lane)] = None;
            }
        }
        if let Some(f) = self.function_mut(l.function_id) {
            f.leased = f.leased.saturating_sub(1);
        }
        let leased = self
            .workers
            .get(l.callee)
            .is_some_and(|w| w.phase == Phase::Leased { lease: id });
        if leased {
            self.take_next_or_idle(l.callee, now, actions);
        }
    }

    /// The callee of lease `id` is gone: the lease ends, and the holder's waiting lane call
    /// (if any) fails with `text`.
    pub(super) fn callee_gone(&mut self, id: LeaseId, text: &str, actions: &mut Actions<R, S>) {
        let Some(l) = self.leases.remove(id) else {
            return;
        };
        if let Some(timer) = l.revoked {
            self.timers.cancel(timer);
        }
        if let Some(f) = self.function_mut(l.function_id) {
            f.leased = f.leased.saturating_sub(1);
        }
        let timeout_ms = self.function(l.function_id).map_or(0, |f| {
            u32::try_from(f.config.timeout.as_millis()).unwrap_or(u32::MAX)
        });
        let Some(h) = self.workers.get_mut(l.holder) else {
            actions.push(Action::LeaseOver(id));
            return;
        };
        if h.lanes[usize::from(l.lane)] == Some(id) {
            h.lanes[usize::from(l.lane)] = None;
        }
        // The callee is gone from the registry: its sender is the holder's (unused by the
        // action, which touches only the lease's region).
        let sender = h.sender.clone();
        actions.push(Action::FailLane {
            lease: LeaseRef {
                id,
                holder: l.holder,
                holder_sender: sender.clone(),
                lane: l.lane,
                callee: l.callee,
                callee_sender: sender,
                function_id: l.function_id,
                timeout_ms,
            },
            text: text.to_string(),
        });
        actions.push(Action::LeaseOver(id));
    }

    /// A revoked lease did not end in time. If the engine last saw its callee holding a lane
    /// call, the callee is hung on it and is killed; if not, the holder claims a call in
    /// progress (its lane says CALLING) that its callee never received: the holder is lying,
    /// and it is the one dropped (the lease then ends with it).
    pub(super) fn revoke_overdue(&mut self, id: LeaseId, actions: &mut Actions<R, S>) {
        let Some(l) = self.leases.get_mut(id) else {
            return;
        };
        l.revoked = None;
        let l = *l;
        if l.watched.is_some() {
            let reason = format!("a revoked direct lane (lease {id}) was never given back");
            self.kill(l.callee, reason, actions);
        } else {
            let reason =
                format!("claimed a direct call on lease {id} that its callee never received");
            self.kill(l.holder, reason, actions);
        }
    }

    /// The engine looked at lease `id`'s callee: `busy` is the call id in its hands, if any.
    /// A callee seen with the same call for longer than its function's timeout plus the hung
    /// grace is hung on a call its holder gave up on: it is killed.
    pub fn lease_observed(&mut self, id: LeaseId, busy: Option<u64>, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        let Some(l) = self.leases.get(id).copied() else {
            return actions;
        };
        let timeout = self.function(l.function_id).map_or(u64::MAX, |f| {
            u64::try_from(f.config.timeout.as_nanos()).unwrap_or(u64::MAX)
        });
        let watched = match (busy, l.watched) {
            (None, _) => None,
            (Some(call), Some((seen, since))) if seen == call => Some((call, since)),
            (Some(call), _) => Some((call, now)),
        };
        if let Some(lease) = self.leases.get_mut(id) {
            lease.watched = watched;
        }
        if let Some((call, since)) = watched {
            let limit = timeout.saturating_add(self.options.hung_grace_ns);
            if now.saturating_sub(since) > limit {
                let reason = format!(
                    "still running direct call {call:016x} {} ms after it began",
                    now.saturating_sub(since) / 1_000_000
                );
                self.kill(l.callee, reason, &mut actions);
            }
        }
        actions
    }

    /// A callee's tally of the calls it ran on its lane (see `gloam_core::tally`): counts
    /// them, feeds the limiter, and ends the lease when the record says so. `Err`: the record
    /// is malformed (the engine disconnects the callee).
    pub fn lane_tally(
        &mut self,
        callee: WorkerId,
        record: &Message,
        now: u64,
    ) -> Result<Actions<R, S>, String> {
        let mut actions = Vec::new();
        let Some(function_id) = self.workers.get(callee).map(|w| w.function_id) else {
            return Ok(actions);
        };
        let tally = Tally::from_message(record).map_err(|e| e.to_string())?;
        let calls = tally.calls();
        if let Some(f) = self.function_mut(function_id) {
            let ok = u64::from(tally.outcomes[0]);
            f.direct_calls += u64::from(calls);
            f.completed += ok;
            f.failed += u64::from(calls).saturating_sub(ok);
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
            let mut queued = TallyHistogram::default();
            queued.counts[0] = calls;
            m.queueing.add_tally(&queued);
        }
        if record.header.flags & flags::LANE_END != 0 {
            let current = self.workers.get(callee).and_then(|w| match w.phase {
                Phase::Leased { lease } => Some(lease),
                _ => None,
            });
            // A record of an earlier lease ends nothing.
            if current == Some(tally.lease) {
                self.end_lease(tally.lease, now, &mut actions);
            }
        }
        // λ and t moved, so τ may have: queued calls may run on idle workers.
        if self.function(function_id).is_some_and(|f| f.queued() > 0) {
            self.drain_queue(function_id, now, &mut actions);
        }
        Ok(actions)
    }
}
