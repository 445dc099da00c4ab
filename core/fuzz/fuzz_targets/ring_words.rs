//! Ring and lane words as a peer may write them: a worker's ring region, a lease region and
//! a doorbell region (on the heap, as `SharedMap::on_heap`) get arbitrary words and slot bytes
//! between the operations every party runs on them — the ring consumer and producer of both
//! sides, the doorbells, the engine's lease words, and the lanes' holder, callee and engine
//! operations. Whatever was written, no operation may panic, overflow or touch memory out of
//! its region (the maps' own bounds checks panic), and every message popped or taken decodes
//! or names an error.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use gloam_core::lane::{
    Holder, InboundCall, LaneCall, LaneGrant, LeaseRegion, LANES, LEASE_FILE_BYTES,
};
use gloam_core::protocol::{Message, DEFAULT_MAX_PAYLOAD, MESSAGE_SIZE};
use gloam_core::ring::{
    Bell, BellRegion, Consumer, Producer, RingFile, SharedRing, BELL_FILE_BYTES, LEASE_WORDS,
    RING_FILE_BYTES, TO_ENGINE, TO_WORKER,
};
use gloam_core::shared_map::SharedMap;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// The words the protocols read: ring counters, lease words, a lease region's words.
fn control_word(which: u8) -> (Target, usize) {
    let which = usize::from(which);
    let ring = [TO_WORKER, TO_WORKER + 128, TO_ENGINE, TO_ENGINE + 128];
    let lease = [0, 4, 8, 12, 16, 20, 64, 128];
    match which % 3 {
        0 => (Target::Ring, ring[which / 3 % ring.len()]),
        1 => (Target::Ring, LEASE_WORDS + 4 * (which / 3 % (LANES + 1))),
        _ => (Target::Lease, lease[which / 3 % lease.len()]),
    }
}

/// Which region a peer writes.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Target {
    Ring,
    Lease,
    Bell,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A peer writes any word of a region.
    Word {
        target: Target,
        index: u32,
        value: u32,
    },
    /// A peer writes a word the protocols read.
    Control {
        which: u8,
        value: u32,
    },
    /// A peer writes 8 bytes anywhere (slots included).
    Bytes {
        target: Target,
        index: u32,
        value: u64,
    },
    /// A producer publishes a message.
    Push {
        engine: bool,
        head: [u8; 64],
        fill: u8,
    },
    /// A consumer takes one.
    Pop {
        engine: bool,
    },
    /// A doorbell operation: the worker's, or the lease's lane doorbell.
    Bell {
        lane: bool,
        op: u8,
    },
    /// Holder: starts a call on the lease (as granted `lease`).
    Begin {
        lane: u8,
        lease: u32,
    },
    /// Holder: writes the call into the inbound slot.
    Deliver {
        call: u8,
        head: [u8; 64],
    },
    /// Holder: looks, gives up, takes the answer.
    Waiting {
        call: u8,
    },
    Abandon {
        call: u8,
    },
    TakeReply {
        call: u8,
    },
    /// Callee: takes (as lease `lease`), finishes and answers its inbound call.
    TakeInbound {
        lease: u32,
        lane: u8,
    },
    Finish,
    Answer {
        head: [u8; 64],
    },
    Full {
        lease: u32,
    },
    /// Engine: on the lease region and the lease words.
    Grant {
        lane: u8,
        lease: u32,
        function: u16,
        holder: u32,
        timeout_ms: u32,
    },
    Revoke {
        lease: u32,
    },
    Fail {
        lease: u32,
        head: [u8; 64],
    },
    Busy {
        lease: u32,
    },
    InboundHeader,
    Publish {
        lane: Option<u8>,
        lease: u32,
    },
    Clear {
        lane: Option<u8>,
        lease: u32,
    },
    /// Worker: reads its lease words.
    Leases {
        lane: u8,
    },
}

fn message(head: &[u8; 64], fill: u8) -> [u8; MESSAGE_SIZE] {
    let mut m = [fill; MESSAGE_SIZE];
    m[..64].copy_from_slice(head);
    m
}

struct World {
    ring: Arc<SharedMap>,
    lease_map: Arc<SharedMap>,
    bell_map: Arc<SharedMap>,
    /// The ring region's lease words (the worker's and the engine's view are the same words).
    words: SharedRing,
    lease: LeaseRegion,
    bell: Bell,
    /// The worker's ends of its rings, and the engine's.
    worker: (Producer, Consumer),
    engine: (Producer, Consumer),
    calls: Vec<LaneCall>,
    inbound: Option<InboundCall>,
}

impl World {
    fn new() -> World {
        let ring = Arc::new(SharedMap::on_heap(RING_FILE_BYTES));
        let lease_map = Arc::new(SharedMap::on_heap(LEASE_FILE_BYTES));
        let bell_map = Arc::new(SharedMap::on_heap(BELL_FILE_BYTES));
        let (wtx, wrx, words) = RingFile::from_map(ring.clone()).unwrap().into_worker_side();
        let (etx, erx, _) = RingFile::from_map(ring.clone()).unwrap().into_engine_side();
        World {
            lease: LeaseRegion::from_map(lease_map.clone()).unwrap(),
            bell: BellRegion::from_map(bell_map.clone()).unwrap().bell(),
            ring,
            lease_map,
            bell_map,
            words,
            worker: (wtx, wrx),
            engine: (etx, erx),
            calls: Vec::new(),
            inbound: None,
        }
    }

    fn map(&self, target: Target) -> &SharedMap {
        match target {
            Target::Ring => &self.ring,
            Target::Lease => &self.lease_map,
            Target::Bell => &self.bell_map,
        }
    }

    fn call(&self, i: u8) -> Option<&LaneCall> {
        self.calls.get(usize::from(i) % self.calls.len().max(1))
    }

    fn take_call(&mut self, i: u8) -> Option<LaneCall> {
        if self.calls.is_empty() {
            return None;
        }
        Some(self.calls.swap_remove(usize::from(i) % self.calls.len()))
    }

    fn run(&mut self, op: Op) {
        let mut out = [0u8; MESSAGE_SIZE];
        match op {
            Op::Word {
                target,
                index,
                value,
            } => {
                let m = self.map(target);
                let at = (index as usize % (m.len() / 4)) * 4;
                m.word(at)
                    .store(value, std::sync::atomic::Ordering::Relaxed);
            }
            Op::Control { which, value } => {
                let (target, at) = control_word(which);
                self.map(target)
                    .word(at)
                    .store(value, std::sync::atomic::Ordering::Relaxed);
            }
            Op::Bytes {
                target,
                index,
                value,
            } => {
                let m = self.map(target);
                let at = (index as usize % (m.len() / 8)) * 8;
                m.store(at, &value.to_ne_bytes(), 8);
            }
            Op::Push { engine, head, fill } => {
                let m = message(&head, fill);
                let tx = if engine {
                    &mut self.engine.0
                } else {
                    &mut self.worker.0
                };
                let _ = tx.try_push(&m);
                let _ = tx.pending();
            }
            Op::Pop { engine } => {
                let rx = if engine {
                    &mut self.engine.1
                } else {
                    &mut self.worker.1
                };
                if rx.try_pop(&mut out) {
                    let _ = Message::decode(&out, DEFAULT_MAX_PAYLOAD);
                }
            }
            Op::Bell { lane, op } => {
                let bell: Bell = if lane {
                    self.lease.lane_bell()
                } else {
                    self.bell.clone()
                };
                match op % 6 {
                    0 => bell.notify(),
                    1 => bell.prepare_sleep(),
                    2 => bell.cancel_sleep(),
                    3 => bell.sleep(Duration::ZERO),
                    4 => {
                        let _ = bell.take_over();
                    }
                    _ => bell.force_wake(),
                }
            }
            Op::Begin { lane, lease } => {
                let grant = LaneGrant {
                    lease,
                    function_id: 7,
                    callee: 2,
                    timeout_ms: 0,
                };
                if let Some(c) = self.lease.begin_call(usize::from(lane) % LANES, &grant) {
                    assert!(c.lane() < LANES);
                    self.calls.push(c);
                }
            }
            Op::Deliver { call, head } => {
                if let Some(c) = self.call(call) {
                    self.lease.deliver_call(c, &message(&head, 0));
                }
            }
            Op::Waiting { call } => {
                if let Some(c) = self.call(call) {
                    let _ = self.lease.waiting(c);
                }
            }
            Op::Abandon { call } => {
                if let Some(c) = self.call(call) {
                    let _ = self.lease.abandon(c);
                }
            }
            Op::TakeReply { call } => {
                if let Some(c) = self.take_call(call) {
                    self.lease.take_reply(c, &mut out);
                    let _ = Message::decode(&out, DEFAULT_MAX_PAYLOAD);
                }
            }
            Op::TakeInbound { lease, lane } => {
                let holder = Holder {
                    worker: 1,
                    lane: usize::from(lane) % LANES,
                    lease,
                };
                if let Some(c) = self.lease.take_inbound(holder, &mut out) {
                    assert_eq!(c.holder(), holder);
                    let _ = Message::decode(&out, DEFAULT_MAX_PAYLOAD);
                    self.inbound = Some(c);
                }
            }
            Op::Finish => {
                if let Some(c) = &self.inbound {
                    self.lease.finish_inbound(c);
                }
            }
            Op::Answer { head } => {
                if let Some(c) = self.inbound.take() {
                    let _ = self.lease.answer(c, &message(&head, 1));
                }
            }
            Op::Full { lease } => {
                let _ = self.lease.inbound_full(lease);
            }
            Op::Grant {
                lane,
                lease,
                function,
                holder,
                timeout_ms,
            } => {
                let grant = LaneGrant {
                    lease,
                    function_id: function,
                    callee: 2,
                    timeout_ms,
                };
                self.lease.grant(&grant, holder, usize::from(lane) % LANES);
            }
            Op::Revoke { lease } => {
                let _ = self.lease.revoke(lease);
            }
            Op::Fail { lease, head } => {
                let _ = self.lease.fail(lease, &message(&head, 2));
            }
            Op::Busy { lease } => {
                let _ = self.lease.inbound_busy(lease);
            }
            Op::InboundHeader => self.lease.inbound_header(&mut out),
            Op::Publish { lane, lease } => match lane {
                Some(l) => self.words.publish_lane(usize::from(l) % LANES, lease),
                None => self.words.publish_inbound(lease),
            },
            Op::Clear { lane, lease } => {
                let _ = match lane {
                    Some(l) => self.words.clear_lane(usize::from(l) % LANES, lease),
                    None => self.words.clear_inbound(lease),
                };
            }
            Op::Leases { lane } => {
                let _ = self.words.inbound_lease();
                let _ = self.words.lane_lease(usize::from(lane) % LANES);
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut world = World::new();
    for op in ops {
        world.run(op);
    }
});
