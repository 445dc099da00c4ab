//! The worker side of the handshake on `<ipc-root>/engine.sock`.
//!
//! worker → `HELLO{function, pid, language}`; engine → `WELCOME{worker_id, function_id}` with
//! the function table trailing (or `REJECT{status, text}`). The worker's channel comes with
//! `WELCOME` as descriptors (`SCM_RIGHTS`), its flags saying which transport:
//!
//! - [`flags::RING`]: 3 descriptors — the worker's ring region, its doorbell region and the
//!   engine's doorbell region (sealed memfds);
//! - [`flags::FIFO`]: 2 descriptors — the read end of the engine → worker pipe and the write
//!   end of the worker → engine pipe (anonymous pipes; the engine keeps the other ends).
//!
//! Exactly one flag must be set and the count must match; each descriptor is checked to be
//! what it should be as the channel opens it. The worker then sends `READY`. The socket stays
//! open for the worker's lifetime: the engine sends it the leases of direct lanes (`LEASE`),
//! and its closing is how each side learns that the other died.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::channel::FifoChannel;
use crate::error::{Error, Result};
use crate::ipc_root::IpcPaths;
use crate::protocol::{flags, Header, Hello, Kind, Message, PayloadLocation};
use crate::socket::{Blocking, MessageReader};
use crate::table::FunctionTable;

/// Largest function table a worker accepts.
const MAX_TABLE_BYTES: u64 = 4 << 20;

/// What the engine told the worker in `WELCOME`.
pub(crate) struct Welcome {
    pub(crate) ring: bool,
    /// With the ring transport: the worker's ring region, its doorbell region and the
    /// engine's doorbell region. With the FIFO transport: the read end of engine → worker and
    /// the write end of worker → engine.
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) worker_id: u32,
    pub(crate) function_id: u16,
    pub(crate) table: FunctionTable,
}

/// Connects to the engine socket, retrying while it does not exist yet (bounded).
pub(crate) fn connect(paths: &IpcPaths, timeout: Duration) -> Result<UnixStream> {
    let path = paths.socket();
    let start = Instant::now();
    let mut backoff = Duration::from_millis(5);
    loop {
        match UnixStream::connect(&path) {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() < timeout => {
                tracing::debug!(error = %e, path = %path.display(), "engine socket not ready, retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(Error::Shutdown(format!(
                    "cannot reach the engine at {}: {e}",
                    path.display()
                )))
            }
        }
    }
}

/// Sends `HELLO`, reads `WELCOME` (or `REJECT`) and the function table.
pub(crate) fn hello(sock: &mut UnixStream, hello: &Hello) -> Result<Welcome> {
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| Error::io("set socket timeout", "engine.sock", e))?;
    send(sock, &hello.to_message()?)?;
    let (reply, fds) = recv(sock)?;
    match reply.header.kind {
        Kind::Welcome => {}
        Kind::Reject => {
            let kind = reply.header.status.unwrap_or(crate::ErrorKind::Internal);
            return Err(Error::remote(
                kind,
                format!("engine refused worker: {}", reply.failure_text()),
            ));
        }
        other => {
            return Err(crate::protocol::ProtocolError::Unexpected {
                found: other,
                expected: "WELCOME or REJECT",
            }
            .into())
        }
    }
    let len = u64::from(reply.header.payload_len);
    if reply.header.payload_loc != PayloadLocation::Trailing || len > MAX_TABLE_BYTES {
        return Err(Error::RemoteProtocol(format!(
            "WELCOME must carry a trailing function table of at most {MAX_TABLE_BYTES} bytes"
        )));
    }
    let mut table = vec![0u8; len as usize];
    sock.read_exact(&mut table)
        .map_err(|e| Error::io("read function table", "engine.sock", e))?;
    let table = FunctionTable::decode(&table)?;
    sock.set_read_timeout(None)
        .map_err(|e| Error::io("set socket timeout", "engine.sock", e))?;
    let bits = reply.header.flags;
    let ring = bits & flags::RING != 0;
    let (transport, wanted) = match (ring, bits & flags::FIFO != 0) {
        (true, false) => ("ring", 3),
        (false, true) => ("FIFO", 2),
        _ => {
            return Err(Error::RemoteProtocol(format!(
                "WELCOME must name one transport (ring or FIFO), its flags are {bits:#06x}"
            )))
        }
    };
    if fds.len() != wanted {
        return Err(Error::RemoteProtocol(format!(
            "WELCOME for the {transport} transport must carry {wanted} descriptors, it carried {}",
            fds.len()
        )));
    }
    Ok(Welcome {
        ring,
        fds,
        worker_id: reply.header.worker_id,
        function_id: reply.header.function_id,
        table,
    })
}

impl Welcome {
    /// The worker's side of the FIFO transport over the two pipe ends that came with
    /// `WELCOME` (each checked to be a pipe open in its direction).
    pub(crate) fn fifo_channel(&mut self) -> Result<FifoChannel> {
        let mut fds = std::mem::take(&mut self.fds).into_iter();
        match (fds.next(), fds.next()) {
            (Some(rx), Some(tx)) => FifoChannel::worker_side(rx, tx),
            _ => Err(Error::RemoteProtocol(
                "WELCOME for the FIFO transport must carry 2 descriptors".into(),
            )),
        }
    }
}

/// Tells the engine the worker's channel is open.
pub(crate) fn ready(sock: &mut UnixStream, worker_id: u32) -> Result<()> {
    let mut h = Header::new(Kind::Ready);
    h.worker_id = worker_id;
    send(sock, &Message::new(h))
}

fn send(sock: &mut UnixStream, m: &Message) -> Result<()> {
    sock.write_all(&m.to_bytes())
        .map_err(|e| Error::io("write", "engine.sock", e))
}

/// Reads one message and the descriptors that came with it.
fn recv(sock: &mut UnixStream) -> Result<(Message, Vec<OwnedFd>)> {
    let closed = || Error::Shutdown("engine closed the handshake socket".into());
    let got = MessageReader::default()
        .read(sock.as_fd(), Blocking::Yes)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                closed()
            } else {
                Error::io("read", "engine.sock", e)
            }
        })?
        .ok_or_else(closed)?;
    Ok((Message::decode(&got.bytes, MAX_TABLE_BYTES)?, got.fds))
}
