//! The engine against bad input: malformed configs, misbehaving workers, a second engine.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use gloam_core::channel::Channel;
use gloam_core::protocol::{Header, Hello, Kind, Message, MESSAGE_SIZE};
use gloam_core::ErrorKind;
use support::{gloam_bin, rust_fn, Stack};

fn run_up(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gloam.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(gloam_bin())
        .arg("up")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_configs_name_the_file_function_and_key() {
    let cases = [
        (
            "[functions.Foo]\nmin_workers = \"two\"\n",
            "functions.Foo.min_workers",
        ),
        ("[functions.Foo]\ncolour = 1\n", "functions.Foo.colour"),
        (
            "[functions.Foo]\nmin_workers = 3\nmax_workers = 2\n",
            "functions.Foo",
        ),
        (
            "[engine]\nlisten = \"nowhere\"\n[functions.Foo]\n",
            "engine.listen",
        ),
        ("[functions.\"Bad Name\"]\n", "Bad Name"),
        ("", "no functions"),
    ];
    for (config, expected) in cases {
        let (ok, stderr) = run_up(config);
        assert!(!ok, "config {config:?} was accepted");
        assert!(stderr.contains("gloam.toml"), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
    }
}

/// What the engine answered a hand-made `HELLO`: the message and its descriptors.
struct Welcome {
    msg: Message,
    fds: Vec<std::os::fd::OwnedFd>,
}

impl std::ops::Deref for Welcome {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.msg
    }
}

/// Does the worker's side of a handshake by hand.
fn handshake(stack: &Stack, function: &str) -> (UnixStream, Welcome) {
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
    let msg = Message::decode(&got.bytes, u64::MAX).unwrap();
    (sock, Welcome { msg, fds: got.fds })
}

/// After a `WELCOME`: reads the function table, opens the worker's side of its channel (ring
/// or pipes, whichever the engine chose, from the descriptors that came with it) and sends
/// `READY`.
fn worker_channel(sock: &mut UnixStream, welcome: &Welcome) -> Box<dyn Channel> {
    let mut fds = welcome.fds.iter().map(|fd| fd.try_clone().unwrap());
    let id = welcome.header.worker_id;
    let mut table = vec![0u8; welcome.header.payload_len as usize];
    sock.read_exact(&mut table).unwrap();
    let ring = welcome.header.flags & gloam_core::protocol::flags::RING != 0;
    let ch: Box<dyn Channel> = if ring {
        let watch = sock.try_clone().unwrap();
        Box::new(
            gloam_core::ring_channel::RingChannel::open_worker_side(
                id,
                1 << 24,
                &welcome.fds[0],
                &welcome.fds[1],
                &welcome.fds[2],
                std::sync::Arc::new(gloam_core::engine_socket::EngineSocket::new(
                    watch.into(),
                    id,
                )),
            )
            .unwrap(),
        )
    } else {
        let (rx, tx) = (fds.next().unwrap(), fds.next().unwrap());
        Box::new(gloam_core::channel::FifoChannel::worker_side(rx, tx).unwrap())
    };
    let mut ready = Header::new(Kind::Ready);
    ready.worker_id = id;
    sock.write_all(&Message::new(ready).to_bytes()).unwrap();
    ch
}

#[test]
fn bad_workers_are_refused_or_disconnected_and_the_engine_lives_on() {
    // `Hand` has no command: its workers are started by hand, so the engine asks no secret of
    // them (a launched function's workers must come from its own processes).
    let functions = rust_fn("Echo", "Echo", "") + "[functions.Hand]\n";
    let mut s = Stack::start("", &functions);

    // Unknown function: REJECT naming it.
    let (_sock, reply) = handshake(&s, "Nope");
    assert_eq!(reply.header.kind, Kind::Reject);
    assert_eq!(reply.header.status, Some(ErrorKind::FunctionNotFound));
    assert!(reply.failure_text().contains("Nope"));

    // Wrong protocol version: REJECT naming the field.
    let mut sock = UnixStream::connect(s.ipc_root().join("engine.sock")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut bytes = Hello {
        pid: 1,
        function: "Echo".into(),
        language: "test".into(),
        secret: String::new(),
    }
    .to_message()
    .unwrap()
    .to_bytes();
    bytes[0] = 9;
    sock.write_all(&bytes).unwrap();
    let mut buf = [0u8; MESSAGE_SIZE];
    sock.read_exact(&mut buf).unwrap();
    let reply = Message::decode(&buf, 0).unwrap();
    assert_eq!(reply.header.kind, Kind::Reject);
    assert!(
        reply.failure_text().contains("version"),
        "{}",
        reply.failure_text()
    );

    // A process that is not one of Echo's cannot connect as its worker.
    let (_sock, reply) = handshake(&s, "Echo");
    assert_eq!(reply.header.kind, Kind::Reject);
    assert!(
        reply
            .failure_text()
            .contains("none of the function's worker processes"),
        "{}",
        reply.failure_text()
    );

    // A worker that completes its handshake, then writes garbage: it alone is disconnected.
    let (mut sock, welcome) = handshake(&s, "Hand");
    assert_eq!(welcome.header.kind, Kind::Welcome);
    let ch = worker_channel(&mut sock, &welcome);
    s.wait_for("the Hand worker", Duration::from_secs(20), || {
        s.function_stat("Hand", "workers") == 1
    });
    ch.send(&[0xAB; MESSAGE_SIZE]).unwrap();
    s.wait_for(
        "the bad worker to be dropped",
        Duration::from_secs(20),
        || s.function_stat("Hand", "workers") == 0,
    );
    for i in 0..5 {
        let r = s.call("Echo", format!("still {i}").as_bytes());
        assert_eq!(r.text(), format!("still {i}"));
    }
    drop(ch);
    drop(sock);
    s.stop();
}

#[test]
fn a_second_engine_on_the_same_root_is_refused() {
    let mut s = Stack::start("", &rust_fn("Echo", "Echo", ""));
    let config = format!(
        "[engine]\nipc_root = {:?}\nlisten = \"127.0.0.1:0\"\n[functions.Echo]\n",
        s.ipc_root().display().to_string()
    );
    let (ok, stderr) = run_up(&config);
    assert!(!ok);
    assert!(stderr.contains("held by another live engine"), "{stderr}");
    assert_eq!(s.call("Echo", b"fine").text(), "fine");
    s.stop();
}
