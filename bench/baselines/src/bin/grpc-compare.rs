//! gRPC through the Gloam gateway against a plain tonic server and the gateway's HTTP path, in
//! one run; then asynchronous calls. Run by `ci/bench-grpc.sh` against a stack it starts.
//!
//! `grpc-compare --gateway HOST:PORT --engine-pid PID [--duration S] [--warmup S]
//! [--rounds N] [--json]`
//!
//! 1. Unary `Nop`, closed loop on one connection, rounds interleaved: tonic client → plain
//!    tonic server over loopback TCP (`bench.Echo/Call`, empty message); tonic client →
//!    gateway `bench.Echo/Call` (function `grpc:bench.Echo`, a Rust `Nop`); HTTP/1.1 client →
//!    gateway `POST /function/Nop`. p50/p99, calls/s, server CPU per call (the engine and its
//!    workers for Gloam, the server process for tonic).
//! 2. Asynchronous calls: `POST /async-function/Nop` accepted per second (16 connections,
//!    closed loop); then the p99 of interactive calls to `Work` (a 200 µs handler) at a fixed
//!    rate, alone, during a burst of asynchronous `Work` calls, and during the same burst sent
//!    as synchronous calls.

#[path = "../tonic_echo.rs"]
mod tonic_echo;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gloam_engine::bench::histogram::Histogram;
use gloam_engine::bench::http::{self, CpuReport, LoadResult, LoadSpec, Pace, Target};
use gloam_engine::bench::procstat;
use gloam_engine::client::HttpClient;
use serde_json::json;
use tonic::codec::ProstCodec;
use tonic::codegen::http as h;
use tonic::transport::{Endpoint, Server};
use tonic_echo::{EchoServer, Msg, METHOD};

struct Options {
    gateway: String,
    engine_pid: u32,
    duration: Duration,
    warmup: Duration,
    rounds: usize,
    json: bool,
    /// Only the unary comparison.
    unary_only: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        gateway: String::new(),
        engine_pid: 0,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        rounds: 3,
        json: false,
        unary_only: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        let dur = |s: String| {
            gloam_engine::bench::command::parse_duration(&s).map_err(anyhow::Error::msg)
        };
        match a.as_str() {
            "--gateway" => o.gateway = v()?,
            "--engine-pid" => o.engine_pid = v()?.parse()?,
            "--duration" => o.duration = dur(v()?)?,
            "--warmup" => o.warmup = dur(v()?)?,
            "--rounds" => o.rounds = v()?.parse()?,
            "--json" => o.json = true,
            "--unary-only" => o.unary_only = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.gateway.is_empty() || o.engine_pid == 0 {
        bail!("usage: grpc-compare --gateway HOST:PORT --engine-pid PID [--duration S] [--warmup S] [--rounds N] [--json]");
    }
    Ok(o)
}

/// A plain tonic server on loopback TCP, in this process's child (its own CPU account).
fn serve_tcp() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        Server::builder()
            .add_service(EchoServer)
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    })
}

/// Closed-loop unary calls of `bench.Echo/Call` at `addr` on one connection.
async fn grpc_load(
    addr: &str,
    pids: &BTreeSet<u32>,
    o: &Options,
    label: &str,
) -> Result<LoadResult> {
    let channel = Endpoint::try_from(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = h::uri::PathAndQuery::from_static(METHOD);
    let me = BTreeSet::from([std::process::id()]);
    let mut hist = Histogram::default();
    let (mut errors, mut completed) = (0u64, 0u64);
    let (mut cpu0, mut me0) = (Vec::new(), Vec::new());
    let mut measuring = false;
    let start = Instant::now();
    loop {
        let t = start.elapsed();
        if t >= o.warmup + o.duration {
            break;
        }
        if !measuring && t >= o.warmup {
            measuring = true;
            cpu0 = procstat::cpu_ticks(pids);
            me0 = procstat::cpu_ticks(&me);
        }
        let t0 = Instant::now();
        grpc.ready().await?;
        let r = grpc
            .unary(
                tonic::Request::new(Msg::default()),
                path.clone(),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await;
        if measuring {
            match r {
                Ok(_) => {
                    completed += 1;
                    hist.record_ns(t0.elapsed().as_nanos() as u64);
                }
                Err(_) => errors += 1,
            }
        }
    }
    let cpu_s = procstat::cpu_seconds_between(&cpu0, &procstat::cpu_ticks(pids));
    let client_cpu_s = procstat::cpu_seconds_between(&me0, &procstat::cpu_ticks(&me));
    let secs = o.duration.as_secs_f64();
    Ok(LoadResult {
        url: format!("grpc://{addr}{METHOD} ({label})"),
        mode: "closed".into(),
        target_per_s: None,
        connections: 1,
        threads: 1,
        duration_s: secs,
        body_bytes: 0,
        latency: hist.summary(),
        completed,
        errors,
        unsent: 0,
        achieved_per_s: completed as f64 / secs,
        cpu: Some(CpuReport {
            processes: pids.len(),
            cpu_s,
            cores: cpu_s / secs,
            us_per_call: if completed > 0 {
                cpu_s * 1e6 / completed as f64
            } else {
                0.0
            },
        }),
        client_cpu_s,
    })
}

fn http_spec(
    o: &Options,
    path: &str,
    pace: Pace,
    connections: usize,
    duration: Duration,
) -> LoadSpec {
    LoadSpec {
        target: Target {
            addr: o.gateway.clone(),
            path: path.to_string(),
        },
        pace,
        connections,
        threads: connections.min(2),
        duration,
        warmup: o.warmup.min(duration),
        body: Vec::new(),
        cpu_pids: vec![o.engine_pid],
    }
}

fn metric(addr: &str, series: &str) -> Option<f64> {
    let mut c = HttpClient::new(addr).ok()?;
    let r = c.get("/metrics").ok()?;
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (at most 120 s) until no asynchronous call is pending.
fn drain_async(addr: &str) {
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until && metric(addr, "gloam_async_calls_pending").unwrap_or(0.0) > 0.0 {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn summary(r: &LoadResult) -> serde_json::Value {
    json!({
        "p50_us": r.latency.p50_us, "p99_us": r.latency.p99_us, "calls_per_s": r.achieved_per_s,
        "cpu_us_per_call": r.cpu.map(|c| c.us_per_call), "errors": r.errors,
    })
}

fn median_by_rate(mut rs: Vec<LoadResult>) -> LoadResult {
    rs.sort_by(|a, b| a.achieved_per_s.total_cmp(&b.achieved_per_s));
    rs.swap_remove(rs.len() / 2)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve-tcp") {
        return serve_tcp();
    }
    let o = parse(&args)?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("serve-tcp")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().context("stdout")?),
        &mut line,
    )?;
    let tonic_addr = line.trim().to_string();
    let tonic_pids = BTreeSet::from([child.id()]);
    let gloam_pids = http::server_pids(&o.gateway, &[o.engine_pid]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut tonic, mut gateway, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        tonic.push(rt.block_on(grpc_load(&tonic_addr, &tonic_pids, &o, "plain tonic"))?);
        gateway.push(rt.block_on(grpc_load(&o.gateway, &gloam_pids, &o, "gloam gateway"))?);
        plain.push(http::run(&http_spec(
            &o,
            "/function/Nop",
            Pace::Closed,
            1,
            o.duration,
        ))?);
    }
    let _ = child.kill();
    let _ = child.wait();
    let (tonic, gateway, plain) = (
        median_by_rate(tonic),
        median_by_rate(gateway),
        median_by_rate(plain),
    );

    let unary = json!({
        "plain_tonic": summary(&tonic),
        "gateway_grpc": summary(&gateway),
        "gateway_http": summary(&plain),
        "grpc_vs_tonic_p50": gateway.latency.p50_us / tonic.latency.p50_us.max(1e-9),
        "grpc_vs_tonic_p99": gateway.latency.p99_us / tonic.latency.p99_us.max(1e-9),
        "grpc_vs_tonic_rate": tonic.achieved_per_s / gateway.achieved_per_s.max(1e-9),
    });
    if o.unary_only {
        println!("{}", json!({ "unary_nop": unary }));
        return Ok(());
    }
    // Asynchronous calls: acceptance rate (16 clients: the store commits their calls in
    // groups), then interactive latency under a background burst.
    let accepted = http::run(&http_spec(
        &o,
        "/async-function/Nop",
        Pace::Closed,
        16,
        o.duration,
    ))?;
    drain_async(&o.gateway);
    let interactive = |burst: Option<&str>| -> Result<LoadResult> {
        let spec = http_spec(&o, "/function/Work", Pace::Open(300.0), 2, o.duration);
        std::thread::scope(|s| {
            let bg = burst.map(|path| {
                let spec = http_spec(&o, path, Pace::Open(2000.0), 4, o.duration + o.warmup);
                s.spawn(move || http::run(&spec))
            });
            let r = http::run(&spec);
            if let Some(bg) = bg {
                let _ = bg.join();
            }
            r
        })
    };
    let alone = interactive(None)?;
    let with_async = interactive(Some("/async-function/Work"))?;
    drain_async(&o.gateway);
    let with_sync = interactive(Some("/function/Work"))?;

    let report = json!({
        "unary_nop": unary,
        "async": {
            "accepted_per_s": accepted.achieved_per_s,
            "accept_p99_us": accepted.latency.p99_us,
            "interactive_rate_per_s": 300,
            "burst_rate_per_s": 2000,
            "interactive_alone": summary(&alone),
            "interactive_during_async_burst": summary(&with_async),
            "interactive_during_sync_burst": summary(&with_sync),
        },
    });
    if o.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
