//! Gloam's Rust example functions.
//!
//! `Foo` calls `Bar` internally, as in Nightcore's hello world:
//! `curl -d World http://127.0.0.1:8080/function/Foo` → `From function Bar: Hello, World`.
//! `Nop`, `Echo`, `Fail`, `Crash`, `Sleep`, `Fanout`, `InvokeOther` and `PassOn` (an internal
//! call whose failure is passed on with its kind) serve the tests and benchmarks. `Method`
//! answers the gRPC method it was called for (`ctx.method()`), and `RustGreeter` serves the
//! gRPC example's `demo.RustGreeter` service (see `greeter.rs`).

mod greeter;

use std::time::Duration;

use gloam_core::{serve, Ctx, HandlerError, Handlers};

fn foo(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let bar = ctx.invoke("Bar", input)?;
    Ok([b"From function Bar: ".as_slice(), &bar].concat())
}

fn bar(_ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let who: &[u8] = if input.is_empty() { b"World" } else { input };
    Ok([b"Hello, ".as_slice(), who].concat())
}

fn sleep(_ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let ms: u64 = std::str::from_utf8(input)?.trim().parse()?;
    std::thread::sleep(Duration::from_millis(ms));
    Ok(format!("slept {ms} ms").into_bytes())
}

/// Busy-computes for the number of microseconds in the input (a CPU-bound handler for the
/// concurrency benchmarks), and answers how many rounds it did.
fn spin(_ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let us: u64 = std::str::from_utf8(input)?.trim().parse()?;
    let until = std::time::Instant::now() + Duration::from_micros(us);
    let mut rounds = 0u64;
    while std::time::Instant::now() < until {
        rounds = std::hint::black_box(rounds + 1);
    }
    Ok(rounds.to_string().into_bytes())
}

/// Three internal calls to `Echo` at once, answers joined with `;`.
fn fanout(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let answers = std::thread::scope(|s| {
        let calls: Vec<_> = (0..3)
            .map(|i| {
                let payload = [input, format!("#{i}").as_bytes()].concat();
                s.spawn(move || ctx.invoke("Echo", &payload))
            })
            .collect();
        calls
            .into_iter()
            .map(|c| {
                c.join()
                    .unwrap_or_else(|_| Err(gloam_core::Error::Internal("panic".into())))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok(answers.join(&b';'))
}

/// `Target:payload` split at the first `:`.
fn split_target(input: &[u8]) -> Result<(&str, &[u8]), HandlerError> {
    let split = input
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| HandlerError::new("input must be `Target:payload`"))?;
    Ok((std::str::from_utf8(&input[..split])?, &input[split + 1..]))
}

/// Input `Target:payload` → the output of an internal call to `Target` with `payload`.
fn invoke_other(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let (target, payload) = split_target(input)?;
    Ok(ctx.invoke(target, payload)?)
}

/// Input `Target:payload`: calls `Target` and passes a failure on unchanged with `?`, so this
/// call fails with the callee's kind and message (a callee's `TIMEOUT` gives this call's caller
/// HTTP 504, a crash 502; a plain handler error stays `HANDLER_FAILED`).
fn pass_on(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let (target, payload) = split_target(input)?;
    let output = ctx.invoke(target, payload)?;
    Ok(output)
}

/// Input `Target:p1,p2,...` → calls `Target` once per payload, one after the other, and
/// answers the outputs joined by `,` (a caller that keeps calling one function).
fn repeat(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let input = std::str::from_utf8(input)?;
    let (target, payloads) = input
        .split_once(':')
        .ok_or_else(|| HandlerError::new("input must be `Target:p1,p2,...`"))?;
    let mut outs = Vec::new();
    for p in payloads.split(',') {
        outs.push(ctx.invoke(target, p.as_bytes())?);
    }
    Ok(outs.join(&b','))
}

/// Input `N` or `Target:N` (default 10000 calls to `Nop`): makes N sequential internal calls to
/// the target, after N/10 (at most 1000) unmeasured ones, and answers the latency distribution
/// measured here as JSON: `{"target","count","p50_us","p90_us","p99_us","p999_us","max_us",
/// "mean_us","per_s"}` (nearest-rank percentiles, as `gloam bench` computes them).
fn bench_internal(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let text = std::str::from_utf8(input)?.trim();
    let (target, n) = match text.rsplit_once(':') {
        Some((t, n)) => (t, n),
        None => ("Nop", text),
    };
    let n: usize = if n.is_empty() { 10_000 } else { n.parse()? };
    if n == 0 {
        return Err(HandlerError::new("BenchInternal: N must be at least 1"));
    }
    for _ in 0..(n / 10).min(1000) {
        ctx.invoke(target, b"")?;
    }
    let mut ns = Vec::with_capacity(n);
    let start = std::time::Instant::now();
    for _ in 0..n {
        let t0 = std::time::Instant::now();
        ctx.invoke(target, b"")?;
        ns.push(t0.elapsed().as_nanos() as u64);
    }
    let total = start.elapsed().as_secs_f64();
    ns.sort_unstable();
    let at = |q: f64| {
        let rank = (q * ns.len() as f64).ceil() as usize;
        ns[rank.clamp(1, ns.len()) - 1] as f64 / 1e3
    };
    let mean = ns.iter().map(|&x| x as f64).sum::<f64>() / ns.len() as f64 / 1e3;
    Ok(format!(
        "{{\"target\":\"{target}\",\"count\":{n},\"p50_us\":{:.2},\"p90_us\":{:.2},\"p99_us\":{:.2},\
         \"p999_us\":{:.2},\"max_us\":{:.2},\"mean_us\":{mean:.2},\"per_s\":{:.0}}}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        at(1.0),
        n as f64 / total
    )
    .into_bytes())
}

/// Input `N`: answers N bytes `abc…z` repeated (a small call with a large answer).
fn fill(_: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let n: usize = std::str::from_utf8(input)?.trim().parse()?;
    Ok((0..n).map(|i| b'a' + (i % 26) as u8).collect())
}

fn main() {
    let handlers = Handlers::new()
        .handler("Foo", foo)
        .handler("Bar", bar)
        .handler("Nop", |_, _| Ok(Vec::new()))
        .handler("Echo", |_, input| Ok(input.to_vec()))
        .handler("Fail", |_, _| Err(HandlerError::new("Fail was called")))
        .handler("Crash", |_, _| std::process::abort())
        .handler("Sleep", sleep)
        .handler("Spin", spin)
        // Spin for 200 µs whatever the input (the benchmarks' "Work").
        .handler("Spin200", |ctx, _| spin(ctx, b"200"))
        .handler("Fanout", fanout)
        .handler("InvokeOther", invoke_other)
        .handler("PassOn", pass_on)
        .handler("Repeat", repeat)
        .handler("Fill", fill)
        .handler("BenchInternal", bench_internal)
        .handler("Method", |ctx, _| Ok(ctx.method().as_bytes().to_vec()))
        .handler("RustGreeter", greeter::greeter);
    if let Err(e) = serve(handlers) {
        eprintln!("hello-rust: {e}");
        std::process::exit(1);
    }
}
