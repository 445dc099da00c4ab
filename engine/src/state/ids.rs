//! Worker ids with generations, and the ids of leases.
//!
//! A worker id is a `u32` on the wire: the low 16 bits are a *slot* (reused after a worker is
//! gone) and the high 16 bits its *generation* (bumped at every reuse, never 0). Everything
//! keyed by a worker id — call ids, replies to internal calls, leases, tallies — names one
//! incarnation of a slot, so nothing meant for a dead worker can reach its successor. Freed
//! slots are reused oldest first, so one slot's generation turns over as slowly as possible.

use std::collections::VecDeque;
use std::fmt;

/// Largest slot number (worker ids have 16 bits of slot).
pub const MAX_SLOT: u16 = u16::MAX;

/// A worker's id: slot and generation (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(u32);

impl WorkerId {
    /// The id of `slot` in `generation` (both non-zero for an assigned id).
    pub const fn new(slot: u16, generation: u16) -> WorkerId {
        WorkerId((generation as u32) << 16 | slot as u32)
    }

    /// The id as written on the wire.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The id read from the wire (`None` for 0, which names no worker).
    pub const fn from_raw(raw: u32) -> Option<WorkerId> {
        if raw & 0xFFFF == 0 || raw >> 16 == 0 {
            None
        } else {
            Some(WorkerId(raw))
        }
    }

    /// The slot.
    pub const fn slot(self) -> u16 {
        self.0 as u16
    }

    /// The generation.
    pub const fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.slot(), self.generation())
    }
}

/// Hands out worker ids: fresh slots while the free list is empty, else the slot freed
/// longest ago, one generation on.
#[derive(Debug)]
pub struct IdAllocator {
    /// The current generation of every slot handed out so far (index = slot).
    generations: Vec<u16>,
    free: VecDeque<u16>,
    limit: u16,
}

impl IdAllocator {
    /// An allocator of slots `1..=limit`.
    pub fn new(limit: u16) -> IdAllocator {
        IdAllocator {
            generations: vec![0],
            free: VecDeque::new(),
            limit,
        }
    }

    /// A new id, or `None` when every slot is in use.
    pub fn reserve(&mut self) -> Option<WorkerId> {
        if let Some(slot) = self.free.pop_front() {
            return Some(WorkerId::new(slot, self.generations[usize::from(slot)]));
        }
        let slot = u16::try_from(self.generations.len()).ok()?;
        if slot == 0 || slot > self.limit {
            return None;
        }
        self.generations.push(1);
        Some(WorkerId::new(slot, 1))
    }

    /// Gives `id`'s slot back (its next holder gets the next generation). Releasing an id
    /// that is not the slot's current one does nothing.
    pub fn release(&mut self, id: WorkerId) {
        let Some(generation) = self.generations.get_mut(usize::from(id.slot())) else {
            return;
        };
        if *generation != id.generation() {
            return;
        }
        *generation = match generation.wrapping_add(1) {
            0 => 1,
            g => g,
        };
        self.free.push_back(id.slot());
    }

    /// Slots handed out and not released.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.generations.len() - 1 - self.free.len()
    }
}

/// A lease's id: a counter that skips 0 and wraps (leases are short-lived; a holder's lane
/// and the callee's inbound control both carry it, so a record of an earlier lease never
/// ends a later one).
pub type LeaseId = u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_pack_slot_and_generation_and_zero_names_nobody() {
        let id = WorkerId::new(7, 3);
        assert_eq!((id.slot(), id.generation()), (7, 3));
        assert_eq!(WorkerId::from_raw(id.raw()), Some(id));
        assert_eq!(WorkerId::from_raw(0), None);
        assert_eq!(WorkerId::from_raw(7), None, "generation 0");
        assert_eq!(WorkerId::from_raw(3 << 16), None, "slot 0");
        assert_eq!(id.to_string(), "7.3");
    }

    #[test]
    fn a_reused_slot_comes_back_one_generation_on_oldest_first() {
        let mut a = IdAllocator::new(3);
        let w1 = a.reserve().unwrap();
        let w2 = a.reserve().unwrap();
        let w3 = a.reserve().unwrap();
        assert_eq!(a.reserve(), None, "3 slots");
        a.release(w2);
        a.release(w1);
        a.release(w1); // twice: ignored
        let again = a.reserve().unwrap();
        assert_eq!((again.slot(), again.generation()), (w2.slot(), 2));
        let again = a.reserve().unwrap();
        assert_eq!((again.slot(), again.generation()), (w1.slot(), 2));
        assert_ne!(again, w1);
        assert_eq!(a.in_use(), 3);
        a.release(w3);
        assert_eq!(a.in_use(), 2);
    }

    #[test]
    fn generations_skip_zero_when_they_wrap() {
        let mut a = IdAllocator::new(1);
        let mut id = a.reserve().unwrap();
        for _ in 0..u16::MAX as u32 + 2 {
            a.release(id);
            id = a.reserve().unwrap();
            assert_ne!(id.generation(), 0);
        }
    }
}
