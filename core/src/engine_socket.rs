//! A worker's engine socket after the handshake: what the engine sends on it (leases of direct
//! lanes, payload descriptors) and the payload descriptors the worker sends.
//!
//! Nothing reads the socket in the background: a worker reads it when a message it got on its
//! channel names something that came (or comes) on the socket — a lease published in its ring
//! region ([`EngineSocket::take_lease`]), a payload passed by descriptor
//! ([`EngineSocket::take_payload`]). What it reads for someone else waits in short lists;
//! the oldest entry falls off a full list (a lease that ended, a payload whose call was given
//! up), so a peer cannot make the lists grow.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{Error, Result};
use crate::lease::{read_lease, LeaseEnd, Role};
use crate::payload::{self, PayloadSide, Record};
use crate::protocol::{CallId, Kind, MESSAGE_SIZE, PROTOCOL_VERSION};
use crate::socket::{self, Blocking, MessageReader};

/// Leases received and not yet published to this worker, kept at most (every lane's and an
/// inbound one or two).
const LEASES_KEPT: usize = 2 * crate::lane::LANES + 2;
/// Payloads received and not yet taken, kept at most (a call's input, the replies of its
/// internal calls, and a few whose calls were given up).
const PAYLOADS_KEPT: usize = 16;
/// How long a waiting taker sleeps between looks at the socket (another thread may have read
/// what it waits for into the list).
const POLL_SLICE: Duration = Duration::from_millis(2);

#[derive(Default)]
struct Inbox {
    reader: MessageReader,
    leases: Vec<LeaseEnd>,
    payloads: Vec<Record>,
}

impl Inbox {
    fn remove_lease(&mut self, lease: u32, role: Role) -> Option<LeaseEnd> {
        let at = self
            .leases
            .iter()
            .rposition(|e| e.grant.lease == lease && e.role == role)?;
        Some(self.leases.remove(at))
    }

    fn remove_payload(&mut self, call: CallId, side: PayloadSide) -> Option<Record> {
        let at = self
            .payloads
            .iter()
            .position(|r| r.call == call && r.side == side)?;
        Some(self.payloads.remove(at))
    }

    /// Files one message if one is readable now; `Ok(false)` when none is. `Err` only when the
    /// socket failed or closed.
    fn read_one(&mut self, sock: BorrowedFd<'_>, me: u32) -> Result<bool> {
        match self.reader.read(sock, Blocking::No) {
            Ok(Some(got)) => {
                self.file(got, me);
                Ok(true)
            }
            Ok(None) => Err(Error::Shutdown("the engine closed its socket".into())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(Error::io("read", "engine socket", e)),
        }
    }

    /// Files everything readable now.
    fn read_all(&mut self, sock: BorrowedFd<'_>, me: u32) -> Result<()> {
        while self.read_one(sock, me)? {}
        Ok(())
    }

    fn file(&mut self, got: socket::Received, me: u32) {
        if got.bytes[0] != PROTOCOL_VERSION {
            tracing::warn!("ignored a message of another protocol version on the engine socket");
            return;
        }
        match Kind::from_u8(got.bytes[1]) {
            Some(Kind::Lease) => match read_lease(&got.bytes, &got.fds, me) {
                Some(end) => {
                    if self.leases.len() >= LEASES_KEPT {
                        self.leases.remove(0);
                    }
                    self.leases.push(end);
                }
                None => tracing::warn!("ignored a malformed LEASE message from the engine"),
            },
            Some(Kind::Payload) => match payload::read_record(&got.bytes, got.fds) {
                Some(r) => {
                    if self.payloads.len() >= PAYLOADS_KEPT {
                        self.payloads.remove(0);
                    }
                    self.payloads.push(r);
                }
                None => tracing::warn!("ignored a malformed PAYLOAD record from the engine"),
            },
            other => {
                tracing::warn!(kind = ?other, "ignored an unexpected message on the engine socket")
            }
        }
    }
}

/// Worker `me`'s end of the engine socket.
pub struct EngineSocket {
    fd: OwnedFd,
    me: u32,
    inbox: Mutex<Inbox>,
    /// Whole records go out one at a time.
    send: Mutex<()>,
}

impl std::fmt::Debug for EngineSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSocket")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EngineSocket {
    /// Wraps the handshake socket of worker `me` (blocking, as the handshake left it).
    pub fn new(fd: OwnedFd, me: u32) -> EngineSocket {
        EngineSocket {
            fd,
            me,
            inbox: Mutex::new(Inbox::default()),
            send: Mutex::new(()),
        }
    }

    /// The socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the engine closed its end (unread messages do not count).
    pub fn engine_gone(&self) -> bool {
        let mut fds = [PollFd::new(
            self.fd.as_fd(),
            PollFlags::from_bits_retain(libc::POLLRDHUP),
        )];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// This worker's end `role` of lease `lease`, from the list or from what waits on the
    /// socket now. `None`: the engine sent no such lease (it is over, or it was malformed).
    pub fn take_lease(&self, lease: u32, role: Role) -> Option<LeaseEnd> {
        let mut inbox = lock(&self.inbox);
        if let Some(end) = inbox.remove_lease(lease, role) {
            return Some(end);
        }
        if let Err(e) = inbox.read_all(self.fd.as_fd(), self.me) {
            tracing::debug!(error = %e, "reading leases from the engine socket");
        }
        inbox.remove_lease(lease, role)
    }

    /// The payload of (`call`, `side`), `len` bytes, checked: from the list, or from the
    /// socket within `wait`.
    pub fn take_payload(
        &self,
        call: CallId,
        side: PayloadSide,
        len: u32,
        wait: Duration,
    ) -> Result<OwnedFd> {
        let until = Instant::now() + wait;
        loop {
            {
                let mut inbox = lock(&self.inbox);
                // Records come in the order of the messages naming them: read only as far as
                // this one.
                let mut found = inbox.remove_payload(call, side);
                while found.is_none() && inbox.read_one(self.fd.as_fd(), self.me)? {
                    found = inbox.remove_payload(call, side);
                }
                if let Some(r) = found {
                    if r.len != len {
                        return Err(Error::RemoteProtocol(format!(
                            "the {side:?} payload of call {call} is announced as {} bytes, its message says {len}",
                            r.len
                        )));
                    }
                    payload::check(r.fd.as_fd(), len)?;
                    return Ok(r.fd);
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::RemoteProtocol(format!(
                    "the {side:?} payload of call {call} did not come with its message"
                )));
            }
            let slice = left.min(POLL_SLICE);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(slice.as_millis().max(1)).unwrap_or(u16::MAX);
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }

    /// Drops the payload of (`call`, `side`) if it came (its call was given up).
    pub fn forget_payload(&self, call: CallId, side: PayloadSide) {
        let mut inbox = lock(&self.inbox);
        if inbox.remove_payload(call, side).is_none() {
            let _ = inbox.read_all(self.fd.as_fd(), self.me);
            inbox.remove_payload(call, side);
        }
    }

    /// Sends `fd`, the payload of (`call`, `side`), `len` bytes, to the engine (`lane`: the
    /// answer of a direct-lane call, which the engine forwards to its caller).
    pub fn send_payload(
        &self,
        call: CallId,
        side: PayloadSide,
        len: u32,
        fd: &OwnedFd,
        lane: bool,
    ) -> Result<()> {
        let bytes = payload::record(call, side, len, self.me, lane).to_bytes();
        let _one = lock(&self.send);
        let mut sent = 0;
        while sent < MESSAGE_SIZE {
            let attach = if sent == 0 {
                &[fd.as_raw_fd()][..]
            } else {
                &[]
            };
            match socket::send_with_fds(self.fd.as_fd(), &bytes[sent..], attach, false) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The socket is non-blocking when a channel set it so: wait for room.
                    let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(100u16));
                }
                Err(e) => return Err(Error::io("send payload", "engine socket", e)),
            }
        }
        Ok(())
    }
}
