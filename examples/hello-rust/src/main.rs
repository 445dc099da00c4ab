//! Gloam's Rust example functions.
//!
//! `Foo` calls `Bar` internally, as in Nightcore's hello world:
//! `curl -d World http://127.0.0.1:8080/function/Foo` → `From function Bar: Hello, World`.
//! `Nop`, `Echo`, `Fail`, `Crash`, `Sleep` and `Fanout` serve the tests and benchmarks.

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

/// Input `Target:payload` → the output of an internal call to `Target` with `payload`.
fn invoke_other(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let split = input
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| HandlerError::new("input must be `Target:payload`"))?;
    let target = std::str::from_utf8(&input[..split])?;
    Ok(ctx.invoke(target, &input[split + 1..])?)
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
        .handler("Fanout", fanout)
        .handler("InvokeOther", invoke_other);
    if let Err(e) = serve(handlers) {
        eprintln!("hello-rust: {e}");
        std::process::exit(1);
    }
}
