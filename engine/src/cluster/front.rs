//! The HTTP front door of `gloam gateway`: the embedded gateway's connection handling
//! ([`crate::gateway::server`]: cap, timeouts, drain) with this [`Backend`], which sends each
//! call to an engine ([`super::routing`]) and answers with what the engine answered.
//!
//! Answers beyond the engine's own: `404 FUNCTION_NOT_FOUND` when no live engine serves the
//! function (the message names it), `503 SHUTDOWN` while every engine serving it drains,
//! `503 OVERLOADED` when they all hold their capacity of its calls, and `502 ENGINE_LOST` when
//! the engine running the call was lost (an `idempotent` function's call is first retried
//! once on another engine).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use gloam_core::ErrorKind;

use super::gateway::{Answer, Cluster, EngineLink};
use super::routing::Pick;
use super::wire::{call_frames, FunctionInfo};
use crate::gateway::http::{
    call_input, error, output, refusal, text, Backend, GatewayBody, RequestCtx,
};
use crate::gateway::page;
use crate::state::{Refusal, Timing};
use crate::status::{EngineFunctionStatus, EngineStatus, FunctionStatus, Status};

/// How long past a call's deadline the gateway still waits for its engine's answer (the
/// engine answers `TIMEOUT` itself at the deadline; this covers an engine that does not).
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// The error kind of a call lost with its engine (HTTP 502).
pub const ENGINE_LOST: &str = "ENGINE_LOST";

impl Backend for Cluster {
    fn handle<'a>(
        &'a self,
        ctx: &'a RequestCtx<'a>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<GatewayBody>> + Send + 'a {
        answer(self, ctx, req)
    }
}

/// The cluster gateway forwards HTTP calls only (gRPC and asynchronous calls are served by
/// each engine's own gateway for now).
async fn answer(
    cluster: &Cluster,
    ctx: &RequestCtx<'_>,
    req: Request<Incoming>,
) -> Response<GatewayBody> {
    handle(cluster, ctx, req)
        .await
        .map(http_body_util::Either::Left)
}

async fn handle(
    cluster: &Cluster,
    ctx: &RequestCtx<'_>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if let Some(name) = path.strip_prefix("/function/") {
        return call(cluster, ctx, name, req).await;
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/") => page::index(),
        (&Method::GET, page::APP_JS_PATH) => page::script(),
        (&Method::GET, page::STYLE_CSS_PATH) => page::style(),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if ctx.draining || cluster.stopping() => refusal(Refusal::new(
            ErrorKind::Shutdown,
            "the gateway is shutting down",
        )),
        (&Method::GET, "/readyz") => match cluster.routing().serving() {
            0 => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_READY",
                "no engine has joined this gateway (or every one is draining)",
            ),
            _ => text(StatusCode::OK, "ready\n"),
        },
        (&Method::GET, "/metrics") => {
            let mut body = render_metrics(cluster);
            ctx.stats.render(ctx.max_connections, &mut body);
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/_/status") => {
            let body = serde_json::to_vec(&status(cluster)).unwrap_or_default();
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!(
                "no route {} {path}; call functions with POST /function/<name>",
                req.method()
            ),
        ),
    }
}

fn not_deployed(name: &str) -> Response<Full<Bytes>> {
    refusal(Refusal::new(
        ErrorKind::FunctionNotFound,
        format!("function {name:?} is not deployed on any engine joined to this gateway"),
    ))
}

async fn call(
    cluster: &Cluster,
    ctx: &RequestCtx<'_>,
    name: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(info) = cluster.routing().function(name).cloned() else {
        return not_deployed(name);
    };
    if ctx.draining {
        return refusal(Refusal::new(
            ErrorKind::Shutdown,
            "the gateway is shutting down",
        ));
    }
    let (input, timeout) =
        match call_input(ctx, name, info.allow_get, u64::from(info.max_payload), req).await {
            Ok(input) => input,
            Err(answer) => return answer,
        };
    let deadline = timeout.map(|t| Instant::now() + t);
    // A call lost with its engine may run again only if idempotent; one never sent may go
    // to another engine whatever the function.
    let mut attempts = if info.idempotent { 2 } else { 1 };
    let mut reroutes = 0;
    let mut avoid = None;
    let mut lost: Option<String> = None;
    loop {
        let id = match cluster.pick(name, avoid) {
            Pick::Engine(id) => id,
            Pick::NotFound => {
                return match lost {
                    Some(why) => engine_lost(cluster, name, &why),
                    None => not_deployed(name),
                }
            }
            Pick::Draining => {
                return refusal(Refusal::new(
                    ErrorKind::Shutdown,
                    format!("every engine serving function {name} is draining"),
                ))
            }
            Pick::Full => {
                return refusal(Refusal::new(
                    ErrorKind::Overloaded,
                    format!("every engine serving function {name} holds its capacity of calls"),
                ))
            }
        };
        let mut sent = Sent {
            cluster,
            engine: id,
            name,
            failed: true,
            waiting: None,
        };
        avoid = Some(id);
        match send(&mut sent, &info, input.clone(), deadline).await {
            Sending::Answered(answer) => return answer,
            Sending::NotSent(why) => {
                sent.failed = false;
                reroutes += 1;
                if reroutes > MAX_REROUTES {
                    return refusal(Refusal::new(
                        ErrorKind::Shutdown,
                        format!("no engine serving function {name} could take the call: {why}"),
                    ));
                }
            }
            Sending::Lost(why) => {
                attempts -= 1;
                if attempts == 0 {
                    return engine_lost(cluster, name, &why);
                }
                cluster
                    .stats
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    function = name,
                    "retrying an idempotent call on another engine: {why}"
                );
                lost = Some(why);
            }
        }
    }
}

fn engine_lost(cluster: &Cluster, name: &str, why: &str) -> Response<Full<Bytes>> {
    cluster
        .stats
        .engine_lost
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    error(
        StatusCode::BAD_GATEWAY,
        ENGINE_LOST,
        &format!("the call to {name} did not finish: {why}"),
    )
}

/// Most times one call goes to another engine because the chosen one could not take it.
const MAX_REROUTES: usize = 8;

/// How sending a call to one engine went.
enum Sending {
    /// The engine answered, or the call timed out: the response.
    Answered(Response<Full<Bytes>>),
    /// The call never reached the engine (gone, closing, draining): safe to send elsewhere.
    NotSent(String),
    /// The engine was lost with the call sent: it may have run.
    Lost(String),
}

/// A call counted on an engine: uncounted when dropped (answered, lost, or its client gone).
struct Sent<'a> {
    cluster: &'a Cluster,
    engine: u32,
    name: &'a str,
    failed: bool,
    waiting: Option<(std::sync::Arc<EngineLink>, u64)>,
}

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        if let Some((link, call)) = self.waiting.take() {
            link.forget(call);
        }
        self.cluster
            .routing()
            .done(self.engine, self.name, self.failed);
    }
}

/// Sends the call to `sent.engine` and waits for its answer.
async fn send(
    sent: &mut Sent<'_>,
    info: &FunctionInfo,
    input: Bytes,
    deadline: Option<Instant>,
) -> Sending {
    let Some(link) = sent.cluster.link(sent.engine) else {
        return Sending::NotSent("the engine left before the call was sent".into());
    };
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left.is_some_and(|l| l.is_zero()) {
        sent.failed = false;
        return Sending::Answered(timed_out(sent.name, "before an engine was chosen"));
    }
    let budget_us = left.map_or(0, |l| {
        u64::try_from(l.as_micros()).unwrap_or(u64::MAX).max(1)
    });
    let call = sent.cluster.next_call();
    let frames = call_frames(call, budget_us, sent.name, input);
    let rx = match link.dispatch(call, info.max_payload, &frames) {
        Ok(rx) => rx,
        Err(why) => return Sending::NotSent(why),
    };
    sent.waiting = Some((link.clone(), call));
    let wait = left.unwrap_or(Duration::from_millis(u64::from(info.timeout_ms))) + ANSWER_GRACE;
    let answer = match tokio::time::timeout(wait, rx).await {
        Err(_) => {
            return Sending::Answered(timed_out(
                sent.name,
                &format!("engine {} did not answer in time", link.node),
            ))
        }
        Ok(Err(_)) => return Sending::Lost(format!("engine {} dropped the call", link.node)),
        Ok(Ok(a)) => a,
    };
    sent.waiting = None;
    match answer {
        Answer::Lost(why) => Sending::Lost(why),
        Answer::Done { head, output: out } => {
            sent.failed = head.status.is_some();
            Sending::Answered(match head.status {
                None => output(
                    out,
                    Timing {
                        queued_ns: head.queued_ns,
                        running_ns: head.running_ns,
                        processing_ns: head.processing_ns,
                    },
                ),
                Some(kind) => refusal(Refusal::new(kind, String::from_utf8_lossy(&out))),
            })
        }
    }
}

fn timed_out(name: &str, why: &str) -> Response<Full<Bytes>> {
    refusal(Refusal::new(
        ErrorKind::Timeout,
        format!("the call to {name} passed its deadline {why}"),
    ))
}

/// The gateway's status: its engines, and per function the calls it sent.
pub fn status(cluster: &Cluster) -> Status {
    let links: BTreeMap<u32, _> = cluster.links().into_iter().map(|l| (l.id, l)).collect();
    let routing = cluster.routing();
    let mut functions: BTreeMap<String, FunctionStatus> = BTreeMap::new();
    let mut engines = Vec::new();
    for (id, e) in routing.engines() {
        let mut fns: Vec<EngineFunctionStatus> = e
            .functions
            .values()
            .map(|l| EngineFunctionStatus {
                name: l.info.name.clone(),
                capacity: l.info.capacity,
                outstanding: l.outstanding,
                calls: l.calls,
                failures: l.failures,
                idempotent: l.info.idempotent,
            })
            .collect();
        fns.sort_by(|a, b| a.name.cmp(&b.name));
        for f in &fns {
            let agg = functions
                .entry(f.name.clone())
                .or_insert_with(|| FunctionStatus {
                    name: f.name.clone(),
                    id: 0,
                    workers: 0,
                    idle: 0,
                    running: 0,
                    queued: 0,
                    completed: 0,
                    failed: 0,
                    rate: 0.0,
                    service_ms: 0.0,
                    tau: 0,
                    p50_ms: None,
                    p99_ms: None,
                    leased: 0,
                    direct_calls: 0,
                    restarts: 0,
                    last_exit: None,
                    unavailable: None,
                    isolation: String::new(),
                    limits: String::new(),
                });
            agg.running += f.outstanding as usize;
            agg.completed += f
                .calls
                .saturating_sub(f.failures + u64::from(f.outstanding));
            agg.failed += f.failures;
        }
        let link = links.get(&id);
        engines.push(EngineStatus {
            id,
            node: link.map_or_else(String::new, |l| l.node.clone()),
            addr: link.map_or_else(String::new, |l| l.peer.to_string()),
            state: if e.draining { "draining" } else { "serving" }.into(),
            outstanding: e.outstanding(),
            calls: fns.iter().map(|f| f.calls).sum(),
            failures: fns.iter().map(|f| f.failures).sum(),
            rtt_us: link.map_or(0.0, |l| l.rtt().as_secs_f64() * 1e6),
            joined_s: link.map_or(0.0, |l| l.joined().elapsed().as_secs_f64()),
            functions: fns,
        });
    }
    let outstanding = engines.iter().map(|e| e.outstanding as usize).sum();
    Status {
        functions: functions.into_values().collect(),
        workers: Vec::new(),
        calls_in_flight: outstanding,
        log_dir: None,
        role: "gateway".into(),
        engines,
    }
}

/// `gloam status --addr GATEWAY`: the calls the gateway sent per function, then its engines.
pub fn table(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>11} {:>9} {:>6}",
        "FUNCTION", "OUTSTANDING", "COMPLETED", "FAILED"
    );
    for f in &s.functions {
        let _ = writeln!(
            out,
            "{:<20} {:>11} {:>9} {:>6}",
            f.name, f.running, f.completed, f.failed
        );
    }
    let _ = writeln!(out, "calls in flight: {}\n", s.calls_in_flight);
    let _ = writeln!(
        out,
        "{:<4} {:<24} {:<22} {:<9} {:>11} {:>9} {:>8} {:>9}  FUNCTIONS",
        "ID", "ENGINE", "ADDRESS", "STATE", "OUTSTANDING", "CALLS", "FAILED", "RTT us"
    );
    for e in &s.engines {
        let fns: Vec<String> = e
            .functions
            .iter()
            .map(|f| format!("{}({}/{})", f.name, f.outstanding, f.capacity))
            .collect();
        let _ = writeln!(
            out,
            "{:<4} {:<24} {:<22} {:<9} {:>11} {:>9} {:>8} {:>9.0}  {}",
            e.id,
            e.node,
            e.addr,
            e.state,
            e.outstanding,
            e.calls,
            e.failures,
            e.rtt_us,
            fns.join(" ")
        );
    }
    if s.engines.is_empty() {
        let _ = writeln!(out, "no engine has joined");
    }
    out
}

/// The gateway's own series in Prometheus text format (per engine: outstanding, calls,
/// failures, RTT; joins, losses, refusals, retries).
pub fn render_metrics(cluster: &Cluster) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let s = status(cluster);
    let mut out = String::new();
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let label = |e: &EngineStatus| format!("{{engine=\"{}\",id=\"{}\"}}", escape(&e.node), e.id);
    head(
        &mut out,
        "gloam_gateway_engines",
        "gauge",
        "Engines joined, by state.",
    );
    for state in ["serving", "draining"] {
        let n = s.engines.iter().filter(|e| e.state == state).count();
        let _ = writeln!(out, "gloam_gateway_engines{{state=\"{state}\"}} {n}");
    }
    type Get = fn(&EngineStatus) -> f64;
    let per_engine: [(&str, &str, &str, Get); 4] = [
        (
            "gloam_gateway_engine_outstanding",
            "gauge",
            "Calls sent to the engine and not answered yet.",
            |e| f64::from(e.outstanding),
        ),
        (
            "gloam_gateway_engine_calls_total",
            "counter",
            "Calls sent to the engine.",
            |e| e.calls as f64,
        ),
        (
            "gloam_gateway_engine_failures_total",
            "counter",
            "Calls sent to the engine that failed (error answers, or lost with it).",
            |e| e.failures as f64,
        ),
        (
            "gloam_gateway_engine_rtt_seconds",
            "gauge",
            "Last heartbeat round trip to the engine.",
            |e| e.rtt_us / 1e6,
        ),
    ];
    for (name, kind, help, get) in per_engine {
        head(&mut out, name, kind, help);
        for e in &s.engines {
            let _ = writeln!(out, "{name}{} {}", label(e), get(e));
        }
    }
    let st = &cluster.stats;
    let counters = [
        (
            "gloam_gateway_engine_joins_total",
            "Engines that joined.",
            st.joined.load(Relaxed),
        ),
        (
            "gloam_gateway_engines_lost_total",
            "Engines lost (connection ended or heartbeats missed without a drain).",
            st.lost.load(Relaxed),
        ),
        (
            "gloam_gateway_engines_left_total",
            "Engines that left after draining.",
            st.left.load(Relaxed),
        ),
        (
            "gloam_gateway_call_retries_total",
            "Calls of idempotent functions retried on another engine after theirs was lost.",
            st.retries.load(Relaxed),
        ),
        (
            "gloam_gateway_engine_lost_calls_total",
            "Calls answered 502 ENGINE_LOST.",
            st.engine_lost.load(Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        head(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    head(&mut out, "gloam_gateway_peers_refused_total", "counter", "Engine connections refused or dropped: wrong or missing token, another protocol version, a malformed frame.");
    for (reason, v) in [
        ("token", st.refused_token.load(Relaxed)),
        ("version", st.refused_version.load(Relaxed)),
        ("protocol", st.protocol_errors.load(Relaxed)),
    ] {
        let _ = writeln!(
            out,
            "gloam_gateway_peers_refused_total{{reason=\"{reason}\"}} {v}"
        );
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
