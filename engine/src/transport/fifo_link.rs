//! The engine's ends of one worker's two anonymous pipes (the `fifo` transport): it writes
//! engine → worker and reads worker → engine; the worker got the other ends with `WELCOME`.
//!
//! Every message is one 1024-byte write, below `PIPE_BUF`, so it is whole or not at all.
//! When the pipe is full, messages wait in order in a backlog that a writer task flushes as
//! the pipe drains.
//!
//! The pipes do not say why a worker left: only the socket does (`watch_socket`, with the
//! process's exit code). So when the worker's ends close — its process died, or it closed
//! them — reading stops at end-of-file and writes that find no reader (`EPIPE`) are dropped,
//! and the link waits for the socket (or a kick) to report the worker gone. A worker alive
//! without its pipes runs no call: its calls end at their deadlines and the hung watch kills
//! it, as for any worker that does not answer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::unix::pipe;
use tokio::sync::Notify;

use gloam_core::protocol::MESSAGE_SIZE;

use super::peer_socket::PeerSocket;
use super::{Inbound, MAX_BACKLOG};
use crate::state::WorkerId;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One worker's pipes, as the engine holds them.
#[derive(Debug)]
pub struct FifoLink {
    worker: WorkerId,
    tx: Arc<pipe::Sender>,
    backlog: Arc<Mutex<VecDeque<[u8; MESSAGE_SIZE]>>>,
    wake_writer: Arc<Notify>,
    socket: PeerSocket,
    /// The worker's reading end is closed (`EPIPE`): messages for it are dropped.
    unread: Arc<AtomicBool>,
    closed: AtomicBool,
    kick: Notify,
}

impl FifoLink {
    /// The link over `tx` (the engine's end of the engine → worker pipe); starts its writer
    /// task (call from within the runtime).
    /// `socket` is a duplicate of the worker's handshake socket.
    pub fn new(worker: WorkerId, tx: pipe::Sender, socket: std::os::fd::OwnedFd) -> FifoLink {
        let link = FifoLink {
            worker,
            tx: Arc::new(tx),
            backlog: Arc::new(Mutex::new(VecDeque::new())),
            wake_writer: Arc::new(Notify::new()),
            socket: PeerSocket::new(socket),
            unread: Arc::new(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
            kick: Notify::new(),
        };
        tokio::spawn(write_backlog(
            worker,
            link.tx.clone(),
            link.backlog.clone(),
            link.wake_writer.clone(),
            link.unread.clone(),
        ));
        link
    }

    /// The worker's socket.
    pub fn socket(&self) -> &PeerSocket {
        &self.socket
    }

    /// Sends one message, in order behind any backlog. `false` when the backlog is over
    /// [`MAX_BACKLOG`] (the link is kicked: the worker does not read). A message for a worker
    /// whose reading end is closed is dropped: its socket says how it ended.
    pub fn send(&self, msg: &[u8; MESSAGE_SIZE]) -> bool {
        if self.unread.load(Ordering::Acquire) {
            return true;
        }
        let mut backlog = lock(&self.backlog);
        if backlog.is_empty() {
            match self.tx.try_write(msg) {
                Ok(_) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    tracing::debug!(worker = %self.worker, "the worker closed its pipe; waiting for its socket");
                    self.unread.store(true, Ordering::Release);
                    return true;
                }
                Err(e) => {
                    drop(backlog);
                    tracing::debug!(worker = %self.worker, error = %e, "could not write to worker");
                    self.kick();
                    return false;
                }
            }
        }
        if backlog.len() >= MAX_BACKLOG {
            drop(backlog);
            tracing::warn!(worker = %self.worker, "worker does not read its pipe; dropping it");
            self.kick();
            return false;
        }
        backlog.push_back(*msg);
        drop(backlog);
        self.wake_writer.notify_one();
        true
    }

    /// Drops the worker: its reader ends, and the worker is reported gone.
    pub fn kick(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.kick.notify_one();
            self.wake_writer.notify_one();
        }
    }

    /// Resolves once the link was kicked.
    pub async fn kicked(&self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.kick.notified().await
    }
}

impl Drop for FifoLink {
    fn drop(&mut self) {
        // Lets the writer task see that the link is gone.
        self.wake_writer.notify_one();
    }
}

/// Writes the backlog out as the pipe drains, until the link is dropped.
async fn write_backlog(
    worker: WorkerId,
    tx: Arc<pipe::Sender>,
    backlog: Arc<Mutex<VecDeque<[u8; MESSAGE_SIZE]>>>,
    wake: Arc<Notify>,
    unread: Arc<AtomicBool>,
) {
    loop {
        if Arc::strong_count(&backlog) == 1 {
            return; // the link is gone
        }
        let next = lock(&backlog).front().copied();
        let Some(msg) = next else {
            wake.notified().await;
            continue;
        };
        if tx.writable().await.is_err() {
            return;
        }
        match tx.try_write(&msg) {
            Ok(_) => {
                lock(&backlog).pop_front();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::debug!(%worker, "the worker closed its pipe; waiting for its socket");
                unread.store(true, Ordering::Release);
                lock(&backlog).clear();
                return;
            }
            Err(e) => {
                tracing::debug!(%worker, error = %e, "could not write to worker");
                return;
            }
        }
    }
}

/// Reads whole messages from the worker → engine pipe into `sink` until the worker's socket
/// closes or the link is kicked; reports the worker gone. At end-of-file (the worker's end
/// closed) it stops reading and waits for the socket.
pub async fn serve(
    sink: Arc<dyn Inbound>,
    worker: WorkerId,
    link: Arc<super::WorkerLink>,
    rx: pipe::Receiver,
    sock: tokio::net::UnixStream,
    peer: super::Peer,
) {
    let mut buf = [0u8; MESSAGE_SIZE];
    let mut filled = 0usize;
    let mut open = true;
    let watch = super::watch_socket(sock, &peer);
    tokio::pin!(watch);
    let reason = loop {
        tokio::select! {
            biased;
            ready = rx.readable(), if open => {
                if let Err(e) = ready {
                    break format!("channel failed: {e}");
                }
                match drain(sink.as_ref(), worker, &link, &rx, &mut buf, &mut filled) {
                    Ok(still_open) => open = still_open,
                    Err(reason) => break reason,
                }
            }
            reason = &mut watch => break reason,
            _ = link.kicked() => break "was dropped by the engine".to_string(),
        }
    };
    // A worker that answered and then exited: its last messages may still sit in the pipe.
    let reason = if open {
        match drain(sink.as_ref(), worker, &link, &rx, &mut buf, &mut filled) {
            Ok(_) => reason,
            Err(bad) => bad,
        }
    } else {
        reason
    };
    sink.disconnected(worker, &reason);
}

/// Reads and handles every whole message available now: `Ok(false)` at end-of-file (the
/// worker's end is closed), `Ok(true)` when the pipe is empty for now.
fn drain(
    sink: &dyn Inbound,
    worker: WorkerId,
    link: &super::WorkerLink,
    rx: &pipe::Receiver,
    buf: &mut [u8; MESSAGE_SIZE],
    filled: &mut usize,
) -> Result<bool, String> {
    loop {
        match rx.try_read(&mut buf[*filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                *filled += n;
                if *filled == MESSAGE_SIZE {
                    *filled = 0;
                    sink.message(worker, link.socket(), buf)
                        .map_err(|e| format!("sent a malformed message: {e}"))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("channel failed: {e}")),
        }
    }
}
