//! A hostile function for the isolation tests (`engine/tests/isolation.rs`,
//! `isolation_cgroups.rs`): its one handler, `Try`, attempts what the input says and answers
//! `ok: ...` when it managed, `denied: ...` when it did not. Nothing here belongs in a real
//! function.
//!
//! Inputs: `read:PATH`, `write:PATH`, `ls:PATH` (the names in a directory, sorted),
//! `fill:MIB` (that much into `/tmp`), `procs` (how many processes it sees), `kill:PID`
//! (SIGTERM), `tcp:HOST:PORT`, `fork:N` (N sleeping children at once), `alloc:MIB` (touches
//! that much memory; past `memory_limit` the process dies), `hello:FUNCTION` (connects to
//! `engine.sock` as a worker of FUNCTION, with no secret), `keyctl` (the kernel keyrings),
//! `self` (its `NoNewPrivs`, `CapEff` and user), `spin:MS` (busy on one CPU for MS ms of wall
//! time), `echo:TEXT` (answers TEXT: large inputs and outputs cross the sandbox by descriptor).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use gloam_core::protocol::{Hello, Kind, Message, MESSAGE_SIZE};
use gloam_core::{serve, Ctx, HandlerError, Handlers};

fn attempt(_ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let input = std::str::from_utf8(input)?.trim();
    let (what, arg) = input.split_once(':').unwrap_or((input, ""));
    let answer = match what {
        "read" => verdict(std::fs::read(arg).map(|b| format!("{} bytes", b.len()))),
        "ls" => verdict(std::fs::read_dir(arg).map(|d| {
            let mut names: Vec<String> = d
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.join(",")
        })),
        "echo" => format!("ok: {arg}"),
        "write" => verdict(std::fs::write(arg, b"hostile").map(|()| "written".to_string())),
        "fill" => {
            let mib: usize = arg.parse()?;
            let r = std::fs::write("/tmp/fill", vec![7u8; mib << 20]);
            let _ = std::fs::remove_file("/tmp/fill");
            verdict(r.map(|()| format!("wrote {mib} MiB to /tmp")))
        }
        "procs" => verdict(std::fs::read_dir("/proc").map(|d| {
            let n = d
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count();
            format!("{n} processes")
        })),
        "kill" => {
            let pid: i32 = arg.parse()?;
            // SAFETY: kill(2) has no memory-safety preconditions.
            let r = unsafe { libc::kill(pid, libc::SIGTERM) };
            verdict(if r == 0 {
                Ok("signalled".to_string())
            } else {
                Err(std::io::Error::last_os_error())
            })
        }
        "tcp" => verdict(
            arg.parse()
                .map_err(std::io::Error::other)
                .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)))
                .map(|_| "connected".to_string()),
        ),
        "fork" => fork(arg.parse()?),
        "alloc" => {
            let mib: usize = arg.parse()?;
            let v = vec![1u8; mib << 20];
            format!("ok: touched {} MiB", std::hint::black_box(&v).len() >> 20)
        }
        "hello" => verdict(hello(arg)),
        "spin" => {
            let until = std::time::Instant::now() + Duration::from_millis(arg.parse()?);
            let mut turns = 0u64;
            while std::time::Instant::now() < until {
                turns = std::hint::black_box(turns.wrapping_add(1));
            }
            format!("ok: spun {turns} turns")
        }
        "keyctl" => {
            // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, without creating it.
            // SAFETY: keyctl(2) with integer arguments only.
            let r = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) };
            verdict(if r >= 0 {
                Ok(format!("keyring {r}"))
            } else {
                Err(std::io::Error::last_os_error())
            })
        }
        "self" => {
            let status = std::fs::read_to_string("/proc/self/status")?;
            let keep = ["NoNewPrivs", "CapEff", "Uid"];
            status
                .lines()
                .filter(|l| keep.iter().any(|k| l.starts_with(k)))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("; ")
        }
        other => return Err(HandlerError::new(format!("unknown attempt {other:?}"))),
    };
    Ok(answer.into_bytes())
}

fn verdict(r: std::io::Result<String>) -> String {
    match r {
        Ok(what) => format!("ok: {what}"),
        Err(e) => format!("denied: {e}"),
    }
}

/// Starts `n` sleeping children at once; reports how many started, then ends them.
fn fork(n: usize) -> String {
    let mut children = Vec::new();
    let mut failure = None;
    for _ in 0..n {
        match std::process::Command::new("sleep").arg("30").spawn() {
            Ok(c) => children.push(c),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let started = children.len();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    match failure {
        None => format!("ok: {started} children"),
        Some(e) => format!("denied: {started} children, then {e}"),
    }
}

/// Says `HELLO` for `function` on the engine socket, without a secret.
fn hello(function: &str) -> std::io::Result<String> {
    let root = std::env::var("GLOAM_IPC_ROOT").map_err(std::io::Error::other)?;
    let mut sock = UnixStream::connect(Path::new(&root).join("engine.sock"))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let h = Hello {
        pid: std::process::id(),
        function: function.to_string(),
        language: "hostile".to_string(),
        secret: String::new(),
    };
    let m = h.to_message().map_err(std::io::Error::other)?;
    sock.write_all(&m.to_bytes())?;
    let mut reply = [0u8; MESSAGE_SIZE];
    sock.read_exact(&mut reply)?;
    let reply = Message::decode(&reply, 0).map_err(std::io::Error::other)?;
    match reply.header.kind {
        Kind::Reject => Err(std::io::Error::other(format!(
            "refused: {}",
            reply.failure_text()
        ))),
        other => Ok(format!("the engine answered {other:?}")),
    }
}

fn main() {
    let handlers = Handlers::new()
        .handler("Try", attempt)
        .handler("Echo", |_, input| Ok(input.to_vec()));
    if let Err(e) = serve(handlers) {
        eprintln!("hostile: {e}");
        std::process::exit(1);
    }
}
