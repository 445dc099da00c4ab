//! Leases: an idle worker lent to a caller that keeps calling its function (a direct lane,
//! see `gloam_core::lane`). Each lease has its own id, written into both ends' shared memory
//! and carried by the callee's records, so nothing about one lease can end another.

use super::calls::IdMap;
use super::ids::{LeaseId, WorkerId};
use super::timers::TimerId;

/// After a lease of a function was revoked for other callers, no new lease of it for this
/// long (a function in demand is not leased and revoked back and forth).
pub const LEASE_COOLDOWN_NS: u64 = 50_000_000;

/// One lease.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// The caller it is lent to.
    pub holder: WorkerId,
    /// The holder's lane.
    pub lane: u8,
    /// The worker lent.
    pub callee: WorkerId,
    /// The callee's function.
    pub function_id: u16,
    /// Revoked: it ends when the callee answers the call in its hands. The timer kills the
    /// callee if that answer never comes.
    pub revoked: Option<TimerId>,
    /// The lane call last seen in the callee's hands, and since when (see
    /// `State::lease_observed`).
    pub watched: Option<(u64, u64)>,
}

/// Every lease in force (including revoked ones not ended yet).
#[derive(Debug, Default)]
pub struct Leases {
    map: IdMap<LeaseId, Lease>,
    last: LeaseId,
}

impl Leases {
    /// Records a new lease; returns its id (1..=`gloam_core::lane::MAX_LEASE`, the ids the
    /// lane words can carry).
    pub fn add(&mut self, lease: Lease) -> LeaseId {
        loop {
            self.last = match self.last {
                gloam_core::lane::MAX_LEASE => 1,
                n => n + 1,
            };
            if !self.map.contains_key(&self.last) {
                break;
            }
        }
        self.map.insert(self.last, lease);
        self.last
    }

    /// The lease `id`.
    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.map.get(&id)
    }

    /// The lease `id`, mutably.
    pub fn get_mut(&mut self, id: LeaseId) -> Option<&mut Lease> {
        self.map.get_mut(&id)
    }

    /// Ends the lease `id`.
    pub fn remove(&mut self, id: LeaseId) -> Option<Lease> {
        self.map.remove(&id)
    }

    /// Leases in force.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The ids of the leases that satisfy `pred`.
    pub fn ids_where(&self, pred: impl Fn(&Lease) -> bool) -> Vec<LeaseId> {
        self.map
            .iter()
            .filter(|(_, l)| pred(l))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every lease.
    pub fn iter(&self) -> impl Iterator<Item = (&LeaseId, &Lease)> {
        self.map.iter()
    }
}
