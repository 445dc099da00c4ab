//! A worker played by hand: the handshake done step by step, then raw access to its channel
//! (and, with the ring transport, to its ring region itself), so that a test can act as a
//! well-behaved worker, a slow one or a rogue one.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use gloam_core::channel::{Channel, Received, Wait};
use gloam_core::ipc_root::IpcPaths;
use gloam_core::lane::LEASE_FILE_BYTES;
use gloam_core::protocol::{flags, CallId, Header, Hello, Kind, Message, MESSAGE_SIZE};
use gloam_core::ring::{self, Bell, BellRegion, BELL_FILE_BYTES, RING_FILE_BYTES};
use gloam_core::shared_map::SharedMap;
use gloam_core::table::FunctionTable;

use super::Stack;

/// The size of one ring's counters-and-slots block (tail line, head line, slots).
const LINE: usize = 128;

/// A connected, ready worker of one function, played by the test.
pub struct HandWorker {
    /// Its handshake socket (kept open: closing it tells the engine the worker exited).
    pub sock: UnixStream,
    /// The worker id the engine assigned (slot | generation << 16).
    pub id: u32,
    /// Its channel to the engine (ring or pipes, whichever the engine chose).
    pub ch: Box<dyn Channel>,
    /// The engine's function table, from `WELCOME`.
    pub table: FunctionTable,
    /// The IPC paths of the stack.
    pub paths: IpcPaths,
    /// With the ring transport: the ring region, its own doorbell region and the engine's
    /// doorbell region.
    region: Option<(OwnedFd, OwnedFd, OwnedFd)>,
    /// Its engine socket as the core's channel holds it (payload descriptors travel on it).
    pub socket: std::sync::Arc<gloam_core::engine_socket::EngineSocket>,
    /// With the FIFO transport: a duplicate of each pipe end it was given (engine → worker,
    /// worker → engine), for looking at the pipes from outside the channel.
    pipes: Option<(OwnedFd, OwnedFd)>,
    /// For a blind worker: the other end of the socket its channel watches.
    _blind: Option<UnixStream>,
    next_seq: u32,
}

impl HandWorker {
    /// Connects to the engine of `stack` as a worker of `function`, completes the handshake
    /// (`HELLO`, `WELCOME` with the table and, for rings, the region descriptors, `READY`).
    /// Panics if the engine refuses it.
    pub fn connect(stack: &Stack, function: &str) -> HandWorker {
        HandWorker::connect_as(stack, function, false)
    }

    /// [`connect`](Self::connect), but its channel never reads the engine socket: the
    /// `LEASE` messages the engine sends are for the test to read ([`HandWorker::read_lease`]),
    /// and the channel serves no lane call.
    pub fn connect_blind(stack: &Stack, function: &str) -> HandWorker {
        HandWorker::connect_as(stack, function, true)
    }

    fn connect_as(stack: &Stack, function: &str, blind: bool) -> HandWorker {
        let mut sock = UnixStream::connect(stack.ipc_root().join("engine.sock")).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let hello = Hello {
            pid: std::process::id(),
            function: function.into(),
            language: "test".into(),
            secret: String::new(),
        };
        sock.write_all(&hello.to_message().unwrap().to_bytes())
            .unwrap();
        let got = gloam_core::socket::MessageReader::default()
            .read(
                std::os::fd::AsFd::as_fd(&sock),
                gloam_core::socket::Blocking::Yes,
            )
            .unwrap()
            .unwrap();
        let welcome = Message::decode(&got.bytes, u64::MAX).unwrap();
        assert_eq!(
            welcome.header.kind,
            Kind::Welcome,
            "refused: {}",
            welcome.failure_text()
        );
        let id = welcome.header.worker_id;
        let mut table = vec![0u8; welcome.header.payload_len as usize];
        sock.read_exact(&mut table).unwrap();
        let table = FunctionTable::decode(&table).unwrap();
        let paths = IpcPaths::new(stack.ipc_root());
        let mut fds = got.fds.into_iter();
        let mut blind_end = None;
        let socket = std::sync::Arc::new(gloam_core::engine_socket::EngineSocket::new(
            sock.try_clone().unwrap().into(),
            id,
        ));
        let mut pipes = None;
        let (ch, region): (Box<dyn Channel>, _) = if welcome.header.flags & flags::RING != 0 {
            let ring = fds.next().expect("ring region descriptor");
            let bell = fds.next().expect("own doorbell descriptor");
            let engine_bell = fds.next().expect("engine doorbell descriptor");
            let watch = if blind {
                let (ours, theirs) = UnixStream::pair().unwrap();
                blind_end = Some(ours);
                std::sync::Arc::new(gloam_core::engine_socket::EngineSocket::new(
                    theirs.into(),
                    id,
                ))
            } else {
                socket.clone()
            };
            let ch = gloam_core::ring_channel::RingChannel::open_worker_side(
                id,
                1 << 24,
                &ring,
                &bell,
                &engine_bell,
                watch,
            )
            .unwrap();
            (Box::new(ch), Some((ring, bell, engine_bell)))
        } else {
            assert_ne!(
                welcome.header.flags & flags::FIFO,
                0,
                "WELCOME names no transport"
            );
            let rx = fds.next().expect("engine → worker pipe descriptor");
            let tx = fds.next().expect("worker → engine pipe descriptor");
            pipes = Some((rx.try_clone().unwrap(), tx.try_clone().unwrap()));
            let ch = gloam_core::channel::FifoChannel::worker_side(rx, tx).unwrap();
            (Box::new(ch), None)
        };
        let mut ready = Header::new(Kind::Ready);
        ready.worker_id = id;
        sock.write_all(&Message::new(ready).to_bytes()).unwrap();
        // The engine takes READY on the socket and the worker's messages from its channel:
        // an INVOKE sent before it saw READY is a protocol error. Every worker of `function`
        // (all played by hand, all past READY) counts as ready once it did.
        stack.wait_for(
            "the hand worker to be ready",
            Duration::from_secs(20),
            || {
                let st = stack.status();
                let listed = st["workers"].as_array().map_or(0, |ws| {
                    ws.iter().filter(|w| w["function"] == function).count()
                });
                let ready = st["functions"]
                    .as_array()
                    .and_then(|fs| fs.iter().find(|f| f["name"] == function))
                    .and_then(|f| f["workers"].as_u64());
                ready == Some(listed as u64)
                    && st["workers"]
                        .as_array()
                        .is_some_and(|ws| ws.iter().any(|w| w["id"] == id))
            },
        );
        HandWorker {
            sock,
            id,
            ch,
            table,
            paths,
            region,
            socket,
            pipes,
            _blind: blind_end,
            next_seq: 1,
        }
    }

    /// Whether the engine gave this worker a ring region (else it uses pipes).
    pub fn on_ring(&self) -> bool {
        self.region.is_some()
    }

    /// The descriptors of the worker's channel as it received them: its ring region and
    /// doorbell regions, or its two pipe ends.
    pub fn channel_fds(&self) -> Vec<&OwnedFd> {
        match (&self.region, &self.pipes) {
            (Some((a, b, c)), _) => vec![a, b, c],
            (None, Some((rx, tx))) => vec![rx, tx],
            (None, None) => Vec::new(),
        }
    }

    /// FIFO transport: bytes waiting in the engine → worker pipe, and the pipe's capacity.
    pub fn pipe_fill(&self) -> (usize, usize) {
        use std::os::fd::AsRawFd;
        let (rx, _) = self.pipes.as_ref().expect("the FIFO transport");
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, which points at `queued`.
        let rc = unsafe { libc::ioctl(rx.as_raw_fd(), libc::FIONREAD, &mut queued) };
        assert_eq!(rc, 0, "FIONREAD on the engine → worker pipe");
        // SAFETY: F_GETPIPE_SZ takes no argument and only returns a size.
        let capacity = unsafe { libc::fcntl(rx.as_raw_fd(), libc::F_GETPIPE_SZ) };
        assert!(capacity > 0, "F_GETPIPE_SZ on the engine → worker pipe");
        (queued as usize, capacity as usize)
    }

    /// The id of function `name` in the engine's table.
    pub fn function_id(&self, name: &str) -> u16 {
        self.table.id_of(name).unwrap()
    }

    /// Receives the next message, waiting at most `limit`; `None` when nothing came.
    pub fn recv(&self, limit: Duration) -> Option<Message> {
        let mut buf = [0u8; MESSAGE_SIZE];
        match self.ch.recv(&mut buf, Wait::Timeout(limit)) {
            Ok(Received::Message) => Some(Message::decode(&buf, u64::MAX).unwrap()),
            Ok(_) => None,
            Err(e) => panic!("worker {}: receive failed: {e}", self.id),
        }
    }

    /// Receives the next message, which must be a `DISPATCH` within `limit`.
    pub fn expect_dispatch(&self, limit: Duration) -> Message {
        let m = self
            .recv(limit)
            .unwrap_or_else(|| panic!("worker {}: no DISPATCH within {limit:?}", self.id));
        assert_eq!(m.header.kind, Kind::Dispatch, "{m:?}");
        m
    }

    /// Sends one encoded message; `false` when the engine no longer takes them.
    pub fn send_bytes(&self, bytes: &[u8; MESSAGE_SIZE]) -> bool {
        self.ch.send(bytes).is_ok()
    }

    /// Sends one message; panics if the channel is closed.
    pub fn send(&self, msg: &Message) {
        self.ch.send(&msg.to_bytes()).unwrap();
    }

    /// An `INVOKE` of `function` with inline `input`, under this worker's next call id
    /// (returned with it).
    pub fn invoke_msg(&mut self, function: &str, input: &[u8]) -> (CallId, Message) {
        let id = CallId::new(self.id, self.next_seq);
        self.next_seq += 1;
        let mut h = Header::new(Kind::Invoke);
        h.set_call_id(id);
        h.function_id = self.function_id(function);
        h.worker_id = self.id;
        (id, Message::with_inline(h, input).unwrap())
    }

    /// A `COMPLETE` answer to `call` with inline `output`.
    pub fn complete_msg(&self, call: CallId, output: &[u8]) -> Message {
        let mut h = Header::new(Kind::Complete);
        h.set_call_id(call);
        h.worker_id = self.id;
        Message::with_inline(h, output).unwrap()
    }

    /// Answers `call` with `output` passed by descriptor, as the core does past the inline
    /// area: the sealed memfd on the socket, then the `COMPLETE` naming it.
    pub fn complete_by_descriptor(&self, call: CallId, output: &[u8]) {
        let fd = gloam_core::payload::create(output, u64::MAX).unwrap();
        let len = output.len() as u32;
        self.socket
            .send_payload(
                call,
                gloam_core::payload::PayloadSide::Output,
                len,
                &fd,
                false,
            )
            .unwrap();
        let mut h = Header::new(Kind::Complete);
        h.set_call_id(call);
        h.worker_id = self.id;
        h.payload_loc = gloam_core::protocol::PayloadLocation::Descriptor;
        h.payload_len = len;
        self.send(&Message::new(h));
    }

    /// Raw access to the ring region (ring transport only).
    pub fn region(&self) -> RawRegion {
        let (ring, _, _) = self.region.as_ref().expect("the ring transport");
        self.map_raw(ring, RING_FILE_BYTES)
    }

    /// Raw access to shared memory received as `fd`, of `len` bytes (a lease region, a
    /// doorbell region), with this worker's handle on the engine's doorbell.
    pub fn map_raw(&self, fd: &OwnedFd, len: usize) -> RawRegion {
        let (_, _, engine_bell) = self.region.as_ref().expect("the ring transport");
        RawRegion {
            map: std::sync::Arc::new(SharedMap::from_fd(fd, len, "test region").unwrap()),
            engine_bell: BellRegion::from_fd(engine_bell, "engine doorbell")
                .unwrap()
                .bell(),
        }
    }

    /// Bytes the engine sent on the socket that this worker has not read (`FIONREAD`).
    pub fn unread_on_socket(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, which points at `n`.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0, "FIONREAD on the worker's socket");
        usize::try_from(n).unwrap_or(0)
    }

    /// Reads the next `LEASE` message the engine sent on the socket (it does so before it
    /// publishes a lease): the message and every descriptor that came with it. Panics after
    /// 20 s.
    pub fn read_lease(&self) -> LeaseGot {
        let got = gloam_core::socket::MessageReader::default()
            .read(
                std::os::fd::AsFd::as_fd(&self.sock),
                gloam_core::socket::Blocking::Yes,
            )
            .unwrap()
            .expect("a LEASE message");
        let msg = Message::decode(&got.bytes, 0).unwrap();
        assert_eq!(msg.header.kind, Kind::Lease, "{msg:?}");
        LeaseGot { msg, fds: got.fds }
    }
}

/// A `LEASE` message as a worker received it (see `gloam_core::lease`).
pub struct LeaseGot {
    /// The message.
    pub msg: Message,
    /// Its descriptors: the lease region, then (for the holder) the callee's doorbell region.
    pub fds: Vec<OwnedFd>,
}

impl LeaseGot {
    /// The lease id.
    pub fn lease(&self) -> u32 {
        self.msg.header.sequence
    }

    /// The holder's lane.
    pub fn lane(&self) -> usize {
        let p = self.msg.inline_payload();
        u32::from_le_bytes([p[4], p[5], p[6], p[7]]) as usize
    }

    /// The size of each descriptor's file.
    pub fn sizes(&self) -> Vec<usize> {
        self.fds
            .iter()
            .map(|fd| {
                let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(fd)).unwrap();
                st.st_size as usize
            })
            .collect()
    }
}

/// The sizes of the shared memory a worker gets: a lease region, a doorbell region.
pub const LEASE_AND_BELL: [usize; 2] = [LEASE_FILE_BYTES, BELL_FILE_BYTES];

/// One direction of a ring region, by its offset in the region.
#[derive(Debug, Clone, Copy)]
pub enum Ring {
    /// Engine → worker.
    ToWorker,
    /// Worker → engine.
    ToEngine,
}

impl Ring {
    fn offset(self) -> usize {
        match self {
            Ring::ToWorker => ring::TO_WORKER,
            Ring::ToEngine => ring::TO_ENGINE,
        }
    }
}

/// Shared memory mapped a second time, bypassing the worker's channel: a worker's ring region
/// (layout in `gloam_core::ring`), a lease region (`gloam_core::lane`) or a doorbell region —
/// what a rogue worker can do to the memory it was given.
pub struct RawRegion {
    map: std::sync::Arc<SharedMap>,
    engine_bell: Bell,
}

impl RawRegion {
    /// The ring's producer counter.
    pub fn tail(&self, ring: Ring) -> u32 {
        self.map
            .word(ring.offset())
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The ring's consumer counter.
    pub fn head(&self, ring: Ring) -> u32 {
        self.map
            .word(ring.offset() + LINE)
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Overwrites the ring's producer counter.
    pub fn set_tail(&self, ring: Ring, value: u32) {
        self.map
            .word(ring.offset())
            .store(value, std::sync::atomic::Ordering::Release);
    }

    /// Overwrites the ring's consumer counter.
    pub fn set_head(&self, ring: Ring, value: u32) {
        self.map
            .word(ring.offset() + LINE)
            .store(value, std::sync::atomic::Ordering::Release);
    }

    /// Reads slot `slot` (0..64) of the ring.
    pub fn read_slot(&self, ring: Ring, slot: u32) -> [u8; MESSAGE_SIZE] {
        let at = ring.offset() + 2 * LINE + (slot % ring::SLOTS) as usize * MESSAGE_SIZE;
        let mut out = [0u8; MESSAGE_SIZE];
        self.map.load(at, &mut out, MESSAGE_SIZE);
        out
    }

    /// The 32-bit word at `offset` of the region.
    pub fn word(&self, offset: usize) -> u32 {
        self.map
            .word(offset)
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Overwrites the 32-bit word at `offset` of the region.
    pub fn set_word(&self, offset: usize, value: u32) {
        self.map
            .word(offset)
            .store(value, std::sync::atomic::Ordering::Release);
    }

    /// Writes `bytes` into slot `slot` (0..64) of the ring.
    pub fn write_slot(&self, ring: Ring, slot: u32, bytes: &[u8; MESSAGE_SIZE]) {
        let at = ring.offset() + 2 * LINE + (slot % ring::SLOTS) as usize * MESSAGE_SIZE;
        self.map.store(at, bytes, MESSAGE_SIZE);
    }

    /// Writes a message-sized block at `offset` of the region.
    pub fn store(&self, offset: usize, bytes: &[u8; MESSAGE_SIZE]) {
        self.map.store(offset, bytes, MESSAGE_SIZE);
    }

    /// Rings the doorbell at `offset` of the region (0 in a doorbell region, as a holder
    /// rings its callee after a lane call; a lease region's lane doorbell).
    pub fn ring_bell(&self, offset: usize) {
        Bell::new(&self.map, offset).notify();
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Rings the engine's doorbell (as a worker does after publishing).
    pub fn ring_engine(&self) {
        self.engine_bell.notify();
    }
}

/// A small deterministic generator (xorshift64*): the garbage of a rogue worker, the same
/// at every run so a failure can be replayed.
pub struct Garbage(u64);

impl Garbage {
    /// A generator from `seed` (non-zero).
    pub fn new(seed: u64) -> Garbage {
        Garbage(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A message-sized block of random bytes that is certainly not a valid message (its
    /// version byte is never the protocol's).
    pub fn record(&mut self) -> [u8; MESSAGE_SIZE] {
        let mut out = [0u8; MESSAGE_SIZE];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        if out[0] == gloam_core::protocol::PROTOCOL_VERSION {
            out[0] ^= 0x80;
        }
        out
    }
}
