//! A model-based property test of the state: random sequences of events — calls from outside
//! and from workers, answers, crashes, restarts that reuse worker slots, time passing
//! (deadlines, hung workers), leases granted, revoked and recorded, bogus messages, shutdown,
//! the launcher's reports (processes that crash, exit before ready or cannot start) —
//! driven against a model of the workers and callers around the engine. After every step the
//! state's invariants hold, every result goes to its own caller (a live one) exactly once, and
//! no worker gets a call while it holds one; at the end, once time has passed and every worker
//! is gone, every call ended exactly once and nothing is left. Calls come in both priority
//! classes (interactive, and background as asynchronous calls are); the invariants hold the
//! classes apart (a background call never runs while an interactive one could take its
//! worker, and background calls keep within their share of τ).

use std::collections::{HashMap, HashSet};

use gloam_core::protocol::{CallId, Header, Kind, Message};
use gloam_core::tally::Tally;
use gloam_core::ErrorKind;
use proptest::prelude::*;

use super::test_support::{state_of, worker, TestActions, TestState, MS};
use super::{Action, Class, Outcome, Phase, ProcessEnd, WorkerId};

#[derive(Debug, Clone)]
enum Op {
    External {
        function: u16,
        background: bool,
    },
    Internal {
        caller: usize,
        function: u16,
    },
    Answer {
        worker: usize,
        fail: bool,
        /// Answer the pipelined call first (a handler that runs calls concurrently).
        last_first: bool,
    },
    Crash {
        worker: usize,
    },
    Connect {
        function: u16,
        fail_handshake: bool,
    },
    Advance {
        ms: u64,
    },
    LaneRecords {
        callee: usize,
        calls: u32,
        end: bool,
        stale: bool,
    },
    LeaseOver {
        which: usize,
    },
    Shrink,
    BogusAnswer {
        worker: usize,
    },
    Drain,
    /// The launcher reports a process that never had a ready worker: exited early, or not
    /// started at all.
    StartFails {
        function: u16,
        spawned: bool,
    },
    /// A ready worker's whole process dies: its workers go, then the launcher reports it.
    ProcessDies {
        worker: usize,
    },
    /// The function's program was rebuilt: its processes are replaced.
    Roll {
        function: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => ((1u16..=2), prop::bool::weighted(0.4)).prop_map(|(function, background)| Op::External { function, background }),
        4 => (any::<usize>(), 1u16..=3).prop_map(|(caller, function)| Op::Internal { caller, function }),
        6 => (any::<usize>(), prop::bool::weighted(0.2), prop::bool::weighted(0.2)).prop_map(|(worker, fail, last_first)| Op::Answer { worker, fail, last_first }),
        1 => any::<usize>().prop_map(|worker| Op::Crash { worker }),
        2 => ((1u16..=2), prop::bool::weighted(0.1)).prop_map(|(function, fail_handshake)| Op::Connect { function, fail_handshake }),
        3 => (0u64..400).prop_map(|ms| Op::Advance { ms }),
        2 => (any::<usize>(), 0u32..5, any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(callee, calls, end, stale)| Op::LaneRecords { callee, calls, end, stale }),
        1 => any::<usize>().prop_map(|which| Op::LeaseOver { which }),
        1 => Just(Op::Shrink),
        1 => any::<usize>().prop_map(|worker| Op::BogusAnswer { worker }),
        1 => prop::bool::weighted(0.05).prop_map(|drain| if drain { Op::Drain } else { Op::Shrink }),
        1 => ((1u16..=2), any::<bool>()).prop_map(|(function, spawned)| Op::StartFails { function, spawned }),
        1 => any::<usize>().prop_map(|worker| Op::ProcessDies { worker }),
        1 => (1u16..=2).prop_map(|function| Op::Roll { function }),
    ]
}

/// A worker as the model sees it.
#[derive(Debug)]
struct ModelWorker {
    id: WorkerId,
    /// The calls dispatched to it and not answered yet (even if they ended for their
    /// callers), oldest first: one, or two when one was pipelined behind the other.
    holding: Vec<CallId>,
    /// Its internal calls waiting for a reply.
    waiting: HashSet<CallId>,
    next_seq: u32,
    retired: bool,
}

struct Harness {
    st: TestState,
    now: u64,
    next_handle: u64,
    /// External calls admitted and not answered: handle → call.
    external: HashMap<u64, CallId>,
    workers: Vec<ModelWorker>,
    draining: bool,
    /// Whether the state pipelines calls.
    pipeline: bool,
    /// Process groups handed to processes that never get a ready worker.
    next_group: u32,
}

impl Harness {
    fn new(pipeline: bool) -> Harness {
        let mut st = state_of(
            "[functions.A]\nid = 1\ncommand = \"/bin/true\"\nmax_workers = 3\n\
             timeout_ms = 200\nqueue_bound = 4\nshrink_grace_ms = 300\n\
             [functions.B]\nid = 2\ncommand = \"/bin/true\"\nmax_workers = 2\n\
             timeout_ms = 1000\nqueue_bound = 4\nmax_relative_queueing_delay = 1.0\n",
        );
        if pipeline {
            // Every call of these functions is short enough.
            st.options.pipeline_below_ns = u64::MAX;
        }
        let mut h = Harness {
            st,
            pipeline,
            now: 0,
            next_handle: 1,
            external: HashMap::new(),
            workers: Vec::new(),
            draining: false,
            next_group: 1 << 20,
        };
        h.st.launcher_started(1, 1);
        h.st.launcher_started(2, 1);
        h
    }

    fn pick(&self, i: usize) -> Option<usize> {
        (!self.workers.is_empty()).then(|| i % self.workers.len())
    }

    fn model(&mut self, id: WorkerId) -> &mut ModelWorker {
        match self.workers.iter_mut().find(|w| w.id == id) {
            Some(w) => w,
            None => panic!("the state addressed worker {id}, which is gone"),
        }
    }

    /// Checks every action against the model, and carries out kills.
    fn actions(&mut self, actions: TestActions) {
        let mut killed = Vec::new();
        for a in actions {
            match a {
                Action::Send { worker, msg, .. } => {
                    let id = msg.header.call_id();
                    let room = if self.pipeline { 2 } else { 1 };
                    let w = self.model(worker);
                    match msg.header.kind {
                        Kind::Dispatch => {
                            assert!(
                                w.holding.len() < room,
                                "{worker} got {id} while holding {:?}",
                                w.holding
                            );
                            w.holding.push(id);
                        }
                        Kind::Complete | Kind::Failed => {
                            assert_eq!(id.caller(), worker.raw(), "{id} answered to {worker}");
                            assert!(w.waiting.remove(&id), "{worker} got {id} twice or unasked");
                        }
                        Kind::Retire => w.retired = true,
                        other => panic!("unexpected {other:?} to a worker"),
                    }
                }
                Action::Reply { to, outcome } => {
                    let Some(id) = self.external.remove(&to) else {
                        panic!("external call {to} answered twice or never admitted");
                    };
                    if let Outcome::Complete(msg, _) = outcome {
                        assert_eq!(msg.header.call_id(), id, "another call's answer");
                    }
                }
                Action::Kill { worker, .. } => killed.push(worker),
                _ => {}
            }
        }
        for w in killed {
            self.gone(w, "killed");
        }
    }

    fn gone(&mut self, id: WorkerId, why: &str) {
        let actions = self.st.worker_gone(id, why, self.now);
        self.workers.retain(|w| w.id != id);
        self.actions(actions);
    }

    fn check(&self, after: &str) {
        if let Err(e) = self.st.check_invariants(self.now) {
            panic!("after {after} at {} ms: {e}", self.now / MS);
        }
    }

    fn step(&mut self, op: Op) {
        let what = format!("{op:?}");
        self.now += 10_000; // 10 µs between events
        match op {
            Op::External {
                function,
                background,
            } => {
                let handle = self.next_handle;
                self.next_handle += 1;
                // Asynchronous calls have their own caller part (as the engine's do).
                let caller = if background { 0x0001_0000 } else { 0 };
                let id = CallId::new(caller, handle as u32);
                let mut h = Header::new(Kind::Dispatch);
                h.set_call_id(id);
                let class = if background {
                    Class::Background
                } else {
                    Class::Interactive
                };
                let admitted = self.st.admit_external_as(
                    id,
                    function,
                    handle,
                    Box::new(Message::new(h)),
                    class,
                    self.now,
                );
                match admitted {
                    Ok(actions) => {
                        self.external.insert(handle, id);
                        self.actions(actions);
                    }
                    Err((r, _)) => {
                        assert!(
                            matches!(
                                r.kind,
                                ErrorKind::Overloaded
                                    | ErrorKind::Shutdown
                                    | ErrorKind::FunctionUnavailable
                            ),
                            "refused: {r:?}"
                        );
                        if r.kind == ErrorKind::FunctionUnavailable {
                            let f = self.st.function(function).expect("function");
                            assert_eq!(f.ready_workers, 0, "unavailable with a ready worker");
                        }
                    }
                }
            }
            Op::Internal { caller, function } => {
                let Some(i) = self.pick(caller) else { return };
                let w = &mut self.workers[i];
                w.next_seq += 1;
                let id = CallId::new(w.id.raw(), w.next_seq);
                w.waiting.insert(id);
                let caller = w.id;
                let mut h = Header::new(Kind::Invoke);
                h.set_call_id(id);
                h.function_id = function;
                let actions = self
                    .st
                    .admit_internal(caller, Box::new(Message::new(h)), self.now)
                    .expect("a well-formed INVOKE");
                self.actions(actions);
            }
            Op::Answer {
                worker,
                fail,
                last_first,
            } => {
                let Some(i) = self.pick(worker) else { return };
                let holding = &mut self.workers[i].holding;
                let Some(call) = (if last_first {
                    holding.pop()
                } else if holding.is_empty() {
                    None
                } else {
                    Some(holding.remove(0))
                }) else {
                    return;
                };
                let id = self.workers[i].id;
                let mut h = Header::new(if fail { Kind::Failed } else { Kind::Complete });
                h.set_call_id(call);
                let msg = if fail {
                    Message::failure(h, ErrorKind::HandlerFailed, "no")
                } else {
                    Message::new(h)
                };
                let actions = self
                    .st
                    .worker_answered(id, Box::new(msg), self.now)
                    .expect("an answer to the call it holds");
                self.actions(actions);
                // A retired worker goes once it has answered every call it was sent.
                if self
                    .workers
                    .iter()
                    .any(|w| w.id == id && w.retired && w.holding.is_empty())
                {
                    self.gone(id, "retired");
                }
            }
            Op::Crash { worker } => {
                let Some(i) = self.pick(worker) else { return };
                let id = self.workers[i].id;
                self.gone(id, "crashed");
            }
            Op::Connect {
                function,
                fail_handshake,
            } => {
                let Ok(id) = self.st.reserve_worker(function) else {
                    return;
                };
                self.st
                    .worker_connected(id, 1, 7 + u32::from(id.slot()), "model", id.raw());
                if fail_handshake {
                    let actions = self.st.worker_gone(id, "failed its handshake", self.now);
                    self.actions(actions);
                    return;
                }
                self.workers.push(ModelWorker {
                    id,
                    holding: Vec::new(),
                    waiting: HashSet::new(),
                    next_seq: 0,
                    retired: false,
                });
                let actions = self.st.worker_ready(id, self.now, None);
                self.actions(actions);
            }
            Op::Advance { ms } => {
                self.now += ms * MS;
                let actions = self.st.expire(self.now);
                self.actions(actions);
            }
            Op::LaneRecords {
                callee,
                calls,
                end,
                stale,
            } => {
                let Some(i) = self.pick(callee) else { return };
                let id = self.workers[i].id;
                let Some(Phase::Leased { lease }) = self.st.worker(id).map(|w| w.phase) else {
                    return;
                };
                let holder = self
                    .st
                    .lease_list()
                    .into_iter()
                    .find(|(l, _)| *l == lease)
                    .map(|(_, l)| l.holder)
                    .expect("a leased worker's lease");
                let mut t = Tally {
                    holder: holder.raw(),
                    lease: if stale { lease.wrapping_sub(1) } else { lease },
                    ..Tally::default()
                };
                for _ in 0..calls {
                    t.record(None, 1000, 1000);
                }
                let actions = self
                    .st
                    .lane_tally(id, &t.to_message(id.raw(), end), self.now)
                    .expect("a well-formed tally");
                self.actions(actions);
            }
            Op::LeaseOver { which } => {
                let leases = self.st.lease_list();
                if leases.is_empty() {
                    return;
                }
                let (id, _) = leases[which % leases.len()];
                let actions = self.st.lease_ended(id, self.now);
                self.actions(actions);
            }
            Op::Shrink => {
                let actions = self.st.shrink(self.now);
                self.actions(actions);
            }
            Op::BogusAnswer { worker } => {
                let Some(i) = self.pick(worker) else { return };
                let id = self.workers[i].id;
                let mut h = Header::new(Kind::Complete);
                h.set_call_id(CallId::new(0, u32::MAX));
                if self
                    .st
                    .worker_answered(id, Box::new(Message::new(h)), self.now)
                    .is_err()
                {
                    // What the engine does with a worker that breaks the protocol.
                    self.gone(id, "sent a malformed message");
                }
            }
            Op::StartFails { function, spawned } => {
                self.next_group += 1;
                let end = if spawned {
                    ProcessEnd::Exited {
                        group: self.next_group,
                        status: "exit code 1".into(),
                        last_line: Some("no handler".into()),
                    }
                } else {
                    ProcessEnd::NotStarted {
                        error: "No such file or directory".into(),
                    }
                };
                let before = self.st.function(function).map_or(0, |f| f.restarts);
                let actions = self.st.process_ended(function, &end, self.now);
                self.actions(actions);
                let f = self.st.function(function).expect("function");
                assert_eq!(f.restarts, before + 1);
                if f.ready_workers == 0 {
                    assert!(f.refuses_calls() && f.queued() == 0, "{}", f.config.name);
                }
            }
            Op::ProcessDies { worker } => {
                let Some(i) = self.pick(worker) else { return };
                let id = self.workers[i].id;
                let Some((function, group)) = self.st.worker(id).map(|w| (w.function_id, w.group))
                else {
                    return;
                };
                let members: Vec<WorkerId> = self
                    .st
                    .workers()
                    .filter(|w| w.group == group)
                    .map(|w| w.id)
                    .collect();
                for m in members {
                    self.gone(m, "its process died");
                }
                let end = ProcessEnd::Exited {
                    group,
                    status: "killed by SIGKILL".into(),
                    last_line: None,
                };
                let queued = self.st.function(function).map_or(0, |f| f.queued());
                let actions = self.st.process_ended(function, &end, self.now);
                assert!(
                    actions.is_empty(),
                    "a crash after ready fails nothing: {actions:?}"
                );
                self.actions(actions);
                assert_eq!(self.st.function(function).map_or(0, |f| f.queued()), queued);
            }
            Op::Roll { function } => {
                let actions = self.st.roll(function, self.now);
                self.actions(actions);
                let f = self.st.function(function).expect("function");
                assert_eq!(
                    f.retiring, f.ready_workers,
                    "{}: a roll retires every ready worker",
                    f.config.name
                );
                assert!(f.pool.refill <= f.pool.max_slots);
            }
            Op::Drain => {
                if !self.draining {
                    self.draining = true;
                    let actions = self.st.start_draining(self.now);
                    self.actions(actions);
                }
            }
        }
        self.check(&what);
    }

    /// Time passes until every deadline and grace is over, then every worker goes.
    fn finish(&mut self) {
        for _ in 0..10 {
            self.now += 2000 * MS;
            let actions = self.st.expire(self.now);
            self.actions(actions);
            self.check("time passing at the end");
        }
        let ids: Vec<WorkerId> = self.workers.iter().map(|w| w.id).collect();
        for id in ids {
            self.gone(id, "stopped");
            self.check("stopping a worker");
        }
        assert!(self.external.is_empty(), "unanswered: {:?}", self.external);
        assert_eq!(self.st.calls_in_flight(), 0, "calls left in flight");
        assert_eq!(self.st.leases(), 0, "leases left");
        assert_eq!(self.st.workers().count(), 0);
        for f in self.st.functions() {
            assert_eq!(
                (f.running, f.pipelined, f.queued(), f.leased, f.idle.len()),
                (0, 0, 0, 0, 0)
            );
        }
    }
}

proptest! {
    // `GLOAM_MODEL_CASES=20000` for a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("GLOAM_MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_call_ends_exactly_once_to_its_own_caller(
        pipeline in any::<bool>(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let mut h = Harness::new(pipeline);
        for _ in 0..2 {
            h.step(Op::Connect { function: 1, fail_handshake: false });
        }
        h.step(Op::Connect { function: 2, fail_handshake: false });
        for op in ops {
            h.step(op);
        }
        h.finish();
    }
}

#[test]
fn a_worker_started_by_hand_counts_like_any_other() {
    // `worker` from the unit tests registers with group 0 (not launched): the model's
    // harness uses groups; both shapes keep the invariants.
    let mut h = Harness::new(false);
    let (id, actions) = worker(&mut h.st, 1, 0, 0);
    h.workers.push(ModelWorker {
        id,
        holding: Vec::new(),
        waiting: HashSet::new(),
        next_seq: 0,
        retired: false,
    });
    h.actions(actions);
    h.step(Op::External {
        function: 1,
        background: false,
    });
    h.step(Op::Answer {
        worker: 0,
        fail: false,
        last_first: false,
    });
    h.finish();
}
