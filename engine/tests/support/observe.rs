//! What the fault tests watch while they break things: the workers `/_/status` shows, calls
//! made from threads of their own, and background traffic that must keep being served.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gloam_engine::client::{HttpClient, Response};

use super::Stack;

/// A connected worker as `/_/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Its id (slot | generation << 16).
    pub id: u32,
    /// Its process.
    pub pid: u32,
    /// Whether it runs a call (or a call that ended at its deadline).
    pub busy: bool,
}

impl Seen {
    /// The slot part of its id.
    pub fn slot(self) -> u32 {
        self.id & 0xFFFF
    }

    /// The generation part of its id.
    pub fn generation(self) -> u32 {
        self.id >> 16
    }
}

/// The workers of `function`, by id.
pub fn workers_of(s: &Stack, function: &str) -> Vec<Seen> {
    s.status()["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter(|w| w["function"] == function)
                .map(|w| Seen {
                    id: w["id"].as_u64().unwrap() as u32,
                    pid: w["pid"].as_u64().unwrap() as u32,
                    busy: w["busy"] == true,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether worker `id` (of any function) is connected.
pub fn connected(s: &Stack, id: u32) -> bool {
    s.status()["workers"]
        .as_array()
        .is_some_and(|ws| ws.iter().any(|w| w["id"] == id))
}

/// The JSON body of an error answer.
pub fn body_json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

/// POSTs `input` to `function` from a thread of its own (its own connection, 60 s bound).
pub fn call_in_background(s: &Stack, function: &str, input: Vec<u8>) -> JoinHandle<Response> {
    let (addr, path) = (s.addr.clone(), format!("/function/{function}"));
    std::thread::spawn(move || {
        let mut c = HttpClient::new(addr.as_str()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        c.post(&path, &input).unwrap()
    })
}

/// Calls to `Echo` with unique payloads, one after another from a thread, for as long as a
/// test runs: every answer must be its own payload.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    wrong: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    /// Starts the traffic against `s`.
    pub fn start(s: &Stack) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let wrong = Arc::new(Mutex::new(Vec::new()));
        let addr = s.addr.clone();
        let (st, sv, wr) = (stop.clone(), served.clone(), wrong.clone());
        let thread = std::thread::spawn(move || {
            let mut c = HttpClient::new(addr.as_str()).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut i = 0u64;
            while !st.load(Ordering::Acquire) {
                let body = format!("traffic-{i}");
                match c.post("/function/Echo", body.as_bytes()) {
                    Ok(r) if r.status == 200 && r.body == body.as_bytes() => {
                        sv.fetch_add(1, Ordering::Release);
                    }
                    Ok(r) => wr
                        .lock()
                        .unwrap()
                        .push(format!("{body}: {} {}", r.status, r.text())),
                    Err(e) => wr.lock().unwrap().push(format!("{body}: {e}")),
                }
                i += 1;
                // Pacing, not waiting: leave the CPUs to the rest of the test.
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Traffic {
            stop,
            served,
            wrong,
            thread: Some(thread),
        }
    }

    /// Calls answered correctly so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Acquire)
    }

    /// Waits (bounded) until `n` more calls have been answered correctly: the engine still
    /// serves others.
    pub fn wait_served(&self, s: &Stack, n: u64) {
        let target = self.served() + n;
        s.wait_for("the traffic to be served", Duration::from_secs(30), || {
            self.served() >= target
        });
    }

    /// Stops the traffic; panics if any call got a wrong answer or an error.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let wrong = self.wrong.lock().unwrap();
        assert!(wrong.is_empty(), "traffic went wrong: {wrong:?}");
        self.served()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
