//! The message channel: whole 1024-byte messages between the engine and one logical worker.
//!
//! [`Channel`] is the seam. [`FifoChannel`] is the FIFO transport (`transport = "fifo"`): two
//! anonymous pipes per logical worker ([`Pipes`]), created by the engine, whose worker ends
//! reach the worker with `WELCOME` over `SCM_RIGHTS` (see [`crate::socket`]); nothing is named
//! on disk. The shared-memory ring ([`crate::ring_channel`]) implements the same trait.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::stat::SFlag;
use nix::unistd::pipe2;

use crate::error::{Error, Result};
use crate::lane::LaneGrant;
use crate::protocol::{Header, MESSAGE_SIZE};
use crate::root_dir;

/// How long a receive may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Return at once when nothing is there.
    NonBlocking,
    /// Wait at most this long.
    Timeout(Duration),
    /// Wait until a message, a wake or a close.
    Forever,
}

/// What a receive produced (a closed channel is `Err(Shutdown)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A whole message is in the buffer.
    Message,
    /// The wait ended with nothing to read.
    TimedOut,
    /// [`Channel::wake`] was called.
    Woken,
}

/// A bidirectional channel of fixed-size messages. `Send + Sync`: `send` may be called from
/// several threads at once (each message is written atomically); `recv` from one thread at a
/// time (the worker's inbox serialises readers).
pub trait Channel: Send + Sync {
    /// Sends one whole message.
    fn send(&self, msg: &[u8; MESSAGE_SIZE]) -> Result<()>;
    /// Receives one whole message into `buf`.
    fn recv(&self, buf: &mut [u8; MESSAGE_SIZE], wait: Wait) -> Result<Received>;
    /// Like [`Channel::recv`], with a hint of how long polling may pay off before sleeping
    /// (transports that cannot poll ignore it).
    fn recv_spin(
        &self,
        buf: &mut [u8; MESSAGE_SIZE],
        wait: Wait,
        spin: Duration,
    ) -> Result<Received> {
        let _ = spin;
        self.recv(buf, wait)
    }
    /// Runs an internal call on a direct lane when the engine granted one for `function_id`
    /// (see [`crate::lane`]): `build` makes the call message for the callee it is given, and
    /// the answer comes back. `None`: no lane is free; the call goes through the engine.
    /// `Err(Timeout)`: the deadline written in the message passed.
    fn lane_call(
        &self,
        function_id: u16,
        build: &mut dyn FnMut(&LaneGrant) -> [u8; MESSAGE_SIZE],
        spin: Duration,
    ) -> Option<Result<[u8; MESSAGE_SIZE]>> {
        let _ = (function_id, build, spin);
        None
    }
    /// Answers a call that came on a lane (its `DISPATCH` had [`crate::protocol::flags::LANE`]):
    /// `answer` is `header` encoded with its payload. `Ok(false)`: its caller had given up.
    fn answer_lane(&self, header: &Header, answer: &[u8; MESSAGE_SIZE]) -> Result<bool> {
        let _ = header;
        self.send(answer).map(|()| true)
    }
    /// Makes a blocked (or the next) `recv` return [`Received::Woken`].
    fn wake(&self);
    /// Closes the channel: every blocked and later `recv` returns `Shutdown`.
    fn close(&self);
}

/// A channel over two pipes: one to read, one to write.
///
/// Every write is one 1024-byte record, below `PIPE_BUF`, so concurrent writers never
/// interleave and a reader always finds whole records.
#[derive(Debug)]
pub struct FifoChannel {
    rx: OwnedFd,
    tx: OwnedFd,
    rx_name: &'static str,
    tx_name: &'static str,
    wake: EventFd,
    closed: AtomicBool,
}

/// Names of the two pipes, for messages.
const TO_WORKER: &str = "the engine → worker pipe";
const TO_ENGINE: &str = "the worker → engine pipe";

/// The two pipes of one logical worker (the FIFO transport), as the engine creates them with
/// `pipe2(O_CLOEXEC)`: nothing is named on disk, so only the processes the descriptors are
/// given to can reach them. The engine keeps its ends and sends the worker's with `WELCOME`
/// ([`Pipes::worker_fds`], in that order), then closes its copies of them.
#[derive(Debug)]
pub struct Pipes {
    /// The engine's end of worker → engine (read).
    pub engine_rx: OwnedFd,
    /// The engine's end of engine → worker (write).
    pub engine_tx: OwnedFd,
    /// The worker's end of engine → worker (read).
    pub worker_rx: OwnedFd,
    /// The worker's end of worker → engine (write).
    pub worker_tx: OwnedFd,
}

impl Pipes {
    /// Creates both pipes, every end close-on-exec.
    pub fn create() -> Result<Pipes> {
        let (worker_rx, engine_tx) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::errno("pipe2", TO_WORKER, e))?;
        let (engine_rx, worker_tx) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::errno("pipe2", TO_ENGINE, e))?;
        Ok(Pipes {
            engine_rx,
            engine_tx,
            worker_rx,
            worker_tx,
        })
    }

    /// The worker's ends in the order `WELCOME` carries them: engine → worker, worker →
    /// engine.
    pub fn worker_fds(&self) -> [RawFd; 2] {
        [self.worker_rx.as_raw_fd(), self.worker_tx.as_raw_fd()]
    }
}

impl FifoChannel {
    /// The worker's side over the two descriptors that came with `WELCOME`: it reads `rx`
    /// (engine → worker) and writes `tx` (worker → engine). Each must be a pipe (or FIFO)
    /// open in its direction; otherwise the error names the descriptor and what it is. The
    /// engine keeps the other ends, so the worker sees end-of-file once the engine is gone.
    pub fn worker_side(rx: OwnedFd, tx: OwnedFd) -> Result<FifoChannel> {
        FifoChannel::new(rx, tx, TO_WORKER, TO_ENGINE)
    }

    /// The engine's side over [`Pipes`]: reads `engine_rx`, writes `engine_tx`. (The engine
    /// binary wraps its ends in its own reactor; this is for tools and tests that play the
    /// engine.)
    pub fn engine_side(rx: OwnedFd, tx: OwnedFd) -> Result<FifoChannel> {
        FifoChannel::new(rx, tx, TO_ENGINE, TO_WORKER)
    }

    /// A channel over two checked pipe ends: reads never block (the channel polls), writes
    /// block while the pipe is full (back-pressure).
    fn new(
        rx: OwnedFd,
        tx: OwnedFd,
        rx_name: &'static str,
        tx_name: &'static str,
    ) -> Result<FifoChannel> {
        check_pipe_end(&rx, rx_name, Direction::Read)?;
        check_pipe_end(&tx, tx_name, Direction::Write)?;
        set_nonblocking(rx.as_raw_fd(), true).map_err(|e| Error::io("fcntl", rx_name, e))?;
        set_nonblocking(tx.as_raw_fd(), false).map_err(|e| Error::io("fcntl", tx_name, e))?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::errno("eventfd", rx_name, e))?;
        Ok(FifoChannel {
            rx,
            tx,
            rx_name,
            tx_name,
            wake,
            closed: AtomicBool::new(false),
        })
    }

    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(self.rx.as_raw_fd(), buf).map_err(io::Error::from)
    }

    fn shutdown_error(&self) -> Error {
        Error::Shutdown(format!("channel closed ({})", self.rx_name))
    }
}

/// Which way a pipe end must work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

/// Checks that `fd` is a pipe or FIFO (`fstat`) open for `dir` (`F_GETFL`): the descriptors
/// come from the peer, and a socket, a file or the wrong end would fail later, less clearly.
fn check_pipe_end(fd: &OwnedFd, name: &str, dir: Direction) -> Result<()> {
    let st = root_dir::stat(fd.as_fd())
        .map_err(|e| Error::RemoteProtocol(format!("{name}: cannot stat its descriptor ({e})")))?;
    if root_dir::file_type(&st) != SFlag::S_IFIFO {
        return Err(Error::RemoteProtocol(format!(
            "{name}: its descriptor is a {}, not a pipe",
            root_dir::describe_type(&st)
        )));
    }
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)
        .map_err(|e| Error::RemoteProtocol(format!("{name}: cannot read its flags ({e})")))?;
    let access = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE;
    let ok = match dir {
        Direction::Read => access == OFlag::O_RDONLY || access == OFlag::O_RDWR,
        Direction::Write => access == OFlag::O_WRONLY || access == OFlag::O_RDWR,
    };
    if !ok {
        let wanted = match dir {
            Direction::Read => "reading",
            Direction::Write => "writing",
        };
        return Err(Error::RemoteProtocol(format!(
            "{name}: its descriptor is the wrong end, not open for {wanted}"
        )));
    }
    Ok(())
}

fn set_nonblocking(fd: i32, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?);
    let flags = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags & !OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

impl Channel for FifoChannel {
    fn send(&self, msg: &[u8; MESSAGE_SIZE]) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.shutdown_error());
        }
        loop {
            match nix::unistd::write(self.tx.as_fd(), msg) {
                Ok(n) if n == MESSAGE_SIZE => return Ok(()),
                Ok(n) => {
                    return Err(Error::Internal(format!(
                        "short write of {n} bytes to {}",
                        self.tx_name
                    )))
                }
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::EPIPE) => {
                    return Err(Error::Shutdown(format!("peer closed {}", self.tx_name)))
                }
                Err(e) => return Err(Error::errno("write", self.tx_name, e)),
            }
        }
    }

    fn recv(&self, buf: &mut [u8; MESSAGE_SIZE], wait: Wait) -> Result<Received> {
        let deadline = match wait {
            Wait::Timeout(d) => Some(Instant::now() + d),
            _ => None,
        };
        let mut filled = 0usize;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(self.shutdown_error());
            }
            match self.read_some(&mut buf[filled..]) {
                Ok(0) => return Err(Error::Shutdown(format!("peer closed {}", self.rx_name))),
                Ok(n) => {
                    filled += n;
                    if filled == MESSAGE_SIZE {
                        return Ok(Received::Message);
                    }
                    // A record is written atomically, so the rest is already there or on
                    // its way: keep reading it regardless of the caller's wait.
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", self.rx_name, e)),
            }
            let timeout = if filled > 0 {
                PollTimeout::NONE
            } else {
                match wait {
                    Wait::NonBlocking => return Ok(Received::TimedOut),
                    Wait::Forever => PollTimeout::NONE,
                    Wait::Timeout(_) => {
                        let left = deadline
                            .map(|d| d.saturating_duration_since(Instant::now()))
                            .unwrap_or_default();
                        if left.is_zero() {
                            return Ok(Received::TimedOut);
                        }
                        // Round up so a sub-millisecond wait does not spin.
                        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                    }
                }
            };
            let mut fds = [
                PollFd::new(self.rx.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(Error::errno("poll", self.rx_name, e)),
            }
            let woken = fds[1]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
            if woken && filled == 0 {
                let _ = self.wake.read();
                if self.closed.load(Ordering::Acquire) {
                    return Err(self.shutdown_error());
                }
                return Ok(Received::Woken);
            }
        }
    }

    fn wake(&self) {
        let _ = self.wake.write(1);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn channels() -> (FifoChannel, FifoChannel) {
        let p = Pipes::create().unwrap();
        let engine = FifoChannel::engine_side(p.engine_rx, p.engine_tx).unwrap();
        let worker = FifoChannel::worker_side(p.worker_rx, p.worker_tx).unwrap();
        (engine, worker)
    }

    #[test]
    fn messages_cross_both_pipes_whole_and_in_order() {
        let (engine, worker) = channels();
        let mut buf = [0u8; MESSAGE_SIZE];
        for i in 0..10u8 {
            engine.send(&[i; MESSAGE_SIZE]).unwrap();
        }
        for i in 0..10u8 {
            let got = worker.recv(&mut buf, Wait::Timeout(Duration::from_secs(5)));
            assert_eq!(got.unwrap(), Received::Message);
            assert_eq!(buf, [i; MESSAGE_SIZE]);
            worker.send(&buf).unwrap();
        }
        for i in 0..10u8 {
            assert_eq!(
                engine.recv(&mut buf, Wait::NonBlocking).unwrap(),
                Received::Message
            );
            assert_eq!(buf[0], i);
        }
        assert_eq!(
            engine.recv(&mut buf, Wait::NonBlocking).unwrap(),
            Received::TimedOut
        );
    }

    #[test]
    fn the_worker_sees_the_engine_go() {
        let (engine, worker) = channels();
        drop(engine);
        let mut buf = [0u8; MESSAGE_SIZE];
        let err = worker.recv(&mut buf, Wait::Forever).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Shutdown);
        assert!(err.to_string().contains("engine → worker pipe"), "{err}");
        let err = worker.send(&buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Shutdown);
    }

    #[test]
    fn descriptors_that_are_not_the_right_pipe_ends_are_refused_by_name() {
        let refused =
            |rx: OwnedFd, tx: OwnedFd| FifoChannel::worker_side(rx, tx).unwrap_err().to_string();
        // A regular file where the engine → worker pipe should be.
        let file: OwnedFd = tempfile::tempfile().unwrap().into();
        let p = Pipes::create().unwrap();
        let text = refused(file, p.worker_tx);
        assert!(text.contains("engine → worker pipe"), "{text}");
        assert!(text.contains("is a regular file, not a pipe"), "{text}");
        // A socket where the worker → engine pipe should be.
        let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let p = Pipes::create().unwrap();
        let text = refused(p.worker_rx, sock.into());
        assert!(text.contains("worker → engine pipe"), "{text}");
        assert!(text.contains("is a socket, not a pipe"), "{text}");
        // The two ends swapped.
        let p = Pipes::create().unwrap();
        let text = refused(p.worker_tx, p.worker_rx);
        assert!(
            text.contains(
                "engine → worker pipe: its descriptor is the wrong end, not open for reading"
            ),
            "{text}"
        );
    }
}
