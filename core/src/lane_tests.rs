//! Tests of the lane state machine over lease regions, and of the lease words of ring regions.

use super::*;
use crate::protocol::{Header, Kind, Message, INLINE_CAPACITY};
use crate::ring::RingFile;

const LANE: usize = 3;

fn grant_of(lease: u32) -> LaneGrant {
    LaneGrant {
        lease,
        function_id: 7,
        callee: 2,
        timeout_ms: 500,
    }
}

fn holder_of(lease: u32) -> Holder {
    Holder {
        worker: 1,
        lane: LANE,
        lease,
    }
}

/// A fresh lease region, granted to `lease` as the engine does.
fn granted(lease: u32) -> LeaseRegion {
    let (region, _) = LeaseRegion::create_sealed("lease").unwrap();
    region.grant(&grant_of(lease), 1, LANE);
    region
}

/// A message whose every byte counts (a full inline payload of `b`).
fn msg(b: u8) -> [u8; MESSAGE_SIZE] {
    Message::with_inline(Header::new(Kind::Dispatch), &[b; INLINE_CAPACITY])
        .unwrap()
        .to_bytes()
}

#[test]
fn a_call_goes_holder_to_callee_and_back() {
    let region = granted(5);
    assert!(
        region.begin_call(LANE, &grant_of(4)).is_none(),
        "other lease"
    );
    let call = region.begin_call(LANE, &grant_of(5)).unwrap();
    assert_eq!(call.lane(), LANE);
    assert_eq!(*call.grant(), grant_of(5));
    assert!(
        region.begin_call(LANE, &grant_of(5)).is_none(),
        "one call at a time"
    );
    let mut got = msg(0);
    assert!(
        region.take_inbound(holder_of(5), &mut got).is_none(),
        "not written yet"
    );
    region.deliver_call(&call, &msg(1));
    assert!(!region.inbound_full(4) && region.inbound_full(5));
    assert!(
        region.take_inbound(holder_of(4), &mut got).is_none(),
        "other lease"
    );
    let inbound = region.take_inbound(holder_of(5), &mut got).unwrap();
    assert_eq!(got, msg(1));
    assert!(region.take_inbound(holder_of(5), &mut got).is_none());
    assert_eq!(inbound.holder(), holder_of(5));
    region.finish_inbound(&inbound);
    assert!(region.waiting(&call));
    let a = region.answer(inbound, &msg(2));
    assert_eq!(
        a,
        Answered {
            delivered: true,
            lease_ended: false
        }
    );
    assert!(!region.waiting(&call));
    region.take_reply(call, &mut got);
    assert_eq!(got, msg(2));
    assert!(
        region.begin_call(LANE, &grant_of(5)).is_some(),
        "the lane is idle again"
    );
}

#[test]
fn revoking_an_idle_lane_ends_the_lease_at_once() {
    let region = granted(5);
    assert_eq!(region.revoke(5), Some(phase::IDLE));
    assert!(region.begin_call(LANE, &grant_of(5)).is_none());
    assert!(!region.inbound_busy(5));
}

#[test]
fn revoking_during_a_call_ends_the_lease_with_the_answer() {
    let region = granted(5);
    let call = region.begin_call(LANE, &grant_of(5)).unwrap();
    region.deliver_call(&call, &msg(1));
    assert_eq!(region.revoke(5), Some(phase::CALLING));
    assert!(region.inbound_busy(5));
    let mut got = msg(0);
    let inbound = region.take_inbound(holder_of(5), &mut got).unwrap();
    region.finish_inbound(&inbound);
    let a = region.answer(inbound, &msg(2));
    assert_eq!(
        a,
        Answered {
            delivered: true,
            lease_ended: true
        }
    );
    region.take_reply(call, &mut got);
    assert_eq!(got, msg(2));
    assert!(region.begin_call(LANE, &grant_of(5)).is_none());
}

#[test]
fn an_abandoned_call_drops_its_late_answer_and_frees_the_lane() {
    let region = granted(5);
    let call = region.begin_call(LANE, &grant_of(5)).unwrap();
    region.deliver_call(&call, &msg(1));
    assert!(region.abandon(&call));
    assert!(!region.abandon(&call), "once");
    assert!(
        region.begin_call(LANE, &grant_of(5)).is_none(),
        "busy until the callee answers"
    );
    let mut got = msg(0);
    let inbound = region.take_inbound(holder_of(5), &mut got).unwrap();
    region.finish_inbound(&inbound);
    let a = region.answer(inbound, &msg(2));
    assert!(!a.delivered && !a.lease_ended);
    assert!(region.begin_call(LANE, &grant_of(5)).is_some());
}

#[test]
fn a_dead_callee_fails_the_waiting_call() {
    let region = granted(5);
    let call = region.begin_call(LANE, &grant_of(5)).unwrap();
    region.deliver_call(&call, &msg(1));
    assert!(!region.fail(4, &msg(9)), "another lease: untouched");
    assert!(region.fail(5, &msg(9)));
    assert!(!region.waiting(&call));
    let mut got = msg(0);
    region.take_reply(call, &mut got);
    assert_eq!(got, msg(9));
    // An idle lane of a dead callee is only revoked.
    let region = granted(6);
    assert!(!region.fail(6, &msg(9)));
    assert!(region.begin_call(LANE, &grant_of(6)).is_none());
}

#[test]
fn nothing_of_another_lease_touches_a_lease_region() {
    let region = granted(6);
    let call = region.begin_call(LANE, &grant_of(6)).unwrap();
    // A revoke, a failure and an answer of lease 5 change nothing.
    assert_eq!(region.revoke(5), None);
    assert!(!region.fail(5, &msg(9)));
    assert!(region.waiting(&call));
    let stale = InboundCall {
        holder: holder_of(5),
    };
    let a = region.answer(stale, &msg(8));
    assert_eq!(
        a,
        Answered {
            delivered: false,
            lease_ended: true
        }
    );
    assert!(region.waiting(&call));
    assert!(!region.inbound_busy(5));
}

#[test]
fn the_grant_writes_every_field_of_the_region() {
    let region = granted(9);
    let word = |at: usize| region.map.word(at).load(Ordering::Relaxed);
    assert_eq!(word(LANE_STATE), 9 << 4 | phase::IDLE);
    assert_eq!(word(INBOUND_STATE), 9 << 4 | inbound::EMPTY);
    assert_eq!(
        [
            word(LANE_FUNCTION),
            word(LANE_CALLEE),
            word(LANE_TIMEOUT),
            word(LANE_HOLDER),
            word(LANE_INDEX)
        ],
        [7, 2, 500, 1, LANE as u32]
    );
}

#[test]
fn the_engine_clears_only_the_lease_it_published() {
    let (ring, _) = RingFile::create_sealed("ring").unwrap();
    let (_, _, shared) = ring.into_engine_side();
    assert_eq!((shared.inbound_lease(), shared.lane_lease(2)), (0, 0));
    shared.publish_inbound(5);
    shared.publish_lane(2, 6);
    assert_eq!((shared.inbound_lease(), shared.lane_lease(2)), (5, 6));
    assert_eq!(shared.lane_lease(3), 0);
    // A late end of an earlier lease leaves the later one published.
    assert!(!shared.clear_inbound(4));
    assert!(!shared.clear_lane(2, 5));
    assert_eq!((shared.inbound_lease(), shared.lane_lease(2)), (5, 6));
    assert!(shared.clear_inbound(5));
    assert!(shared.clear_lane(2, 6));
    assert_eq!((shared.inbound_lease(), shared.lane_lease(2)), (0, 0));
}
