//! Rogue ends of direct lanes (ring transport only): a worker played by hand keeps calling a
//! function until the engine leases it a callee — a real worker — or is itself leased to a
//! real holder. What may one end then do to the other? It should be able to cost only itself
//! and that lease: what it receives with a lease is the lease's own region (and, for the
//! holder, the callee's doorbell), nothing of the other's rings or other lanes.
//!
//! Over FIFOs there are no lanes and no shared regions: these tests have nothing to check and
//! return at once.

mod support;

use std::time::Duration;

use gloam_core::lane::{phase, LEASE_FILE_BYTES};
use gloam_core::protocol::{Kind, MESSAGE_SIZE};
use gloam_core::ring::{BELL_FILE_BYTES, LEASE_WORDS};
use support::hand::{Garbage, HandWorker, RawRegion, LEASE_AND_BELL};
use support::observe::{call_in_background, connected, workers_of};
use support::process::{memfds, process_gone, Deadline};
use support::{rust_fn, Stack};

fn rings() -> bool {
    std::env::var("GLOAM_TEST_TRANSPORT").map_or(true, |t| t == "ring")
}

// The words of a lease region these tests touch (layout in `gloam_core::lane`).
const LANE_STATE: usize = 0;
const LANE_CALLEE: usize = 8;
const LANE_BELL: usize = 64;
const INBOUND_STATE: usize = 128;
const INBOUND_SLOT: usize = 1280;
/// The inbound phase of a call written and not taken.
const FULL: u32 = 1;

/// `Sleep` (one worker, `sleep_extra` added) and `Hand`, whose worker the test plays.
fn lane_stack(sleep_extra: &str) -> Stack {
    let functions = [
        rust_fn("Sleep", "Sleep", &format!("max_workers = 1\n{sleep_extra}")),
        "[functions.Hand]\nlimiter = false\n".to_string(),
    ]
    .concat();
    let s = Stack::start("", &functions);
    s.wait_for("the Sleep worker", Duration::from_secs(30), || {
        s.function_stat("Sleep", "workers") == 1
    });
    s
}

/// A lease the hand worker holds: its id, the callee's id, the lease's region and the
/// callee's doorbell region as the holder maps them.
struct Leased {
    lease: u32,
    callee: u32,
    region: RawRegion,
    callee_bell: RawRegion,
}

/// Calls `Sleep` ("0") through the engine, answer after answer, until the engine leases `h`
/// its worker (it sends the lease on the socket before it publishes it).
fn lease_sleep(s: &Stack, h: &mut HandWorker) -> Leased {
    for _ in 0..50 {
        let (id, msg) = h.invoke_msg("Sleep", b"0");
        h.send(&msg);
        let answer = h.recv(Duration::from_secs(20)).expect("an answer");
        assert_eq!(
            (answer.header.kind, answer.header.call_id()),
            (Kind::Complete, id)
        );
        if h.unread_on_socket() >= MESSAGE_SIZE {
            let got = h.read_lease();
            assert_eq!(
                got.sizes(),
                LEASE_AND_BELL,
                "a holder gets the lease's region and its callee's doorbell, nothing else"
            );
            let (lease, lane) = (got.lease(), got.lane());
            let region = h.map_raw(&got.fds[0], LEASE_FILE_BYTES);
            let callee_bell = h.map_raw(&got.fds[1], BELL_FILE_BYTES);
            let own = h.region();
            s.wait_for("the lease to be published", Duration::from_secs(10), || {
                own.word(LEASE_WORDS + 4 + 4 * lane) == lease
            });
            assert_eq!(region.word(LANE_STATE), lease << 4 | phase::IDLE);
            let callee = got.msg.header.worker_id;
            assert_eq!(region.word(LANE_CALLEE), callee);
            let w = s.status()["workers"]
                .as_array()
                .and_then(|ws| ws.iter().find(|w| w["id"] == callee).cloned())
                .expect("the callee");
            assert_eq!(w["leased_to"], h.id, "{w}");
            return Leased {
                lease,
                callee,
                region,
                callee_bell,
            };
        }
    }
    panic!("no lease after 50 quick calls");
}

/// Once the engine takes the callee back for an external call, a holder with the callee's
/// rings could write a `COMPLETE` for that call into them and answer it in the callee's name.
/// A holder has no such thing: nothing this process maps or holds reaches the callee's ring
/// region, and the garbage it writes into what it got (the whole lease region, the callee's
/// doorbell rung over and over) costs only that lease — the external caller gets the
/// callee's own answer, and the callee lives on.
#[test]
fn a_lane_holder_cannot_answer_its_callees_calls_in_its_name() {
    if !rings() {
        return;
    }
    let _limit = Deadline::new("forged answer through a lane", Duration::from_secs(120));
    let mut s = lane_stack("");
    let mut h = HandWorker::connect_blind(&s, "Hand");
    let leased = lease_sleep(&s, &mut h);
    let callee = workers_of(&s, "Sleep")[0];
    assert_eq!(callee.id, leased.callee);
    let callee_rings = memfds(Some(callee.pid), "gloam-ring-");
    assert_eq!(callee_rings.len(), 1, "the callee maps its own ring region");
    let reachable = memfds(None, "gloam-");
    assert!(
        callee_rings.is_disjoint(&reachable),
        "the holder's process reaches the callee's ring region"
    );
    assert_eq!(h.unread_on_socket(), 0, "nothing else came with the lease");

    let mut garbage = Garbage::new(0x5EED_0001);
    for at in (0..LEASE_FILE_BYTES).step_by(MESSAGE_SIZE) {
        leased.region.store(at, &garbage.record());
    }
    for _ in 0..100 {
        leased.callee_bell.ring_bell(0);
    }
    // The only Sleep worker is leased: the engine revokes the lease and dispatches.
    let caller = call_in_background(&s, "Sleep", b"1500".to_vec());
    for _ in 0..100 {
        leased.callee_bell.ring_bell(0);
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = caller.join().unwrap();
    assert_eq!(
        (r.status, r.text().as_ref()),
        (200, "slept 1500 ms"),
        "the callee's caller did not get the callee's answer"
    );
    assert!(!process_gone(callee.pid), "the callee died");
    assert!(connected(&s, callee.id));
    assert_eq!(s.call("Sleep", b"3").text(), "slept 3 ms");
    drop(h);
    s.stop();
}

/// The holder marks its lane CALLING without ever writing a call into the inbound slot. When
/// the engine revokes the lease to serve another caller, the lane says a call is in progress,
/// so the lease waits for the callee's answer — which never comes, since the callee has
/// nothing. The engine must find the holder at fault, not kill the innocent callee.
#[test]
fn a_lane_holder_faking_a_call_costs_only_itself() {
    if !rings() {
        return;
    }
    let _limit = Deadline::new("faked lane call", Duration::from_secs(120));
    let mut s = lane_stack("timeout_ms = 1000");
    let mut h = HandWorker::connect_blind(&s, "Hand");
    let leased = lease_sleep(&s, &mut h);
    let callee = workers_of(&s, "Sleep")[0];
    assert_eq!(callee.id, leased.callee);
    leased
        .region
        .set_word(LANE_STATE, leased.lease << 4 | phase::CALLING);

    // Another caller needs the callee: the engine revokes the lease.
    let caller = call_in_background(&s, "Sleep", b"1".to_vec());
    s.wait_for(
        "the engine to act on the holder or the callee",
        Duration::from_secs(30),
        || !connected(&s, h.id) || process_gone(callee.pid),
    );
    let log = std::fs::read_to_string(&s.stderr_log).unwrap();
    assert!(
        !process_gone(callee.pid),
        "the engine killed the innocent callee:\n{log}"
    );
    assert!(!connected(&s, h.id), "the lying holder is still connected");
    let r = caller.join().unwrap();
    assert!(matches!(r.status, 200 | 504), "{}", r.text());
    assert_eq!(s.call("Sleep", b"2").text(), "slept 2 ms");
    s.stop();
}

/// The holder starts a lane call the way the protocol says (its lane CALLING, then the
/// inbound slot written and marked FULL, the callee's doorbell rung) but the call it writes
/// is garbage. The callee fails that one call and lives on.
#[test]
fn a_lane_holder_delivering_a_garbage_call_costs_only_itself() {
    if !rings() {
        return;
    }
    let _limit = Deadline::new("garbage lane call", Duration::from_secs(120));
    let mut s = lane_stack("");
    let mut h = HandWorker::connect_blind(&s, "Hand");
    let leased = lease_sleep(&s, &mut h);
    let callee = workers_of(&s, "Sleep")[0];
    let (region, lease) = (&leased.region, leased.lease);
    region.set_word(LANE_STATE, lease << 4 | phase::CALLING);
    let mut garbage = Garbage::new(0x5EED_0007);
    region.store(INBOUND_SLOT, &garbage.record());
    region.set_word(INBOUND_STATE, lease << 4 | FULL);
    leased.callee_bell.ring_bell(0);
    s.wait_for(
        "the callee to answer or go",
        Duration::from_secs(30),
        || region.word(LANE_STATE) & phase::MASK != phase::CALLING || process_gone(callee.pid),
    );
    let logs = s.dir.path().join("logs").join("Sleep.0.stderr");
    assert!(
        !process_gone(callee.pid),
        "the callee died: {}\nengine: {}",
        std::fs::read_to_string(logs).unwrap_or_default(),
        std::fs::read_to_string(&s.stderr_log).unwrap_or_default()
    );
    assert!(connected(&s, callee.id));
    assert_eq!(region.word(LANE_STATE), lease << 4 | phase::REPLIED);
    assert_eq!(s.call("Sleep", b"4").text(), "slept 4 ms");
    drop(h);
    s.stop();
}

/// `Repeat "<function>:<tag>0,...,<tag>{n-1}"`, and the answer it gives when every call is
/// echoed.
fn repeat_input(function: &str, tag: &str, n: usize) -> (String, String) {
    let payloads: Vec<String> = (0..n).map(|i| format!("{tag}{i}")).collect();
    (
        format!("{function}:{}", payloads.join(",")),
        payloads.join(","),
    )
}

fn leased_to(s: &Stack, worker: u32) -> serde_json::Value {
    s.status()["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["id"] == worker).cloned())
        .map_or(serde_json::Value::Null, |w| w["leased_to"].clone())
}

/// A hostile callee: the hand worker is leased to a real holder (`Repeat`), which also holds
/// a lane to a real `Echo`. The callee gets the lease's region and nothing of its holder's
/// rings; it scribbles over the whole region while the holder waits on it and rings the lane's
/// doorbell. The holder's call on that lease fails, and nothing else of the holder changes:
/// it is the same worker, and its lane to `Echo` goes on carrying direct calls with the right
/// answers.
#[test]
fn a_lane_callee_cannot_disturb_another_lane_of_its_holder() {
    if !rings() {
        return;
    }
    let _limit = Deadline::new("rogue callee", Duration::from_secs(120));
    let functions = [
        rust_fn("Repeat", "Repeat", ""),
        rust_fn("Echo", "Echo", "max_workers = 1"),
        "[functions.Hand]\nlimiter = false\n".to_string(),
    ]
    .concat();
    let mut s = Stack::start("", &functions);
    let (input, want) = repeat_input("Echo", "p", 50);
    let r = s.call("Repeat", input.as_bytes());
    assert_eq!((r.status, r.text().as_ref()), (200, want.as_str()));
    s.wait_for(
        "the Echo calls to be counted",
        Duration::from_secs(10),
        || s.function_stat("Echo", "completed") >= 50,
    );
    let holder = workers_of(&s, "Repeat")[0];
    let echo = workers_of(&s, "Echo")[0];
    assert_eq!(
        leased_to(&s, echo.id),
        holder.id,
        "Repeat holds a lane to Echo"
    );
    let direct = s.function_stat("Echo", "direct_calls");

    let h = HandWorker::connect_blind(&s, "Hand");
    let (input, _) = repeat_input("Hand", "x", 40);
    let caller = call_in_background(&s, "Repeat", input.into_bytes());
    // The hand worker answers through the engine until the engine leases it to Repeat.
    let got = loop {
        if h.unread_on_socket() >= MESSAGE_SIZE {
            break h.read_lease();
        }
        assert!(
            !caller.is_finished(),
            "Repeat was never leased the hand worker"
        );
        if let Some(m) = h.recv(Duration::from_millis(50)) {
            assert_eq!(m.header.kind, Kind::Dispatch, "{m:?}");
            h.send(&h.complete_msg(m.header.call_id(), m.inline_payload()));
        }
    };
    assert_eq!(
        got.sizes(),
        vec![LEASE_FILE_BYTES],
        "a callee gets the lease's region, nothing else"
    );
    assert_eq!(got.msg.header.caller, holder.id);
    let lease = got.lease();
    let region = h.map_raw(&got.fds[0], LEASE_FILE_BYTES);
    let holder_rings = memfds(Some(holder.pid), "gloam-ring-");
    assert_eq!(holder_rings.len(), 1, "the holder maps its own ring region");
    assert!(
        holder_rings.is_disjoint(&memfds(None, "gloam-")),
        "the callee's process reaches its holder's ring region"
    );

    // The holder's next call waits in the lease; the callee scribbles instead of answering.
    s.wait_for("the holder's direct call", Duration::from_secs(20), || {
        region.word(INBOUND_STATE) == lease << 4 | FULL
    });
    let mut garbage = Garbage::new(0x5EED_0011);
    for at in (0..LEASE_FILE_BYTES).step_by(MESSAGE_SIZE) {
        region.store(at, &garbage.record());
    }
    assert_ne!(
        region.word(LANE_STATE) >> 4,
        lease,
        "the garbage names the lease"
    );
    // Wake the holder if it sleeps on the lane's doorbell (1: a sleeper announced).
    region.set_word(LANE_BELL, 1);
    region.ring_bell(LANE_BELL);
    let r = caller.join().unwrap();
    assert_ne!(r.status, 200, "{}", r.text());

    // The holder lives on, and its other lane is untouched.
    assert!(!process_gone(holder.pid), "the holder died");
    assert!(connected(&s, holder.id), "the holder was dropped");
    assert_eq!(
        leased_to(&s, echo.id),
        holder.id,
        "the lane to Echo was lost"
    );
    let (input, want) = repeat_input("Echo", "q", 50);
    let r = s.call("Repeat", input.as_bytes());
    assert_eq!((r.status, r.text().as_ref()), (200, want.as_str()));
    s.wait_for(
        "the Echo calls to be counted",
        Duration::from_secs(10),
        || s.function_stat("Echo", "completed") >= 100,
    );
    assert_eq!(
        s.function_stat("Echo", "direct_calls"),
        direct + 50,
        "every Echo call took the lane"
    );
    assert_eq!(leased_to(&s, echo.id), holder.id);
    drop(h);
    s.stop();
}
