//! `gloam new LANG NAME`: a function project in Rust, Python, Node.js, Go or C — its handler
//! (`Hello, <input>!`), its build file, a `gloam.toml` with `command`, `build` and `watch`, and a
//! test — that `gloam up` builds and serves as it is.
//!
//! Projects use the installed Gloam SDK (made by `bindings/install.sh` in the Gloam clone; see
//! [`sdk_dir`]): the Rust crate, the Python wheel, the npm tarball, the Go module, and the C
//! library with its `gloam.pc`. The templates are in `engine/templates/<lang>/`; in them
//! `__GLOAM_NAME__` is the function's name, `__GLOAM_PACKAGE__` the package's and
//! `__GLOAM_SDK__` the SDK's directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::console;

/// Environment variable: the installed Gloam SDK (`bindings/install.sh --prefix DIR`).
pub const ENV_SDK: &str = "GLOAM_SDK";

/// The languages `gloam new` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust (`gloam-core`).
    Rust,
    /// Python (the `gloam` package).
    Python,
    /// Node.js (the `gloam` npm package).
    Node,
    /// Go (`gloam.dev/gloam`).
    Go,
    /// C (`libgloam.a`, `gloam.h`, `gloam.pc`).
    C,
}

/// Arguments of `gloam new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The language.
    #[arg(value_enum)]
    pub lang: Lang,
    /// The function's name (letters, digits, `_`, `-`); also the project directory's.
    pub name: String,
    /// Where to create the project (default: ./NAME); must not exist, or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The installed Gloam SDK (default: GLOAM_SDK, else `../` of this gloam when it was
    /// installed there, else the `target/sdk` of the clone it was built from).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

type Template = (&'static str, &'static str);

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    ("src/main.rs", include_str!("../templates/rust/src/main.rs")),
    ("gloam.toml", include_str!("../templates/rust/gloam.toml")),
    (".gitignore", include_str!("../templates/rust/gitignore")),
];
const PYTHON: &[Template] = &[
    ("main.py", include_str!("../templates/python/main.py")),
    (
        "test_main.py",
        include_str!("../templates/python/test_main.py"),
    ),
    (
        "requirements.txt",
        include_str!("../templates/python/requirements.txt"),
    ),
    ("gloam.toml", include_str!("../templates/python/gloam.toml")),
    (".gitignore", include_str!("../templates/python/gitignore")),
];
const NODE: &[Template] = &[
    ("main.js", include_str!("../templates/node/main.js")),
    (
        "main.test.js",
        include_str!("../templates/node/main.test.js"),
    ),
    (
        "package.json",
        include_str!("../templates/node/package.json"),
    ),
    ("gloam.toml", include_str!("../templates/node/gloam.toml")),
    (".gitignore", include_str!("../templates/node/gitignore")),
];
const GO: &[Template] = &[
    ("main.go", include_str!("../templates/go/main.go")),
    ("main_test.go", include_str!("../templates/go/main_test.go")),
    ("go.mod", include_str!("../templates/go/go.mod")),
    ("gloam.toml", include_str!("../templates/go/gloam.toml")),
    (".gitignore", include_str!("../templates/go/gitignore")),
];
const C: &[Template] = &[
    ("main.c", include_str!("../templates/c/main.c")),
    ("greet.c", include_str!("../templates/c/greet.c")),
    ("greet.h", include_str!("../templates/c/greet.h")),
    ("test_greet.c", include_str!("../templates/c/test_greet.c")),
    ("Makefile", include_str!("../templates/c/Makefile")),
    ("gloam.toml", include_str!("../templates/c/gloam.toml")),
    (".gitignore", include_str!("../templates/c/gitignore")),
];

impl Lang {
    fn templates(self) -> &'static [Template] {
        match self {
            Lang::Rust => RUST,
            Lang::Python => PYTHON,
            Lang::Node => NODE,
            Lang::Go => GO,
            Lang::C => C,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Node => "Node.js",
            Lang::Go => "Go",
            Lang::C => "C",
        }
    }

    /// The SDK part this language needs, relative to the SDK directory.
    fn sdk_part(self) -> &'static str {
        match self {
            Lang::Rust => "rust/gloam-core/Cargo.toml",
            Lang::Python => "python",
            Lang::Node => "node/gloam-0.1.0.tgz",
            Lang::Go => "go/go.mod",
            Lang::C => "lib/pkgconfig/gloam.pc",
        }
    }

    fn test_command(self) -> &'static str {
        match self {
            Lang::Rust => "cargo test",
            Lang::Python => ".venv/bin/python -m unittest   (after gloam build)",
            Lang::Node => "npm test   (after gloam build)",
            Lang::Go => "go test ./...",
            Lang::C => "make test",
        }
    }
}

/// The installed SDK: `--sdk`, else `GLOAM_SDK`, else the directory above this `gloam` when it
/// holds one (`PREFIX/bin/gloam`), else the `target/sdk` of the clone it was built from.
pub fn sdk_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return std::path::absolute(p).context("resolving --sdk");
    }
    if let Some(p) = std::env::var_os(ENV_SDK).filter(|p| !p.is_empty()) {
        return std::path::absolute(PathBuf::from(p)).context("resolving GLOAM_SDK");
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .filter(|p| p.join("lib/pkgconfig/gloam.pc").is_file());
    if let Some(p) = beside {
        return Ok(p);
    }
    let clone = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sdk");
    Ok(clone.components().collect())
}

/// The package name for a function name: lower case, `-` for anything unusual.
fn package_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Writes the project; returns its directory and the files written.
pub fn create(lang: Lang, name: &str, dir: &Path, sdk: &Path) -> Result<Vec<&'static str>> {
    gloam_core::protocol::validate_function_name(name)
        .map_err(|reason| anyhow::anyhow!("{name:?} cannot be a function's name: {reason}"))?;
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!("{} exists and is not empty", dir.display());
        }
    }
    let package = package_name(name);
    let sdk_text = sdk.display().to_string();
    let mut written = Vec::new();
    for (path, text) in lang.templates() {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = text
            .replace("__GLOAM_NAME__", name)
            .replace("__GLOAM_PACKAGE__", &package)
            .replace("__GLOAM_SDK__", &sdk_text);
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
        written.push(*path);
    }
    Ok(written)
}

/// Runs `gloam new`.
pub fn run(args: &NewArgs) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let sdk = sdk_dir(args.sdk.as_deref())?;
    let files = create(args.lang, &args.name, &dir, &sdk)?;
    let mut lines = vec![format!(
        "created the {} function {} in {}: {}",
        args.lang.title(),
        args.name,
        dir.display(),
        files.join(" ")
    )];
    if !sdk.join(args.lang.sdk_part()).exists() {
        lines.push(format!(
            "note: the Gloam SDK at {} has no {} part yet ({} is missing): install it from the \
             Gloam clone with `bindings/install.sh --prefix {}` (or pass --sdk)",
            sdk.display(),
            args.lang.title(),
            args.lang.sdk_part(),
            sdk.display()
        ));
    }
    lines.push("next:".into());
    lines.push(format!("  cd {}", dir.display()));
    lines.push("  gloam up            # builds, starts, serves http://127.0.0.1:8080 (--watch: rebuild on save)".into());
    lines.push(format!("  gloam invoke {} --data World", args.name));
    lines.push(format!("  {}", args.lang.test_command()));
    console::say(&lines);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_makes_a_valid_project() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let sdk = Path::new("/opt/gloam-sdk");
        for lang in Lang::value_variants() {
            let dir = tmp.path().join(format!("{lang:?}"));
            let files = create(*lang, "Hello_World", &dir, sdk)?;
            assert!(files.contains(&"gloam.toml"), "{lang:?}");
            for f in files {
                let text = std::fs::read_to_string(dir.join(f))?;
                assert!(
                    !text.contains("__GLOAM_"),
                    "{lang:?} {f}: a placeholder is left"
                );
            }
            let config = crate::config::Config::load(&dir.join("gloam.toml"))?;
            let f = config
                .function("Hello_World")
                .ok_or(anyhow::anyhow!("{lang:?}: no function"))?;
            assert!(f.build.is_some(), "{lang:?}");
            assert!(f.command.is_some(), "{lang:?}");
        }
        assert_eq!(package_name("Hello_World"), "hello-world");
        assert!(create(Lang::C, "bad name", &tmp.path().join("x"), sdk).is_err());
        let e = create(Lang::C, "Again", &tmp.path().join("C"), sdk)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.ends_with("exists and is not empty"), "{e}");
        Ok(())
    }
}
