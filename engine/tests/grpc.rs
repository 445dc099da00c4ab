//! gRPC through the gateway, end to end: grpcurl (a client we did not write) calls the Rust
//! example's `demo.RustGreeter`; every error mapping; `grpc-timeout` expiring in a nested
//! call; malformed requests answered at once; the gRPC-only listener; a Nightcore
//! `func_config.json` with `grpcMethods`; gRPC methods over plain HTTP (`X-Gloam-Method`).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::grpc::{framed, grpcurl, grpcurl_with, hello_request, raw_call};
use support::{hello_rust, rust_fn, within, Stack};

const METHODS: &str = "grpc_methods = [\"SayHello\", \"Fail\", \"Crash\", \"Nested\"]";

fn stack() -> Stack {
    let functions = [
        rust_fn(
            "\"grpc:demo.RustGreeter\"",
            "RustGreeter",
            &format!("{METHODS}\nmin_workers = 2\nmax_payload = 64"),
        ),
        // One worker, one queued call: the third concurrent call is refused.
        rust_fn(
            "\"grpc:demo.Greeter\"",
            "RustGreeter",
            &format!(
                "{METHODS}\nmin_workers = 1\nmax_workers = 1\nqueue_bound = 1\nlimiter = false"
            ),
        ),
        rust_fn("Sleep", "Sleep", "min_workers = 2"),
    ]
    .concat();
    Stack::start("grpc_listen = \"127.0.0.1:0\"", &functions)
}

#[test]
fn grpc_unary_calls_and_every_error_mapping() {
    within(Duration::from_secs(120), || {
        let s = stack();
        let addr = s.addr.clone();
        let ok = grpcurl(
            &addr,
            "demo.RustGreeter/SayHello",
            r#"{"name": "Ann"}"#,
            &[],
        );
        assert!(ok.ok, "{ok:?}");
        assert!(
            ok.stdout
                .contains("Hello, Ann (from Rust, method SayHello)"),
            "{ok:?}"
        );

        let fail = grpcurl(&addr, "demo.RustGreeter/Fail", "{}", &[]);
        assert!(
            !fail.ok && fail.stderr.contains("Code: Unknown"),
            "{fail:?}"
        );
        assert!(fail.stderr.contains("Fail was called"), "{fail:?}");

        let svc = grpcurl(&addr, "demo.PyGreeter/SayHello", "{}", &[]);
        assert!(svc.stderr.contains("Code: Unimplemented"), "{svc:?}");
        assert!(
            svc.stderr.contains("unknown service demo.PyGreeter"),
            "{svc:?}"
        );
        let method = grpcurl(&addr, "demo.RustGreeter/Nop", "{}", &[]);
        assert!(method.stderr.contains("Code: Unimplemented"), "{method:?}");
        assert!(method.stderr.contains("unknown method Nop"), "{method:?}");

        let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(100));
        let big = grpcurl(&addr, "demo.RustGreeter/SayHello", &big, &[]);
        assert!(big.stderr.contains("Code: ResourceExhausted"), "{big:?}");
        assert!(
            big.stderr.contains("exceeds the limit of 64 bytes"),
            "{big:?}"
        );

        // The deadline from grpc-timeout reaches the nested call to Sleep: the server answers
        // DEADLINE_EXCEEDED long before the client's own 20 s bound.
        let late = raw_call(
            &addr,
            "/demo.RustGreeter/Nested",
            &[("grpc-timeout", "300m")],
            framed(&hello_request("", 5000)),
        );
        assert_eq!((late.http, late.status), (200, Some(4)), "{late:?}");
        assert!(late.message.contains("deadline"), "{late:?}");
        let late = grpcurl(
            &addr,
            "demo.RustGreeter/Nested",
            r#"{"sleepMs": 5000}"#,
            &["-max-time", "1"],
        );
        assert!(late.stderr.contains("Code: DeadlineExceeded"), "{late:?}");

        // Queue full: one runs, one waits, the third is refused.
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    raw_call(
                        &addr,
                        "/demo.Greeter/Nested",
                        &[],
                        framed(&hello_request("", 1500)),
                    )
                })
            })
            .collect();
        let mut statuses: Vec<Option<u32>> = calls
            .into_iter()
            .map(|c| c.join().expect("call").status)
            .collect();
        statuses.sort();
        assert_eq!(statuses, [Some(0), Some(0), Some(8)]);

        let crash = grpcurl(&addr, "demo.RustGreeter/Crash", "{}", &[]);
        assert!(crash.stderr.contains("Code: Unavailable"), "{crash:?}");
        s.wait_for("the greeter answers again", Duration::from_secs(30), || {
            grpcurl(&addr, "demo.RustGreeter/SayHello", "{}", &[]).ok
        });

        // The gRPC-only listener serves the same calls.
        let grpc_addr = s.grpc_addr.clone().expect("gloam: grpc line");
        let ok = grpcurl(
            &grpc_addr,
            "demo.RustGreeter/SayHello",
            r#"{"name": "Bo"}"#,
            &[],
        );
        assert!(ok.stdout.contains("Hello, Bo"), "{ok:?}");
        let not_grpc = raw_call(
            &grpc_addr,
            "/healthz",
            &[("content-type", "text/plain")],
            vec![],
        );
        assert_eq!(
            (not_grpc.http, not_grpc.status),
            (415, Some(13)),
            "{not_grpc:?}"
        );
    });
}

/// What is sent (name, headers, body) and what must come back (HTTP status, gRPC status,
/// part of the message).
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, u32, &'a str);

#[test]
fn malformed_requests_get_a_grpc_error_at_once() {
    within(Duration::from_secs(60), || {
        let s = stack();
        let a = s.addr.as_str();
        let path = "/demo.RustGreeter/SayHello";
        let msg = hello_request("Ann", 0);
        let cases: Vec<Case> = vec![
            (
                "short prefix",
                vec![],
                vec![0, 0],
                200,
                13,
                "fewer than the 5-byte",
            ),
            (
                "short message",
                vec![],
                vec![0, 0, 0, 0, 9, 1],
                200,
                13,
                "says 9 bytes",
            ),
            (
                "compressed flag",
                vec![],
                {
                    let mut f = framed(&msg);
                    f[0] = 1;
                    f
                },
                200,
                13,
                "flagged compressed",
            ),
            (
                "gzip",
                vec![("grpc-encoding", "gzip")],
                framed(&msg),
                200,
                12,
                "compression \"gzip\"",
            ),
            (
                "two messages",
                vec![],
                [framed(&msg), framed(&msg)].concat(),
                200,
                12,
                "only unary",
            ),
            (
                "bad timeout",
                vec![("grpc-timeout", "soon")],
                framed(&msg),
                200,
                3,
                "grpc-timeout",
            ),
            (
                "wrong content-type",
                vec![("content-type", "application/json")],
                framed(&msg),
                415,
                13,
                "not application/grpc",
            ),
        ];
        for (what, headers, body, http, status, text) in cases {
            let got = raw_call(a, path, &headers, body);
            assert_eq!(
                (got.http, got.status),
                (http, Some(status)),
                "{what}: {got:?}"
            );
            assert!(
                got.message.contains(&support::grpc::percent(text)),
                "{what}: {got:?}"
            );
        }
        let good = raw_call(a, path, &[], framed(&msg));
        assert_eq!(good.status, Some(0), "{good:?}");
        assert_eq!(&good.body[..5], &[0, 0, 0, 0, good.body.len() as u8 - 5]);

        // A gRPC method over plain HTTP: X-Gloam-Method picks it.
        let r = s
            .client()
            .request(
                "POST",
                "/function/grpc:demo.RustGreeter",
                &[("X-Gloam-Method", "SayHello")],
                &msg,
            )
            .expect("HTTP call");
        assert_eq!(r.status, 200);
        assert!(String::from_utf8_lossy(&r.body).contains("Hello, Ann"));
        let r = s
            .client()
            .request(
                "POST",
                "/function/grpc:demo.RustGreeter",
                &[("X-Gloam-Method", "Nope")],
                &msg,
            )
            .expect("HTTP call");
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    });
}

#[test]
fn nightcore_config_with_grpc_methods() {
    within(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("func_config.json");
        std::fs::write(
            &config,
            r#"[{"funcName": "grpc:demo.RustGreeter", "funcId": 7, "grpcMethods": ["Nop", "SayHello"], "minWorkers": 0}]"#,
        )
        .expect("write");
        let root = dir.path().join("ipc");
        let mut engine = Command::new(support::gloam_bin())
            .args([
                "engine",
                "--nightcore",
                "--listen",
                "127.0.0.1:0",
                "--ipc-root",
            ])
            .arg(&root)
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gloam engine");
        let addr = support::ready_addr(&mut engine);
        let mut worker = Command::new(hello_rust())
            .env("GLOAM_FUNCTION", "grpc:demo.RustGreeter")
            .env("GLOAM_HANDLER", "RustGreeter")
            .env("GLOAM_IPC_ROOT", &root)
            .spawn()
            .expect("worker");
        let mut answer = None;
        for _ in 0..200 {
            let r = grpcurl(&addr, "demo.RustGreeter/SayHello", r#"{"name": "Nc"}"#, &[]);
            if r.ok {
                answer = Some(r.stdout);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = worker.kill();
        let _ = engine.kill();
        let _ = (worker.wait(), engine.wait());
        // Method ids follow the file's grpcMethods: SayHello is method 1 here.
        assert!(answer.unwrap_or_default().contains("method SayHello"));
    });
}

#[test]
fn grpc_over_tls_with_the_gateway_certificate() {
    within(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("self-signed certificate");
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
        let s = Stack::start(
            &format!(
                "tls_cert = {:?}\ntls_key = {:?}",
                cert_path.display().to_string(),
                key_path.display().to_string()
            ),
            &rust_fn("\"grpc:demo.RustGreeter\"", "RustGreeter", METHODS),
        );
        let port = s.addr.rsplit(':').next().expect("port").to_string();
        let cacert = cert_path.display().to_string();
        let ok = grpcurl_with(
            &["-cacert", &cacert],
            &format!("localhost:{port}"),
            "demo.RustGreeter/SayHello",
            r#"{"name": "Tls"}"#,
            &[],
        );
        assert!(ok.ok && ok.stdout.contains("Hello, Tls"), "{ok:?}");
        // A plaintext client gets no answer it can read, and the engine keeps serving.
        let plain = grpcurl(
            &s.addr,
            "demo.RustGreeter/SayHello",
            "{}",
            &["-max-time", "2"],
        );
        assert!(!plain.ok, "{plain:?}");
        let again = grpcurl_with(
            &["-cacert", &cacert],
            &format!("localhost:{port}"),
            "demo.RustGreeter/SayHello",
            "{}",
            &[],
        );
        assert!(again.ok, "{again:?}");
    });
}

#[test]
fn a_grpc_call_cut_by_the_end_of_the_drain_is_unavailable() {
    within(Duration::from_secs(120), || {
        let mut s = Stack::start(
            "drain_timeout_ms = 500",
            &[
                rust_fn("\"grpc:demo.RustGreeter\"", "RustGreeter", METHODS),
                rust_fn("Sleep", "Sleep", "max_workers = 1"),
            ]
            .concat(),
        );
        let long = {
            let addr = s.addr.clone();
            std::thread::spawn(move || {
                raw_call(
                    &addr,
                    "/demo.RustGreeter/Nested",
                    &[],
                    framed(&hello_request("", 15000)),
                )
            })
        };
        s.wait_for("the long call to run", Duration::from_secs(60), || {
            s.function_stat("Sleep", "running") == 1
        });
        s.terminate();
        let r = long.join().expect("caller thread");
        assert_eq!((r.http, r.status), (200, Some(14)), "{r:?}");
        let status = s.wait_exit(Duration::from_secs(60));
        s.check_clean_exit(status);
    });
}
