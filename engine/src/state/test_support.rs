//! What the state's unit and model tests share: a state from a config text, workers that
//! connect, calls that arrive and answers, and readers of the actions.

use gloam_core::protocol::{CallId, Header, Kind, Message};
use gloam_core::ErrorKind;

use super::*;
use crate::config::Config;

pub(super) const MS: u64 = 1_000_000;
pub(super) type TestState = State<u64, u32>;
pub(super) type TestActions = Actions<u64, u32>;

/// A state for the `[functions...]` tables of `text`; direct calls on.
pub(super) fn state_of(text: &str) -> TestState {
    let config = Config::parse(text, std::path::Path::new("/t/gloam.toml")).unwrap();
    let options = Options {
        direct_calls: true,
        hung_grace_ns: 1000 * MS,
        pipeline_below_ns: 0,
    };
    State::new(&config.functions, options, 0)
}

/// Function F (id 1) with `extra` keys.
pub(super) fn state(extra: &str) -> TestState {
    state_of(&format!(
        "[functions.F]\nid = 1\ncommand = \"/bin/true\"\n{extra}\n"
    ))
}

/// A worker of `function_id` connects and becomes ready (process group `group`).
pub(super) fn worker(
    st: &mut TestState,
    function_id: u16,
    group: u32,
    now: u64,
) -> (WorkerId, TestActions) {
    let id = st.reserve_worker(function_id).unwrap();
    st.worker_connected(id, 100 + u32::from(id.slot()), group, "test", id.raw());
    let actions = st.worker_ready(id, now, None);
    (id, actions)
}

pub(super) fn external(
    st: &mut TestState,
    function_id: u16,
    seq: u32,
    now: u64,
) -> (CallId, TestActions) {
    try_external(st, function_id, seq, now).unwrap()
}

/// An external call (reply handle `seq`), admitted or refused.
pub(super) fn try_external(
    st: &mut TestState,
    function_id: u16,
    seq: u32,
    now: u64,
) -> Result<(CallId, TestActions), Refusal> {
    let id = CallId::new(0, seq);
    let mut h = Header::new(Kind::Dispatch);
    h.set_call_id(id);
    let msg = Box::new(Message::new(h));
    st.admit_external(id, function_id, u64::from(seq), msg, now)
        .map(|actions| (id, actions))
        .map_err(|(r, _)| r)
}

pub(super) fn internal(
    st: &mut TestState,
    caller: WorkerId,
    function_id: u16,
    seq: u32,
    now: u64,
) -> (CallId, TestActions) {
    let id = CallId::new(caller.raw(), seq);
    let mut h = Header::new(Kind::Invoke);
    h.set_call_id(id);
    h.function_id = function_id;
    let actions = st
        .admit_internal(caller, Box::new(Message::new(h)), now)
        .unwrap();
    (id, actions)
}

pub(super) fn answer(st: &mut TestState, worker: WorkerId, id: CallId, now: u64) -> TestActions {
    let mut h = Header::new(Kind::Complete);
    h.set_call_id(id);
    st.worker_answered(worker, Box::new(Message::new(h)), now)
        .unwrap()
}

/// The workers `DISPATCH`es went to.
pub(super) fn dispatched(actions: &TestActions) -> Vec<WorkerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { worker, msg, .. } if msg.header.kind == Kind::Dispatch => Some(*worker),
            _ => None,
        })
        .collect()
}

/// The replies to internal callers: (caller, call, outcome).
pub(super) fn internal_replies(
    actions: &TestActions,
) -> Vec<(WorkerId, CallId, Option<ErrorKind>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { worker, msg, .. }
                if matches!(msg.header.kind, Kind::Complete | Kind::Failed) =>
            {
                Some((*worker, msg.header.call_id(), msg.header.status))
            }
            _ => None,
        })
        .collect()
}

/// The external replies: (handle, outcome).
pub(super) fn replies(actions: &TestActions) -> Vec<(u64, Option<ErrorKind>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply { to, outcome } => Some((
                *to,
                match outcome {
                    Outcome::Complete(..) => None,
                    Outcome::Failed(kind, _) => Some(*kind),
                },
            )),
            _ => None,
        })
        .collect()
}

/// The workers asked to be killed.
pub(super) fn kills(actions: &TestActions) -> Vec<WorkerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Kill { worker, .. } => Some(*worker),
            _ => None,
        })
        .collect()
}

pub(super) fn grows(actions: &TestActions) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Grow(_)))
        .count()
}
