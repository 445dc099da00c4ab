//! What a sandboxed function's command needs besides itself: its language runtime.
//!
//! A function's `command` is often an interpreter installed outside the system directories a
//! sandbox shows: a Python virtualenv (`target/venv/bin/python`, a symlink to pyenv's or the
//! system's interpreter), pyenv's or nvm's installations under a home directory, a conda
//! environment. [`runtime_paths`] finds, from the program alone, the directories it needs to
//! run, so that `sandbox_paths` is only needed for what a program loads by its own choice (a
//! Node.js addon required by a relative path, data files):
//!
//! - for the program and the program its symlinks lead to: `<prefix>` when the program is
//!   `<prefix>/bin/<name>` and `<prefix>` is a language installation — a virtualenv
//!   (`pyvenv.cfg`), a Python installation (`lib/python3.X/os.py`) or a Node.js one
//!   (`bin/node` and `lib/node_modules`); not `~/.local`, say, which holds other things too;
//! - for a virtualenv, the installation it was made from (`home` in `pyvenv.cfg`) and the
//!   directories its `site-packages/*.pth` files add (editable installs: `pip install -e`,
//!   `maturin develop`).
//!
//! [`find_in_path`] resolves a bare command name (`node`) as the worker's `execvp` will.
//! Paths under the system directories (shown anyway) are left out by the caller.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// At most this many `.pth` lines are read per virtualenv (a peer cannot write them, but a
/// broken environment should not make a spawn slow).
const MAX_PTH_LINES: usize = 256;

/// A directory a program's runtime needs, and what it is (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RuntimePath {
    /// The directory, canonical.
    pub path: PathBuf,
    /// `the virtualenv`, `the Python installation`, ...
    pub what: &'static str,
}

/// The executable `name` (a bare command name) found in `path_var` (`PATH`'s value) as
/// `execvp` would find it; `None` when no directory of it holds one.
pub(super) fn find_in_path(name: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where the chain of symlinks from `path` ends, as far as it can be read (for messages: a
/// link into a directory this user cannot read ends there).
pub(super) fn last_link(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&at) {
            Ok(next) => at = at.parent().unwrap_or(Path::new("/")).join(next),
            Err(_) => break,
        }
    }
    at
}

/// The directories `program` (an absolute path) needs to run, canonical, without duplicates;
/// see the [module docs](self).
pub(super) fn runtime_paths(program: &Path) -> Vec<RuntimePath> {
    let mut found = Vec::new();
    let mut programs = vec![program.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(program) {
        programs.push(real);
    }
    for p in programs {
        let Some(prefix) = prefix_of(&p) else {
            continue;
        };
        if prefix.join("pyvenv.cfg").is_file() {
            push(&mut found, &prefix, "the virtualenv");
            if let Some(home) = venv_home(&prefix) {
                if let Some(base) = prefix_of(&home.join("python3")) {
                    push(&mut found, &base, "the Python installation");
                }
            }
            for dir in pth_dirs(&prefix) {
                push(
                    &mut found,
                    &dir,
                    "a directory a .pth file of the virtualenv adds",
                );
            }
        } else if is_python_home(&prefix) {
            push(&mut found, &prefix, "the Python installation");
        } else if is_node_home(&prefix) {
            push(&mut found, &prefix, "the Node.js installation");
        }
    }
    found
}

fn push(found: &mut Vec<RuntimePath>, path: &Path, what: &'static str) {
    let Ok(path) = std::fs::canonicalize(path) else {
        return;
    };
    if !found.iter().any(|f| f.path == path) {
        found.push(RuntimePath { path, what });
    }
}

/// `<prefix>` of `<prefix>/bin/<name>`.
fn prefix_of(program: &Path) -> Option<PathBuf> {
    let bin = program.parent()?;
    if bin.file_name() != Some(OsStr::new("bin")) {
        return None;
    }
    bin.parent().map(Path::to_path_buf)
}

/// Whether `prefix/lib` holds a Python standard library (`python3.X/os.py`, the landmark
/// CPython looks for): `~/.local`, with only `site-packages` there, is not an installation.
fn is_python_home(prefix: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with("python") && e.path().join("os.py").is_file()
    })
}

/// Whether `prefix` is a Node.js installation (`bin/node` beside `lib/node_modules`).
fn is_node_home(prefix: &Path) -> bool {
    prefix.join("bin/node").is_file() && prefix.join("lib/node_modules").is_dir()
}

/// `home` of a virtualenv's `pyvenv.cfg`: the directory of the interpreter it was made from.
fn venv_home(venv: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "home")
            .then(|| PathBuf::from(value.trim()))
            .filter(|p| p.is_absolute())
    })
}

/// The directories named by the `.pth` files of a virtualenv's `site-packages` (lines that
/// are paths; `import` lines and comments are code or nothing, and skipped).
fn pth_dirs(venv: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        for python in entries.flatten() {
            let site = python.path().join("site-packages");
            let Ok(files) = std::fs::read_dir(&site) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                if path.extension() != Some(OsStr::new("pth")) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                for line in text.lines().take(MAX_PTH_LINES) {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') || line.starts_with("import") {
                        continue;
                    }
                    let dir = site.join(line);
                    if dir.is_dir() {
                        dirs.push(dir);
                    }
                }
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mkdirs(root: &Path, dirs: &[&str]) {
        for d in dirs {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
    }

    #[test]
    fn a_virtualenv_shows_itself_its_installation_and_its_pth_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        // An installation (like pyenv's), a virtualenv made from it, an editable package.
        mkdirs(
            &root,
            &[
                "py/bin",
                "py/lib/python3.11",
                "venv/bin",
                "venv/lib/python3.11/site-packages",
                "src/pkg",
            ],
        );
        std::fs::write(root.join("py/bin/python3.11"), "").unwrap();
        std::fs::write(root.join("py/lib/python3.11/os.py"), "").unwrap();
        symlink(root.join("py/bin/python3.11"), root.join("py/bin/python3")).unwrap();
        symlink(root.join("py/bin/python3"), root.join("venv/bin/python")).unwrap();
        std::fs::write(
            root.join("venv/pyvenv.cfg"),
            format!(
                "home = {}\nversion = 3.11.7\n",
                root.join("py/bin").display()
            ),
        )
        .unwrap();
        let site = root.join("venv/lib/python3.11/site-packages");
        std::fs::write(
            site.join("pkg.pth"),
            format!(
                "# editable\n{}\nimport os; os.getcwd()\n../../../../missing\n",
                root.join("src").display()
            ),
        )
        .unwrap();

        let found = runtime_paths(&root.join("venv/bin/python"));
        let paths: Vec<_> = found.iter().map(|f| (f.path.clone(), f.what)).collect();
        assert_eq!(
            paths,
            vec![
                (root.join("venv"), "the virtualenv"),
                (root.join("py"), "the Python installation"),
                (
                    root.join("src"),
                    "a directory a .pth file of the virtualenv adds"
                ),
            ]
        );
    }

    #[test]
    fn installations_are_recognised_and_other_programs_need_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        mkdirs(
            &root,
            &[
                "node/bin",
                "node/lib/node_modules",
                "app/bin",
                "target/debug",
                "local/bin",
                "local/lib/python3.11/site-packages",
                "local/lib/node_modules",
            ],
        );
        for p in [
            "node/bin/node",
            "app/bin/tool",
            "target/debug/prog",
            "local/bin/tool",
        ] {
            std::fs::write(root.join(p), "").unwrap();
        }
        // Like ~/.local: packages installed there, but no interpreter's home.
        assert!(runtime_paths(&root.join("local/bin/tool")).is_empty());
        let node = runtime_paths(&root.join("node/bin/node"));
        assert_eq!(node.len(), 1);
        assert_eq!(node[0].path, root.join("node"));
        assert_eq!(node[0].what, "the Node.js installation");
        assert!(runtime_paths(&root.join("app/bin/tool")).is_empty());
        assert!(runtime_paths(&root.join("target/debug/prog")).is_empty());
    }

    #[test]
    fn last_link_follows_links_as_far_as_it_can() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        symlink("b", root.join("a")).unwrap();
        symlink("/nonexistent/python3", root.join("b")).unwrap();
        assert_eq!(
            last_link(&root.join("a")),
            PathBuf::from("/nonexistent/python3")
        );
        assert_eq!(last_link(&root.join("c")), root.join("c"));
    }

    #[test]
    fn bare_names_are_found_in_path_like_execvp() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        mkdirs(root, &["a", "b"]);
        std::fs::write(root.join("a/tool"), "").unwrap(); // not executable: skipped
        std::fs::write(root.join("b/tool"), "").unwrap();
        std::fs::set_permissions(root.join("b/tool"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let path = std::env::join_paths([root.join("a"), root.join("b")]).unwrap();
        assert_eq!(
            find_in_path(OsStr::new("tool"), Some(&path)),
            Some(root.join("b/tool"))
        );
        assert_eq!(find_in_path(OsStr::new("none"), Some(&path)), None);
        assert_eq!(find_in_path(OsStr::new("tool"), None), None);
    }
}
