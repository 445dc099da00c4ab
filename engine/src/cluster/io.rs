//! Frames over a byte stream: a reader that decodes one frame at a time; a writer whose
//! senders write to a TCP socket themselves when it takes the bytes (a task finishes what it
//! does not take), or, on TLS, a task that batches the queued frames into one write; and
//! the heartbeat that pings the peer and notices its silence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use gloam_core::clock::now_ns;

use super::wire::{Frame, FrameHeader, HEADER_LEN};
use super::ClusterError;

/// The reading half of a connection (TCP or TLS).
pub type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
/// The writing half of a TLS connection.
pub type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// The writing half of a connection.
pub enum WriteHalf {
    /// Plain TCP: frames are written by the sender itself when the socket takes them.
    Tcp(OwnedWriteHalf),
    /// Any stream (TLS): frames go through a writer task.
    Boxed(BoxWrite),
}

impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteHalf::Tcp(_) => "WriteHalf::Tcp",
            WriteHalf::Boxed(_) => "WriteHalf::Boxed",
        })
    }
}

/// Bytes of queued frames gathered into one write.
const BATCH: usize = 256 * 1024;

/// Splits a plain TCP stream (without the lock [`tokio::io::split`] takes).
pub fn split_tcp(s: TcpStream) -> (BoxRead, WriteHalf) {
    let (r, w) = s.into_split();
    (Box::new(r), WriteHalf::Tcp(w))
}

/// Splits any stream (a TLS one).
pub fn split_any<S: AsyncRead + AsyncWrite + Send + 'static>(s: S) -> (BoxRead, WriteHalf) {
    let (r, w) = tokio::io::split(s);
    (Box::new(r), WriteHalf::Boxed(Box::new(w)))
}

/// Decodes frames from a stream, one at a time.
pub struct FrameReader {
    r: BufReader<BoxRead>,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameReader")
    }
}

impl FrameReader {
    /// Reads from `r`.
    pub fn new(r: BoxRead) -> FrameReader {
        FrameReader {
            r: BufReader::with_capacity(64 * 1024, r),
        }
    }

    /// The next frame; `None` when the peer closed the stream between frames. Not
    /// cancel-safe: a connection whose read is abandoned must be dropped.
    pub async fn next(&mut self) -> Result<Option<Frame>, ClusterError> {
        let mut h = [0u8; HEADER_LEN];
        let n = self
            .r
            .read(&mut h[..1])
            .await
            .map_err(|e| ClusterError::io("reading a frame", e))?;
        if n == 0 {
            return Ok(None);
        }
        self.r
            .read_exact(&mut h[1..])
            .await
            .map_err(|e| ClusterError::io("reading a frame header", e))?;
        let header = FrameHeader::decode(&h)?;
        let mut body = BytesMut::zeroed(header.len as usize);
        self.r
            .read_exact(&mut body)
            .await
            .map_err(|e| ClusterError::io("reading a frame body", e))?;
        Frame::decode(&header, body.freeze()).map(Some)
    }
}

/// The connection is gone: the frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Where frames for a peer go; cheap to clone. When the last clone is dropped, the writer
/// writes what is queued and closes its half of the connection.
pub struct FrameTx {
    inner: TxInner,
}

enum TxInner {
    Queue(mpsc::UnboundedSender<Frame>),
    Direct(Arc<Direct>),
}

impl std::fmt::Debug for FrameTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameTx")
    }
}

impl Clone for FrameTx {
    fn clone(&self) -> FrameTx {
        let inner = match &self.inner {
            TxInner::Queue(q) => TxInner::Queue(q.clone()),
            TxInner::Direct(d) => {
                lock(&d.state).senders += 1;
                TxInner::Direct(d.clone())
            }
        };
        FrameTx { inner }
    }
}

impl Drop for FrameTx {
    fn drop(&mut self) {
        if let TxInner::Direct(d) = &self.inner {
            let mut st = lock(&d.state);
            st.senders -= 1;
            if st.senders == 0 {
                st.flushing = true;
                drop(st);
                d.wake.notify_one();
            }
        }
    }
}

impl FrameTx {
    /// Queues `frame` for the peer (on TCP, writes it at once when the socket takes it).
    pub fn send(&self, frame: Frame) -> Result<(), Closed> {
        match &self.inner {
            TxInner::Queue(q) => q.send(frame).map_err(|_| Closed),
            TxInner::Direct(d) => d.send(std::slice::from_ref(&frame)),
        }
    }

    /// Stops sending and shuts the connection down (both ways), so the peer sees it end now.
    pub fn close(&self) {
        if let TxInner::Direct(d) = &self.inner {
            lock(&d.state).dead = true;
            use std::os::fd::AsRawFd;
            let stream: &TcpStream = d.w.as_ref();
            // SAFETY: shutdown(2) on a descriptor this half keeps open; no memory is touched.
            unsafe {
                libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR);
            }
            d.wake.notify_one();
        }
    }

    /// Queues several frames, in order.
    pub fn send_all(&self, frames: &[Frame]) -> Result<(), Closed> {
        match &self.inner {
            TxInner::Queue(q) => frames
                .iter()
                .try_for_each(|f| q.send(f.clone()).map_err(|_| Closed)),
            TxInner::Direct(d) => d.send(frames),
        }
    }
}

/// A TCP write half shared by the senders: whoever sends writes what the socket takes at
/// once (no task switch on the common path); the rest waits for the flusher task.
struct Direct {
    w: OwnedWriteHalf,
    state: Mutex<DirectState>,
    wake: Notify,
}

struct DirectState {
    /// Encoded bytes not written yet. Invariant: non-empty only while `flushing`.
    buf: BytesMut,
    /// The flusher task owns the writing now (bytes wait, or the last sender left).
    flushing: bool,
    /// The socket failed or the flusher gave up: nothing more is sent.
    dead: bool,
    senders: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Direct {
    fn send(&self, frames: &[Frame]) -> Result<(), Closed> {
        let mut st = lock(&self.state);
        if st.dead {
            return Err(Closed);
        }
        for f in frames {
            f.encode(&mut st.buf);
        }
        if st.flushing {
            return Ok(());
        }
        loop {
            match self.w.try_write(&st.buf) {
                Ok(n) => {
                    st.buf.advance(n);
                    if st.buf.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    st.dead = true;
                    break;
                }
            }
        }
        st.flushing = true;
        drop(st);
        self.wake.notify_one();
        Ok(())
    }
}

/// Starts writing frames to `w`: the sender, and the task that ends with an error when the
/// peer takes no bytes for `stall` (it stopped reading) or the socket fails, or with `Ok`
/// once every sender is gone and what they queued is written.
pub fn spawn_writer(
    w: WriteHalf,
    stall: Duration,
) -> (FrameTx, JoinHandle<Result<(), ClusterError>>) {
    match w {
        WriteHalf::Boxed(w) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(queue_writer(w, rx, stall));
            (
                FrameTx {
                    inner: TxInner::Queue(tx),
                },
                task,
            )
        }
        WriteHalf::Tcp(w) => {
            let d = Arc::new(Direct {
                w,
                state: Mutex::new(DirectState {
                    buf: BytesMut::with_capacity(64 * 1024),
                    flushing: false,
                    dead: false,
                    senders: 1,
                }),
                wake: Notify::new(),
            });
            let task = tokio::spawn(flusher(d.clone(), stall));
            (
                FrameTx {
                    inner: TxInner::Direct(d),
                },
                task,
            )
        }
    }
}

async fn flusher(d: Arc<Direct>, stall: Duration) -> Result<(), ClusterError> {
    let stalled = || {
        ClusterError::Lost(format!(
            "the peer took no bytes for {} ms (it stopped reading)",
            stall.as_millis()
        ))
    };
    loop {
        d.wake.notified().await;
        loop {
            {
                let mut st = lock(&d.state);
                if st.dead {
                    return Err(ClusterError::Lost("writing frames failed".into()));
                }
                if st.buf.is_empty() {
                    if st.senders == 0 {
                        st.dead = true;
                        return Ok(());
                    }
                    st.flushing = false;
                    break;
                }
            }
            match tokio::time::timeout(stall, d.w.writable()).await {
                Err(_) => {
                    lock(&d.state).dead = true;
                    return Err(stalled());
                }
                Ok(Err(e)) => {
                    lock(&d.state).dead = true;
                    return Err(ClusterError::io("writing frames", e));
                }
                Ok(Ok(())) => {}
            }
            let mut st = lock(&d.state);
            match d.w.try_write(&st.buf) {
                Ok(n) => st.buf.advance(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    st.dead = true;
                    return Err(ClusterError::io("writing frames", e));
                }
            }
        }
    }
}

async fn queue_writer(
    mut w: BoxWrite,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    stall: Duration,
) -> Result<(), ClusterError> {
    let mut buf = BytesMut::with_capacity(BATCH);
    while let Some(frame) = rx.recv().await {
        buf.clear();
        frame.encode(&mut buf);
        while buf.len() < BATCH {
            match rx.try_recv() {
                Ok(f) => f.encode(&mut buf),
                Err(_) => break,
            }
        }
        let write = async {
            w.write_all(&buf).await?;
            w.flush().await
        };
        match tokio::time::timeout(stall, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ClusterError::io("writing frames", e)),
            Err(_) => {
                return Err(ClusterError::Lost(format!(
                    "the peer took no bytes for {} ms (it stopped reading)",
                    stall.as_millis()
                )))
            }
        }
    }
    let _ = tokio::time::timeout(stall, w.shutdown()).await;
    Ok(())
}

/// Writes one frame directly (handshakes, before the writer starts).
pub async fn write_one(w: &mut WriteHalf, frame: &Frame) -> Result<(), ClusterError> {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    let done = match w {
        WriteHalf::Tcp(w) => w.write_all(&buf).await,
        WriteHalf::Boxed(w) => match w.write_all(&buf).await {
            Ok(()) => w.flush().await,
            Err(e) => Err(e),
        },
    };
    done.map_err(|e| ClusterError::io("writing a frame", e))
}

/// Pings the peer every heartbeat and notices its silence: [`Heartbeat::silent`] resolves
/// once no frame was [`seen`](Heartbeat::seen) for [`dead_after`](super::dead_after) (no
/// timer per frame: a frame only stores the time).
pub struct Heartbeat {
    last: Arc<AtomicU64>,
    dead: Arc<Notify>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Heartbeat")
    }
}

impl Heartbeat {
    /// Starts pinging through `tx` every `every`.
    pub fn start(tx: FrameTx, every: Duration) -> Heartbeat {
        let last = Arc::new(AtomicU64::new(now_ns()));
        let dead = Arc::new(Notify::new());
        let limit = u64::try_from(super::dead_after(every).as_nanos()).unwrap_or(u64::MAX);
        let task = {
            let (last, dead) = (last.clone(), dead.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let now = now_ns();
                    if now.saturating_sub(last.load(Ordering::Relaxed)) > limit {
                        dead.notify_one();
                        return;
                    }
                    if tx.send(Frame::Ping { sent_ns: now }).is_err() {
                        return;
                    }
                }
            })
        };
        Heartbeat { last, dead, task }
    }

    /// A frame arrived.
    pub fn seen(&self) {
        self.last.store(now_ns(), Ordering::Relaxed);
    }

    /// Resolves when the peer has been silent too long.
    pub async fn silent(&self) {
        self.dead.notified().await;
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
