//! 1 KiB round trip over the FIFO channel (two anonymous pipes, the child's ends inherited)
//! between two processes: the floor of the FIFO transport.
//! `cargo bench -p gloam-core --bench fifo_roundtrip [-- N]` prints a table and a JSON line
//! with p50/p99/p99.9/max latency and round trips per second.

#[path = "report.rs"]
mod report;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gloam_core::channel::{Channel, FifoChannel, Pipes, Received, Wait};
use gloam_core::protocol::{Header, Kind, Message, MESSAGE_SIZE};

/// In the echo child: its two pipe ends, as stdin (engine → worker) and stdout (worker →
/// engine).
const CHILD_ENV: &str = "GLOAM_BENCH_ECHO";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        echo();
        return;
    }
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let pipes = Pipes::create().expect("pipes");
    let engine = FifoChannel::engine_side(pipes.engine_rx, pipes.engine_tx).expect("channel");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, "1")
        .stdin(Stdio::from(pipes.worker_rx))
        .stdout(Stdio::from(pipes.worker_tx))
        .spawn()
        .expect("spawn echo peer");

    let msg = Message::with_inline(Header::new(Kind::Dispatch), &[7u8; 960])
        .expect("message")
        .to_bytes();
    let mut buf = [0u8; MESSAGE_SIZE];
    let round_trip = |buf: &mut [u8; MESSAGE_SIZE]| {
        engine.send(&msg).expect("send");
        let got = engine
            .recv(buf, Wait::Timeout(Duration::from_secs(10)))
            .expect("recv");
        assert_eq!(got, Received::Message);
    };
    for _ in 0..n / 10 {
        round_trip(&mut buf);
    }
    let mut times = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        round_trip(&mut buf);
        times.push(t0.elapsed());
    }
    let total = start.elapsed();
    engine
        .send(&Message::new(Header::new(Kind::Retire)).to_bytes())
        .expect("send");
    let _ = child.wait();

    report::print(
        "fifo_roundtrip",
        "FIFO channel, 1 KiB round trip between two processes",
        &mut times,
        total,
    );
}

fn echo() {
    let take = |fd: RawFd| {
        // SAFETY: the parent set up stdin and stdout as the pipe ends; this process owns them
        // from here on and uses neither as stdio.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let ch = FifoChannel::worker_side(take(0), take(1)).expect("open worker side");
    let mut buf = [0u8; MESSAGE_SIZE];
    while let Ok(Received::Message) = ch.recv(&mut buf, Wait::Forever) {
        if buf[1] == Kind::Retire as u8 {
            return;
        }
        buf[1] = Kind::Complete as u8;
        ch.send(&buf).expect("send");
    }
}
