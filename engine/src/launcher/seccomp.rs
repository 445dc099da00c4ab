//! The default seccomp profile of a sandbox: a classic-BPF program, compiled by the
//! `seccompiler` crate (rust-vmm, Firecracker's), that `bwrap` loads (`--seccomp FD`) just
//! before it runs the worker.
//!
//! A deny list, so that every language runtime keeps working: the calls that reach kernel
//! facilities a function has no business with and that are the usual ways out of a container
//! (kernel keyrings, `ptrace` and cross-process memory, `bpf`, `perf_event_open`,
//! `userfaultfd`, `io_uring`, modules, `kexec`, mounts and namespaces, the clock, swap,
//! reboot, handles to files by number) fail with `EPERM`, and so does `ioctl(TIOCSTI)` (typing
//! into a terminal). A call from another architecture's ABI (i386, x32) kills the process: the
//! numbers below would not mean the same there.
//!
//! Written for x86_64 and aarch64 (little-endian); elsewhere [`program`] refuses, and so does
//! `gloam up` for sandboxed functions.

use std::io;

#[cfg(all(
    target_endian = "little",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// `ioctl(TIOCSTI)`'s command (`libc::Ioctl` is `c_ulong` on glibc, `c_int` on musl).
#[cfg(all(
    target_endian = "little",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[allow(clippy::unnecessary_cast)]
const TIOCSTI: u64 = libc::TIOCSTI as u64;

#[cfg(all(target_endian = "little", target_arch = "x86_64"))]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(all(target_endian = "little", target_arch = "aarch64"))]
const ARCH: TargetArch = TargetArch::aarch64;

/// The system calls that fail with `EPERM`.
#[cfg(all(
    target_endian = "little",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
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

/// The program, as the bytes `bwrap --seccomp` reads (`struct sock_filter`s in native byte
/// order). Fails on an architecture the profile is not written for (or, which the tests
/// would show, if seccompiler rejected the profile).
pub(super) fn program() -> io::Result<Vec<u8>> {
    let filter = filter()?;
    let mut bytes = Vec::with_capacity(filter.len() * 8);
    for i in filter {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    Ok(bytes)
}

#[cfg(all(
    target_endian = "little",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn filter() -> io::Result<BpfProgram> {
    let invalid = |e: seccompiler::BackendError| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the sandbox's seccomp profile does not compile: {e}"),
        )
    };
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
        denied().into_iter().map(|nr| (nr, Vec::new())).collect();
    // The command is an `unsigned int` to the kernel: only the low half of the argument counts.
    let tiocsti = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, TIOCSTI)
        .map_err(invalid)?;
    rules.insert(
        libc::SYS_ioctl,
        vec![SeccompRule::new(vec![tiocsti]).map_err(invalid)?],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM.unsigned_abs()),
        ARCH,
    )
    .map_err(invalid)?;
    let compiled = BpfProgram::try_from(filter).map_err(invalid)?;
    let mut program = abi_guard();
    program.extend(compiled);
    Ok(program)
}

#[cfg(not(all(
    target_endian = "little",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn filter() -> io::Result<Vec<Instruction>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "the sandbox's seccomp profile is written for x86_64 and aarch64 (little-endian), \
             not {}: use isolation = \"process\" on this machine",
            std::env::consts::ARCH
        ),
    ))
}

/// Stands in for `struct sock_filter` where `seccompiler` is not built.
#[cfg(not(all(
    target_endian = "little",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// x32 system calls run under the x86_64 architecture value, with bit 30 set in their number.
/// `seccompiler` checks the architecture only, so an x32 call would match no rule and be
/// allowed: these three instructions in front of its program kill it (`seccomp_data.nr` is at
/// offset 0). They fall through to the compiled program otherwise, whose jumps are relative.
#[cfg(all(target_endian = "little", target_arch = "x86_64"))]
fn abi_guard() -> Vec<sock_filter> {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    vec![
        sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_KILL_PROCESS,
        },
    ]
}

/// aarch64 has no second ABI under its architecture value (AArch32 calls carry their own,
/// which the compiled program's architecture check kills).
#[cfg(all(target_endian = "little", target_arch = "aarch64"))]
fn abi_guard() -> Vec<sock_filter> {
    Vec::new()
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
