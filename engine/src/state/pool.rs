//! A function's worker processes as the engine counts them: launcher slots, each hosting
//! `workers_per_process` logical workers, never more than `max_workers` logical workers in
//! all — whatever dies and restarts.
//!
//! The launcher restarts a process that exits by itself in the same slot, so a crash changes
//! nothing here: the slot still counts (its workers are being restarted). A slot ends only
//! when the engine retired its process (it counts as `retiring` until its last worker is
//! gone). Growth adds a slot; the pool grows while calls wait, no worker is idle and the
//! slots' workers (ready, starting or restarting) number fewer than τ.

use crate::config::FunctionConfig;

/// One function's process slots.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Whether a launcher runs this function's processes (else workers come by hand and the
    /// pool never grows).
    pub launched: bool,
    /// Live slots (running, starting or waiting to restart).
    pub slots: usize,
    /// Slots whose process was retired and has workers still connected.
    pub retiring: usize,
    /// Logical workers per process.
    pub workers_per_process: usize,
    /// Most slots at once: `max_workers / workers_per_process` (at least 1).
    pub max_slots: usize,
    /// Slots to add back for processes retired by a roll (sources rebuilt), as room allows.
    pub refill: usize,
}

impl Pool {
    /// The pool of `config`, before any launcher is attached.
    pub fn new(config: &FunctionConfig) -> Pool {
        let wpp = config.workers_per_process.max(1);
        Pool {
            launched: false,
            slots: 0,
            retiring: 0,
            workers_per_process: wpp,
            max_slots: (config.max_workers / wpp).max(1),
            refill: 0,
        }
    }

    /// A launcher started `slots` processes.
    pub fn launch(&mut self, slots: usize) {
        self.launched = true;
        self.slots = slots.min(self.max_slots);
    }

    /// Logical workers the live slots host (ready or not).
    pub fn capacity(&self) -> usize {
        self.slots * self.workers_per_process
    }

    /// Whether one more slot fits under `max_workers` (retiring processes still count).
    pub fn can_grow(&self) -> bool {
        self.launched && self.slots + self.retiring < self.max_slots
    }

    /// A slot was added.
    pub fn grew(&mut self) {
        self.slots += 1;
    }

    /// A slot's process was asked to retire.
    pub fn retire(&mut self) {
        self.slots = self.slots.saturating_sub(1);
        self.retiring += 1;
    }

    /// A retired process's last worker is gone.
    pub fn retired(&mut self) {
        self.retiring = self.retiring.saturating_sub(1);
    }
}
