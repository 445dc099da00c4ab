//! What the profile does: the bytes `bwrap` would read are installed in a forked child the way
//! bwrap installs them (`prctl(PR_SET_SECCOMP)`), the child makes system calls and reports each
//! result through a pipe, and the parent reads how it ended. Every probe is harmless even
//! without the profile (invalid descriptors, flags or addresses; `vhangup` after `setsid`).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use super::*;

/// One thing a child does.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// `syscall(nr, args...)`.
    Call(libc::c_long, [libc::c_long; 6]),
    /// `getpid` through the i386 ABI (`int 0x80`, number 20).
    #[cfg(target_arch = "x86_64")]
    I386Getpid,
}

/// How a child ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Exited(i32),
    Killed(i32),
}

const NONE: [libc::c_long; 6] = [-1; 6];

fn call(nr: libc::c_long, args: &[libc::c_long]) -> Probe {
    let mut a = NONE;
    a[..args.len()].copy_from_slice(args);
    Probe::Call(nr, a)
}

/// Runs `probes` in a forked child, under the profile when `installed`; returns each probe's
/// result (0 for success, else its errno) and how the child ended.
fn in_child(installed: bool, probes: &[Probe]) -> (Vec<i32>, End) {
    let program = program().expect("the profile compiles on this architecture");
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len() / 8).expect("program length"),
        // The kernel copies the program; it is never written through this pointer.
        filter: program.as_ptr().cast_mut().cast(),
    };
    let (read, write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let out = write.as_raw_fd();
    // SAFETY: the child makes only async-signal-safe system calls (setsid, setrlimit, prctl,
    // the probes, write, _exit) on memory prepared before the fork; it allocates nothing,
    // takes no lock and never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::setsid();
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            if installed {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(101);
                }
                let mode = libc::c_ulong::from(libc::SECCOMP_MODE_FILTER);
                if libc::prctl(libc::PR_SET_SECCOMP, mode, &prog as *const libc::sock_fprog) != 0 {
                    libc::_exit(102);
                }
            }
            for probe in probes {
                let errno: i32 = match *probe {
                    Probe::Call(nr, a) => {
                        if libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) < 0 {
                            *libc::__errno_location()
                        } else {
                            0
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    Probe::I386Getpid => {
                        let mut eax: i32 = 20;
                        // The kernel clobbers r8-r11 on return from `int 0x80`.
                        std::arch::asm!(
                            "int 0x80",
                            inout("eax") eax,
                            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                            options(nostack),
                        );
                        // A pid, or minus an errno.
                        -eax.min(0)
                    }
                };
                libc::write(out, (&errno as *const i32).cast(), 4);
            }
            libc::_exit(0);
        }
    }
    drop(write);
    let mut bytes = Vec::new();
    File::from(read)
        .read_to_end(&mut bytes)
        .expect("read results");
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let end = if libc::WIFSIGNALED(status) {
        End::Killed(libc::WTERMSIG(status))
    } else {
        End::Exited(libc::WEXITSTATUS(status))
    };
    let results = bytes
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (results, end)
}

fn name(probe: &Probe) -> String {
    format!("{probe:?}")
}

#[test]
fn every_denied_call_fails_with_eperm() {
    let mut probes: Vec<Probe> = denied().into_iter().map(|nr| call(nr, &[])).collect();
    let tiocsti = libc::c_long::try_from(libc::TIOCSTI).expect("TIOCSTI");
    // On a descriptor that is not open: without the profile, EBADF.
    probes.push(call(libc::SYS_ioctl, &[-1, tiocsti, 0]));
    // The kernel reads the command as an `unsigned int`: high bits do not get past.
    probes.push(call(libc::SYS_ioctl, &[-1, tiocsti | (1 << 32), 0]));
    let (results, end) = in_child(true, &probes);
    assert_eq!(end, End::Exited(0));
    assert_eq!(results.len(), probes.len());
    for (probe, errno) in probes.iter().zip(results) {
        assert_eq!(errno, libc::EPERM, "{}", name(probe));
    }
}

#[test]
fn without_the_profile_the_probes_reach_the_kernel() {
    let tiocsti = libc::c_long::try_from(libc::TIOCSTI).expect("TIOCSTI");
    let probes = [
        call(libc::SYS_unshare, &[-1]),
        call(libc::SYS_setns, &[-1, 0]),
        call(libc::SYS_ioctl, &[-1, tiocsti, 0]),
    ];
    let (results, end) = in_child(false, &probes);
    assert_eq!(end, End::Exited(0));
    assert_eq!(results, [libc::EINVAL, libc::EBADF, libc::EBADF]);
}

#[test]
fn other_calls_reach_the_kernel() {
    let (read, _write) = nix::unistd::pipe().expect("pipe");
    let mut queued: libc::c_int = -1;
    let queued_at = &mut queued as *mut libc::c_int as libc::c_long;
    let fionread = libc::c_long::try_from(libc::FIONREAD).expect("FIONREAD");
    let probes = [
        call(libc::SYS_getpid, &[]),
        call(libc::SYS_close, &[-1]),
        call(libc::SYS_ioctl, &[-1, fionread, 0]),
        call(
            libc::SYS_ioctl,
            &[read.as_raw_fd().into(), fionread, queued_at],
        ),
        // The denied calls' neighbours in the numbering.
        call(libc::SYS_getppid, &[]),
        call(libc::SYS_sched_yield, &[]),
    ];
    let (results, end) = in_child(true, &probes);
    assert_eq!(end, End::Exited(0));
    assert_eq!(results, [0, libc::EBADF, libc::EBADF, 0, 0, 0]);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_calls_kill_the_process() {
    const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
    let probes = [call(libc::SYS_getpid | X32_SYSCALL_BIT, &[])];
    // Without the profile the kernel answers (ENOSYS where x32 is not built in).
    let (results, end) = in_child(false, &probes);
    assert_eq!((results.len(), end), (1, End::Exited(0)));
    let (results, end) = in_child(true, &probes);
    assert_eq!((results.len(), end), (0, End::Killed(libc::SIGSYS)));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn i386_calls_kill_the_process() {
    let (results, end) = in_child(false, &[Probe::I386Getpid]);
    if end != End::Exited(0) {
        // Kernels without IA32 emulation fault on `int 0x80` before seccomp sees it.
        eprintln!("no i386 ABI on this kernel ({end:?}): nothing to check");
        return;
    }
    assert_eq!(results, [0]);
    let (results, end) = in_child(true, &[Probe::I386Getpid]);
    assert_eq!((results.len(), end), (0, End::Killed(libc::SIGSYS)));
}
