//! Asynchronous calls: `POST /async-function/NAME` answers `202` with a call id once the call
//! is stored; the call runs later, in the background priority class (behind every
//! interactive call, see [`crate::state::Class`]); `GET /calls/ID` reads its result; an
//! optional callback POSTs it.
//!
//! **Durability: at least once.** An accepted call is in the store (fsync'd) before its `202`
//! and stays until its result is stored. An engine killed (even `kill -9`) before that runs
//! it again when it restarts with the same store, so a call may run twice; it keeps its id
//! across runs (`ctx.call_id()` in the handler, the `X-Call-Id` the client got), which is
//! what a handler deduplicates on. A result, once stored, is final: `GET /calls/ID` answers
//! it until `async.result_ttl` has passed, then `404`.
//!
//! A call is identified by its sequence in the store; its id is [`CallId::new`]`(ASYNC_CALLER,
//! sequence)` printed as 16 hex digits. [`ASYNC_CALLER`] is slot 0, which no worker has.

mod callback;
mod store;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

use gloam_core::{CallId, ErrorKind};

use crate::config::AsyncConfig;
use crate::engine::Engine;
use crate::external::CallOptions;
use crate::state::{Class, Refusal};

pub use callback::check_url;
pub use store::{Ended, Meta, Store};

/// The caller part of asynchronous call ids (slot 0, generation 1: never a worker).
pub const ASYNC_CALLER: u32 = 0x0001_0000;

/// What `GET /calls/ID` finds.
#[derive(Debug)]
pub enum Lookup {
    /// No such call, or its result expired.
    NotFound,
    /// Accepted, not ended yet.
    Pending,
    /// Ended well: its output.
    Done(Bytes),
    /// Ended with a failure.
    Failed(ErrorKind, String),
}

/// The counters `/metrics` shows.
#[derive(Debug, Default)]
pub struct AsyncMetrics {
    /// Calls accepted (`202`).
    pub accepted: AtomicU64,
    /// Calls whose result is stored.
    pub completed: AtomicU64,
    /// Callback retries, and calls run again after a restart.
    pub retried: AtomicU64,
    /// Callbacks given up after the last attempt, and results expired unread by callback.
    pub dropped: AtomicU64,
    /// Calls refused at submit (queue bound, callback host, store failure).
    pub refused: AtomicU64,
}

/// The asynchronous calls of one engine.
pub struct AsyncCalls {
    config: AsyncConfig,
    store: Store,
    poster: callback::Poster,
    /// Accepted calls not ended (running included).
    pending: AtomicUsize,
    /// Next sequence to hand out.
    next: Mutex<u32>,
    /// Calls waiting to be started, by function; and how many of each function run.
    queues: Mutex<HashMap<String, (VecDeque<u32>, usize)>>,
    wake: Notify,
    /// What `/metrics` shows.
    pub metrics: AsyncMetrics,
}

impl std::fmt::Debug for AsyncCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncCalls")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The id clients see for sequence `seq`.
pub fn call_id(seq: u32) -> String {
    CallId::new(ASYNC_CALLER, seq).to_string()
}

/// The sequence of an id clients sent, if it is one of ours.
pub fn parse_id(text: &str) -> Option<u32> {
    let id = CallId(u64::from_str_radix(text, 16).ok()?);
    (text.len() == 16 && id.caller() == ASYNC_CALLER).then_some(id.sequence())
}

impl AsyncCalls {
    /// Opens the store of `config` and queues every call it holds that has not ended (they
    /// run again: at least once); callbacks not yet delivered are delivered again.
    pub fn open(engine: &Arc<Engine>, config: &AsyncConfig) -> Result<Arc<AsyncCalls>, Refusal> {
        let store = Store::open(&config.store)?;
        let (calls, next) = store.load()?;
        let me = Arc::new(AsyncCalls {
            config: config.clone(),
            store,
            poster: callback::Poster::new(config),
            pending: AtomicUsize::new(0),
            next: Mutex::new(next.max(1)),
            queues: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            metrics: AsyncMetrics::default(),
        });
        let (mut requeued, mut callbacks) = (0usize, 0usize);
        for (seq, meta) in calls {
            match &meta.ended {
                None => {
                    me.pending.fetch_add(1, Ordering::SeqCst);
                    me.queue(&meta.function, seq);
                    requeued += 1;
                }
                Some(e) if e.callback_pending => {
                    callbacks += 1;
                    me.clone().spawn_callback(seq, meta.clone());
                }
                Some(_) => {}
            }
        }
        if requeued + callbacks > 0 {
            tracing::info!(
                calls = requeued,
                callbacks,
                store = %config.store.display(),
                "asynchronous calls not ended when the engine stopped run again"
            );
        }
        tokio::spawn(me.clone().run(engine.clone()));
        tokio::spawn(me.clone().sweep());
        Ok(me)
    }

    /// Appends the counters in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let m = &self.metrics;
        let counters = [
            ("accepted", "accepted (202)", &m.accepted),
            ("completed", "whose result is stored", &m.completed),
            (
                "retried",
                "callback retries and calls run again after a restart",
                &m.retried,
            ),
            (
                "dropped",
                "callbacks given up after the last attempt",
                &m.dropped,
            ),
            (
                "refused",
                "refused at submit (queue bound, callback host, store)",
                &m.refused,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP gloam_async_calls_{name}_total Asynchronous calls {help}.\n\
                 # TYPE gloam_async_calls_{name}_total counter\n\
                 gloam_async_calls_{name}_total {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gloam_async_calls_pending Asynchronous calls accepted and not ended.\n\
             # TYPE gloam_async_calls_pending gauge\ngloam_async_calls_pending {}",
            self.pending()
        );
    }

    /// Accepted calls not ended.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    fn lock_queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, (VecDeque<u32>, usize)>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, function: &str, seq: u32) {
        self.lock_queues()
            .entry(function.to_string())
            .or_default()
            .0
            .push_back(seq);
        self.wake.notify_one();
    }

    /// Accepts a call of `function` (checked by the caller: deployed, input within its
    /// limit): stores it and returns its id. Refused when `async.queue_bound` calls are
    /// pending (`OVERLOADED`), or the callback URL is not allowed (`INVALID_ARGUMENT`).
    pub async fn submit(
        &self,
        function: &str,
        method_id: u16,
        input: Bytes,
        callback: Option<&str>,
    ) -> Result<String, Refusal> {
        let refused = |r: Refusal| {
            self.metrics.refused.fetch_add(1, Ordering::Relaxed);
            r
        };
        if let Some(url) = callback {
            check_url(url, &self.config.callback_hosts).map_err(refused)?;
        }
        let bound = self.config.queue_bound;
        if self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                (p < bound).then_some(p + 1)
            })
            .is_err()
        {
            return Err(refused(Refusal::new(
                ErrorKind::Overloaded,
                format!("{bound} asynchronous calls are pending (async.queue_bound)"),
            )));
        }
        let (seq, next) = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let seq = *next;
            *next = next.wrapping_add(1).max(1);
            (seq, *next)
        };
        let meta = Meta {
            function: function.to_string(),
            method_id,
            callback: callback.map(|c| c.trim().to_string()),
            accepted_ms: now_ms(),
            runs: 0,
            ended: None,
        };
        if let Err(e) = self.store.accept(seq, &meta, input, next).await {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(refused(e));
        }
        self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
        self.queue(function, seq);
        Ok(call_id(seq))
    }

    /// What `GET /calls/ID` answers.
    pub fn lookup(&self, id: &str) -> Result<Lookup, Refusal> {
        let Some(seq) = parse_id(id) else {
            return Ok(Lookup::NotFound);
        };
        let Some(meta) = self.store.meta(seq)? else {
            return Ok(Lookup::NotFound);
        };
        let Some(ended) = meta.ended else {
            return Ok(Lookup::Pending);
        };
        if self.expired(&ended, now_ms()) {
            return Ok(Lookup::NotFound);
        }
        Ok(match ended.error {
            None => Lookup::Done(Bytes::from(
                self.store.bytes(seq, true)?.unwrap_or_default(),
            )),
            Some(kind) => Lookup::Failed(kind_named(&kind), ended.message),
        })
    }

    fn expired(&self, ended: &Ended, now: u64) -> bool {
        let ttl = u64::try_from(self.config.result_ttl.as_millis()).unwrap_or(u64::MAX);
        ended.at_ms.saturating_add(ttl) <= now
    }

    /// Starts queued calls, at most `max_workers` (and `queue_bound`) of each function at once
    /// (the state's background class then orders them behind interactive calls).
    async fn run(self: Arc<Self>, engine: Arc<Engine>) {
        loop {
            let mut start = Vec::new();
            {
                let mut queues = self.lock_queues();
                for (function, (queue, running)) in queues.iter_mut() {
                    // Within the function's queue bound too, so the state never refuses one
                    // of them for a full background queue.
                    let window = engine
                        .function_by_name(function)
                        .map_or(1, |f| f.max_workers.min(f.queue_bound).max(1));
                    while *running < window {
                        let Some(seq) = queue.pop_front() else { break };
                        *running += 1;
                        start.push((function.clone(), seq));
                    }
                }
            }
            for (function, seq) in start {
                tokio::spawn(self.clone().run_one(engine.clone(), function, seq));
            }
            self.wake.notified().await;
        }
    }

    async fn run_one(self: Arc<Self>, engine: Arc<Engine>, function: String, seq: u32) {
        let finished = self.run_call(&engine, seq).await;
        {
            let mut queues = self.lock_queues();
            if let Some((queue, running)) = queues.get_mut(&function) {
                *running = running.saturating_sub(1);
                if !finished {
                    queue.push_back(seq);
                }
            }
        }
        if !finished {
            // Refused for now (the engine drains, or the store failed): not before a pause.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.wake.notify_one();
    }

    /// Runs call `seq` once; whether it ended (its result is stored).
    async fn run_call(self: &Arc<Self>, engine: &Engine, seq: u32) -> bool {
        let (mut meta, input) = match (self.store.meta(seq), self.store.bytes(seq, false)) {
            (Ok(Some(m)), Ok(i)) if m.ended.is_none() => (m, i.unwrap_or_default()),
            (Ok(_), Ok(_)) => return true,
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(seq, "{}", e.message);
                return false;
            }
        };
        meta.runs += 1;
        if meta.runs > 1 {
            self.metrics.retried.fetch_add(1, Ordering::Relaxed);
        }
        // Not waited for: it joins the next group commit (if the engine dies first, this run
        // is not counted, which only the `retried` counter would show).
        self.store.update(seq, &meta);
        let options = CallOptions {
            method_id: meta.method_id,
            class: Class::Background,
            call_id: Some(CallId::new(ASYNC_CALLER, seq)),
            ..CallOptions::default()
        };
        let result = engine
            .call_external_with(&meta.function, Bytes::from(input), options)
            .await;
        let (error, message, output) = match result {
            // The engine is stopping (the call runs again when it restarts), or the function
            // cannot start its workers now (it is tried again after a pause).
            Err(r) if matches!(r.kind, ErrorKind::Shutdown | ErrorKind::FunctionUnavailable) => {
                return false
            }
            Err(r) if r.kind == ErrorKind::Internal && r.message.contains("in flight") => {
                return false
            }
            Ok(out) => (None, String::new(), Some(out.body)),
            Err(r) => (Some(r.kind.as_str().to_string()), r.message, None),
        };
        meta.ended = Some(Ended {
            at_ms: now_ms(),
            error,
            message,
            callback_pending: meta.callback.is_some(),
        });
        if let Err(e) = self.store.end(seq, &meta, output).await {
            tracing::error!(seq, "{}", e.message);
            return false;
        }
        self.pending.fetch_sub(1, Ordering::SeqCst);
        self.metrics.completed.fetch_add(1, Ordering::Relaxed);
        if meta.callback.is_some() {
            self.clone().spawn_callback(seq, meta);
        }
        true
    }

    fn spawn_callback(self: Arc<Self>, seq: u32, mut meta: Meta) {
        tokio::spawn(async move {
            let (Some(url), Some(ended)) = (meta.callback.clone(), meta.ended.clone()) else {
                return;
            };
            let Ok(uri) = check_url(&url, &self.config.callback_hosts) else {
                // The configuration changed since it was accepted: no longer allowed.
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let (status, body) = match &ended.error {
                None => (
                    200,
                    Bytes::from(
                        self.store
                            .bytes(seq, true)
                            .ok()
                            .flatten()
                            .unwrap_or_default(),
                    ),
                ),
                Some(kind) => {
                    let kind = kind_named(kind);
                    let json =
                        serde_json::json!({"error": kind.as_str(), "message": ended.message});
                    (kind.http_status(), Bytes::from(json.to_string()))
                }
            };
            let d = callback::Delivery {
                call_id: call_id(seq),
                status,
                body,
            };
            let delivered = self
                .poster
                .deliver(&uri, &d, || {
                    self.metrics.retried.fetch_add(1, Ordering::Relaxed);
                })
                .await;
            if !delivered {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(e) = meta.ended.as_mut() {
                e.callback_pending = false;
            }
            self.store.update(seq, &meta);
        });
    }

    /// Removes results older than `async.result_ttl`, every quarter of it (1 s to 60 s).
    async fn sweep(self: Arc<Self>) {
        let every =
            (self.config.result_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::time::sleep(every).await;
            let Ok((calls, _)) = self.store.load() else {
                continue;
            };
            let now = now_ms();
            for (seq, meta) in calls {
                if meta
                    .ended
                    .as_ref()
                    .is_some_and(|e| !e.callback_pending && self.expired(e, now))
                {
                    self.store.remove(seq);
                }
            }
        }
    }
}

fn kind_named(name: &str) -> ErrorKind {
    (1..=u8::MAX)
        .filter_map(ErrorKind::from_code)
        .find(|k| k.as_str() == name)
        .unwrap_or(ErrorKind::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_foreign_ids_are_refused() {
        let id = call_id(42);
        assert_eq!(id, "000100000000002a");
        assert_eq!(parse_id(&id), Some(42));
        assert_eq!(parse_id("000000000000002a"), None);
        assert_eq!(parse_id("2a"), None);
        assert_eq!(parse_id("zz"), None);
        assert_eq!(kind_named("TIMEOUT"), ErrorKind::Timeout);
        assert_eq!(kind_named("nonsense"), ErrorKind::Internal);
    }
}
