//! Entry points for the fuzz targets in `core/fuzz/` (built only with `--cfg fuzzing`, which
//! `cargo fuzz` sets): the private paths that read what the engine sends a worker over the
//! handshake socket.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use crate::error::Result;
use crate::protocol::{Hello, MESSAGE_SIZE};
use crate::ring::{BellRegion, RingFile};

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
/// `REJECT`), the function table and the descriptors, and maps the ring region and the two
/// doorbell regions as `RingChannel::open_worker_side` does.
pub fn read_welcome(sock: &mut UnixStream) -> Result<Welcomed> {
    let hello = Hello {
        pid: 1,
        function: "Fuzz".into(),
        language: "rust".into(),
        secret: String::new(),
    };
    let w = crate::worker::handshake::hello(sock, &hello)?;
    if w.ring {
        let _ = RingFile::from_fd(&w.fds[0])?.into_worker_side();
        let _ = BellRegion::from_fd(&w.fds[1], "worker doorbell")?.bell();
        let _ = BellRegion::from_fd(&w.fds[2], "engine doorbell")?.bell();
    }
    Ok(Welcomed {
        worker_id: w.worker_id,
        function_id: w.function_id,
        ring: w.ring,
    })
}

/// A `LEASE` message as `RingChannel` reads it for worker `me`: the lease it names, when it is
/// a well-formed one for `me` with usable regions.
pub fn read_lease(bytes: &[u8; MESSAGE_SIZE], fds: &[OwnedFd], me: u32) -> Option<u32> {
    crate::lease::read_lease(bytes, fds, me).map(|end| end.grant.lease)
}
