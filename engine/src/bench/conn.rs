//! The load generator's HTTP/1.1 keep-alive connection (hyper's client), and a timer precise
//! to microseconds for open-loop pacing (a `timerfd` on the runtime: tokio's own timer ticks
//! in milliseconds, which would add up to a millisecond to every measured latency).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

/// One keep-alive connection.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    /// Connects to `addr` (`host:port`); the connection is driven by a task on the current
    /// runtime.
    pub async fn connect(addr: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {addr}"))?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends `method path` with `body`; returns the status and the whole response body.
    pub async fn request(&mut self, method: &str, path: &str, body: Bytes) -> Result<(u16, Bytes)> {
        self.sender
            .ready()
            .await
            .map_err(|e| anyhow!("connection to {} closed: {e}", self.host))?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// `GET path` on `addr` from a thread of its own (outside any runtime).
pub fn get_blocking(addr: &str, path: &str) -> Result<(u16, Bytes)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut c = Conn::connect(addr).await?;
        tokio::time::timeout(Duration::from_secs(5), c.request("GET", path, Bytes::new()))
            .await
            .map_err(|_| anyhow!("GET {path} on {addr}: no answer within 5 s"))?
    })
}

/// A one-shot timer on `CLOCK_MONOTONIC` with nanosecond resolution, awaited on the runtime.
pub struct PreciseTimer {
    fd: AsyncFd<TimerFdHandle>,
}

/// `AsyncFd` wants an owner of the descriptor that exposes it as a raw fd.
struct TimerFdHandle(TimerFd);

impl AsRawFd for TimerFdHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl AsFd for TimerFdHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl PreciseTimer {
    /// A timer (call from within a runtime).
    pub fn new() -> Result<PreciseTimer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the handle owns the timerfd and always returns that same open descriptor,
        // which lives as long as the `AsyncFd` (it is dropped with it).
        let fd = unsafe { AsyncFd::register(TimerFdHandle(fd)) }.map_err(|e| anyhow!("{e}"))?;
        Ok(PreciseTimer { fd })
    }

    /// Waits until `at` (at once if it passed).
    pub async fn sleep_until(&self, at: Instant) -> Result<()> {
        let left = at.saturating_duration_since(Instant::now());
        if left < Duration::from_micros(2) {
            return Ok(());
        }
        self.fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(left)),
            TimerSetTimeFlags::empty(),
        )?;
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                let mut buf = [0u8; 8];
                nix::unistd::read(fd.get_ref().as_raw_fd(), &mut buf)
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            }) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => bail!("timerfd: {e}"),
                Err(_would_block) => continue,
            }
        }
    }
}
