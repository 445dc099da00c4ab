//! `gloam logs FUNCTION [-f]`: a function's worker output from its log files
//! (`<log_dir>/<function>.<slot>.stdout|stderr`), each line prefixed `<function>.<slot> | `
//! as on `gloam up`'s console.
//!
//! The log directory comes from the deployment file when one is given (`--config`, or
//! `./gloam.toml`: no engine needed, so the output of a stack that stopped can be read), else
//! from the running engine's `GET /_/status`.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::TargetArgs;
use crate::config::Config;
use crate::status::Status;

/// How often `-f` looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Arguments of `gloam logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The function.
    pub function: String,
    /// Keep printing output as it comes (until interrupted).
    #[arg(long, short)]
    pub follow: bool,
    /// Lines of each log file to print first.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub lines: usize,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `gloam logs`.
pub fn run(args: &LogsArgs) -> Result<()> {
    let target = args.target.find()?;
    let (log_dir, functions) = match &target.config {
        Some(path) => {
            let config = Config::load(path)?;
            let names = config.functions.iter().map(|f| f.name.clone()).collect();
            (config.engine.log_dir, names)
        }
        None => {
            let r = target.get("/_/status")?;
            if r.status != 200 {
                bail!("{}: HTTP {}: {}", target.url(), r.status, r.text());
            }
            let status: Status = serde_json::from_slice(&r.body)
                .with_context(|| format!("{}/_/status is not the engine's status", target.url()))?;
            let Some(dir) = status.log_dir else {
                bail!(
                    "the engine at {} does not say where its logs are",
                    target.addr
                );
            };
            (dir, status.functions.into_iter().map(|f| f.name).collect())
        }
    };
    let functions: Vec<String> = functions;
    if !functions.iter().any(|f| f == &args.function) {
        bail!(
            "no function {:?} (it has: {})",
            args.function,
            functions.join(", ")
        );
    }
    let mut files = Files::new(log_dir, &args.function);
    let mut out = std::io::stdout().lock();
    files.print_tails(args.lines, &mut out)?;
    if files.paths.is_empty() {
        eprintln!(
            "gloam: no output of {} yet in {}",
            args.function,
            files.dir.display()
        );
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(FOLLOW_POLL);
        files.print_new(&mut out)?;
    }
}

/// A function's log files and how far each was printed.
struct Files {
    dir: PathBuf,
    function: String,
    /// By (slot, stream): path and offset printed up to.
    paths: BTreeMap<(usize, String), (PathBuf, u64)>,
}

impl Files {
    fn new(dir: PathBuf, function: &str) -> Files {
        let mut files = Files {
            dir,
            function: function.to_string(),
            paths: BTreeMap::new(),
        };
        files.scan();
        files
    }

    /// Finds `<function>.<slot>.<stream>` files not known yet (from their start).
    fn scan(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = parse_name(&name, &self.function) else {
                continue;
            };
            self.paths.entry(key).or_insert((e.path(), 0));
        }
    }

    fn print_tails(&mut self, lines: usize, out: &mut impl Write) -> Result<()> {
        for ((slot, _), (path, offset)) in self.paths.iter_mut() {
            let text = std::fs::read(&*path).unwrap_or_default();
            *offset = text.len() as u64;
            let text = String::from_utf8_lossy(&text);
            let all: Vec<&str> = text.lines().collect();
            for line in &all[all.len().saturating_sub(lines)..] {
                writeln!(out, "{}.{slot} | {line}", self.function)?;
            }
        }
        out.flush()?;
        Ok(())
    }

    fn print_new(&mut self, out: &mut impl Write) -> Result<()> {
        self.scan();
        for ((slot, _), (path, offset)) in self.paths.iter_mut() {
            let Some(new) = read_from(path, offset) else {
                continue;
            };
            for line in String::from_utf8_lossy(&new).lines() {
                writeln!(out, "{}.{slot} | {line}", self.function)?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// The complete lines appended to `path` since `offset` (moved past them); a file that shrank
/// (rotated) is read from its start.
fn read_from(path: &Path, offset: &mut u64) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len < *offset {
        *offset = 0;
    }
    if len == *offset {
        return None;
    }
    f.seek(SeekFrom::Start(*offset)).ok()?;
    let mut buf = Vec::new();
    f.take(len - *offset).read_to_end(&mut buf).ok()?;
    let end = buf.iter().rposition(|b| *b == b'\n')? + 1;
    buf.truncate(end);
    *offset += end as u64;
    Some(buf)
}

/// `(slot, stream)` of a file named `<function>.<slot>.<stdout|stderr>`.
fn parse_name(name: &str, function: &str) -> Option<(usize, String)> {
    let rest = name.strip_prefix(function)?.strip_prefix('.')?;
    let (slot, stream) = rest.split_once('.')?;
    let slot = slot.parse().ok()?;
    matches!(stream, "stdout" | "stderr").then(|| (slot, stream.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_are_printed_and_followed() -> Result<()> {
        assert_eq!(
            parse_name("Foo.2.stderr", "Foo"),
            Some((2, "stderr".into()))
        );
        assert_eq!(parse_name("Foo.2.stderr.1", "Foo"), None);
        assert_eq!(parse_name("FooBar.0.stdout", "Foo"), None);
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("Foo.0.stderr"), "a\nb\nc\n")?;
        std::fs::write(dir.path().join("Foo.1.stdout"), "x\n")?;
        std::fs::write(dir.path().join("Bar.0.stdout"), "not mine\n")?;
        let mut files = Files::new(dir.path().to_path_buf(), "Foo");
        let mut out = Vec::new();
        files.print_tails(2, &mut out)?;
        assert_eq!(String::from_utf8(out)?, "Foo.0 | b\nFoo.0 | c\nFoo.1 | x\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("Foo.0.stderr"))?;
        f.write_all(b"d\npart")?;
        std::fs::write(dir.path().join("Foo.2.stdout"), "new slot\n")?;
        let mut out = Vec::new();
        files.print_new(&mut out)?;
        assert_eq!(String::from_utf8(out)?, "Foo.0 | d\nFoo.2 | new slot\n");
        Ok(())
    }
}
