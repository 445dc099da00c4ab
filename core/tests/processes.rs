//! Real processes over real pipes, sockets and memfds: a FIFO-transport echo peer, and the
//! worker loop (`serve_with`) in a child process against a small fake engine that speaks the
//! real protocol (pipe ends handed over with `WELCOME` by `SCM_RIGHTS`). The child processes
//! are this test binary re-executed with `GLOAM_TEST_CHILD`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gloam_core::channel::{Channel, FifoChannel, Pipes, Received, Wait};
use gloam_core::ipc_root::IpcPaths;
use gloam_core::payload::PayloadSide;
use gloam_core::protocol::{
    flags, CallId, Header, Hello, Kind, Message, PayloadLocation, DEFAULT_MAX_PAYLOAD, MESSAGE_SIZE,
};
use gloam_core::socket::{self, Blocking, MessageReader};
use gloam_core::table::FunctionTable;
use gloam_core::{payload, ErrorKind, HandlerError, Handlers, WorkerOptions};

const CHILD_ENV: &str = "GLOAM_TEST_CHILD";
const ROOT_ENV: &str = "GLOAM_TEST_ROOT";

/// Entry point of the child processes; a no-op in a normal test run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = std::env::var(ROOT_ENV).expect("root");
    let paths = IpcPaths::new(&root);
    match role.as_str() {
        "fifo-echo" => fifo_echo_child(&paths),
        "worker" => worker_child(&paths),
        other => panic!("unknown child role {other}"),
    }
    std::process::exit(0);
}

fn spawn_child(role: &str, root: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env(ROOT_ENV, root)
        .spawn()
        .unwrap()
}

fn wait_child(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn make_root() -> (tempfile::TempDir, IpcPaths) {
    let dir = tempfile::tempdir().unwrap();
    let paths = IpcPaths::new(dir.path());
    (dir, paths)
}

/// Sends `msg` on `sock` with `fds` attached.
fn send_with_fds(sock: &UnixStream, msg: &[u8], fds: &[RawFd]) {
    let mut sent = socket::send_with_fds(sock.as_fd(), msg, fds, false).unwrap();
    while sent < msg.len() {
        sent += socket::send_with_fds(sock.as_fd(), &msg[sent..], &[], false).unwrap();
    }
}

/// Both sides of a fresh pair of pipes, in this process.
fn channels() -> (FifoChannel, FifoChannel) {
    let p = Pipes::create().unwrap();
    let engine = FifoChannel::engine_side(p.engine_rx, p.engine_tx).unwrap();
    let worker = FifoChannel::worker_side(p.worker_rx, p.worker_tx).unwrap();
    (engine, worker)
}

fn fifo_echo_child(paths: &IpcPaths) {
    // The pipe ends come over the socket, as a worker gets them with WELCOME.
    let sock = UnixStream::connect(paths.socket()).unwrap();
    let got = MessageReader::default()
        .read(sock.as_fd(), Blocking::Yes)
        .unwrap()
        .unwrap();
    let mut fds = got.fds.into_iter();
    let ch = FifoChannel::worker_side(fds.next().unwrap(), fds.next().unwrap()).unwrap();
    let mut buf = [0u8; MESSAGE_SIZE];
    loop {
        assert_eq!(ch.recv(&mut buf, Wait::Forever).unwrap(), Received::Message);
        let mut m = Message::decode(&buf, DEFAULT_MAX_PAYLOAD).unwrap();
        if m.header.kind == Kind::Retire {
            return;
        }
        m.header.kind = Kind::Complete;
        ch.send(&m.to_bytes()).unwrap();
    }
}

#[test]
fn two_processes_exchange_messages_over_pipes_handed_over_by_descriptor() {
    let (dir, paths) = make_root();
    let listener = UnixListener::bind(paths.socket()).unwrap();
    let child = spawn_child("fifo-echo", dir.path());
    let (sock, _) = listener.accept().unwrap();
    let pipes = Pipes::create().unwrap();
    send_with_fds(&sock, &[0u8; MESSAGE_SIZE], &pipes.worker_fds());
    let engine = FifoChannel::engine_side(pipes.engine_rx, pipes.engine_tx).unwrap();
    // Only the child holds the worker's ends now: nothing in the root names them.
    drop((pipes.worker_rx, pipes.worker_tx));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "engine.sock"
    );
    let mut buf = [0u8; MESSAGE_SIZE];
    for i in 0..2000u32 {
        let mut h = Header::new(Kind::Dispatch);
        h.sequence = i;
        let payload: Vec<u8> = (0..(i % 961)).map(|j| (i + j) as u8).collect();
        engine
            .send(&Message::with_inline(h, &payload).unwrap().to_bytes())
            .unwrap();
        let got = engine
            .recv(&mut buf, Wait::Timeout(Duration::from_secs(20)))
            .unwrap();
        assert_eq!(got, Received::Message);
        let m = Message::decode(&buf, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(m.header.kind, Kind::Complete);
        assert_eq!(m.header.sequence, i);
        assert_eq!(m.inline_payload(), payload.as_slice());
    }
    engine
        .send(&Message::new(Header::new(Kind::Retire)).to_bytes())
        .unwrap();
    assert!(wait_child(child, Duration::from_secs(20)).success());
    // The child is gone with its ends: the engine's side sees end-of-file.
    let mut buf = [0u8; MESSAGE_SIZE];
    let err = engine.recv(&mut buf, Wait::Forever).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shutdown);
}

#[test]
fn blocked_recv_is_woken_and_closed_from_another_thread() {
    let (_engine, ch) = channels();
    let ch = std::sync::Arc::new(ch);
    let (tx, rx) = mpsc::channel();
    let reader = {
        let ch = ch.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; MESSAGE_SIZE];
            tx.send(ch.recv(&mut buf, Wait::Forever).map_err(|e| e.kind()))
                .unwrap();
            tx.send(ch.recv(&mut buf, Wait::Forever).map_err(|e| e.kind()))
                .unwrap();
        })
    };
    ch.wake();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Ok(Received::Woken)
    );
    ch.close();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Err(ErrorKind::Shutdown)
    );
    reader.join().unwrap();
    let mut buf = [0u8; MESSAGE_SIZE];
    assert_eq!(
        ch.recv(&mut buf, Wait::NonBlocking).unwrap_err().kind(),
        ErrorKind::Shutdown
    );
}

#[test]
fn recv_timeout_and_nonblocking_return_when_empty() {
    let (_engine, ch) = channels();
    let mut buf = [0u8; MESSAGE_SIZE];
    assert_eq!(
        ch.recv(&mut buf, Wait::NonBlocking).unwrap(),
        Received::TimedOut
    );
    assert_eq!(
        ch.recv(&mut buf, Wait::Timeout(Duration::from_millis(20)))
            .unwrap(),
        Received::TimedOut
    );
}

// ---------------------------------------------------------------------------------------------
// The worker loop in a child process against a fake engine.

const ECHO: u16 = 1;
const OTHER: u16 = 2;

fn worker_child(paths: &IpcPaths) {
    let opts = WorkerOptions {
        ipc_root: paths.root().to_path_buf(),
        ..WorkerOptions::new("Echo")
    };
    let handlers = Handlers::new().handler("Echo", |ctx, input| {
        match input {
            b"fail" => return Err(HandlerError::new("you asked for it")),
            b"panic" => panic!("boom"),
            b"big" => return Ok(vec![7u8; 2 << 20]),
            b"fanout" => {
                let outs: Vec<_> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..3)
                        .map(|i| s.spawn(move || ctx.invoke("Other", format!("q{i}").as_bytes())))
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).collect()
                });
                let mut out = Vec::new();
                for o in outs {
                    out.extend(o?);
                    out.push(b';');
                }
                return Ok(out);
            }
            b"missing" => return Ok(ctx.invoke("Nope", b"x")?),
            _ => {}
        }
        Ok(input.to_vec())
    });
    gloam_core::worker::serve_with(&opts, 1, handlers).unwrap();
}

struct FakeEngine {
    ch: FifoChannel,
    sock: UnixStream,
    worker_id: u32,
}

impl FakeEngine {
    fn accept(listener: &UnixListener, worker_id: u32) -> FakeEngine {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; MESSAGE_SIZE];
        sock.read_exact(&mut buf).unwrap();
        let hello = Message::decode(&buf, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(hello.header.kind, Kind::Hello);
        let h = Hello::from_message(&hello).unwrap();
        assert_eq!((h.function.as_str(), h.language.as_str()), ("Echo", "rust"));
        let pipes = Pipes::create().unwrap();
        let table = FunctionTable::new(
            vec![(ECHO, "Echo".into()), (OTHER, "Other".into())],
            4 << 20,
        )
        .encode();
        let mut w = Header::new(Kind::Welcome);
        w.worker_id = worker_id;
        w.function_id = ECHO;
        w.payload_loc = PayloadLocation::Trailing;
        w.payload_len = table.len() as u32;
        w.flags = flags::FIFO;
        send_with_fds(&sock, &Message::new(w).to_bytes(), &pipes.worker_fds());
        sock.write_all(&table).unwrap();
        let ch = FifoChannel::engine_side(pipes.engine_rx, pipes.engine_tx).unwrap();
        drop((pipes.worker_rx, pipes.worker_tx));
        sock.read_exact(&mut buf).unwrap();
        let ready = Message::decode(&buf, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(ready.header.kind, Kind::Ready);
        assert_eq!(ready.header.worker_id, worker_id);
        FakeEngine {
            ch,
            sock,
            worker_id,
        }
    }

    /// The payload record the worker sent on its socket, with its descriptor.
    fn payload(&self) -> payload::Record {
        let got = gloam_core::socket::MessageReader::default()
            .read(self.sock.as_fd(), gloam_core::socket::Blocking::Yes)
            .unwrap()
            .unwrap();
        payload::read_record(&got.bytes, got.fds).expect("a PAYLOAD record")
    }

    fn recv(&self) -> Message {
        let mut buf = [0u8; MESSAGE_SIZE];
        let got = self
            .ch
            .recv(&mut buf, Wait::Timeout(Duration::from_secs(20)))
            .unwrap();
        assert_eq!(got, Received::Message, "worker did not answer in time");
        Message::decode(&buf, DEFAULT_MAX_PAYLOAD).unwrap()
    }

    fn dispatch(&self, seq: u32, input: &[u8]) -> Message {
        let id = CallId::new(0, seq);
        let mut h = Header::new(Kind::Dispatch);
        h.set_call_id(id);
        h.function_id = ECHO;
        let m = if input.len() > 960 {
            let len = input.len() as u32;
            let fd = payload::create(input, 1 << 30).unwrap();
            let record = payload::record(id, PayloadSide::Input, len, self.worker_id, false);
            let sent = gloam_core::socket::send_with_fds(
                self.sock.as_fd(),
                &record.to_bytes(),
                &[fd.as_raw_fd()],
                false,
            )
            .unwrap();
            assert_eq!(sent, MESSAGE_SIZE);
            h.payload_loc = PayloadLocation::Descriptor;
            h.payload_len = len;
            Message::new(h)
        } else {
            Message::with_inline(h, input).unwrap()
        };
        self.ch.send(&m.to_bytes()).unwrap();
        m
    }
}

#[test]
fn worker_loop_against_a_fake_engine() {
    let (dir, paths) = make_root();
    let listener = UnixListener::bind(paths.socket()).unwrap();
    let child = spawn_child("worker", dir.path());
    let engine = FakeEngine::accept(&listener, 3);

    // Inline echo.
    engine.dispatch(1, b"hello");
    let r = engine.recv();
    assert_eq!(
        (r.header.kind, r.header.sequence, r.inline_payload()),
        (Kind::Complete, 1, &b"hello"[..])
    );
    assert_eq!(r.header.worker_id, 3);

    // 1 MiB input by descriptor, echoed by descriptor byte-exact.
    let big: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect();
    engine.dispatch(2, &big);
    let r = engine.recv();
    assert_eq!(r.header.payload_loc, PayloadLocation::Descriptor);
    let out = engine.payload();
    assert_eq!(
        (out.call, out.side, out.len),
        (
            r.header.call_id(),
            PayloadSide::Output,
            r.header.payload_len
        )
    );
    assert!(payload::map(&out.fd, out.len).unwrap().bytes() == big.as_slice());

    // Handler error and panic fail the call; the worker lives on.
    engine.dispatch(3, b"fail");
    let r = engine.recv();
    assert_eq!(
        (r.header.kind, r.header.status),
        (Kind::Failed, Some(ErrorKind::HandlerFailed))
    );
    assert_eq!(r.failure_text(), "you asked for it");
    engine.dispatch(4, b"panic");
    let r = engine.recv();
    assert_eq!(r.header.kind, Kind::Failed);
    assert!(r.failure_text().contains("boom"), "{}", r.failure_text());

    // Output over the worker's 4 MiB limit would be refused; 2 MiB is fine.
    engine.dispatch(5, b"big");
    let r = engine.recv();
    assert_eq!(
        (r.header.kind, r.header.payload_len),
        (Kind::Complete, 2 << 20)
    );
    assert_eq!(engine.payload().len, 2 << 20);

    // Three internal calls in flight at once, answered in reverse order.
    engine.dispatch(6, b"fanout");
    let invokes: Vec<Message> = (0..3).map(|_| engine.recv()).collect();
    for inv in &invokes {
        assert_eq!(inv.header.kind, Kind::Invoke);
        assert_eq!(inv.header.function_id, OTHER);
        assert_eq!(inv.header.caller, 3);
        assert_eq!(inv.header.parent_call_id, CallId::new(0, 6).0);
    }
    for inv in invokes.iter().rev() {
        let mut h = inv.header;
        h.kind = Kind::Complete;
        let reply = [b"re:".as_slice(), inv.inline_payload()].concat();
        engine
            .ch
            .send(&Message::with_inline(h, &reply).unwrap().to_bytes())
            .unwrap();
    }
    let r = engine.recv();
    assert_eq!(r.header.kind, Kind::Complete);
    assert_eq!(r.inline_payload(), b"re:q0;re:q1;re:q2;");

    // An unknown function fails locally, without a round trip, naming the function.
    engine.dispatch(7, b"missing");
    let r = engine.recv();
    assert_eq!(r.header.kind, Kind::Failed);
    assert!(r.failure_text().contains("Nope"), "{}", r.failure_text());

    // Retire: the loop ends and the process exits cleanly.
    engine
        .ch
        .send(&Message::new(Header::new(Kind::Retire)).to_bytes())
        .unwrap();
    assert!(wait_child(child, Duration::from_secs(20)).success());
}

#[test]
fn a_rejected_handshake_reports_the_engine_reason() {
    let (_dir, paths) = make_root();
    let listener = UnixListener::bind(paths.socket()).unwrap();
    let engine = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; MESSAGE_SIZE];
        sock.read_exact(&mut buf).unwrap();
        let reject = Message::failure(
            Header::new(Kind::Reject),
            ErrorKind::FunctionNotFound,
            "function \"Echo\" is not in this engine's config",
        );
        sock.write_all(&reject.to_bytes()).unwrap();
    });
    let opts = WorkerOptions {
        ipc_root: paths.root().to_path_buf(),
        ..WorkerOptions::new("Echo")
    };
    let err = gloam_core::Worker::connect(&opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FunctionNotFound);
    assert!(err.to_string().contains("Echo"), "{err}");
    engine.join().unwrap();
}

/// A `WELCOME` whose descriptors do not match its transport, or are not pipes, is refused by
/// the worker with an error that names what is wrong; so is one that names no transport.
#[test]
fn a_welcome_with_the_wrong_descriptors_is_refused_naming_them() {
    let (_dir, paths) = make_root();
    let listener = UnixListener::bind(paths.socket()).unwrap();
    let file: OwnedFd = tempfile::tempfile().unwrap().into();
    let cases: Vec<(u16, Vec<OwnedFd>, &str)> = {
        let one = Pipes::create().unwrap();
        let swapped = Pipes::create().unwrap();
        let with_file = Pipes::create().unwrap();
        vec![
            (
                flags::FIFO,
                vec![one.worker_rx],
                "FIFO transport must carry 2 descriptors, it carried 1",
            ),
            (0, vec![], "WELCOME must name one transport"),
            (
                flags::FIFO | flags::RING,
                vec![],
                "WELCOME must name one transport",
            ),
            (
                flags::FIFO,
                vec![swapped.worker_tx, swapped.worker_rx],
                "engine → worker pipe: its descriptor is the wrong end, not open for reading",
            ),
            (
                flags::FIFO,
                vec![with_file.worker_rx, file],
                "worker → engine pipe: its descriptor is a regular file, not a pipe",
            ),
        ]
    };
    let expected: Vec<&str> = cases.iter().map(|c| c.2).collect();
    let engine = std::thread::spawn(move || {
        for (bits, fds, _) in cases {
            let (mut sock, _) = listener.accept().unwrap();
            let mut buf = [0u8; MESSAGE_SIZE];
            sock.read_exact(&mut buf).unwrap();
            let table = FunctionTable::new(vec![(ECHO, "Echo".into())], 4 << 20).encode();
            let mut w = Header::new(Kind::Welcome);
            w.worker_id = 1;
            w.function_id = ECHO;
            w.payload_loc = PayloadLocation::Trailing;
            w.payload_len = table.len() as u32;
            w.flags = bits;
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            send_with_fds(&sock, &Message::new(w).to_bytes(), &raw);
            sock.write_all(&table).unwrap();
            // The worker gives up without READY: its socket closes.
            assert_eq!(sock.read(&mut buf).unwrap(), 0);
        }
    });
    let opts = WorkerOptions {
        ipc_root: paths.root().to_path_buf(),
        ..WorkerOptions::new("Echo")
    };
    for want in expected {
        let err = gloam_core::Worker::connect(&opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ProtocolError, "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
    engine.join().unwrap();
}
