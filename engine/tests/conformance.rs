//! The shared conformance cases (`ci/conformance.md`) for Rust functions: a real engine
//! (`gloam up`), real `hello-rust` workers, real HTTP. One `#[test]` per case, named as in
//! every other language's suite.

mod support;

use std::time::Duration;

use support::{rust_fn, Stack};

/// The engine's payload limit here (small, so the oversize case stays quick).
const MAX_PAYLOAD: usize = 4 << 20;

fn body_json(r: &gloam_engine::client::Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

/// The example's functions under their handler names.
fn stack(names: &[&str]) -> Stack {
    let functions: String = names.iter().map(|n| rust_fn(n, n, "")).collect();
    Stack::start(&format!("max_payload = {MAX_PAYLOAD}"), &functions)
}

fn with_prefix(prefix: &[u8], data: &[u8]) -> Vec<u8> {
    [prefix, data].concat()
}

#[test]
fn echo() {
    let mut s = stack(&["Echo", "Bar"]);
    let r = s.call("Echo", b"hello gloam");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello gloam"[..]));
    let bin = [0u8, 1, 2, 255, 254, 0];
    assert_eq!(s.call("Echo", &bin).body, bin);
    assert_eq!(s.call("Bar", b"you").text(), "Hello, you");
    s.stop();
}

#[test]
fn empty_input() {
    let mut s = stack(&["Echo", "Bar", "Nop"]);
    let r = s.call("Echo", b"");
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(s.call("Bar", b"").text(), "Hello, World");
    let r = s.call("Nop", b"ignored");
    assert_eq!((r.status, r.body.len()), (200, 0));
    s.stop();
}

#[test]
fn inline_edge_960_and_961() {
    let mut s = stack(&["Echo", "InvokeOther"]);
    for size in [959usize, 960, 961] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        let r = s.call("Echo", &data);
        assert_eq!(r.status, 200);
        assert!(r.body == data, "echo of {size} bytes differs");
        let r = s.call("InvokeOther", &with_prefix(b"Echo:", &data));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body == data, "internal echo of {size} bytes differs");
    }
    s.stop();
}

#[test]
fn shm_payload_2mib() {
    let mut s = stack(&["Echo", "InvokeOther"]);
    let data: Vec<u8> = (0..2usize << 20)
        .map(|i| (i * 31 + i / 251) as u8)
        .collect();
    let r = s.call("Echo", &data);
    assert_eq!(r.status, 200);
    assert!(r.body == data, "2 MiB echo differs");
    let r = s.call("InvokeOther", &with_prefix(b"Echo:", &data));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == data, "2 MiB internal echo differs");
    s.stop();
}

#[test]
fn oversize() {
    let mut s = stack(&["Echo"]);
    let r = s.call("Echo", &vec![b'z'; MAX_PAYLOAD + 1]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "PAYLOAD_TOO_LARGE");
    assert!(r.text().contains(&MAX_PAYLOAD.to_string()), "{}", r.text());
    // At the limit exactly it goes through, and the worker is fine.
    let at_limit = vec![b'a'; MAX_PAYLOAD];
    assert!(s.call("Echo", &at_limit).body == at_limit);
    assert_eq!(s.call("Echo", b"still fine").text(), "still fine");
    s.stop();
}

#[test]
fn handler_error() {
    let mut s = stack(&["Fail", "Echo", "InvokeOther"]);
    for _ in 0..2 {
        let r = s.call("Fail", b"x");
        assert_eq!(r.status, 500);
        assert_eq!(body_json(&r)["error"], "HANDLER_FAILED");
        assert_eq!(body_json(&r)["message"], "Fail was called");
    }
    // Through an internal call: the caller's call fails with the callee's message.
    let r = s.call("InvokeOther", b"Fail:x");
    assert_eq!(r.status, 500);
    assert!(r.text().contains("Fail was called"), "{}", r.text());
    assert_eq!(s.call("Echo", b"next").text(), "next");
    s.stop();
}

#[test]
fn internal_call() {
    let mut s = stack(&["Foo", "Bar", "Echo", "InvokeOther"]);
    assert_eq!(
        s.call("Foo", b"Gloam").text(),
        "From function Bar: Hello, Gloam"
    );
    assert_eq!(s.call("Foo", b"").text(), "From function Bar: Hello, World");
    assert_eq!(s.call("InvokeOther", b"Echo:ping").text(), "ping");
    // Split at the first ':' only.
    assert_eq!(s.call("InvokeOther", b"Echo:a:b").text(), "a:b");
    s.stop();
}

#[test]
fn concurrent_internal_calls() {
    let functions = [
        rust_fn("Fanout", "Fanout", ""),
        rust_fn("Echo", "Echo", "min_workers = 3"),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    assert_eq!(s.call("Fanout", b"x").text(), "x#0;x#1;x#2");
    let addr = s.addr.clone();
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = gloam_engine::client::HttpClient::new(addr.as_str()).unwrap();
                c.post("/function/Fanout", format!("c{i}").as_bytes())
                    .unwrap()
                    .text()
                    .to_string()
            })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(c.join().unwrap(), format!("c{i}#0;c{i}#1;c{i}#2"));
    }
    s.stop();
}

#[test]
fn unknown_function() {
    let mut s = stack(&["InvokeOther"]);
    let r = s.call("NoSuchFunction", b"x");
    assert_eq!(r.status, 404);
    assert_eq!(body_json(&r)["error"], "FUNCTION_NOT_FOUND");
    assert!(r.text().contains("NoSuchFunction"), "{}", r.text());
    // From inside a handler: `?` passes the kind on (see `passed_on_kind`).
    let r = s.call("InvokeOther", b"NoSuchFunction:x");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "FUNCTION_NOT_FOUND");
    assert!(r.text().contains("NoSuchFunction"), "{}", r.text());
    s.stop();
}

#[test]
fn worker_crash() {
    let mut s = stack(&["Crash", "Echo", "InvokeOther"]);
    let r = s.call("Crash", b"");
    assert_eq!(r.status, 502);
    assert_eq!(body_json(&r)["error"], "WORKER_CRASHED");
    s.wait_for("a replacement worker", Duration::from_secs(30), || {
        s.function_stat("Crash", "idle") >= 1
    });
    // An internal call to a crashing function fails the caller's call (passing the kind on),
    // not the caller.
    let r = s.call("InvokeOther", b"Crash:x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "WORKER_CRASHED");
    assert_eq!(s.call("InvokeOther", b"Echo:alive").text(), "alive");
    s.stop();
}

#[test]
fn deadline() {
    let mut s = stack(&["Sleep", "InvokeOther"]);
    let r = s.call_with_timeout("Sleep", b"3000", 200);
    assert_eq!(r.status, 504);
    assert_eq!(body_json(&r)["error"], "TIMEOUT");
    s.wait_for("Sleep to be idle", Duration::from_secs(20), || {
        s.function_stat("Sleep", "running") == 0
    });
    // A nested call inherits the parent's remaining budget.
    let r = s.call_with_timeout("InvokeOther", b"Sleep:3000", 300);
    assert_eq!(r.status, 504, "{}", r.text());
    s.wait_for("Sleep to be idle", Duration::from_secs(20), || {
        s.function_stat("Sleep", "running") == 0
    });
    assert_eq!(s.call("Sleep", b"10").text(), "slept 10 ms");
    s.stop();
}

#[test]
fn passed_on_kind() {
    let functions = [
        rust_fn("PassOn", "PassOn", ""),
        // The callee's own timeout caps the internal call's deadline far below the caller's
        // (30 s by default), so the callee times out while the caller is still running.
        rust_fn("SleepShort", "Sleep", "timeout_ms = 200"),
        rust_fn("Crash", "Crash", ""),
        rust_fn("Fail", "Fail", ""),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    let r = s.call("PassOn", b"SleepShort:2000");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "TIMEOUT");
    let message = body_json(&r)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("SleepShort"), "{message}");
    assert!(!message.starts_with("timeout: "), "{message}");
    let r = s.call("PassOn", b"Crash:x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "WORKER_CRASHED");
    let r = s.call("PassOn", b"NoSuchFunction:x");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "FUNCTION_NOT_FOUND");
    // A plain handler error passed on stays HANDLER_FAILED with its message.
    let r = s.call("PassOn", b"Fail:x");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "HANDLER_FAILED");
    assert_eq!(body_json(&r)["message"], "Fail was called");
    // So does the handler's own error (no `:` in the input).
    let r = s.call("PassOn", b"no target");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "HANDLER_FAILED");
    s.wait_for("SleepShort to be idle", Duration::from_secs(20), || {
        s.function_stat("SleepShort", "running") == 0
    });
    s.stop();
}

/// The gRPC method reaches the handler: `grpc:conformance.Methods` (methods `First`,
/// `Second`) served by `Method`, which answers `ctx.method()`.
#[test]
fn method_name() {
    let functions = rust_fn(
        "\"grpc:conformance.Methods\"",
        "Method",
        "grpc_methods = [\"First\", \"Second\"]",
    ) + &rust_fn("Method", "Method", "");
    let mut s = Stack::start("", &functions);
    let call = |method: Option<&str>| {
        let headers: Vec<(&str, &str)> =
            method.map(|m| ("X-Gloam-Method", m)).into_iter().collect();
        s.client()
            .request("POST", "/function/grpc:conformance.Methods", &headers, b"")
            .expect("HTTP call")
    };
    let r = call(Some("Second"));
    assert_eq!((r.status, r.text().as_ref()), (200, "Second"));
    let r = call(None);
    assert_eq!((r.status, r.text().as_ref()), (200, "First"));
    let r = s.call("Method", b"");
    assert_eq!(
        (r.status, r.body.len()),
        (200, 0),
        "a plain function's method is empty"
    );
    s.stop();
}
