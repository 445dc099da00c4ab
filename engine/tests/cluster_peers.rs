//! Bad peers on the gateway's engine port: a wrong or missing token, another protocol
//! version, garbage, an oversized frame length, a peer that stops reading. The gateway
//! refuses or drops each one and keeps serving through a real engine meanwhile.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gloam_engine::cluster::wire::{
    Frame, FrameHeader, FunctionInfo, Hello, RefuseReason, HEADER_LEN, VERSION,
};
use support::cluster::{engine, GatewayProc, TOKEN};
use support::{rust_fn, within, Stack};

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

fn send(s: &mut TcpStream, f: &Frame) {
    let mut buf = BytesMut::new();
    f.encode(&mut buf);
    s.write_all(&buf).expect("write");
}

/// The next frame, or `None` when the gateway closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Frame> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).ok()?;
    let header = FrameHeader::decode(&h).expect("the gateway sends valid frames");
    let mut body = vec![0; header.len as usize];
    s.read_exact(&mut body).ok()?;
    Some(Frame::decode(&header, Bytes::from(body)).expect("the gateway sends valid frames"))
}

/// Reads until the gateway closes the connection (skipping its pings).
fn closed(s: &mut TcpStream) -> bool {
    loop {
        match read_frame(s) {
            None => return true,
            Some(Frame::Ping { .. } | Frame::Welcome(_)) => continue,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
}

fn hello(token: &str, version: u16, functions: Vec<FunctionInfo>) -> Frame {
    Frame::Hello(Hello {
        version,
        token: token.as_bytes().to_vec(),
        node: "bad-peer".into(),
        functions,
    })
}

fn refusal(s: &mut TcpStream) -> (RefuseReason, String) {
    match read_frame(s) {
        Some(Frame::Refuse { reason, text, .. }) => (reason, text),
        other => panic!("expected REFUSE, got {other:?}"),
    }
}

fn sink(capacity: u32) -> Vec<FunctionInfo> {
    vec![FunctionInfo {
        name: "Sink".into(),
        capacity,
        max_payload: 16 << 20,
        timeout_ms: 60_000,
        idempotent: false,
        allow_get: false,
    }]
}

fn echo_works(gw: &GatewayProc) {
    let r = gw
        .client()
        .post("/function/Echo", b"still here")
        .expect("call");
    assert_eq!((r.status, r.text().as_ref()), (200, "still here"));
}

#[test]
fn bad_peers_are_refused_or_dropped_and_the_gateway_keeps_serving() {
    within(Duration::from_secs(180), || {
        let gw = GatewayProc::start("127.0.0.1:0", &[]);
        let mut good = engine(&gw, "good", "", &rust_fn("Echo", "Echo", ""));
        gw.wait_serving(1, Duration::from_secs(30));

        // Wrong token, no token.
        let mut s = connect(&gw.engines);
        send(&mut s, &hello("not-the-token", VERSION, sink(1)));
        assert_eq!(
            refusal(&mut s),
            (RefuseReason::Token, "wrong join token".into())
        );
        assert!(closed(&mut s));
        let mut s = connect(&gw.engines);
        send(&mut s, &hello("", VERSION, sink(1)));
        let (reason, text) = refusal(&mut s);
        assert_eq!(reason, RefuseReason::Token);
        assert!(text.contains("GLOAM_JOIN_TOKEN"), "{text}");
        echo_works(&gw);

        // Another version: the refusal names both.
        let mut s = connect(&gw.engines);
        send(&mut s, &hello(TOKEN, VERSION + 1, sink(1)));
        let (reason, text) = refusal(&mut s);
        assert_eq!(reason, RefuseReason::Version);
        assert!(
            text.contains(&format!("protocol {VERSION}"))
                && text.contains(&format!("speaks {}", VERSION + 1)),
            "{text}"
        );

        // Garbage, and a frame length far over the maximum.
        let mut s = connect(&gw.engines);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nthis is not a frame at all")
            .expect("write");
        assert_eq!(refusal(&mut s).0, RefuseReason::Protocol);
        assert!(closed(&mut s));
        let mut s = connect(&gw.engines);
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        h[4] = 1;
        s.write_all(&h).expect("write");
        let (reason, text) = refusal(&mut s);
        assert_eq!(reason, RefuseReason::Protocol);
        assert!(text.contains("field `len`"), "{text}");
        echo_works(&gw);

        // A joined peer that then sends garbage is dropped.
        let mut s = connect(&gw.engines);
        send(&mut s, &hello(TOKEN, VERSION, sink(1)));
        assert!(matches!(read_frame(&mut s), Some(Frame::Welcome(_))));
        gw.wait_serving(2, Duration::from_secs(10));
        s.write_all(&[0xff; 64]).expect("write");
        assert!(closed(&mut s));
        gw.wait_serving(1, Duration::from_secs(10));

        // A joined peer that goes silent without closing (a half-open connection) is dropped
        // once its heartbeats are missed.
        let mut silent = connect(&gw.engines);
        send(&mut silent, &hello(TOKEN, VERSION, sink(1)));
        assert!(matches!(read_frame(&mut silent), Some(Frame::Welcome(_))));
        gw.wait_serving(2, Duration::from_secs(10));
        gw.wait_serving(1, Duration::from_secs(10));
        assert!(
            gw.stderr_text().contains("heartbeats missed"),
            "{}",
            gw.stderr_text()
        );
        drop(silent);

        // A joined peer that answers pings but never reads: its calls end ENGINE_LOST once
        // the gateway's writes stall, and it is dropped.
        let mut s = connect(&gw.engines);
        send(&mut s, &hello(TOKEN, VERSION, sink(16)));
        assert!(matches!(read_frame(&mut s), Some(Frame::Welcome(_))));
        // WELCOME goes out before the peer's functions are in the routing table.
        gw.wait_serving(2, Duration::from_secs(10));
        let stop = Arc::new(AtomicBool::new(false));
        let pinger = {
            let (mut w, stop) = (s.try_clone().expect("clone"), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let mut buf = BytesMut::new();
                    Frame::Ping { sent_ns: 1 }.encode(&mut buf);
                    if w.write_all(&buf).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let addr = gw.addr.clone();
                std::thread::spawn(move || {
                    let mut c =
                        gloam_engine::client::HttpClient::new(addr.as_str()).expect("client");
                    c.set_read_timeout(Some(Duration::from_secs(30)))
                        .expect("timeout");
                    let r = c
                        .post("/function/Sink", &vec![0u8; 4 << 20])
                        .expect("an answer");
                    (r.status, r.text().into_owned())
                })
            })
            .collect();
        echo_works(&gw);
        for c in callers {
            let (status, text) = c.join().expect("caller");
            assert_eq!(status, 502, "{text}");
            assert!(
                text.contains("ENGINE_LOST") && text.contains("stopped reading"),
                "{text}"
            );
        }
        stop.store(true, Ordering::SeqCst);
        let _ = pinger.join();
        gw.wait_serving(1, Duration::from_secs(10));
        echo_works(&gw);
        assert!(
            gw.metric("gloam_gateway_peers_refused_total{reason=\"token\"}")
                .unwrap_or(0.0)
                >= 2.0
        );
        assert_eq!(
            gw.metric("gloam_gateway_peers_refused_total{reason=\"version\"}"),
            Some(1.0)
        );
        good.stop();
    });
}

#[test]
fn an_engine_with_a_wrong_token_says_so() {
    within(Duration::from_secs(120), || {
        let gw = GatewayProc::start("127.0.0.1:0", &[]);
        let mut e = Stack::start_env(
            &format!("join = {:?}", gw.engines),
            &rust_fn("Echo", "Echo", ""),
            &[("GLOAM_JOIN_TOKEN", "wrong")],
        );
        e.wait_for(
            "the refusal in the engine's log",
            Duration::from_secs(30),
            || e.stderr_text().contains("wrong join token"),
        );
        assert_eq!(gw.serving(), 0);
        e.stop();
    });
}
