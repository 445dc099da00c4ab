//! Whole messages with file descriptors over the engine socket (a Unix stream socket).
//!
//! The engine hands every channel out by descriptor (`SCM_RIGHTS`): with `WELCOME` a worker's
//! ring region and the doorbell regions, or (FIFO transport) its ends of its two pipes; a
//! lease's region (and for its holder, the callee's doorbell region) with each `LEASE` message.
//! A stream socket may split a message across reads; the descriptors arrive with the read
//! that returns the message's first byte, so [`MessageReader`] keeps a partial message and
//! its descriptors together until the message is whole.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::cmsg_space;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::protocol::MESSAGE_SIZE;

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 4;

/// Sends `bytes` with `fds` attached to their first byte. Non-blocking when `nonblocking`
/// (then `WouldBlock` means nothing was sent). Returns the bytes sent: the caller sends the
/// rest without descriptors.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[RawFd],
    nonblocking: bool,
) -> io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, flags, None) {
            Ok(n) => return Ok(n),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Bytes queued in `sock`'s send buffer and not yet read by the peer (`SIOCOUTQ`).
pub fn unread_bytes(sock: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (== TIOCOUTQ) writes one int through the valid pointer given.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// A message read whole, with the descriptors that came with it.
#[derive(Debug)]
pub struct Received {
    /// The message bytes.
    pub bytes: [u8; MESSAGE_SIZE],
    /// Its descriptors (owned: closed on drop).
    pub fds: Vec<OwnedFd>,
}

/// Reassembles messages from a stream socket, keeping descriptors with their message.
#[derive(Debug)]
pub struct MessageReader {
    buf: [u8; MESSAGE_SIZE],
    filled: usize,
    fds: Vec<OwnedFd>,
}

impl Default for MessageReader {
    fn default() -> MessageReader {
        MessageReader {
            buf: [0; MESSAGE_SIZE],
            filled: 0,
            fds: Vec::new(),
        }
    }
}

/// How [`MessageReader::read`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// Until a whole message arrived (or the socket's own timeout).
    Yes,
    /// Return `WouldBlock` when no more bytes are there now.
    No,
}

impl MessageReader {
    /// Reads until one whole message is in: `Ok(None)` at end of stream before any byte of
    /// it; `UnexpectedEof` when the stream ends inside a message.
    pub fn read(
        &mut self,
        sock: BorrowedFd<'_>,
        blocking: Blocking,
    ) -> io::Result<Option<Received>> {
        while self.filled < MESSAGE_SIZE {
            let mut space = cmsg_space!([RawFd; MAX_FDS]);
            let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
            if blocking == Blocking::No {
                flags |= MsgFlags::MSG_DONTWAIT;
            }
            let (n, fds) = {
                let mut iov = [IoSliceMut::new(&mut self.buf[self.filled..])];
                let msg = match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags) {
                    Ok(m) => m,
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => return Err(io::Error::from(e)),
                };
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just installed these descriptors in this
                            // process for us; nothing else owns them.
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                (msg.bytes, fds)
            };
            self.fds.extend(fds);
            if n == 0 {
                if self.filled == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the socket closed after {} bytes of a message", self.filled),
                ));
            }
            self.filled += n;
        }
        self.filled = 0;
        Ok(Some(Received {
            bytes: self.buf,
            fds: std::mem::take(&mut self.fds),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn descriptors_travel_with_their_message_even_when_it_is_split() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut msg = [7u8; MESSAGE_SIZE];
        msg[0] = 1;
        // The first 100 bytes carry the descriptor; the rest comes separately.
        assert_eq!(
            send_with_fds(a.as_fd(), &msg[..100], &[w.as_raw_fd()], false).unwrap(),
            100
        );
        let mut reader = MessageReader::default();
        let err = reader.read(b.as_fd(), Blocking::No).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            send_with_fds(a.as_fd(), &msg[100..], &[], false).unwrap(),
            MESSAGE_SIZE - 100
        );
        let got = reader.read(b.as_fd(), Blocking::No).unwrap().unwrap();
        assert_eq!(got.bytes, msg);
        assert_eq!(got.fds.len(), 1);
        // The received descriptor is the pipe's write end.
        nix::unistd::write(&got.fds[0], b"x").unwrap();
        let mut one = [0u8; 1];
        assert_eq!(nix::unistd::read(r.as_raw_fd(), &mut one).unwrap(), 1);
        drop(a);
        assert!(reader.read(b.as_fd(), Blocking::Yes).unwrap().is_none());
    }

    #[test]
    fn unread_bytes_counts_what_the_peer_has_not_read() {
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(unread_bytes(a.as_fd()).unwrap(), 0);
        send_with_fds(a.as_fd(), &[1u8; 300], &[], false).unwrap();
        assert!(unread_bytes(a.as_fd()).unwrap() >= 300);
        drop(b);
    }
}
