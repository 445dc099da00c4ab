//! The engine's end of a worker's socket after the handshake: what the engine sends on it
//! (`LEASE` messages, `PAYLOAD` records, each with descriptors) and the `PAYLOAD` records the
//! worker sends.
//!
//! Nothing here blocks. A worker sends a payload's record before the ring or FIFO message that
//! names it, so the thread handling that message finds the record with a non-blocking read
//! ([`PeerSocket::take_payload`]); the socket watcher reads whatever else comes (the answers of
//! direct-lane calls, which the engine forwards, and the socket's end). Records nobody took
//! yet wait in a short list; a worker that sends more than [`MAX_PENDING`] of them without the
//! messages naming them is broken or hostile, and is dropped.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};

use gloam_core::payload::{self, PayloadSide, Record};
use gloam_core::protocol::{CallId, Kind, MESSAGE_SIZE, PROTOCOL_VERSION};
use gloam_core::socket::{self, Blocking, MessageReader};

/// The socket's unread bytes above which nothing more is sent to a worker (it reads its socket
/// only when a message names something there: a worker that never does gets no more).
const MAX_UNREAD: usize = 64 << 10;
/// Records a worker may have sent that no message named yet.
pub const MAX_PENDING: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Inbox {
    reader: MessageReader,
    pending: Vec<Record>,
}

/// Why a message was not sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsent {
    /// The worker has too much unread on its socket (nothing was sent).
    Full,
    /// The socket failed, or the message could not be finished: the worker must be dropped.
    Broken(String),
}

impl std::fmt::Display for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsent::Full => f.write_str("it leaves its socket unread"),
            Unsent::Broken(why) => f.write_str(why),
        }
    }
}

/// What a read of the socket found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Everything there now was read.
    Drained,
    /// The worker closed the socket.
    Closed,
}

/// One worker's socket, as the engine holds it (a duplicate of the handshake's descriptor).
pub struct PeerSocket {
    fd: OwnedFd,
    /// Boxed: the reader's buffer is a whole message.
    inbox: Box<Mutex<Inbox>>,
    /// Whole messages go out one at a time.
    send: Mutex<()>,
}

impl std::fmt::Debug for PeerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSocket").finish_non_exhaustive()
    }
}

impl PeerSocket {
    /// Wraps `fd`, a duplicate of the worker's handshake socket (non-blocking).
    pub fn new(fd: OwnedFd) -> PeerSocket {
        PeerSocket {
            fd,
            inbox: Box::default(),
            send: Mutex::new(()),
        }
    }

    /// Sends `msg` with `fds` attached, without blocking.
    pub fn send(&self, msg: &[u8; MESSAGE_SIZE], fds: &[RawFd]) -> Result<(), Unsent> {
        let _one = lock(&self.send);
        let sock = self.fd.as_fd();
        if socket::unread_bytes(sock).map_or(true, |n| n > MAX_UNREAD) {
            return Err(Unsent::Full);
        }
        let mut sent = match socket::send_with_fds(sock, msg, fds, true) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(Unsent::Full),
            Err(e) => return Err(Unsent::Broken(format!("its socket failed: {e}"))),
        };
        // Room was checked above; a short send only finishes the same message.
        for _ in 0..64 {
            if sent == MESSAGE_SIZE {
                return Ok(());
            }
            match socket::send_with_fds(sock, &msg[sent..], &[], true) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => return Err(Unsent::Broken(format!("its socket failed: {e}"))),
            }
        }
        Err(Unsent::Broken("it does not read its socket".into()))
    }

    /// Sends the `PAYLOAD` record of (`call`, `side`) with its descriptor to worker `to`.
    pub fn send_payload(
        &self,
        to: u32,
        call: CallId,
        side: PayloadSide,
        len: u32,
        fd: &OwnedFd,
    ) -> Result<(), Unsent> {
        use std::os::fd::AsRawFd;
        let msg = payload::record(call, side, len, to, false).to_bytes();
        self.send(&msg, &[fd.as_raw_fd()])
    }

    /// Reads everything the socket holds now into the list. `Err`: the worker broke the
    /// protocol (something other than a record, or too many records nobody asked for).
    pub fn read_now(&self) -> Result<Read, String> {
        lock(&self.inbox).read_now(self.fd.as_fd())
    }

    /// The record of (`call`, `side`): from the list, or read now. `Err` when the worker did
    /// not send it (or broke the protocol).
    pub fn take_payload(&self, call: CallId, side: PayloadSide) -> Result<Record, String> {
        let mut inbox = lock(&self.inbox);
        if let Some(r) = inbox.remove(call, side) {
            return Ok(r);
        }
        inbox.read_now(self.fd.as_fd())?;
        inbox.remove(call, side).ok_or_else(|| {
            format!("sent no descriptor for the {side:?} payload of call {call} it announced")
        })
    }

    /// Takes the records of direct-lane answers read so far (the engine forwards them).
    pub fn take_lane_answers(&self) -> Vec<Record> {
        let mut inbox = lock(&self.inbox);
        if !inbox.pending.iter().any(|r| r.lane) {
            return Vec::new();
        }
        let (lane, rest) = std::mem::take(&mut inbox.pending)
            .into_iter()
            .partition(|r| r.lane);
        inbox.pending = rest;
        lane
    }
}

impl Inbox {
    fn remove(&mut self, call: CallId, side: PayloadSide) -> Option<Record> {
        let at = self
            .pending
            .iter()
            .position(|r| !r.lane && r.call == call && r.side == side)?;
        Some(self.pending.remove(at))
    }

    fn read_now(&mut self, sock: std::os::fd::BorrowedFd<'_>) -> Result<Read, String> {
        loop {
            let got = match self.reader.read(sock, Blocking::No) {
                Ok(Some(got)) => got,
                Ok(None) => return Ok(Read::Closed),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Read::Drained),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Read::Closed),
                Err(e) => return Err(format!("its socket failed: {e}")),
            };
            let is_record = got.bytes[0] == PROTOCOL_VERSION
                && Kind::from_u8(got.bytes[1]) == Some(Kind::Payload);
            let record = is_record
                .then(|| payload::read_record(&got.bytes, got.fds))
                .flatten();
            let Some(record) = record else {
                return Err("sent something other than a PAYLOAD record on its socket".into());
            };
            if self.pending.len() >= MAX_PENDING {
                return Err(format!(
                    "sent more than {MAX_PENDING} payload descriptors no message named"
                ));
            }
            self.pending.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use gloam_core::engine_socket::EngineSocket;

    use super::*;

    fn pair() -> (EngineSocket, PeerSocket) {
        let (w, e) = UnixStream::pair().unwrap();
        e.set_nonblocking(true).unwrap();
        (EngineSocket::new(w.into(), 7), PeerSocket::new(e.into()))
    }

    #[test]
    fn payloads_go_both_ways_and_are_matched_by_call_and_side() {
        let (worker, engine) = pair();
        let data = vec![3u8; 5000];
        let fd = payload::create(&data, 1 << 20).unwrap();
        let (a, b) = (CallId::new(7, 1), CallId::new(7, 2));
        worker
            .send_payload(b, PayloadSide::Input, 5000, &fd, false)
            .unwrap();
        worker
            .send_payload(a, PayloadSide::Output, 5000, &fd, true)
            .unwrap();
        worker
            .send_payload(a, PayloadSide::Input, 5000, &fd, false)
            .unwrap();
        let r = engine.take_payload(a, PayloadSide::Input).unwrap();
        assert_eq!(payload::read(&r.fd, r.len).unwrap(), data);
        let lane = engine.take_lane_answers();
        assert_eq!(lane.len(), 1);
        assert_eq!((lane[0].call, lane[0].side), (a, PayloadSide::Output));
        assert!(engine.take_payload(a, PayloadSide::Output).is_err());
        assert!(engine.take_payload(b, PayloadSide::Input).is_ok());
        // And back to the worker.
        engine
            .send_payload(7, b, PayloadSide::Output, 5000, &fd)
            .unwrap();
        let got = worker
            .take_payload(b, PayloadSide::Output, 5000, std::time::Duration::ZERO)
            .unwrap();
        assert_eq!(payload::read(&got, 5000).unwrap(), data);
        drop(worker);
        assert_eq!(engine.read_now(), Ok(Read::Closed));
    }

    #[test]
    fn a_worker_that_floods_records_or_sends_other_messages_is_refused() {
        let (worker, engine) = pair();
        let fd = payload::create(&[1; 2000], 1 << 20).unwrap();
        for i in 0..=MAX_PENDING as u32 {
            worker
                .send_payload(CallId::new(7, i), PayloadSide::Input, 2000, &fd, false)
                .unwrap();
        }
        let err = engine.read_now().unwrap_err();
        assert!(err.contains("more than 64"), "{err}");

        let (worker, engine) = pair();
        let other =
            gloam_core::protocol::Message::new(gloam_core::protocol::Header::new(Kind::Dispatch))
                .to_bytes();
        socket::send_with_fds(worker.fd(), &other, &[], false).unwrap();
        let err = engine.read_now().unwrap_err();
        assert!(err.contains("other than a PAYLOAD record"), "{err}");
    }
}
