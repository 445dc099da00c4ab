//! `gloam validate CONFIG`: reads a deployment file as `gloam up` would (every key checked,
//! each error naming the file and the key), then checks what `gloam up` would only find out
//! when starting: that each command exists and can be run, each directory exists. Prints what
//! it found; fails when something would keep a function from starting.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::config::{Config, FunctionConfig};

/// Runs `gloam validate`.
pub fn run(
    path: &Path,
    nightcore: bool,
    libraries: &[String],
    isolation: Option<crate::config::Isolation>,
) -> Result<()> {
    let mut config = if nightcore {
        let (mut config, warnings) = Config::from_nightcore_json(path)?;
        for w in warnings {
            println!("note: {w}");
        }
        let host = crate::config::cworker_path();
        for note in
            crate::config::serve_nightcore_libraries(&mut config, libraries, host.as_deref())?
        {
            println!("note: {note}");
        }
        config
    } else {
        Config::load(path)?
    };
    if let Some(mode) = isolation {
        config
            .override_isolation(mode, "--isolation")
            .map_err(anyhow::Error::msg)?;
        println!(
            "--isolation {}: checked as every function would run",
            mode.as_str()
        );
    }
    let (lines, problems) = report(&config);
    for l in &lines {
        println!("{l}");
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    if !problems.is_empty() {
        bail!(
            "{}: {} problem(s) would keep functions from starting",
            path.display(),
            problems.len()
        );
    }
    println!("{}: ok", path.display());
    Ok(())
}

/// What was found (one line per function) and the problems.
pub fn report(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut lines = vec![format!(
        "{}: {} function(s); gateway {}; logs in {}",
        config.source.display(),
        config.functions.len(),
        config.engine.listen,
        config.engine.log_dir.display()
    )];
    let mut problems = Vec::new();
    for f in &config.functions {
        lines.push(describe(f));
        problems.extend(check(f));
    }
    // What `gloam up` would refuse: a sandbox or limit this machine cannot enforce.
    let plan = crate::launcher::Plan::find(config);
    if !plan.needed.is_empty() {
        lines.push(match &plan.place {
            Ok(place) => format!("  limits enforced by {}", place.describe()),
            Err(why) => format!("  limits enforced by rlimits: no usable cgroup ({why})"),
        });
    }
    if let Err(e) = crate::launcher::check_sandbox(config, &plan)
        .and_then(|()| crate::launcher::check_limits(config, &plan))
    {
        problems.push(e);
    }
    (lines, problems)
}

fn describe(f: &FunctionConfig) -> String {
    let mut line = format!("  {} (id {}): ", f.name, f.id);
    match &f.command {
        Some(c) => {
            line.push_str(&c.display().to_string());
            if !f.args.is_empty() {
                line.push(' ');
                line.push_str(&f.args.join(" "));
            }
        }
        None => line.push_str("no command (start its workers yourself)"),
    }
    if let Some(h) = f.env.get(gloam_core::worker::ENV_HANDLER) {
        line.push_str(&format!(", handler {h}"));
    }
    if let Some(p) = &f.program {
        line.push_str(&format!(", from program {p}"));
    }
    if let Some(b) = &f.build {
        line.push_str(&format!(", build `{b}`"));
    }
    line.push_str(&format!(
        ", {}..{} workers, timeout {} ms",
        f.min_workers,
        f.max_workers,
        f.timeout.as_millis()
    ));
    if f.debug {
        line.push_str(", debug");
    }
    let iso = &f.isolation;
    if iso.mode != crate::config::Isolation::Process || iso.limits.any() {
        line.push_str(&format!(
            ", isolation {}, limits {}",
            iso.mode.as_str(),
            iso.limits.describe()
        ));
    }
    line
}

fn check(f: &FunctionConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if !f.dir.is_dir() {
        problems.push(format!(
            "{}: directory {} does not exist",
            f.name,
            f.dir.display()
        ));
        return problems;
    }
    let Some(command) = &f.command else {
        return problems;
    };
    let found = if command.components().count() == 1 {
        find_in_path(command)
    } else {
        Some(command.clone())
    };
    let built_later = f.build.is_some();
    match found {
        None => problems.push(format!(
            "{}: command {} is not in PATH",
            f.name,
            command.display()
        )),
        Some(p) if !p.exists() && built_later => {
            // `gloam up` builds it first; say so without failing.
        }
        Some(p) if !p.exists() => problems.push(format!(
            "{}: command {} does not exist",
            f.name,
            p.display()
        )),
        Some(p) if !is_executable(&p) => problems.push(format!(
            "{}: command {} is not an executable file",
            f.name,
            p.display()
        )),
        Some(_) => {}
    }
    problems
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_in_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_commands_and_directories_are_problems() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("gloam.toml");
        std::fs::write(
            &path,
            r#"
            [functions.Ok]
            command = "sh"
            [functions.Missing]
            command = "./nope"
            [functions.Later]
            command = "./built"
            build = "touch built"
            [functions.NoDir]
            command = "./x"
            dir = "nowhere"
            [functions.NotInPath]
            command = "no-such-program-anywhere"
            "#,
        )?;
        let config = Config::load(&path)?;
        let (lines, problems) = report(&config);
        assert_eq!(lines.len(), 6);
        assert!(lines[0].contains("5 function(s)"), "{}", lines[0]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("Missing: command ") && p.ends_with("/nope does not exist")));
        assert!(problems.iter().any(|p| p.starts_with("NoDir: directory ")));
        assert!(problems
            .iter()
            .any(|p| p == "NotInPath: command no-such-program-anywhere is not in PATH"));
        Ok(())
    }
}
