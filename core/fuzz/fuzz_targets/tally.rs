//! Lane tallies (`Tally::from_message`), which a callee sends the engine: any record decodes
//! to a tally or a named error, never panics, and a decoded tally keeps its own invariants
//! (at most `MAX_RECORD_CALLS` calls, every histogram counting each call once) and survives
//! re-encoding. A tally built by `record` always decodes back to itself.
#![no_main]

use gloam_core::protocol::{flags, Header, Kind, Message, DEFAULT_MAX_PAYLOAD, INLINE_CAPACITY};
use gloam_core::tally::{Tally, MAX_RECORD_CALLS};
use gloam_core::ErrorKind;
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

/// One call counted by a callee.
#[derive(Arbitrary, Debug)]
struct Recorded {
    outcome: Option<u8>,
    processing_ns: u64,
    delay_ns: u64,
}

fn check(m: &Message) {
    let Ok(t) = Tally::from_message(m) else {
        return;
    };
    let calls = t.calls();
    assert!(calls <= MAX_RECORD_CALLS, "{calls} calls");
    for h in [&t.processing, &t.duration, &t.delay] {
        let counted: u64 = h.counts.iter().map(|&n| u64::from(n)).sum();
        assert_eq!(counted, u64::from(calls));
    }
    assert_eq!(t.holder, m.header.caller);
    assert_eq!(t.lease, m.header.sequence);
    let again = Tally::from_message(&t.to_message(m.header.worker_id, false))
        .expect("a decoded tally re-encodes to a valid record");
    assert_eq!(again, t);
}

fuzz_target!(|data: &[u8]| {
    // The record as the engine gets it off a ring: any bytes.
    if let Ok(m) = Message::decode(data, DEFAULT_MAX_PAYLOAD) {
        check(&m);
    }
    // A well-formed record header around any payload, so most inputs reach the tally.
    let mut h = Header::new(Kind::Complete);
    h.flags = flags::LANE;
    if let Ok(m) = Message::with_inline(h, &data[..data.len().min(INLINE_CAPACITY)]) {
        check(&m);
    }
    // What a callee's own `record` calls produce always decodes to itself.
    let mut u = Unstructured::new(data);
    let mut t = Tally {
        holder: u.arbitrary().unwrap_or(0),
        lease: u.arbitrary().unwrap_or(0),
        ..Tally::default()
    };
    // (`arbitrary` gives zeros, not errors, once the input is used up: bound the loop.)
    for _ in 0..64 {
        let Ok(r) = u.arbitrary::<Recorded>() else {
            break;
        };
        if u.is_empty() {
            break;
        }
        let outcome = r.outcome.and_then(ErrorKind::from_code);
        t.record(outcome, r.processing_ns, r.delay_ns);
    }
    let back = Tally::from_message(&t.to_message(1, true)).expect("a recorded tally decodes");
    assert_eq!(back, t);
});
