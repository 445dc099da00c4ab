//! A snapshot of the engine for `GET /_/status` and `gloam status`.

use serde::{Deserialize, Serialize};

use crate::engine::Engine;

/// One function's view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FunctionStatus {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: u16,
    /// Ready logical workers.
    pub workers: usize,
    /// Of which idle.
    pub idle: usize,
    /// Calls running.
    pub running: usize,
    /// Calls queued.
    pub queued: usize,
    /// Calls completed.
    pub completed: u64,
    /// Calls failed.
    pub failed: u64,
}

/// One worker's view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerStatus {
    /// Its id.
    pub id: u32,
    /// The function it serves.
    pub function: String,
    /// Its process.
    pub pid: u32,
    /// Its language runtime.
    pub language: String,
    /// Whether it runs a call now.
    pub busy: bool,
}

/// The whole engine's view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// Functions, by id.
    pub functions: Vec<FunctionStatus>,
    /// Workers, by id.
    pub workers: Vec<WorkerStatus>,
    /// Calls in flight.
    pub calls_in_flight: usize,
}

/// Takes a snapshot.
pub fn snapshot(engine: &Engine) -> Status {
    let st = engine.lock();
    let mut functions: Vec<FunctionStatus> = st
        .functions()
        .map(|f| FunctionStatus {
            name: f.config.name.clone(),
            id: f.config.id,
            workers: f.ready_workers,
            idle: f.idle.len(),
            running: f.running,
            queued: f.queue.len(),
            completed: f.completed,
            failed: f.failed,
        })
        .collect();
    functions.sort_by_key(|f| f.id);
    let mut workers: Vec<WorkerStatus> = st
        .workers()
        .map(|(id, w)| WorkerStatus {
            id: *id,
            function: st
                .function(w.function_id)
                .map_or(String::new(), |f| f.config.name.clone()),
            pid: w.pid,
            language: w.language.clone(),
            busy: w.current.is_some(),
        })
        .collect();
    workers.sort_by_key(|w| w.id);
    Status {
        functions,
        workers,
        calls_in_flight: st.calls_in_flight(),
    }
}
