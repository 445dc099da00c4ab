//! The SPSC ring and the doorbell over a ring region on the heap, between two threads: the
//! same code as over a sealed memfd, in a form Miri can run (it cannot map files).
//!
//! ```sh
//! cargo test -p gloam-core --test ring_heap                    # as a normal test
//! cargo +nightly miri test -p gloam-core --test ring_heap      # under Miri (see ci/miri.sh)
//! ```
//!
//! Under Miri this checks the `unsafe` edges of `shared_map.rs` (atomics formed from raw
//! pointers into the region, the heap allocation and its release) and that every access of
//! the producer, the consumer and the doorbell is an atomic one, with Miri's data-race
//! detector and weak-memory emulation on.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use gloam_core::protocol::{Header, Kind, Message, INLINE_CAPACITY, MESSAGE_SIZE};
use gloam_core::ring::{RingFile, RING_FILE_BYTES, SLOTS};
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
    let (_, mut rx, worker) = RingFile::from_map(map).unwrap().into_worker_side();
    let bell = worker.worker_bell();
    let producer = thread::spawn(move || {
        for i in 0..COUNT {
            let m = message(i);
            while !tx.try_push(&m) {
                thread::yield_now();
            }
            bell.notify();
        }
    });
    let bell = worker.worker_bell();
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

/// Direct-lane calls between a holder thread and a callee thread over two heap regions.
#[test]
fn lane_calls_between_two_threads_over_heap_regions() {
    use gloam_core::lane::LaneGrant;
    let calls: u32 = if cfg!(miri) { 20 } else { 2000 };
    let holder = RingFile::from_map(Arc::new(SharedMap::on_heap(RING_FILE_BYTES)))
        .unwrap()
        .into_peer();
    let callee = RingFile::from_map(Arc::new(SharedMap::on_heap(RING_FILE_BYTES)))
        .unwrap()
        .into_peer();
    let grant = LaneGrant {
        lease: 1,
        function_id: 7,
        callee: 2,
        timeout_ms: 0,
    };
    holder.grant_lane(3, grant, 1, &callee);
    let serving = {
        let (holder, callee) = (holder.clone(), callee.clone());
        thread::spawn(move || {
            let mut buf = [0u8; MESSAGE_SIZE];
            for _ in 0..calls {
                let inbound = loop {
                    match callee.take_inbound(&mut buf) {
                        Some(c) => break c,
                        None => thread::yield_now(),
                    }
                };
                let call = Message::decode(&buf, 1 << 20).unwrap();
                callee.finish_inbound(&inbound);
                let lane = inbound.holder().lane;
                let answered = holder.answer_lane(inbound, &message(call.header.sequence + 1));
                assert!(answered.delivered && !answered.lease_ended);
                holder.lane_bell(lane).notify();
            }
        })
    };
    let mut out = [0u8; MESSAGE_SIZE];
    for i in 0..calls {
        let call = holder.begin_lane_call(7).unwrap();
        callee.deliver_call(&call, &message(2 * i));
        callee.worker_bell().notify();
        while holder.lane_waiting(&call) {
            thread::yield_now();
        }
        holder.take_lane_reply(call, &mut out);
        let answer = Message::decode(&out, 1 << 20).unwrap();
        assert_eq!(
            answer,
            Message::decode(&message(2 * i + 1), 1 << 20).unwrap()
        );
    }
    serving.join().unwrap();
}
