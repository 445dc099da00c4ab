//! `[[programs]]`: one program serving several functions without repeating its command.
//!
//! ```toml
//! [[programs]]
//! name = "hello"                      # optional, for messages
//! command = "target/debug/hello"      # relative to `dir` (default: this file's directory)
//! build = "cargo build"               # optional: run by `gloam up` / `gloam build`
//! functions = ["Foo", "Bar", "Nop"]   # each served by the program's handler of that name
//!
//! [functions.Foo]                     # optional: the function's other keys
//! min_workers = 2
//! ```
//!
//! Each listed function gets the program's `command`, `args`, `dir`, `build`, `watch` and
//! `env` (its own `env` adds to it); its `[functions.<Name>]` table, if any, may set every other
//! key (`handler` serves it with a handler of another name) but not those.

use std::collections::BTreeMap;
use std::path::Path;

use super::model::ConfigError;
use super::read::{toml_key, RawFunction, RawProgram};
use super::resolve::no_nul;

fn program_key(i: usize, key: &str) -> String {
    format!("programs[{i}].{key}")
}

/// Moves every program's settings into the functions it lists (creating their tables).
pub(super) fn expand_programs(
    programs: Vec<RawProgram>,
    functions: &mut BTreeMap<String, RawFunction>,
    source: &Path,
) -> Result<(), ConfigError> {
    let mut served_by: BTreeMap<String, String> = BTreeMap::new();
    for (i, p) in programs.into_iter().enumerate() {
        let label = p.name.clone().unwrap_or_else(|| format!("programs[{i}]"));
        let command = match p.command {
            None => {
                return Err(ConfigError::at(
                    source,
                    program_key(i, "command"),
                    "is missing",
                ))
            }
            Some(c) if c.trim().is_empty() => {
                return Err(ConfigError::at(
                    source,
                    program_key(i, "command"),
                    "is empty",
                ))
            }
            Some(c) => c,
        };
        no_nul(source, || program_key(i, "command"), &command)?;
        if p.functions.is_empty() {
            return Err(ConfigError::at(
                source,
                program_key(i, "functions"),
                "lists no function: name the functions this program serves",
            ));
        }
        for name in &p.functions {
            if let Some(other) = served_by.insert(name.clone(), label.clone()) {
                return Err(ConfigError::at(
                    source,
                    program_key(i, "functions"),
                    format!("function {name} is already served by {other}"),
                ));
            }
            let f = functions.entry(name.clone()).or_default();
            let own = |key: &str| {
                ConfigError::at(
                    source,
                    format!("functions.{}.{key}", toml_key(name)),
                    format!("{name} is served by {label}, which sets its {key}; drop this key"),
                )
            };
            if f.command.is_some() {
                return Err(own("command"));
            }
            if !f.args.is_empty() {
                return Err(own("args"));
            }
            if f.dir.is_some() {
                return Err(own("dir"));
            }
            if f.build.is_some() {
                return Err(own("build"));
            }
            if f.watch.is_some() {
                return Err(own("watch"));
            }
            f.command = Some(command.clone());
            f.args = p.args.clone();
            f.dir = p.dir.clone();
            f.build = p.build.clone();
            f.watch = p.watch.clone();
            for (k, v) in &p.env {
                f.env.entry(k.clone()).or_insert_with(|| v.clone());
            }
            f.program = Some(label.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::testing::{error, parse};

    #[test]
    fn a_program_serves_its_functions() -> anyhow::Result<()> {
        let config = parse(
            r#"
            [[programs]]
            name = "hello"
            command = "bin/hello"
            args = ["-v"]
            dir = "app"
            build = "make"
            env = { A = "1", B = "2" }
            functions = ["Foo", "Bar"]

            [functions.Bar]
            min_workers = 3
            handler = "Echo"
            env = { B = "mine" }
            "#,
        )?;
        let foo = config.function("Foo").ok_or(anyhow::anyhow!("Foo"))?;
        assert_eq!(
            foo.command.as_deref(),
            Some(std::path::Path::new("/etc/gloam/app/bin/hello"))
        );
        assert_eq!(foo.args, ["-v"]);
        assert_eq!(foo.build.as_deref(), Some("make"));
        assert_eq!(foo.watch, [PathBuf::from("/etc/gloam/app")]);
        assert_eq!(foo.program.as_deref(), Some("hello"));
        let bar = config.function("Bar").ok_or(anyhow::anyhow!("Bar"))?;
        assert_eq!(bar.min_workers, 3);
        assert_eq!(bar.env.get("B").map(String::as_str), Some("mine"));
        assert_eq!(bar.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(
            bar.env.get("GLOAM_HANDLER").map(String::as_str),
            Some("Echo")
        );
        Ok(())
    }

    #[test]
    fn program_errors_name_the_key() {
        let cases = [
            (
                "[[programs]]\nfunctions = [\"A\"]\n",
                "/etc/gloam/gloam.toml: programs[0].command: is missing",
            ),
            (
                "[[programs]]\ncommand = \"x\"\n",
                "/etc/gloam/gloam.toml: programs[0].functions: lists no function",
            ),
            (
                "[[programs]]\ncommand = \"x\"\nfunctions = [\"A\"]\n[functions.A]\ncommand = \"y\"\n",
                "/etc/gloam/gloam.toml: functions.A.command: A is served by programs[0], which sets its command",
            ),
            (
                "[[programs]]\ncommand = \"x\"\nfunctions = [\"A\"]\n[[programs]]\nname = \"p2\"\ncommand = \"y\"\nfunctions = [\"A\"]\n",
                "/etc/gloam/gloam.toml: programs[1].functions: function A is already served by programs[0]",
            ),
            (
                "[functions.A]\nhandler = \"H\"\nenv = { GLOAM_HANDLER = \"H\" }\n",
                "/etc/gloam/gloam.toml: functions.A.handler: env.GLOAM_HANDLER says the same",
            ),
            (
                "[functions.A]\nbuild = \" \"\n",
                "/etc/gloam/gloam.toml: functions.A.build: is empty",
            ),
            (
                "[functions.A]\nenv = { GLOAM_DEBUG = \"1\" }\n",
                "/etc/gloam/gloam.toml: functions.A.env.GLOAM_DEBUG: is set by the launcher",
            ),
        ];
        for (text, expected) in cases {
            let e = error(text);
            assert!(
                e.starts_with(expected),
                "for {text:?}:\n got {e}\nwant {expected}"
            );
        }
    }
}
