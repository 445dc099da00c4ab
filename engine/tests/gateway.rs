//! The HTTP gateway against clients that hold connections: the connection cap, the header and
//! idle timeouts, and the descriptors kept for the engine. Real `gloam up`, real sockets.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::{closed_by_server, closed_now, raw_post, read_raw_response, rust_fn, within, Stack};

/// Generous bound for the server to close a connection it should close.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

fn error_kind(r: &gloam_engine::client::Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn idle_connections_cannot_lock_a_new_client_out() {
    within(Duration::from_secs(120), || {
        let mut s = Stack::start(
            "max_connections = 50\nheader_read_timeout_ms = 600000\nidle_timeout_ms = 600000",
            &rust_fn("Echo", "Echo", ""),
        );
        let idle: Vec<TcpStream> = (0..60)
            .map(|_| TcpStream::connect(&s.addr).expect("connect"))
            .collect();
        // Served although 60 connections sit idle: those idle the longest make room.
        let r = s.call("Echo", b"still served");
        assert_eq!((r.status, r.text().as_ref()), (200, "still served"));
        assert!(
            closed_by_server(&idle[0], CLOSE_BOUND),
            "the oldest stays open"
        );
        let closed = idle.iter().filter(|c| closed_now(c)).count();
        assert!(closed >= 10, "only {closed} idle connections were closed");
        assert!(
            !closed_now(&idle[59]),
            "the newest idle connection was closed"
        );
        assert_eq!(s.metric("gloam_http_connections_max"), Some(50.0));
        let open = s.metric("gloam_http_connections").unwrap_or(f64::MAX);
        assert!(open <= 50.0, "{open} connections open");
        let evicted = s
            .metric("gloam_http_connections_closed_total{reason=\"evicted\"}")
            .unwrap_or(0.0);
        assert!(evicted >= 10.0, "evicted {evicted}");
        s.stop();
    });
}

#[test]
fn at_the_cap_a_new_client_waits_for_a_busy_connection_and_no_answer_is_cut() {
    within(Duration::from_secs(120), || {
        let mut s = Stack::start(
            "max_connections = 2",
            &[
                rust_fn("Sleep", "Sleep", "min_workers = 2\nmax_workers = 2"),
                rust_fn("Echo", "Echo", ""),
            ]
            .concat(),
        );
        // Both slots serve calls; the third client waits for one of them to end.
        let mut a = raw_post(&s.addr, "Sleep", b"2000");
        let mut b = raw_post(&s.addr, "Sleep", b"2000");
        let r = s.call("Echo", b"waited");
        assert_eq!((r.status, r.text().as_ref()), (200, "waited"));
        // The keep-alive connection closed to make room had its answer written first.
        for c in [&mut a, &mut b] {
            let r = read_raw_response(c).expect("the Sleep answer");
            assert_eq!((r.status, r.text().as_ref()), (200, "slept 2000 ms"));
        }
        let waits = s
            .metric("gloam_http_connection_cap_waits_total")
            .unwrap_or(0.0);
        assert!(waits >= 1.0, "cap waits {waits}");
        s.stop();
    });
}

#[test]
fn slow_heads_idle_connections_and_stalled_bodies_are_cut_off_but_long_calls_are_not() {
    within(Duration::from_secs(120), || {
        let mut s = Stack::start(
            "header_read_timeout_ms = 300\nidle_timeout_ms = 600",
            &[rust_fn("Echo", "Echo", ""), rust_fn("Sleep", "Sleep", "")].concat(),
        );
        // Half a request head.
        let mut half = TcpStream::connect(&s.addr).expect("connect");
        half.write_all(b"POST /function/Echo HTTP/1.1\r\nHost: gloam\r\n")
            .expect("write");
        assert!(
            closed_by_server(&half, CLOSE_BOUND),
            "half a head kept open"
        );
        // Nothing at all.
        let silent = TcpStream::connect(&s.addr).expect("connect");
        assert!(
            closed_by_server(&silent, CLOSE_BOUND),
            "silent client kept open"
        );
        // Idle after a request.
        let mut idle = raw_post(&s.addr, "Echo", b"x");
        assert_eq!(
            read_raw_response(&mut idle).map(|r| r.status).ok(),
            Some(200)
        );
        assert!(
            closed_by_server(&idle, CLOSE_BOUND),
            "idle connection kept open"
        );
        // A body that stops coming.
        let mut stalled = TcpStream::connect(&s.addr).expect("connect");
        stalled
            .write_all(
                b"POST /function/Echo HTTP/1.1\r\nHost: gloam\r\nContent-Length: 10\r\n\r\nab",
            )
            .expect("write");
        stalled
            .set_read_timeout(Some(CLOSE_BOUND))
            .expect("read timeout");
        let r = read_raw_response(&mut stalled).expect("a 408");
        assert_eq!(
            (r.status, error_kind(&r).as_str()),
            (408, "REQUEST_TIMEOUT")
        );
        assert!(closed_by_server(&stalled, CLOSE_BOUND));

        // A call that runs longer than both timeouts is answered, and its connection serves
        // the next request.
        let mut c = s.client();
        let r = c.post("/function/Sleep", b"1500").expect("Sleep");
        assert_eq!((r.status, r.text().as_ref()), (200, "slept 1500 ms"));
        let r = c.post("/function/Echo", b"again").expect("Echo");
        assert_eq!((r.status, r.text().as_ref()), (200, "again"));
        assert_eq!(c.connections_opened(), 1);

        let closed = |reason: &str| {
            s.metric(&format!(
                "gloam_http_connections_closed_total{{reason=\"{reason}\"}}"
            ))
            .unwrap_or(0.0)
        };
        assert!(closed("header_timeout") >= 2.0);
        assert!(closed("idle_timeout") >= 1.0);
        s.stop();
    });
}

#[test]
fn a_crashed_worker_restarts_while_clients_take_every_connection_they_can() {
    within(Duration::from_secs(180), || {
        // 512 descriptors in all, and no max_connections: the cap keeps a reserve.
        let mut s = Stack::start_with_nofile(
            "",
            &[
                rust_fn("Crash", "Crash", "max_workers = 1"),
                rust_fn("Echo", "Echo", "max_workers = 1"),
            ]
            .concat(),
            512,
        );
        let max = s.metric("gloam_http_connections_max").unwrap_or(0.0);
        assert!(max > 0.0 && max < 512.0, "cap {max}");
        // More connections than the engine has descriptors.
        let hogs: Vec<TcpStream> = (0..600)
            .map(|_| TcpStream::connect(&s.addr).expect("connect"))
            .collect();
        s.wait_for("the cap to be reached", Duration::from_secs(60), || {
            s.metric("gloam_http_connections").unwrap_or(0.0) >= max
        });
        let r = s.call("Crash", b"");
        assert_eq!((r.status, error_kind(&r).as_str()), (502, "WORKER_CRASHED"));
        s.wait_for("a replacement worker", Duration::from_secs(60), || {
            s.function_stat("Crash", "workers") == 1
        });
        let r = s.call("Echo", b"alive");
        assert_eq!((r.status, r.text().as_ref()), (200, "alive"));
        let open = s.metric("gloam_http_connections").unwrap_or(f64::MAX);
        assert!(open <= max, "{open} connections open, cap {max}");
        let stderr = s.stderr_text();
        assert!(!stderr.contains("cannot open"), "{stderr}");
        assert!(!stderr.contains("Too many open files"), "{stderr}");
        drop(hogs);
        s.stop();
    });
}
