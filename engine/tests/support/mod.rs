//! A real `gloam up` with real worker processes, for end-to-end tests.

#![allow(dead_code)]

pub mod grpc;
pub mod hand;
pub mod hostile;
pub mod observe;
pub mod process;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
    /// The gRPC-only listener's address, with `engine.grpc_listen`.
    pub grpc_addr: Option<String>,
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
        Stack::launch(engine_extra, functions, None, &[])
    }

    /// [`start`](Self::start) with more arguments for `gloam up` (e.g. `--watch`).
    pub fn start_with_args(engine_extra: &str, functions: &str, args: &[&str]) -> Stack {
        Stack::launch(engine_extra, functions, None, args)
    }

    /// [`start`](Self::start) with the engine's descriptor limit (`RLIMIT_NOFILE`, soft and
    /// hard) set to `nofile`.
    pub fn start_with_nofile(engine_extra: &str, functions: &str, nofile: u64) -> Stack {
        Stack::launch(engine_extra, functions, Some(nofile), &[])
    }

    /// [`start`](Self::start) with extra environment variables for `gloam up`.
    pub fn start_env(engine_extra: &str, functions: &str, env: &[(&str, &str)]) -> Stack {
        Stack::launch_with(engine_extra, functions, None, &[], env)
    }

    /// [`start`](Self::start) with `prepare` run on the stack's directory first (to create
    /// the functions' directories), and the engine run as user `user` (who then owns the
    /// directory) when set.
    pub fn start_as(
        engine_extra: &str,
        functions: &str,
        user: Option<u32>,
        prepare: &dyn Fn(&Path),
    ) -> Stack {
        Stack::launch_setup(engine_extra, functions, user, Some(prepare))
    }

    fn launch(engine_extra: &str, functions: &str, nofile: Option<u64>, args: &[&str]) -> Stack {
        Stack::launch_with(engine_extra, functions, nofile, args, &[])
    }

    fn launch_with(
        engine_extra: &str,
        functions: &str,
        nofile: Option<u64>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Stack {
        let (dir, path, stderr_log) = Stack::write_config(engine_extra, functions);
        let (child, addr, grpc_addr) = spawn_up(&path, &stderr_log, nofile, args, env, None);
        Stack {
            child: Some(child),
            addr,
            grpc_addr,
            dir,
            stderr_log,
        }
    }

    fn launch_setup(
        engine_extra: &str,
        functions: &str,
        user: Option<u32>,
        prepare: Option<&dyn Fn(&Path)>,
    ) -> Stack {
        let (dir, path, stderr_log) = Stack::write_config(engine_extra, functions);
        if let Some(prepare) = prepare {
            prepare(dir.path());
        }
        if let Some(uid) = user {
            chown_tree(dir.path(), uid);
        }
        let (child, addr, grpc_addr) = spawn_up(&path, &stderr_log, None, &[], &[], user);
        Stack {
            child: Some(child),
            addr,
            grpc_addr,
            dir,
            stderr_log,
        }
    }

    /// A fresh directory with the configuration: (directory, config file, engine stderr).
    fn write_config(engine_extra: &str, functions: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
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
        (dir, path, stderr_log)
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

    /// The names in the IPC root itself, sorted: `engine.lock` and `engine.sock` while the
    /// engine runs (workers' channels and payloads have no name).
    pub fn ipc_root_entries(&self) -> Vec<String> {
        let mut names = list(&self.ipc_root());
        names.sort();
        names
    }

    /// The engine's stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The value of the Prometheus series `series` (the whole name with labels) in `/metrics`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let r = self.client().get("/metrics").expect("metrics");
        let text = r.text().into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Sends SIGKILL to the engine (its workers notice and exit).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the engine with SIGKILL (no drain, nothing cleaned), then starts it again on the
    /// same configuration and waits until it is ready.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let path = self.dir.path().join("gloam.toml");
        let (child, addr, grpc_addr) = spawn_up(&path, &self.stderr_log, None, &[], &[], None);
        self.child = Some(child);
        self.addr = addr;
        self.grpc_addr = grpc_addr;
    }

    /// Sends SIGTERM to the engine without waiting.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Waits at most `limit` for the engine to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let Some(child) = self.child.as_mut() else {
            panic!("the engine was already stopped");
        };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!("engine did not stop within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.child = None;
        status
    }

    /// Stops the stack (SIGTERM), waits for a clean exit and checks the IPC root is clean.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.terminate();
        let status = self.wait_exit(Duration::from_secs(30));
        self.check_clean_exit(status);
    }

    /// Asserts the engine exited with success and left no file in the IPC root.
    pub fn check_clean_exit(&self, status: ExitStatus) {
        assert!(
            status.success(),
            "engine exited with {status}; stderr:\n{}",
            std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
        );
        let root = self.ipc_root_entries();
        assert!(root.is_empty(), "stray files in the IPC root: {root:?}");
    }
}

/// Opens a connection to `addr` and writes a keep-alive `POST /function/<function>` with `body`
/// on it, without waiting for the answer (see [`read_raw_response`]).
pub fn raw_post(addr: &str, function: &str, body: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let head = format!(
        "POST /function/{function} HTTP/1.1\r\nHost: gloam\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(&[head.as_bytes(), body].concat())
        .expect("write request");
    stream
}

/// Reads one response with a `Content-Length` body from `stream`.
pub fn read_raw_response(stream: &mut std::net::TcpStream) -> std::io::Result<Response> {
    use std::io::Read;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Whether the server closes `stream` (end of file or reset) within `limit`, reading nothing.
pub fn closed_by_server(stream: &std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent data on a connection expected to be closed"),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

/// Whether the server has closed `stream` already (without waiting).
pub fn closed_now(stream: &std::net::TcpStream) -> bool {
    use std::io::Read;
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let closed = match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent data on an idle connection"),
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

/// Starts `gloam up CONFIG` (stderr appended to `stderr_log`) and waits for its ready line:
/// the child, the HTTP address and the gRPC-only address if any.
/// Gives `path` and everything under it to user (and group) `uid`.
fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path(), uid);
        }
    }
}

fn spawn_up(
    path: &Path,
    stderr_log: &Path,
    nofile: Option<u64>,
    args: &[&str],
    env: &[(&str, &str)],
    user: Option<u32>,
) -> (Child, String, Option<String>) {
    let mut command = Command::new(gloam_bin());
    command.envs(env.iter().copied());
    if let Some(uid) = user {
        command.uid(uid).gid(uid);
    }
    command
        .arg("up")
        .arg(path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(stderr_log)
                .expect("stderr log"),
        );
    // SAFETY: runs in the forked child before exec and only calls prctl(2) and
    // setrlimit(2), which are async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            // An engine left behind by a test that timed out dies with the test process.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(limit) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn gloam up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut grpc = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("gloam: grpc ") {
                grpc = Some(addr.to_string());
            }
            let ready = line
                .strip_prefix("gloam: ready http://")
                .or_else(|| line.strip_prefix("gloam: ready https://"));
            if let Some(url) = ready {
                let _ = tx.send((url.to_string(), grpc.take()));
            }
        }
    });
    let (addr, grpc_addr) = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "engine not ready in 60 s; stderr:\n{}",
                std::fs::read_to_string(stderr_log).unwrap_or_default()
            );
        }
    };
    (child, addr, grpc_addr)
}

/// Reads `gloam: ready http://ADDR` from a child's piped stdout (within 60 s): the address.
pub fn ready_addr(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("gloam: ready http://") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the engine ready within 60 s")
}

/// Runs a test's `body` on its own thread and fails the test if it has not finished within
/// `limit`, so that a hang fails fast (an engine it started dies with the test process).
pub fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let body = std::thread::spawn(move || {
        let value = body();
        let _ = done_tx.send(());
        value
    });
    match done_rx.recv_timeout(limit) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {limit:?}")
        }
        // Finished, or panicked (the sender was dropped): either way the thread has ended.
        _ => match body.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
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
pub mod cluster;
