//! The state's invariants, checked by the model tests after every event.

use std::collections::HashSet;

use super::{Phase, ReplyTo, State};

impl<R, S: Clone> State<R, S> {
    /// Checks that the bookkeeping agrees with itself: counters with the registry, calls with
    /// their workers, leases with both ends, no call waiting while a worker is idle and
    /// τ allows it (as of `now`), and an unavailable function with no ready worker and no
    /// call waiting. Returns the first disagreement found.
    pub fn check_invariants(&self, now: u64) -> Result<(), String> {
        let mut live_calls_of = std::collections::HashMap::new();
        for (id, rec) in self.calls.iter() {
            match rec.worker {
                Some(w) => {
                    let Some(entry) = self.workers.get(w) else {
                        return Err(format!("call {id} runs on worker {w}, which is gone"));
                    };
                    if rec.pipelined {
                        let behind = matches!(entry.phase, Phase::Busy { call, .. } if call != *id);
                        let next = Some(super::Pipelined {
                            call: *id,
                            ended: false,
                        });
                        if entry.next != next || !behind {
                            return Err(format!(
                                "call {id} is pipelined on worker {w}, whose phase is {:?} and \
                                 next {:?}",
                                entry.phase, entry.next
                            ));
                        }
                        if rec.class != super::Class::Interactive {
                            return Err(format!("background call {id} is pipelined"));
                        }
                    } else if entry.live_call() != Some(*id) {
                        return Err(format!(
                            "call {id} runs on worker {w}, whose phase is {:?}",
                            entry.phase
                        ));
                    }
                    if rec.queued.is_some() {
                        return Err(format!("call {id} is dispatched and queued"));
                    }
                }
                None if rec.queued.is_none() => {
                    return Err(format!("call {id} is neither queued nor dispatched"));
                }
                None => {}
            }
            if let ReplyTo::Worker(c) = rec.reply {
                if c.raw() != id.caller() {
                    return Err(format!("call {id} answers worker {c}, not its caller"));
                }
            }
            let counts = live_calls_of.entry(rec.function_id).or_insert([0usize; 4]);
            let class = usize::from(rec.class == super::Class::Background);
            // [interactive queued, background queued, interactive running, background running]
            counts[class + 2 * usize::from(rec.worker.is_some())] += 1;
        }
        for f in self.functions() {
            let fid = f.config.id;
            let mine = |pred: &dyn Fn(&super::WorkerEntry<S>) -> bool| {
                self.workers
                    .iter()
                    .filter(|w| w.function_id == fid && pred(w))
                    .count()
            };
            let running = mine(&|w| w.live_call().is_some());
            if f.running != running {
                return Err(format!(
                    "{}: running = {}, but {running} workers run a live call",
                    f.config.name, f.running
                ));
            }
            let pipelined = mine(&|w| w.next.is_some_and(|n| !n.ended));
            if f.pipelined != pipelined {
                return Err(format!(
                    "{}: pipelined = {}, but {pipelined} workers hold a live pipelined call",
                    f.config.name, f.pipelined
                ));
            }
            let stray = mine(&|w| w.next.is_some() && !matches!(w.phase, Phase::Busy { .. }));
            if stray > 0 {
                return Err(format!(
                    "{}: {stray} workers hold a pipelined call but run none",
                    f.config.name
                ));
            }
            let leased = mine(&|w| matches!(w.phase, Phase::Leased { .. }));
            if f.leased != leased {
                return Err(format!(
                    "{}: leased = {}, but {leased} workers are leased",
                    f.config.name, f.leased
                ));
            }
            let connecting = mine(&|w| w.phase == Phase::Connecting)
                + self.reserved.iter().filter(|(_, f)| *f == fid).count();
            let ready = mine(&|w| w.ready());
            let retiring = mine(&|w| w.ready() && w.retiring);
            if (f.connecting, f.ready_workers, f.retiring) != (connecting, ready, retiring) {
                return Err(format!(
                    "{}: connecting/ready/retiring = {}/{}/{}, registry says {connecting}/{ready}/{retiring}",
                    f.config.name, f.connecting, f.ready_workers, f.retiring
                ));
            }
            let mut seen = HashSet::new();
            for w in &f.idle {
                if !seen.insert(*w) {
                    return Err(format!("{}: worker {w} is idle twice", f.config.name));
                }
                match self.workers.get(*w) {
                    Some(e)
                        if matches!(e.phase, Phase::Idle { .. }) && !e.retiring && !e.killed => {}
                    Some(e) => {
                        return Err(format!(
                            "{}: idle worker {w} has phase {:?} (retiring {}, killed {})",
                            f.config.name, e.phase, e.retiring, e.killed
                        ))
                    }
                    None => return Err(format!("{}: idle worker {w} is gone", f.config.name)),
                }
            }
            let available =
                mine(&|w| matches!(w.phase, Phase::Idle { .. }) && !w.retiring && !w.killed);
            if available != f.idle.len() {
                return Err(format!(
                    "{}: {available} workers are free but {} are in the idle list",
                    f.config.name,
                    f.idle.len()
                ));
            }
            let [queued, queued_bg, _, running_bg] =
                live_calls_of.get(&fid).copied().unwrap_or_default();
            let classes = (
                f.queued_of(super::Class::Interactive),
                f.queued_of(super::Class::Background),
                f.running_background,
            );
            if classes != (queued, queued_bg, running_bg) {
                return Err(format!(
                    "{}: queued/queued background/running background = {classes:?}, but its \
                     calls say {queued}/{queued_bg}/{running_bg}",
                    f.config.name,
                ));
            }
            if f.runnable_waiting(now) {
                return Err(format!(
                    "{}: {} calls wait while {} workers are idle and τ allows more",
                    f.config.name,
                    f.queued(),
                    f.idle.len()
                ));
            }
            if let Some(why) = &f.unavailable {
                if f.ready_workers > 0 || f.queued() > 0 {
                    return Err(format!(
                        "{}: unavailable ({why}) with {} ready workers and {} calls queued",
                        f.config.name,
                        f.ready_workers,
                        f.queued()
                    ));
                }
            }
            if f.pool.launched && f.pool.slots + f.pool.retiring > f.pool.max_slots {
                return Err(format!(
                    "{}: {} slots + {} retiring exceed {}",
                    f.config.name, f.pool.slots, f.pool.retiring, f.pool.max_slots
                ));
            }
            if connecting + ready > f.config.max_workers {
                return Err(format!(
                    "{}: {} workers exceed max_workers {}",
                    f.config.name,
                    connecting + ready,
                    f.config.max_workers
                ));
            }
        }
        for (id, l) in self.leases.iter() {
            match self.workers.get(l.callee) {
                Some(c) if c.phase == (Phase::Leased { lease: *id }) => {}
                Some(c) => {
                    return Err(format!(
                        "lease {id}: callee {} has phase {:?}",
                        l.callee, c.phase
                    ))
                }
                None => return Err(format!("lease {id}: callee {} is gone", l.callee)),
            }
            if let Some(h) = self.workers.get(l.holder) {
                if h.lanes[usize::from(l.lane)] != Some(*id) {
                    return Err(format!(
                        "lease {id}: holder {} lane {} holds {:?}",
                        l.holder,
                        l.lane,
                        h.lanes[usize::from(l.lane)]
                    ));
                }
            }
        }
        for w in self.workers.iter() {
            if let Phase::Leased { lease } = w.phase {
                if self.leases.get(lease).is_none_or(|l| l.callee != w.id) {
                    return Err(format!(
                        "worker {} is leased by unknown lease {lease}",
                        w.id
                    ));
                }
            }
            for (lane, lease) in w.lanes.iter().enumerate() {
                if let Some(lease) = lease {
                    if self
                        .leases
                        .get(*lease)
                        .is_none_or(|l| l.holder != w.id || usize::from(l.lane) != lane)
                    {
                        return Err(format!(
                            "worker {} lane {lane} names lease {lease}, which is not its",
                            w.id
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
