//! The monotonic clock every process on a node shares (`CLOCK_MONOTONIC`, nanoseconds).
//!
//! Deadlines and send timestamps travel between processes, so they use the system-wide
//! monotonic clock rather than a per-process `Instant`.

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn now_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; a zero reading would only disable deadlines.
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Nanoseconds left until `deadline_ns` (0 = no deadline → `None`).
pub fn remaining(deadline_ns: u64) -> Option<std::time::Duration> {
    (deadline_ns != 0)
        .then(|| std::time::Duration::from_nanos(deadline_ns.saturating_sub(now_ns())))
}
