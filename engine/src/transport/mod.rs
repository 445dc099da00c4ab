//! How the engine reaches its workers: a link per worker over shared-memory rings or a pair of
//! anonymous pipes (the FIFO transport).
//!
//! Transports carry bytes and report what arrives to an [`Inbound`] sink; they know nothing
//! of the engine's state. A send never blocks and never drops: a message that does not fit
//! waits in the link's backlog until the worker makes room, and a worker that lets its
//! backlog grow past [`MAX_BACKLOG`] is disconnected.

pub mod fifo_link;
pub mod peer_socket;
pub mod poller;
pub mod ring_link;

use std::sync::Arc;

use gloam_core::protocol::MESSAGE_SIZE;

use crate::state::WorkerId;

pub use fifo_link::FifoLink;
pub use peer_socket::PeerSocket;
pub use poller::RingPoller;
pub use ring_link::RingLink;

/// Messages a link may hold back for a worker that does not read (a worker holds one call,
/// the replies to its own internal calls and a retirement: far fewer).
pub const MAX_BACKLOG: usize = 4096;

/// Where transports report what workers send.
pub trait Inbound: Send + Sync {
    /// A whole message from worker `worker`, whose socket is `socket` (the descriptors of
    /// payloads come on it). `Err`: it broke the protocol; the transport stops reading it and
    /// reports [`Inbound::disconnected`].
    fn message(
        &self,
        worker: WorkerId,
        socket: &PeerSocket,
        bytes: &[u8; MESSAGE_SIZE],
    ) -> Result<(), String>;
    /// Worker `worker` is gone (its socket closed, it broke the protocol, or it was
    /// dropped), for `reason`.
    fn disconnected(&self, worker: WorkerId, reason: &str);
}

/// How the engine reaches one worker.
#[derive(Debug)]
pub enum WorkerLink {
    /// Its two pipes.
    Fifo(FifoLink),
    /// Its ring region (the poller holds it too).
    Ring(Arc<RingLink>),
}

impl WorkerLink {
    /// Sends one message (queued behind earlier ones if the worker's channel is full).
    /// `false`: the worker let too much pile up and is being dropped.
    pub fn send(&self, msg: &[u8; MESSAGE_SIZE]) -> bool {
        match self {
            WorkerLink::Fifo(l) => l.send(msg),
            WorkerLink::Ring(l) => l.send(msg),
        }
    }

    /// Tells the link's owner to drop the worker (its reader ends, then the worker is
    /// reported gone).
    pub fn kick(&self) {
        match self {
            WorkerLink::Fifo(l) => l.kick(),
            WorkerLink::Ring(l) => l.kick(),
        }
    }

    /// Resolves once the link was kicked.
    pub async fn kicked(&self) {
        match self {
            WorkerLink::Fifo(l) => l.kicked().await,
            WorkerLink::Ring(l) => l.kicked().await,
        }
    }

    /// The worker's socket (leases and payload descriptors).
    pub fn socket(&self) -> &PeerSocket {
        match self {
            WorkerLink::Fifo(l) => l.socket(),
            WorkerLink::Ring(l) => l.socket(),
        }
    }

    /// The ring link, with the ring transport.
    pub fn ring(&self) -> Option<&RingLink> {
        match self {
            WorkerLink::Ring(l) => Some(l.as_ref()),
            WorkerLink::Fifo(_) => None,
        }
    }
}

/// A shared handle on a worker's link (the state keeps one per worker).
pub type WorkerSender = Arc<WorkerLink>;

/// Resolves when a worker's socket closes (its process died or it closed the worker), with
/// the reason. The socket is watched for its end only (`EPOLLPRI` interest, so `EPOLLHUP` and
/// `EPOLLERR`): the `PAYLOAD` records a worker sends on it are taken by whoever handles the ring
/// or pipe message naming them, and never wake an I/O thread on their own.
pub async fn watch_socket(sock: tokio::net::UnixStream, peer: &Peer) -> String {
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    let sock = match sock.into_std() {
        Ok(s) => s,
        Err(e) => return format!("socket could not be watched: {e}"),
    };
    // SAFETY: `sock` is an owned, open socket that the `AsyncFd` owns until it is dropped, and
    // a `UnixStream`'s `as_raw_fd` always returns that same descriptor.
    let watched = match unsafe { AsyncFd::register_with_interest(sock, Interest::PRIORITY) } {
        Ok(w) => w,
        Err(e) => return format!("socket could not be watched: {e}"),
    };
    loop {
        match watched.ready(Interest::PRIORITY).await {
            Ok(ready) if ready.ready().is_read_closed() || ready.ready().is_error() => {
                return peer.how_it_ended().unwrap_or_else(|| "exited".to_string())
            }
            Ok(mut ready) => ready.clear_ready(),
            Err(e) => return format!("socket failed: {e}"),
        }
    }
}

/// The process behind a worker's socket, for saying how it ended.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its pid (from `SO_PEERCRED`).
    pub pid: u32,
    /// Its function's `memory_limit`, named when the process was killed.
    pub memory_limit: Option<u64>,
    /// Its slot's cgroup, when that enforces the memory limit: whether the kernel's OOM
    /// killer killed it.
    pub oom: Option<crate::launcher::OomWatch>,
}

impl Peer {
    /// How process `pid` ended, from its exit code in `/proc/<pid>/stat` (set before its
    /// descriptors close, so readable when its socket reports the end) and its cgroup's OOM
    /// kills: `was killed by SIGKILL (out of memory: the kernel's OOM killer ended it at
    /// memory_limit = 64 MiB)`, `exited with code 3`; `None` when it is unknown or the process
    /// closed its socket and lives on.
    fn how_it_ended(&self) -> Option<String> {
        let oom_killed = self
            .oom
            .as_ref()
            .and_then(crate::launcher::OomWatch::killed);
        let Some(code) = exit_code(self.pid) else {
            // Already reaped (a sandbox's init may beat us to it): the counter still tells.
            return match (oom_killed, self.memory_limit) {
                (Some(true), Some(m)) => Some(format!(
                    "was killed{}",
                    crate::launcher::memory_hint(libc::SIGKILL, m, Some(true))
                )),
                _ => None,
            };
        };
        let signal = code & 0x7f;
        if signal != 0 {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map_or_else(|_| format!("signal {signal}"), |s| s.to_string());
            let oom = self.memory_limit.map_or_else(String::new, |m| {
                crate::launcher::memory_hint(signal, m, oom_killed)
            });
            return Some(format!("was killed by {name}{oom}"));
        }
        let status = (code >> 8) & 0xff;
        (status != 0).then(|| format!("exited with code {status}"))
    }
}

/// Process `pid`'s exit code (`waitpid(2)` form) from `/proc/<pid>/stat`, if readable.
fn exit_code(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    // Field 52 (exit_code); `after` starts at field 3.
    after.split_whitespace().nth(49)?.parse().ok()
}
