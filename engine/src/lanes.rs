//! The engine's hands on direct lanes (see `gloam_core::lane`): for each lease it creates a
//! region of its own, sends it to both ends and publishes the lease in their ring regions;
//! it writes revokes and a dead callee's failure into that region; when the state says the
//! lease is over it clears what it published and drops the region. It also watches leased
//! callees for calls their holders gave up on long ago.
//!
//! The regions are kept here by lease id ([`LeaseRegions`]). A grant and the end of the same
//! lease may be carried out by two threads in either order (each comes from its own event);
//! both take the table's lock for their whole work, and an end that comes first leaves a mark
//! that stops the late grant from publishing anything.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

use gloam_core::lane::{phase, LaneGrant, LeaseRegion};
use gloam_core::lease::lease_message;
use gloam_core::protocol::{offset, Header, Kind, Message, MESSAGE_SIZE};
use gloam_core::ErrorKind;

use crate::engine::Engine;
use crate::state::{LeaseId, LeaseRef};
use crate::transport::{RingLink, WorkerSender};

/// What the engine holds of one lease.
enum Entry {
    /// Granted: its region, and the ends whose ring regions name it.
    Granted {
        region: LeaseRegion,
        holder: WorkerSender,
        lane: usize,
        callee: WorkerSender,
    },
    /// The grant failed: nothing was published.
    Failed,
    /// Over before its grant was carried out: the grant publishes nothing.
    Over,
}

/// The regions of the leases in force, by lease id.
#[derive(Default)]
pub struct LeaseRegions {
    map: Mutex<HashMap<LeaseId, Entry>>,
}

impl std::fmt::Debug for LeaseRegions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseRegions")
            .field("leases", &self.lock().len())
            .finish()
    }
}

impl LeaseRegions {
    fn lock(&self) -> MutexGuard<'_, HashMap<LeaseId, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The region of lease `id`, if it was granted and is not over.
    pub fn region(&self, id: LeaseId) -> Option<LeaseRegion> {
        match self.lock().get(&id) {
            Some(Entry::Granted { region, .. }) => Some(region.clone()),
            _ => None,
        }
    }
}

fn rings(lease: &LeaseRef<WorkerSender>) -> Option<(&RingLink, &RingLink)> {
    Some((lease.holder_sender.ring()?, lease.callee_sender.ring()?))
}

/// Grants a lease: creates its region, sends it to both ends (the holder also gets the
/// callee's doorbell region), then publishes the lease in the callee's ring region and in the
/// holder's lane. `false` when it cannot be granted (a region could not be made or sent, or
/// the lease is already over): the lease is over.
pub fn grant(regions: &LeaseRegions, lease: &LeaseRef<WorkerSender>) -> bool {
    let mut map = regions.lock();
    if let Some(Entry::Over) = map.get(&lease.id) {
        map.remove(&lease.id);
        return false;
    }
    let Some(region) = publish(lease) else {
        map.insert(lease.id, Entry::Failed);
        return false;
    };
    map.insert(
        lease.id,
        Entry::Granted {
            region,
            holder: lease.holder_sender.clone(),
            lane: usize::from(lease.lane),
            callee: lease.callee_sender.clone(),
        },
    );
    tracing::debug!(
        holder = %lease.holder,
        callee = %lease.callee,
        lane = lease.lane,
        lease = lease.id,
        "direct lane granted"
    );
    true
}

/// The grant's work (under the table's lock): the region made, sent and published.
fn publish(lease: &LeaseRef<WorkerSender>) -> Option<LeaseRegion> {
    let (holder, callee) = rings(lease)?;
    let lane = usize::from(lease.lane);
    let grant = LaneGrant {
        lease: lease.id,
        function_id: lease.function_id,
        callee: lease.callee.raw(),
        timeout_ms: lease.timeout_ms,
    };
    let (region, fd) = match LeaseRegion::create_sealed(&format!("gloam-lease-{}", lease.id)) {
        Ok(made) => made,
        Err(e) => {
            tracing::warn!(error = %e, "could not create a lease region");
            return None;
        }
    };
    region.grant(&grant, lease.holder.raw(), lane);
    let msg = lease_message(&grant, lease.holder.raw(), lane).to_bytes();
    // The messages go first: a worker that sees the lease finds its region on its socket.
    let to_holder = [fd.as_raw_fd(), callee.bell_region().as_raw_fd()];
    if !holder.send_lease(&msg, &to_holder) || !callee.send_lease(&msg, &[fd.as_raw_fd()]) {
        return None;
    }
    // The callee's word first: a callee woken by the holder's first call finds it.
    callee.shared().publish_inbound(lease.id);
    holder.shared().publish_lane(lane, lease.id);
    Some(region)
}

/// The state says lease `id` is over: clears the words that still name it in its ends' ring
/// regions and drops its region (a holder or callee still in a call keeps its own mapping).
pub fn over(regions: &LeaseRegions, id: LeaseId) {
    let mut map = regions.lock();
    match map.remove(&id) {
        Some(Entry::Granted {
            region,
            holder,
            lane,
            callee,
        }) => {
            if let Some(h) = holder.ring() {
                h.shared().clear_lane(lane, id);
            }
            if let Some(c) = callee.ring() {
                c.shared().clear_inbound(id);
            }
            drop(region);
        }
        Some(Entry::Failed | Entry::Over) => {}
        None => {
            map.insert(id, Entry::Over);
        }
    }
}

/// Revokes a lease. `true` when it is over now (the callee has no call of the holder's in
/// hand); otherwise the callee's record of its answer ends it.
pub fn revoke(regions: &LeaseRegions, lease: &LeaseRef<WorkerSender>, holder_gone: bool) -> bool {
    let Some(region) = regions.region(lease.id) else {
        return true;
    };
    let found = region.revoke(lease.id);
    // A dead holder may have begun a call it never handed over: only a call in the callee's
    // inbound slot keeps the lease until the callee answers.
    let busy = matches!(found, Some(phase::CALLING | phase::ABANDONED))
        && (!holder_gone || region.inbound_busy(lease.id));
    tracing::debug!(
        holder = %lease.holder,
        callee = %lease.callee,
        lease = lease.id,
        busy,
        "direct lane revoked"
    );
    !busy
}

/// The callee of a lease died: the holder's waiting call, if any, fails with
/// `WORKER_CRASHED`.
pub fn fail(regions: &LeaseRegions, lease: &LeaseRef<WorkerSender>, text: &str) {
    let Some(region) = regions.region(lease.id) else {
        return;
    };
    let mut h = Header::new(Kind::Failed);
    h.worker_id = lease.holder.raw();
    h.function_id = lease.function_id;
    let failure = Message::failure(h, ErrorKind::WorkerCrashed, text).to_bytes();
    if region.fail(lease.id, &failure) {
        tracing::warn!(callee = %lease.callee, "worker {text} while running a direct call");
    }
    region.lane_bell().notify();
}

/// The call id in a lease's inbound slot (as its holder wrote it).
fn inbound_call(region: &LeaseRegion) -> u64 {
    let mut header = [0u8; MESSAGE_SIZE];
    region.inbound_header(&mut header);
    let word = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[at..at + 4]);
        u32::from_le_bytes(b)
    };
    gloam_core::CallId::new(word(offset::CALLER), word(offset::SEQUENCE)).0
}

/// Looks at every leased callee: the state kills one that has held the same lane call for
/// longer than its function's timeout plus the hung grace (its holder gave up long ago).
pub fn check_overdue(engine: &Engine) {
    let leases = engine.lock().lease_list();
    for (id, _) in leases {
        let Some(region) = engine.lease_regions().region(id) else {
            continue;
        };
        let busy = region.inbound_busy(id).then(|| inbound_call(&region));
        engine.event(|st, now| st.lease_observed(id, busy, now));
    }
}
