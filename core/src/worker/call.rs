//! A call received by a worker.

use crate::payload::PayloadView;
use crate::protocol::{CallId, Message};

/// A call to run: its identity, deadline and input. The input stays valid until the call is
/// completed or failed (it borrows the message, or a read-only mapping of the input's memfd).
#[derive(Debug)]
pub struct Call {
    pub(crate) msg: Message,
    pub(crate) payload: Option<PayloadView>,
    pub(crate) received_ns: u64,
}

/// What an internal call needs from its parent: the parent's id and deadline. `Copy`, so it can
/// be handed to other threads that issue internal calls for the same parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentRef {
    /// The parent call.
    pub call_id: CallId,
    /// The parent's deadline (monotonic ns, 0 = none); internal calls inherit it.
    pub deadline_ns: u64,
}

impl Call {
    /// The call's id.
    pub fn id(&self) -> CallId {
        self.msg.header.call_id()
    }
    /// The function id (see the function table for its name).
    pub fn function_id(&self) -> u16 {
        self.msg.header.function_id
    }
    /// The method id (0 for plain functions).
    pub fn method_id(&self) -> u16 {
        self.msg.header.method_id
    }
    /// The deadline, as `CLOCK_MONOTONIC` nanoseconds (0 = none); see [`crate::clock`].
    pub fn deadline_ns(&self) -> u64 {
        self.msg.header.deadline_ns
    }
    /// The input bytes.
    pub fn input(&self) -> &[u8] {
        match &self.payload {
            Some(view) => view.bytes(),
            None => self.msg.inline_payload(),
        }
    }
    /// What internal calls made for this call need.
    pub fn parent_ref(&self) -> ParentRef {
        ParentRef {
            call_id: self.id(),
            deadline_ns: self.deadline_ns(),
        }
    }
}
