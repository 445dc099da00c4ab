//! Demultiplexes one channel between the threads of a logical worker.
//!
//! A worker's input channel carries both new calls (`DISPATCH`) and the replies to its own
//! internal calls (`COMPLETE`/`FAILED`, matched by sequence number). Several threads may wait
//! at once: the receive loop for the next call and any number of `invoke`s for their replies.
//! Whichever waiter finds no active reader becomes the reader (leader/follower): it reads the
//! channel without holding the lock, files what it read, and wakes the others. With a single
//! waiter — the common case — this is one uncontended lock and no hand-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::{Channel, Received, Wait};
use crate::engine_socket::EngineSocket;
use crate::error::{Error, Result};
use crate::payload::PayloadSide;
use crate::protocol::{Kind, Message, PayloadLocation, MESSAGE_SIZE};

/// What a waiter wants from the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The next `DISPATCH`.
    Call,
    /// The reply to the internal call with this sequence number.
    Reply(u32),
}

#[derive(Default)]
struct State {
    reader_active: bool,
    calls: VecDeque<Message>,
    replies: HashMap<u32, Message>,
    awaited: HashSet<u32>,
    retired: bool,
    woken: bool,
    closed: Option<String>,
}

pub(crate) struct Inbox {
    state: Mutex<State>,
    cond: Condvar,
    max_payload: u64,
}

impl Inbox {
    pub(crate) fn new(max_payload: u64) -> Inbox {
        Inbox {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            max_payload,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than losing the worker, so a poisoned lock is simply taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers interest in the reply to `seq` before the request is sent, so that a reply
    /// read by another thread is kept, not dropped.
    pub(crate) fn expect_reply(&self, seq: u32) {
        self.lock().awaited.insert(seq);
    }

    /// Forgets `seq` (the caller gave up); a late reply will be dropped with its payload.
    pub(crate) fn abandon(&self, seq: u32, socket: &EngineSocket) {
        let mut st = self.lock();
        st.awaited.remove(&seq);
        if let Some(m) = st.replies.remove(&seq) {
            drop(st);
            discard(&m, socket);
        }
    }

    /// Unblocks a waiter for [`Want::Call`], which then returns `Ok(None)`.
    pub(crate) fn wake(&self, channel: &dyn Channel) {
        self.lock().woken = true;
        self.cond.notify_all();
        channel.wake();
    }

    /// Closes the inbox: every waiter returns `Shutdown` with `reason`.
    pub(crate) fn close(&self, channel: &dyn Channel, reason: &str) {
        {
            let mut st = self.lock();
            if st.closed.is_none() {
                st.closed = Some(reason.to_string());
            }
        }
        self.cond.notify_all();
        channel.close();
    }

    /// Waits for `want`. `Ok(None)` means the wait ran out (or, for a call, a wake).
    pub(crate) fn wait(
        &self,
        channel: &dyn Channel,
        socket: &EngineSocket,
        want: Want,
        wait: Wait,
        spin: Duration,
    ) -> Result<Option<Message>> {
        let deadline = match wait {
            Wait::Timeout(d) => Some(Instant::now() + d),
            _ => None,
        };
        let mut st = self.lock();
        loop {
            match want {
                Want::Call => {
                    if let Some(m) = st.calls.pop_front() {
                        return Ok(Some(m));
                    }
                    if st.retired {
                        return Err(Error::Shutdown("worker retired by the engine".into()));
                    }
                    if std::mem::take(&mut st.woken) {
                        return Ok(None);
                    }
                }
                Want::Reply(seq) => {
                    if let Some(m) = st.replies.remove(&seq) {
                        st.awaited.remove(&seq);
                        return Ok(Some(m));
                    }
                }
            }
            if let Some(reason) = &st.closed {
                return Err(Error::Shutdown(reason.clone()));
            }
            let left = match (wait, deadline) {
                (Wait::NonBlocking, _) => Wait::NonBlocking,
                (Wait::Forever, _) => Wait::Forever,
                (Wait::Timeout(_), Some(d)) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    Wait::Timeout(left)
                }
                (Wait::Timeout(d), None) => Wait::Timeout(d),
            };
            if st.reader_active {
                st = match left {
                    Wait::NonBlocking => return Ok(None),
                    Wait::Forever => self.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Wait::Timeout(d) => {
                        self.cond
                            .wait_timeout(st, d)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                };
                continue;
            }
            st.reader_active = true;
            drop(st);
            let mut buf = [0u8; MESSAGE_SIZE];
            let got = channel.recv_spin(&mut buf, left, spin);
            st = self.lock();
            st.reader_active = false;
            match got {
                Ok(Received::Message) => match Message::decode(&buf, self.max_payload) {
                    Ok(m) => self.file(&mut st, m, socket),
                    Err(e) => {
                        st.closed = Some(format!("engine sent a malformed message: {e}"));
                    }
                },
                Ok(Received::TimedOut) => {
                    if matches!(left, Wait::NonBlocking) {
                        self.cond.notify_all();
                        return Ok(None);
                    }
                }
                Ok(Received::Woken) => {}
                Err(e) => {
                    if st.closed.is_none() {
                        st.closed = Some(e.to_string());
                    }
                }
            }
            self.cond.notify_all();
        }
    }

    fn file(&self, st: &mut State, m: Message, socket: &EngineSocket) {
        match m.header.kind {
            Kind::Dispatch => st.calls.push_back(m),
            Kind::Complete | Kind::Failed => {
                let seq = m.header.sequence;
                if st.awaited.contains(&seq) {
                    st.replies.insert(seq, m);
                } else {
                    discard(&m, socket);
                }
            }
            Kind::Retire => st.retired = true,
            other => {
                tracing::warn!(kind = ?other, "worker ignored an unexpected message from the engine");
            }
        }
    }
}

/// Drops a reply nobody waits for, with its payload.
fn discard(m: &Message, socket: &EngineSocket) {
    if m.header.payload_loc == PayloadLocation::Descriptor {
        socket.forget_payload(m.header.call_id(), PayloadSide::Output);
    }
}
