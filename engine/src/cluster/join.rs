//! The engine's side of the cluster (`gloam up CONFIG --join ADDR`): it dials the gateway,
//! presents its join token, registers its functions (capacity: `max_workers + queue_bound`
//! calls each, what it holds before answering `OVERLOADED` itself) and serves the calls the
//! gateway sends, each in its own task through [`Engine::call_external`] with the call's
//! remaining budget as its timeout: the engine's call path is the embedded gateway's.
//! Internal calls never leave the engine.
//!
//! When the connection is lost, or refused, it dials again after a jittered back-off (100 ms
//! doubling to 5 s, each wait drawn from its upper half), forever: a restarted gateway gets
//! its engines back by itself. On SIGTERM, [`Joiner::drain`] tells the gateway (`DRAIN`, then
//! waits for `DRAINED`, after which no call arrives); the engine finishes its calls, and
//! [`Joiner::close`] sends the last answers and closes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use gloam_core::clock::now_ns;

use super::io::{spawn_writer, split_tcp, write_one, FrameReader, FrameTx, Heartbeat};
use super::wire::{
    result_frames, Assembly, CallHead, Frame, FunctionInfo, Hello, ResultHead, VERSION,
};
use super::{dead_after, ClusterError};
use crate::engine::Engine;

/// How long dialing and the handshake may take.
const CONNECT: Duration = Duration::from_secs(5);
/// How long [`Joiner::drain`] waits for the gateway's `DRAINED`.
const DRAIN_ACK: Duration = Duration::from_secs(2);
/// First and longest wait before dialing again.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most calls whose input is still arriving in chunks.
const MAX_ASSEMBLING: usize = 4096;

/// Where and how to join.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// The gateway's engine port, `host:port`.
    pub gateway: String,
    /// The join token.
    pub token: Vec<u8>,
    /// This node's name.
    pub node: String,
    /// CA certificates to check the gateway's certificate (TLS); `None`: plain TCP.
    pub ca: Option<PathBuf>,
}

/// What the join task and the engine's shutdown share.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    stop: Notify,
    drained: Notify,
    joined: AtomicBool,
    session: Mutex<Option<FrameTx>>,
    running: AtomicUsize,
    idle: Notify,
}

fn session_tx(shared: &Shared) -> Option<FrameTx> {
    shared
        .session
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn set_session(shared: &Shared, tx: Option<FrameTx>) {
    *shared.session.lock().unwrap_or_else(|p| p.into_inner()) = tx;
}

/// The running join task; see the [module docs](self).
pub struct Joiner {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Joiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joiner").finish_non_exhaustive()
    }
}

/// The functions `engine` registers.
pub fn functions(engine: &Engine) -> Vec<FunctionInfo> {
    engine
        .config()
        .functions
        .iter()
        .map(|f| FunctionInfo {
            name: f.name.clone(),
            capacity: u32::try_from(f.max_workers.saturating_add(f.queue_bound))
                .unwrap_or(u32::MAX)
                .max(1),
            max_payload: u32::try_from(f.max_payload).unwrap_or(u32::MAX),
            timeout_ms: u32::try_from(f.timeout.as_millis()).unwrap_or(u32::MAX),
            idempotent: f.idempotent,
            allow_get: f.allow_get,
        })
        .collect()
}

impl Joiner {
    /// Starts joining `spec.gateway` for `engine` (on the current runtime). Fails at once only
    /// on what retrying cannot fix: an unreadable CA file.
    pub fn start(engine: Arc<Engine>, spec: JoinSpec) -> Result<Joiner, ClusterError> {
        let tls = match &spec.ca {
            Some(ca) => Some(super::tls::connector(ca)?),
            None => None,
        };
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(run(engine, spec, tls, shared.clone()));
        Ok(Joiner { shared, task })
    }

    /// Whether the engine is joined now.
    pub fn joined(&self) -> bool {
        self.shared.joined.load(Ordering::SeqCst)
    }

    /// Tells the gateway this engine stops and waits (bounded) until it promised to send no
    /// more calls; stops dialing again.
    pub async fn drain(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let Some(tx) = session_tx(&self.shared) else {
            return;
        };
        let drained = self.shared.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        if tx.send(Frame::Drain).is_ok() && tokio::time::timeout(DRAIN_ACK, drained).await.is_err()
        {
            tracing::warn!("the gateway did not acknowledge the drain; stopping anyway");
        }
    }

    /// Once the engine's calls have ended: sends their last answers (waiting at most `grace`)
    /// and closes the connection.
    pub async fn close(self, grace: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        let idle = async {
            loop {
                let notified = shared.idle.notified();
                if shared.running.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(grace, idle).await;
        self.shared.stop.notify_waiters();
        self.shared.stop.notify_one();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// A small jittered exponential back-off.
struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
            seed: now_ns() ^ u64::from(std::process::id()).rotate_left(32) | 1,
        }
    }

    /// The next wait: uniform in the upper half of the current step, which then doubles.
    fn wait(&mut self) -> Duration {
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(self.seed % nanos)
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

async fn run(
    engine: Arc<Engine>,
    spec: JoinSpec,
    tls: Option<tokio_rustls::TlsConnector>,
    shared: Arc<Shared>,
) {
    let mut backoff = Backoff::new();
    let mut failures = 0u64;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match session(&engine, &spec, tls.as_ref(), &shared).await {
            Ok(why) => {
                backoff.reset();
                failures = 0;
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                tracing::warn!(gateway = %spec.gateway, "lost the gateway: {why}; joining again");
            }
            Err(e) => {
                failures += 1;
                // Every refusal is worth saying; a gateway that is not up yet, once.
                if failures == 1 || matches!(e, ClusterError::Refused { .. }) {
                    tracing::warn!(gateway = %spec.gateway, "cannot join the gateway: {e}; retrying");
                } else {
                    tracing::debug!(gateway = %spec.gateway, "cannot join the gateway: {e}");
                }
            }
        }
        let wait = backoff.wait();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.stop.notified() => return,
        }
    }
}

/// Dials, joins and serves calls until the connection ends: `Err` if it never joined,
/// `Ok(why it ended)` otherwise.
async fn session(
    engine: &Arc<Engine>,
    spec: &JoinSpec,
    tls: Option<&tokio_rustls::TlsConnector>,
    shared: &Arc<Shared>,
) -> Result<String, ClusterError> {
    let tcp = tokio::time::timeout(CONNECT, TcpStream::connect(&spec.gateway))
        .await
        .map_err(|_| ClusterError::Lost(format!("connecting to {} timed out", spec.gateway)))?
        .map_err(|e| ClusterError::io(format!("connecting to {}", spec.gateway), e))?;
    let _ = tcp.set_nodelay(true);
    let (r, mut w) = match tls {
        None => split_tcp(tcp),
        Some(c) => {
            let host = spec
                .gateway
                .rsplit_once(':')
                .map_or(spec.gateway.as_str(), |(h, _)| h)
                .trim_matches(|c| c == '[' || c == ']');
            tokio::time::timeout(CONNECT, super::tls::connect(c, host, tcp))
                .await
                .map_err(|_| ClusterError::Lost("TLS handshake timed out".into()))??
        }
    };
    let hello = Frame::Hello(Hello {
        version: VERSION,
        token: spec.token.clone(),
        node: spec.node.clone(),
        functions: functions(engine),
    });
    write_one(&mut w, &hello).await?;
    let mut reader = FrameReader::new(r);
    let welcome = match tokio::time::timeout(CONNECT, reader.next()).await {
        Err(_) => return Err(ClusterError::Lost("no answer to HELLO".into())),
        Ok(r) => r?,
    };
    let welcome = match welcome {
        Some(Frame::Welcome(w)) => w,
        Some(Frame::Refuse { reason, text, .. }) => {
            return Err(ClusterError::Refused { reason, text })
        }
        Some(_) => {
            return Err(ClusterError::Lost(
                "the gateway answered HELLO out of turn".into(),
            ))
        }
        None => {
            return Err(ClusterError::Lost(
                "the gateway closed the connection".into(),
            ))
        }
    };
    let heartbeat = Duration::from_millis(u64::from(welcome.heartbeat_ms));
    let (tx, mut writer) = spawn_writer(w, dead_after(heartbeat));
    set_session(shared, Some(tx.clone()));
    shared.joined.store(true, Ordering::SeqCst);
    tracing::info!(gateway = %spec.gateway, engine_id = welcome.engine_id, "joined the gateway");
    let beat = Heartbeat::start(tx.clone(), heartbeat);
    let mut serving = Serving {
        engine,
        tx: &tx,
        shared,
        assembling: HashMap::new(),
    };
    let dead = dead_after(heartbeat);
    let why = loop {
        tokio::select! {
            next = reader.next() => match next {
                Err(e) => break e.to_string(),
                Ok(None) => break "the gateway closed the connection".to_string(),
                Ok(Some(frame)) => {
                    beat.seen();
                    if let Err(e) = serving.on_frame(frame) {
                        break e.to_string();
                    }
                }
            },
            () = beat.silent() => break format!("no frame for {} ms (heartbeats missed)", dead.as_millis()),
            ended = &mut writer => break match ended {
                Ok(Err(e)) => e.to_string(),
                _ => "the connection's writer ended".to_string(),
            },
            () = shared.stop.notified() => break "stopping".to_string(),
        }
    };
    shared.joined.store(false, Ordering::SeqCst);
    set_session(shared, None);
    drop(beat);
    drop(serving);
    drop(tx);
    // Answers already queued still go out (the call tasks' senders end with them).
    if tokio::time::timeout(dead_after(heartbeat), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    Ok(why)
}

struct Serving<'a> {
    engine: &'a Arc<Engine>,
    tx: &'a FrameTx,
    shared: &'a Arc<Shared>,
    assembling: HashMap<u64, (CallHead, Assembly)>,
}

impl Serving<'_> {
    fn on_frame(&mut self, frame: Frame) -> Result<(), ClusterError> {
        match frame {
            Frame::Call {
                call,
                more,
                head,
                chunk,
            } => {
                let limit = self
                    .engine
                    .function_by_name(&head.name)
                    .map_or(u64::from(u32::MAX), |f| f.max_payload);
                if u64::from(head.input_len) > limit {
                    return Err(ClusterError::frame(
                        "input_len",
                        format!(
                            "{} bytes, beyond the {limit} of function {}",
                            head.input_len, head.name
                        ),
                    ));
                }
                if !more {
                    self.start(call, head, chunk);
                } else if self.assembling.len() >= MAX_ASSEMBLING {
                    return Err(ClusterError::frame(
                        "CALL",
                        "too many calls arriving in chunks at once",
                    ));
                } else {
                    let assembly = Assembly::new(head.input_len, &chunk);
                    if self.assembling.insert(call, (head, assembly)).is_some() {
                        return Err(ClusterError::frame(
                            "call",
                            format!("call {call} started twice"),
                        ));
                    }
                }
                Ok(())
            }
            Frame::Data { call, more, chunk } => {
                let Some((_, assembly)) = self.assembling.get_mut(&call) else {
                    return Err(ClusterError::frame(
                        "call",
                        format!("DATA for call {call}, which is not arriving"),
                    ));
                };
                if let Some(input) = assembly.push(&chunk, more)? {
                    if let Some((head, _)) = self.assembling.remove(&call) {
                        self.start(call, head, input);
                    }
                }
                Ok(())
            }
            Frame::Ping { sent_ns } => {
                let _ = self.tx.send(Frame::Pong { sent_ns });
                Ok(())
            }
            Frame::Pong { .. } => Ok(()),
            Frame::Drained => {
                self.shared.drained.notify_waiters();
                Ok(())
            }
            Frame::Refuse { text, reason, .. } => Err(ClusterError::Refused { reason, text }),
            other => Err(ClusterError::Lost(format!(
                "unexpected frame from the gateway: {}",
                super::gateway::frame_name(&other)
            ))),
        }
    }

    /// Runs one call in its own task; its answer goes back on the connection.
    fn start(&self, call: u64, head: CallHead, input: Bytes) {
        let engine = self.engine.clone();
        let tx = self.tx.clone();
        let shared = self.shared.clone();
        shared.running.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let budget = (head.budget_us > 0).then(|| Duration::from_micros(head.budget_us));
            let (head, output) = match engine.call_external(&head.name, input, budget).await {
                Ok(out) => (
                    ResultHead {
                        status: None,
                        output_len: 0,
                        queued_ns: out.timing.queued_ns,
                        running_ns: out.timing.running_ns,
                        processing_ns: out.timing.processing_ns,
                    },
                    out.body,
                ),
                Err(refusal) => (
                    ResultHead {
                        status: Some(refusal.kind),
                        output_len: 0,
                        queued_ns: 0,
                        running_ns: 0,
                        processing_ns: 0,
                    },
                    Bytes::from(refusal.message),
                ),
            };
            let _ = tx.send_all(&result_frames(call, head, output));
            if shared.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                shared.idle.notify_waiters();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_within_its_doubling_steps() {
        let mut b = Backoff::new();
        let mut step = BACKOFF_FIRST;
        for _ in 0..10 {
            let w = b.wait();
            assert!(
                w >= step / 2 && w <= step,
                "{w:?} outside [{:?}, {step:?}]",
                step / 2
            );
            step = (step * 2).min(BACKOFF_MAX);
        }
        b.reset();
        assert!(b.wait() <= BACKOFF_FIRST);
    }
}
