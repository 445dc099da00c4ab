//! What workers send, as the engine takes it: the transports' sink ([`Inbound`]). A message
//! from a worker's ring or pipe is decoded, the payload it names taken from the worker's
//! socket and checked, and the event handed to the state; a worker that breaks the protocol
//! is disconnected, which fails its call and drops its payloads.

use std::sync::Arc;

use gloam_core::clock::now_ns;
use gloam_core::payload::PayloadSide;
use gloam_core::protocol::{flags, Kind, Message, PayloadLocation, MESSAGE_SIZE};

use crate::engine::Engine;
use crate::state::{Action, WorkerId};
use crate::transport::{Inbound, PeerSocket};

impl Engine {
    /// Removes worker `worker` (gone or misbehaving): fails its call, stops reading its link,
    /// removes its files. Idempotent.
    pub(crate) fn disconnect_worker(&self, worker: WorkerId, reason: &str) {
        if let Some(p) = self.poller() {
            if let Err(bad) = p.remove(self, worker) {
                tracing::warn!(%worker, "while disconnecting: {bad}");
            }
        }
        let actions = {
            let mut st = self.lock();
            let actions = st.worker_gone(worker, reason, now_ns());
            self.after(&mut st);
            actions
        };
        let crashed = actions
            .iter()
            .any(|a| matches!(a, Action::Send { .. } | Action::Reply { .. }));
        if crashed {
            tracing::warn!(%worker, "worker {reason} while running a call");
        } else {
            tracing::debug!(%worker, "worker {reason}");
        }
        self.apply(actions);
        self.payloads().drop_of_caller(worker.raw());
    }

    /// Handles one message from worker `worker`. An error disconnects that worker.
    pub(crate) fn on_message(
        &self,
        worker: WorkerId,
        socket: &PeerSocket,
        bytes: &[u8; MESSAGE_SIZE],
    ) -> Result<(), String> {
        let msg =
            Message::decode(bytes, self.config().engine.max_payload).map_err(|e| e.to_string())?;
        let h = &msg.header;
        let lane = h.flags & flags::LANE != 0;
        // The payload it names came first on its socket: taken and checked before anyone
        // acts on the message (a bad one is the worker's fault; it is dropped).
        if h.kind == Kind::Payload {
            // The answer of a direct-lane call went to its caller without the engine; its
            // payload's descriptor comes here, for the caller.
            if !lane {
                return Err("a PAYLOAD message on a worker channel must be a lane answer's".into());
            }
            let record = socket.take_lane_answer(h.call_id())?;
            self.forward_lane_payload(worker, record);
            return Ok(());
        }
        let payload = match (h.payload_loc, h.kind) {
            (PayloadLocation::Descriptor, _) if lane => {
                return Err("a lane record cannot carry a payload".into())
            }
            (PayloadLocation::Descriptor, Kind::Invoke) => Some(PayloadSide::Input),
            (PayloadLocation::Descriptor, Kind::Complete) => Some(PayloadSide::Output),
            (PayloadLocation::Descriptor, other) => {
                return Err(format!("{other:?} cannot carry a payload"))
            }
            _ => None,
        };
        let received = match payload {
            Some(side) => Some((side, self.receive_payload(worker, socket, &msg, side)?)),
            None => None,
        };
        let (id, kind) = (h.call_id(), h.kind);
        let now = now_ns();
        let actions = {
            let mut st = self.lock();
            let actions = match kind {
                Kind::Complete | Kind::Failed if lane => st.lane_tally(worker, &msg, now),
                Kind::Complete | Kind::Failed => st.worker_answered(worker, Box::new(msg), now),
                Kind::Invoke => st.admit_internal(worker, Box::new(msg), now),
                other => Err(format!("unexpected {other:?} message on a worker channel")),
            };
            self.after(&mut st);
            actions
        };
        // Held before anything goes out: the actions may answer the caller, who reads it.
        let actions = actions?;
        if let Some((side, (fd, len))) = received {
            self.payloads().put(id, side, fd, len);
        }
        self.apply(actions);
        Ok(())
    }
}

impl Inbound for Engine {
    fn message(
        &self,
        worker: WorkerId,
        socket: &PeerSocket,
        bytes: &[u8; MESSAGE_SIZE],
    ) -> Result<(), String> {
        self.on_message(worker, socket, bytes)
    }

    fn disconnected(&self, worker: WorkerId, reason: &str) {
        let link = self.lock().worker(worker).map(|w| Arc::clone(&w.sender));
        // First the reason the worker goes, then the link's reader task stops (the kick ends
        // its socket watch; the disconnection it reports then finds the worker gone).
        self.disconnect_worker(worker, reason);
        if let Some(link) = link {
            link.kick();
        }
    }
}
