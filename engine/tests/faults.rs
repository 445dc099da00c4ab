//! Faults, end to end: a hung worker, a full ring, a caller killed with calls in flight. Real
//! engine (`gloam up`), real Rust worker processes (or workers played by hand), real HTTP.
//! Every wait has a bound and every test a hard limit, so a hang fails fast; nothing asserts
//! a time. The rogue peers are in `faults_rogue.rs`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use gloam_core::protocol::Kind;
use support::hand::{HandWorker, RawRegion, Ring};
use support::observe::{body_json, call_in_background, workers_of, Seen};
use support::process::{in_nanosleep, kill9, process_gone, Deadline};
use support::{rust_fn, Stack};

fn rings() -> bool {
    std::env::var("GLOAM_TEST_TRANSPORT").map_or(true, |t| t == "ring")
}

/// A worker whose call runs far past its deadline: its caller gets `TIMEOUT` at the deadline;
/// the worker is killed (through its launcher) once the grace period is over too, and a new
/// worker — another process, another worker id — serves the next call. Calls that arrived
/// meanwhile wait for the only slot the hung worker holds, and each ends exactly once: with
/// its own answer from the replacement, or with its own `TIMEOUT`.
#[test]
fn a_hung_worker_is_killed_after_its_deadline_and_replaced() {
    let _limit = Deadline::new("hung worker", Duration::from_secs(180));
    // Short enough to keep the test short, long enough (above the 2 s grace) that the calls
    // waiting behind the hung one can outlive it.
    let mut s = Stack::start(
        "",
        &rust_fn("Sleep", "Sleep", "max_workers = 1\ntimeout_ms = 4000"),
    );
    s.wait_for("the Sleep worker", Duration::from_secs(30), || {
        workers_of(&s, "Sleep").len() == 1
    });
    let hung = workers_of(&s, "Sleep")[0];

    let r = s.call("Sleep", b"600000");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "TIMEOUT");
    assert!(
        r.text().contains("did not finish by its deadline"),
        "{}",
        r.text()
    );
    // The hung worker still holds the only slot: these two wait in the queue.
    let waiting: Vec<_> = [b"21", b"22"]
        .iter()
        .map(|input| call_in_background(&s, "Sleep", input.to_vec()))
        .collect();
    // (Seen queued unless this thread was off its CPU for the whole grace period.)
    s.wait_for("two calls to queue", Duration::from_secs(20), || {
        s.function_stat("Sleep", "queued") == 2 || process_gone(hung.pid)
    });
    if !process_gone(hung.pid) {
        let w = workers_of(&s, "Sleep");
        assert!(w.len() == 1 && w[0] == Seen { busy: true, ..hung }, "{w:?}");
        assert_eq!(s.function_stat("Sleep", "running"), 0, "the ended call");
    }

    // Killed after the grace period (2 s), replaced by its launcher.
    s.wait_for(
        "the hung worker's process to be killed",
        Duration::from_secs(30),
        || process_gone(hung.pid),
    );
    s.wait_for("a replacement worker", Duration::from_secs(30), || {
        workers_of(&s, "Sleep")
            .iter()
            .any(|w| w.id != hung.id && w.pid != hung.pid)
    });
    let log = std::fs::read_to_string(&s.stderr_log).unwrap();
    assert!(log.contains("killing a hung worker"), "{log}");

    for (t, n) in waiting.into_iter().zip([21, 22]) {
        let r = t.join().unwrap();
        eprintln!("the call that waited for slept {n} ms: {}", r.status);
        match r.status {
            200 => assert_eq!(r.text(), format!("slept {n} ms")),
            504 => assert_eq!(body_json(&r)["error"], "TIMEOUT", "{}", r.text()),
            other => panic!("a waiting call ended with {other}: {}", r.text()),
        }
    }
    let r = s.call("Sleep", b"3");
    assert_eq!((r.status, r.text().as_ref()), (200, "slept 3 ms"));
    // Every call ended exactly once: the hung one (TIMEOUT, not again when its worker was
    // killed), the two that waited, the last one.
    s.wait_for("every call to be counted", Duration::from_secs(10), || {
        s.function_stat("Sleep", "completed") + s.function_stat("Sleep", "failed") >= 4
    });
    assert_eq!(
        s.function_stat("Sleep", "completed") + s.function_stat("Sleep", "failed"),
        4
    );
    assert_eq!(workers_of(&s, "Sleep").len(), 1);
    s.stop();
}

/// A worker (played by hand) makes 200 internal calls at once — three times what its ring
/// (or its pipe) holds — and reads nothing until all are sent and answered. The answers that
/// do not fit wait in the engine's backlog for that worker; meanwhile the engine serves other
/// callers. Then the worker reads: every answer arrives exactly once, with its own payload.
#[test]
fn a_worker_that_does_not_read_gets_every_answer_once_from_the_backlog() {
    let _limit = Deadline::new("full ring", Duration::from_secs(180));
    const CALLS: u32 = 200;
    let functions = format!(
        "{}[functions.Hand]\n",
        rust_fn("Echo", "Echo", "min_workers = 2")
    );
    let mut s = Stack::start("", &functions);
    let mut w = HandWorker::connect(&s, "Hand");
    s.wait_for("the workers", Duration::from_secs(30), || {
        s.function_stat("Hand", "workers") == 1 && s.function_stat("Echo", "workers") == 2
    });
    let mut expected = BTreeMap::new();
    for i in 0..CALLS {
        let payload = format!("backlog-{i}-{}", "x".repeat(i as usize % 7));
        let (id, msg) = w.invoke_msg("Echo", payload.as_bytes());
        w.send(&msg);
        expected.insert(id.sequence(), payload);
    }
    s.wait_for("Echo to run every call", Duration::from_secs(60), || {
        s.function_stat("Echo", "completed") >= u64::from(CALLS)
    });
    // Every answer was handed to the worker's link; the channel itself is full.
    if w.on_ring() {
        let region: RawRegion = w.region();
        let pending = region
            .tail(Ring::ToWorker)
            .wrapping_sub(region.head(Ring::ToWorker));
        assert_eq!(pending, gloam_core::ring::SLOTS, "the ring is full");
    } else {
        let (queued, capacity) = w.pipe_fill();
        assert!(
            queued + gloam_core::protocol::MESSAGE_SIZE > capacity,
            "the pipe is full: {queued} of {capacity} bytes"
        );
        assert!(capacity < CALLS as usize * gloam_core::protocol::MESSAGE_SIZE);
    }
    // The engine serves others meanwhile, and keeps the slow reader connected.
    for i in 0..5 {
        let body = format!("meanwhile {i}");
        let r = s.call("Echo", body.as_bytes());
        assert_eq!((r.status, r.text().as_ref()), (200, body.as_str()));
    }
    assert_eq!(s.function_stat("Hand", "workers"), 1);

    let mut got: BTreeMap<u32, String> = BTreeMap::new();
    for n in 0..CALLS {
        let m = w
            .recv(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("only {n} of {CALLS} answers arrived"));
        assert_eq!(m.header.kind, Kind::Complete, "{m:?}: {}", m.failure_text());
        assert_eq!(m.header.caller, w.id, "an answer to another worker's call");
        let text = String::from_utf8(m.inline_payload().to_vec()).unwrap();
        let seq = m.header.sequence;
        assert_eq!(expected.get(&seq), Some(&text), "answer to call {seq}");
        assert!(got.insert(seq, text).is_none(), "call {seq} answered twice");
    }
    assert_eq!(got, expected);
    assert!(
        w.recv(Duration::from_millis(200)).is_none(),
        "a message beyond the 200 answers"
    );

    // Drained, the link works as before: an internal call and a dispatched one.
    let (id, msg) = w.invoke_msg("Echo", b"after");
    w.send(&msg);
    let m = w.recv(Duration::from_secs(20)).expect("the answer");
    assert_eq!(
        (m.header.call_id(), m.inline_payload()),
        (id, &b"after"[..])
    );
    let caller = call_in_background(&s, "Hand", b"to the hand".to_vec());
    let call = w.expect_dispatch(Duration::from_secs(20));
    assert_eq!(call.inline_payload(), b"to the hand");
    w.send(&w.complete_msg(call.header.call_id(), b"from the hand"));
    let r = caller.join().unwrap();
    assert_eq!((r.status, r.text().as_ref()), (200, "from the hand"));
    drop(w);
    s.wait_for("the hand worker to leave", Duration::from_secs(20), || {
        s.function_stat("Hand", "workers") == 0
    });
    s.stop();
}

/// A caller process hosting three logical workers is SIGKILLed while each of them waits for a
/// slow internal call. Its launcher restarts it; the new workers reuse the slots with a new
/// generation. The orphaned calls run to their end and their answers reach nobody: the new
/// workers, whose own calls are in flight (queued behind the orphans) when those answers come,
/// get exactly their own results. The callees are freed, and no payload file is left.
#[test]
fn a_caller_killed_with_calls_in_flight_orphans_them_and_its_successor_gets_only_its_own() {
    let _limit = Deadline::new("caller killed", Duration::from_secs(180));
    let functions = [
        rust_fn(
            "Repeat",
            "Repeat",
            "min_workers = 3\nmax_workers = 3\nworkers_per_process = 3",
        ),
        rust_fn("Sleep", "Sleep", "min_workers = 3\nmax_workers = 3"),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    s.wait_for("the workers", Duration::from_secs(30), || {
        workers_of(&s, "Repeat").len() == 3 && workers_of(&s, "Sleep").len() == 3
    });
    let old = workers_of(&s, "Repeat");
    let pid = old[0].pid;
    assert!(old.iter().all(|w| w.pid == pid), "one process: {old:?}");

    // Inputs past the inline limit: every orphaned call's input went by descriptor.
    let pad = " ".repeat(1500);
    let doomed: Vec<_> = (0..3)
        .map(|i| {
            let input = format!("Sleep:{}{pad}", 8000 + i);
            call_in_background(&s, "Repeat", input.into_bytes())
        })
        .collect();
    s.wait_for(
        "the three slow calls to run",
        Duration::from_secs(20),
        || s.function_stat("Sleep", "running") == 3,
    );
    kill9(pid);
    for t in doomed {
        let r = t.join().unwrap();
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(body_json(&r)["error"], "WORKER_CRASHED");
    }

    s.wait_for("three new Repeat workers", Duration::from_secs(30), || {
        let now = workers_of(&s, "Repeat");
        now.len() == 3 && now.iter().all(|w| w.pid != pid)
    });
    let new = workers_of(&s, "Repeat");
    for w in &new {
        assert!(!old.iter().any(|o| o.id == w.id), "id {} reused", w.id);
    }
    // Freed slots are reused oldest first: the same slots, one generation on.
    let slots = |ws: &[Seen]| {
        let mut v: Vec<u32> = ws.iter().map(|w| w.slot()).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(slots(&new), slots(&old), "{old:?} -> {new:?}");
    for w in &new {
        let before = old.iter().find(|o| o.slot() == w.slot()).unwrap();
        assert!(w.generation() > before.generation(), "{before:?} -> {w:?}");
    }

    // The orphans still run; the new workers' calls queue behind them.
    assert_eq!(s.function_stat("Sleep", "running"), 3, "the orphans run");
    let mine: Vec<_> = (0..3)
        .map(|i| {
            let input = format!("Sleep:{},{}", 10 + i, 20 + i);
            (i, call_in_background(&s, "Repeat", input.into_bytes()))
        })
        .collect();
    for (i, t) in mine {
        let r = t.join().unwrap();
        let expected = format!("slept {} ms,slept {} ms", 10 + i, 20 + i);
        assert_eq!((r.status, r.text().as_ref()), (200, expected.as_str()));
    }

    // The callees are free again (idle, or leased to the new callers that keep calling
    // them); the orphans counted once each, as completed.
    s.wait_for("the callees to be free", Duration::from_secs(20), || {
        let free = s.function_stat("Sleep", "idle") + s.function_stat("Sleep", "leased");
        free == 3 && s.function_stat("Sleep", "running") == 0
    });
    s.wait_for("every call to be counted", Duration::from_secs(10), || {
        s.function_stat("Sleep", "completed") >= 9
    });
    assert_eq!(s.function_stat("Sleep", "completed"), 3 + 6);
    assert_eq!(s.function_stat("Sleep", "failed"), 0);
    assert_eq!(s.function_stat("Repeat", "failed"), 3);
    assert_eq!(s.function_stat("Repeat", "completed"), 3);
    s.wait_for(
        "the engine to hold no payload",
        Duration::from_secs(10),
        || s.metric("gloam_payloads_held{}") == Some(0.0),
    );
    s.stop();
}

/// A caller SIGKILLed while its call runs on a direct lane (ring transport; over FIFOs, or
/// when no lease was granted, the same call goes through the engine): the callee finishes the
/// orphaned call, its lease ends, and it serves the restarted caller — whose calls get their
/// own answers.
#[test]
fn a_lane_holder_killed_mid_call_frees_its_callee() {
    let _limit = Deadline::new("lane holder killed", Duration::from_secs(180));
    let functions = [
        rust_fn("Repeat", "Repeat", "max_workers = 1"),
        rust_fn("Sleep", "Sleep", "max_workers = 1"),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    s.wait_for("the workers", Duration::from_secs(30), || {
        workers_of(&s, "Repeat").len() == 1 && workers_of(&s, "Sleep").len() == 1
    });
    let holder = workers_of(&s, "Repeat")[0];
    let callee = workers_of(&s, "Sleep")[0];
    // Two quick calls, then the long one, on the lane granted after two. It runs once the
    // two quick ones are counted and the callee's handler sleeps (the status cannot tell a
    // lane call in progress from an idle lane).
    let doomed = call_in_background(&s, "Repeat", b"Sleep:1,1,5000".to_vec());
    s.wait_for("the long call to run", Duration::from_secs(20), || {
        let st = s.status();
        let w = st["workers"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["function"] == "Sleep").cloned())
            .unwrap_or_default();
        // On the lane (ring transport), or through the engine when no lease was granted
        // (the two quick calls were too far apart on a loaded machine, or over FIFOs).
        let on_its_way = w["busy"] == true || (rings() && w["leased_to"] == holder.id);
        on_its_way && s.function_stat("Sleep", "completed") == 2 && in_nanosleep(callee.pid)
    });
    let leased = workers_of(&s, "Sleep").first().is_some_and(|w| !w.busy);
    eprintln!(
        "the long call runs {}",
        if leased {
            "on a lane"
        } else {
            "through the engine"
        }
    );
    kill9(holder.pid);
    let r = doomed.join().unwrap();
    assert_eq!(r.status, 502, "{}", r.text());

    s.wait_for("a new Repeat worker", Duration::from_secs(30), || {
        workers_of(&s, "Repeat")
            .iter()
            .any(|w| w.pid != holder.pid && w.id != holder.id)
    });
    let r = s.call("Repeat", b"Sleep:5,6,7");
    assert_eq!(
        (r.status, r.text().as_ref()),
        (200, "slept 5 ms,slept 6 ms,slept 7 ms")
    );
    // The same callee served it: freed, not killed.
    assert_eq!(
        workers_of(&s, "Sleep").first().map(|w| w.id),
        Some(callee.id)
    );
    s.wait_for("every call to be counted", Duration::from_secs(10), || {
        s.function_stat("Sleep", "completed") >= 6
    });
    assert_eq!(s.function_stat("Sleep", "completed"), 6);
    s.stop();
}
