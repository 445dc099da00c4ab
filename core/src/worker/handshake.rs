//! The worker side of the handshake on `<ipc-root>/engine.sock`.
//!
//! worker → `HELLO{function, pid, language}`; engine → `WELCOME{worker_id, function_id}` with
//! the function table trailing (or `REJECT{status, text}`); the worker opens its FIFOs and
//! sends `READY`. The socket then stays open, unread, for the worker's lifetime: its closing is
//! how the engine learns that the worker died.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ipc_root::IpcPaths;
use crate::protocol::{Header, Hello, Kind, Message, PayloadLocation, MESSAGE_SIZE};
use crate::table::FunctionTable;

/// Largest function table a worker accepts.
const MAX_TABLE_BYTES: u64 = 4 << 20;

/// What the engine told the worker in `WELCOME`.
pub(crate) struct Welcome {
    pub(crate) ring: bool,
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
    let reply = recv(sock)?;
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
    Ok(Welcome {
        ring: reply.header.flags & crate::protocol::flags::RING != 0,
        worker_id: reply.header.worker_id,
        function_id: reply.header.function_id,
        table,
    })
}

/// Tells the engine the FIFOs are open.
pub(crate) fn ready(sock: &mut UnixStream, worker_id: u32) -> Result<()> {
    let mut h = Header::new(Kind::Ready);
    h.worker_id = worker_id;
    send(sock, &Message::new(h))
}

fn send(sock: &mut UnixStream, m: &Message) -> Result<()> {
    sock.write_all(&m.to_bytes())
        .map_err(|e| Error::io("write", "engine.sock", e))
}

fn recv(sock: &mut UnixStream) -> Result<Message> {
    let mut buf = [0u8; MESSAGE_SIZE];
    sock.read_exact(&mut buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Shutdown("engine closed the handshake socket".into())
        } else {
            Error::io("read", "engine.sock", e)
        }
    })?;
    Ok(Message::decode(&buf, MAX_TABLE_BYTES)?)
}
