//! Several engines behind one `gloam gateway`, all real processes on 127.0.0.1: routing by
//! least load, a function on one engine only, internal calls that stay on their node, large
//! payloads in chunks, deadlines carried as budgets, TLS.

mod support;

use std::time::Duration;

use support::cluster::{engine, GatewayProc};
use support::{rust_fn, within};

fn kind(r: &gloam_engine::client::Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn three_engines_share_the_calls_and_internal_calls_stay_on_their_node() {
    within(Duration::from_secs(180), || {
        let gw = GatewayProc::start("127.0.0.1:0", &[]);
        let common = [
            rust_fn("Echo", "Echo", ""),
            rust_fn("Sleep", "Sleep", "min_workers = 2"),
        ]
        .concat();
        let mut a = engine(
            &gw,
            "node-a",
            "",
            &[
                common.clone(),
                rust_fn("Foo", "Foo", ""),
                rust_fn("Bar", "Bar", ""),
            ]
            .concat(),
        );
        let mut b = engine(
            &gw,
            "node-b",
            "",
            &[common.clone(), rust_fn("Bar", "Bar", "")].concat(),
        );
        let mut c = engine(
            &gw,
            "node-c",
            "",
            &[common, rust_fn("Solo", "Echo", "")].concat(),
        );
        gw.wait_serving(3, Duration::from_secs(30));

        // Sequential calls: each engine gets its turn.
        let mut client = gw.client();
        for i in 0..30 {
            let body = format!("call {i}");
            let r = client
                .post("/function/Echo", body.as_bytes())
                .expect("call");
            assert_eq!((r.status, r.text().into_owned()), (200, body));
        }
        for node in ["node-a", "node-b", "node-c"] {
            let n = gw.engine_calls(node, "Echo");
            assert!(n >= 5, "{node} got {n} of 30 sequential calls");
        }
        // Concurrent calls: the least loaded engine gets the next one, so six 300 ms calls at
        // once land two per engine.
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let addr = gw.addr.clone();
                std::thread::spawn(move || {
                    let mut c =
                        gloam_engine::client::HttpClient::new(addr.as_str()).expect("client");
                    c.post("/function/Sleep", b"300")
                        .map(|r| r.status)
                        .unwrap_or(0)
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap_or(0), 200);
        }
        for node in ["node-a", "node-b", "node-c"] {
            assert!(
                gw.engine_calls(node, "Sleep") >= 1,
                "{node} got no Sleep call"
            );
        }

        // A function on one engine only goes there.
        for _ in 0..5 {
            let r = client.post("/function/Solo", b"solo").expect("call");
            assert_eq!((r.status, r.text().as_ref()), (200, "solo"));
        }
        assert_eq!(gw.engine_calls("node-c", "Solo"), 5);

        // Foo calls Bar internally: Bar runs on Foo's engine and the gateway never sees it.
        for _ in 0..5 {
            let r = client.post("/function/Foo", b"x").expect("call");
            assert_eq!(
                (r.status, r.text().as_ref()),
                (200, "From function Bar: Hello, x")
            );
        }
        // (Repeated calls may take a direct lane, whose tallies reach the counts a bit later.)
        a.wait_for("Bar's 5 calls on node-a", Duration::from_secs(10), || {
            a.function_stat("Bar", "completed") == 5
        });
        assert_eq!(b.function_stat("Bar", "completed"), 0);
        for node in ["node-a", "node-b"] {
            assert_eq!(gw.engine_calls(node, "Bar"), 0, "{node}");
        }

        // A function on no engine: 404 naming it.
        let r = client.post("/function/Nowhere", b"").expect("call");
        assert_eq!(
            (r.status, kind(&r)),
            (404, "FUNCTION_NOT_FOUND".to_string())
        );
        assert!(r.text().contains("Nowhere"), "{}", r.text());

        // A payload in many chunks, both ways.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let r = client.post("/function/Echo", &big).expect("big call");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body == big, "the big payload came back changed");

        // The deadline travels as a budget: the engine answers 504 at it.
        let r = client
            .request(
                "POST",
                "/function/Sleep",
                &[("X-Gloam-Timeout", "100")],
                b"2000",
            )
            .expect("call");
        assert_eq!((r.status, kind(&r)), (504, "TIMEOUT".to_string()));

        // `gloam status --addr GATEWAY` lists the engines.
        let out = std::process::Command::new(support::gloam_bin())
            .args(["status", "--addr", &gw.addr])
            .output()
            .expect("gloam status");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        for node in ["node-a", "node-b", "node-c"] {
            assert!(text.contains(node), "{node} missing in\n{text}");
        }
        assert_eq!(
            gw.metric("gloam_gateway_engines{state=\"serving\"}"),
            Some(3.0)
        );
        let r = gw.client().get("/readyz").expect("readyz");
        assert_eq!(r.status, 200);

        for s in [&mut a, &mut b, &mut c] {
            s.stop();
        }
        gw.wait_serving(0, Duration::from_secs(30));
        let r = gw.client().get("/readyz").expect("readyz");
        assert_eq!(r.status, 503);
    });
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the openssl command.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=gloam-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "gw.key",
        "-out",
        "gw.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "gw.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "gw.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[test]
fn engines_join_over_tls_and_a_wrong_ca_is_refused() {
    within(Duration::from_secs(120), || {
        let certs = tempfile::tempdir().expect("tempdir");
        make_certs(certs.path());
        let p = |f: &str| certs.path().join(f).display().to_string();
        let gw = GatewayProc::start(
            "127.0.0.1:0",
            &["--tls-cert", &p("gw.pem"), "--tls-key", &p("gw.key")],
        );
        let mut e = engine(
            &gw,
            "tls-node",
            &format!("join_ca = {:?}", p("ca.pem")),
            &rust_fn("Echo", "Echo", ""),
        );
        gw.wait_serving(1, Duration::from_secs(30));
        let r = gw
            .client()
            .post("/function/Echo", b"over tls")
            .expect("call");
        assert_eq!((r.status, r.text().as_ref()), (200, "over tls"));
        // An engine that trusts another CA does not join (the certificate is not its CA's).
        let mut other = engine(
            &gw,
            "wrong-ca",
            &format!("join_ca = {:?}", p("gw.pem")),
            &rust_fn("Echo", "Echo", ""),
        );
        other.wait_for(
            "the TLS refusal in the log",
            Duration::from_secs(30),
            || other.stderr_text().contains("cannot join the gateway"),
        );
        assert_eq!(gw.serving(), 1);
        other.stop();
        e.stop();
    });
}
