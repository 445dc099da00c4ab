//! `/metrics`, `/healthz`, `/readyz`, `gloam status` and the timing headers against a real
//! stack.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{gloam_bin, rust_fn, Stack};

fn scrape(s: &Stack) -> String {
    let r = s.client().get("/metrics").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    r.text().into_owned()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_exactly_and_parse_as_prometheus_text() {
    let mut s = Stack::start(
        "",
        &[
            rust_fn("Echo", "Echo", ""),
            rust_fn("Fail", "Fail", ""),
            rust_fn("Crash", "Crash", ""),
        ]
        .concat(),
    );
    for i in 0..7 {
        let r = s.call("Echo", format!("{i}").as_bytes());
        assert!(r.header("server-timing").unwrap().contains("handler;dur="));
    }
    for _ in 0..3 {
        assert_eq!(s.call("Fail", b"").status, 500);
    }
    assert_eq!(s.call("Crash", b"").status, 502);
    let text = scrape(&s);
    assert_eq!(
        value(
            &text,
            "faas_invocations_total{function=\"Echo\",status=\"ok\"}"
        ),
        7.0
    );
    assert_eq!(
        value(
            &text,
            "faas_invocations_total{function=\"Fail\",status=\"handler_failed\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "faas_invocations_total{function=\"Crash\",status=\"worker_crashed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "faas_invoke_duration_seconds_count{function=\"Echo\"}"
        ),
        7.0
    );
    let sum = value(&text, "faas_invoke_duration_seconds_sum{function=\"Echo\"}");
    assert!(sum > 0.0 && sum < 7.0, "implausible duration sum {sum}");
    assert_eq!(
        value(
            &text,
            "faas_invoke_duration_seconds_bucket{function=\"Echo\",le=\"+Inf\"}"
        ),
        7.0
    );
    assert!(
        value(
            &text,
            "faas_coldstart_duration_seconds_count{function=\"Echo\"}"
        ) >= 1.0
    );
    assert_eq!(value(&text, "gloam_queue_depth{function=\"Echo\"}"), 0.0);
    assert!(value(&text, "gloam_limiter_tau{function=\"Echo\"}") >= 1.0);
    // Every sample line is `name{labels} value`, with a declared TYPE for its family.
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "value of {line}");
        let name = series.split('{').next().unwrap();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {family} "))
                || text.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}"
        );
        assert!(series.matches('"').count() % 2 == 0, "quoting of {line}");
    }

    // `gloam status --json` agrees with the engine.
    let out = Command::new(gloam_bin())
        .args(["status", "--json", "--addr", &s.addr])
        .output()
        .unwrap();
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let echo = status["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Echo")
        .unwrap();
    assert_eq!(echo["completed"], 7);
    assert!(echo["p50_ms"].as_f64().is_some());
    let table = Command::new(gloam_bin())
        .args(["status", "--addr", &s.addr])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("Echo"));
    s.stop();
}

#[test]
fn readyz_flips_while_a_worker_restarts_and_healthz_stays_up() {
    let mut s = Stack::start("", &rust_fn("Echo", "Echo", ""));
    assert_eq!(s.client().get("/healthz").unwrap().status, 200);
    assert_eq!(s.client().get("/readyz").unwrap().status, 200);
    let pid = s.status()["workers"][0]["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut saw_not_ready = false;
    s.wait_for(
        "readyz to report the missing worker",
        Duration::from_secs(20),
        || {
            let r = s.client().get("/readyz").unwrap();
            if r.status == 503 {
                assert!(r.text().contains("Echo"), "{}", r.text());
                saw_not_ready = true;
            }
            saw_not_ready
        },
    );
    assert_eq!(s.client().get("/healthz").unwrap().status, 200);
    s.wait_for("readyz to recover", Duration::from_secs(30), || {
        s.client().get("/readyz").unwrap().status == 200
    });
    assert_eq!(s.call("Echo", b"back").text(), "back");
    s.stop();
}
