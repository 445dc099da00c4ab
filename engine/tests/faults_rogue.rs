//! Rogue peers, end to end: workers (played by hand) that write garbage into their ring,
//! answer calls they do not run, forge callers, plant bad output files, or flood the engine
//! with malformed records. Each costs its own connection and the call it held (whose caller
//! gets an error, not a hang) — nothing else: `/healthz` stays 200 and real workers keep
//! answering correctly throughout (a background [`Traffic`] checks every answer).

mod support;

use std::time::Duration;

use gloam_core::payload::{self, PayloadSide};
use gloam_core::protocol::{
    CallId, Header, Kind, Message, PayloadLocation, MESSAGE_SIZE, PROTOCOL_VERSION,
};
use gloam_engine::client::Response;
use support::hand::{Garbage, HandWorker, Ring};
use support::observe::{body_json, call_in_background, connected, workers_of, Traffic};
use support::process::Deadline;
use support::{rust_fn, Stack};

/// Echo (for the traffic), InvokeOther (an internal caller), Sleep, and `Hand`, a function
/// with no command whose workers the tests play.
fn rogue_stack() -> Stack {
    let functions = [
        rust_fn("Echo", "Echo", "min_workers = 2"),
        rust_fn("InvokeOther", "InvokeOther", ""),
        rust_fn("Sleep", "Sleep", ""),
        // No limiter: two hand workers may hold a call each whatever τ says.
        "[functions.Hand]\nlimiter = false\n".to_string(),
    ]
    .concat();
    let s = Stack::start("", &functions);
    s.wait_for("the real workers", Duration::from_secs(30), || {
        s.function_stat("Echo", "workers") == 2
            && s.function_stat("InvokeOther", "workers") == 1
            && s.function_stat("Sleep", "workers") == 1
    });
    s
}

fn healthy(s: &Stack) {
    let r = s.client().get("/healthz").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A hand worker of `Hand` holding a call, made from outside (`Hand` directly) or from
/// inside (`InvokeOther` → `Hand`): the worker, the caller's pending answer, the call.
fn rogue_holding_a_call(
    s: &Stack,
    internal: bool,
) -> (HandWorker, std::thread::JoinHandle<Response>, Message) {
    let w = HandWorker::connect(s, "Hand");
    s.wait_for("the hand worker", Duration::from_secs(20), || {
        connected(s, w.id)
    });
    let caller = if internal {
        call_in_background(s, "InvokeOther", b"Hand:held".to_vec())
    } else {
        call_in_background(s, "Hand", b"held".to_vec())
    };
    let call = w.expect_dispatch(Duration::from_secs(20));
    assert_eq!(call.inline_payload(), b"held");
    (w, caller, call)
}

/// The engine dropped worker `id`, whose caller got `WORKER_CRASHED`, naming `why` — or
/// saying only that the engine dropped it: the engine kicks the link before it ends the
/// worker's call, and the link's own task may end it first, with that text.
fn dropped_and_its_caller_failed(
    s: &Stack,
    id: u32,
    caller: std::thread::JoinHandle<Response>,
    why: &str,
) {
    s.wait_for(
        "the rogue to be disconnected",
        Duration::from_secs(20),
        || !connected(s, id),
    );
    let r = caller.join().unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(body_json(&r)["error"], "WORKER_CRASHED", "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(why) || text.contains("was dropped by the engine"),
        "expected {why:?} in {text}"
    );
    healthy(s);
}

/// (a) Random bytes in every slot of the worker → engine ring and wild counters (over FIFOs:
/// random records). The engine reads only its private copy of a slot and checks it: the
/// worker is dropped, the caller of the call it held gets an error, nobody else notices.
#[test]
fn a_worker_writing_garbage_into_its_ring_is_dropped_alone() {
    let _limit = Deadline::new("garbage ring", Duration::from_secs(180));
    let mut s = rogue_stack();
    let traffic = Traffic::start(&s);
    let mut garbage = Garbage::new(0x5EED_0001);
    for (round, internal) in [(0, false), (1, true)] {
        let (w, caller, _call) = rogue_holding_a_call(&s, internal);
        if w.on_ring() {
            let region = w.region();
            for slot in 0..gloam_core::ring::SLOTS {
                region.write_slot(Ring::ToEngine, slot, &garbage.record());
            }
            // The producer counter far ahead (round 0) or behind (round 1) of the consumer's;
            // the consumer's own counter scribbled over too (the engine never reads it back).
            let head = region.head(Ring::ToEngine);
            let wild = garbage.next_u64() as u32 | 0x8000_0000;
            region.set_tail(
                Ring::ToEngine,
                if round == 0 {
                    head.wrapping_add(wild)
                } else {
                    head.wrapping_sub(1)
                },
            );
            region.set_head(Ring::ToEngine, garbage.next_u64() as u32);
            region.set_head(Ring::ToWorker, garbage.next_u64() as u32);
            region.ring_engine();
        } else {
            // Over FIFOs the garbage is whole records (a pipe has no counters to corrupt).
            for _ in 0..8 {
                if !w.send_bytes(&garbage.record()) {
                    break;
                }
            }
        }
        dropped_and_its_caller_failed(&s, w.id, caller, "malformed");
        traffic.wait_served(&s, 5);
    }
    traffic.finish();
    assert_eq!(s.call("Echo", b"after").text(), "after");
    s.stop();
}

/// (b) A worker that answers a call it does not run (another worker's, in flight), one that
/// makes internal calls in another worker's name, one that reuses a call id in flight: each
/// is dropped; the call it held fails; the other worker's call gets its genuine answer and
/// the impersonated worker receives nothing.
#[test]
fn a_worker_answering_others_calls_or_forging_callers_is_dropped_alone() {
    let _limit = Deadline::new("forged answers and callers", Duration::from_secs(180));
    let mut s = rogue_stack();
    let traffic = Traffic::start(&s);

    // The rogue holds an internal call; a well-behaved hand worker holds an external one.
    let (rogue, rogue_caller, _) = rogue_holding_a_call(&s, true);
    let good = HandWorker::connect(&s, "Hand");
    s.wait_for("the good worker", Duration::from_secs(20), || {
        connected(&s, good.id)
    });
    let good_caller = call_in_background(&s, "Hand", b"for the good one".to_vec());
    let good_call = good.expect_dispatch(Duration::from_secs(20));
    // Its answer carries a payload by descriptor: the engine must not hold it for that call,
    // not even until it finds the answer is not the rogue's to give.
    let id = good_call.header.call_id();
    rogue.complete_by_descriptor(id, &[b'f'; 5000]);
    dropped_and_its_caller_failed(&s, rogue.id, rogue_caller, "does not run");
    assert_eq!(s.metric("gloam_payloads_held{}"), Some(0.0));
    good.complete_by_descriptor(id, &[b'g'; 5000]);
    let r = good_caller.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.body == [b'g'; 5000],
        "the caller got another answer than its worker's"
    );
    traffic.wait_served(&s, 5);

    // An INVOKE in the good worker's name (its id as the caller, so its call id too).
    let forger = HandWorker::connect(&s, "Hand");
    s.wait_for("the forger", Duration::from_secs(20), || {
        connected(&s, forger.id)
    });
    let mut h = Header::new(Kind::Invoke);
    h.set_call_id(CallId::new(good.id, 7));
    h.function_id = forger.function_id("Echo");
    h.worker_id = forger.id;
    forger.send(&Message::with_inline(h, b"in your name").unwrap());
    s.wait_for(
        "the forger to be disconnected",
        Duration::from_secs(20),
        || !connected(&s, forger.id),
    );
    healthy(&s);
    assert!(
        good.recv(Duration::from_millis(300)).is_none(),
        "the impersonated worker received something"
    );
    traffic.wait_served(&s, 5);

    // An INVOKE reusing the call id of its own call still in flight. (The good worker holds
    // a call meanwhile, so that the reuser's call is the reuser's.)
    let good_busy = call_in_background(&s, "Hand", b"keep busy".to_vec());
    let busy_call = good.expect_dispatch(Duration::from_secs(20));
    let (mut reuser, reuser_caller, _) = rogue_holding_a_call(&s, false);
    let (_, first) = reuser.invoke_msg("Sleep", b"300");
    reuser.send(&first);
    reuser.send(&first);
    dropped_and_its_caller_failed(&s, reuser.id, reuser_caller, "reuses call id");
    // The orphaned Sleep call ends on its own; its callee serves again.
    s.wait_for("the callee to be free", Duration::from_secs(20), || {
        s.function_stat("Sleep", "running") == 0 && s.function_stat("Sleep", "queued") == 0
    });
    let r = s.call("Sleep", b"1");
    assert_eq!((r.status, r.text().as_ref()), (200, "slept 1 ms"));

    // The good worker still serves.
    good.send(&good.complete_msg(busy_call.header.call_id(), b"was busy"));
    assert_eq!(good_busy.join().unwrap().text(), "was busy");
    let caller = call_in_background(&s, "Hand", b"again".to_vec());
    let call = good.expect_dispatch(Duration::from_secs(20));
    good.send(&good.complete_msg(call.header.call_id(), b"still good"));
    assert_eq!(caller.join().unwrap().text(), "still good");
    traffic.finish();
    drop(good);
    s.stop();
}

/// How a rogue spoils the output payload of its answer.
#[derive(Debug, Clone, Copy)]
enum Spoil {
    /// Sends a memfd it did not seal (it could shrink it under a reader's mapping).
    Unsealed,
    /// Sends a sealed payload shorter than its `COMPLETE` says.
    Short,
    /// Sends the read end of a pipe instead (a reader that read it would hang).
    Pipe,
    /// Announces the payload in its `COMPLETE` but never sends a descriptor.
    Missing,
}

/// Answers `call` with a 5000-byte output passed by descriptor, spoiled as `how`.
fn answer_with_spoiled_payload(w: &HandWorker, call: &Message, how: Spoil) {
    use std::os::unix::fs::FileExt;
    let id = call.header.call_id();
    let fd: Option<std::os::fd::OwnedFd> = match how {
        Spoil::Unsealed => {
            let fd = nix::sys::memfd::memfd_create(
                c"rogue",
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
            )
            .unwrap();
            std::fs::File::from(fd.try_clone().unwrap())
                .write_all_at(&[b'o'; 5000], 0)
                .unwrap();
            Some(fd)
        }
        Spoil::Short => Some(payload::create(&[b'o'; 10], u64::MAX).unwrap()),
        Spoil::Pipe => Some(nix::unistd::pipe().unwrap().0),
        Spoil::Missing => None,
    };
    if let Some(fd) = &fd {
        w.socket
            .send_payload(id, PayloadSide::Output, 5000, fd, false)
            .unwrap();
    }
    let mut h = Header::new(Kind::Complete);
    h.set_call_id(id);
    h.worker_id = w.id;
    h.payload_loc = PayloadLocation::Descriptor;
    h.payload_len = 5000;
    w.send(&Message::new(h));
}

/// (c) A worker answers with an output payload it did not seal, shorter than it says, a pipe
/// in its place, or none at all. Its caller — outside, or a real worker inside — gets an
/// error at once, never the planted bytes and never a hang; the engine stays healthy and holds
/// no payload afterwards.
#[test]
fn a_spoiled_output_payload_fails_only_that_call() {
    let _limit = Deadline::new("spoiled output payloads", Duration::from_secs(180));
    let mut s = rogue_stack();
    let traffic = Traffic::start(&s);
    let cases = [
        (Spoil::Unsealed, false),
        (Spoil::Short, false),
        (Spoil::Pipe, false),
        (Spoil::Missing, false),
        (Spoil::Unsealed, true),
        (Spoil::Short, true),
        (Spoil::Pipe, true),
        (Spoil::Missing, true),
    ];
    for (how, internal) in cases {
        let (w, caller, call) = rogue_holding_a_call(&s, internal);
        answer_with_spoiled_payload(&w, &call, how);
        let r = caller.join().unwrap();
        let text = r.text().into_owned();
        assert!(
            r.status >= 400,
            "{how:?} (internal: {internal}): {} {text}",
            r.status
        );
        assert!(!text.contains("ooo"), "{how:?}: {text}");
        if !internal {
            // The spoiler broke the protocol: dropped, its call failed as crashed.
            assert_eq!(body_json(&r)["error"], "WORKER_CRASHED", "{how:?}: {text}");
            assert!(text.contains("payload"), "{how:?}: {text}");
        }
        healthy(&s);
        s.wait_for(
            "the engine to hold no payload",
            Duration::from_secs(10),
            || s.metric("gloam_payloads_held{}") == Some(0.0),
        );
        traffic.wait_served(&s, 5);
        drop(w);
    }
    traffic.finish();
    s.stop();
}

/// (c, continued) The worker that spoiled its output payload broke the protocol like one that
/// sent garbage, and is dropped the same way (`STYLE.md`: "a misbehaving peer is
/// disconnected"): the engine checks an answer's payload before it routes the answer.
#[test]
fn a_worker_that_spoils_its_output_payload_is_dropped() {
    let _limit = Deadline::new("spoiling worker dropped", Duration::from_secs(120));
    let mut s = rogue_stack();
    let (w, caller, call) = rogue_holding_a_call(&s, false);
    answer_with_spoiled_payload(&w, &call, Spoil::Short);
    let r = caller.join().unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    s.wait_for(
        "the spoiler to be disconnected",
        Duration::from_secs(20),
        || !connected(&s, w.id),
    );
    drop(w);
    s.stop();
}

/// Malformed records of every sort: random bytes, a wrong version, an unknown kind, unknown
/// flags, an inline length past the message, a payload length past the limit, messages only the
/// engine may send, an answer for no call.
fn malformed(n: usize, garbage: &mut Garbage, worker: u32) -> [u8; MESSAGE_SIZE] {
    let valid = |kind: Kind| {
        let mut h = Header::new(kind);
        h.worker_id = worker;
        h.set_call_id(CallId::new(worker, n as u32));
        Message::new(h).to_bytes()
    };
    let mut m = valid(Kind::Complete);
    match n % 9 {
        0 => return garbage.record(),
        1 => m[0] = PROTOCOL_VERSION + 1,
        2 => m[1] = 0xEE,
        3 => m[2..4].copy_from_slice(&0x8000u16.to_le_bytes()),
        4 => m[32..36].copy_from_slice(&4000u32.to_le_bytes()),
        5 => {
            m[36] = PayloadLocation::Descriptor as u8;
            m[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        6 => return valid(Kind::Dispatch),
        7 => return valid(Kind::Welcome),
        _ => {
            let mut h = Header::new(Kind::Complete);
            h.set_call_id(CallId::new(0, 0xDEAD));
            return Message::new(h).to_bytes();
        }
    }
    m
}

/// (d) No message makes the engine panic by design, so the next best thing: 60 workers, one
/// after another, each flood the engine with malformed records as fast as it takes them.
/// Thousands of records cost exactly their senders' connections: the engine stays healthy,
/// the traffic is served throughout, worker ids are recycled, and the engine's descriptors
/// and the IPC root come back to what they were.
#[test]
fn thousands_of_malformed_records_cost_only_their_senders_connections() {
    let _limit = Deadline::new("malformed flood", Duration::from_secs(240));
    const ROGUES: usize = 60;
    const PER_ROGUE: usize = 200;
    let mut s = rogue_stack();
    let engine_pid = s.child.as_ref().unwrap().id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{engine_pid}/fd"))
            .unwrap()
            .count()
    };
    let real: Vec<u32> = s.status()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_u64().unwrap() as u32)
        .collect();
    let traffic = Traffic::start(&s);
    traffic.wait_served(&s, 3);
    let fds_before = fds();
    let root_before = s.ipc_root_entries();
    let mut garbage = Garbage::new(0x5EED_0004);
    let (mut sent, mut top_slot) = (0usize, 0u32);
    for r in 0..ROGUES {
        let w = HandWorker::connect(&s, "Hand");
        top_slot = top_slot.max(w.id & 0xFFFF);
        for n in 0..PER_ROGUE {
            // Kinds rotate from one rogue to the next, so each kind comes first somewhere.
            if !w.send_bytes(&malformed(n + r, &mut garbage, w.id)) {
                break;
            }
            sent += 1;
        }
        s.wait_for(
            "the rogue to be disconnected",
            Duration::from_secs(20),
            || !connected(&s, w.id),
        );
    }
    eprintln!("{ROGUES} rogues sent {sent} malformed records; highest slot {top_slot}");
    assert!(sent >= 1000, "only {sent} records went out");
    healthy(&s);
    traffic.wait_served(&s, 5);
    assert!(traffic.finish() > 0);
    // The real workers are the same ones; each rogue's id went back to the pool.
    let now: Vec<u32> = s.status()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(now, real);
    assert!(
        top_slot as usize <= real.len() + 2,
        "slots leak: {top_slot}"
    );
    // Descriptors: back to where they were, give or take HTTP connections closing.
    s.wait_for(
        "the engine's descriptors to come back",
        Duration::from_secs(20),
        || fds() <= fds_before + 8,
    );
    assert_eq!(s.ipc_root_entries(), root_before);
    assert_eq!(workers_of(&s, "Hand").len(), 0);
    assert_eq!(s.call("Echo", b"after the flood").text(), "after the flood");
    s.stop();
}

/// (e) A worker's channel is its own and has no name: its ring region and doorbells are
/// memfds, its pipes anonymous, handed to it alone with `WELCOME`. Nothing in the IPC root
/// leads to any worker's channel — no `fifo/`, no FIFO or ring file anywhere under it — so
/// a worker that can reach the root (a sandbox shows it `engine.sock`) cannot
/// open another's channel by a path; and two workers never share a channel.
#[test]
fn a_workers_channel_has_no_name_another_worker_could_open() {
    let _limit = Deadline::new("nameless channels", Duration::from_secs(120));
    let mut s = rogue_stack();
    let a = HandWorker::connect(&s, "Hand");
    let b = HandWorker::connect(&s, "Hand");
    let inodes = |w: &HandWorker| -> Vec<(u64, u64)> {
        w.channel_fds()
            .into_iter()
            .map(|fd| {
                let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(fd)).unwrap();
                let link = std::fs::read_link(format!(
                    "/proc/self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(fd)
                ))
                .unwrap();
                let link = link.to_string_lossy().into_owned();
                if a.on_ring() {
                    assert!(link.starts_with("/memfd:"), "{link}");
                } else {
                    let kind = st.st_mode & libc::S_IFMT;
                    assert_eq!(kind, libc::S_IFIFO, "{link}");
                    assert!(link.starts_with("pipe:["), "a named FIFO: {link}");
                }
                (st.st_dev, st.st_ino)
            })
            .collect()
    };
    let (of_a, of_b) = (inodes(&a), inodes(&b));
    assert_eq!(of_a.len(), if a.on_ring() { 3 } else { 2 });
    assert_eq!(of_a.len(), of_b.len());
    // The engine's doorbell region is shared by design; everything else is per worker.
    let shared: Vec<_> = of_a.iter().filter(|i| of_b.contains(i)).collect();
    assert!(shared.len() <= usize::from(a.on_ring()), "{shared:?}");
    // Nothing under the IPC root is a channel: only the lock, the socket and payloads.
    assert_eq!(s.ipc_root_entries(), ["engine.lock", "engine.sock"]);
    let mut stack = vec![s.ipc_root()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let id = (
                std::os::unix::fs::MetadataExt::dev(&meta),
                std::os::unix::fs::MetadataExt::ino(&meta),
            );
            assert!(!of_a.contains(&id) && !of_b.contains(&id), "{:?}", e.path());
            let ty = meta.file_type();
            assert!(
                !std::os::unix::fs::FileTypeExt::is_fifo(&ty),
                "a FIFO in the IPC root: {:?}",
                e.path()
            );
            if ty.is_dir() {
                stack.push(e.path());
            }
        }
    }
    // Both channels work, each for its own worker: two calls, one to each idle worker.
    let callers: Vec<_> = (0..2)
        .map(|_| call_in_background(&s, "Hand", b"whose".to_vec()))
        .collect();
    for w in [&a, &b] {
        let call = w.expect_dispatch(Duration::from_secs(20));
        w.send(&w.complete_msg(call.header.call_id(), w.id.to_string().as_bytes()));
    }
    let mut answers: Vec<String> = callers
        .into_iter()
        .map(|c| {
            let r = c.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            r.text().into_owned()
        })
        .collect();
    answers.sort();
    let mut ids = vec![a.id.to_string(), b.id.to_string()];
    ids.sort();
    assert_eq!(answers, ids);
    drop((a, b));
    healthy(&s);
    s.stop();
}
