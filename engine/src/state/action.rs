//! What the state decides: the actions the engine carries out after releasing the lock, and
//! the outcomes it hands to external callers.

use gloam_core::payload::PayloadSide;
use gloam_core::protocol::{CallId, Message};
use gloam_core::ErrorKind;

use super::ids::{LeaseId, WorkerId};

/// Who receives a call's result.
#[derive(Debug)]
pub enum ReplyTo<R> {
    /// An external caller (the gateway), through this handle.
    External(R),
    /// The worker that made the internal call (this incarnation of it only).
    Worker(WorkerId),
}

/// How an external call ended.
#[derive(Debug)]
pub enum Outcome {
    /// The worker's `COMPLETE` message (output inline or by descriptor).
    Complete(Box<Message>, Timing),
    /// A failure with its kind and text.
    Failed(ErrorKind, String),
}

/// Per-call times reported back to the gateway (ns).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Receive → dispatch.
    pub queued_ns: u64,
    /// Dispatch → completion seen by the engine.
    pub running_ns: u64,
    /// Handler time reported by the worker.
    pub processing_ns: u64,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error kind.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

impl Refusal {
    /// A refusal of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }
}

/// The two ends of a lease, for the engine to reach their shared memory.
#[derive(Debug)]
pub struct LeaseRef<S> {
    /// The lease.
    pub id: LeaseId,
    /// The holder (caller).
    pub holder: WorkerId,
    /// Its sender.
    pub holder_sender: S,
    /// The holder's lane.
    pub lane: u8,
    /// The callee.
    pub callee: WorkerId,
    /// Its sender.
    pub callee_sender: S,
    /// The callee's function.
    pub function_id: u16,
    /// The callee function's own timeout in ms (0 = none).
    pub timeout_ms: u32,
}

/// Something the engine must do.
#[derive(Debug)]
pub enum Action<R, S> {
    /// Send `msg` to worker `worker` through `sender`.
    Send {
        /// The worker.
        worker: WorkerId,
        /// Its sender.
        sender: S,
        /// The message.
        msg: Box<Message>,
    },
    /// Hand an outcome to an external caller.
    Reply {
        /// The caller's handle.
        to: R,
        /// The outcome.
        outcome: Outcome,
    },
    /// Drop the payload of this call's side the engine may hold.
    DropPayload(CallId, PayloadSide),
    /// Ask the launcher of this function for one more worker process.
    Grow(u16),
    /// The worker process of process group `group` was asked to retire: when it exits, its
    /// launcher slot ends instead of restarting.
    RetireProcess {
        /// The function.
        function_id: u16,
        /// The process group (the launcher's child).
        group: u32,
    },
    /// A worker is hung (its call passed its deadline by the grace period, or a revoked lease
    /// never ended): kill its process (the launcher restarts it), or drop its link when the
    /// engine did not start it.
    Kill {
        /// The worker.
        worker: WorkerId,
        /// Its function.
        function_id: u16,
        /// Its process group, 0 when unknown.
        group: u32,
        /// Why, for the log.
        reason: String,
    },
    /// Write a lease into the holder's lane and the callee's inbound control. When the lane
    /// cannot be granted now the engine reports [`super::State::lease_ended`].
    Grant(LeaseRef<S>),
    /// Revoke a lease. When the lane shows no call in the callee's hands the engine reports
    /// [`super::State::lease_ended`]; otherwise the callee's record of its answer ends it.
    Revoke {
        /// The lease.
        lease: LeaseRef<S>,
        /// The holder is gone: a call it began but never handed over does not count.
        holder_gone: bool,
    },
    /// The callee of a lease died: fail the call waiting in the holder's lane, if any.
    FailLane {
        /// The lease.
        lease: LeaseRef<S>,
        /// The failure text.
        text: String,
    },
    /// A lease is over (whatever ended it, its holder or callee gone included): the engine
    /// clears what it published of it in the ends' ring regions (where that still names it)
    /// and drops its region. Comes after every other action of that lease.
    LeaseOver(LeaseId),
}

/// A batch of actions.
pub type Actions<R, S> = Vec<Action<R, S>>;
