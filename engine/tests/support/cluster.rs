//! A real `gloam gateway` and engines that join it, for the multi-node tests.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gloam_engine::client::HttpClient;

use super::{gloam_bin, Stack};

/// The join token the tests' gateways and engines share.
pub const TOKEN: &str = "test-join-token";

/// A running `gloam gateway`, killed on drop.
pub struct GatewayProc {
    pub child: Option<Child>,
    /// Its HTTP address.
    pub addr: String,
    /// The address engines dial.
    pub engines: String,
    pub dir: tempfile::TempDir,
}

impl GatewayProc {
    /// Starts a gateway with its engine port on `engines` (`127.0.0.1:0` for any) and `extra`
    /// arguments.
    pub fn start(engines: &str, extra: &[&str]) -> GatewayProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = std::fs::File::create(dir.path().join("gateway.stderr")).expect("stderr");
        let mut command = Command::new(gloam_bin());
        command
            .args(["gateway", "--listen", "127.0.0.1:0", "--engines", engines])
            .args(extra)
            .env("GLOAM_JOIN_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(stderr);
        // SAFETY: prctl(2) only, in the forked child before exec; async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn gloam gateway");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut engines = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("gloam: engines ") {
                    engines = Some(a.to_string());
                }
                if let Some(url) = line.strip_prefix("gloam: ready http://") {
                    let _ = tx.send((url.to_string(), engines.clone().unwrap_or_default()));
                }
            }
        });
        let Ok((addr, engines)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "gateway not ready in 30 s; stderr:\n{}",
                std::fs::read_to_string(dir.path().join("gateway.stderr")).unwrap_or_default()
            );
        };
        GatewayProc {
            child: Some(child),
            addr,
            engines,
            dir,
        }
    }

    /// A keep-alive client.
    pub fn client(&self) -> HttpClient {
        let mut c = HttpClient::new(self.addr.as_str()).expect("client");
        c.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        c
    }

    /// The gateway's status JSON.
    pub fn status(&self) -> serde_json::Value {
        let r = self.client().get("/_/status").expect("status");
        serde_json::from_slice(&r.body).expect("status JSON")
    }

    /// Engines joined and serving.
    pub fn serving(&self) -> usize {
        self.status()["engines"].as_array().map_or(0, |es| {
            es.iter().filter(|e| e["state"] == "serving").count()
        })
    }

    /// Calls sent to the engine named `node`, all functions (0 if absent).
    pub fn engine_calls(&self, node: &str, function: &str) -> u64 {
        self.status()["engines"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["node"] == node))
            .and_then(|e| e["functions"].as_array())
            .and_then(|fs| fs.iter().find(|f| f["name"] == function))
            .and_then(|f| f["calls"].as_u64())
            .unwrap_or(0)
    }

    /// Polls until `n` engines serve, for at most `limit`.
    pub fn wait_serving(&self, n: usize, limit: Duration) {
        let start = Instant::now();
        loop {
            let now = self.serving();
            if now == n {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{now} engines serving, not {n}, after {limit:?}; gateway stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a series in `/metrics`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let r = self.client().get("/metrics").expect("metrics");
        let text = r.text().into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Its stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.stderr")).unwrap_or_default()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `gloam up` joined to `gateway` as node `node` with the test token.
pub fn engine(gateway: &GatewayProc, node: &str, engine_extra: &str, functions: &str) -> Stack {
    Stack::start_env(
        &format!(
            "join = {:?}\nnode_name = {node:?}\n{engine_extra}",
            gateway.engines
        ),
        functions,
        &[("GLOAM_JOIN_TOKEN", TOKEN)],
    )
}
