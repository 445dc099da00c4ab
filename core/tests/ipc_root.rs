//! Creating the IPC root safely: what another local user could have put at its predictable
//! path is refused (symlinks, directories of other users, non-directories), what is ours is
//! made private, and what an older engine's FIFO transport left there is cleaned up without
//! following links.
//!
//! The session may run as root: "another user" is simulated by `chown`ing to uid 12345, which
//! only root can do; those checks are skipped (with a note) when the runner is not root.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use gloam_core::ipc_root::IpcRoot;
use gloam_core::Error;

const OTHER_UID: u32 = 12345;

/// Fails the whole test binary when a test runs longer than `limit` (a hard timeout: a test
/// that blocks in `open` must fail, not hang CI).
struct Deadline(Option<mpsc::Sender<()>>);

impl Deadline {
    fn new(what: &'static str) -> Deadline {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(60)) {
                eprintln!("test {what} did not finish within 60 s");
                std::process::exit(101);
            }
        });
        Deadline(Some(tx))
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// `chown`s `path` (not following a link) to the other uid; `false` when this runner may not.
fn give_away(path: &Path) -> bool {
    match std::os::unix::fs::lchown(path, Some(OTHER_UID), None) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("not root: cannot simulate another user's file ({e}); check skipped");
            false
        }
        Err(e) => panic!("lchown {}: {e}", path.display()),
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn refused(path: &Path) -> String {
    match IpcRoot::create(path) {
        Ok(_) => panic!("IPC root {} was accepted", path.display()),
        Err(e) => {
            assert!(matches!(e, Error::InvalidConfig(_)), "{e:?}");
            e.to_string()
        }
    }
}

#[test]
fn a_symlinked_root_is_refused_and_its_target_untouched() {
    let _d = Deadline::new("symlinked root");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("theirs");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("root");
    symlink(&target, &root).unwrap();
    let text = refused(&root);
    assert!(text.contains(&root.display().to_string()), "{text}");
    assert!(text.contains("is a symlink"), "{text}");
    assert!(text.contains(&target.display().to_string()), "{text}");
    assert!(
        text.contains("remove it or choose another `ipc_root`"),
        "{text}"
    );
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    assert_eq!(mode(&target), 0o755);
}

#[test]
fn a_root_of_another_uid_is_refused_and_left_alone() {
    let _d = Deadline::new("root of another uid");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    if !give_away(&root) {
        return;
    }
    let text = refused(&root);
    assert!(text.contains(&root.display().to_string()), "{text}");
    assert!(
        text.contains(&format!("belongs to uid {OTHER_UID}")),
        "{text}"
    );
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    assert_eq!(mode(&root), 0o777);
}

#[test]
fn a_root_that_is_a_file_or_a_fifo_is_refused_at_once() {
    let _d = Deadline::new("root not a directory");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(refused(&file).contains("is a regular file, not a directory"));
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(refused(&fifo).contains("is a named pipe (FIFO), not a directory"));
}

/// Ours but open to everyone (e.g. made by hand with `mkdir -m 777`): narrowed to 0700 rather
/// than refused. It is our directory, so nobody else can change its mode back, and from the
/// chmod on nobody else can add entries; what others may have put there before is checked as
/// it is used (`engine.lock` must be ours and a regular file, the socket is made anew).
#[test]
fn a_root_of_ours_open_to_everyone_is_narrowed_to_0700() {
    let _d = Deadline::new("0777 root");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let ipc = IpcRoot::create(&root).unwrap();
    assert_eq!(mode(&root), 0o700);
    drop(ipc);

    // What another user planted while it was open is refused, naming it.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let lock = root.join("engine.lock");
    fs::write(&lock, b"").unwrap();
    if !give_away(&lock) {
        return;
    }
    let text = refused(&root);
    assert!(text.contains(&lock.display().to_string()), "{text}");
    assert!(text.contains(&format!("of uid {OTHER_UID}")), "{text}");
}

#[test]
fn planted_lock_files_are_refused() {
    let _d = Deadline::new("planted entries");
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let root = dir.path().join("root-lock");
    fs::create_dir(&root).unwrap();
    symlink(elsewhere.join("victim"), root.join("engine.lock")).unwrap();
    assert!(refused(&root).contains("engine.lock is a symlink"));
    assert!(!elsewhere.join("victim").exists());
    fs::remove_file(root.join("engine.lock")).unwrap();
    nix::unistd::mkfifo(&root.join("engine.lock"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(refused(&root).contains("is a named pipe (FIFO)"));
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn missing_components_are_created_private() {
    let _d = Deadline::new("missing components");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/root");
    let ipc = IpcRoot::create(&root).unwrap();
    for d in ["a", "a/b", "a/b/root"] {
        assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
    }
    drop(ipc);
    // `..` resolves like the kernel does, from the directory actually reached.
    let _again = IpcRoot::create(dir.path().join("a/b/../b/root")).unwrap();
}

#[test]
fn ancestors_others_could_rename_the_root_under_are_refused() {
    let _d = Deadline::new("unsafe ancestors");
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let text = refused(&open.join("root"));
    assert!(text.contains(&open.display().to_string()), "{text}");
    assert!(text.contains("writable by other users (mode 777"), "{text}");
    assert!(text.contains("without the sticky bit"), "{text}");
    assert!(!open.join("root").exists());
    // Sticky, like /dev/shm and /tmp: others cannot rename what is ours.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    drop(IpcRoot::create(open.join("root")).unwrap());

    // A symlink of ours on the way is followed.
    let link = dir.path().join("link");
    symlink(&open, &link).unwrap();
    drop(IpcRoot::create(link.join("root")).unwrap());

    // Group-writable: fine in our own primary group (umask 002 systems), not in another.
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o770)).unwrap();
    drop(IpcRoot::create(shared.join("root")).unwrap());

    let theirs = dir.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    if !give_away(&theirs) || !give_away(&link) {
        return;
    }
    std::os::unix::fs::lchown(&shared, None, Some(OTHER_UID)).unwrap();
    let text = refused(&shared.join("root"));
    assert!(
        text.contains(&format!("(mode 770, gid {OTHER_UID})")),
        "{text}"
    );
    let text = refused(&theirs.join("root"));
    assert!(
        text.contains(&format!("belongs to uid {OTHER_UID}")),
        "{text}"
    );
    let text = refused(&link.join("root"));
    assert!(
        text.contains(&format!("symlink owned by uid {OTHER_UID}")),
        "{text}"
    );
}

/// The FIFO transport names nothing on disk any more: a `fifo/` an older engine left in the
/// root goes at start with the files Gloam made there, a link named `fifo` is not followed,
/// and a `fifo/` holding anything else is left in place.
#[test]
fn an_older_engines_fifo_directory_is_removed_but_nothing_else() {
    let _d = Deadline::new("old fifo/");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("fifo")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo/3.in"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    nix::unistd::mkfifo(&root.join("fifo/3.out"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    fs::write(root.join("fifo/5.ring"), b"old ring").unwrap();
    let ipc = IpcRoot::create(&root).unwrap();
    assert!(!root.join("fifo").exists());
    let names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n == "engine.lock"), "{names:?}");
    drop(ipc);

    // A file Gloam did not make keeps the directory (and itself).
    fs::create_dir(root.join("fifo")).unwrap();
    fs::write(root.join("fifo/notes.txt"), b"mine").unwrap();
    fs::write(root.join("fifo/7.in"), b"").unwrap();
    drop(IpcRoot::create(&root).unwrap());
    assert_eq!(fs::read(root.join("fifo/notes.txt")).unwrap(), b"mine");
    assert!(!root.join("fifo/7.in").exists());
    fs::remove_dir_all(root.join("fifo")).unwrap();

    // A symlink named `fifo` is not followed: its target keeps its files.
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("1.in"), b"keep").unwrap();
    symlink(&elsewhere, root.join("fifo")).unwrap();
    drop(IpcRoot::create(&root).unwrap());
    assert_eq!(fs::read(elsewhere.join("1.in")).unwrap(), b"keep");
}
