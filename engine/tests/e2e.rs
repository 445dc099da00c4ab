//! End to end: a real engine (`gloam up`), real Rust worker processes, real HTTP.

mod support;

use std::time::Duration;

use support::{rust_fn, Stack};

fn body_json(r: &gloam_engine::client::Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

fn hello_stack() -> Stack {
    let functions = [
        rust_fn("Foo", "Foo", ""),
        rust_fn("Bar", "Bar", ""),
        rust_fn("Echo", "Echo", "min_workers = 2"),
        rust_fn("Nop", "Nop", ""),
        rust_fn("Fail", "Fail", ""),
        rust_fn("Fanout", "Fanout", ""),
        rust_fn("InvokeOther", "InvokeOther", ""),
        rust_fn("Sleep", "Sleep", "max_workers = 1"),
    ]
    .concat();
    Stack::start("max_payload = 4194304", &functions)
}

#[test]
fn calls_internal_calls_payloads_and_errors() {
    let mut s = hello_stack();

    // External call, and the internal call Foo → Bar.
    let r = s.call("Echo", b"ping");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ping"[..]));
    assert!(r.header("x-gloam-timing").is_some());
    let r = s.call("Foo", b"World");
    assert_eq!(r.text(), "From function Bar: Hello, World");
    let r = s.call("Nop", b"");
    assert_eq!((r.status, r.body.len()), (200, 0));

    // Three internal calls in flight at once from one handler.
    let r = s.call("Fanout", b"x");
    assert_eq!(r.text(), "x#0;x#1;x#2");

    // Inline edge and 1 MiB by descriptor, in and out, byte-exact; and through an internal call.
    for size in [960usize, 961, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        let r = s.call("Echo", &data);
        assert_eq!(r.status, 200);
        assert!(r.body == data, "echo of {size} bytes differs");
        let mut inner = b"Echo:".to_vec();
        inner.extend_from_slice(&data);
        let r = s.call("InvokeOther", &inner);
        assert!(r.body == data, "internal echo of {size} bytes differs");
    }

    // Unknown function: 404 naming it; also from inside a handler.
    let r = s.call("Nope", b"");
    assert_eq!(r.status, 404);
    assert_eq!(body_json(&r)["error"], "FUNCTION_NOT_FOUND");
    assert!(r.text().contains("Nope"));
    let r = s.call("InvokeOther", b"Nope:x");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "FUNCTION_NOT_FOUND");
    assert!(r.text().contains("Nope"), "{}", r.text());

    // Oversized body: 413 with the limit; nothing dispatched.
    let big = vec![0u8; (4 << 20) + 1];
    let r = s.call("Echo", &big);
    assert_eq!(r.status, 413);
    assert_eq!(body_json(&r)["error"], "PAYLOAD_TOO_LARGE");
    assert!(r.text().contains("4194304"), "{}", r.text());

    // Handler error: 500 with its message; the worker lives on.
    let r = s.call("Fail", b"");
    assert_eq!(r.status, 500);
    assert_eq!(body_json(&r)["error"], "HANDLER_FAILED");
    assert_eq!(body_json(&r)["message"], "Fail was called");
    assert_eq!(s.call("Echo", b"again").text(), "again");

    // Unknown route and bad timeout header.
    assert_eq!(s.client().get("/nothing").unwrap().status, 404);
    let r = s
        .client()
        .request(
            "POST",
            "/function/Echo",
            &[("X-Gloam-Timeout", "soon")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("X-Gloam-Timeout"));
    s.stop();
}

#[test]
fn deadlines_expire_running_queued_and_nested_calls() {
    let mut s = hello_stack();
    let r = s.call_with_timeout("Sleep", b"3000", 200);
    assert_eq!(r.status, 504);
    assert_eq!(body_json(&r)["error"], "TIMEOUT");
    // The worker is still sleeping: this call waits in the queue and expires there.
    let r = s.call_with_timeout("Sleep", b"1", 200);
    assert_eq!(r.status, 504);
    assert!(r.text().contains("queue"), "{}", r.text());
    // A nested call inherits the parent's remaining budget.
    s.wait_for("Sleep to be idle", Duration::from_secs(20), || {
        s.function_stat("Sleep", "running") == 0
    });
    let r = s.call_with_timeout("InvokeOther", b"Sleep:3000", 300);
    assert_eq!(r.status, 504);
    s.wait_for("the sleeper to finish", Duration::from_secs(20), || {
        s.function_stat("Sleep", "running") == 0
    });
    assert_eq!(s.call("Sleep", b"1").text(), "slept 1 ms");
    s.stop();
}

#[test]
fn crashed_worker_fails_its_call_and_is_replaced() {
    let mut s = Stack::start(
        "",
        &[
            rust_fn("Crash", "Crash", ""),
            rust_fn("Echo", "Echo", ""),
            rust_fn("InvokeOther", "InvokeOther", ""),
        ]
        .concat(),
    );
    let r = s.call("Crash", b"");
    assert_eq!(r.status, 502);
    assert_eq!(body_json(&r)["error"], "WORKER_CRASHED");
    // How it ended comes from its socket (with either transport: a FIFO worker's pipes closing
    // first must not replace the reason) — its signal, or only that it exited when the
    // launcher reaped it before the engine could read the exit code.
    let text = r.text();
    assert!(
        text.contains("was killed by SIGABRT") || text.contains(" exited"),
        "{text}"
    );
    s.wait_for("a replacement worker", Duration::from_secs(30), || {
        s.function_stat("Crash", "workers") == 1
    });
    // An internal call to a crashing function fails the caller's call, not the caller; the
    // caller's handler passes the kind on.
    let r = s.call("InvokeOther", b"Crash:x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "WORKER_CRASHED");
    assert_eq!(s.call("InvokeOther", b"Echo:alive").text(), "alive");
    s.stop();
}

#[test]
fn full_queue_answers_503_with_retry_after() {
    let mut s = Stack::start(
        "",
        &rust_fn("Sleep", "Sleep", "queue_bound = 1\nmax_workers = 1"),
    );
    let addr = s.addr.clone();
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = gloam_engine::client::HttpClient::new(addr.as_str()).unwrap();
                c.post("/function/Sleep", b"1500").unwrap().status
            })
        })
        .collect();
    s.wait_for(
        "one running and one queued",
        Duration::from_secs(20),
        || s.function_stat("Sleep", "running") == 1 && s.function_stat("Sleep", "queued") == 1,
    );
    let r = s.call("Sleep", b"1");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(body_json(&r)["error"], "OVERLOADED");
    for b in busy {
        assert_eq!(b.join().unwrap(), 200);
    }
    s.stop();
}

#[test]
fn a_flooded_function_sheds_with_retry_after_and_the_others_keep_answering() {
    // One worker, 30 ms calls, 8 callers in a closed loop: calls queue for ~210 ms, over
    // 4 running times, so the standing delay sheds new calls.
    let functions = [
        rust_fn("Sleep", "Sleep", "max_workers = 1\nqueue_target_ms = 20"),
        rust_fn("Nop", "Nop", ""),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    let addr = s.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = gloam_engine::client::HttpClient::new(addr.as_str()).unwrap();
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c.post("/function/Sleep", b"30").unwrap();
                    let shed = (r.status == 503).then(|| {
                        (
                            r.header("retry-after").map(str::to_owned),
                            body_json(&r)["message"].as_str().unwrap_or("").to_owned(),
                        )
                    });
                    seen.push((r.status, shed));
                }
                seen
            })
        })
        .collect();
    s.wait_for("calls to be shed", Duration::from_secs(20), || {
        s.metric("faas_invocations_total{function=\"Sleep\",status=\"overloaded\"}")
            .unwrap_or(0.0)
            > 0.0
    });
    // The flood does not reach another function.
    for _ in 0..20 {
        assert_eq!(s.call("Nop", b"").status, 200);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<_> = flood.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        seen.iter().all(|(status, _)| [200, 503].contains(status)),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(status, _)| *status == 200));
    let (retry_after, message) = seen.iter().find_map(|(_, shed)| shed.clone()).unwrap();
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        message.contains("function Sleep is overloaded"),
        "{message}"
    );
    s.stop();
}

#[test]
fn pool_grows_under_load_and_shrinks_when_idle() {
    let mut s = Stack::start(
        "",
        &rust_fn(
            "Sleep",
            "Sleep",
            "min_workers = 1\nmax_workers = 3\ngrowth_interval_ms = 20\nshrink_grace_ms = 300",
        ),
    );
    assert_eq!(s.function_stat("Sleep", "workers"), 1);
    let addr = s.addr.clone();
    let load: Vec<_> = (0..6)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = gloam_engine::client::HttpClient::new(addr.as_str()).unwrap();
                c.post("/function/Sleep", b"700").unwrap().status
            })
        })
        .collect();
    s.wait_for(
        "the pool to grow to max_workers",
        Duration::from_secs(30),
        || s.function_stat("Sleep", "workers") == 3,
    );
    for l in load {
        assert_eq!(l.join().unwrap(), 200);
    }
    // Idle past the grace: back to max(2τ, min_workers) = 2 (τ's floor is 1).
    s.wait_for("the pool to shrink", Duration::from_secs(30), || {
        s.function_stat("Sleep", "workers") == 2
    });
    assert_eq!(s.call("Sleep", b"1").text(), "slept 1 ms");
    s.stop();
}
