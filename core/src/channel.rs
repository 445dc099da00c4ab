//! The message channel: whole 1024-byte messages between the engine and one logical worker.
//!
//! [`Channel`] is the seam; [`FifoChannel`] is the first implementation, over a pair of named
//! pipes. A shared-memory ring can implement the same trait without touching its callers.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Error, Result};
use crate::ipc_root::IpcPaths;
use crate::lane::LaneGrant;
use crate::protocol::{Header, MESSAGE_SIZE};
use crate::root_dir::{self, Loc, Sub};

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

/// A channel over two FIFOs: one to read, one to write.
///
/// Every write is one 1024-byte record, below `PIPE_BUF`, so concurrent writers never
/// interleave and a reader always finds whole records.
#[derive(Debug)]
pub struct FifoChannel {
    rx: OwnedFd,
    tx: OwnedFd,
    rx_path: PathBuf,
    tx_path: PathBuf,
    wake: EventFd,
    closed: AtomicBool,
}

/// The FIFO file names of `worker_id`: engine → worker, worker → engine.
fn fifo_names(worker_id: u32) -> [String; 2] {
    [format!("{worker_id}.in"), format!("{worker_id}.out")]
}

/// Creates the two FIFOs of `worker_id` (mode 0600). Existing ones are replaced (`unlinkat`
/// then `mkfifoat`, relative to the engine's held `fifo/` when the paths carry it).
pub fn create_fifos(paths: &IpcPaths, worker_id: u32) -> Result<()> {
    for name in fifo_names(worker_id) {
        let loc = paths.loc(Sub::Fifo, &name);
        let _ = loc.unlink();
        loc.mkfifo(Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(|e| Error::io("mkfifo", loc.path(), e))?;
    }
    Ok(())
}

/// Removes the two FIFOs of `worker_id`, if present.
pub fn remove_fifos(paths: &IpcPaths, worker_id: u32) {
    for name in fifo_names(worker_id) {
        let _ = paths.loc(Sub::Fifo, &name).unlink();
    }
}

/// Opens the engine's ends of worker `worker_id`'s FIFOs: `(<id>.out, <id>.in)`, both
/// read-write (so that no open waits for the worker), non-blocking, without following a link,
/// each checked to be a FIFO. The engine wraps them in its own reactor.
pub fn open_engine_fifos(paths: &IpcPaths, worker_id: u32) -> Result<(OwnedFd, OwnedFd)> {
    let [to_worker, to_engine] = fifo_names(worker_id);
    let rx = open_fifo(&paths.loc(Sub::Fifo, &to_engine), OFlag::O_RDWR)?;
    let tx = open_fifo(&paths.loc(Sub::Fifo, &to_worker), OFlag::O_RDWR)?;
    Ok((rx, tx))
}

/// Opens a FIFO with `access` (`O_RDONLY`, `O_WRONLY`, `O_RDWR`) plus `O_NOFOLLOW |
/// O_NONBLOCK | O_CLOEXEC` and checks on the descriptor that it is one.
fn open_fifo(loc: &Loc<'_>, access: OFlag) -> Result<OwnedFd> {
    let fd = loc
        .open(access, Mode::empty())
        .map_err(|e| Error::io("open FIFO", loc.path(), e))?;
    let st = root_dir::stat(fd.as_fd()).map_err(|e| Error::io("stat FIFO", loc.path(), e))?;
    if root_dir::file_type(&st) != SFlag::S_IFIFO {
        let what = format!("is a {}, not a FIFO", root_dir::describe_type(&st));
        return Err(Error::io(
            "open FIFO",
            loc.path(),
            io::Error::new(io::ErrorKind::InvalidData, what),
        ));
    }
    Ok(fd)
}

impl FifoChannel {
    /// Opens the worker's side of worker `worker_id`'s FIFOs: reads `<id>.in`, writes
    /// `<id>.out`. The engine must already hold both open (it opens them read-write before
    /// `WELCOME`), so neither open waits and the worker sees end-of-file once the engine is gone.
    pub fn open_worker_side(paths: &IpcPaths, worker_id: u32) -> Result<FifoChannel> {
        let [to_worker, to_engine] = fifo_names(worker_id);
        let rx = paths.loc(Sub::Fifo, &to_worker);
        let tx = paths.loc(Sub::Fifo, &to_engine);
        FifoChannel::new(
            open_fifo(&rx, OFlag::O_RDONLY)?,
            open_fifo(&tx, OFlag::O_WRONLY)?,
            rx.into_path(),
            tx.into_path(),
        )
    }

    /// Opens the engine's side of worker `worker_id`'s FIFOs: reads `<id>.out`, writes
    /// `<id>.in`, both read-write so that no open waits for the worker and a message can be
    /// queued before it has connected. (The engine binary uses its own async reactor over
    /// [`open_engine_fifos`]; this is for tools and tests that play the engine.)
    pub fn open_engine_side(paths: &IpcPaths, worker_id: u32) -> Result<FifoChannel> {
        let (rx, tx) = open_engine_fifos(paths, worker_id)?;
        FifoChannel::new(
            rx,
            tx,
            paths.fifo_to_engine(worker_id),
            paths.fifo_to_worker(worker_id),
        )
    }

    /// A channel over opened FIFO descriptors (non-blocking, as [`open_fifo`] leaves them).
    fn new(rx: OwnedFd, tx: OwnedFd, rx_path: PathBuf, tx_path: PathBuf) -> Result<FifoChannel> {
        // Writes block (back-pressure) when the pipe is full.
        set_nonblocking(tx.as_raw_fd(), false).map_err(|e| Error::io("fcntl", &tx_path, e))?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::errno("eventfd", &rx_path, e))?;
        Ok(FifoChannel {
            rx,
            tx,
            rx_path,
            tx_path,
            wake,
            closed: AtomicBool::new(false),
        })
    }

    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(self.rx.as_raw_fd(), buf).map_err(io::Error::from)
    }

    fn shutdown_error(&self) -> Error {
        Error::Shutdown(format!("channel {} closed", self.rx_path.display()))
    }
}

fn set_nonblocking(fd: i32, on: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
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
                        "short write of {n} bytes to FIFO {}",
                        self.tx_path.display()
                    )))
                }
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::EPIPE) => {
                    return Err(Error::Shutdown(format!(
                        "peer closed FIFO {}",
                        self.tx_path.display()
                    )))
                }
                Err(e) => return Err(Error::errno("write FIFO", &self.tx_path, e)),
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
                Ok(0) => {
                    return Err(Error::Shutdown(format!(
                        "peer closed FIFO {}",
                        self.rx_path.display()
                    )))
                }
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
                Err(e) => return Err(Error::io("read FIFO", &self.rx_path, e)),
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
                Err(e) => return Err(Error::errno("poll FIFO", &self.rx_path, e)),
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
