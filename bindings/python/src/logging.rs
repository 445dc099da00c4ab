//! Forwards the core's `tracing` events to Python's `logging.getLogger("gloam")`, without ever
//! taking the GIL on the thread that logs.
//!
//! Core threads log while they hold the core's own locks (a worker's inbox, the ring channel's
//! tally), and Python threads call into the core (`Worker.close`, ...) — if the logging layer
//! took the GIL there, a thread holding a core lock could wait for the GIL while the GIL's
//! holder waits for that lock. So the layer only formats the event and puts it in a bounded
//! queue ([`CAPACITY`] records): it never blocks, and when the queue is full the record is
//! dropped and counted. The first record after the queue was drained writes one byte to a
//! non-blocking wake-up socket; a Python daemon thread (`gloam._logging`, started by
//! `install_logging`) sleeps in `os.read` on the other end, then takes the records with
//! [`take_log_records`] and hands them to `logging` (reporting the dropped count as a
//! warning). Installed once per process as the global `tracing` subscriber, filtered by
//! `GLOAM_LOG` (`tracing` directives; default `info`); Python's logging then applies its own
//! levels and handlers.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock, PoisonError};

use gloam_core::ErrorKind;
use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

use crate::errors::error;

/// Records the queue holds before it drops new ones.
pub const CAPACITY: usize = 4096;

/// One formatted event: its `logging` level number and its text.
type Record = (u8, String);

/// The queue between the `tracing` layer (any thread, never the GIL) and the Python drain.
struct LogQueue {
    tx: SyncSender<Record>,
    /// Taken only by [`take_log_records`], and never while Python objects are made.
    rx: Mutex<Receiver<Record>>,
    /// Records dropped because the queue was full, since the last drain.
    dropped: AtomicU64,
    /// A wake-up byte was written since the last drain started: no need for another.
    signalled: AtomicBool,
    /// Non-blocking: a full socket already holds unread wake-ups.
    wake_tx: UnixStream,
    /// Read by the Python drain thread (`os.read`), never closed.
    wake_rx: UnixStream,
}

impl LogQueue {
    fn new() -> std::io::Result<LogQueue> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        let (tx, rx) = sync_channel(CAPACITY);
        Ok(LogQueue {
            tx,
            rx: Mutex::new(rx),
            dropped: AtomicU64::new(0),
            signalled: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        })
    }

    /// Queues `record` without blocking (dropping it if the queue is full) and wakes the drain
    /// if it may be asleep.
    fn push(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {
                // SeqCst read-modify-write, paired with the drain's swap: either the drain's
                // swap comes later and then sees this record, or this swap comes later, reads
                // `false` and writes a wake-up byte.
                if !self.signalled.swap(true, Ordering::SeqCst) {
                    // WouldBlock: the socket is full of unread wake-ups already.
                    let _ = (&self.wake_tx).write(&[1]);
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes every queued record (at most [`CAPACITY`]) and the dropped count.
    fn take(&self) -> (Vec<Record>, u64) {
        // Paired with the swap in `push`: a push whose swap came before this one (and wrote no
        // wake-up) is seen by the `try_iter` below, since this swap reads its write; a later
        // push reads `false` here and writes a new wake-up.
        self.signalled.swap(false, Ordering::SeqCst);
        // No Python object is made while the lock is held (see `rx`).
        let records = {
            let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
            rx.try_iter().take(CAPACITY).collect()
        };
        (records, self.dropped.swap(0, Ordering::Relaxed))
    }
}

static QUEUE: OnceLock<LogQueue> = OnceLock::new();
/// Whether our subscriber became the global one (decided once).
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Sends `tracing` events from the core to a queue that the Python logging thread drains, and
/// returns the file descriptor that thread waits on (`os.read`; a byte arrives when records
/// do). Idempotent: later calls return the same descriptor. `None` when another global
/// `tracing` subscriber is already installed (the embedding program's own stays in charge).
#[pyfunction]
pub fn install_logging() -> PyResult<Option<i32>> {
    let queue = match QUEUE.get() {
        Some(q) => q,
        None => {
            let made = LogQueue::new().map_err(|e| {
                error(
                    ErrorKind::Io,
                    &format!("socketpair for the log queue's wake-ups: {e}"),
                )
            })?;
            QUEUE.get_or_init(|| made)
        }
    };
    let installed = *INSTALLED.get_or_init(|| {
        let filter =
            EnvFilter::try_from_env("GLOAM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(QueueLayer { queue });
        tracing::subscriber::set_global_default(subscriber).is_ok()
    });
    Ok(installed.then(|| queue.wake_rx.as_raw_fd()))
}

/// Takes the queued log records: `([(level, text), ...], dropped)`, where `dropped` counts the
/// records lost to a full queue since the last call. Never blocks.
#[pyfunction]
pub fn take_log_records() -> (Vec<(u8, String)>, u64) {
    match QUEUE.get() {
        Some(q) => q.take(),
        None => (Vec::new(), 0),
    }
}

struct QueueLayer {
    queue: &'static LogQueue,
}

impl<S: Subscriber> Layer<S> for QueueLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut text = TextVisitor::default();
        event.record(&mut text);
        let line = format!("{}{} [{}]", text.message, text.fields, meta.target());
        self.queue.push((python_level(*meta.level()), line));
    }
}

/// The `logging` level number of a `tracing` level.
fn python_level(level: Level) -> u8 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

#[derive(Default)]
struct TextVisitor {
    message: String,
    fields: String,
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}
