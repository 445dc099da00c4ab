//! The engine's hands on direct lanes: it writes grants, revokes and a dead callee's failure
//! into the workers' ring regions (see `gloam_core::lane`), and watches leased callees for
//! calls their holders gave up on long ago.

use gloam_core::lane::{phase, LaneGrant};
use gloam_core::protocol::{offset, Header, Kind, Message, MESSAGE_SIZE};
use gloam_core::ErrorKind;

use crate::engine::Engine;
use crate::state::LeaseRef;
use crate::transport::{RingLink, WorkerSender};

fn rings(lease: &LeaseRef<WorkerSender>) -> Option<(&RingLink, &RingLink)> {
    Some((lease.holder_sender.ring()?, lease.callee_sender.ring()?))
}

/// Grants a lease: hands each end the other's region, then writes the lane. `false` when
/// it cannot be granted now (the holder's lane still holds an answer it has not read, or a
/// peer could not be sent): the lease is over.
pub fn grant(lease: &LeaseRef<WorkerSender>) -> bool {
    let Some((holder, callee)) = rings(lease) else {
        return false;
    };
    let lane = usize::from(lease.lane);
    if !holder.shared().lane_reusable(lane) {
        return false;
    }
    // The peers go first: a worker that sees the lease finds them on its socket.
    if !holder.send_peer(lease.callee, callee.region())
        || !callee.send_peer(lease.holder, holder.region())
    {
        return false;
    }
    let grant = LaneGrant {
        lease: lease.id,
        function_id: lease.function_id,
        callee: lease.callee.raw(),
        timeout_ms: lease.timeout_ms,
    };
    holder
        .shared()
        .grant_lane(lane, grant, lease.holder.raw(), callee.shared());
    tracing::debug!(
        holder = %lease.holder,
        callee = %lease.callee,
        lane,
        lease = lease.id,
        "direct lane granted"
    );
    true
}

/// Revokes a lease. `true` when it is over now (the callee has no call of the holder's in
/// hand); otherwise the callee's record of its answer ends it.
pub fn revoke(lease: &LeaseRef<WorkerSender>, holder_gone: bool) -> bool {
    let Some((holder, callee)) = rings(lease) else {
        return true;
    };
    let found = holder
        .shared()
        .revoke_lane(usize::from(lease.lane), lease.id);
    // A dead holder may have begun a call it never handed over: only a call in the callee's
    // inbound slot keeps the lease until the callee answers.
    let busy = matches!(found, Some(phase::CALLING | phase::ABANDONED))
        && (!holder_gone || callee.shared().inbound_busy(lease.id));
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
pub fn fail(lease: &LeaseRef<WorkerSender>, text: &str) {
    let Some(holder) = lease.holder_sender.ring() else {
        return;
    };
    let lane = usize::from(lease.lane);
    let mut h = Header::new(Kind::Failed);
    h.worker_id = lease.holder.raw();
    h.function_id = lease.function_id;
    let failure = Message::failure(h, ErrorKind::WorkerCrashed, text).to_bytes();
    if holder.shared().fail_lane(lane, lease.id, &failure) {
        tracing::warn!(callee = %lease.callee, "worker {text} while running a direct call");
    }
    holder.shared().lane_bell(lane).notify();
}

/// The call id in a callee's inbound slot (as its holder wrote it).
fn inbound_call(callee: &RingLink) -> u64 {
    let mut header = [0u8; MESSAGE_SIZE];
    callee.shared().inbound_header(&mut header);
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
    for (id, lease) in leases {
        let Some(link) = engine.ring_link(lease.callee) else {
            continue;
        };
        let busy = link.shared().inbound_busy(id).then(|| inbound_call(&link));
        engine.event(|st, now| st.lease_observed(id, busy, now));
    }
}
