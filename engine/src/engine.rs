//! The engine: owns the state, carries out what the state decides, runs the timers, and
//! receives what workers send (it is the transports' [`Inbound`] sink, in `inbound.rs`).
//!
//! Every event takes the state's lock once, gets the actions, releases the lock and carries
//! them out. Carrying out an action never calls back into the state; when it learns something
//! the state must know (a lease that could not be granted or turned out to be over), that is
//! a new event, handled after the batch (see [`Engine::apply`]).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use gloam_core::clock::now_ns;
use gloam_core::ipc_root::IpcPaths;
use gloam_core::payload::PayloadSide;
use gloam_core::protocol::PayloadLocation;
use gloam_core::table::FunctionTable;

use crate::config::{Config, FunctionConfig, Transport};
use crate::launcher::{Launcher, ProcessExit};
use crate::payloads::Payloads;
use crate::state::{self, Action, LeaseId, Outcome, State, WorkerId};
use crate::transport::{Inbound, RingPoller, WorkerSender};

/// How often idle pools are checked for shrinking (and leased callees for overdue calls).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Where an external call's outcome is delivered.
pub type ExternalReply = oneshot::Sender<Outcome>;
pub(crate) type EngineState = State<ExternalReply, WorkerSender>;
pub(crate) type EngineAction = Action<ExternalReply, WorkerSender>;

/// What the state made of a process's end (see [`Engine::process_ended`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndNews {
    /// The function has no worker and its workers cannot start: calls fail at once.
    pub unavailable: bool,
    /// Its processes restarted this many times so far.
    pub restarts: u64,
    /// How the process ended, in words (`its worker process exited before ...`).
    pub what: String,
    /// Calls this failed at once (they were waiting for a worker).
    pub failed_calls: usize,
}

/// One engine per node.
pub struct Engine {
    state: Mutex<EngineState>,
    paths: IpcPaths,
    config: Arc<Config>,
    by_name: HashMap<String, Arc<FunctionConfig>>,
    table: Vec<u8>,
    timer: Notify,
    timer_next: AtomicU64,
    timer_alive: AtomicBool,
    next_external: AtomicU32,
    launchers: Mutex<HashMap<u16, Launcher>>,
    poller: Option<Arc<RingPoller>>,
    /// The regions of the direct-lane leases in force.
    lease_regions: crate::lanes::LeaseRegions,
    /// The payloads of calls in flight that do not fit inline.
    payloads: Payloads,
    async_calls: std::sync::OnceLock<Arc<crate::async_calls::AsyncCalls>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// An engine for `config` on the IPC root `paths` (created and locked by the caller). With
    /// the ring transport this creates the engine's doorbell and starts the ring poller thread.
    pub fn new(config: Arc<Config>, paths: IpcPaths) -> gloam_core::Result<Arc<Engine>> {
        let poller = match config.engine.transport {
            Transport::Ring => Some(RingPoller::new()?),
            Transport::Fifo => None,
        };
        let table = config
            .functions
            .iter()
            .fold(
                FunctionTable::new(
                    config
                        .functions
                        .iter()
                        .map(|f| (f.id, f.name.clone()))
                        .collect(),
                    config.engine.max_payload,
                ),
                |t, f| t.with_methods(f.id, f.grpc_methods.clone()),
            )
            .encode();
        let options = state::Options {
            direct_calls: poller.is_some() && config.engine.direct_calls,
            hung_grace_ns: u64::try_from(config.engine.hung_grace.as_nanos()).unwrap_or(u64::MAX),
            pipeline_below_ns: u64::try_from(config.engine.pipeline_below.as_nanos())
                .unwrap_or(u64::MAX),
        };
        let state = State::new(&config.functions, options, now_ns());
        let by_name = config
            .functions
            .iter()
            .map(|f| (f.name.clone(), Arc::new(f.clone())))
            .collect();
        let engine = Arc::new(Engine {
            state: Mutex::new(state),
            paths,
            by_name,
            config,
            table,
            timer: Notify::new(),
            timer_next: AtomicU64::new(u64::MAX),
            timer_alive: AtomicBool::new(false),
            next_external: AtomicU32::new(1),
            launchers: Mutex::new(HashMap::new()),
            poller,
            lease_regions: crate::lanes::LeaseRegions::default(),
            payloads: Payloads::default(),
            async_calls: std::sync::OnceLock::new(),
        });
        if let Some(p) = &engine.poller {
            let sink: Arc<dyn Inbound> = engine.clone();
            p.spawn(Arc::downgrade(&sink)).map_err(|e| {
                gloam_core::Error::Internal(format!("starting the ring poller: {e}"))
            })?;
        }
        Ok(engine)
    }

    /// The ring poller, with the ring transport.
    pub(crate) fn poller(&self) -> Option<&Arc<RingPoller>> {
        self.poller.as_ref()
    }

    /// The payloads of calls in flight that do not fit inline.
    pub(crate) fn payloads(&self) -> &Payloads {
        &self.payloads
    }

    /// The regions of the direct-lane leases in force.
    pub(crate) fn lease_regions(&self) -> &crate::lanes::LeaseRegions {
        &self.lease_regions
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, EngineState> {
        // The state is only mutated through methods that keep it consistent at every return;
        // a panic in one of them is a bug we would rather survive than cascade.
        let mut st = lock(&self.state);
        st.count_lock();
        st
    }

    /// Runs one event on the state and carries out its actions.
    pub(crate) fn event(&self, f: impl FnOnce(&mut EngineState, u64) -> Vec<EngineAction>) {
        let actions = {
            let mut st = self.lock();
            let actions = f(&mut st, now_ns());
            self.after(&mut st);
            actions
        };
        self.apply(actions);
    }

    /// What every event does before releasing the lock: tells the poller how many calls are in
    /// flight and the timer whether it must wake earlier.
    pub(crate) fn after(&self, st: &mut EngineState) {
        if let Some(p) = &self.poller {
            p.set_in_flight(st.calls_in_flight());
        }
        if let Some(at) = st.take_earliest_new_timer() {
            if at < self.timer_next.load(Ordering::Acquire) {
                self.timer.notify_one();
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The function called `name` (its configuration never changes: no lock).
    pub fn function_by_name(&self, name: &str) -> Option<&Arc<FunctionConfig>> {
        self.by_name.get(name)
    }

    /// The IPC paths.
    pub fn paths(&self) -> &IpcPaths {
        &self.paths
    }

    /// The encoded function table sent in `WELCOME`.
    pub(crate) fn table(&self) -> &[u8] {
        &self.table
    }

    /// Opens the store of asynchronous calls (`[async]`) and starts running the calls it
    /// holds; `POST /async-function` works from then on.
    pub fn open_async(self: &Arc<Self>) -> Result<(), crate::state::Refusal> {
        let calls = crate::async_calls::AsyncCalls::open(self, &self.config.async_calls)?;
        let _ = self.async_calls.set(calls);
        Ok(())
    }

    /// The asynchronous calls, once opened.
    pub fn async_calls(&self) -> Option<&Arc<crate::async_calls::AsyncCalls>> {
        self.async_calls.get()
    }

    /// A fresh id for an external call.
    pub(crate) fn next_external_id(&self) -> gloam_core::CallId {
        let seq = self.next_external.fetch_add(1, Ordering::Relaxed);
        gloam_core::CallId::new(0, seq.max(1))
    }

    /// Hands the launcher of `function_id` to the engine, which grows and shrinks its pool.
    pub fn add_launcher(&self, function_id: u16, launcher: Launcher) {
        let processes = launcher.slots();
        lock(&self.launchers).insert(function_id, launcher);
        self.lock().launcher_started(function_id, processes);
    }

    /// A launcher reports a process that ended by itself (see [`State::process_ended`]):
    /// what the state made of it.
    pub fn process_ended(&self, exit: &ProcessExit) -> EndNews {
        let mut news = EndNews::default();
        self.event(|st, now| {
            let actions = st.process_ended(exit.function_id, &exit.end, now);
            if let Some(f) = st.function(exit.function_id) {
                news = EndNews {
                    unavailable: f.unavailable.is_some(),
                    restarts: f.restarts,
                    what: f.last_exit.clone().unwrap_or_default(),
                    failed_calls: actions
                        .iter()
                        .filter(|a| matches!(a, Action::Reply { .. } | Action::Send { .. }))
                        .count(),
                };
            }
            actions
        });
        news
    }

    /// The program of `function_id` was rebuilt: its processes are replaced (see
    /// [`State::roll`]) and those waiting out a backoff start at once.
    pub fn roll(&self, function_id: u16) {
        self.event(|st, now| st.roll(function_id, now));
        self.restart_now(function_id);
    }

    /// Restarts at once the processes of `function_id` waiting out a backoff (rebuilt).
    pub fn restart_now(&self, function_id: u16) {
        if let Some(l) = lock(&self.launchers).get(&function_id) {
            l.restart_now();
        }
    }

    /// `f` of the launcher of `function_id`; `None` when it has none (workers by hand).
    pub(crate) fn with_launcher<T>(
        &self,
        function_id: u16,
        f: impl FnOnce(&Launcher) -> T,
    ) -> Option<T> {
        lock(&self.launchers).get(&function_id).map(f)
    }

    /// What enforces each launched function's limits (`cgroup v1`, `cgroup v2`, `rlimit`), by
    /// function id; functions without limits or launcher are absent.
    pub(crate) fn limits_mechanisms(&self) -> std::collections::HashMap<u16, &'static str> {
        lock(&self.launchers)
            .iter()
            .filter_map(|(id, l)| Some((*id, l.spec().limits_mechanism()?)))
            .collect()
    }

    /// Takes every launcher back (shutdown).
    pub fn take_launchers(&self) -> Vec<Launcher> {
        lock(&self.launchers).drain().map(|(_, l)| l).collect()
    }

    /// Stops the ring poller thread.
    pub fn stop_poller(&self) {
        if let Some(p) = &self.poller {
            p.stop();
        }
    }

    /// Carries out what the state decided: sends messages, hands over outcomes, removes
    /// files, grows, retires and kills, grants and revokes leases. What it learns for the
    /// state (leases over) becomes new events, handled after this batch — never from within.
    pub(crate) fn apply(&self, mut actions: Vec<EngineAction>) {
        loop {
            let mut ended: Vec<LeaseId> = Vec::new();
            for action in actions.drain(..) {
                self.perform(action, &mut ended);
            }
            if ended.is_empty() {
                return;
            }
            actions = {
                let mut st = self.lock();
                let now = now_ns();
                let next: Vec<EngineAction> = ended
                    .into_iter()
                    .flat_map(|id| st.lease_ended(id, now))
                    .collect();
                self.after(&mut st);
                next
            };
        }
    }

    fn perform(&self, action: EngineAction, ended: &mut Vec<LeaseId>) {
        match action {
            Action::Send {
                worker,
                sender,
                mut msg,
            } => {
                msg.header.send_ts = now_ns();
                if msg.header.payload_loc == PayloadLocation::Descriptor {
                    self.pass_payload(worker, &sender, &msg);
                }
                if !sender.send(&msg.to_bytes()) {
                    tracing::debug!(%worker, "message not sent: the worker is being dropped");
                }
            }
            Action::Reply { to, outcome } => {
                if let Err(Outcome::Complete(msg, _)) = to.send(outcome) {
                    // The HTTP client went away: nobody will read the output.
                    if msg.header.payload_loc == PayloadLocation::Descriptor {
                        self.payloads
                            .drop_payload(msg.header.call_id(), PayloadSide::Output);
                    }
                }
            }
            Action::DropPayload(id, side) => self.payloads.drop_payload(id, side),
            Action::Grow(function_id) => match lock(&self.launchers).get(&function_id) {
                Some(l) => {
                    tracing::debug!(function = %l.spec().function, "pool grows by one process");
                    l.add_process();
                }
                None => tracing::debug!(function_id, "no launcher to grow the pool"),
            },
            Action::RetireProcess { function_id, group } => {
                if let Some(l) = lock(&self.launchers).get(&function_id) {
                    tracing::info!(function = %l.spec().function, group, "pool shrinks: retiring an idle process");
                    l.retire_group(group);
                }
            }
            Action::Kill {
                worker,
                function_id,
                group,
                reason,
            } => self.kill(worker, function_id, group, &reason),
            Action::Grant(lease) => {
                if !crate::lanes::grant(&self.lease_regions, &lease) {
                    ended.push(lease.id);
                }
            }
            Action::Revoke { lease, holder_gone } => {
                if crate::lanes::revoke(&self.lease_regions, &lease, holder_gone) {
                    ended.push(lease.id);
                }
            }
            Action::FailLane { lease, text } => {
                crate::lanes::fail(&self.lease_regions, &lease, &text)
            }
            Action::LeaseOver(id) => crate::lanes::over(&self.lease_regions, id),
        }
    }

    /// Kills a hung worker: its process group through its launcher (which restarts it), or,
    /// for a worker the engine did not start, drops its link (it gets no more calls).
    fn kill(&self, worker: WorkerId, function_id: u16, group: u32, reason: &str) {
        let killed = group != 0
            && lock(&self.launchers)
                .get(&function_id)
                .is_some_and(|l| l.kill_group(group));
        if killed {
            tracing::warn!(%worker, group, "killing a hung worker: {reason}");
            return;
        }
        tracing::warn!(%worker, "dropping a hung worker the engine did not start: {reason}");
        let link = self.lock().worker(worker).map(|w| Arc::clone(&w.sender));
        if let Some(link) = link {
            link.kick();
        }
    }

    /// Reads the lane-call records waiting in every ring (status and metrics count them).
    pub fn sync_direct_calls(&self) {
        if let Some(p) = &self.poller {
            p.drain_all(self);
        }
    }

    /// Fails every call whose deadline passed, kills hung workers, then sleeps until the next
    /// timer. Sleeps without waking while no timer is pending. A panic while handling timers
    /// is logged and the loop goes on.
    pub async fn run_timer(self: Arc<Self>) {
        self.timer_alive.store(true, Ordering::Release);
        let _alive = AliveFlag(&self.timer_alive);
        loop {
            let next = catch_unwind(AssertUnwindSafe(|| {
                let (actions, next) = {
                    let mut st = self.lock();
                    let now = now_ns();
                    let actions = st.expire(now);
                    // This sleep covers whatever was inserted so far; an event that inserts an
                    // earlier timer later compares with `timer_next` under the same lock.
                    let _ = st.take_earliest_new_timer();
                    let next = st.next_wake(now);
                    self.timer_next
                        .store(next.unwrap_or(u64::MAX), Ordering::Release);
                    if let Some(p) = &self.poller {
                        p.set_in_flight(st.calls_in_flight());
                    }
                    (actions, next)
                };
                self.apply(actions);
                next
            }))
            .unwrap_or_else(|panic| {
                tracing::error!(
                    "the timer failed ({}); it goes on",
                    gloam_core::worker::panic_message(panic.as_ref())
                );
                Some(now_ns() + 1_000_000)
            });
            match next {
                Some(at) => {
                    let wait = Duration::from_nanos(at.saturating_sub(now_ns()));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.timer.notified() => {}
                    }
                }
                None => self.timer.notified().await,
            }
        }
    }

    /// Whether the engine's core threads run: the ring poller and the timer.
    pub fn core_threads_alive(&self) -> Result<(), String> {
        if let Some(p) = &self.poller {
            if !p.alive() {
                return Err("the ring poller thread is gone".into());
            }
        }
        if !self.timer_alive.load(Ordering::Acquire) {
            return Err("the timer is not running".into());
        }
        Ok(())
    }

    /// Once a second: retires long-idle workers beyond 2τ, and checks leased callees for lane
    /// calls long past their deadline (their holders gave up; nobody else would notice).
    pub async fn run_housekeeping(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.event(|st, now| st.shrink(now));
            crate::lanes::check_overdue(&self);
        }
    }

    /// Stops admitting calls and waits (bounded) until the calls in flight have ended; those
    /// still running at the end of the period end with `SHUTDOWN`. Returns how many did.
    pub async fn drain(&self, limit: Duration) -> usize {
        self.event(|st, now| st.start_draining(now));
        let start = tokio::time::Instant::now();
        loop {
            let left = {
                let st = self.lock();
                st.calls_in_flight() + st.leases()
            };
            if left == 0 {
                return 0;
            }
            if start.elapsed() >= limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let why = format!(
            "the engine stopped before the call finished (drain_timeout_ms = {})",
            limit.as_millis()
        );
        let mut cut = 0;
        self.event(|st, now| {
            cut = st.calls_in_flight();
            st.abort_in_flight(&why, now)
        });
        cut
    }

    /// Functions that should have a worker (`min_workers` > 0) and have no ready one.
    pub fn functions_without_workers(&self) -> Vec<String> {
        let st = self.lock();
        let mut names: Vec<String> = st
            .functions()
            .filter(|f| f.config.min_workers > 0 && f.ready_workers == 0)
            .map(|f| f.config.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Functions whose workers cannot start (no ready worker, last start failed), with why.
    pub fn unavailable_functions(&self) -> Vec<(String, String)> {
        let st = self.lock();
        let mut found: Vec<(String, String)> = st
            .functions()
            .filter(|f| f.refuses_calls())
            .map(|f| {
                let why = f.unavailable.clone().unwrap_or_default();
                (f.config.name.clone(), why)
            })
            .collect();
        found.sort();
        found
    }
}

/// Clears a liveness flag when the task holding it ends, however it ends.
struct AliveFlag<'a>(&'a AtomicBool);

impl Drop for AliveFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
