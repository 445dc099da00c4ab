//! The worker side of the ring transport: a [`Channel`] over a logical worker's ring file.
//!
//! Waiting follows the policy measured in `ring-transport-study.md`: poll with yields for a
//! bounded spin (long enough to catch a reply that is about to come, short enough not to
//! starve the peer on a 2-vCPU machine), then sleep on the worker's doorbell. While asleep the
//! worker checks every second that the engine still holds the handshake socket, so a dead
//! engine is noticed instead of waited for (launched workers also die with the engine through
//! `PR_SET_PDEATHSIG`; this covers workers started by hand). An idle worker thus wakes once a
//! second, nothing more.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::channel::{Channel, Received, Wait};
use crate::error::{Error, Result};
use crate::ipc_root::IpcPaths;
use crate::protocol::MESSAGE_SIZE;
use crate::ring::{self, Bell, Consumer, Producer, RingFile, SharedMap};

/// How long a sleeping worker goes between checks that the engine is alive.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
/// Spin before sleeping when waiting for a new call (the study's "linger").
pub const LINGER: Duration = Duration::from_micros(20);

/// A logical worker's end of its ring file.
pub struct RingChannel {
    _file: RingFile,
    rx: Mutex<Consumer>,
    tx: Mutex<Producer>,
    my_bell: Bell,
    engine_bell: Bell,
    engine_socket: OwnedFd,
    closed: AtomicBool,
    woken: AtomicBool,
}

impl std::fmt::Debug for RingChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingChannel").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RingChannel {
    /// Maps worker `worker_id`'s ring file and the engine's doorbell. `engine_socket` is a
    /// duplicate of the handshake socket, watched to notice the engine's death.
    pub fn open_worker_side(
        paths: &IpcPaths,
        worker_id: u32,
        engine_socket: OwnedFd,
    ) -> Result<RingChannel> {
        let file = RingFile::open(&paths.ring_file(worker_id))?;
        let bell_map = std::sync::Arc::new(SharedMap::open(
            &paths.engine_bell(),
            ring::BELL_FILE_BYTES,
        )?);
        Ok(RingChannel {
            rx: Mutex::new(file.to_worker_consumer()),
            tx: Mutex::new(file.to_engine_producer()),
            my_bell: file.worker_bell(),
            engine_bell: Bell::new(&bell_map, 0),
            _file: file,
            engine_socket,
            closed: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        })
    }

    fn engine_gone(&self) -> bool {
        let mut fds = [PollFd::new(self.engine_socket.as_fd(), PollFlags::POLLIN)];
        // The engine never writes on the socket after the handshake: readable means closed.
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    fn shutdown(&self) -> Error {
        Error::Shutdown("ring channel closed".into())
    }
}

impl Channel for RingChannel {
    fn send(&self, msg: &[u8; MESSAGE_SIZE]) -> Result<()> {
        {
            let mut tx = lock(&self.tx);
            let mut tries = 0u32;
            while !tx.try_push(msg) {
                // Full: the engine drains continuously; yield, then back off, and give up only
                // if the engine is gone.
                tries += 1;
                if self.closed.load(Ordering::Acquire) {
                    return Err(self.shutdown());
                }
                self.engine_bell.notify();
                if tries < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                    if tries % 256 == 0 && self.engine_gone() {
                        return Err(Error::Shutdown("the engine went away".into()));
                    }
                }
            }
        }
        self.engine_bell.notify();
        Ok(())
    }

    fn recv(&self, buf: &mut [u8; MESSAGE_SIZE], wait: Wait) -> Result<Received> {
        self.recv_spin(buf, wait, LINGER)
    }

    fn recv_spin(
        &self,
        buf: &mut [u8; MESSAGE_SIZE],
        wait: Wait,
        spin: Duration,
    ) -> Result<Received> {
        let deadline = match wait {
            Wait::Timeout(d) => Some(Instant::now() + d),
            _ => None,
        };
        let mut rx = lock(&self.rx);
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(self.shutdown());
            }
            if rx.try_pop(buf) {
                return Ok(Received::Message);
            }
            if self.woken.swap(false, Ordering::AcqRel) {
                return Ok(Received::Woken);
            }
            let left = match (wait, deadline) {
                (Wait::NonBlocking, _) => return Ok(Received::TimedOut),
                (_, Some(d)) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Received::TimedOut);
                    }
                    left
                }
                _ => LIVENESS_CHECK,
            };
            let interrupted =
                || self.closed.load(Ordering::Acquire) || self.woken.load(Ordering::Acquire);
            if ring::spin_until(spin.min(left), || rx.has_message() || interrupted()) {
                continue;
            }
            self.my_bell.prepare_sleep();
            if rx.has_message() || interrupted() {
                self.my_bell.cancel_sleep();
                continue;
            }
            self.my_bell.sleep(left.min(LIVENESS_CHECK));
            if !rx.has_message() && !interrupted() && self.engine_gone() {
                return Err(Error::Shutdown("the engine went away".into()));
            }
        }
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.my_bell.force_wake();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.my_bell.force_wake();
    }
}
