//! The SPSC ring, the doorbell and the lanes over regions on the heap (a ring region, a bell
//! region, lease regions), between threads: the same code as over sealed memfds, in a form
//! Miri can run (it cannot map files).
//!
//! ```sh
//! cargo test -p gloam-core --test ring_heap                    # as a normal test
//! cargo +nightly miri test -p gloam-core --test ring_heap      # under Miri (see ci/miri.sh)
//! ```
//!
//! Under Miri this checks the `unsafe` edges of `shared_map.rs` (atomics formed from raw
//! pointers into the region, the heap allocation and its release) and that every access of
//! the producer, the consumer, the doorbell, the lease words and the lane state machine is an
//! atomic one, with Miri's data-race detector and weak-memory emulation on.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use gloam_core::protocol::{Header, Kind, Message, INLINE_CAPACITY, MESSAGE_SIZE};
use gloam_core::ring::{BellRegion, RingFile, BELL_FILE_BYTES, RING_FILE_BYTES, SLOTS};
use gloam_core::shared_map::SharedMap;

/// Messages sent: under Miri a few laps of the ring, natively many.
const COUNT: u32 = if cfg!(miri) { 3 * SLOTS } else { 50 * SLOTS };

/// Message `i`: its sequence is `i`, its inline payload `i % 97` bytes of `i as u8`.
fn message(i: u32) -> [u8; MESSAGE_SIZE] {
    let mut h = Header::new(Kind::Dispatch);
    h.sequence = i;
    let len = (i as usize % 97).min(INLINE_CAPACITY);
    Message::with_inline(h, &vec![i as u8; len])
        .unwrap()
        .to_bytes()
}

fn exchange(counters_at: u32) {
    let map = Arc::new(SharedMap::on_heap(RING_FILE_BYTES));
    let engine = RingFile::from_map(map.clone()).unwrap();
    engine.preset_counters(counters_at);
    let (mut tx, _, _) = engine.into_engine_side();
    let (_, mut rx, _) = RingFile::from_map(map).unwrap().into_worker_side();
    let bells = BellRegion::from_map(Arc::new(SharedMap::on_heap(BELL_FILE_BYTES))).unwrap();
    let bell = bells.bell();
    let producer = thread::spawn(move || {
        for i in 0..COUNT {
            let m = message(i);
            while !tx.try_push(&m) {
                thread::yield_now();
            }
            bell.notify();
        }
    });
    let bell = bells.bell();
    let mut out = [0u8; MESSAGE_SIZE];
    for i in 0..COUNT {
        // The consumer's wait: look, announce the sleep, look again, sleep.
        while !rx.try_pop(&mut out) {
            bell.prepare_sleep();
            if rx.has_message() {
                bell.cancel_sleep();
                continue;
            }
            bell.sleep(Duration::from_millis(100));
        }
        let got = Message::decode(&out, 1 << 20).unwrap();
        assert_eq!(got, Message::decode(&message(i), 1 << 20).unwrap());
    }
    producer.join().unwrap();
    assert!(!rx.has_message());
}

#[test]
fn two_threads_exchange_messages_over_a_heap_region() {
    exchange(0);
}

#[test]
fn the_counters_wrap_around() {
    exchange(u32::MAX - SLOTS / 2);
}

#[test]
fn a_too_small_map_is_refused() {
    let e = RingFile::from_map(Arc::new(SharedMap::on_heap(4096))).unwrap_err();
    assert!(e.to_string().contains("needs"), "{e}");
}

/// Direct-lane calls between a holder thread and a callee thread, each lease over a heap
/// region of its own, published in heap ring regions by an "engine" (this thread): the
/// holder and the callee find each lease through their ring's lease words, as workers do.
#[test]
fn lane_calls_between_two_threads_over_heap_regions() {
    use gloam_core::lane::{Holder, LaneGrant, LeaseRegion, LEASE_FILE_BYTES};
    let calls: u32 = if cfg!(miri) { 10 } else { 1000 };
    const LANE: usize = 3;
    let ring = || {
        let map = Arc::new(SharedMap::on_heap(RING_FILE_BYTES));
        RingFile::from_map(map).unwrap().into_engine_side().2
    };
    let (holder_ring, callee_ring) = (ring(), ring());
    let bell_of_callee = BellRegion::from_map(Arc::new(SharedMap::on_heap(BELL_FILE_BYTES)))
        .unwrap()
        .bell();
    let grant = |lease| LaneGrant {
        lease,
        function_id: 7,
        callee: 2,
        timeout_ms: 0,
    };
    let leases: Vec<LeaseRegion> = (1..=2)
        .map(|_| LeaseRegion::from_map(Arc::new(SharedMap::on_heap(LEASE_FILE_BYTES))).unwrap())
        .collect();
    let region_of = |lease: u32| leases[(lease - 1) as usize].clone();
    // Lease 1, as the engine grants it: the region written, then the callee's word, then the
    // holder's.
    leases[0].grant(&grant(1), 1, LANE);
    callee_ring.publish_inbound(1);
    holder_ring.publish_lane(LANE, 1);
    let serving = {
        let (callee_ring, leases) = (callee_ring.clone(), leases.clone());
        thread::spawn(move || {
            let mut buf = [0u8; MESSAGE_SIZE];
            for _ in 0..2 * calls {
                let (inbound, region) = loop {
                    let lease = callee_ring.inbound_lease();
                    let region = &leases[(lease - 1) as usize];
                    let holder = Holder {
                        worker: 1,
                        lane: LANE,
                        lease,
                    };
                    match region.take_inbound(holder, &mut buf) {
                        Some(c) => break (c, region.clone()),
                        None => thread::yield_now(),
                    }
                };
                let call = Message::decode(&buf, 1 << 20).unwrap();
                region.finish_inbound(&inbound);
                let answered = region.answer(inbound, &message(call.header.sequence + 1));
                assert!(answered.delivered && !answered.lease_ended);
                region.lane_bell().notify();
            }
        })
    };
    let mut out = [0u8; MESSAGE_SIZE];
    for i in 0..2 * calls {
        if i == calls {
            // Lease 1 ends (revoked idle) and lease 2 takes the lane, in a region of its own.
            assert_eq!(leases[0].revoke(1), Some(gloam_core::lane::phase::IDLE));
            leases[1].grant(&grant(2), 1, LANE);
            callee_ring.publish_inbound(2);
            holder_ring.publish_lane(LANE, 2);
            assert!(!holder_ring.clear_lane(LANE, 1), "a late end of lease 1");
        }
        let lease = holder_ring.lane_lease(LANE);
        let region = region_of(lease);
        let call = region.begin_call(LANE, &grant(lease)).unwrap();
        region.deliver_call(&call, &message(2 * i));
        bell_of_callee.notify();
        while region.waiting(&call) {
            thread::yield_now();
        }
        region.take_reply(call, &mut out);
        let answer = Message::decode(&out, 1 << 20).unwrap();
        assert_eq!(
            answer,
            Message::decode(&message(2 * i + 1), 1 << 20).unwrap()
        );
    }
    serving.join().unwrap();
    assert_eq!(holder_ring.lane_lease(LANE), 2);
    assert!(holder_ring.clear_lane(LANE, 2) && callee_ring.clear_inbound(2));
}
