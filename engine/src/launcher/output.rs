//! A worker process's stdout and stderr: copied to its log files as they come, echoed to the
//! console line by line with the slot's prefix (`Foo.0 | ...`) unless quiet, and the last
//! lines of stderr kept to say why a process that failed to start died.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines of stderr kept per process.
pub const TAIL_LINES: usize = 20;
/// A line longer than this is cut into pieces of this length (echo and tail only; the log
/// file gets every byte).
const MAX_LINE: usize = 16 * 1024;

/// The last lines a process wrote on stderr.
#[derive(Debug, Default)]
pub struct Tail {
    lines: Mutex<VecDeque<String>>,
}

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect()
    }

    /// The line that best says why the process failed, trimmed: the last one that reads like
    /// an error (`Error: ...`, `...Exception: ...`, `panicked`, `no handler`, ...), skipping
    /// stack frames and runtime banners (Node's `Node.js v20...` after an uncaught error); else
    /// the last line that is not blank.
    pub fn reason_line(&self) -> Option<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let candidates: Vec<&str> = lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .filter(|l| !l.starts_with("at ") && !l.starts_with("Node.js v"))
            .collect();
        let errorish = |l: &&&str| {
            let lower = l.to_ascii_lowercase();
            [
                "error",
                "exception",
                "panic",
                "fatal",
                "no handler",
                "cannot",
                "not found",
            ]
            .iter()
            .any(|w| lower.contains(w))
        };
        candidates
            .iter()
            .find(errorish)
            .or(candidates.first())
            .map(|l| l.to_string())
    }
}

/// Where a stream's lines go besides its log file.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The console prefix, e.g. `Foo.0`; `None`: not echoed.
    pub echo: Option<Arc<str>>,
    /// The tail to keep the lines in (stderr only).
    pub tail: Option<Arc<Tail>>,
}

/// Copies `from` into `file` until end of file, passing each line to `sink`.
pub async fn pump(mut from: impl AsyncRead + Unpin, mut file: File, sink: Sink) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if let Err(e) = file.write_all(chunk) {
            tracing::debug!("cannot write a worker log: {e}");
        }
        for &b in chunk {
            if b == b'\n' {
                emit(&sink, &line);
                line.clear();
            } else {
                line.push(b);
                if line.len() >= MAX_LINE {
                    emit(&sink, &line);
                    line.clear();
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&sink, &line);
    }
}

fn emit(sink: &Sink, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    if let Some(prefix) = &sink.echo {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{prefix} | {text}");
    }
    if let Some(tail) = &sink.tail {
        tail.push(text.into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_error_line_not_a_banner_or_a_frame() {
        let tail = Tail::default();
        for l in [
            "/srv/main.js:12",
            "Error: this program has no handler for function \"X\"",
            "    at Object.<anonymous> (/srv/main.js:12:9)",
            "    at new NodeError (node:internal/errors:405:5)",
            "  code: 'GLOAM_E_INVALID_CONFIG'",
            "}",
            "",
            "Node.js v20.11.1",
        ] {
            tail.push(l.to_string());
        }
        assert_eq!(
            tail.reason_line().as_deref(),
            Some("Error: this program has no handler for function \"X\"")
        );
        let quiet = Tail::default();
        quiet.push("loading".into());
        quiet.push("done".into());
        assert_eq!(quiet.reason_line().as_deref(), Some("done"));
    }

    #[tokio::test]
    async fn lines_reach_the_file_and_the_tail() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let file = File::create(&path)?;
        let tail = Arc::new(Tail::default());
        let input: Vec<u8> = (0..30)
            .flat_map(|i| format!("line {i}\r\n").into_bytes())
            .chain(b"Error: no handler\n\n  \npartial".iter().copied())
            .collect();
        let sink = Sink {
            echo: None,
            tail: Some(tail.clone()),
        };
        pump(&input[..], file, sink).await;
        assert_eq!(std::fs::read(&path)?, input);
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last().map(String::as_str), Some("partial"));
        assert_eq!(tail.reason_line().as_deref(), Some("Error: no handler"));
        assert!(lines.contains(&"line 29".to_string()));
        Ok(())
    }
}
