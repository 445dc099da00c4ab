//! Tallies of direct-lane calls: what a callee tells the engine about the calls it ran on a
//! lane, in one record per batch instead of one message per call.
//!
//! A record is a `COMPLETE` message with [`flags::LANE`] (and [`flags::LANE_END`] when the
//! lease ended with its last call) whose `caller` is the holder, whose `sequence` is the
//! lease, and whose inline payload is the tally: counts by outcome, histograms of handler time and of call duration (caller's
//! send to the callee's answer) over [`LATENCY_BUCKETS_NS`], and their sums. The engine adds it
//! to its metrics as if it had seen each call.

use crate::error::ErrorKind;
use crate::protocol::{flags, Header, Kind, Message, ProtocolError};

/// Upper bounds (ns) of the latency histogram buckets, shared by the engine's metrics and
/// the tallies; one more bucket holds everything above the last bound.
pub const LATENCY_BUCKETS_NS: [u64; 23] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];
/// Buckets of a histogram (the bounds and the overflow bucket).
pub const BUCKETS: usize = LATENCY_BUCKETS_NS.len() + 1;
/// Outcome slots: 0 = success, else an [`ErrorKind`] code.
pub const OUTCOMES: usize = 13;
/// Most calls one record may count (a callee sends one every 64 calls; a record claiming more
/// is refused, so no sum of a peer's numbers can overflow).
pub const MAX_RECORD_CALLS: u32 = 4096;

/// The bucket of a latency.
pub fn bucket_of(ns: u64) -> usize {
    LATENCY_BUCKETS_NS.partition_point(|&b| b < ns)
}

/// A histogram in a tally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TallyHistogram {
    /// Samples per bucket.
    pub counts: [u32; BUCKETS],
    /// Sum of the samples (ns).
    pub sum_ns: u64,
}

impl TallyHistogram {
    fn record(&mut self, ns: u64) {
        let c = &mut self.counts[bucket_of(ns)];
        *c = c.saturating_add(1);
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }
}

/// What a callee ran on its lane since its last record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// The holder of the lease the calls came from.
    pub holder: u32,
    /// The lease.
    pub lease: u32,
    /// Calls by outcome.
    pub outcomes: [u32; OUTCOMES],
    /// Handler time.
    pub processing: TallyHistogram,
    /// The caller's send to the answer.
    pub duration: TallyHistogram,
    /// The caller's send to the callee's receipt (the channel's share).
    pub delay: TallyHistogram,
}

const U32S: usize = OUTCOMES + 3 * BUCKETS;
const ENCODED_LEN: usize = 4 * U32S + 24;

impl Tally {
    /// Calls counted (saturating; a decoded tally holds at most [`MAX_RECORD_CALLS`]).
    pub fn calls(&self) -> u32 {
        self.outcomes.iter().fold(0u32, |a, &n| a.saturating_add(n))
    }

    /// Counts one call: its handler time and the delay from the caller's send to receipt.
    pub fn record(&mut self, outcome: Option<ErrorKind>, processing_ns: u64, delay_ns: u64) {
        let i = outcome.map_or(0, |k| usize::from(k.code()));
        let slot = &mut self.outcomes[i.min(OUTCOMES - 1)];
        *slot = slot.saturating_add(1);
        self.processing.record(processing_ns);
        self.delay.record(delay_ns);
        self.duration.record(delay_ns.saturating_add(processing_ns));
    }

    /// The record message (`lease_ended`: the lease ended with the last call counted).
    pub fn to_message(&self, worker_id: u32, lease_ended: bool) -> Message {
        let mut payload = [0u8; ENCODED_LEN];
        let u32s = self
            .outcomes
            .iter()
            .chain(self.processing.counts.iter())
            .chain(self.duration.counts.iter())
            .chain(self.delay.counts.iter());
        for (chunk, v) in payload.chunks_exact_mut(4).zip(u32s) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        let sums = [
            self.processing.sum_ns,
            self.duration.sum_ns,
            self.delay.sum_ns,
        ];
        for (chunk, v) in payload[4 * U32S..].chunks_exact_mut(8).zip(sums) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        let mut h = Header::new(Kind::Complete);
        h.flags = flags::LANE | if lease_ended { flags::LANE_END } else { 0 };
        h.caller = self.holder;
        h.sequence = self.lease;
        h.worker_id = worker_id;
        Message::with_inline(h, &payload).expect("a tally fits inline")
    }

    /// Decodes the tally of a record message, checking that its numbers agree: at most
    /// [`MAX_RECORD_CALLS`] calls, and every histogram counts each call once.
    pub fn from_message(m: &Message) -> Result<Tally, ProtocolError> {
        let p = m.inline_payload();
        if p.len() != ENCODED_LEN {
            return Err(ProtocolError::BadPayload {
                field: "lane tally",
                reason: format!("{} bytes, expected {ENCODED_LEN}", p.len()),
            });
        }
        // In bounds: the payload is exactly ENCODED_LEN bytes (checked above).
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&p[4 * i..4 * i + 4]);
            u32::from_le_bytes(b)
        };
        let sum = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut t = Tally {
            holder: m.header.caller,
            lease: m.header.sequence,
            ..Tally::default()
        };
        for i in 0..OUTCOMES {
            t.outcomes[i] = word(i);
        }
        for i in 0..BUCKETS {
            t.processing.counts[i] = word(OUTCOMES + i);
            t.duration.counts[i] = word(OUTCOMES + BUCKETS + i);
            t.delay.counts[i] = word(OUTCOMES + 2 * BUCKETS + i);
        }
        t.processing.sum_ns = sum(4 * U32S);
        t.duration.sum_ns = sum(4 * U32S + 8);
        t.delay.sum_ns = sum(4 * U32S + 16);
        let bad = |reason: String| ProtocolError::BadPayload {
            field: "lane tally",
            reason,
        };
        let total = |counts: &[u32]| {
            counts
                .iter()
                .try_fold(0u32, |a, &n| a.checked_add(n))
                .filter(|n| *n <= MAX_RECORD_CALLS)
        };
        let calls = total(&t.outcomes)
            .ok_or_else(|| bad(format!("more than {MAX_RECORD_CALLS} calls in one record")))?;
        for (name, h) in [
            ("processing", &t.processing),
            ("duration", &t.duration),
            ("delay", &t.delay),
        ] {
            if total(&h.counts) != Some(calls) {
                return Err(bad(format!(
                    "the {name} histogram does not count the record's {calls} calls"
                )));
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_round_trips_through_its_record() {
        let mut t = Tally {
            holder: 42,
            lease: 9,
            ..Tally::default()
        };
        t.record(None, 900, 1_600);
        t.record(None, 1_500, 40_000_000_000);
        t.record(Some(ErrorKind::Timeout), 3_000, 6_000);
        assert_eq!(t.calls(), 3);
        let m = t.to_message(7, true);
        assert_eq!(m.header.flags, flags::LANE | flags::LANE_END);
        let bytes = m.to_bytes();
        let back = Tally::from_message(&Message::decode(&bytes, 1 << 20).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.processing.counts[0], 1);
        assert_eq!(back.duration.counts[BUCKETS - 1], 1);
        assert_eq!(back.outcomes[usize::from(ErrorKind::Timeout.code())], 1);
    }

    #[test]
    fn counts_that_disagree_or_overflow_are_refused() {
        let mut t = Tally::default();
        t.record(None, 1, 1);
        t.outcomes[0] = u32::MAX;
        let e = Tally::from_message(&t.to_message(1, false)).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        let mut t = Tally::default();
        t.record(None, 1, 1);
        t.duration.counts[3] += 1;
        let e = Tally::from_message(&t.to_message(1, false)).unwrap_err();
        assert!(e.to_string().contains("duration"), "{e}");
        let t = Tally {
            outcomes: [u32::MAX / 8; OUTCOMES],
            ..Tally::default()
        };
        assert!(Tally::from_message(&t.to_message(1, false)).is_err());
    }

    #[test]
    fn a_short_payload_is_an_error_naming_the_tally() {
        let m = Message::with_inline(Header::new(Kind::Complete), b"xx").unwrap();
        let e = Tally::from_message(&m).unwrap_err();
        assert!(e.to_string().contains("lane tally"), "{e}");
    }
}
