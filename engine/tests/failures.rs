//! Failures you can see: a function whose workers cannot start (missing command, exit before
//! ready, missing handler) is named on the console with the reason, its calls fail at once with
//! 503 `FUNCTION_UNAVAILABLE` naming it, `/readyz` and the status say so, and the other
//! functions serve on. No timing is asserted: the calls use a 30 s deadline and the test
//! fails if they take it (a bound far above what a fast failure needs).

mod support;

use std::time::{Duration, Instant};

use support::{hello_rust, rust_fn, within, Stack};

const LIMIT: Duration = Duration::from_secs(120);
/// A failed start is told long before a call's 30 s deadline; this only bounds a hang.
const FAST: Duration = Duration::from_secs(20);

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
}

#[test]
fn broken_functions_fail_fast_with_their_reason_while_the_others_serve() {
    within(LIMIT, || {
        let functions = format!(
            "{}{}[functions.BadCmd]\ncommand = \"./no-such-program\"\n\n\
             [functions.NoHandler]\ncommand = {cmd:?}\nhandler = \"Nope\"\ntimeout_ms = 30000\n",
            rust_fn("Echo", "Echo", ""),
            rust_fn("Crash", "Crash", "") + &rust_fn("InvokeOther", "InvokeOther", ""),
            cmd = hello_rust().display().to_string(),
        );
        let mut s = Stack::start("", &functions);
        // The good function serves.
        let r = s.call("Echo", b"hi");
        assert_eq!((r.status, r.body.as_slice()), (200, b"hi".as_slice()));

        // A missing command: 503 FUNCTION_UNAVAILABLE naming it, at once.
        let t0 = Instant::now();
        let r = s.call("BadCmd", b"x");
        assert!(t0.elapsed() < FAST);
        assert_eq!(r.status, 503, "{}", r.text());
        let body = json(&r.body);
        assert_eq!(body["error"], "FUNCTION_UNAVAILABLE");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("cannot be started") && message.contains("no-such-program"),
            "{message}"
        );
        assert!(r.header("retry-after").is_some());

        // A missing handler: the program's own words.
        let r = s.call("NoHandler", b"x");
        assert_eq!(r.status, 503, "{}", r.text());
        let message = json(&r.body)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains("exited before it was ready")
                && message.contains("no handler for function \"Nope\""),
            "{message}"
        );

        // The console named both causes, with the failed process's stderr.
        let console = s.stderr_text();
        assert!(console.contains("gloam: BadCmd cannot start"), "{console}");
        assert!(console.contains("no-such-program"), "{console}");
        assert!(
            console.contains("gloam: NoHandler cannot start"),
            "{console}"
        );
        assert!(
            console.contains("NoHandler.0 | "),
            "worker output echoed: {console}"
        );
        assert!(console.contains("  its stderr ("), "{console}");

        // /readyz is not ready and says why; status counts restarts and the last exit.
        let r = s.client().get("/readyz").expect("readyz");
        assert_eq!(r.status, 503);
        let ready = r.text().into_owned();
        assert!(
            ready.contains("BadCmd") && ready.contains("NoHandler"),
            "{ready}"
        );
        s.wait_for("a restart of BadCmd", FAST, || {
            s.function_stat("BadCmd", "restarts") >= 2
        });
        let status = s.status();
        let bad = status["functions"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["name"] == "BadCmd"))
            .cloned()
            .unwrap_or_default();
        assert!(bad["unavailable"]
            .as_str()
            .is_some_and(|t| t.contains("no-such-program")));
        assert!(bad["last_exit"]
            .as_str()
            .is_some_and(|t| t.contains("cannot be started")));
        let out = std::process::Command::new(support::gloam_bin())
            .args(["status", "--addr", &s.addr])
            .output()
            .expect("gloam status");
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("RESTARTS"), "{table}");
        assert!(table.contains("BadCmd cannot start"), "{table}");

        // An internal call to a broken function fails the same way, passed on to HTTP.
        let r = s.call("InvokeOther", b"BadCmd:x");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(json(&r.body)["error"], "FUNCTION_UNAVAILABLE");

        // A crash after ready is not unavailability: the next call waits for the restart.
        let r = s.call("Crash", b"");
        assert_eq!(r.status, 502, "{}", r.text());
        let r = s.call("Crash", b"");
        assert_eq!(
            r.status,
            502,
            "a crashed function is restarted, not unavailable: {}",
            r.text()
        );
        s.stop();
    });
}

#[test]
fn a_call_waiting_for_a_worker_fails_when_its_process_dies_before_ready() {
    within(LIMIT, || {
        // The process takes a while, then exits without connecting. No worker at start
        // (min_workers = 0): the call waits while the pool grows for it.
        let functions = "[functions.Slow]\ncommand = \"/bin/sh\"\n\
                         args = [\"-c\", \"echo 'loading the model...' >&2; sleep 1; echo 'Error: model file missing' >&2; exit 3\"]\n\
                         timeout_ms = 30000\nmin_workers = 0\n";
        let mut s = Stack::start("", functions);
        let t0 = Instant::now();
        let r = s.call("Slow", b"x");
        assert!(t0.elapsed() < FAST, "the call waited for its deadline");
        assert_eq!(r.status, 503, "{}", r.text());
        let message = json(&r.body)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains("exit code 3") && message.contains("Error: model file missing"),
            "{message}"
        );
        s.stop();
    });
}

#[test]
fn a_process_that_never_connects_is_stopped_at_its_start_timeout() {
    within(LIMIT, || {
        let functions = format!(
            "{}[functions.Silent]\ncommand = \"sleep\"\nargs = [\"1000\"]\nstart_timeout_ms = 500\n",
            rust_fn("Echo", "Echo", ""),
        );
        let mut s = Stack::start("", &functions);
        let t0 = Instant::now();
        let r = s.call("Silent", b"x");
        assert!(t0.elapsed() < FAST);
        assert_eq!(r.status, 503, "{}", r.text());
        let body = json(&r.body);
        assert_eq!(body["error"], "FUNCTION_UNAVAILABLE");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("did not connect to the engine within 500 ms (start_timeout_ms)"),
            "{message}"
        );
        let console = s.stderr_text();
        assert!(console.contains("gloam: Silent cannot start"), "{console}");
        assert_eq!(s.call("Echo", b"hi").status, 200);
        s.stop();
    });
}
