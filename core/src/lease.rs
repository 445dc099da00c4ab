//! The `LEASE` message: what the engine sends each end of a direct-lane lease (see
//! [`crate::lane`]), and the worker's side of receiving it.
//!
//! The engine sends one `LEASE` message to the holder and one to the callee, on their engine
//! sockets, before it publishes the lease in their ring regions. Header fields:
//!
//! | field         | meaning                                             |
//! |---------------|-----------------------------------------------------|
//! | `sequence`    | the lease id (1..=[`MAX_LEASE`])                    |
//! | `function_id` | the callee's function                               |
//! | `caller`      | the holder's worker id                              |
//! | `worker_id`   | the callee's worker id                              |
//! | inline payload (8 bytes) | `timeout_ms: u32`, `lane: u32` (little-endian) |
//!
//! Descriptors: the lease region, and for the holder also the callee's doorbell region. A
//! worker takes the message as the holder's when it names it as the holder and carries two
//! descriptors, as the callee's when it names it as the callee and carries one; anything else
//! is ignored. Both regions are mapped on receipt (checked sealed and of their size).
//!
//! A worker reads these messages only when its ring region names a lease it has not mapped
//! ([`crate::engine_socket::EngineSocket::take_lease`]): once per lease, never per call.

use std::os::fd::OwnedFd;

use crate::bell::Bell;
use crate::lane::{Holder, LaneGrant, LeaseRegion, LANES, MAX_LEASE};
use crate::protocol::{Header, Kind, Message, MESSAGE_SIZE};
use crate::ring::BellRegion;

/// Which end of a lease a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It calls through the lease (a lane of its own).
    Holder,
    /// It serves the calls (its inbound slot).
    Callee,
}

/// The `LEASE` message for `grant`, held by worker `holder` on its lane `lane` (the same
/// message goes to both ends; the descriptors travel beside it).
pub fn lease_message(grant: &LaneGrant, holder: u32, lane: usize) -> Message {
    let mut h = Header::new(Kind::Lease);
    h.sequence = grant.lease;
    h.function_id = grant.function_id;
    h.caller = holder;
    h.worker_id = grant.callee;
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&grant.timeout_ms.to_le_bytes());
    payload[4..].copy_from_slice(&(lane as u32).to_le_bytes());
    match Message::with_inline(h, &payload) {
        Ok(m) => m,
        // Eight bytes always fit inline.
        Err(_) => Message::new(h),
    }
}

/// One end of a lease, as a worker received it: what the engine said, and the memory mapped.
#[derive(Debug)]
pub struct LeaseEnd {
    /// This worker's role.
    pub role: Role,
    /// The lease and its callee.
    pub grant: LaneGrant,
    /// The holder and its lane.
    pub holder: Holder,
    /// The lease's region.
    pub region: LeaseRegion,
    /// Its lane doorbell.
    pub lane_bell: Bell,
    /// The callee's doorbell (the holder's end only).
    pub callee_bell: Option<Bell>,
}

/// Reads a `LEASE` message sent to worker `me` with `fds`: its end, or `None` when it is not a
/// well-formed one for `me` (the regions are mapped here, and checked).
pub fn read_lease(bytes: &[u8; MESSAGE_SIZE], fds: &[OwnedFd], me: u32) -> Option<LeaseEnd> {
    let m = Message::decode(bytes, 0).ok()?;
    let h = m.header;
    let payload = m.inline_payload();
    if h.kind != Kind::Lease || payload.len() != 8 || h.sequence == 0 || h.sequence > MAX_LEASE {
        return None;
    }
    let word = |at: usize| {
        u32::from_le_bytes([
            payload[at],
            payload[at + 1],
            payload[at + 2],
            payload[at + 3],
        ])
    };
    let lane = usize::try_from(word(4)).ok().filter(|l| *l < LANES)?;
    let role = match fds.len() {
        2 if h.caller == me => Role::Holder,
        1 if h.worker_id == me => Role::Callee,
        _ => return None,
    };
    let region = LeaseRegion::from_fd(&fds[0]).ok()?;
    let callee_bell = match role {
        Role::Holder => Some(BellRegion::from_fd(&fds[1], "callee doorbell").ok()?.bell()),
        Role::Callee => None,
    };
    Some(LeaseEnd {
        role,
        grant: LaneGrant {
            lease: h.sequence,
            function_id: h.function_id,
            callee: h.worker_id,
            timeout_ms: word(0),
        },
        holder: Holder {
            worker: h.caller,
            lane,
            lease: h.sequence,
        },
        lane_bell: region.lane_bell(),
        region,
        callee_bell,
    })
}
