//! What the launcher reports: a worker process that exited by itself, or could not be started.
//!
//! An exit of a process that had a ready worker is a crash: the launcher restarts it and calls
//! wait for it as before. A process that could not be started, or exited before any of its
//! workers was ready, means the function's workers *cannot start*: while the function has no
//! ready worker it is **unavailable** — its queued calls fail at once with
//! `FUNCTION_UNAVAILABLE` and the reason, and so do new calls — until one of its workers
//! becomes ready ([`State::worker_ready`]).

use gloam_core::ErrorKind;

use super::end::Ending;
use super::{Actions, State};

/// How a worker process of a launcher ended, as the launcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEnd {
    /// It ran and exited (or was killed).
    Exited {
        /// Its process group (its pid: the launcher starts each process in its own group).
        group: u32,
        /// How: `exit code 1`, `killed by SIGSEGV`, ...
        status: String,
        /// The line of its stderr that best says why it ended, if any.
        last_line: Option<String>,
    },
    /// It could not be started (the command is missing, not executable, ...).
    NotStarted {
        /// The error, naming the command.
        error: String,
    },
}

impl<R, S: Clone> State<R, S> {
    /// A worker process of `function_id` ended without the engine asking (the launcher starts
    /// it again after its backoff). Counts a restart; when it never had a ready worker and
    /// the function has none, the function becomes unavailable (see the [module docs](self)).
    pub fn process_ended(&mut self, function_id: u16, end: &ProcessEnd, now: u64) -> Actions<R, S> {
        let mut actions = Vec::new();
        let Some(f) = self.function_mut(function_id) else {
            return actions;
        };
        f.restarts += 1;
        let (crashed, what) = match end {
            ProcessEnd::Exited {
                group,
                status,
                last_line,
            } => {
                let crashed = f.group_exited(*group);
                let mut what = if crashed {
                    format!("its worker process exited ({status})")
                } else {
                    format!("its worker process exited before it was ready ({status})")
                };
                if let Some(line) = last_line {
                    what.push_str(": ");
                    what.push_str(line);
                }
                (crashed, what)
            }
            ProcessEnd::NotStarted { error } => (
                false,
                format!("its worker process cannot be started: {error}"),
            ),
        };
        f.last_exit = Some(what.clone());
        if crashed || f.ready_workers > 0 {
            return actions;
        }
        let text = format!("function {} has no worker: {what}", f.config.name);
        f.unavailable = Some(text.clone());
        self.fail_queued(function_id, &text, now, &mut actions);
        actions
    }

    /// Fails every call queued for `function_id` with `FUNCTION_UNAVAILABLE` (oldest first;
    /// their ids leave the queue as ended calls do).
    fn fail_queued(&mut self, function_id: u16, text: &str, now: u64, actions: &mut Actions<R, S>) {
        let mut queued: Vec<_> = self
            .calls
            .iter()
            .filter(|(_, rec)| rec.function_id == function_id && rec.worker.is_none())
            .map(|(id, rec)| (rec.recv_ns, *id))
            .collect();
        queued.sort_unstable();
        for (_, id) in queued {
            let ending = Ending::Failed(ErrorKind::FunctionUnavailable, text.to_string());
            self.end_call(id, ending, now, true, actions);
        }
    }
}
