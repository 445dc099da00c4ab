//! The gateway's accept loop and connection tasks: the connection cap, accept back-off and
//! graceful shutdown.
//!
//! **Cap.** At most `max_connections` connections are served at once. When a client connects
//! with the cap reached, the connection idle the longest (for at least a second) is closed to
//! make room (an idle HTTP/1.1 keep-alive connection may be closed at any time; clients reopen
//! one), so a client holding idle connections cannot lock others out. When every connection is serving a
//! request, the new one waits, and the clients behind it wait in the kernel's listen backlog,
//! until a request ends: they are then served, instead of being turned away while the engine
//! is working for others. Both cases are counted (`gloam_http_connections_closed_total
//! {reason="evicted"}`, `gloam_http_connection_cap_waits_total`) and logged once per episode.
//!
//! **Back-off.** An accept that fails for want of descriptors (`EMFILE`, `ENFILE`) or memory
//! leaves the connection in the backlog, so retrying at once would spin: the loop sleeps
//! 10 ms, doubling up to 1 s, and logs once per episode.
//!
//! **Shutdown.** [`Gateway::drain`] stops accepting (the listening socket closes) and marks
//! every later response `Connection: close` (the engine answers new calls 503 `SHUTDOWN`);
//! [`Gateway::close`] asks every connection, through hyper-util's [`GracefulShutdown`], to
//! finish the response in progress and close.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderValue, CONNECTION};
use hyper::Version;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::conn::{
    Clock, ConnState, Eviction, GuardedBody, Registry, RequestGuard, Timeouts, TrackedStream,
};
use super::http::{Backend, RequestCtx};
use super::stats::GatewayStats;

/// First pause after a failed accept.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Longest pause between accepts while they fail.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a connection must have been idle to be closed for a new one at the cap: a client
/// that has just connected, or just had an answer, gets this long to send its request.
const EVICT_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How the gateway limits its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections served at once (at least 1).
    pub max_connections: usize,
    /// How long a request head may take (from its first byte; from the connection's start for
    /// the first request).
    pub header_read_timeout: Duration,
    /// How long a connection may stay idle between requests, and a request body may stall.
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
    Closing,
}

/// What every connection task shares.
struct Shared<B> {
    backend: Arc<B>,
    limits: Limits,
    draining: AtomicBool,
    stats: GatewayStats,
    registry: Arc<Registry>,
    clock: Clock,
    slots: Arc<Semaphore>,
    /// With a certificate: every connection speaks TLS first.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl<B> std::fmt::Debug for Shared<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limits", &self.limits)
            .field("draining", &self.draining)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A listening socket of the gateway.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub tcp: TcpListener,
    /// Serves gRPC only (`engine.grpc_listen`); else HTTP and gRPC side by side.
    pub grpc_only: bool,
}

/// A running HTTP gateway; see the [module docs](self). It serves the engine's calls
/// (embedded gateway) or, in `gloam gateway`, sends them to the engines that joined.
#[derive(Debug)]
pub struct Gateway<B: Backend = crate::engine::Engine> {
    phase: watch::Sender<Phase>,
    shared: Arc<Shared<B>>,
    task: JoinHandle<()>,
}

impl<B: Backend> Gateway<B> {
    /// Serves HTTP (and gRPC) on `listener` for `backend` within `limits`, on the current
    /// runtime.
    pub fn start(backend: Arc<B>, listener: TcpListener, limits: Limits) -> Gateway<B> {
        let listener = Listener {
            tcp: listener,
            grpc_only: false,
        };
        Gateway::start_on(backend, vec![listener], limits, None)
    }

    /// Serves every listener of `listeners` for `backend`; the connection cap is shared. With
    /// `tls`, connections speak TLS (the handshake must finish within the header timeout).
    pub fn start_on(
        backend: Arc<B>,
        listeners: Vec<Listener>,
        limits: Limits,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Gateway<B> {
        let shared = Arc::new(Shared {
            backend,
            limits,
            draining: AtomicBool::new(false),
            stats: GatewayStats::default(),
            registry: Arc::new(Registry::default()),
            clock: Clock::new(),
            slots: Arc::new(Semaphore::new(
                limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
            tls,
        });
        let (phase, rx) = watch::channel(Phase::Serving);
        let task = tokio::spawn(run(shared.clone(), listeners, rx));
        Gateway {
            phase,
            shared,
            task,
        }
    }

    /// The gateway's counters.
    pub fn stats(&self) -> &GatewayStats {
        &self.shared.stats
    }

    /// Stops accepting connections; responses from now on carry `Connection: close`.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.phase.send_replace(Phase::Draining);
    }

    /// Closes every connection once its response in progress is written, waiting at most
    /// `grace`; connections still open then are left to end with the process.
    pub async fn close(self, grace: Duration) {
        self.drain();
        self.phase.send_replace(Phase::Closing);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(
                connections = self.shared.stats.open(),
                "HTTP connections still open after the close grace period"
            );
            task.abort();
        }
    }
}

async fn run<B: Backend>(
    shared: Arc<Shared<B>>,
    listeners: Vec<Listener>,
    mut phase: watch::Receiver<Phase>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let (shared, mut phase, graceful) = (shared.clone(), phase.clone(), graceful.clone());
            tokio::spawn(async move {
                accept_loop(&shared, l, &mut phase, &graceful).await;
            })
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
    // The listeners are closed: new connections are refused from here on.
    let _ = phase.wait_for(|p| *p == Phase::Closing).await;
    if let Ok(graceful) = Arc::try_unwrap(graceful) {
        graceful.shutdown().await;
    }
}

async fn accept_loop<B: Backend>(
    shared: &Arc<Shared<B>>,
    listener: Listener,
    phase: &mut watch::Receiver<Phase>,
    graceful: &GracefulShutdown,
) {
    let Listener {
        tcp: listener,
        grpc_only,
    } = listener;
    let mut backoff = Backoff::default();
    let mut cap = CapEpisode::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = phase.wait_for(|p| *p != Phase::Serving) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                if let Some((failures, error)) = backoff.recovered() {
                    tracing::info!(failures, last_error = %error, "accepting HTTP connections again");
                }
                stream
            }
            Err(e) if ends_one_connection(&e) => {
                tracing::debug!(error = %e, "a connection ended before it was accepted");
                continue;
            }
            Err(e) => {
                shared.stats.accept_error();
                let delay = backoff.failed(&e);
                if backoff.failures == 1 {
                    tracing::warn!(
                        error = %e,
                        "cannot accept HTTP connections; retrying with back-off \
                         (out of descriptors? see engine.max_connections)"
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = phase.wait_for(|p| *p != Phase::Serving) => return,
                }
                continue;
            }
        };
        let permit = match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                cap.over(shared);
                permit
            }
            Err(_) => match wait_for_slot(shared, phase, &mut cap).await {
                Some(permit) => permit,
                None => return,
            },
        };
        spawn_connection(
            shared.clone(),
            stream,
            grpc_only,
            permit,
            graceful.watcher(),
        );
    }
}

/// The cap is reached: evicts an idle connection if there is one, and waits for a slot.
/// `None` when the gateway stops meanwhile.
async fn wait_for_slot<B: Backend>(
    shared: &Arc<Shared<B>>,
    phase: &mut watch::Receiver<Phase>,
    cap: &mut CapEpisode,
) -> Option<OwnedSemaphorePermit> {
    cap.reached(shared);
    let registry = &shared.registry;
    registry.waiting.store(true, Ordering::SeqCst);
    let mut counted = false;
    let permit = loop {
        if let Ok(permit) = shared.slots.clone().try_acquire_owned() {
            break Some(permit);
        }
        let retry_at = match registry.pick_idle(shared.clock.now_ms(), EVICT_AFTER_IDLE) {
            Eviction::Underway => None,
            Eviction::NotBefore(at) => Some(shared.clock.instant(at)),
            Eviction::NoneIdle => {
                if !counted {
                    counted = true;
                    cap.waits += 1;
                    shared.stats.cap_wait();
                }
                None
            }
        };
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            permit = shared.slots.clone().acquire_owned() => break permit.ok(),
            () = registry.became_idle.notified() => {}
            () = retry => {}
            _ = phase.wait_for(|p| *p != Phase::Serving) => break None,
        }
    };
    registry.waiting.store(false, Ordering::SeqCst);
    permit
}

fn spawn_connection<B: Backend>(
    shared: Arc<Shared<B>>,
    stream: TcpStream,
    grpc_only: bool,
    permit: OwnedSemaphorePermit,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(ConnState::new(shared.clock));
    let io = TokioIo::new(TrackedStream::new(stream, conn.clone()));
    shared.stats.opened();
    // Registered before the task first runs: a client arriving at the cap right after this one
    // must find it among the connections that can be evicted (else the accept loop waits for
    // an eviction no registered connection can give).
    let registration = shared.registry.register(&conn);
    tokio::spawn(async move {
        let _permit = permit;
        let _registration = registration;
        let service = {
            let (shared, conn) = (shared.clone(), conn.clone());
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let version = req.version();
                let guard =
                    RequestGuard::start(&conn, &shared.registry, version == Version::HTTP_2);
                let shared = shared.clone();
                async move {
                    let ctx = RequestCtx {
                        draining: shared.draining.load(Ordering::SeqCst),
                        body_timeout: shared.limits.idle_timeout,
                        stats: &shared.stats,
                        max_connections: shared.limits.max_connections,
                        grpc_only,
                    };
                    let mut response = shared.backend.handle(&ctx, req).await;
                    // Draining: this connection's client must go elsewhere from now on.
                    if shared.draining.load(Ordering::SeqCst) && version < Version::HTTP_2 {
                        response
                            .headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(response.map(|body| GuardedBody::new(body, guard)))
                }
            })
        };
        let timeouts = Timeouts {
            header_read: shared.limits.header_read_timeout,
            idle: shared.limits.idle_timeout,
        };
        match shared.tls.clone() {
            None => serve(&shared, &conn, io, service, watcher, timeouts).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(timeouts.header_read, acceptor.accept(io.into_inner()));
                match handshake.await {
                    Ok(Ok(tls)) => {
                        serve(
                            &shared,
                            &conn,
                            TokioIo::new(tls),
                            service,
                            watcher,
                            timeouts,
                        )
                        .await
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => {
                        tracing::debug!("TLS handshake not done within the header timeout");
                        shared
                            .stats
                            .closed(super::stats::CloseReason::HeaderTimeout);
                    }
                }
            }
        }
        shared.stats.ended();
    });
}

/// Serves one connection (plain or TLS) until it ends or its limits close it.
async fn serve<K: Backend, I, S, B>(
    shared: &Arc<Shared<K>>,
    conn: &Arc<ConnState>,
    io: TokioIo<I>,
    service: S,
    watcher: Watcher,
    timeouts: Timeouts,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let served = watcher.watch(builder.serve_connection(io, service));
    tokio::select! {
        ended = served => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        }
        reason = conn.until_closed(timeouts, &shared.registry) => {
            tracing::debug!(reason = reason.label(), "closing an HTTP connection");
            shared.stats.closed(reason);
        }
    }
}

/// Errors of `accept` that concern only the connection being accepted.
fn ends_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(e.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

/// Exponential back-off over one episode of failing accepts.
#[derive(Debug, Default)]
struct Backoff {
    failures: u64,
    delay: Duration,
    last_error: Option<String>,
}

impl Backoff {
    /// One more failure: how long to wait before the next accept.
    fn failed(&mut self, e: &io::Error) -> Duration {
        self.failures += 1;
        self.delay = if self.failures == 1 {
            BACKOFF_FIRST
        } else {
            (self.delay * 2).min(BACKOFF_MAX)
        };
        self.last_error = Some(e.to_string());
        self.delay
    }

    /// An accept succeeded: ends the episode, returning its failures and last error if any.
    fn recovered(&mut self) -> Option<(u64, String)> {
        let episode = (self.failures > 0)
            .then(|| (self.failures, self.last_error.take().unwrap_or_default()));
        *self = Backoff::default();
        episode
    }
}

/// One period during which the connection cap was reached, for its log lines.
#[derive(Debug, Default)]
struct CapEpisode {
    active: bool,
    waits: u64,
    evicted_before: u64,
}

impl CapEpisode {
    fn reached<B>(&mut self, shared: &Shared<B>) {
        if !self.active {
            self.active = true;
            self.waits = 0;
            self.evicted_before = shared
                .stats
                .closed_count(super::stats::CloseReason::Evicted);
            tracing::warn!(
                max_connections = shared.limits.max_connections,
                "HTTP connection cap reached: idle connections are closed to make room; \
                 when none is idle, new connections wait for one to end"
            );
        }
    }

    /// A connection got a slot without waiting: the episode, if any, is over.
    fn over<B>(&mut self, shared: &Shared<B>) {
        if self.active {
            self.active = false;
            let evicted = shared
                .stats
                .closed_count(super::stats::CloseReason::Evicted)
                .saturating_sub(self.evicted_before);
            tracing::info!(
                evicted,
                waited = self.waits,
                "HTTP connections below the cap again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_success() {
        let mut b = Backoff::default();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        let delays: Vec<Duration> = (0..10).map(|_| b.failed(&e)).collect();
        assert_eq!(delays[0], BACKOFF_FIRST);
        assert_eq!(delays[1], BACKOFF_FIRST * 2);
        assert_eq!(delays[9], BACKOFF_MAX);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        let (failures, error) = b.recovered().unwrap_or_default();
        assert_eq!(failures, 10);
        assert!(error.contains("Too many open files"), "{error}");
        assert_eq!(b.recovered(), None);
        assert_eq!(b.failed(&e), BACKOFF_FIRST);
    }

    #[test]
    fn descriptor_exhaustion_is_not_a_one_connection_error() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(!ends_one_connection(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EINTR] {
            assert!(ends_one_connection(&io::Error::from_raw_os_error(errno)));
        }
    }
}
