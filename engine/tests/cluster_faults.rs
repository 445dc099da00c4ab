//! Node loss behind `gloam gateway`, with real processes on 127.0.0.1: an engine killed with
//! SIGKILL under load, an engine drained under load, the gateway killed and restarted.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gloam_engine::client::HttpClient;
use support::cluster::{engine, GatewayProc};
use support::{rust_fn, within};

/// What one load thread saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    engine_lost: u64,
    other: Vec<String>,
}

/// Calls `function` with `input` in a loop until `stop`, each request on a fresh connection
/// or a kept one, classifying every answer (a hang fails through the read timeout).
fn load(
    addr: &str,
    function: &'static str,
    input: &'static [u8],
    stop: Arc<AtomicBool>,
) -> JoinHandle<Tally> {
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let mut t = Tally::default();
        let mut c = HttpClient::new(addr.as_str()).expect("client");
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        while !stop.load(Ordering::SeqCst) {
            match c.post(&format!("/function/{function}"), input) {
                Ok(r) if r.status == 200 => t.ok += 1,
                Ok(r) if r.status == 502 && r.text().contains("ENGINE_LOST") => t.engine_lost += 1,
                Ok(r) => t.other.push(format!("{} {}", r.status, r.text())),
                Err(e) => t.other.push(format!("no answer: {e}")),
            }
        }
        t
    })
}

fn finish(threads: Vec<JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for t in threads {
        let t = t.join().expect("load thread");
        all.ok += t.ok;
        all.engine_lost += t.engine_lost;
        all.other.extend(t.other);
    }
    all
}

fn functions() -> String {
    [
        rust_fn("Sleep", "Sleep", "min_workers = 4\nmax_workers = 4"),
        rust_fn(
            "Retry",
            "Sleep",
            "min_workers = 4\nmax_workers = 4\nidempotent = true",
        ),
    ]
    .concat()
}

#[test]
fn kill_9_of_an_engine_under_load_answers_every_call_and_the_engine_rejoins() {
    within(Duration::from_secs(180), || {
        let gw = GatewayProc::start("127.0.0.1:0", &[]);
        let mut a = engine(&gw, "node-a", "", &functions());
        let mut b = engine(&gw, "node-b", "", &functions());
        gw.wait_serving(2, Duration::from_secs(30));
        let stop = Arc::new(AtomicBool::new(false));
        let plain: Vec<_> = (0..3)
            .map(|_| load(&gw.addr, "Sleep", b"40", stop.clone()))
            .collect();
        let retried: Vec<_> = (0..3)
            .map(|_| load(&gw.addr, "Retry", b"40", stop.clone()))
            .collect();
        // Both engines busy, then one dies with calls in flight.
        a.wait_for("calls on node-a", Duration::from_secs(30), || {
            gw.engine_calls("node-a", "Sleep") >= 3 && gw.engine_calls("node-a", "Retry") >= 3
        });
        a.kill9();
        gw.wait_serving(1, Duration::from_secs(10));
        // The other engine keeps serving.
        let before = gw.engine_calls("node-b", "Sleep");
        b.wait_for(
            "calls on node-b after the loss",
            Duration::from_secs(30),
            || gw.engine_calls("node-b", "Sleep") >= before + 10,
        );
        // The engine comes back (a new process on the node) and rejoins.
        let mut a2 = engine(&gw, "node-a", "", &functions());
        gw.wait_serving(2, Duration::from_secs(30));
        a2.wait_for("calls on the new node-a", Duration::from_secs(30), || {
            gw.engine_calls("node-a", "Sleep") >= 1
        });
        stop.store(true, Ordering::SeqCst);
        let plain = finish(plain);
        let retried = finish(retried);
        assert!(
            plain.other.is_empty(),
            "unexpected answers: {:?}",
            plain.other
        );
        assert!(
            retried.other.is_empty(),
            "unexpected answers: {:?}",
            retried.other
        );
        // Idempotent calls lost with their engine were run again elsewhere.
        assert_eq!(retried.engine_lost, 0, "{retried:?}");
        assert!(plain.ok > 0 && retried.ok > 0);
        assert!(gw.metric("gloam_gateway_engines_lost_total").unwrap_or(0.0) >= 1.0);
        let lost_answers = gw
            .metric("gloam_gateway_engine_lost_calls_total")
            .unwrap_or(-1.0);
        assert_eq!(
            lost_answers, plain.engine_lost as f64,
            "each lost call answered once"
        );
        let retries = gw.metric("gloam_gateway_call_retries_total").unwrap_or(0.0);
        eprintln!("plain {plain:?}, idempotent {retried:?}, retries {retries}");
        a2.stop();
        b.stop();
    });
}

#[test]
fn draining_an_engine_under_load_fails_no_call() {
    within(Duration::from_secs(180), || {
        let gw = GatewayProc::start("127.0.0.1:0", &[]);
        let mut a = engine(&gw, "node-a", "drain_timeout_ms = 20000", &functions());
        let mut b = engine(&gw, "node-b", "", &functions());
        gw.wait_serving(2, Duration::from_secs(30));
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..6)
            .map(|_| load(&gw.addr, "Sleep", b"30", stop.clone()))
            .collect();
        a.wait_for("calls on node-a", Duration::from_secs(30), || {
            gw.engine_calls("node-a", "Sleep") >= 10
        });
        a.terminate();
        let status = a.wait_exit(Duration::from_secs(60));
        a.check_clean_exit(status);
        let before = gw.engine_calls("node-b", "Sleep");
        b.wait_for(
            "calls on node-b after the drain",
            Duration::from_secs(30),
            || gw.engine_calls("node-b", "Sleep") >= before + 10,
        );
        stop.store(true, Ordering::SeqCst);
        let t = finish(threads);
        assert!(
            t.other.is_empty() && t.engine_lost == 0,
            "failed calls: {t:?}"
        );
        assert!(t.ok > 20, "{t:?}");
        assert_eq!(gw.metric("gloam_gateway_engines_left_total"), Some(1.0));
        assert_eq!(gw.metric("gloam_gateway_engines_lost_total"), Some(0.0));
        b.stop();
    });
}

#[test]
fn engines_rejoin_a_restarted_gateway() {
    within(Duration::from_secs(180), || {
        let mut gw = GatewayProc::start("127.0.0.1:0", &[]);
        let port = gw.engines.clone();
        let mut a = engine(&gw, "node-a", "", &rust_fn("Echo", "Echo", ""));
        let mut b = engine(&gw, "node-b", "", &rust_fn("Echo", "Echo", ""));
        gw.wait_serving(2, Duration::from_secs(30));
        gw.kill9();
        let gw2 = GatewayProc::start(&port, &[]);
        gw2.wait_serving(2, Duration::from_secs(30));
        let r = gw2.client().post("/function/Echo", b"again").expect("call");
        assert_eq!((r.status, r.text().as_ref()), (200, "again"));
        a.stop();
        b.stop();
    });
}
