//! Baseline: gRPC unary calls over a Unix socket (tonic), what Nightcore compared its message
//! channel with. The service (`bench.Echo/Call`, one `bytes` field echoed back) is written by
//! hand against `tonic::server::Grpc` and `tonic::client::Grpc`, so no protoc is needed.
//!
//! `grpc-unary [--duration S] [--warmup S] [--size BYTES] [--json]` starts itself as the server
//! in a child process, makes sequential unary calls from one connection for the duration, and
//! reports the latency distribution and the server's CPU per call in the shape of
//! `gloam bench http --json`. `grpc-unary serve SOCKET` is the server alone.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gloam_engine::bench::histogram::Histogram;
use gloam_engine::bench::http::{CpuReport, LoadResult};
use gloam_engine::bench::{procstat, report};
use tonic::codec::ProstCodec;
use tonic::codegen::http;
use tonic::transport::{Endpoint, Server};

#[path = "../tonic_echo.rs"]
mod tonic_echo;

use tonic_echo::{EchoServer, Msg, METHOD};

fn serve(socket: PathBuf) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("binding {}", socket.display()))?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        Server::builder()
            .add_service(EchoServer)
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    })
}

struct Options {
    duration: Duration,
    warmup: Duration,
    size: usize,
    json: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        size: 0,
        json: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--duration" => {
                o.duration = gloam_engine::bench::command::parse_duration(&value(a)?)
                    .map_err(anyhow::Error::msg)?
            }
            "--warmup" => {
                o.warmup = gloam_engine::bench::command::parse_duration(&value(a)?)
                    .map_err(anyhow::Error::msg)?
            }
            "--size" => o.size = value(a)?.parse().context("--size")?,
            "--json" => o.json = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(o)
}

async fn client_run(socket: PathBuf, o: &Options, server_pid: u32) -> Result<LoadResult> {
    // The URI is required by the API but unused: the connector dials the socket.
    let dial = socket.clone();
    let channel = Endpoint::try_from("http://[::1]:1")?
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let dial = dial.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(dial).await?,
                ))
            }
        }))
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = http::uri::PathAndQuery::from_static(METHOD);
    let msg = Msg {
        data: vec![b'x'; o.size],
    };
    let pids = BTreeSet::from([server_pid]);
    let me = BTreeSet::from([std::process::id()]);
    let mut hist = Histogram::default();
    let (mut errors, mut completed) = (0u64, 0u64);
    let start = Instant::now();
    let (mut cpu0, mut me0) = (Vec::new(), Vec::new());
    let mut measuring = false;
    loop {
        let sent = start.elapsed();
        if sent >= o.warmup + o.duration {
            break;
        }
        if !measuring && sent >= o.warmup {
            measuring = true;
            cpu0 = procstat::cpu_ticks(&pids);
            me0 = procstat::cpu_ticks(&me);
        }
        let t0 = Instant::now();
        grpc.ready().await?;
        let r = grpc
            .unary(
                tonic::Request::new(msg.clone()),
                path.clone(),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await;
        let ns = t0.elapsed().as_nanos() as u64;
        if measuring {
            match r {
                Ok(_) => {
                    completed += 1;
                    hist.record_ns(ns);
                }
                Err(_) => errors += 1,
            }
        }
    }
    let cpu_s = procstat::cpu_seconds_between(&cpu0, &procstat::cpu_ticks(&pids));
    let client_cpu_s = procstat::cpu_seconds_between(&me0, &procstat::cpu_ticks(&me));
    let secs = o.duration.as_secs_f64();
    Ok(LoadResult {
        url: format!("grpc+unix://{}{METHOD}", socket.display()),
        mode: "closed".into(),
        target_per_s: None,
        connections: 1,
        threads: 1,
        duration_s: secs,
        body_bytes: o.size,
        latency: hist.summary(),
        completed,
        errors,
        unsent: 0,
        achieved_per_s: completed as f64 / secs,
        cpu: Some(CpuReport {
            processes: 1,
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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let socket = args.get(1).context("usage: grpc-unary serve SOCKET")?;
        return serve(PathBuf::from(socket));
    }
    let o = parse_options(&args)?;
    let dir = std::env::temp_dir().join(format!("gloam-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("grpc.sock");
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg(&socket)
        .spawn()
        .context("starting the server")?;
    let waited = Instant::now();
    while !socket.exists() {
        if waited.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            bail!("the gRPC server did not bind {} in 10 s", socket.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(client_run(socket, &o, child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let result = result?;
    if o.json {
        println!("{}", serde_json_line(&result)?);
    } else {
        println!("{}", report::load_table(&result));
    }
    Ok(())
}

fn serde_json_line(r: &LoadResult) -> Result<String> {
    Ok(serde_json::to_string(r)?)
}
