//! A hashed timing wheel: the engine's deadlines, kill timers and revoke timeouts.
//!
//! Every call in flight has a deadline, so the engine inserts and removes a timer per call:
//! both are O(1) here (a slab entry plus a slot of [`SLOTS`] ticks of [`TICK_NS`]), where a
//! sorted set costs a tree insertion and removal per call. A timer whose deadline lies more
//! than one turn ahead stays in its slot and is passed over until its turn comes. Firing order
//! within one tick is unspecified; nothing fires before its deadline.
//!
//! [`TimerWheel::next_wake`] tells the timer thread how long it may sleep: the earliest
//! deadline of the first occupied slot within one turn (found through a bitmap of occupied
//! slots), or one turn ahead when nothing is due sooner — so a far deadline costs at most one
//! wake-up per turn.

use slab::Slab;

/// Resolution of the wheel (1 ms).
pub const TICK_NS: u64 = 1_000_000;
/// Slots per turn (a turn is 4.096 s).
pub const SLOTS: usize = 4096;
const WORDS: usize = SLOTS / 64;

/// A timer's handle, for [`TimerWheel::cancel`]. Valid until the timer fires or is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(usize);

#[derive(Debug)]
struct Entry<K> {
    deadline: u64,
    key: K,
    slot: u16,
    pos: u32,
}

/// Timers keyed by `K`, on an explicit clock (monotonic ns).
#[derive(Debug)]
pub struct TimerWheel<K> {
    entries: Slab<Entry<K>>,
    slots: Vec<Vec<usize>>,
    occupied: [u64; WORDS],
    /// The tick up to which every slot has been visited.
    now_tick: u64,
    /// The earliest deadline inserted since [`TimerWheel::take_earliest_new`].
    earliest_new: Option<u64>,
}

fn tick_of(ns: u64) -> u64 {
    ns / TICK_NS
}

fn slot_of(tick: u64) -> usize {
    (tick % SLOTS as u64) as usize
}

impl<K: Copy> TimerWheel<K> {
    /// An empty wheel whose clock starts at `now`.
    pub fn new(now: u64) -> TimerWheel<K> {
        TimerWheel {
            entries: Slab::new(),
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            now_tick: tick_of(now),
            earliest_new: None,
        }
    }

    /// Timers pending.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is pending.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a timer firing at `deadline` (a deadline already past fires at the next advance).
    pub fn insert(&mut self, deadline: u64, key: K) -> TimerId {
        // A past deadline goes into the current slot, which the next advance visits.
        let slot = slot_of(tick_of(deadline).max(self.now_tick));
        let pos = self.slots[slot].len() as u32;
        let id = self.entries.insert(Entry {
            deadline,
            key,
            slot: slot as u16,
            pos,
        });
        self.slots[slot].push(id);
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.earliest_new = Some(self.earliest_new.map_or(deadline, |e| e.min(deadline)));
        TimerId(id)
    }

    /// The earliest deadline inserted since the last call (the timer thread sleeps towards an
    /// earlier one and must be woken).
    pub fn take_earliest_new(&mut self) -> Option<u64> {
        self.earliest_new.take()
    }

    /// Removes a pending timer; returns its key, or `None` if it already fired or was
    /// cancelled (and its handle not reused since).
    pub fn cancel(&mut self, id: TimerId) -> Option<K> {
        let entry = self.entries.try_remove(id.0)?;
        self.unlink(entry.slot as usize, entry.pos as usize);
        Some(entry.key)
    }

    /// Takes index `pos` out of slot `slot`, fixing the position of the entry moved into it.
    fn unlink(&mut self, slot: usize, pos: usize) {
        let list = &mut self.slots[slot];
        list.swap_remove(pos);
        if let Some(&moved) = list.get(pos) {
            if let Some(e) = self.entries.get_mut(moved) {
                e.pos = pos as u32;
            }
        }
        if list.is_empty() {
            self.occupied[slot / 64] &= !(1 << (slot % 64));
        }
    }

    /// Fires every timer whose deadline is at or before `now`, in no particular order,
    /// appending their keys to `fired`.
    pub fn advance(&mut self, now: u64, fired: &mut Vec<K>) {
        let target = tick_of(now);
        if target < self.now_tick {
            return;
        }
        // More than a turn passed: every slot is visited once.
        let ticks = (target - self.now_tick).min(SLOTS as u64 - 1);
        for t in (target - ticks)..=target {
            let slot = slot_of(t);
            let mut i = 0;
            while i < self.slots[slot].len() {
                let id = self.slots[slot][i];
                let due = self.entries.get(id).is_some_and(|e| e.deadline <= now);
                if due {
                    let entry = self.entries.remove(id);
                    self.unlink(slot, i);
                    fired.push(entry.key);
                } else {
                    i += 1;
                }
            }
        }
        self.now_tick = target;
    }

    /// When the next timer may be due: the earliest deadline in the first occupied slot
    /// ahead (within one turn), capped at one turn from `now`; `None` when no timer is
    /// pending.
    pub fn next_wake(&self, now: u64) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        let turn_end = now.saturating_add(SLOTS as u64 * TICK_NS);
        let start = slot_of(self.now_tick);
        for step in 0..WORDS + 1 {
            // Scan the bitmap word by word from the current slot, wrapping once.
            let word_index = (start / 64 + step) % WORDS;
            let mut bits = self.occupied[word_index];
            if step == 0 {
                bits &= !0u64 << (start % 64);
            } else if step == WORDS {
                bits &= (1u64 << (start % 64)).wrapping_sub(1);
            }
            if bits == 0 {
                continue;
            }
            let slot = word_index * 64 + bits.trailing_zeros() as usize;
            let earliest = self.slots[slot]
                .iter()
                .filter_map(|&id| self.entries.get(id).map(|e| e.deadline))
                .min()
                .unwrap_or(turn_end);
            // The slot's earliest entry may belong to a later turn: wake at the end of this
            // turn at the latest, when the slots ahead are looked at again.
            return Some(earliest.min(turn_end));
        }
        Some(turn_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = TICK_NS;

    #[test]
    fn timers_fire_at_their_deadline_not_before() {
        let mut w = TimerWheel::new(0);
        w.insert(5 * MS, 'a');
        w.insert(5 * MS + 1, 'b');
        w.insert(2 * MS, 'c');
        let mut fired = Vec::new();
        w.advance(MS, &mut fired);
        assert!(fired.is_empty());
        w.advance(5 * MS, &mut fired);
        fired.sort_unstable();
        assert_eq!(fired, vec!['a', 'c']);
        assert_eq!(w.len(), 1, "b is due 1 ns later");
        fired.clear();
        w.advance(6 * MS, &mut fired);
        assert_eq!(fired, vec!['b']);
        assert!(w.is_empty());
    }

    #[test]
    fn cancelled_timers_never_fire_and_handles_stay_valid() {
        let mut w = TimerWheel::new(0);
        let ids: Vec<TimerId> = (0..10).map(|i| w.insert(3 * MS, i)).collect();
        assert_eq!(w.cancel(ids[0]), Some(0));
        assert_eq!(w.cancel(ids[0]), None);
        assert_eq!(w.cancel(ids[9]), Some(9));
        assert_eq!(w.cancel(ids[4]), Some(4));
        let mut fired = Vec::new();
        w.advance(3 * MS, &mut fired);
        fired.sort_unstable();
        assert_eq!(fired, vec![1, 2, 3, 5, 6, 7, 8]);
        assert!(w.is_empty());
        assert_eq!(w.occupied, [0; WORDS]);
    }

    #[test]
    fn deadlines_beyond_a_turn_wait_for_their_turn() {
        let turn = SLOTS as u64 * MS;
        let mut w = TimerWheel::new(0);
        w.insert(turn + 7 * MS, "far");
        w.insert(7 * MS, "near");
        assert_eq!(w.next_wake(0), Some(7 * MS));
        let mut fired = Vec::new();
        w.advance(7 * MS, &mut fired);
        assert_eq!(fired, vec!["near"]);
        fired.clear();
        // The far timer is due within one turn from now.
        assert_eq!(w.next_wake(8 * MS), Some(turn + 7 * MS));
        // Seen from the start, a timer a turn and more away is capped at one turn.
        let mut far = TimerWheel::new(0);
        far.insert(3 * turn, "later");
        assert_eq!(far.next_wake(0), Some(turn));
        w.advance(turn, &mut fired);
        assert!(fired.is_empty());
        w.advance(turn + 7 * MS, &mut fired);
        assert_eq!(fired, vec!["far"]);
        assert_eq!(w.next_wake(turn + 8 * MS), None);
    }

    #[test]
    fn a_long_jump_of_the_clock_fires_everything_due() {
        let mut w = TimerWheel::new(0);
        for i in 0..3 * SLOTS as u64 {
            w.insert(i * MS, i);
        }
        let mut fired = Vec::new();
        w.advance(10 * SLOTS as u64 * MS, &mut fired);
        assert_eq!(fired.len(), 3 * SLOTS);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_at_the_next_advance() {
        let mut w = TimerWheel::new(100 * MS);
        w.insert(MS, "late");
        assert_eq!(w.next_wake(100 * MS), Some(MS));
        let mut fired = Vec::new();
        w.advance(100 * MS, &mut fired);
        assert_eq!(fired, vec!["late"]);
    }

    #[test]
    fn next_wake_finds_the_first_occupied_slot_across_the_wrap() {
        let mut w = TimerWheel::new(4000 * MS);
        w.insert(4100 * MS, 1); // slot 4, past the wrap
        w.insert(4050 * MS, 2); // slot 4050
        assert_eq!(w.next_wake(4000 * MS), Some(4050 * MS));
        let mut fired = Vec::new();
        w.advance(4060 * MS, &mut fired);
        assert_eq!(fired, vec![2]);
        assert_eq!(w.next_wake(4060 * MS), Some(4100 * MS));
    }
}
