//! The `build` commands of a deployment (`gloam build`, and `gloam up` before it starts): each
//! distinct command once per directory, in the order of the functions, as `sh -c COMMAND` in
//! the function's `dir`. Its output (stdout and stderr together) is echoed as
//! `build <label> | <line>` unless quiet; a failure names the command, the directory, the
//! exit status and the last lines of output.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::console;

/// Lines of a failed build's output repeated in its error.
const FAILURE_LINES: usize = 15;

/// One build command and the functions it builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The shell command.
    pub command: String,
    /// Where it runs.
    pub dir: PathBuf,
    /// The functions whose program it builds.
    pub functions: Vec<String>,
    /// Their ids.
    pub function_ids: Vec<u16>,
}

impl Build {
    /// `Foo` or `Foo, Bar` (or the program's name when all come from one).
    pub fn label(&self) -> String {
        self.functions.join(", ")
    }
}

/// The builds of `config`, each distinct (command, dir) once, in function order.
pub fn plan(config: &Config) -> Vec<Build> {
    let mut builds: Vec<Build> = Vec::new();
    for f in &config.functions {
        let Some(command) = &f.build else { continue };
        match builds
            .iter_mut()
            .find(|b| &b.command == command && b.dir == f.dir)
        {
            Some(b) => {
                b.functions.push(f.name.clone());
                b.function_ids.push(f.id);
            }
            None => builds.push(Build {
                command: command.clone(),
                dir: f.dir.clone(),
                functions: vec![f.name.clone()],
                function_ids: vec![f.id],
            }),
        }
    }
    builds
}

/// Runs every build of `config`; stops at the first failure. Returns how many ran.
pub fn run_all(config: &Config, quiet: bool) -> Result<usize> {
    let builds = plan(config);
    for b in &builds {
        run(b, quiet)?;
    }
    Ok(builds.len())
}

/// Runs one build, blocking until it ends.
pub fn run(build: &Build, quiet: bool) -> Result<()> {
    let label = build.label();
    console::say(&[format!(
        "building {label}: {} (in {})",
        build.command,
        build.dir.display()
    )]);
    let started = std::time::Instant::now();
    let (read, write) = nix::unistd::pipe().context("creating a pipe for the build's output")?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&build.command)
        .current_dir(&build.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            write.try_clone().context("duplicating the build's pipe")?,
        ))
        .stderr(Stdio::from(write));
    let mut child = command.spawn().with_context(|| {
        format!(
            "cannot run the build of {label} (`{}`) in {}",
            build.command,
            build.dir.display()
        )
    })?;
    // Our copies of the write end go with the command, so the read end sees end of file.
    drop(command);
    let mut last: VecDeque<String> = VecDeque::with_capacity(FAILURE_LINES);
    let reader = BufReader::new(std::fs::File::from(read));
    for line in reader.split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string();
        if !quiet {
            eprintln!("build {label} | {text}");
        }
        if last.len() == FAILURE_LINES {
            last.pop_front();
        }
        last.push_back(text);
    }
    let status = child.wait().context("waiting for the build")?;
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exit code {code}"),
            None => status.to_string(),
        };
        let output: Vec<String> = last.iter().map(|l| format!("  | {l}")).collect();
        bail!(
            "the build of {label} failed ({how}): `{}` in {}\n{}",
            build.command,
            build.dir.display(),
            output.join("\n")
        );
    }
    console::say(&[format!(
        "built {label} in {:.1} s",
        started.elapsed().as_secs_f64()
    )]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_run_once_per_command_and_failures_say_why() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("gloam.toml");
        std::fs::write(
            &path,
            r#"
            [[programs]]
            command = "./app"
            build = "echo built >> log; printf '#!/bin/sh\n' > app"
            functions = ["A", "B"]
            [functions.C]
            command = "./c"
            build = "echo compiling; echo 'error: expected ;' >&2; exit 2"
            "#,
        )?;
        let config = Config::load(&path)?;
        let builds = plan(&config);
        assert_eq!(builds.len(), 2);
        assert_eq!(builds[0].functions, ["A", "B"]);
        run(&builds[0], true)?;
        assert_eq!(std::fs::read_to_string(dir.path().join("log"))?, "built\n");
        let e = run(&builds[1], true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("the build of C failed (exit code 2): `echo compiling;"),
            "{e}"
        );
        assert!(e.contains("  | compiling\n  | error: expected ;"), "{e}");
        assert!(run_all(&config, true).is_err());
        Ok(())
    }
}
