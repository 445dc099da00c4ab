//! The shared-memory ring transport: wrap-around, back-pressure, cross-process stress with
//! checksums, doorbell sleep/wake, and a dead engine noticed by a sleeping worker.

use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gloam_core::channel::{Channel, Received, Wait};
use gloam_core::protocol::{offset, INLINE_CAPACITY, MESSAGE_SIZE};
use gloam_core::ring::{self, Bell, BellRegion, RingFile, SLOTS};
use gloam_core::ring_channel::RingChannel;
use gloam_core::ErrorKind;

const CHILD_ENV: &str = "GLOAM_RING_TEST_CHILD";

fn message(seq: u64) -> [u8; MESSAGE_SIZE] {
    let mut m = [0u8; MESSAGE_SIZE];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in m[8..MESSAGE_SIZE - 8].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    // Rings copy what the header says counts: make it all of it (inline, 960 bytes).
    m[offset::PAYLOAD_LEN..offset::PAYLOAD_LEN + 4]
        .copy_from_slice(&(INLINE_CAPACITY as u32).to_le_bytes());
    m[offset::PAYLOAD_LOC] = 0;
    let sum = checksum(&m[..MESSAGE_SIZE - 8]);
    m[MESSAGE_SIZE - 8..].copy_from_slice(&sum.to_le_bytes());
    m
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn check(m: &[u8; MESSAGE_SIZE], expected_seq: u64) {
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(seq, expected_seq, "lost, duplicated or reordered message");
    let sum = u64::from_le_bytes(m[MESSAGE_SIZE - 8..].try_into().unwrap());
    assert_eq!(
        sum,
        checksum(&m[..MESSAGE_SIZE - 8]),
        "corrupted message {seq}"
    );
}

#[test]
fn wraps_around_u32_counters_and_applies_back_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let file = RingFile::create(&dir.path().join("w.ring")).unwrap();
    file.preset_counters(u32::MAX - 100);
    // The engine produces into the worker's ring; the worker (another mapping) consumes.
    let worker = RingFile::open(&dir.path().join("w.ring")).unwrap();
    let (mut tx, _, _) = file.into_engine_side();
    let (_, mut rx, _) = worker.into_worker_side();
    let mut out = [0u8; MESSAGE_SIZE];
    let mut sent = 0u64;
    let mut got = 0u64;
    for _round in 0..10 {
        while tx.try_push(&message(sent)) {
            sent += 1;
        }
        assert_eq!(sent - got, u64::from(SLOTS), "full at exactly 64 messages");
        // Drain half, refill: exercises the index wrap inside the ring.
        for _ in 0..SLOTS / 2 {
            assert!(rx.try_pop(&mut out));
            check(&out, got);
            got += 1;
        }
    }
    while rx.try_pop(&mut out) {
        check(&out, got);
        got += 1;
    }
    assert_eq!(got, sent);
    assert!(!rx.has_message());
    assert!(sent > 300, "crossed u32::MAX");
}

#[test]
fn sleeping_consumer_is_woken_by_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let file = RingFile::create(&dir.path().join("w.ring")).unwrap();
    let worker = RingFile::open(&dir.path().join("w.ring")).unwrap();
    let bell = BellRegion::create(&dir.path().join("w.bell"))
        .unwrap()
        .bell();
    let worker_bell = BellRegion::open(&dir.path().join("w.bell")).unwrap();
    let (tx_done, done) = mpsc::channel();
    let (mut tx, _, _) = file.into_engine_side();
    let consumer = {
        std::thread::spawn(move || {
            let (_, mut rx, _) = worker.into_worker_side();
            let bell = worker_bell.bell();
            let mut out = [0u8; MESSAGE_SIZE];
            let mut sleeps = 0;
            for expected in 0..200u64 {
                loop {
                    if rx.try_pop(&mut out) {
                        check(&out, expected);
                        break;
                    }
                    bell.prepare_sleep();
                    if rx.has_message() {
                        bell.cancel_sleep();
                        continue;
                    }
                    sleeps += 1;
                    bell.sleep(Duration::from_secs(60));
                }
            }
            tx_done.send(sleeps).unwrap();
        })
    };
    for seq in 0..200u64 {
        if seq % 20 == 0 {
            std::thread::sleep(Duration::from_millis(5)); // let the consumer fall asleep
        }
        assert!(tx.try_push(&message(seq)));
        bell.notify();
    }
    let sleeps = done
        .recv_timeout(Duration::from_secs(30))
        .expect("consumer missed a wake-up");
    assert!(sleeps > 0, "the consumer should have slept at least once");
    consumer.join().unwrap();
}

/// Child: echoes every message of the to-worker ring back on the to-engine ring.
fn echo_child(path: &str) {
    let file = RingFile::open(std::path::Path::new(path)).unwrap();
    let (mut tx, mut rx, _) = file.into_worker_side();
    let bell = BellRegion::open(&std::path::Path::new(path).with_extension("bell"))
        .unwrap()
        .bell();
    let mut out = [0u8; MESSAGE_SIZE];
    loop {
        if !ring::spin_until(Duration::from_micros(50), || rx.has_message()) {
            bell.prepare_sleep();
            if !rx.has_message() {
                bell.sleep(Duration::from_millis(100));
                continue;
            }
            bell.cancel_sleep();
        }
        while rx.try_pop(&mut out) {
            if out[..8] == u64::MAX.to_le_bytes() {
                return;
            }
            while !tx.try_push(&out) {
                std::thread::yield_now();
            }
        }
    }
}

#[test]
fn child_entry() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        echo_child(&path);
        std::process::exit(0);
    }
}

fn spawn_echo(path: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .spawn()
        .unwrap()
}

#[test]
fn cross_process_stress_no_loss_no_duplication() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.ring");
    let file = RingFile::create(&path).unwrap();
    let bell: Bell = BellRegion::create(&path.with_extension("bell"))
        .unwrap()
        .bell();
    let mut child = spawn_echo(&path);
    let (mut tx, mut rx, _) = file.into_engine_side();
    let total: u64 = 300_000;
    let (mut sent, mut got) = (0u64, 0u64);
    let mut out = [0u8; MESSAGE_SIZE];
    let start = Instant::now();
    while got < total {
        let mut pushed = false;
        while sent < total && sent - got < 48 && tx.try_push(&message(sent)) {
            sent += 1;
            pushed = true;
        }
        if pushed {
            bell.notify();
        }
        while rx.try_pop(&mut out) {
            check(&out, got);
            got += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "stress stalled at {got}"
        );
        std::thread::yield_now();
    }
    let mut stop = [0u8; MESSAGE_SIZE];
    stop[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(tx.try_push(&stop));
    bell.notify();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_sleeping_worker_notices_that_the_engine_died() {
    let (_engine_ring, ring_fd) = RingFile::create_sealed("ring").unwrap();
    let (_worker_bell, bell_fd) = BellRegion::create_sealed("bell").unwrap();
    let (_engine_bell, engine_bell_fd) = BellRegion::create_sealed("engine-bell").unwrap();
    let (engine_sock, worker_sock) = UnixStream::pair().unwrap();
    let ch = RingChannel::open_worker_side(
        4,
        1 << 20,
        &ring_fd,
        &bell_fd,
        &engine_bell_fd,
        std::sync::Arc::new(gloam_core::engine_socket::EngineSocket::new(
            worker_sock.into(),
            4,
        )),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut buf = [0u8; MESSAGE_SIZE];
        let first = ch.recv(&mut buf, Wait::Timeout(Duration::from_millis(30)));
        tx.send(first.map_err(|e| e.kind())).unwrap();
        let second = ch.recv(&mut buf, Wait::Forever);
        tx.send(second.map_err(|e| e.kind())).unwrap();
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        Ok(Received::TimedOut)
    );
    drop(engine_sock); // the engine dies
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        Err(ErrorKind::Shutdown)
    );
    waiter.join().unwrap();
}
