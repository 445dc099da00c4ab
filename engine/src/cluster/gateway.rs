//! The gateway's side of the engine connections (`gloam gateway`): engines dial in, present
//! the join token and register their functions; the gateway sends them calls and waits for
//! their answers.
//!
//! **Loss.** Each side pings every heartbeat (default 500 ms) and gives a connection up after
//! three heartbeats without a frame, so a half-open connection is found within 2 s; a closed
//! or reset one at once. A lost engine leaves the rotation at once, and every call waiting on
//! it ends: retried once on another engine when its function is `idempotent`, else answered
//! `502 ENGINE_LOST`. A peer that stops reading is lost when a write stalls as long.
//!
//! **Drain.** An engine that stops sends `DRAIN`: the gateway takes it out of the rotation and
//! answers `DRAINED`, after which no call frame follows; the engine finishes what it has,
//! sends the answers and closes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use gloam_core::clock::now_ns;

use super::io::{spawn_writer, split_tcp, write_one, FrameReader, FrameTx, Heartbeat, WriteHalf};
use super::routing::{Pick, Routing};
use super::wire::{Assembly, Frame, Hello, RefuseReason, ResultHead, Welcome, VERSION};
use super::{dead_after, ClusterError};

/// How long a new connection has to complete its handshake.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// Most engine connections at once (joined or in their handshake): a flood of connections to
/// the engine port cannot take every descriptor of the gateway.
const MAX_ENGINE_CONNECTIONS: usize = 4096;

/// How the gateway treats engines.
#[derive(Clone)]
pub struct GatewayOptions {
    /// The token every engine must present.
    pub token: Vec<u8>,
    /// Ping interval (sent to engines in `WELCOME`).
    pub heartbeat: Duration,
    /// TLS on the engine port.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("heartbeat", &self.heartbeat)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// How a call sent to an engine ended.
#[derive(Debug)]
pub enum Answer {
    /// The engine answered (success or failure, per `head.status`).
    Done {
        /// Status and timing.
        head: ResultHead,
        /// The output, or the failure's message.
        output: Bytes,
    },
    /// The engine was lost first; why.
    Lost(String),
}

struct Waiter {
    reply: oneshot::Sender<Answer>,
    max_payload: u32,
    partial: Option<(ResultHead, Assembly)>,
}

#[derive(Default)]
struct Pending {
    closed: Option<String>,
    /// The engine said `DRAIN` and was answered `DRAINED`: no call may follow.
    draining: bool,
    calls: HashMap<u64, Waiter>,
}

/// One joined engine's connection.
pub struct EngineLink {
    /// The id the gateway gave it.
    pub id: u32,
    /// Its node name.
    pub node: String,
    /// Its address.
    pub peer: SocketAddr,
    tx: FrameTx,
    pending: Mutex<Pending>,
    rtt_ns: AtomicU64,
    joined: Instant,
}

impl std::fmt::Debug for EngineLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineLink")
            .field("id", &self.id)
            .field("node", &self.node)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EngineLink {
    /// Sends the `frames` of `call` and waits for its answer: the receiver, or why the call
    /// was not sent (the link is closed, or draining). Registering and sending happen under
    /// the lock the `DRAIN` handling takes, so no call frame ever follows `DRAINED`.
    pub fn dispatch(
        &self,
        call: u64,
        max_payload: u32,
        frames: &[Frame],
    ) -> Result<oneshot::Receiver<Answer>, String> {
        let (tx, rx) = oneshot::channel();
        let mut p = lock(&self.pending);
        if let Some(why) = &p.closed {
            return Err(why.clone());
        }
        if p.draining {
            return Err(format!("engine {} is draining", self.node));
        }
        if self.tx.send_all(frames).is_err() {
            return Err(format!("the connection to engine {} closed", self.node));
        }
        p.calls.insert(
            call,
            Waiter {
                reply: tx,
                max_payload,
                partial: None,
            },
        );
        Ok(rx)
    }

    /// Stops waiting for `call` (its caller gave up).
    pub fn forget(&self, call: u64) {
        lock(&self.pending).calls.remove(&call);
    }

    /// The last measured round-trip time.
    pub fn rtt(&self) -> Duration {
        Duration::from_nanos(self.rtt_ns.load(Ordering::Relaxed))
    }

    /// Since when it is joined.
    pub fn joined(&self) -> Instant {
        self.joined
    }

    /// Ends every waiting call with `Lost(why)`; later [`expect`](Self::expect)s fail.
    fn close(&self, why: &str) -> usize {
        let calls = {
            let mut p = lock(&self.pending);
            p.closed = Some(why.to_string());
            std::mem::take(&mut p.calls)
        };
        let n = calls.len();
        for (_, w) in calls {
            let _ = w.reply.send(Answer::Lost(why.to_string()));
        }
        n
    }

    /// A `RESULT` or `DATA` frame of `call`.
    fn answer_chunk(
        &self,
        call: u64,
        head: Option<ResultHead>,
        chunk: Bytes,
        more: bool,
    ) -> Result<(), ClusterError> {
        let mut p = lock(&self.pending);
        // A call the gateway gave up on: its late answer is dropped.
        let Some(w) = p.calls.get_mut(&call) else {
            return Ok(());
        };
        let done = match (head, w.partial.as_mut()) {
            (Some(head), None) => {
                if head.output_len > w.max_payload.max(64 * 1024) {
                    return Err(ClusterError::frame(
                        "output_len",
                        format!("{} bytes, beyond the function's limit", head.output_len),
                    ));
                }
                if more {
                    w.partial = Some((head, Assembly::new(head.output_len, &chunk)));
                    None
                } else {
                    Some((head, chunk))
                }
            }
            (None, Some((head, assembly))) => assembly.push(&chunk, more)?.map(|out| (*head, out)),
            (Some(_), Some(_)) => {
                return Err(ClusterError::frame(
                    "RESULT",
                    "a second RESULT for one call",
                ))
            }
            (None, None) => {
                return Err(ClusterError::frame(
                    "DATA",
                    "a DATA frame before its RESULT",
                ))
            }
        };
        if let Some((head, output)) = done {
            if let Some(w) = p.calls.remove(&call) {
                let _ = w.reply.send(Answer::Done { head, output });
            }
        }
        Ok(())
    }
}

/// Counters of the engine connections, for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Engines that joined.
    pub joined: AtomicU64,
    /// Engines lost (connection ended without a drain).
    pub lost: AtomicU64,
    /// Engines that left after draining.
    pub left: AtomicU64,
    /// Peers refused for a wrong or missing token.
    pub refused_token: AtomicU64,
    /// Peers refused for another protocol version.
    pub refused_version: AtomicU64,
    /// Peers dropped for a malformed or out-of-turn frame.
    pub protocol_errors: AtomicU64,
    /// Calls retried on another engine after theirs was lost.
    pub retries: AtomicU64,
    /// Calls answered `ENGINE_LOST`.
    pub engine_lost: AtomicU64,
}

/// The gateway's view of its engines; see the [module docs](self).
pub struct Cluster {
    routing: Mutex<Routing>,
    links: Mutex<BTreeMap<u32, Arc<EngineLink>>>,
    draining_links: Mutex<BTreeMap<u32, bool>>,
    next_engine: AtomicU32,
    next_call: AtomicU64,
    opts: GatewayOptions,
    /// What happened to engine connections.
    pub stats: ClusterStats,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A gateway with no engine yet.
    pub fn new(opts: GatewayOptions) -> Arc<Cluster> {
        Arc::new(Cluster {
            routing: Mutex::new(Routing::default()),
            links: Mutex::new(BTreeMap::new()),
            draining_links: Mutex::new(BTreeMap::new()),
            next_engine: AtomicU32::new(1),
            next_call: AtomicU64::new(1),
            opts,
            stats: ClusterStats::default(),
            stopping: AtomicBool::new(false),
        })
    }

    /// The routing table, under its lock (short: one pick or one answer).
    pub fn routing(&self) -> MutexGuard<'_, Routing> {
        lock(&self.routing)
    }

    /// The connection of engine `id`, if joined.
    pub fn link(&self, id: u32) -> Option<Arc<EngineLink>> {
        lock(&self.links).get(&id).cloned()
    }

    /// Every joined engine.
    pub fn links(&self) -> Vec<Arc<EngineLink>> {
        lock(&self.links).values().cloned().collect()
    }

    /// A fresh call id.
    pub fn next_call(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the gateway is stopping (`/readyz` says so).
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The gateway stops: marks it for `/readyz`.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Calls sent to engines and not answered yet.
    pub fn outstanding(&self) -> u32 {
        self.routing().engines().map(|(_, e)| e.outstanding()).sum()
    }

    /// Accepts engine connections on `listener` until the task is dropped.
    pub async fn serve_engines(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ENGINE_CONNECTIONS));
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "engine connection refused: {MAX_ENGINE_CONNECTIONS} engine connections are open");
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let cluster = self.clone();
                    tokio::spawn(async move {
                        cluster.engine_connection(tcp, peer).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an engine connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn engine_connection(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let halves = match &self.opts.tls {
            None => Ok(split_tcp(tcp)),
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE, super::tls::accept(acceptor, tcp)).await {
                    Ok(r) => r,
                    Err(_) => Err(ClusterError::Lost("TLS handshake timed out".into())),
                }
            }
        };
        let (r, mut w) = match halves {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(%peer, "engine connection refused: {e}");
                return;
            }
        };
        let mut reader = FrameReader::new(r);
        let hello = match self.handshake(&mut reader, &mut w, peer).await {
            Some(h) => h,
            None => return,
        };
        let id = self.next_engine.fetch_add(1, Ordering::Relaxed);
        let welcome = Frame::Welcome(Welcome {
            version: VERSION,
            heartbeat_ms: u32::try_from(self.opts.heartbeat.as_millis()).unwrap_or(u32::MAX),
            engine_id: id,
        });
        if let Err(e) = write_one(&mut w, &welcome).await {
            tracing::warn!(%peer, "engine left during its handshake: {e}");
            return;
        }
        let (tx, writer) = spawn_writer(w, dead_after(self.opts.heartbeat));
        let link = Arc::new(EngineLink {
            id,
            node: hello.node.clone(),
            peer,
            tx,
            pending: Mutex::new(Pending::default()),
            rtt_ns: AtomicU64::new(0),
            joined: Instant::now(),
        });
        lock(&self.links).insert(id, link.clone());
        self.routing().add(id, &hello.functions);
        self.stats.joined.fetch_add(1, Ordering::Relaxed);
        let names: Vec<&str> = hello.functions.iter().map(|f| f.name.as_str()).collect();
        tracing::info!(engine = id, node = %hello.node, %peer, functions = ?names, "engine joined");

        let why = self.session(&link, &mut reader, writer).await;

        lock(&self.links).remove(&id);
        let drained = lock(&self.draining_links).remove(&id).is_some();
        self.routing().remove(id);
        let cut = link.close(&format!("engine {} ({}) was lost: {why}", link.node, peer));
        if drained && cut == 0 {
            self.stats.left.fetch_add(1, Ordering::Relaxed);
            tracing::info!(engine = id, node = %link.node, "engine left after draining");
        } else {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(engine = id, node = %link.node, %peer, calls = cut, "engine lost: {why}");
        }
    }

    /// Reads `HELLO` and checks version and token; refuses the peer (saying why) otherwise.
    async fn handshake(
        &self,
        reader: &mut FrameReader,
        w: &mut WriteHalf,
        peer: SocketAddr,
    ) -> Option<Hello> {
        let first = match tokio::time::timeout(HANDSHAKE, reader.next()).await {
            Err(_) => {
                tracing::warn!(%peer, "engine connection closed: no HELLO within {HANDSHAKE:?}");
                return None;
            }
            Ok(Ok(None)) => return None,
            Ok(r) => r,
        };
        let (reason, text) = match first {
            Ok(Some(Frame::Hello(h))) if h.token.is_empty() => (
                RefuseReason::Token,
                "no join token: set engine.join_token or GLOAM_JOIN_TOKEN on the engine".to_string(),
            ),
            Ok(Some(Frame::Hello(h))) => {
                let same: bool = h.token.as_slice().ct_eq(self.opts.token.as_slice()).into();
                if same {
                    return Some(h);
                }
                (RefuseReason::Token, "wrong join token".to_string())
            }
            Ok(Some(other)) => (
                RefuseReason::Protocol,
                format!("expected HELLO first, got {}", frame_name(&other)),
            ),
            Ok(None) => return None,
            Err(ClusterError::Version { peer: theirs }) => (
                RefuseReason::Version,
                format!(
                    "this gateway speaks cluster protocol {VERSION}, the engine speaks {theirs}: run the same gloam release on both"
                ),
            ),
            Err(e) => (RefuseReason::Protocol, e.to_string()),
        };
        let counter = match reason {
            RefuseReason::Token => &self.stats.refused_token,
            RefuseReason::Version => &self.stats.refused_version,
            _ => &self.stats.protocol_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, "engine refused: {text}");
        let refuse = Frame::Refuse {
            version: VERSION,
            reason,
            text,
        };
        let _ = tokio::time::timeout(HANDSHAKE, write_one(w, &refuse)).await;
        None
    }

    /// Serves one joined engine until its connection ends; returns why it ended.
    async fn session(
        &self,
        link: &Arc<EngineLink>,
        reader: &mut FrameReader,
        mut writer: tokio::task::JoinHandle<Result<(), ClusterError>>,
    ) -> String {
        let heartbeat = Heartbeat::start(link.tx.clone(), self.opts.heartbeat);
        let dead = dead_after(self.opts.heartbeat);
        let why = loop {
            tokio::select! {
                next = reader.next() => match next {
                    Err(e) => {
                        if matches!(e, ClusterError::Frame { .. }) {
                            self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        break e.to_string();
                    }
                    Ok(None) => break "the engine closed the connection".to_string(),
                    Ok(Some(frame)) => {
                        heartbeat.seen();
                        if let Err(e) = self.on_frame(link, frame) {
                            self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                            break e.to_string();
                        }
                    }
                },
                () = heartbeat.silent() => break format!("no frame for {} ms (heartbeats missed)", dead.as_millis()),
                ended = &mut writer => break match ended {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the connection's writer ended".to_string(),
                },
            }
        };
        drop(heartbeat);
        link.tx.close();
        writer.abort();
        why
    }

    fn on_frame(&self, link: &Arc<EngineLink>, frame: Frame) -> Result<(), ClusterError> {
        match frame {
            Frame::Result {
                call,
                more,
                head,
                chunk,
            } => link.answer_chunk(call, Some(head), chunk, more),
            Frame::Data { call, more, chunk } => link.answer_chunk(call, None, chunk, more),
            Frame::Ping { sent_ns } => {
                let _ = link.tx.send(Frame::Pong { sent_ns });
                Ok(())
            }
            Frame::Pong { sent_ns } => {
                link.rtt_ns
                    .store(now_ns().saturating_sub(sent_ns), Ordering::Relaxed);
                Ok(())
            }
            Frame::Drain => {
                {
                    let mut p = lock(&link.pending);
                    p.draining = true;
                    let _ = link.tx.send(Frame::Drained);
                }
                self.routing().set_draining(link.id);
                lock(&self.draining_links).insert(link.id, true);
                tracing::info!(engine = link.id, node = %link.node, "engine draining: no new calls go to it");
                Ok(())
            }
            other => Err(ClusterError::Lost(format!(
                "unexpected frame from an engine: {}",
                frame_name(&other)
            ))),
        }
    }

    /// Picks an engine for `name` (not `avoid`) and counts the call on it.
    pub fn pick(&self, name: &str, avoid: Option<u32>) -> Pick {
        self.routing().pick(name, avoid)
    }
}

/// A frame's kind, for messages (never its payload).
pub fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello(_) => "HELLO",
        Frame::Welcome(_) => "WELCOME",
        Frame::Refuse { .. } => "REFUSE",
        Frame::Call { .. } => "CALL",
        Frame::Data { .. } => "DATA",
        Frame::Result { .. } => "RESULT",
        Frame::Ping { .. } => "PING",
        Frame::Pong { .. } => "PONG",
        Frame::Drain => "DRAIN",
        Frame::Drained => "DRAINED",
    }
}
