//! A real `gloam up` with real worker processes, for end-to-end tests.

#![allow(dead_code)]

pub mod hand;
pub mod observe;
pub mod process;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gloam_engine::client::{HttpClient, Response};

/// The `gloam` binary under test.
pub fn gloam_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gloam"))
}

/// The Rust example functions, built next to `gloam` (`cargo build -p hello-rust`).
pub fn hello_rust() -> PathBuf {
    let p = gloam_bin().with_file_name("hello-rust");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p hello-rust` (the test script does)",
        p.display()
    );
    p
}

/// A running stack: engine + gateway + workers, stopped (and checked clean) on drop.
pub struct Stack {
    pub child: Option<Child>,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub stderr_log: PathBuf,
}

/// `[functions.X]` tables serving the Rust example's handler `handler` under `name`.
pub fn rust_fn(name: &str, handler: &str, extra: &str) -> String {
    format!(
        "[functions.{name}]\ncommand = {cmd:?}\nenv = {{ GLOAM_HANDLER = {handler:?} }}\n{extra}\n",
        cmd = hello_rust().display().to_string()
    )
}

impl Stack {
    /// Starts `gloam up` with an `[engine]` section of `engine_extra` and `functions`.
    pub fn start(engine_extra: &str, functions: &str) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        // CI runs these tests once more with the other transport.
        let transport = std::env::var("GLOAM_TEST_TRANSPORT")
            .map(|t| format!("transport = {t:?}\n"))
            .unwrap_or_default();
        let config = format!(
            "[engine]\nipc_root = {root:?}\nlisten = \"127.0.0.1:0\"\nlog_dir = {logs:?}\n{transport}{engine_extra}\n\n{functions}",
            root = dir.path().join("ipc").display().to_string(),
            logs = dir.path().join("logs").display().to_string(),
        );
        let path = dir.path().join("gloam.toml");
        std::fs::write(&path, config).expect("write config");
        let stderr_log = dir.path().join("engine.stderr");
        let mut child = Command::new(gloam_bin())
            .arg("up")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("stderr log"))
            .spawn()
            .expect("spawn gloam up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("gloam: ready http://") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "engine not ready in 60 s; stderr:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        Stack {
            child: Some(child),
            addr,
            dir,
            stderr_log,
        }
    }

    /// A keep-alive client to the gateway.
    pub fn client(&self) -> HttpClient {
        let mut c = HttpClient::new(self.addr.as_str()).expect("client");
        c.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        c
    }

    /// POSTs `input` to function `name`.
    pub fn call(&self, name: &str, input: &[u8]) -> Response {
        self.client()
            .post(&format!("/function/{name}"), input)
            .expect("HTTP call")
    }

    /// POSTs with a deadline header.
    pub fn call_with_timeout(&self, name: &str, input: &[u8], ms: u64) -> Response {
        let ms = ms.to_string();
        self.client()
            .request(
                "POST",
                &format!("/function/{name}"),
                &[("X-Gloam-Timeout", ms.as_str())],
                input,
            )
            .expect("HTTP call")
    }

    /// The engine's status JSON.
    pub fn status(&self) -> serde_json::Value {
        let r = self.client().get("/_/status").expect("status");
        serde_json::from_slice(&r.body).expect("status JSON")
    }

    /// A number from the status of function `name`.
    pub fn function_stat(&self, name: &str, key: &str) -> u64 {
        let s = self.status();
        s["functions"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["name"] == name))
            .and_then(|f| f[key].as_u64())
            .unwrap_or(0)
    }

    /// Polls `cond` every 10 ms for at most `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn ipc_root(&self) -> PathBuf {
        self.dir.path().join("ipc")
    }

    /// Files currently in the IPC root's fifo/ and shm/.
    pub fn ipc_files(&self, sub: &str) -> Vec<String> {
        list(&self.ipc_root().join(sub))
    }

    /// Stops the stack (SIGTERM), waits for a clean exit and checks the IPC root is clean.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("engine did not stop within 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "engine exited with {status}; stderr:\n{}",
            std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
        );
        for sub in ["fifo", "shm"] {
            let left = self.ipc_files(sub);
            assert!(left.is_empty(), "stray files in {sub}/: {left:?}");
        }
    }
}

fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
