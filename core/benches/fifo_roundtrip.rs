//! 1 KiB round trip over the FIFO channel between two processes: the floor of the FIFO
//! transport. `cargo bench -p gloam-core --bench fifo_roundtrip [-- N]` prints a table and a
//! JSON line with p50/p99/p99.9/max latency and round trips per second.

#[path = "report.rs"]
mod report;

use std::process::Command;
use std::time::{Duration, Instant};

use gloam_core::channel::{create_fifos, Channel, FifoChannel, Received, Wait};
use gloam_core::ipc_root::IpcPaths;
use gloam_core::protocol::{Header, Kind, Message, MESSAGE_SIZE};

const CHILD_ENV: &str = "GLOAM_BENCH_ECHO_ROOT";

fn main() {
    if let Ok(root) = std::env::var(CHILD_ENV) {
        echo(&IpcPaths::new(root));
        return;
    }
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("gloam-bench-{}", std::process::id()));
    let paths = IpcPaths::new(&dir);
    std::fs::create_dir_all(paths.fifo_dir()).expect("mkdir");
    create_fifos(&paths, 1).expect("mkfifo");
    let engine = FifoChannel::open_engine_side(&paths, 1).expect("open FIFOs");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, &dir)
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
    let _ = std::fs::remove_dir_all(&dir);

    report::print(
        "fifo_roundtrip",
        "FIFO channel, 1 KiB round trip between two processes",
        &mut times,
        total,
    );
}

fn echo(paths: &IpcPaths) {
    let ch = FifoChannel::open_worker_side(paths, 1).expect("open worker side");
    let mut buf = [0u8; MESSAGE_SIZE];
    while let Ok(Received::Message) = ch.recv(&mut buf, Wait::Forever) {
        if buf[1] == Kind::Retire as u8 {
            return;
        }
        buf[1] = Kind::Complete as u8;
        ch.send(&buf).expect("send");
    }
}
