//! The payloads the engine holds: descriptors of calls' inputs and outputs that do not fit
//! inline (sealed memfds, see `gloam_core::payload`), from the moment they arrive until they
//! are passed on or their call ends.
//!
//! Arrival: the engine creates an external call's input; a worker sends its `INVOKE`'s input
//! and its `COMPLETE`'s output on its socket, and the engine takes that record when it handles
//! the message ([`Engine::receive_payload`]). Passing on: when a message naming a payload goes
//! to a worker — a `DISPATCH`, or the answer to an internal call — the engine sends the
//! descriptor on that worker's socket first ([`Engine::pass_payload`]). External outputs are
//! read by the waiting connection. A payload is dropped when the state says its call ended
//! (`Action::DropPayload`), when its caller's worker is gone, or when it was passed on.
//! The answers of direct-lane calls never reach the engine as messages: their payloads are
//! forwarded on arrival to the lease's holder, after checking that the sender serves it.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use gloam_core::payload::{self, PayloadSide, Record};
use gloam_core::protocol::{CallId, Message};

use crate::engine::Engine;
use crate::state::WorkerId;
use crate::transport::{PeerSocket, WorkerLink};

/// Payloads from this size on are mapped rather than copied when the engine reads them:
/// measured on a 1 MiB echo, p50 1.98 vs 2.28 ms and 8 % less CPU per call; at 100 KiB the
/// mapping cost more CPU than the copy (+9 %), so smaller ones are copied.
const MAP_FROM: u32 = 512 << 10;

/// One payload in hand.
#[derive(Debug)]
struct Held {
    fd: OwnedFd,
    len: u32,
}

/// Every payload the engine holds, by call and side.
#[derive(Debug, Default)]
pub struct Payloads {
    held: Mutex<HashMap<(CallId, PayloadSide), Held>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Payloads {
    /// Keeps `fd`, the payload of (`call`, `side`), `len` bytes (replacing any earlier one).
    pub fn put(&self, call: CallId, side: PayloadSide, fd: OwnedFd, len: u32) {
        lock(&self.held).insert((call, side), Held { fd, len });
    }

    /// Takes the payload of (`call`, `side`) out of the table.
    pub fn take(&self, call: CallId, side: PayloadSide) -> Option<(OwnedFd, u32)> {
        lock(&self.held)
            .remove(&(call, side))
            .map(|h| (h.fd, h.len))
    }

    /// The payload of (`call`, `side`), out of the table, as bytes: copied when small, mapped
    /// when large (a copy of a megabyte costs more than a mapping). Sealed against shrinking,
    /// so the mapping cannot fault; a worker that changes its own output through a mapping it
    /// made before sealing garbles only its own answer.
    pub fn bytes(&self, call: CallId, side: PayloadSide) -> gloam_core::Result<bytes::Bytes> {
        let (fd, len) = self.take(call, side).ok_or_else(|| {
            gloam_core::Error::Internal(format!("the {side:?} payload of call {call} is gone"))
        })?;
        if len < MAP_FROM {
            return payload::read(&fd, len).map(bytes::Bytes::from);
        }
        payload::map(&fd, len).map(bytes::Bytes::from_owner)
    }

    /// Drops the payload of (`call`, `side`), if held.
    pub fn drop_payload(&self, call: CallId, side: PayloadSide) {
        lock(&self.held).remove(&(call, side));
    }

    /// Drops every payload of the calls worker `caller` made (it is gone).
    pub fn drop_of_caller(&self, caller: u32) {
        lock(&self.held).retain(|(call, _), _| call.caller() != caller);
    }

    /// How many payloads are held (`gloam_payloads_held`).
    pub fn count(&self) -> usize {
        lock(&self.held).len()
    }
}

impl Engine {
    /// Takes the payload `msg` names (its `INVOKE` input or `COMPLETE` output) from worker
    /// `worker`'s socket and checks it. `Err`: the worker broke the protocol. The caller holds
    /// it ([`Payloads::put`]) only once the state accepted the message: a worker answering a
    /// call that is not its own must not replace that call's payload, even for a moment.
    pub(crate) fn receive_payload(
        &self,
        worker: WorkerId,
        socket: &PeerSocket,
        msg: &Message,
        side: PayloadSide,
    ) -> Result<(OwnedFd, u32), String> {
        let (call, len) = (msg.header.call_id(), msg.header.payload_len);
        let r = socket.take_payload(call, side)?;
        if r.len != len || r.worker != worker.raw() {
            return Err(format!(
                "announced the {side:?} payload of call {call} as {} bytes from worker {}, its message says {len} bytes from {worker}",
                r.len, r.worker
            ));
        }
        payload::check(r.fd.as_fd(), len).map_err(|e| format!("sent a bad payload: {e}"))?;
        Ok((r.fd, len))
    }

    /// Before `msg` goes to worker `to` over `link`: sends it the payload `msg` names (a
    /// `DISPATCH`'s input, an answer's output), which the engine then no longer holds. A payload
    /// that cannot be sent is dropped: the worker, not finding it, fails the call.
    pub(crate) fn pass_payload(&self, to: WorkerId, link: &WorkerLink, msg: &Message) {
        let call = msg.header.call_id();
        let side = match msg.header.kind {
            gloam_core::protocol::Kind::Dispatch => PayloadSide::Input,
            _ => PayloadSide::Output,
        };
        let Some((fd, len)) = self.payloads().take(call, side) else {
            tracing::warn!(worker = %to, %call, "no payload held for a message that names one");
            return;
        };
        if let Err(why) = link.socket().send_payload(to.raw(), call, side, len, &fd) {
            tracing::warn!(worker = %to, %call, "could not pass a payload on: {why}");
        }
    }

    /// Forwards `r`, the payload of a direct-lane answer worker `callee` sent, to the holder
    /// of its lease. A record for anyone else is dropped: a worker cannot send payloads to
    /// workers whose calls it does not serve.
    pub(crate) fn forward_lane_payload(&self, callee: WorkerId, r: Record) {
        let holder = WorkerId::from_raw(r.call.caller());
        let link = holder.and_then(|holder| {
            let st = self.lock();
            st.lease_between(holder, callee)
                .then(|| st.worker(holder).map(|w| w.sender.clone()))
                .flatten()
        });
        let (Some(holder), Some(link)) = (holder, link) else {
            tracing::warn!(worker = %callee, call = %r.call, "dropped a lane answer's payload: it serves no lease of that call's caller");
            return;
        };
        if payload::check(r.fd.as_fd(), r.len).is_err() {
            tracing::warn!(worker = %callee, call = %r.call, "dropped a bad lane answer's payload");
            return;
        }
        if let Err(why) =
            link.socket()
                .send_payload(holder.raw(), r.call, PayloadSide::Output, r.len, &r.fd)
        {
            tracing::warn!(worker = %holder, call = %r.call, "could not forward a lane answer's payload: {why}");
        }
    }
}
