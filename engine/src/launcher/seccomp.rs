//! The default seccomp profile of a sandbox: a classic-BPF program that `bwrap` loads
//! (`--seccomp FD`) just before it runs the worker.
//!
//! A deny list, so that every language runtime keeps working: the calls that reach kernel
//! facilities a function has no business with and that are the usual ways out of a container
//! (kernel keyrings, `ptrace` and cross-process memory, `bpf`, `perf_event_open`,
//! `userfaultfd`, `io_uring`, modules, `kexec`, mounts and namespaces, the clock, swap,
//! reboot, handles to files by number) fail with `EPERM`, and so does `ioctl(TIOCSTI)` (typing
//! into a terminal). A call from another architecture's ABI (i386, x32) kills the process: the
//! numbers below would not mean the same there.

/// `struct sock_filter`: one instruction, as the kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

// Classic BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
/// BPF_LD | BPF_W | BPF_ABS.
const LD_W_ABS: u16 = 0x20;
/// BPF_JMP | BPF_JEQ | BPF_K.
const JEQ_K: u16 = 0x15;
/// BPF_JMP | BPF_JGE | BPF_K.
const JGE_K: u16 = 0x35;
/// BPF_RET | BPF_K.
const RET_K: u16 = 0x06;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// Offsets in `struct seccomp_data`: nr, arch, instruction pointer, args[6] (64-bit each; the
// low half of an argument comes first on these little-endian machines).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG1_LOW: u32 = 24;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
/// x32 system calls have this bit set in their number, under the x86_64 architecture value.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The system calls that fail with `EPERM`.
fn denied() -> Vec<libc::c_long> {
    let mut calls = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_fanotify_init,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_syslog,
        libc::SYS_vhangup,
        libc::SYS_lookup_dcookie,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]);
    calls
}

fn load(offset: u32) -> Instruction {
    Instruction {
        code: LD_W_ABS,
        jt: 0,
        jf: 0,
        k: offset,
    }
}

fn ret(k: u32) -> Instruction {
    Instruction {
        code: RET_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The program, as the bytes `bwrap --seccomp` reads.
pub(super) fn program() -> Vec<u8> {
    let denied = denied();
    let deny = ret(RET_ERRNO | libc::EPERM as u32);
    let mut p = vec![
        load(OFFSET_ARCH),
        Instruction {
            code: JEQ_K,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH,
        },
        ret(RET_KILL_PROCESS),
        load(OFFSET_NR),
        Instruction {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        ret(RET_KILL_PROCESS),
    ];
    // Each denied number jumps to the `deny` at the end: past the rest of the list and the
    // four instructions of the ioctl check.
    let n = denied.len();
    for (i, nr) in denied.iter().enumerate() {
        let to_deny = u8::try_from(n - 1 - i + 4).unwrap_or(u8::MAX);
        p.push(Instruction {
            code: JEQ_K,
            jt: to_deny,
            jf: 0,
            k: u32::try_from(*nr).unwrap_or(u32::MAX),
        });
    }
    // ioctl: only TIOCSTI is refused.
    p.extend([
        Instruction {
            code: JEQ_K,
            jt: 0,
            jf: 2,
            k: u32::try_from(libc::SYS_ioctl).unwrap_or(u32::MAX),
        },
        load(OFFSET_ARG1_LOW),
        Instruction {
            code: JEQ_K,
            jt: 1,
            jf: 0,
            k: u32::try_from(libc::TIOCSTI).unwrap_or(u32::MAX),
        },
        ret(RET_ALLOW),
        deny,
    ]);
    let mut bytes = Vec::with_capacity(p.len() * 8);
    for i in p {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program over one `seccomp_data` the way the kernel does (only the opcodes it
    /// uses), returning the action.
    fn run(bytes: &[u8], nr: u32, arch: u32, arg1: u32) -> u32 {
        let p: Vec<Instruction> = bytes
            .chunks(8)
            .map(|c| Instruction {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    acc = match i.k {
                        OFFSET_NR => nr,
                        OFFSET_ARCH => arch,
                        OFFSET_ARG1_LOW => arg1,
                        other => panic!("load of offset {other}"),
                    }
                }
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    fn nr(n: libc::c_long) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    #[test]
    fn denies_the_list_and_allows_the_rest() {
        let p = program();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        for call in denied() {
            assert_eq!(run(&p, nr(call), AUDIT_ARCH, 0), eperm, "syscall {call}");
        }
        for call in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_mmap,
            libc::SYS_clone,
        ] {
            assert_eq!(
                run(&p, nr(call), AUDIT_ARCH, 0),
                RET_ALLOW,
                "syscall {call}"
            );
        }
        let ioctl = nr(libc::SYS_ioctl);
        assert_eq!(
            run(&p, ioctl, AUDIT_ARCH, nr(libc::TIOCSTI as libc::c_long)),
            eperm
        );
        assert_eq!(
            run(&p, ioctl, AUDIT_ARCH, nr(libc::FIONREAD as libc::c_long)),
            RET_ALLOW
        );
        assert_eq!(
            run(&p, nr(libc::SYS_read), 0x4000_0003, 0),
            RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, nr(libc::SYS_read) | X32_SYSCALL_BIT, AUDIT_ARCH, 0),
            RET_KILL_PROCESS
        );
    }
}
