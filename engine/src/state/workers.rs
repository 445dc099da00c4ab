//! The registry of connected logical workers, indexed by slot and checked by generation.

use gloam_core::lane::LANES;
use gloam_core::protocol::CallId;

use super::ids::{IdAllocator, LeaseId, WorkerId, MAX_SLOT};

/// Internal calls from one worker to one function, each made within [`STREAK_GAP_NS`] of the
/// previous one's answer, after which the engine leases that worker a callee (a direct lane).
pub const LEASE_AFTER_CALLS: u32 = 2;
/// See [`LEASE_AFTER_CALLS`].
pub const STREAK_GAP_NS: u64 = 10_000_000;

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Handshake under way: not ready for calls.
    Connecting,
    /// Ready with no call, since this time (it is in its function's idle list, unless
    /// retiring).
    Idle {
        /// When it became idle (monotonic ns).
        since: u64,
    },
    /// Running `call`. `ended`: the call already ended for its caller (deadline) and the
    /// worker has not answered yet; `running` no longer counts it.
    Busy {
        /// The call.
        call: CallId,
        /// Ended for the caller, still in the worker's hands.
        ended: bool,
    },
    /// Leased to a holder (a direct lane); counted in its function's `leased`.
    Leased {
        /// The lease.
        lease: LeaseId,
    },
}

/// A caller's run of internal calls to one function (see [`LEASE_AFTER_CALLS`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Streak {
    /// The function called.
    pub function_id: u16,
    /// Calls in the run.
    pub calls: u32,
    /// When the last of them was made or answered (monotonic ns).
    pub last_ns: u64,
}

impl Streak {
    /// An internal call to `function_id` at `now`.
    pub fn called(&mut self, function_id: u16, now: u64) {
        if self.function_id == function_id && now.saturating_sub(self.last_ns) <= STREAK_GAP_NS {
            self.calls = self.calls.saturating_add(1);
        } else {
            *self = Streak {
                function_id,
                calls: 1,
                last_ns: now,
            };
        }
        self.last_ns = now;
    }

    /// Whether the run calls for a lease of `function_id`.
    pub fn hot(&self, function_id: u16) -> bool {
        self.function_id == function_id && self.calls >= LEASE_AFTER_CALLS
    }
}

/// A call sent to a worker behind the one it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipelined {
    /// The call.
    pub call: CallId,
    /// It already ended for its caller (its deadline passed while it waited).
    pub ended: bool,
}

/// A connected logical worker.
#[derive(Debug)]
pub struct WorkerEntry<S> {
    /// Its id.
    pub id: WorkerId,
    /// The function it serves.
    pub function_id: u16,
    /// Its process id (from the socket's credentials).
    pub pid: u32,
    /// Its process group: the launcher's child it descends from (0 = unknown).
    pub group: u32,
    /// Its language runtime.
    pub language: String,
    /// How to reach it.
    pub sender: S,
    /// What it does.
    pub phase: Phase,
    /// A call dispatched behind the one it runs (pipelined): it waits in the worker's channel
    /// and runs next. Kept after it ended for its caller (deadline), until the worker answers
    /// or starts it.
    pub next: Option<Pipelined>,
    /// Listed in its function's pipeline slots (see [`WorkerEntry::pipelinable`]).
    pub slotted: bool,
    /// Asked to retire (finishes its call, takes no new one).
    pub retiring: bool,
    /// Asked to be killed (hung); nothing more is asked of it.
    pub killed: bool,
    /// As a holder: the lease on each of its lanes.
    pub lanes: [Option<LeaseId>; LANES],
    /// As a caller: its run of internal calls to one function.
    pub streak: Streak,
}

impl<S> WorkerEntry<S> {
    /// Whether the handshake finished.
    pub fn ready(&self) -> bool {
        self.phase != Phase::Connecting
    }

    /// The live call it runs (not one that already ended for its caller).
    pub fn live_call(&self) -> Option<CallId> {
        match self.phase {
            Phase::Busy { call, ended: false } => Some(call),
            _ => None,
        }
    }

    /// Whether a call may be pipelined behind the one it runs: it runs a live call, holds no
    /// pipelined one, and is neither retiring nor being killed.
    pub fn pipelinable(&self) -> bool {
        self.live_call().is_some() && self.next.is_none() && !self.retiring && !self.killed
    }

    /// A lane it does not use, if any.
    pub fn free_lane(&self) -> Option<u8> {
        self.lanes.iter().position(Option::is_none).map(|i| i as u8)
    }
}

/// Every connected worker, by slot.
#[derive(Debug)]
pub struct Workers<S> {
    slots: Vec<Option<WorkerEntry<S>>>,
    ids: IdAllocator,
}

impl<S> Default for Workers<S> {
    fn default() -> Workers<S> {
        Workers::with_limit(MAX_SLOT)
    }
}

impl<S> Workers<S> {
    /// A registry of at most `limit` workers at once.
    pub fn with_limit(limit: u16) -> Workers<S> {
        Workers {
            slots: Vec::new(),
            ids: IdAllocator::new(limit),
        }
    }

    /// Reserves an id for a worker whose link is being made; `None` when every id is in use.
    pub fn reserve(&mut self) -> Option<WorkerId> {
        self.ids.reserve()
    }

    /// Registers the worker of reserved id `entry.id`.
    pub fn insert(&mut self, entry: WorkerEntry<S>) {
        let slot = usize::from(entry.id.slot());
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        self.slots[slot] = Some(entry);
    }

    /// Gives back a reserved id that was never registered.
    pub fn release(&mut self, id: WorkerId) {
        if self.get(id).is_none() {
            self.ids.release(id);
        }
    }

    /// The worker `id`, if that incarnation is still connected.
    pub fn get(&self, id: WorkerId) -> Option<&WorkerEntry<S>> {
        self.slots
            .get(usize::from(id.slot()))
            .and_then(Option::as_ref)
            .filter(|w| w.id == id)
    }

    /// The worker `id`, mutably.
    pub fn get_mut(&mut self, id: WorkerId) -> Option<&mut WorkerEntry<S>> {
        self.slots
            .get_mut(usize::from(id.slot()))
            .and_then(Option::as_mut)
            .filter(|w| w.id == id)
    }

    /// Removes worker `id` and frees its slot for a later generation.
    pub fn remove(&mut self, id: WorkerId) -> Option<WorkerEntry<S>> {
        let entry = self.slots.get_mut(usize::from(id.slot()))?;
        if entry.as_ref().is_none_or(|w| w.id != id) {
            return None;
        }
        let w = entry.take();
        self.ids.release(id);
        w
    }

    /// Every connected worker.
    pub fn iter(&self) -> impl Iterator<Item = &WorkerEntry<S>> {
        self.slots.iter().filter_map(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: WorkerId) -> WorkerEntry<()> {
        WorkerEntry {
            id,
            function_id: 1,
            pid: 1,
            group: 0,
            language: "test".into(),
            sender: (),
            phase: Phase::Connecting,
            next: None,
            slotted: false,
            retiring: false,
            killed: false,
            lanes: [None; LANES],
            streak: Streak::default(),
        }
    }

    #[test]
    fn a_removed_worker_is_not_found_by_its_old_id_once_the_slot_is_reused() {
        let mut ws = Workers::with_limit(4);
        let add = |ws: &mut Workers<()>| {
            let id = ws.reserve().unwrap();
            ws.insert(entry(id));
            id
        };
        let a = add(&mut ws);
        assert!(ws.get(a).is_some());
        assert!(ws.remove(a).is_some());
        assert!(ws.remove(a).is_none());
        let b = add(&mut ws);
        assert_eq!(b.slot(), a.slot());
        assert!(ws.get(a).is_none(), "the old incarnation is gone");
        assert!(ws.get_mut(a).is_none());
        assert!(ws.remove(a).is_none());
        assert_eq!(ws.get(b).map(|w| w.id), Some(b));
        assert_eq!(ws.iter().count(), 1);
    }

    #[test]
    fn a_streak_counts_quick_calls_to_one_function() {
        let mut s = Streak::default();
        s.called(3, 0);
        assert!(!s.hot(3));
        s.called(3, STREAK_GAP_NS);
        assert!(s.hot(3));
        s.called(4, STREAK_GAP_NS + 1);
        assert!(!s.hot(3) && !s.hot(4));
        s.called(4, 3 * STREAK_GAP_NS);
        assert!(!s.hot(4), "too far apart");
    }
}
