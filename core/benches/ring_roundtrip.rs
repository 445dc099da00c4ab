//! 1 KiB round trip over a shared-memory ring pair between two processes: the floor of the
//! ring transport (no engine relay). `cargo bench -p gloam-core --bench ring_roundtrip [-- N]`
//! prints a table and a JSON line like `fifo_roundtrip`.

#[path = "report.rs"]
mod report;

use std::process::Command;
use std::time::{Duration, Instant};

use gloam_core::protocol::MESSAGE_SIZE;
use gloam_core::ring::{spin_until, BellRegion, RingFile};

const CHILD_ENV: &str = "GLOAM_BENCH_RING_FILE";
const SPIN: Duration = Duration::from_micros(50);

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        echo(&path);
        return;
    }
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let path = std::env::temp_dir().join(format!("gloam-bench-{}.ring", std::process::id()));
    let file = RingFile::create(&path).expect("ring file");
    let bell_path = path.with_extension("bell");
    let bell = BellRegion::create(&bell_path).expect("bell file").bell();
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, &path)
        .spawn()
        .expect("spawn echo peer");
    let (mut tx, mut rx, _) = file.into_engine_side();
    let msg = [7u8; MESSAGE_SIZE];
    let mut buf = [0u8; MESSAGE_SIZE];
    let mut round_trip = |buf: &mut [u8; MESSAGE_SIZE]| {
        assert!(tx.try_push(&msg));
        bell.notify();
        while !rx.try_pop(buf) {
            spin_until(SPIN, || rx.has_message());
        }
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
    let mut stop = [0u8; MESSAGE_SIZE];
    stop[0] = 0xff;
    assert!(tx.try_push(&stop));
    bell.notify();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&bell_path);

    report::print(
        "ring_roundtrip",
        "Ring channel, 1 KiB round trip between two processes",
        &mut times,
        total,
    );
}

/// The peer: waits with the worker's policy (spin, then sleep on its doorbell) and echoes.
fn echo(path: &str) {
    let path = std::path::Path::new(path);
    let file = RingFile::open(path).expect("open ring");
    let (mut tx, mut rx, _) = file.into_worker_side();
    let bell = BellRegion::open(&path.with_extension("bell"))
        .expect("open bell")
        .bell();
    let mut buf = [0u8; MESSAGE_SIZE];
    loop {
        if !spin_until(SPIN, || rx.has_message()) {
            bell.prepare_sleep();
            if !rx.has_message() {
                bell.sleep(Duration::from_millis(100));
                continue;
            }
            bell.cancel_sleep();
        }
        while rx.try_pop(&mut buf) {
            if buf[0] == 0xff {
                return;
            }
            while !tx.try_push(&buf) {
                std::thread::yield_now();
            }
        }
    }
}
