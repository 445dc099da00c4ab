//! Rogue lane holders (ring transport only): a worker played by hand keeps calling a function
//! until the engine leases it a callee — a real worker — and hands it the callee's ring
//! region for the direct lane. What may the holder then do to the callee? It should be able
//! to cost only itself: the callee's callers get the callee's own answers, and the callee is
//! neither dropped nor killed for the holder's doing.
//!
//! Over FIFOs there are no lanes and no shared regions: these tests have nothing to check and
//! return at once.

mod support;

use std::time::Duration;

use gloam_core::lane::{phase, LANES};
use gloam_core::protocol::{Header, Kind, Message, MESSAGE_SIZE};
use gloam_core::ring::RINGS_END;
use support::hand::{HandWorker, RawRegion, Ring};
use support::observe::{call_in_background, connected, workers_of};
use support::process::{process_gone, Deadline};
use support::{rust_fn, Stack};

fn rings() -> bool {
    std::env::var("GLOAM_TEST_TRANSPORT").map_or(true, |t| t == "ring")
}

/// Where the lanes of a ring region start, and the size of one (see `gloam_core::lane`).
const LANE_BASE: usize = RINGS_END + MESSAGE_SIZE;
const LANE_BYTES: usize = 128 + MESSAGE_SIZE;

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

/// A lease the hand worker got: the callee's id, its region as the holder sees it, and the
/// lane it is on in the holder's own region.
struct Leased {
    callee: u32,
    callee_region: RawRegion,
    lane: usize,
}

/// Calls `Sleep` ("0") through the engine, answer after answer, until the engine leases `h`
/// its worker (it sends the callee's region on the socket before it grants the lane).
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
            let (callee, fd) = h.read_peer();
            let callee_region = h.map_region(&fd);
            let own = h.region();
            let lane = (0..LANES)
                .find(|&l| {
                    let at = LANE_BASE + l * LANE_BYTES;
                    own.word(at) & phase::MASK == phase::IDLE && own.word(at + 8) == callee
                })
                .expect("the granted lane");
            let w = s.status()["workers"]
                .as_array()
                .and_then(|ws| ws.iter().find(|w| w["id"] == callee).cloned())
                .expect("the callee");
            assert_eq!(w["leased_to"], h.id, "{w}");
            return Leased {
                callee,
                callee_region,
                lane,
            };
        }
    }
    panic!("no lease after 50 quick calls");
}

/// The holder has its callee's whole region — the callee's rings with the engine included.
/// Once the engine takes the callee back for an external call, the holder reads the
/// `DISPATCH` in the callee's engine → worker ring and writes a `COMPLETE` for it into the
/// callee's worker → engine ring. The engine should not take it as the callee's answer.
///
/// Reproduction: this test (`cargo test -p gloam-engine --test faults_rogue_lanes --
/// --ignored cannot_answer`). The external caller gets 200 "forged"; the callee's real answer is
/// lost (it writes it at its own cached tail, which the forgery already published, so the
/// engine sees no new message). Cause: a lane peer maps the whole ring region
/// (`RingFile::from_fd(..).into_peer()`), while it needs only the inbound slot, the inbound
/// control words and the lanes; the engine attributes whatever appears in a worker's ring to
/// that worker.
#[test]
#[ignore = "bug: a lane holder can write into its callee's worker → engine ring and answer the callee's calls in its name"]
fn a_lane_holder_cannot_answer_its_callees_calls_in_its_name() {
    if !rings() {
        return;
    }
    let _limit = Deadline::new("forged answer through a lane", Duration::from_secs(120));
    let mut s = lane_stack("");
    let mut h = HandWorker::connect(&s, "Hand");
    let leased = lease_sleep(&s, &mut h);
    let region = &leased.callee_region;
    let before = region.tail(Ring::ToWorker);
    // The only Sleep worker is leased: the engine revokes the (idle) lane and dispatches.
    let caller = call_in_background(&s, "Sleep", b"1500".to_vec());
    s.wait_for(
        "the call to reach the callee",
        Duration::from_secs(20),
        || region.tail(Ring::ToWorker) != before,
    );
    let slot = region.tail(Ring::ToWorker).wrapping_sub(1);
    let dispatch = Message::decode(&region.read_slot(Ring::ToWorker, slot), u64::MAX).unwrap();
    assert_eq!(dispatch.header.kind, Kind::Dispatch);
    assert_eq!(dispatch.inline_payload(), b"1500");

    let mut forged = Header::new(Kind::Complete);
    forged.set_call_id(dispatch.header.call_id());
    forged.worker_id = leased.callee;
    let tail = region.tail(Ring::ToEngine);
    region.write_slot(
        Ring::ToEngine,
        tail,
        &Message::with_inline(forged, b"forged").unwrap().to_bytes(),
    );
    region.set_tail(Ring::ToEngine, tail.wrapping_add(1));
    region.ring_engine();

    let r = caller.join().unwrap();
    assert_eq!(
        (r.status, r.text().as_ref()),
        (200, "slept 1500 ms"),
        "the callee's caller got the holder's answer"
    );
    drop(h);
    s.stop();
}

/// The holder marks its lane CALLING without ever writing a call into the callee's inbound
/// slot. When the engine revokes the lease to serve another caller, the lane says a call is in
/// progress, so the lease waits for the callee's answer — which never comes, since the callee
/// has nothing. The engine should find the holder at fault (the callee's inbound slot is
/// empty); instead, after the callee function's timeout plus the grace period, it kills the
/// callee, an innocent worker, and keeps the holder.
///
/// Reproduction: this test (`cargo test -p gloam-engine --test faults_rogue_lanes --
/// --ignored faking`). The engine log says "killing a hung worker: a revoked direct lane
/// (lease N) was never given back" about the Sleep worker; the hand worker stays connected.
/// Cause: `lanes::revoke` treats a CALLING lane of a live holder as busy whatever the
/// callee's inbound state, and `State::revoke_overdue` kills the callee.
#[test]
fn a_lane_holder_faking_a_call_costs_only_itself() {
    if !rings() {
        return;
    }
    let _limit = Deadline::new("faked lane call", Duration::from_secs(120));
    let mut s = lane_stack("timeout_ms = 1000");
    let mut h = HandWorker::connect(&s, "Hand");
    let leased = lease_sleep(&s, &mut h);
    let callee = workers_of(&s, "Sleep")[0];
    assert_eq!(callee.id, leased.callee);
    let own = h.region();
    let at = LANE_BASE + leased.lane * LANE_BYTES;
    own.set_word(at, (own.word(at) & !phase::MASK) | phase::CALLING);

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
/// callee's inbound slot written and marked FULL) but the call it writes is garbage. The
/// inbound slot is written by a peer worker, so it is untrusted input to the callee; the
/// callee should fail that one call (or ignore it) and live on. Instead its worker loop
/// takes the undecodable message for one from the engine and shuts down as if the engine
/// had: the process exits with status 0, silently, and its launcher restarts it. The holder
/// can stop any worker it is leased with one write.
///
/// Reproduction: this test (`cargo test -p gloam-engine --test faults_rogue_lanes --
/// --ignored garbage`); the engine log shows the Sleep worker's socket reset "while running
/// a direct call" and "worker process exited (exit code 0)". Cause:
/// `gloam_core::worker::inbox` records a decode failure of anything the channel returns —
/// the lane inbound slot included — as "engine sent a malformed message", which ends the
/// worker with `Shutdown`, and `serve` returns `Ok` on `Shutdown`.
#[test]
fn a_lane_holder_delivering_a_garbage_call_costs_only_itself() {
    if !rings() {
        return;
    }
    let _limit = Deadline::new("garbage lane call", Duration::from_secs(120));
    let mut s = lane_stack("");
    let mut h = HandWorker::connect(&s, "Hand");
    let leased = lease_sleep(&s, &mut h);
    let callee = workers_of(&s, "Sleep")[0];
    let own = h.region();
    let at = LANE_BASE + leased.lane * LANE_BYTES;
    let lease = own.word(at) >> 4;
    own.set_word(at, lease << 4 | phase::CALLING);
    let mut garbage = support::hand::Garbage::new(0x5EED_0007);
    leased.callee_region.store(RINGS_END, &garbage.record());
    // The inbound state word: lease << 4 | FULL.
    leased
        .callee_region
        .set_word(gloam_core::ring::INBOUND_CONTROL, lease << 4 | 1);
    leased.callee_region.ring_worker();
    s.wait_for(
        "the callee to answer or go",
        Duration::from_secs(30),
        || own.word(at) & phase::MASK != phase::CALLING || process_gone(callee.pid),
    );
    let logs = s.dir.path().join("logs").join("Sleep.0.stderr");
    assert!(
        !process_gone(callee.pid),
        "the callee died: {}\nengine: {}",
        std::fs::read_to_string(logs).unwrap_or_default(),
        std::fs::read_to_string(&s.stderr_log).unwrap_or_default()
    );
    assert!(connected(&s, callee.id));
    assert_eq!(s.call("Sleep", b"4").text(), "slept 4 ms");
    drop(h);
    s.stop();
}
