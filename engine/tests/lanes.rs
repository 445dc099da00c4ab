//! Direct lanes: a worker that keeps calling one function is leased a callee and its calls
//! skip the engine. Real engine, real Rust worker processes, real shared memory. With
//! `GLOAM_TEST_TRANSPORT=fifo` (no lanes) the same calls must give the same answers.

mod support;

use std::time::Duration;

use support::{rust_fn, Stack};

fn rings() -> bool {
    std::env::var("GLOAM_TEST_TRANSPORT").map_or(true, |t| t == "ring")
}

/// The status entry of the (single) worker of `function`.
fn worker_of(s: &Stack, function: &str) -> serde_json::Value {
    s.status()["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["function"] == function).cloned())
        .unwrap_or(serde_json::Value::Null)
}

fn metric(s: &Stack, line_prefix: &str) -> Option<f64> {
    let text = s
        .client()
        .get("/metrics")
        .expect("metrics")
        .text()
        .to_string();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_frequent_caller_gets_a_lane_every_call_is_counted_and_others_get_the_worker_back() {
    let functions = [
        rust_fn("Repeat", "Repeat", ""),
        rust_fn("Echo", "Echo", "max_workers = 1"),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    let payloads: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
    let input = format!("Echo:{}", payloads.join(","));
    let r = s.call("Repeat", input.as_bytes());
    assert_eq!(
        (r.status, r.text().as_ref()),
        (200, payloads.join(",").as_str())
    );

    // Every call is counted once, whichever way it went (lane calls reach the engine in the
    // callee's tallies, sent at the latest when it goes to sleep).
    s.wait_for("every call to be counted", Duration::from_secs(10), || {
        s.function_stat("Echo", "completed") >= 50
    });
    assert_eq!(s.function_stat("Echo", "completed"), 50);
    assert_eq!(
        metric(
            &s,
            "faas_invocations_total{function=\"Echo\",status=\"ok\"}"
        ),
        Some(50.0)
    );
    let direct = s.function_stat("Echo", "direct_calls");
    if rings() {
        assert!(direct >= 1, "no call went direct");
        assert_eq!(s.function_stat("Echo", "leased"), 1);
        let repeat = worker_of(&s, "Repeat");
        assert_eq!(worker_of(&s, "Echo")["leased_to"], repeat["id"]);
        assert_eq!(
            metric(&s, "gloam_direct_calls_total{function=\"Echo\"}"),
            Some(direct as f64)
        );
    } else {
        assert_eq!(direct, 0);
    }

    // The only Echo worker is leased: an external call gets it back, at once.
    let r = s.call("Echo", b"outside");
    assert_eq!((r.status, r.text().as_ref()), (200, "outside"));
    assert_eq!(s.function_stat("Echo", "leased"), 0);
    assert!(worker_of(&s, "Echo")["leased_to"].is_null());

    // After the cool-down the caller is leased a worker again.
    std::thread::sleep(Duration::from_millis(100));
    let r = s.call("Repeat", input.as_bytes());
    assert_eq!(r.status, 200);
    s.wait_for("every call to be counted", Duration::from_secs(10), || {
        s.function_stat("Echo", "completed") >= 101
    });
    assert_eq!(s.function_stat("Echo", "completed"), 101);
    if rings() {
        assert!(s.function_stat("Echo", "direct_calls") > direct);
    }
    // Shutdown with a lease in force still ends cleanly (checked by stop).
    s.stop();
}

#[test]
fn payloads_of_every_size_cross_a_lane_byte_exact() {
    let functions = [
        rust_fn("Repeat", "Repeat", ""),
        rust_fn("Echo", "Echo", "max_workers = 1"),
    ]
    .concat();
    let mut s = Stack::start("max_payload = 4194304", &functions);
    // 959, 960 and 961 bytes: the inline edge; 100 KB: a descriptor each way.
    let sizes = [0usize, 1, 959, 960, 961, 100_000, 5, 960];
    let payloads: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (0..*n)
                .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
                .collect()
        })
        .collect();
    let input = format!("Echo:{}", payloads.join(","));
    let r = s.call("Repeat", input.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), payloads.join(","));
    s.wait_for(
        "the engine to hold no payload",
        Duration::from_secs(10),
        || metric(&s, "gloam_payloads_held{}") == Some(0.0),
    );
    s.stop();
}

/// Small calls with large answers: on a lane the answer's descriptor goes through the engine,
/// which passes it to the lease's holder; the answers arrive whole, the calls still go direct,
/// and the engine holds nothing afterwards.
#[test]
fn large_answers_of_direct_calls_arrive_byte_exact() {
    let functions = [
        rust_fn("Repeat", "Repeat", ""),
        rust_fn("Fill", "Fill", "max_workers = 1"),
    ]
    .concat();
    let mut s = Stack::start("max_payload = 4194304", &functions);
    let fill = |n: usize| -> String { (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect() };
    let sizes = [3usize, 100_000, 961, 5, 2_000_000, 960, 100_000, 7, 50_000];
    let input = format!("Fill:{}", sizes.map(|n| n.to_string()).join(","));
    let expected = sizes.map(fill).join(",");
    for round in 0..3 {
        let r = s.call("Repeat", input.as_bytes());
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert!(r.text() == expected, "round {round}: answers differ");
    }
    if rings() {
        assert!(
            s.function_stat("Fill", "direct_calls") > 0,
            "no call went direct"
        );
    }
    s.wait_for(
        "the engine to hold no payload",
        Duration::from_secs(10),
        || metric(&s, "gloam_payloads_held{}") == Some(0.0),
    );
    s.stop();
}

#[test]
fn a_callee_that_dies_during_a_direct_call_fails_it_and_is_replaced() {
    let functions = [
        rust_fn("Repeat", "Repeat", ""),
        rust_fn("Sleep", "Sleep", "max_workers = 1"),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    let addr = s.addr.clone();
    let caller = std::thread::spawn(move || {
        let mut c = gloam_engine::client::HttpClient::new(addr.as_str()).unwrap();
        c.post("/function/Repeat", b"Sleep:1,1,5000").unwrap()
    });
    // The third call is the long one; with rings it runs on the lane granted after two.
    s.wait_for("the long call to run", Duration::from_secs(20), || {
        let w = worker_of(&s, "Sleep");
        if rings() {
            !w["leased_to"].is_null()
        } else {
            w["busy"] == true
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = worker_of(&s, "Sleep")["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the callee");
    let r = caller.join().expect("caller thread");
    // The caller's handler passes the crash on with its kind.
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("WORKER_CRASHED"), "{}", r.text());
    s.wait_for("a replacement worker", Duration::from_secs(30), || {
        let w = worker_of(&s, "Sleep");
        w["pid"].as_i64().is_some_and(|p| p as i32 != pid)
    });
    let r = s.call("Repeat", b"Sleep:1,1,1");
    assert_eq!(r.text(), "slept 1 ms,slept 1 ms,slept 1 ms");
    s.stop();
}

#[test]
fn a_direct_call_past_its_deadline_times_out_and_the_lane_recovers() {
    let functions = [
        rust_fn("Repeat", "Repeat", ""),
        rust_fn("Sleep", "Sleep", "max_workers = 1\ntimeout_ms = 500"),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    let r = s.call("Repeat", b"Sleep:1,1,2000");
    // The callee's TIMEOUT, passed on by the caller's handler.
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text().contains("did not finish by its deadline"),
        "{}",
        r.text()
    );
    // The sleeper finishes its late call, then serves again (on the lane or not).
    std::thread::sleep(Duration::from_millis(1700));
    let r = s.call("Repeat", b"Sleep:1,1,1,1");
    assert_eq!(r.text(), "slept 1 ms,slept 1 ms,slept 1 ms,slept 1 ms");
    // The late call counts as a timeout, once.
    s.wait_for(
        "the late call to be counted",
        Duration::from_secs(10),
        || s.function_stat("Sleep", "failed") == 1,
    );
    s.wait_for("every call to be counted", Duration::from_secs(10), || {
        s.function_stat("Sleep", "completed") >= 6
    });
    assert_eq!(s.function_stat("Sleep", "completed"), 6);
    s.stop();
}

#[test]
fn leases_granted_and_revoked_under_concurrent_load_lose_no_call() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let functions = [
        rust_fn("Repeat", "Repeat", "min_workers = 2\nmax_workers = 2"),
        rust_fn("Echo", "Echo", "min_workers = 2\nmax_workers = 2"),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    let addr = s.addr.clone();
    let done = Arc::new(AtomicBool::new(false));
    let external = Arc::new(AtomicU64::new(0));
    // Two callers that keep calling Echo (and so are leased its workers)...
    let callers: Vec<_> = (0..2)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = gloam_engine::client::HttpClient::new(addr.as_str()).unwrap();
                for round in 0..20 {
                    let payloads: Vec<String> =
                        (0..100).map(|i| format!("t{t}r{round}i{i}")).collect();
                    let input = format!("Echo:{}", payloads.join(","));
                    let r = c.post("/function/Repeat", input.as_bytes()).unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(r.text(), payloads.join(","));
                }
            })
        })
        .collect();
    // ...while external calls take those workers back, again and again.
    let others: Vec<_> = (0..2)
        .map(|t| {
            let (addr, done, external) = (addr.clone(), done.clone(), external.clone());
            std::thread::spawn(move || {
                let mut c = gloam_engine::client::HttpClient::new(addr.as_str()).unwrap();
                let mut i = 0;
                while !done.load(Ordering::Acquire) {
                    let body = format!("x{t}-{i}");
                    let r = c.post("/function/Echo", body.as_bytes()).unwrap();
                    assert_eq!((r.status, r.text().as_ref()), (200, body.as_str()));
                    external.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        })
        .collect();
    for t in callers {
        t.join().expect("a caller thread failed");
    }
    done.store(true, Ordering::Release);
    for t in others {
        t.join().expect("an external caller failed");
    }
    let total = 4000 + external.load(Ordering::Relaxed);
    s.wait_for("every call to be counted", Duration::from_secs(10), || {
        s.function_stat("Echo", "completed") >= total
    });
    assert_eq!(s.function_stat("Echo", "completed"), total);
    assert_eq!(s.function_stat("Echo", "failed"), 0);
    assert_eq!(s.function_stat("Repeat", "completed"), 40);
    if rings() {
        assert!(s.function_stat("Echo", "direct_calls") > 0);
    }
    s.stop();
}
