//! The engine side of a worker's life: handshake on `engine.sock`, the FIFO reader, and the
//! cleanup when the worker goes away (its socket closes).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};

use gloam_core::channel::{create_fifos, open_engine_fifos, remove_fifos};
use gloam_core::clock::now_ns;
use gloam_core::protocol::flags;
use gloam_core::protocol::{Header, Hello, Kind, Message, PayloadLocation, MESSAGE_SIZE};
use gloam_core::ErrorKind;

use crate::engine::{Engine, WorkerLink};
use crate::ring_link::RingLink;

/// How long a connecting worker may take for each handshake step.
const HANDSHAKE_STEP: Duration = Duration::from_secs(10);

/// Accepts worker connections until the listener fails.
pub async fn accept_workers(engine: Arc<Engine>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let engine = engine.clone();
                tokio::spawn(async move { handshake(engine, stream).await });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on engine.sock failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn read_message(sock: &mut UnixStream) -> Result<[u8; MESSAGE_SIZE], String> {
    let mut buf = [0u8; MESSAGE_SIZE];
    match tokio::time::timeout(HANDSHAKE_STEP, sock.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Ok(buf),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Err(_) => Err(format!("no message within {HANDSHAKE_STEP:?}")),
    }
}

async fn reject(sock: &mut UnixStream, kind: ErrorKind, text: &str) {
    tracing::warn!(%kind, "refused a worker: {text}");
    let msg = Message::failure(Header::new(Kind::Reject), kind, text);
    let _ = sock.write_all(&msg.to_bytes()).await;
}

async fn handshake(engine: Arc<Engine>, mut sock: UnixStream) {
    let Ok(bytes) = read_message(&mut sock).await else {
        return;
    };
    let hello = match Message::decode(&bytes, 0) {
        Ok(m) if m.header.kind == Kind::Hello => Hello::from_message(&m),
        Ok(m) => {
            let text = format!("expected HELLO, got {:?}", m.header.kind);
            return reject(&mut sock, ErrorKind::ProtocolError, &text).await;
        }
        Err(e) => Err(e),
    };
    let hello = match hello {
        Ok(h) => h,
        Err(e) => return reject(&mut sock, ErrorKind::ProtocolError, &e.to_string()).await,
    };
    let reserved = {
        let mut st = engine.lock();
        match st.function_by_name(&hello.function).map(|f| f.config.id) {
            None => {
                let mut known: Vec<_> = st.functions().map(|f| f.config.name.clone()).collect();
                known.sort();
                Err((
                    ErrorKind::FunctionNotFound,
                    format!(
                        "function {:?} is not in this engine's config (it has: {})",
                        hello.function,
                        known.join(", ")
                    ),
                ))
            }
            Some(fid) => st
                .reserve_worker_id()
                .map(|id| (fid, id))
                .map_err(|r| (r.kind, r.message)),
        }
    };
    let (function_id, id) = match reserved {
        Ok(v) => v,
        Err((kind, text)) => return reject(&mut sock, kind, &text).await,
    };
    match connect_worker(&engine, &mut sock, &hello, function_id, id).await {
        Ok(end) => {
            tracing::info!(worker = id, function = %hello.function, pid = hello.pid, language = %hello.language, "worker ready");
            let cold_start = process_age_ns(hello.pid);
            let actions = engine.lock().worker_ready(id, now_ns(), cold_start);
            engine.apply(actions);
            match end {
                EngineEnd::Fifo(rx) => serve_fifo_worker(engine, id, rx, sock).await,
                EngineEnd::Ring(link) => {
                    if let Some(p) = engine.poller() {
                        p.add(link.clone());
                    }
                    serve_ring_worker(engine, id, link, sock).await
                }
            }
        }
        Err(text) => {
            tracing::warn!(worker = id, function = %hello.function, "worker handshake failed: {text}");
            let actions = engine
                .lock()
                .remove_worker(id, "failed its handshake", now_ns());
            engine.apply(actions);
            engine.lock().release_worker_id(id);
            remove_fifos(engine.paths(), id);
        }
    }
}

/// The engine's end of a worker's channel.
enum EngineEnd {
    Fifo(pipe::Receiver),
    Ring(Arc<RingLink>),
}

/// Creates the worker's FIFOs or ring file, registers the worker, sends `WELCOME`, waits for
/// `READY`.
async fn connect_worker(
    engine: &Arc<Engine>,
    sock: &mut UnixStream,
    hello: &Hello,
    function_id: u16,
    id: u32,
) -> Result<EngineEnd, String> {
    let paths = engine.paths();
    let (end, link) = if engine.poller().is_some() {
        let link = Arc::new(RingLink::create(paths, id).map_err(|e| e.to_string())?);
        (EngineEnd::Ring(link.clone()), WorkerLink::Ring(link))
    } else {
        create_fifos(paths, id).map_err(|e| e.to_string())?;
        // Both ends read-write: no open waits for the worker, and the engine never sees a
        // spurious end-of-file on `.out` (the socket tells when the worker dies). Opened
        // relative to the held `fifo/`, without following a link, checked to be FIFOs.
        let (rx, tx) = open_engine_fifos(paths, id).map_err(|e| e.to_string())?;
        let rx = pipe::Receiver::from_owned_fd(rx)
            .map_err(|e| format!("open {}: {e}", paths.fifo_to_engine(id).display()))?;
        let tx = pipe::Sender::from_owned_fd(tx)
            .map_err(|e| format!("open {}: {e}", paths.fifo_to_worker(id).display()))?;
        (EngineEnd::Fifo(rx), WorkerLink::Fifo(tx))
    };
    engine
        .lock()
        .add_worker(id, function_id, hello.pid, &hello.language, Arc::new(link));
    let table = engine.table();
    let mut h = Header::new(Kind::Welcome);
    h.worker_id = id;
    h.function_id = function_id;
    h.payload_loc = PayloadLocation::Trailing;
    h.payload_len = table.len() as u32;
    if matches!(end, EngineEnd::Ring(_)) {
        h.flags |= flags::RING;
    }
    let mut out = Message::new(h).to_bytes().to_vec();
    out.extend_from_slice(table);
    sock.write_all(&out)
        .await
        .map_err(|e| format!("write WELCOME: {e}"))?;
    let bytes = read_message(sock).await?;
    match Message::decode(&bytes, 0) {
        Ok(m) if m.header.kind == Kind::Ready => Ok(end),
        Ok(m) => Err(format!("expected READY, got {:?}", m.header.kind)),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until the worker's socket closes (or the engine drops the worker), then cleans up.
/// The ring poller thread reads its messages meanwhile.
async fn serve_ring_worker(engine: Arc<Engine>, id: u32, link: Arc<RingLink>, sock: UnixStream) {
    let reason = tokio::select! {
        reason = watch_socket(&sock) => reason,
        _ = link.kicked() => "was dropped by the engine".to_string(),
    };
    engine.disconnect_worker(id, &reason);
}

/// Resolves when the worker's socket closes (its process died or it closed the worker).
async fn watch_socket(sock: &UnixStream) -> String {
    loop {
        if sock.readable().await.is_err() {
            return "lost its socket".to_string();
        }
        let mut probe = [0u8; 64];
        match sock.try_read(&mut probe) {
            Ok(0) => return "exited".to_string(),
            Ok(_) => return "sent unexpected bytes on its socket".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return format!("socket failed: {e}"),
        }
    }
}

/// Reads the worker's FIFO until its socket closes, then cleans up after it.
async fn serve_fifo_worker(engine: Arc<Engine>, id: u32, rx: pipe::Receiver, sock: UnixStream) {
    let mut buf = [0u8; MESSAGE_SIZE];
    let mut filled = 0usize;
    let reason = loop {
        tokio::select! {
            biased;
            ready = rx.readable() => {
                if let Err(e) = ready {
                    break format!("channel failed: {e}");
                }
                if let Err(reason) = drain_fifo(&engine, id, &rx, &mut buf, &mut filled) {
                    break reason;
                }
            }
            reason = watch_socket(&sock) => break reason,
        }
    };
    // A worker that answered and then exited: its last messages may still sit in the FIFO.
    let reason = match drain_fifo(&engine, id, &rx, &mut buf, &mut filled) {
        Ok(()) => reason,
        Err(bad) => bad,
    };
    engine.disconnect_worker(id, &reason);
}

/// Reads and handles every whole message available now.
fn drain_fifo(
    engine: &Engine,
    id: u32,
    rx: &pipe::Receiver,
    buf: &mut [u8; MESSAGE_SIZE],
    filled: &mut usize,
) -> Result<(), String> {
    loop {
        match rx.try_read(&mut buf[*filled..]) {
            Ok(0) => return Err("closed its channel".into()),
            Ok(n) => {
                *filled += n;
                if *filled == MESSAGE_SIZE {
                    *filled = 0;
                    engine
                        .on_worker_message(id, &buf[..])
                        .map_err(|e| format!("sent a malformed message: {e}"))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("channel failed: {e}")),
        }
    }
}

/// How long process `pid` has existed (its start time in `/proc` against the uptime), if
/// readable: the cold start of a worker measured at its `READY`.
fn process_age_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at its closing ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let start_ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let age_s = uptime - start_ticks as f64 / ticks as f64;
    (age_s >= 0.0).then_some((age_s * 1e9) as u64)
}
