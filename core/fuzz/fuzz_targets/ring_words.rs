//! Ring and lane words as a peer may write them: a worker's ring region and a peer's (on the
//! heap, as `SharedMap::on_heap`) get arbitrary words and slot bytes between the operations
//! every party runs on them — the ring consumer and producer of both sides, the doorbells,
//! and the lanes' holder, callee and engine operations. Whatever the peer wrote, no operation
//! may panic, overflow or touch memory out of the region (the maps' own bounds checks
//! panic), and every message popped or taken decodes or names an error.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use gloam_core::lane::{InboundCall, LaneCall, LaneGrant, LANES};
use gloam_core::protocol::{Message, DEFAULT_MAX_PAYLOAD, MESSAGE_SIZE};
use gloam_core::ring::{
    Bell, Consumer, Producer, RingFile, SharedRing, INBOUND_CONTROL, RINGS_END, RING_FILE_BYTES,
    TO_ENGINE, TO_WORKER,
};
use gloam_core::shared_map::SharedMap;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// Where a lane's control line starts (the layout in `core/src/lane.rs`).
fn lane_control(lane: usize) -> usize {
    RINGS_END + MESSAGE_SIZE + lane * (128 + MESSAGE_SIZE)
}

/// The words the protocols read: ring counters, inbound control, lane control words.
fn control_word(which: u8) -> usize {
    let which = usize::from(which);
    let fixed = [
        TO_WORKER,
        TO_WORKER + 128,
        TO_ENGINE,
        TO_ENGINE + 128,
        INBOUND_CONTROL,
        INBOUND_CONTROL + 4,
        INBOUND_CONTROL + 8,
        0,
    ];
    match fixed.get(which) {
        Some(&o) => o,
        None => {
            let lane = (which / 5) % LANES;
            lane_control(lane) + [0, 4, 8, 16, 64][which % 5]
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The peer writes any word of a region.
    Word { peer: bool, index: u32, value: u32 },
    /// The peer writes a word the protocols read.
    Control { peer: bool, which: u8, value: u32 },
    /// The peer writes 8 bytes anywhere (slots included).
    Bytes { peer: bool, index: u32, value: u64 },
    /// A producer publishes a message.
    Push { engine: bool, head: [u8; 64], fill: u8 },
    /// A consumer takes one.
    Pop { engine: bool },
    /// A doorbell operation.
    Bell { peer: bool, lane: Option<u8>, op: u8 },
    /// Holder: starts a lane call.
    Begin { function: u16 },
    /// Holder: writes the call into the peer's inbound slot.
    Deliver { call: u8, head: [u8; 64] },
    /// Holder: looks, gives up, gives back, takes the answer.
    Waiting { call: u8 },
    Abandon { call: u8 },
    Cancel { call: u8 },
    TakeReply { call: u8 },
    /// Callee: takes, finishes and answers its inbound call (into the peer's lane).
    TakeInbound,
    Finish,
    Answer { head: [u8; 64] },
    Full,
    /// Engine: on this worker's lanes (the peer as callee).
    Grant { lane: u8, lease: u32, function: u16, holder: u32, timeout_ms: u32 },
    Revoke { lane: u8, lease: u32 },
    Fail { lane: u8, lease: u32, head: [u8; 64] },
    Reusable { lane: u8 },
    Busy { peer: bool, lease: u32 },
    InboundHeader { peer: bool },
}

fn message(head: &[u8; 64], fill: u8) -> [u8; MESSAGE_SIZE] {
    let mut m = [fill; MESSAGE_SIZE];
    m[..64].copy_from_slice(head);
    m
}

struct Side {
    map: Arc<SharedMap>,
    shared: SharedRing,
}

struct World {
    me: Side,
    peer: Side,
    /// This worker's ends of its rings, and the engine's.
    worker: (Producer, Consumer),
    engine: (Producer, Consumer),
    calls: Vec<LaneCall>,
    inbound: Option<InboundCall>,
}

impl World {
    fn new() -> World {
        let me = Arc::new(SharedMap::on_heap(RING_FILE_BYTES));
        let peer = Arc::new(SharedMap::on_heap(RING_FILE_BYTES));
        let (wtx, wrx, shared) = RingFile::from_map(me.clone()).unwrap().into_worker_side();
        let (etx, erx, _) = RingFile::from_map(me.clone()).unwrap().into_engine_side();
        let peer_shared = RingFile::from_map(peer.clone()).unwrap().into_peer();
        World {
            me: Side { map: me, shared },
            peer: Side {
                map: peer,
                shared: peer_shared,
            },
            worker: (wtx, wrx),
            engine: (etx, erx),
            calls: Vec::new(),
            inbound: None,
        }
    }

    fn side(&self, peer: bool) -> &Side {
        if peer {
            &self.peer
        } else {
            &self.me
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
            Op::Word { peer, index, value } => {
                let s = self.side(peer);
                let at = (index as usize % (RING_FILE_BYTES / 4)) * 4;
                s.map.word(at).store(value, std::sync::atomic::Ordering::Relaxed);
            }
            Op::Control { peer, which, value } => {
                let s = self.side(peer);
                s.map
                    .word(control_word(which))
                    .store(value, std::sync::atomic::Ordering::Relaxed);
            }
            Op::Bytes { peer, index, value } => {
                let s = self.side(peer);
                let at = (index as usize % (RING_FILE_BYTES / 8)) * 8;
                s.map.store(at, &value.to_ne_bytes(), 8);
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
            Op::Bell { peer, lane, op } => {
                let s = &self.side(peer).shared;
                let bell: Bell = match lane {
                    Some(l) => s.lane_bell(usize::from(l) % LANES),
                    None => s.worker_bell(),
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
            Op::Begin { function } => {
                if let Some(c) = self.me.shared.begin_lane_call(function) {
                    assert!(c.lane() < LANES);
                    self.calls.push(c);
                }
            }
            Op::Deliver { call, head } => {
                if let Some(c) = self.call(call) {
                    self.peer.shared.deliver_call(c, &message(&head, 0));
                }
            }
            Op::Waiting { call } => {
                if let Some(c) = self.call(call) {
                    let _ = self.me.shared.lane_waiting(c);
                }
            }
            Op::Abandon { call } => {
                if let Some(c) = self.call(call) {
                    let _ = self.me.shared.abandon_lane_call(c);
                }
            }
            Op::Cancel { call } => {
                if let Some(c) = self.take_call(call) {
                    self.me.shared.cancel_lane_call(c);
                }
            }
            Op::TakeReply { call } => {
                if let Some(c) = self.take_call(call) {
                    self.me.shared.take_lane_reply(c, &mut out);
                    let _ = Message::decode(&out, DEFAULT_MAX_PAYLOAD);
                }
            }
            Op::TakeInbound => {
                if let Some(c) = self.me.shared.take_inbound(&mut out) {
                    assert!(c.holder().lane < LANES);
                    let _ = Message::decode(&out, DEFAULT_MAX_PAYLOAD);
                    self.inbound = Some(c);
                }
            }
            Op::Finish => {
                if let Some(c) = &self.inbound {
                    self.me.shared.finish_inbound(c);
                }
            }
            Op::Answer { head } => {
                if let Some(c) = self.inbound.take() {
                    let _ = self.peer.shared.answer_lane(c, &message(&head, 1));
                }
            }
            Op::Full => {
                let _ = self.me.shared.inbound_full();
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
                let lane = usize::from(lane) % LANES;
                if self.me.shared.lane_reusable(lane) {
                    self.me
                        .shared
                        .grant_lane(lane, grant, holder, &self.peer.shared);
                }
            }
            Op::Revoke { lane, lease } => {
                let _ = self.me.shared.revoke_lane(usize::from(lane) % LANES, lease);
            }
            Op::Fail { lane, lease, head } => {
                let lane = usize::from(lane) % LANES;
                let _ = self.me.shared.fail_lane(lane, lease, &message(&head, 2));
            }
            Op::Reusable { lane } => {
                let _ = self.me.shared.lane_reusable(usize::from(lane) % LANES);
            }
            Op::Busy { peer, lease } => {
                let _ = self.side(peer).shared.inbound_busy(lease);
            }
            Op::InboundHeader { peer } => {
                self.side(peer).shared.inbound_header(&mut out);
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
