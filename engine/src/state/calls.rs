//! The call table: every call the engine knows about, from receipt to its one ending.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use gloam_core::protocol::{CallId, Message};

use super::action::ReplyTo;
use super::function::Class;
use super::ids::WorkerId;
use super::timers::TimerId;

/// A map keyed by an engine-assigned integer id. SipHash's defence against chosen keys buys
/// nothing here (a worker choosing its call ids only slows its own bucket), and it showed in
/// profiles of the per-call path; a multiplicative hash is enough.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of the integers written into it.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A call in flight.
#[derive(Debug)]
pub struct CallRecord<R> {
    /// Where the result goes.
    pub reply: ReplyTo<R>,
    /// The called function.
    pub function_id: u16,
    /// The `DISPATCH` message, while the call waits in its function's queue.
    pub queued: Option<Box<Message>>,
    /// The worker running it, once dispatched.
    pub worker: Option<WorkerId>,
    /// Dispatched behind its worker's current call and not started yet (not counted in
    /// `running`, but in `pipelined`).
    pub pipelined: bool,
    /// When the engine received it (monotonic ns).
    pub recv_ns: u64,
    /// When it was dispatched (0 while queued).
    pub dispatch_ns: u64,
    /// Its absolute deadline.
    pub deadline_ns: u64,
    /// Its deadline timer.
    pub timer: TimerId,
    /// Its input travels by descriptor; the engine drops it when the call ends.
    pub input_by_fd: bool,
    /// Its priority class.
    pub class: Class,
}

/// The calls in flight, by id.
#[derive(Debug)]
pub struct Calls<R> {
    map: IdMap<CallId, CallRecord<R>>,
}

impl<R> Default for Calls<R> {
    fn default() -> Calls<R> {
        Calls {
            map: IdMap::default(),
        }
    }
}

impl<R> Calls<R> {
    /// Whether `id` is in flight.
    pub fn contains(&self, id: CallId) -> bool {
        self.map.contains_key(&id)
    }

    /// Adds a call; `false` (and nothing changed) when `id` is already in flight.
    pub fn insert(&mut self, id: CallId, record: CallRecord<R>) -> Result<(), CallRecord<R>> {
        match self.map.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => Err(record),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(record);
                Ok(())
            }
        }
    }

    /// The call `id`.
    pub fn get(&self, id: CallId) -> Option<&CallRecord<R>> {
        self.map.get(&id)
    }

    /// The call `id`, mutably.
    pub fn get_mut(&mut self, id: CallId) -> Option<&mut CallRecord<R>> {
        self.map.get_mut(&id)
    }

    /// Takes call `id` out (it ends).
    pub fn remove(&mut self, id: CallId) -> Option<CallRecord<R>> {
        self.map.remove(&id)
    }

    /// Calls in flight.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every call in flight.
    pub fn iter(&self) -> impl Iterator<Item = (&CallId, &CallRecord<R>)> {
        self.map.iter()
    }

    /// The ids of every call in flight.
    pub fn ids(&self) -> Vec<CallId> {
        self.map.keys().copied().collect()
    }
}
