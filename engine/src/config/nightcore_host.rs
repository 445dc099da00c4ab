//! Which Nightcore v1 function library (`.so`) serves each function of a `func_config.json`,
//! and the host that loads it (`gloam-cworker`, Gloam's `func_worker_v1`).
//!
//! Nightcore's launcher was given the library per function (`--fprocess "func_worker_v1
//! libfoo.so"`); `func_config.json` does not name it. `gloam up --nightcore` takes it from
//! `--so NAME=PATH` (repeatable), else from the convention `lib<name in lower case>.so` in the
//! file's directory (Nightcore's `examples/c` builds `libfoo.so` for `Foo`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::model::Config;

/// The name of Gloam's host of v1 function libraries.
pub const CWORKER: &str = "gloam-cworker";

/// `gloam-cworker` beside the running `gloam`, else in `PATH`.
pub fn cworker_path() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(CWORKER)))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(CWORKER))
            .find(|p| p.is_file())
    })
}

/// Gives each function of a Nightcore `config` its library (see the [module docs](self)):
/// `gloam-cworker LIB` becomes its command. `libraries` are `NAME=PATH` (relative to the
/// current directory). Returns what was decided, one line per function.
pub fn serve_nightcore_libraries(
    config: &mut Config,
    libraries: &[String],
    host: Option<&Path>,
) -> Result<Vec<String>> {
    let mut chosen: Vec<(String, PathBuf)> = Vec::new();
    for lib in libraries {
        let Some((name, path)) = lib.split_once('=') else {
            bail!("--so {lib:?}: expected NAME=PATH.so, e.g. --so Foo=./libfoo.so");
        };
        if config.function(name).is_none() {
            let names: Vec<&str> = config.functions.iter().map(|f| f.name.as_str()).collect();
            bail!(
                "--so {lib}: {} has no function {name:?} (it has: {})",
                config.source.display(),
                names.join(", ")
            );
        }
        let path = std::path::absolute(path)?;
        if !path.is_file() {
            bail!("--so {lib}: {} does not exist", path.display());
        }
        chosen.push((name.to_string(), path));
    }
    let dir = config
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dir = std::path::absolute(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &dir
    })?;
    let mut notes = Vec::new();
    for f in &mut config.functions {
        let lib = match chosen.iter().find(|(n, _)| *n == f.name) {
            Some((_, p)) => Some(p.clone()),
            None => {
                Some(dir.join(format!("lib{}.so", f.name.to_lowercase()))).filter(|p| p.is_file())
            }
        };
        let Some(lib) = lib else {
            notes.push(format!(
                "{}: no function library (give one with --so {}=PATH.so, or put lib{}.so beside {}); start its workers yourself",
                f.name,
                f.name,
                f.name.to_lowercase(),
                config.source.display()
            ));
            continue;
        };
        let Some(host) = host else {
            bail!(
                "{CWORKER} (the host of Nightcore v1 libraries) is not beside gloam nor in PATH: \
                 build it with `cargo build -p gloam-c`"
            );
        };
        notes.push(format!(
            "{} is served by {} {}",
            f.name,
            host.display(),
            lib.display()
        ));
        f.command = Some(host.to_path_buf());
        f.args = vec![lib.display().to_string()];
        f.dir = lib.parent().map_or_else(|| dir.clone(), Path::to_path_buf);
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_by_flag_and_by_convention() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("func_config.json");
        std::fs::write(
            &path,
            r#"[{"funcName": "Foo", "funcId": 1}, {"funcName": "Bar", "funcId": 2},
                {"funcName": "Baz", "funcId": 3}]"#,
        )?;
        std::fs::write(dir.path().join("libfoo.so"), b"")?;
        std::fs::write(dir.path().join("other.so"), b"")?;
        let (mut config, _) = Config::from_nightcore_json(&path)?;
        let host = Path::new("/opt/gloam/gloam-cworker");
        let bar = format!("Bar={}", dir.path().join("other.so").display());
        let notes = serve_nightcore_libraries(&mut config, &[bar], Some(host))?;
        let foo = config.function("Foo").ok_or(anyhow::anyhow!("Foo"))?;
        assert_eq!(foo.command.as_deref(), Some(host));
        assert_eq!(
            foo.args,
            [dir.path().join("libfoo.so").display().to_string()]
        );
        let bar = config.function("Bar").ok_or(anyhow::anyhow!("Bar"))?;
        assert!(bar.args[0].ends_with("other.so"));
        let baz = config.function("Baz").ok_or(anyhow::anyhow!("Baz"))?;
        assert_eq!(baz.command, None);
        assert!(notes[2].starts_with("Baz: no function library (give one with --so Baz=PATH.so"));
        let e = serve_nightcore_libraries(&mut config, &["Nope=x.so".into()], Some(host))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("has no function \"Nope\""), "{e}");
        Ok(())
    }
}
