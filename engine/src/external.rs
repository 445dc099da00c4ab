//! External calls: what the gateway asks of the engine. One lock to admit the call, one (by
//! whichever thread reads the answer from the worker's ring) to end it.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use gloam_core::clock::now_ns;
use gloam_core::payload::{self, PayloadSide};
use gloam_core::protocol::{Header, Kind, Message, PayloadLocation, INLINE_CAPACITY};
use gloam_core::ErrorKind;

use crate::engine::Engine;
use crate::state::{Class, Outcome, Refusal, Timing};

/// Longest an I/O thread polls for an external call's answer.
const EXTERNAL_SPIN_CAP: Duration = Duration::from_micros(200);
/// Above this many calls in flight, I/O threads never poll (they are needed elsewhere).
const EXTERNAL_SPIN_MAX_IN_FLIGHT: usize = 2;

/// The output of a successful external call.
#[derive(Debug)]
pub struct CallOutput {
    /// The output bytes.
    pub body: Bytes,
    /// Where the time went.
    pub timing: Timing,
}

/// An external call's options beyond its function and input.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// The gRPC method id (index in the function's `grpc_methods`; 0 for a plain function).
    pub method_id: u16,
    /// Overrides the function's own timeout.
    pub timeout: Option<Duration>,
    /// Interactive (someone waits) or background (an asynchronous call).
    pub class: Class,
    /// The call's id; `None`: a fresh one. Asynchronous calls keep theirs across restarts.
    pub call_id: Option<gloam_core::CallId>,
}

impl Engine {
    /// Runs an external call of function `name` with `input`; `timeout` overrides the
    /// function's own.
    pub async fn call_external(
        &self,
        name: &str,
        input: Bytes,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, Refusal> {
        let options = CallOptions {
            timeout,
            ..CallOptions::default()
        };
        self.call_external_with(name, input, options).await
    }

    /// [`call_external`](Self::call_external) with every option: the method, the priority
    /// class and the call id.
    pub async fn call_external_with(
        &self,
        name: &str,
        input: Bytes,
        options: CallOptions,
    ) -> Result<CallOutput, Refusal> {
        let CallOptions {
            method_id,
            timeout,
            class,
            call_id,
        } = options;
        let Some(f) = self.function_by_name(name) else {
            return Err(Refusal::new(
                ErrorKind::FunctionNotFound,
                format!("function {name:?} is not deployed on this engine"),
            ));
        };
        let (function_id, max_payload) = (f.id, f.max_payload);
        if input.len() as u64 > max_payload {
            return Err(Refusal::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "input of {} bytes exceeds the limit of {max_payload} bytes of function {name}",
                    input.len()
                ),
            ));
        }
        let now = now_ns();
        let id = call_id.unwrap_or_else(|| self.next_external_id());
        let mut h = Header::new(Kind::Dispatch);
        h.set_call_id(id);
        h.function_id = function_id;
        h.method_id = method_id;
        if let Some(t) = timeout {
            h.deadline_ns = now.saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
        }
        let msg = if input.len() <= INLINE_CAPACITY {
            Message::with_inline(h, &input)
                .map_err(|e| Refusal::new(ErrorKind::Internal, e.to_string()))?
        } else {
            let fd = payload::create(&input, max_payload)
                .map_err(|e| Refusal::new(e.kind(), e.to_string()))?;
            self.payloads()
                .put(id, PayloadSide::Input, fd, input.len() as u32);
            h.payload_loc = PayloadLocation::Descriptor;
            h.payload_len = input.len() as u32;
            Message::new(h)
        };
        let (tx, rx) = oneshot::channel();
        let admitted = {
            let mut st = self.lock();
            let admitted = st.admit_external_as(id, function_id, tx, Box::new(msg), class, now);
            let spin = self.poller().and_then(|_| {
                if class == Class::Background || st.calls_in_flight() > EXTERNAL_SPIN_MAX_IN_FLIGHT
                {
                    return None;
                }
                let t = st.function(function_id)?.limiter.service_ns()?;
                let budget = Duration::from_nanos((2.0 * t) as u64 + 10_000);
                (budget <= EXTERNAL_SPIN_CAP).then_some(budget)
            });
            self.after(&mut st);
            admitted.map(|actions| (actions, spin))
        };
        let (actions, spin) = match admitted {
            Ok(a) => a,
            Err((refusal, _)) => {
                self.payloads().drop_payload(id, PayloadSide::Input);
                return Err(refusal);
            }
        };
        self.apply(actions);
        let outcome = match (spin, self.poller()) {
            (Some(budget), Some(poller)) => {
                // This thread polls the rings itself while it waits, and holds the poller's
                // doorbell so that the answer does not also wake the poller thread: the call
                // then involves two parties (this thread and the worker), not three.
                let held = poller.hold();
                // With the poller asleep only this thread and the worker poll: the lane case.
                let cadence = if held {
                    gloam_core::ring::YIELD_DIRECT
                } else {
                    gloam_core::ring::YIELD_SHARED
                };
                let polled = spin_for(rx, budget, cadence, || poller.poll_once(self));
                if held {
                    poller.release();
                }
                match polled {
                    Ok(answer) => answer,
                    Err(rx) => rx.await,
                }
            }
            _ => rx.await,
        };
        match outcome {
            Ok(Outcome::Complete(msg, timing)) => Ok(CallOutput {
                body: self.read_output(&msg)?,
                timing,
            }),
            Ok(Outcome::Failed(kind, message)) => Err(Refusal { kind, message }),
            Err(_) => Err(Refusal::new(
                ErrorKind::Internal,
                "the call was dropped without an answer",
            )),
        }
    }

    fn read_output(&self, msg: &Message) -> Result<Bytes, Refusal> {
        match msg.header.payload_loc {
            PayloadLocation::Descriptor => {
                let id = msg.header.call_id();
                // Sealed and checked when the answer came: it reads whole.
                self.payloads().bytes(id, PayloadSide::Output).map_err(|e| {
                    Refusal::new(
                        ErrorKind::WorkerCrashed,
                        format!("the worker's output could not be read: {e}"),
                    )
                })
            }
            _ => Ok(Bytes::copy_from_slice(msg.inline_payload())),
        }
    }
}

/// Polls `rx` for up to `budget`, running `poll` between polls and yielding the CPU every
/// `yield_every`: the answer, or `rx` back to be awaited.
fn spin_for(
    mut rx: oneshot::Receiver<Outcome>,
    budget: Duration,
    yield_every: u32,
    mut poll: impl FnMut(),
) -> Result<Result<Outcome, oneshot::error::RecvError>, oneshot::Receiver<Outcome>> {
    let mut ready = None;
    gloam_core::ring::spin_until_with(budget, yield_every, || match rx.try_recv() {
        Ok(v) => {
            ready = Some(Some(v));
            true
        }
        Err(oneshot::error::TryRecvError::Empty) => {
            poll();
            false
        }
        Err(oneshot::error::TryRecvError::Closed) => {
            ready = Some(None);
            true
        }
    });
    match ready {
        Some(Some(v)) => Ok(Ok(v)),
        // Closed: awaiting gives the RecvError.
        Some(None) | None => Err(rx),
    }
}
