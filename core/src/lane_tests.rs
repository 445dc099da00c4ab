//! Tests of the lane state machine, one region per side.

use super::*;
use crate::protocol::{Header, Kind, Message, INLINE_CAPACITY};
use crate::ring::RingFile;

fn regions() -> (SharedRing, SharedRing) {
    let (holder, _) = RingFile::create_sealed("holder").unwrap();
    let (callee, _) = RingFile::create_sealed("callee").unwrap();
    (holder.into_peer(), callee.into_peer())
}

fn grant(holder: &SharedRing, callee: &SharedRing, lease: u32) {
    assert!(holder.lane_reusable(3));
    holder.grant_lane(
        3,
        LaneGrant {
            lease,
            function_id: 7,
            callee: 2,
            timeout_ms: 500,
        },
        1,
        callee,
    );
}

/// A message whose every byte counts (a full inline payload of `b`).
fn msg(b: u8) -> [u8; MESSAGE_SIZE] {
    Message::with_inline(Header::new(Kind::Dispatch), &[b; INLINE_CAPACITY])
        .unwrap()
        .to_bytes()
}

#[test]
fn a_call_goes_holder_to_callee_and_back() {
    let (holder, callee) = regions();
    grant(&holder, &callee, 5);
    assert!(holder.begin_lane_call(8).is_none(), "other function");
    let call = holder.begin_lane_call(7).unwrap();
    assert_eq!(call.lane(), 3);
    assert_eq!(
        *call.grant(),
        LaneGrant {
            lease: 5,
            function_id: 7,
            callee: 2,
            timeout_ms: 500
        }
    );
    assert!(holder.begin_lane_call(7).is_none(), "one call per lane");
    callee.deliver_call(&call, &msg(1));
    let mut got = msg(0);
    let inbound = callee.take_inbound(&mut got).unwrap();
    assert_eq!(got, msg(1));
    assert!(callee.take_inbound(&mut got).is_none());
    assert_eq!(
        inbound.holder(),
        Holder {
            worker: 1,
            lane: 3,
            lease: 5
        }
    );
    callee.finish_inbound(&inbound);
    assert!(holder.lane_waiting(&call));
    let a = holder.answer_lane(inbound, &msg(2));
    assert_eq!(
        a,
        Answered {
            delivered: true,
            lease_ended: false
        }
    );
    assert!(!holder.lane_waiting(&call));
    holder.take_lane_reply(call, &mut got);
    assert_eq!(got, msg(2));
    assert!(
        holder.begin_lane_call(7).is_some(),
        "the lane is idle again"
    );
}

#[test]
fn revoking_an_idle_lane_ends_the_lease_at_once() {
    let (holder, callee) = regions();
    grant(&holder, &callee, 5);
    assert_eq!(holder.revoke_lane(3, 5), Some(phase::IDLE));
    assert!(holder.begin_lane_call(7).is_none());
    assert!(holder.lane_reusable(3));
}

#[test]
fn revoking_during_a_call_ends_the_lease_with_the_answer() {
    let (holder, callee) = regions();
    grant(&holder, &callee, 5);
    let call = holder.begin_lane_call(7).unwrap();
    callee.deliver_call(&call, &msg(1));
    assert_eq!(holder.revoke_lane(3, 5), Some(phase::CALLING));
    assert!(callee.inbound_busy(5));
    assert!(!holder.lane_reusable(3));
    let mut got = msg(0);
    let inbound = callee.take_inbound(&mut got).unwrap();
    callee.finish_inbound(&inbound);
    let a = holder.answer_lane(inbound, &msg(2));
    assert_eq!(
        a,
        Answered {
            delivered: true,
            lease_ended: true
        }
    );
    holder.take_lane_reply(call, &mut got);
    assert_eq!(got, msg(2));
    assert!(holder.lane_reusable(3));
    assert!(holder.begin_lane_call(7).is_none());
}

#[test]
fn an_abandoned_call_drops_its_late_answer_and_frees_the_lane() {
    let (holder, callee) = regions();
    grant(&holder, &callee, 5);
    let call = holder.begin_lane_call(7).unwrap();
    callee.deliver_call(&call, &msg(1));
    assert!(holder.abandon_lane_call(&call));
    assert!(!holder.abandon_lane_call(&call), "once");
    assert!(
        holder.begin_lane_call(7).is_none(),
        "busy until the callee answers"
    );
    let mut got = msg(0);
    let inbound = callee.take_inbound(&mut got).unwrap();
    callee.finish_inbound(&inbound);
    let a = holder.answer_lane(inbound, &msg(2));
    assert!(!a.delivered && !a.lease_ended);
    assert!(holder.begin_lane_call(7).is_some());
}

#[test]
fn a_dead_callee_fails_the_waiting_call() {
    let (holder, callee) = regions();
    grant(&holder, &callee, 5);
    let call = holder.begin_lane_call(7).unwrap();
    callee.deliver_call(&call, &msg(1));
    assert!(!holder.fail_lane(3, 4, &msg(9)), "another lease: untouched");
    assert!(holder.fail_lane(3, 5, &msg(9)));
    assert!(!holder.lane_waiting(&call));
    let mut got = msg(0);
    holder.take_lane_reply(call, &mut got);
    assert_eq!(got, msg(9));
    assert!(holder.lane_reusable(3));
    // An idle lane of a dead callee is only revoked.
    let (holder, callee) = regions();
    grant(&holder, &callee, 6);
    assert!(!holder.fail_lane(3, 6, &msg(9)));
    assert!(holder.begin_lane_call(7).is_none());
    assert!(holder.lane_reusable(3));
}

#[test]
fn a_holder_that_cannot_reach_the_callee_gives_the_lane_back() {
    let (holder, callee) = regions();
    grant(&holder, &callee, 5);
    let call = holder.begin_lane_call(7).unwrap();
    holder.cancel_lane_call(call);
    assert!(holder.begin_lane_call(7).is_some());
}

#[test]
fn nothing_of_an_earlier_lease_touches_a_later_one() {
    let (holder, callee) = regions();
    grant(&holder, &callee, 5);
    assert_eq!(holder.revoke_lane(3, 5), Some(phase::IDLE));
    // Lease 6 on the same lane.
    grant(&holder, &callee, 6);
    let call = holder.begin_lane_call(7).unwrap();
    assert_eq!(call.grant().lease, 6);
    // A late revoke and a late failure of lease 5 change nothing.
    assert_eq!(holder.revoke_lane(3, 5), None);
    assert!(!holder.fail_lane(3, 5, &msg(9)));
    assert!(holder.lane_waiting(&call));
    // A stale answer for lease 5 is not delivered and leaves the lane alone.
    let stale = InboundCall {
        holder: Holder {
            worker: 1,
            lane: 3,
            lease: 5,
        },
    };
    let a = holder.answer_lane(stale, &msg(8));
    assert_eq!(
        a,
        Answered {
            delivered: false,
            lease_ended: true
        }
    );
    assert!(holder.lane_waiting(&call));
    assert!(!callee.inbound_busy(5));
}
