//! SIGTERM with calls in flight and clients still calling: every request gets an answer (200
//! or 503 `SHUTDOWN`), never a reset or an empty close. Real `gloam up`, real HTTP.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gloam_engine::client::{HttpClient, Response};
use support::{rust_fn, within, Stack};

fn error_json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_default()
}

/// Asserts `r` is the gateway's answer to a request refused while the engine stops.
fn assert_shutdown_answer(r: &Response) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(error_json(r)["error"], "SHUTDOWN", "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
}

/// What one client saw of the shutdown.
#[derive(Debug, Default)]
struct Seen {
    ok: u64,
    shutdown: u64,
    /// Connections refused once the gateway stopped accepting (a fresh connection).
    refused: u64,
    /// Anything else: a reset or a close without an answer, an unexpected status.
    bad: Vec<String>,
}

/// Calls `function` with `input` in a loop on one keep-alive connection until the engine stops
/// taking calls; classifies every outcome.
fn call_until_refused(addr: &str, function: &str, input: &[u8], calls: &AtomicU64) -> Seen {
    let mut seen = Seen::default();
    let mut client = HttpClient::new(addr).expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    // Whether the next request goes out on a connection opened before (a retry of the
    // client on a fresh connection would hide that the old one was closed without answer).
    let mut reused = false;
    loop {
        let opened = client.connections_opened();
        let result = client.post(&format!("/function/{function}"), input);
        let retried = reused && client.connections_opened() > opened;
        match result {
            Ok(r) if retried => {
                seen.bad.push(format!(
                    "a connection closed without an answer (the retry got {})",
                    r.status
                ));
                return seen;
            }
            Ok(r) if r.status == 200 => {
                seen.ok += 1;
                calls.fetch_add(1, Ordering::SeqCst);
                reused = r.header("connection") != Some("close");
            }
            Ok(r) if r.status == 503 && error_json(&r)["error"] == "SHUTDOWN" => {
                assert_shutdown_answer(&r);
                seen.shutdown += 1;
                return seen;
            }
            Ok(r) => {
                seen.bad.push(format!("{} {}", r.status, r.text()));
                return seen;
            }
            Err(e) if !reused && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                seen.refused += 1;
                return seen;
            }
            Err(e) => {
                seen.bad
                    .push(format!("error (reused connection: {reused}): {e}"));
                return seen;
            }
        }
    }
}

#[test]
fn shutdown_under_load_answers_every_request_with_200_or_503() {
    within(Duration::from_secs(180), || {
        let mut s = Stack::start(
            "drain_timeout_ms = 20000",
            &[
                rust_fn("Sleep", "Sleep", "min_workers = 4\nmax_workers = 4"),
                rust_fn("Slow", "Sleep", "min_workers = 1\nmax_workers = 1"),
                rust_fn("Echo", "Echo", ""),
            ]
            .concat(),
        );
        let calls = Arc::new(AtomicU64::new(0));
        let loaders: Vec<_> = (0..6)
            .map(|_| {
                let (addr, calls) = (s.addr.clone(), calls.clone());
                std::thread::spawn(move || call_until_refused(&addr, "Sleep", b"20", &calls))
            })
            .collect();
        // A call in flight for the whole drain, so that the drain lasts.
        let slow = {
            let addr = s.addr.clone();
            std::thread::spawn(move || {
                let mut c = HttpClient::new(addr.as_str()).expect("client");
                c.set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("read timeout");
                c.post("/function/Slow", b"3000")
            })
        };
        // A client with an open, idle keep-alive connection.
        let mut idle = s.client();
        assert_eq!(
            idle.post("/function/Echo", b"x").map(|r| r.status).ok(),
            Some(200)
        );

        s.wait_for(
            "calls flowing and Slow running",
            Duration::from_secs(60),
            || calls.load(Ordering::SeqCst) >= 12 && s.function_stat("Slow", "running") == 1,
        );
        s.terminate();
        s.wait_for("the drain to begin", Duration::from_secs(30), || {
            s.stderr_text()
                .contains("shutting down: draining calls in flight")
        });
        // A request on an open connection during the drain: 503 SHUTDOWN, and the
        // connection closes.
        let r = idle.post("/function/Echo", b"late").expect("an answer");
        assert_shutdown_answer(&r);
        // New connections are no longer accepted.
        let refused = std::net::TcpStream::connect(&s.addr);
        assert!(
            refused.is_err(),
            "a new connection was accepted during the drain"
        );

        // The call in flight finishes normally.
        let r = slow.join().expect("slow thread").expect("Slow answer");
        assert_eq!((r.status, r.text().as_ref()), (200, "slept 3000 ms"));
        let mut total = Seen::default();
        for l in loaders {
            let seen = l.join().expect("loader thread");
            assert!(seen.bad.is_empty(), "{seen:?}");
            total.ok += seen.ok;
            total.shutdown += seen.shutdown;
            total.refused += seen.refused;
        }
        assert_eq!(total.shutdown + total.refused, 6, "{total:?}");
        let status = s.wait_exit(Duration::from_secs(60));
        s.check_clean_exit(status);
    });
}

#[test]
fn a_call_longer_than_the_drain_ends_with_503_shutdown() {
    within(Duration::from_secs(120), || {
        let mut s = Stack::start(
            "drain_timeout_ms = 500",
            &rust_fn("Sleep", "Sleep", "max_workers = 1"),
        );
        let long = {
            let addr = s.addr.clone();
            std::thread::spawn(move || {
                let mut c = HttpClient::new(addr.as_str()).expect("client");
                c.set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("read timeout");
                c.post("/function/Sleep", b"20000")
            })
        };
        s.wait_for("the long call to run", Duration::from_secs(60), || {
            s.function_stat("Sleep", "running") == 1
        });
        s.terminate();
        let r = long
            .join()
            .expect("caller thread")
            .expect("an answer, not a reset");
        assert_shutdown_answer(&r);
        let message = error_json(&r)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("drain_timeout_ms = 500"), "{message}");
        let status = s.wait_exit(Duration::from_secs(60));
        s.check_clean_exit(status);
    });
}
