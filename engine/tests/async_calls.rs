//! Asynchronous calls end to end: 1000 accepted calls survive a `kill -9` of the engine
//! halfway (each ends exactly once as `GET /calls/ID` sees it); callbacks are retried
//! against a receiver that fails the first attempts; a callback to a host not allowed is
//! refused at submit; the queue bound and the result lifetime hold.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use support::{rust_fn, within, Stack};

fn submit(s: &Stack, function: &str, input: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
    let r = s
        .client()
        .request(
            "POST",
            &format!("/async-function/{function}"),
            headers,
            input,
        )
        .expect("submit");
    let id = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-call-id"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
    (r.status, id)
}

fn get(s: &Stack, id: &str) -> (u16, Vec<u8>) {
    let r = s.client().get(&format!("/calls/{id}")).expect("GET /calls");
    (r.status, r.body)
}

#[test]
fn accepted_calls_survive_kill_9_and_end_exactly_once() {
    within(Duration::from_secs(150), || {
        let mut s = Stack::start(
            "",
            &rust_fn(
                "Sleep",
                "Sleep",
                "min_workers = 2\nmax_workers = 2\nlimiter = false",
            ),
        );
        // Eight clients submit 1000 calls between them (the store commits them in groups).
        let (tx, rx) = mpsc::channel();
        let addr = s.addr.clone();
        let submitters: Vec<_> = (0..8)
            .map(|k| {
                let (tx, addr) = (tx.clone(), addr.clone());
                std::thread::spawn(move || {
                    let mut c =
                        gloam_engine::client::HttpClient::new(addr.as_str()).expect("client");
                    for _ in 0..125 {
                        let r = c.post("/async-function/Sleep", b"20").expect("submit");
                        assert_eq!(r.status, 202, "{}", r.text());
                        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
                        let id = v["call_id"].as_str().expect("call_id").to_string();
                        tx.send((k, id)).expect("send");
                    }
                })
            })
            .collect();
        drop(tx);
        for t in submitters {
            t.join().expect("submitter");
        }
        let ids: Vec<String> = rx.iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), 1000);
        // Kill the engine while many have run and many have not (20 ms each on four workers:
        // at most 200 a second, so hundreds are still pending when the submitters are done).
        s.wait_for("a few hundred calls done", Duration::from_secs(60), || {
            s.metric("gloam_async_calls_completed_total").unwrap_or(0.0) >= 200.0
        });
        let pending = s.metric("gloam_async_calls_pending").unwrap_or(0.0);
        assert!(pending >= 50.0, "only {pending} calls pending at the kill");
        s.kill_and_restart();
        // Some calls had not ended when it died: the new engine runs them.
        assert!(s.stderr_text().contains("run again"), "{}", s.stderr_text());
        s.wait_for("every accepted call ended", Duration::from_secs(90), || {
            s.metric("gloam_async_calls_pending") == Some(0.0)
        });
        let mut seen = HashMap::new();
        for id in &ids {
            let (status, body) = get(&s, id);
            assert_eq!(
                (status, body.as_slice()),
                (200, b"slept 20 ms".as_slice()),
                "{id}"
            );
            assert!(seen.insert(id.clone(), ()).is_none(), "id {id} twice");
        }
        // The results are final: asking again answers the same.
        assert_eq!(get(&s, &ids[0]).0, 200);
        assert_eq!(get(&s, "0001000000ffffff").0, 404);
        assert_eq!(get(&s, "nonsense").0, 404);
    });
}

/// A callback receiver on loopback answering 500 to the first `failures` requests, then 200.
/// Sends (X-Call-Id, X-Call-Status, body) of each request it gets.
fn receiver(failures: usize) -> (String, mpsc::Receiver<(String, String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut r = BufReader::new(stream.try_clone().expect("clone"));
            let (mut id, mut status, mut len) = (String::new(), String::new(), 0usize);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                let value = line
                    .split_once(':')
                    .map_or("", |(_, v)| v.trim())
                    .to_string();
                if lower.starts_with("x-call-id:") {
                    id = value;
                } else if lower.starts_with("x-call-status:") {
                    status = value;
                } else if lower.starts_with("content-length:") {
                    len = value.parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let code = if n < failures { "500 Nope" } else { "200 OK" };
            let _ = write!(
                stream,
                "HTTP/1.1 {code}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tx.send((id, status, body));
        }
    });
    (addr, rx)
}

#[test]
fn callbacks_are_retried_and_only_go_to_allowed_hosts() {
    within(Duration::from_secs(60), || {
        let (addr, got) = receiver(2);
        let s = Stack::start(
            "",
            &format!(
                "[async]\ncallback_hosts = [\"127.0.0.1\"]\ncallback_backoff_ms = 20\ncallback_attempts = 4\n\n{}",
                rust_fn("Echo", "Echo", "")
            ),
        );
        let url = format!("http://{addr}/done");
        let (status, id) = submit(&s, "Echo", b"ping", &[("X-Callback-Url", url.as_str())]);
        assert_eq!(status, 202, "{id}");
        let mut attempts = Vec::new();
        for _ in 0..3 {
            attempts.push(
                got.recv_timeout(Duration::from_secs(20))
                    .expect("a callback attempt"),
            );
        }
        for (i, (cid, st, body)) in attempts.iter().enumerate() {
            assert_eq!(
                (cid.as_str(), st.as_str(), body.as_slice()),
                (id.as_str(), "200", b"ping".as_slice()),
                "attempt {i}"
            );
        }
        s.wait_for("retries counted", Duration::from_secs(10), || {
            s.metric("gloam_async_calls_retried_total").unwrap_or(0.0) >= 2.0
        });
        // Not allowed: refused at submit, nothing stored, nothing sent.
        for bad in [
            "http://10.1.2.3/cb",
            "http://localhost:1/cb",
            "https://127.0.0.1/cb",
        ] {
            let (status, body) = submit(&s, "Echo", b"x", &[("X-Callback-Url", bad)]);
            assert_eq!(status, 400, "{bad}: {body}");
        }
        let (status, body) = submit(
            &s,
            "Echo",
            b"x",
            &[("X-Callback-Url", "http://10.1.2.3/cb")],
        );
        assert!(body.contains("not allowed"), "{status} {body}");
        assert_eq!(submit(&s, "Nope", b"x", &[]).0, 404);
    });
}

#[test]
fn the_queue_bound_refuses_and_results_expire() {
    within(Duration::from_secs(60), || {
        let s = Stack::start(
            "",
            &format!(
                "[async]\nqueue_bound = 2\nresult_ttl_ms = 300\n\n{}",
                rust_fn("Sleep", "Sleep", "max_workers = 1\nmin_workers = 1")
            ),
        );
        let (a, first) = submit(&s, "Sleep", b"400", &[]);
        let (b, _) = submit(&s, "Sleep", b"400", &[]);
        let (c, body) = submit(&s, "Sleep", b"400", &[]);
        assert_eq!((a, b, c), (202, 202, 503), "{body}");
        assert_eq!(get(&s, &first).0, 202);
        s.wait_for("the first call's result", Duration::from_secs(20), || {
            get(&s, &first).0 == 200
        });
        s.wait_for("the result expired", Duration::from_secs(20), || {
            get(&s, &first).0 == 404
        });
    });
}
