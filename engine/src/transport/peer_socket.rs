//! The engine's end of a worker's socket after the handshake: what the engine sends on it
//! (`LEASE` messages, `PAYLOAD` records, each with descriptors) and the `PAYLOAD` records the
//! worker sends.
//!
//! Nothing here blocks. A worker sends a payload's record before the ring or FIFO message that
//! names it (for the answer of a direct-lane call, a `PAYLOAD` message with the `LANE` flag),
//! so the thread handling that message finds the record with a non-blocking read
//! ([`PeerSocket::take_payload`], [`PeerSocket::take_lane_answer`]); nothing else reads the
//! socket, and a record alone wakes no thread. Records read while looking for another wait in
//! a short list; a worker that sends more than [`MAX_PENDING`] of them without the messages
//! naming them is broken or hostile, and is dropped.

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

    /// The record of (`call`, `side`): from the list, or read now. `Err` when the worker did
    /// not send it (or broke the protocol).
    pub fn take_payload(&self, call: CallId, side: PayloadSide) -> Result<Record, String> {
        self.take(call, side, false).map_err(|e| {
            e.unwrap_or_else(|| {
                format!("sent no descriptor for the {side:?} payload of call {call} it announced")
            })
        })
    }

    /// The record of the answer of direct-lane call `call` (which the engine forwards to the
    /// call's caller).
    pub fn take_lane_answer(&self, call: CallId) -> Result<Record, String> {
        self.take(call, PayloadSide::Output, true).map_err(|e| {
            e.unwrap_or_else(|| format!("sent no descriptor for the lane answer of call {call}"))
        })
    }

    /// `Err(None)`: not there; `Err(Some(why))`: the worker broke the protocol.
    fn take(&self, call: CallId, side: PayloadSide, lane: bool) -> Result<Record, Option<String>> {
        let mut inbox = lock(&self.inbox);
        let wanted = |r: &Record| r.lane == lane && r.call == call && r.side == side;
        if let Some(at) = inbox.pending.iter().position(wanted) {
            return Ok(inbox.pending.remove(at));
        }
        loop {
            match inbox.read_one(self.fd.as_fd()).map_err(Some)? {
                Some(r) if wanted(&r) => return Ok(r),
                Some(r) => {
                    if inbox.pending.len() >= MAX_PENDING {
                        return Err(Some(format!(
                            "sent more than {MAX_PENDING} payload descriptors no message named"
                        )));
                    }
                    inbox.pending.push(r);
                }
                None => return Err(None),
            }
        }
    }
}

impl Inbox {
    /// Reads one record if one is there now (`None` when nothing is).
    fn read_one(&mut self, sock: std::os::fd::BorrowedFd<'_>) -> Result<Option<Record>, String> {
        let got = match self.reader.read(sock, Blocking::No) {
            Ok(Some(got)) => got,
            Ok(None) => return Err("closed its socket".into()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(format!("its socket failed: {e}")),
        };
        let is_record =
            got.bytes[0] == PROTOCOL_VERSION && Kind::from_u8(got.bytes[1]) == Some(Kind::Payload);
        is_record
            .then(|| payload::read_record(&got.bytes, got.fds))
            .flatten()
            .map(Some)
            .ok_or_else(|| "sent something other than a PAYLOAD record on its socket".into())
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
        // The lane answer is only ever taken as one.
        assert!(engine.take_payload(a, PayloadSide::Output).is_err());
        let lane = engine.take_lane_answer(a).unwrap();
        assert_eq!(
            (lane.call, lane.side, lane.lane),
            (a, PayloadSide::Output, true)
        );
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
        let err = engine.take_payload(a, PayloadSide::Input).unwrap_err();
        assert!(err.contains("closed its socket"), "{err}");
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
        let err = engine
            .take_payload(CallId::new(7, 999), PayloadSide::Input)
            .unwrap_err();
        assert!(err.contains("more than 64"), "{err}");

        let (worker, engine) = pair();
        let other =
            gloam_core::protocol::Message::new(gloam_core::protocol::Header::new(Kind::Dispatch))
                .to_bytes();
        socket::send_with_fds(worker.fd(), &other, &[], false).unwrap();
        let err = engine
            .take_payload(CallId::new(7, 1), PayloadSide::Input)
            .unwrap_err();
        assert!(err.contains("other than a PAYLOAD record"), "{err}");
    }
}
