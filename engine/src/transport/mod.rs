//! How the engine reaches its workers: a link per worker over shared-memory rings or a pair of
//! anonymous pipes (the FIFO transport).
//!
//! Transports carry bytes and report what arrives to an [`Inbound`] sink; they know nothing
//! of the engine's state. A send never blocks and never drops: a message that does not fit
//! waits in the link's backlog until the worker makes room, and a worker that lets its
//! backlog grow past [`MAX_BACKLOG`] is disconnected.

pub mod fifo_link;
pub mod poller;
pub mod ring_link;

use std::sync::Arc;

use gloam_core::protocol::MESSAGE_SIZE;

use crate::state::WorkerId;

pub use fifo_link::FifoLink;
pub use poller::RingPoller;
pub use ring_link::RingLink;

/// Messages a link may hold back for a worker that does not read (a worker holds one call,
/// the replies to its own internal calls and a retirement: far fewer).
pub const MAX_BACKLOG: usize = 4096;

/// Where transports report what workers send.
pub trait Inbound: Send + Sync {
    /// A whole message from worker `worker`. `Err`: it broke the protocol; the transport
    /// stops reading it and reports [`Inbound::disconnected`].
    fn message(&self, worker: WorkerId, bytes: &[u8; MESSAGE_SIZE]) -> Result<(), String>;
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

/// Resolves when a worker's handshake socket closes (its process died or it closed the
/// worker), with the reason. Workers never write on it after `READY`.
pub async fn watch_socket(sock: &tokio::net::UnixStream, peer: Peer) -> String {
    loop {
        if sock.readable().await.is_err() {
            return "lost its socket".to_string();
        }
        let mut probe = [0u8; 64];
        match sock.try_read(&mut probe) {
            Ok(0) => return peer.how_it_ended().unwrap_or_else(|| "exited".to_string()),
            Ok(_) => return "sent unexpected bytes on its socket".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return format!("socket failed: {e}"),
        }
    }
}

/// The process behind a worker's socket, for saying how it ended.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Its pid (from `SO_PEERCRED`).
    pub pid: u32,
    /// Its function's `memory_limit`, named when the process was killed.
    pub memory_limit: Option<u64>,
}

impl Peer {
    /// How process `pid` ended, from its exit code in `/proc/<pid>/stat` (set before its
    /// descriptors close, so readable when its socket reports the end): `was killed by SIGKILL
    /// (memory_limit is 64 MiB: likely out of memory)`, `exited with code 3`; `None` when it is
    /// unknown or the process closed its socket and lives on.
    fn how_it_ended(self) -> Option<String> {
        let (pid, memory_limit) = (self.pid, self.memory_limit);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = stat.get(stat.rfind(')')? + 2..)?;
        // Field 52 (exit_code, waitpid(2) form); `after` starts at field 3.
        let code: i32 = after.split_whitespace().nth(49)?.parse().ok()?;
        let signal = code & 0x7f;
        if signal != 0 {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map_or_else(|_| format!("signal {signal}"), |s| s.to_string());
            let oom =
                memory_limit.map_or_else(String::new, |m| crate::launcher::memory_hint(signal, m));
            return Some(format!("was killed by {name}{oom}"));
        }
        let status = (code >> 8) & 0xff;
        (status != 0).then(|| format!("exited with code {status}"))
    }
}
