//! Entry points for the fuzz targets in `core/fuzz/` (built only with `--cfg fuzzing`, which
//! `cargo fuzz` sets): the private paths that read what the engine sends a worker over the
//! handshake socket.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use crate::error::Result;
use crate::protocol::{Hello, MESSAGE_SIZE};
use crate::ring::{EngineBell, RingFile};

/// What a worker learnt from a `WELCOME`.
#[derive(Debug)]
pub struct Welcomed {
    /// Its worker id.
    pub worker_id: u32,
    /// Its function id.
    pub function_id: u16,
    /// Whether the ring transport was chosen (and both regions mapped).
    pub ring: bool,
}

/// The worker's side of the handshake on `sock`: sends `HELLO`, reads `WELCOME` (or
/// `REJECT`), the function table and the descriptors, and maps the ring region and the
/// engine's doorbell as `RingChannel::open_worker_side` does.
pub fn read_welcome(sock: &mut UnixStream) -> Result<Welcomed> {
    let hello = Hello {
        pid: 1,
        function: "Fuzz".into(),
        language: "rust".into(),
        secret: String::new(),
    };
    let w = crate::worker::handshake::hello(sock, &hello)?;
    if w.ring {
        let (ring, bell) = (&w.fds[0], &w.fds[1]);
        let _ = RingFile::from_fd(ring)?.into_worker_side();
        let _ = EngineBell::from_fd(bell)?.bell();
    }
    Ok(Welcomed {
        worker_id: w.worker_id,
        function_id: w.function_id,
        ring: w.ring,
    })
}

/// A `PEER` message as `RingChannel` reads it: the worker it names, when it is one with a
/// usable ring region.
pub fn read_peer(bytes: &[u8; MESSAGE_SIZE], fds: &[OwnedFd]) -> Option<u32> {
    crate::ring_channel::peer_of(bytes, fds).map(|(worker, _)| worker)
}
