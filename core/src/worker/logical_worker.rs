//! One logical worker: a handshake, a channel, and the calls it runs one at a time.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::channel::{Channel, Wait};
use crate::clock::now_ns;
use crate::engine_socket::EngineSocket;
use crate::error::{Error, ErrorKind, Result};
use crate::ipc_root::IpcPaths;
use crate::lane::LaneGrant;
use crate::payload::{self, PayloadSide};
use crate::protocol::{
    flags, CallId, Header, Hello, Kind, Message, PayloadLocation, HEADER_SIZE, INLINE_CAPACITY,
    MESSAGE_SIZE,
};
use crate::ring_channel::{RingChannel, LINGER};
use crate::table::FunctionTable;

use super::call::{Call, ParentRef};
use super::handshake;
use super::inbox::{Inbox, Want};
use super::options::WorkerOptions;

/// Extra time an internal call waits past its deadline for the engine's own `TIMEOUT` reply
/// before giving up locally (the engine normally answers at the deadline).
const DEADLINE_GRACE: Duration = Duration::from_secs(1);
/// Assumed reply time before the first internal call.
const INITIAL_REPLY_NS: u64 = 50_000;
/// Longest a caller polls for a reply before sleeping.
const MAX_REPLY_SPIN: Duration = Duration::from_millis(1);
/// Longest an idle worker polls for its next call before sleeping.
const MAX_CALL_LINGER: Duration = Duration::from_micros(300);
/// How long a worker waits for a payload's descriptor once it has the message naming it. The
/// engine sends it first, so it is normally there; the answer of a direct-lane call comes
/// through the engine, a little after the answer itself.
const PAYLOAD_WAIT: Duration = Duration::from_secs(5);

/// What [`Worker::next_event`] produced.
#[derive(Debug)]
// Returned by value once per call: boxing the call would add an allocation to the call path.
#[allow(clippy::large_enum_variant)]
pub enum Next {
    /// A call to run.
    Call(Call),
    /// [`Worker::wake`] was called.
    Woken,
    /// The worker was retired or the engine is gone: the loop should end.
    Done,
}

/// A logical worker connected to the engine.
///
/// `Send + Sync`: one thread runs the receive loop (`recv` → `complete`/`fail`) while any number
/// of threads make internal calls with [`Worker::invoke`] for the call being run.
pub struct Worker {
    id: u32,
    function_id: u16,
    function: String,
    table: FunctionTable,
    /// The engine socket: leases and payload descriptors travel on it, and the engine sees
    /// its closing as the worker's death.
    socket: Arc<EngineSocket>,
    channel: Box<dyn Channel>,
    inbox: Inbox,
    next_seq: AtomicU32,
    /// Moving average of internal-call reply times: how long waiting by polling pays off.
    reply_ns: AtomicU64,
    /// When this worker last answered a call (monotonic ns, 0 = never).
    answered_ns: AtomicU64,
    /// Moving average of the idle gap between an answer and the next call (0 = none yet).
    gap_ns: AtomicU64,
}

/// The message of a call with header `h`: `input` inline when it travels inline (otherwise
/// its descriptor goes on the socket). `input` fits: [`Worker::invoke`] checked.
fn encode_call(mut h: Header, input: &[u8]) -> [u8; MESSAGE_SIZE] {
    let mut bytes = [0u8; MESSAGE_SIZE];
    if h.payload_loc == PayloadLocation::Inline {
        h.payload_len = input.len() as u32;
        bytes[HEADER_SIZE..HEADER_SIZE + input.len()].copy_from_slice(input);
    }
    h.encode(&mut bytes);
    bytes
}

/// Moving average with weight 1/8 (the first sample, over 0, is taken as is); concurrent
/// updates only lose a sample.
fn ewma(avg: &AtomicU64, x: u64) {
    let old = avg.load(Ordering::Relaxed);
    let new = if old == 0 { x } else { old - old / 8 + x / 8 };
    avg.store(new.max(1), Ordering::Relaxed);
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Connects to the engine, performs the handshake and opens the worker's channel.
    pub fn connect(opts: &WorkerOptions) -> Result<Worker> {
        let paths = IpcPaths::new(&opts.ipc_root);
        let mut sock = handshake::connect(&paths, opts.connect_timeout)?;
        let hello = Hello {
            pid: std::process::id(),
            function: opts.function.clone(),
            language: opts.language.clone(),
            secret: std::env::var(super::ENV_WORKER_SECRET).unwrap_or_default(),
        };
        let mut welcome = handshake::hello(&mut sock, &hello)?;
        let dup = sock
            .try_clone()
            .map_err(|e| Error::io("dup", paths.socket(), e))?;
        let socket = Arc::new(EngineSocket::new(OwnedFd::from(dup), welcome.worker_id));
        let channel: Box<dyn Channel> = if welcome.ring {
            Box::new(RingChannel::open_worker_side(
                welcome.worker_id,
                welcome.table.max_payload(),
                &welcome.fds[0],
                &welcome.fds[1],
                &welcome.fds[2],
                socket.clone(),
            )?)
        } else {
            Box::new(welcome.fifo_channel()?)
        };
        handshake::ready(&mut sock, welcome.worker_id)?;
        tracing::debug!(worker_id = welcome.worker_id, function = %opts.function, "worker ready");
        Ok(Worker {
            id: welcome.worker_id,
            function_id: welcome.function_id,
            function: opts.function.clone(),
            inbox: Inbox::new(welcome.table.max_payload()),
            table: welcome.table,
            socket,
            channel,
            next_seq: AtomicU32::new(1),
            reply_ns: AtomicU64::new(INITIAL_REPLY_NS),
            answered_ns: AtomicU64::new(0),
            gap_ns: AtomicU64::new(0),
        })
    }

    /// The worker id the engine assigned.
    pub fn id(&self) -> u32 {
        self.id
    }
    /// The function served.
    pub fn function(&self) -> &str {
        &self.function
    }
    /// The function's id.
    pub fn function_id(&self) -> u16 {
        self.function_id
    }
    /// The engine's function table.
    pub fn table(&self) -> &FunctionTable {
        &self.table
    }
    /// The payload limit in bytes.
    pub fn max_payload(&self) -> u64 {
        self.table.max_payload()
    }
    /// The name of the gRPC method `call` is for (`"Get"` for `/shop.Cart/Get` served by
    /// function `grpc:shop.Cart`); `""` for a plain function's call.
    pub fn method_of(&self, call: &Call) -> &str {
        self.table
            .method_name(call.function_id(), call.method_id())
            .unwrap_or("")
    }

    /// Waits for the next call. `Ok(None)`: the wait ran out, or [`Worker::wake`] was called.
    /// `Err(Shutdown)`: the engine retired this worker, or it is going away.
    ///
    /// A call whose deadline passed before it was received (one the engine sent behind a
    /// running call, see the engine's pipelining) is failed with `Timeout` at once, without
    /// running its handler, and the wait goes on.
    pub fn recv(&self, wait: Wait) -> Result<Option<Call>> {
        let (msg, received_ns) = loop {
            let Some(msg) = self.inbox.wait(
                self.channel.as_ref(),
                &self.socket,
                Want::Call,
                wait,
                self.call_linger(),
            )?
            else {
                return Ok(None);
            };
            let received_ns = now_ns();
            let deadline_ns = msg.header.deadline_ns;
            if deadline_ns == 0 || received_ns < deadline_ns {
                break (msg, received_ns);
            }
            if msg.header.payload_loc == PayloadLocation::Descriptor {
                self.socket
                    .forget_payload(msg.header.call_id(), PayloadSide::Input);
            }
            let late = Call {
                msg,
                payload: None,
                received_ns,
            };
            let text = format!(
                "call to {} reached its worker {} us after its deadline",
                self.table.name_of(late.function_id()).unwrap_or("?"),
                (received_ns - deadline_ns) / 1000
            );
            self.fail(late, ErrorKind::Timeout, &text)?;
        };
        let answered = self.answered_ns.load(Ordering::Relaxed);
        if answered != 0 {
            ewma(&self.gap_ns, received_ns.saturating_sub(answered));
        }
        let input = match msg.header.payload_loc {
            PayloadLocation::Descriptor => Some(
                self.socket
                    .take_payload(
                        msg.header.call_id(),
                        PayloadSide::Input,
                        msg.header.payload_len,
                        PAYLOAD_WAIT,
                    )
                    .and_then(|fd| payload::map(&fd, msg.header.payload_len)),
            ),
            _ => None,
        };
        let call = Call {
            msg,
            payload: None,
            received_ns,
        };
        match input {
            None => Ok(Some(call)),
            Some(Ok(view)) => Ok(Some(Call {
                payload: Some(view),
                ..call
            })),
            Some(Err(e)) => {
                // The call cannot run without its input: fail it so the caller is answered.
                let _ = self.fail(call, e.kind(), &e.to_string());
                Err(e)
            }
        }
    }

    /// The next call for a serve loop. `Ok(None)`: the worker was retired or the engine is
    /// gone, so the loop should end. `Err`: the engine sent something undecodable. Other
    /// receive errors (a call whose input file could not be read, already failed back to its
    /// caller by [`Worker::recv`]) are logged and skipped.
    pub fn next_call(&self) -> Result<Option<Call>> {
        loop {
            match self.next_event()? {
                Next::Call(call) => return Ok(Some(call)),
                Next::Woken => continue,
                Next::Done => return Ok(None),
            }
        }
    }

    /// [`Worker::next_call`] that also returns when [`Worker::wake`] is called (a serve loop
    /// that lets another thread receive for a while).
    pub fn next_event(&self) -> Result<Next> {
        loop {
            match self.recv(Wait::Forever) {
                Ok(Some(call)) => return Ok(Next::Call(call)),
                Ok(None) => return Ok(Next::Woken),
                Err(e) if e.kind() == ErrorKind::Shutdown => return Ok(Next::Done),
                Err(e) if e.kind() == ErrorKind::ProtocolError => return Err(e),
                Err(e) => tracing::warn!(error = %e, "could not receive a call"),
            }
        }
    }

    /// Makes a waiting [`Worker::recv`] return `Ok(None)`.
    pub fn wake(&self) {
        self.inbox.wake(self.channel.as_ref());
    }

    /// Closes the worker: waiting and later receives and internal calls fail with `Shutdown`.
    pub fn close(&self) {
        self.inbox
            .close(self.channel.as_ref(), "worker closed by its program");
    }

    /// Completes `call` with `output`. An output over the payload limit fails the call with
    /// `PayloadTooLarge` instead (the caller is answered either way) and returns that error.
    pub fn complete(&self, call: Call, output: &[u8]) -> Result<()> {
        let mut h = self.reply_header(&call, Kind::Complete);
        if output.len() <= INLINE_CAPACITY {
            return self.answer(&call, &Message::with_inline(h, output)?, None);
        }
        let fd = match payload::create(output, self.max_payload()) {
            Ok(fd) => fd,
            Err(e) => {
                self.fail(call, e.kind(), &e.to_string())?;
                return Err(e);
            }
        };
        h.payload_loc = PayloadLocation::Descriptor;
        h.payload_len = output.len() as u32;
        self.answer(&call, &Message::new(h), Some(fd))
    }

    /// Fails `call` with an error `kind` and a message for the caller.
    pub fn fail(&self, call: Call, kind: ErrorKind, message: &str) -> Result<()> {
        let h = self.reply_header(&call, Kind::Failed);
        self.answer(&call, &Message::failure(h, kind, message), None)
    }

    /// Sends an answer the way its call came: to the engine, or back along a direct lane. The
    /// output's descriptor goes to the engine first; on a lane, after the answer, and only
    /// when the caller still waits (the engine forwards it).
    fn answer(&self, call: &Call, msg: &Message, output: Option<OwnedFd>) -> Result<()> {
        let bytes = msg.to_bytes();
        let h = &msg.header;
        let send_output = |fd: &OwnedFd, lane: bool| {
            self.socket
                .send_payload(h.call_id(), PayloadSide::Output, h.payload_len, fd, lane)
        };
        if call.msg.header.flags & flags::LANE != 0 {
            let delivered = self.channel.answer_lane(h, &bytes)?;
            match output {
                Some(fd) if delivered => {
                    // The descriptor, then a message on this worker's own channel that makes
                    // the engine take it and pass it to the caller.
                    send_output(&fd, true)?;
                    let announce = payload::record(
                        h.call_id(),
                        PayloadSide::Output,
                        h.payload_len,
                        self.id,
                        true,
                    );
                    self.channel.send(&announce.to_bytes())
                }
                _ => Ok(()),
            }
        } else {
            if let Some(fd) = &output {
                send_output(fd, false)?;
            }
            self.channel.send(&bytes)
        }
    }

    fn reply_header(&self, call: &Call, kind: Kind) -> Header {
        let now = now_ns();
        self.answered_ns.store(now, Ordering::Relaxed);
        let mut h = Header::new(kind);
        h.set_call_id(call.id());
        h.function_id = call.msg.header.function_id;
        h.method_id = call.msg.header.method_id;
        h.worker_id = self.id;
        h.send_ts = now;
        h.processing_ns = now.saturating_sub(call.received_ns);
        h.dispatch_delay_ns = call
            .received_ns
            .saturating_sub(call.msg.header.send_ts)
            .min(u64::from(u32::MAX)) as u32;
        h
    }

    /// Calls function `name` with `input` through the engine and waits for its output.
    ///
    /// May be called from several threads at once for the same parent: replies are matched by
    /// sequence number. The internal call inherits the parent's deadline.
    pub fn invoke(&self, parent: ParentRef, name: &str, input: &[u8]) -> Result<Vec<u8>> {
        let function_id = self.table.id_of(name)?;
        payload::check_size(input.len(), self.max_payload())?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let id = CallId::new(self.id, seq);
        let mut h = Header::new(Kind::Invoke);
        h.set_call_id(id);
        h.function_id = function_id;
        h.worker_id = self.id;
        h.parent_call_id = parent.call_id.0;
        h.deadline_ns = parent.deadline_ns;
        h.send_ts = now_ns();
        let started = std::time::Instant::now();
        // A large input goes through the engine (only it passes descriptors on).
        let input_fd = if input.len() > INLINE_CAPACITY {
            h.payload_loc = PayloadLocation::Descriptor;
            h.payload_len = input.len() as u32;
            Some(payload::create(input, self.max_payload())?)
        } else if let Some(result) = self.lane_call(&h, input, name) {
            if result.is_ok() {
                self.note_reply_time(started.elapsed());
            }
            return result;
        } else {
            None
        };
        self.inbox.expect_reply(seq);
        let result = (|| {
            if let Some(fd) = &input_fd {
                self.socket
                    .send_payload(id, PayloadSide::Input, h.payload_len, fd, false)?;
            }
            self.channel.send(&encode_call(h, input))?;
            let wait = match crate::clock::remaining(parent.deadline_ns) {
                Some(left) => Wait::Timeout(left + DEADLINE_GRACE),
                None => Wait::Forever,
            };
            match self.inbox.wait(
                self.channel.as_ref(),
                &self.socket,
                Want::Reply(seq),
                wait,
                self.reply_spin(),
            )? {
                Some(reply) => self.read_reply(&reply),
                None => Err(Error::Timeout(format!(
                    "internal call to {name} got no answer by its deadline"
                ))),
            }
        })();
        if result.is_err() {
            self.inbox.abandon(seq, &self.socket);
        } else {
            self.note_reply_time(started.elapsed());
        }
        result
    }

    /// Runs the call of header `invoke` on a direct lane if the engine granted one for its
    /// function (see [`crate::lane`]); `None`: the call goes through the engine. The lane
    /// call's deadline is the parent's, capped by the callee function's own timeout, as the
    /// engine would set it.
    fn lane_call(&self, invoke: &Header, input: &[u8], name: &str) -> Option<Result<Vec<u8>>> {
        let mut build = |grant: &LaneGrant| {
            let mut h = *invoke;
            h.kind = Kind::Dispatch;
            h.flags |= flags::LANE;
            h.worker_id = grant.callee;
            let now = now_ns();
            if grant.timeout_ms > 0 {
                let own = now.saturating_add(u64::from(grant.timeout_ms) * 1_000_000);
                h.deadline_ns = match h.deadline_ns {
                    0 => own,
                    d => d.min(own),
                };
            }
            h.send_ts = now;
            encode_call(h, input)
        };
        let reply =
            match self
                .channel
                .lane_call(invoke.function_id, &mut build, self.reply_spin())?
            {
                Ok(reply) => reply,
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    // The words the engine uses for a call it expires.
                    return Some(Err(Error::Timeout(format!(
                        "call to {name} did not finish by its deadline"
                    ))));
                }
                Err(e) => return Some(Err(e)),
            };
        Some(
            Message::decode(&reply, self.max_payload())
                .map_err(|e| Error::RemoteProtocol(format!("direct call answer: {e}")))
                .and_then(|m| self.read_reply(&m)),
        )
    }

    /// Polling for a reply pays off when replies come fast: spin up to twice the usual reply
    /// time (at least the linger, at most 1 ms); for slow callees, only linger, then sleep.
    fn reply_spin(&self) -> Duration {
        let usual = Duration::from_nanos(self.reply_ns.load(Ordering::Relaxed));
        if usual * 2 <= MAX_REPLY_SPIN {
            (usual * 2).max(LINGER)
        } else {
            LINGER
        }
    }

    fn note_reply_time(&self, took: Duration) {
        ewma(
            &self.reply_ns,
            took.as_nanos().min(u128::from(u64::MAX)) as u64,
        );
    }

    /// An idle worker polls for its next call when calls come in quick succession (sleeping
    /// and being woken costs more than polling here: measured, an HTTP `Nop` went from 85 to
    /// 45 µs and its CPU per call dropped); when they come rarely, it lingers briefly and sleeps.
    fn call_linger(&self) -> Duration {
        let usual = Duration::from_nanos(self.gap_ns.load(Ordering::Relaxed));
        if !usual.is_zero() && usual * 2 <= MAX_CALL_LINGER {
            (usual * 2).max(LINGER)
        } else {
            LINGER
        }
    }

    fn read_reply(&self, reply: &Message) -> Result<Vec<u8>> {
        let h = &reply.header;
        match h.kind {
            Kind::Complete => match h.payload_loc {
                PayloadLocation::Descriptor => self
                    .socket
                    .take_payload(
                        h.call_id(),
                        PayloadSide::Output,
                        h.payload_len,
                        PAYLOAD_WAIT,
                    )
                    .and_then(|fd| payload::read(&fd, h.payload_len)),
                _ => Ok(reply.inline_payload().to_vec()),
            },
            _ => Err(Error::remote(
                h.status.unwrap_or(ErrorKind::Internal),
                reply.failure_text(),
            )),
        }
    }
}
