//! One HTTP connection as the gateway's timers and connection cap see it.
//!
//! A connection is *busy* while a request is being served: from the moment hyper hands the
//! request head to the service until hyper has taken the whole response body (the body holds
//! a [`RequestGuard`]). Otherwise it is *idle*, and then:
//!
//! - a request head in progress must complete within `header_read_timeout` of its first byte
//!   (of the connection's start, for the first request; HTTP/2 connections, whose frames flow
//!   between requests, only have the idle timer once they have made a request);
//! - with no byte moving for `idle_timeout`, the connection is closed (this also ends a client
//!   that stopped reading its response);
//! - it may be evicted to make room for a new one when the cap is reached (see
//!   [`Registry::pick_idle`]), once quiescent (no response bytes waiting to be written) for a
//!   moment.
//!
//! hyper's own `header_read_timeout` is not used: in hyper 1 its timer starts as soon as a
//! keep-alive connection waits for its next request head, so it would also cap the idle time
//! between requests and leave `idle_timeout` without effect.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::stats::CloseReason;

/// Milliseconds since the gateway started (never 0, which stands for "unset").
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    base: Instant,
}

impl Clock {
    pub(super) fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    pub(super) fn instant(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms.saturating_sub(1))
    }
}

/// The timers a connection is held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub(super) header_read: Duration,
    pub(super) idle: Duration,
}

/// What the connection task, the I/O wrapper and the service share about one connection.
#[derive(Debug)]
pub(super) struct ConnState {
    clock: Clock,
    /// Requests being served (HTTP/2 may have several).
    requests: AtomicU32,
    /// Last time a byte was read or written.
    last_io_ms: AtomicU64,
    /// When the request head being read began (0: none in progress).
    head_since_ms: AtomicU64,
    /// A write or flush is waiting for the socket to take more bytes.
    write_pending: AtomicBool,
    /// An HTTP/2 connection (known from its first request).
    h2: AtomicBool,
    /// Chosen to be evicted (at most one connection at a time).
    evicting: AtomicBool,
    /// Asks the connection to close if still idle.
    evict: Notify,
}

impl ConnState {
    /// A connection accepted now: its first request head is due within the header timeout.
    pub(super) fn new(clock: Clock) -> ConnState {
        let now = clock.now_ms();
        ConnState {
            clock,
            requests: AtomicU32::new(0),
            last_io_ms: AtomicU64::new(now),
            head_since_ms: AtomicU64::new(now),
            write_pending: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    /// Idle, with nothing left to write: closing it loses nothing.
    fn quiescent(&self) -> bool {
        self.requests.load(Ordering::SeqCst) == 0 && !self.write_pending.load(Ordering::SeqCst)
    }

    fn on_read(&self) {
        let now = self.clock.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        if self.requests.load(Ordering::SeqCst) == 0 && !self.h2.load(Ordering::Relaxed) {
            // The first byte of a head (a later one keeps the head's start).
            let _ =
                self.head_since_ms
                    .compare_exchange(0, now, Ordering::SeqCst, Ordering::Relaxed);
        }
    }

    fn on_write(&self, progressed: bool) {
        self.write_pending.store(!progressed, Ordering::SeqCst);
        if progressed {
            self.last_io_ms
                .store(self.clock.now_ms(), Ordering::Relaxed);
        }
    }

    /// When the watchdog looks next (clock ms), and what it does then if nothing has moved.
    ///
    /// Nothing can expire before the returned time, so neither a request's end nor a head's
    /// first byte has to wake the watchdog (no extra wake-up per request): while busy, or
    /// idle with no head begun, it only re-checks after `min(header_read, idle)`, earlier
    /// than any deadline that can start meanwhile.
    fn next_check(&self, t: Timeouts, now: u64) -> (u64, Option<CloseReason>) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let recheck = now.saturating_add(ms(t.header_read).min(ms(t.idle)));
        if self.requests.load(Ordering::SeqCst) > 0 {
            // A request's own limits apply: the call's deadline, the body's stall timeout.
            return (recheck, None);
        }
        let idle = self
            .last_io_ms
            .load(Ordering::Relaxed)
            .saturating_add(ms(t.idle));
        let head = self.head_since_ms.load(Ordering::SeqCst);
        if head != 0 && !self.h2.load(Ordering::Relaxed) {
            let due = head.saturating_add(ms(t.header_read));
            return if due <= idle {
                (due, Some(CloseReason::HeaderTimeout))
            } else {
                (idle, Some(CloseReason::IdleTimeout))
            };
        }
        if idle <= recheck {
            (idle, Some(CloseReason::IdleTimeout))
        } else {
            (recheck, None)
        }
    }

    /// Resolves when the connection should be closed: a timer ran out, or it was evicted while
    /// quiescent (an eviction that finds it busy is handed back to `registry`).
    pub(super) async fn until_closed(&self, t: Timeouts, registry: &Registry) -> CloseReason {
        loop {
            let now = self.clock.now_ms();
            let (at, close) = self.next_check(t, now);
            if let Some(reason) = close.filter(|_| at <= now) {
                return reason;
            }
            tokio::select! {
                () = tokio::time::sleep_until(self.clock.instant(at)) => {}
                () = self.evict.notified() => {
                    if self.quiescent() {
                        return CloseReason::Evicted;
                    }
                    // A request began meanwhile: let the accept loop pick another.
                    self.evicting.store(false, Ordering::SeqCst);
                    registry.became_idle.notify_one();
                }
            }
        }
    }
}

/// Counts one request as being served until dropped with the response body (or with the
/// request, if it never got one).
#[derive(Debug)]
pub(super) struct RequestGuard {
    conn: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl RequestGuard {
    /// A request head was read on `conn`.
    pub(super) fn start(conn: &Arc<ConnState>, registry: &Arc<Registry>, h2: bool) -> Self {
        if h2 {
            conn.h2.store(true, Ordering::Relaxed);
        }
        conn.requests.fetch_add(1, Ordering::SeqCst);
        conn.head_since_ms.store(0, Ordering::SeqCst);
        RequestGuard {
            conn: conn.clone(),
            registry: registry.clone(),
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let conn = &self.conn;
        conn.last_io_ms
            .store(conn.clock.now_ms(), Ordering::Relaxed);
        if conn.requests.fetch_sub(1, Ordering::SeqCst) == 1
            && self.registry.waiting.load(Ordering::SeqCst)
        {
            self.registry.became_idle.notify_one();
        }
    }
}

/// A response body that keeps its request counted as busy until hyper has taken all of it.
#[derive(Debug)]
pub(super) struct GuardedBody<B> {
    body: B,
    _guard: RequestGuard,
}

impl<B> GuardedBody<B> {
    pub(super) fn new(body: B, guard: RequestGuard) -> Self {
        GuardedBody {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A TCP stream that reports reads and writes to its [`ConnState`].
#[derive(Debug)]
pub(super) struct TrackedStream {
    inner: TcpStream,
    conn: Arc<ConnState>,
}

impl TrackedStream {
    pub(super) fn new(inner: TcpStream, conn: Arc<ConnState>) -> Self {
        TrackedStream { inner, conn }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read();
        }
        polled
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.conn.on_write(polled.is_ready());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.conn.on_write(polled.is_ready());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Every open connection, so that the accept loop can evict an idle one when the cap is
/// reached.
#[derive(Debug, Default)]
pub(super) struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    /// The accept loop waits for a slot: connections going idle must wake it.
    pub(super) waiting: AtomicBool,
    /// Notified when a connection goes idle while the accept loop waits.
    pub(super) became_idle: Notify,
}

/// What [`Registry::pick_idle`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Eviction {
    /// A connection was asked to close (now or earlier): its slot frees soon.
    Underway,
    /// Idle connections exist, but none has been idle long enough yet; the first will be at
    /// this time (clock milliseconds).
    NotBefore(u64),
    /// Every connection is busy.
    NoneIdle,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // A map of handles stays consistent even if a holder panicked.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `conn` until the returned registration is dropped.
    pub(super) fn register(self: &Arc<Self>, conn: &Arc<ConnState>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, conn.clone());
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// Asks the connection idle the longest to close, if it has been quiescent (no request,
    /// nothing to write) for at least `min_idle`: a client that has just connected, or just
    /// had an answer, gets that long to send its next request. One eviction at a time.
    pub(super) fn pick_idle(&self, now_ms: u64, min_idle: Duration) -> Eviction {
        let conns = self.lock();
        if conns.values().any(|c| c.evicting.load(Ordering::SeqCst)) {
            return Eviction::Underway;
        }
        // Ties (same millisecond) go to the oldest connection.
        let longest = conns
            .iter()
            .filter(|(_, c)| c.quiescent())
            .map(|(id, c)| (c.last_io_ms.load(Ordering::Relaxed), *id, c))
            .min_by_key(|(last_io, id, _)| (*last_io, *id));
        let Some((last_io, _, c)) = longest else {
            return Eviction::NoneIdle;
        };
        let min_idle = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let eligible = last_io.saturating_add(min_idle);
        if eligible > now_ms {
            return Eviction::NotBefore(eligible);
        }
        c.evicting.store(true, Ordering::SeqCst);
        c.evict.notify_one();
        Eviction::Underway
    }
}

/// Removes a connection from the [`Registry`] when dropped.
#[derive(Debug)]
pub(super) struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_millis(100),
        idle: Duration::from_millis(1000),
    };

    #[test]
    fn a_new_connection_owes_its_head_then_idles_between_requests() {
        let conn = Arc::new(ConnState::new(Clock::new()));
        let registry = Arc::new(Registry::default());
        let start = conn.head_since_ms.load(Ordering::SeqCst);
        assert_eq!(
            conn.next_check(T, start),
            (start + 100, Some(CloseReason::HeaderTimeout))
        );
        // Busy: only re-checks, however long the call runs.
        let guard = RequestGuard::start(&conn, &registry, false);
        assert_eq!(conn.next_check(T, start + 5000), (start + 5100, None));
        assert!(!conn.quiescent());
        drop(guard);
        // Between requests: re-checks every 100 ms (a head may begin) until idle for 1 s.
        let end = conn.last_io_ms.load(Ordering::Relaxed);
        assert_eq!(conn.next_check(T, end), (end + 100, None));
        assert_eq!(
            conn.next_check(T, end + 950),
            (end + 1000, Some(CloseReason::IdleTimeout))
        );
        assert!(conn.quiescent());
        // The first byte of the next head starts its timer.
        conn.on_read();
        let head = conn.head_since_ms.load(Ordering::SeqCst);
        assert_eq!(
            conn.next_check(T, head),
            (head + 100, Some(CloseReason::HeaderTimeout))
        );
        // A client that does not take its response keeps the connection from eviction.
        conn.on_write(false);
        assert!(!conn.quiescent());
    }

    #[test]
    fn eviction_picks_the_longest_idle_connection_once() {
        let clock = Clock::new();
        let registry = Arc::new(Registry::default());
        let busy = Arc::new(ConnState::new(clock));
        let old = Arc::new(ConnState::new(clock));
        let new = Arc::new(ConnState::new(clock));
        old.last_io_ms.store(1, Ordering::Relaxed);
        new.last_io_ms.store(5, Ordering::Relaxed);
        busy.last_io_ms.store(0, Ordering::Relaxed);
        let _guard = RequestGuard::start(&busy, &registry, false);
        let _r = [&busy, &old, &new].map(|c| registry.register(c));
        let min_idle = Duration::from_millis(10);
        // Not idle for 10 ms yet at time 5: the oldest will be at 11.
        assert_eq!(registry.pick_idle(5, min_idle), Eviction::NotBefore(11));
        assert_eq!(registry.pick_idle(11, min_idle), Eviction::Underway);
        assert!(old.evicting.load(Ordering::SeqCst));
        assert!(!new.evicting.load(Ordering::SeqCst));
        // Until the victim has closed, no second connection is picked.
        assert_eq!(registry.pick_idle(100, min_idle), Eviction::Underway);
        assert!(!new.evicting.load(Ordering::SeqCst));
        drop(_r);
        let _r = registry.register(&busy);
        assert_eq!(registry.pick_idle(100, min_idle), Eviction::NoneIdle);
    }
}
