//! The engine side of a worker's handshake on `engine.sock`, and what follows it: the worker's
//! link is registered and read until its socket closes or the engine drops it.
//!
//! The worker's process is known from the socket's credentials (`SO_PEERCRED`), not from
//! what it says; its process group tells which of the launcher's processes it belongs to.
//! `WELCOME` carries the worker's channel as descriptors: with the ring transport three (the
//! worker's ring region, its doorbell region and the engine's doorbell region), with the FIFO
//! transport two (the worker's ends of the two anonymous pipes the engine created for it,
//! which the engine closes once they are sent: it keeps only its own ends).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};

use gloam_core::channel::Pipes;
use gloam_core::protocol::{flags, Header, Hello, Kind, Message, PayloadLocation, MESSAGE_SIZE};
use gloam_core::{socket, ErrorKind};

use crate::engine::Engine;
use crate::launcher::Verdict;
use crate::state::WorkerId;
use crate::transport::{self, FifoLink, Inbound, Peer, RingLink, WorkerLink};

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

/// The process behind the socket, and its process group (0 when unknown).
fn peer_process(sock: &UnixStream) -> (u32, u32) {
    let pid = sock
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    let group = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .and_then(|p| nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(p))).ok())
        .and_then(|g| u32::try_from(g.as_raw()).ok())
        .unwrap_or(0);
    (pid, group)
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
    let Some(function) = engine.function_by_name(&hello.function).cloned() else {
        let mut known: Vec<_> = engine
            .config()
            .functions
            .iter()
            .map(|f| f.name.clone())
            .collect();
        known.sort();
        let text = format!(
            "function {:?} is not in this engine's config (it has: {})",
            hello.function,
            known.join(", ")
        );
        return reject(&mut sock, ErrorKind::FunctionNotFound, &text).await;
    };
    let (pid, group) = peer_process(&sock);
    if let Err(text) = proves_itself(&engine, function.id, group, &hello.secret).await {
        let text = format!("pid {pid} cannot serve {}: {text}", function.name);
        return reject(&mut sock, ErrorKind::InvalidArgument, &text).await;
    }
    let pid = if pid == 0 { hello.pid } else { pid };
    let reserved = engine.lock().reserve_worker(function.id);
    let id = match reserved {
        Ok(id) => id,
        Err(r) => return reject(&mut sock, r.kind, &r.message).await,
    };
    let (link, fifo) = match make_link(&engine, &sock, id) {
        Ok(made) => made,
        Err(text) => {
            engine.lock().release_worker(id);
            return reject(&mut sock, ErrorKind::Io, &text).await;
        }
    };
    let (fifo_rx, worker_ends) = match fifo {
        Some(f) => (Some(f.rx), Some(f.worker_ends)),
        None => (None, None),
    };
    engine
        .lock()
        .worker_connected(id, pid, group, &hello.language, link.clone());
    let welcomed = welcome(
        &engine,
        &mut sock,
        function.id,
        id,
        &link,
        worker_ends.as_ref(),
    )
    .await;
    // The worker has its pipe ends now (or never will): the engine keeps only its own.
    drop(worker_ends);
    match welcomed {
        Ok(()) => {
            // From the launcher's spawn (sandbox set-up included), else the process's age.
            let cold_start = engine
                .with_launcher(function.id, |l| l.spawned_at(group))
                .flatten()
                .and_then(|t| u64::try_from(t.elapsed().as_nanos()).ok())
                .or_else(|| process_age_ns(pid));
            let cold_start_us = cold_start.map(|ns| ns / 1000);
            tracing::info!(worker = %id, function = %hello.function, pid, language = %hello.language, cold_start_us, "worker ready");
            if let (WorkerLink::Ring(ring), Some(poller)) = (link.as_ref(), engine.poller()) {
                poller.add(ring.clone());
            }
            engine.event(|st, now| st.worker_ready(id, now, cold_start));
            let peer = Peer {
                pid,
                memory_limit: function.isolation.limits.memory,
                oom: engine
                    .with_launcher(function.id, |l| l.oom_watch(group))
                    .flatten(),
            };
            serve(engine, id, link, fifo_rx, sock, peer).await;
        }
        Err(text) => {
            tracing::warn!(worker = %id, function = %hello.function, "worker handshake failed: {text}");
            engine.event(|st, now| st.worker_gone(id, "failed its handshake", now));
        }
    }
}

/// How long a connecting worker's process may stay unknown to its launcher (which records
/// a process right after spawning it).
const UNKNOWN_PROCESS_WAIT: Duration = Duration::from_secs(1);

/// Checks that a worker of a launched function comes from one of its launcher's processes
/// (its process group, from `SO_PEERCRED`) with the secret that process was given; a
/// function without a launcher (workers started by hand) is not checked.
async fn proves_itself(
    engine: &Engine,
    function_id: u16,
    group: u32,
    secret: &str,
) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    loop {
        match engine.with_launcher(function_id, |l| l.verify(group, secret)) {
            None | Some(Verdict::Valid) => return Ok(()),
            Some(Verdict::WrongSecret) => {
                return Err("it did not present its process's secret".to_string())
            }
            Some(Verdict::UnknownProcess) if start.elapsed() >= UNKNOWN_PROCESS_WAIT => {
                return Err(format!(
                    "process group {group} is none of the function's worker processes"
                ))
            }
            Some(Verdict::UnknownProcess) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// The FIFO transport's side of a new link: the engine's reading end, and the worker's two
/// ends that go out with `WELCOME`.
struct FifoEnds {
    rx: pipe::Receiver,
    worker_ends: [OwnedFd; 2],
}

/// Makes worker `id`'s link: its ring region (a sealed memfd), or its two pipes.
fn make_link(
    engine: &Engine,
    sock: &UnixStream,
    id: WorkerId,
) -> Result<(Arc<WorkerLink>, Option<FifoEnds>), String> {
    let dup = sock
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("duplicate the worker's socket: {e}"))?;
    if engine.poller().is_some() {
        let ring = RingLink::create(id, dup).map_err(|e| e.to_string())?;
        return Ok((Arc::new(WorkerLink::Ring(Arc::new(ring))), None));
    }
    // Anonymous pipes: nothing on disk, reachable only by the descriptors handed out. The
    // engine's ends go non-blocking into the reactor; the worker tells its death through the
    // socket, not the pipes (see `transport::fifo_link`).
    let pipes = Pipes::create().map_err(|e| e.to_string())?;
    let worker_ends = [pipes.worker_rx, pipes.worker_tx];
    let rx = pipe::Receiver::from_owned_fd(pipes.engine_rx)
        .map_err(|e| format!("the worker → engine pipe of worker {id}: {e}"))?;
    let tx = pipe::Sender::from_owned_fd(pipes.engine_tx)
        .map_err(|e| format!("the engine → worker pipe of worker {id}: {e}"))?;
    let link = Arc::new(WorkerLink::Fifo(FifoLink::new(id, tx, dup)));
    Ok((link, Some(FifoEnds { rx, worker_ends })))
}

/// Sends `WELCOME` with the worker's channel as descriptors (the ring region, the worker's
/// doorbell region and the engine's doorbell region; or the worker's two pipe ends, `pipes`)
/// and the function table, then waits for `READY`.
async fn welcome(
    engine: &Engine,
    sock: &mut UnixStream,
    function_id: u16,
    id: WorkerId,
    link: &WorkerLink,
    pipes: Option<&[OwnedFd; 2]>,
) -> Result<(), String> {
    let table = engine.table();
    let mut h = Header::new(Kind::Welcome);
    h.worker_id = id.raw();
    h.function_id = function_id;
    h.payload_loc = PayloadLocation::Trailing;
    h.payload_len = table.len() as u32;
    let fds = match (link, engine.poller()) {
        (WorkerLink::Ring(ring), Some(poller)) => {
            h.flags |= flags::RING;
            vec![
                ring.region().as_raw_fd(),
                ring.bell_region().as_raw_fd(),
                poller.bell_region().as_raw_fd(),
            ]
        }
        (WorkerLink::Fifo(_), _) => {
            let [rx, tx] = pipes.ok_or("the worker's pipe ends are missing")?;
            h.flags |= flags::FIFO;
            vec![rx.as_raw_fd(), tx.as_raw_fd()]
        }
        (WorkerLink::Ring(_), None) => return Err("a ring link without the ring poller".into()),
    };
    let mut out = Message::new(h).to_bytes().to_vec();
    out.extend_from_slice(table);
    let sent = tokio::time::timeout(HANDSHAKE_STEP, send_with_fds(sock, &out, &fds)).await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("write WELCOME: {e}")),
        Err(_) => return Err(format!("WELCOME not taken within {HANDSHAKE_STEP:?}")),
    }
    let bytes = read_message(sock).await?;
    match Message::decode(&bytes, 0) {
        Ok(m) if m.header.kind == Kind::Ready => Ok(()),
        Ok(m) => Err(format!("expected READY, got {:?}", m.header.kind)),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `bytes`, with `fds` attached to the first byte.
async fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        sock.writable().await?;
        let attach = if sent == 0 { fds } else { &[] };
        match sock.try_io(Interest::WRITABLE, || {
            socket::send_with_fds(sock.as_fd(), &bytes[sent..], attach, true)
        }) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the worker's link until its socket closes or the engine drops it, then reports it
/// gone. With the ring transport the poller thread reads its messages meanwhile.
async fn serve(
    engine: Arc<Engine>,
    id: WorkerId,
    link: Arc<WorkerLink>,
    fifo_rx: Option<pipe::Receiver>,
    sock: UnixStream,
    peer: Peer,
) {
    match fifo_rx {
        Some(rx) => {
            let sink: Arc<dyn Inbound> = engine;
            transport::fifo_link::serve(sink, id, link, rx, sock, peer).await;
        }
        None => {
            let reason = tokio::select! {
                reason = transport::watch_socket(sock, &peer) => reason,
                _ = link.kicked() => "was dropped by the engine".to_string(),
            };
            engine.disconnect_worker(id, &reason);
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
