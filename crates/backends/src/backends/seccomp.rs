//! The seccomp filter of a confined job: system calls no pipeline step needs,
//! refused, so that code inside the job (whoever put it there) cannot reach
//! the kernel's riskiest surfaces or the caller's terminal.
//!
//! The list starts from Flatpak's and podman's default profiles, and is a
//! *block* list on purpose: what a job may run is the caller's choice, and
//! an allow-list of system calls would break arbitrary Python, CUDA and
//! compilers. Each entry says why a step never needs it ([`BLOCKED`]).
//! Compiled once per process with `seccompiler` (rust-vmm's, as Firecracker
//! uses it) into classic BPF, and handed to bubblewrap as `--add-seccomp-fd`
//! programs; bubblewrap installs them, with `no_new_privs`, right before it
//! runs the job's program, after its own mounts.
//!
//! Three programs, because one seccompiler filter has one on-match action:
//! - `EPERM` for the blocked calls ([`BLOCKED`]), namespace-creating `clone`
//!   flags and the terminal-injection `ioctl`s;
//! - `ENOSYS` for `clone3`, whose flags sit in memory a filter cannot read: C
//!   libraries fall back to `clone`, whose flags the first program checks
//!   (Flatpak and podman do the same);
//! - on x86_64, `ENOSYS` for every x32-ABI call (numbers with bit 30 set),
//!   which would otherwise reach the same kernel code under other numbers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

/// A blocked system call and why no step needs it.
pub struct Blocked {
    /// libc's constant name, `SYS_` and the call's name.
    constant: &'static str,
    pub number: i64,
    pub reason: &'static str,
}

impl Blocked {
    /// The system call's name (`mount`).
    pub fn name(&self) -> &'static str {
        self.constant.trim_start_matches("SYS_")
    }
}

macro_rules! blocked {
    ($($sys:ident: $reason:literal,)*) => {
        &[$(Blocked { constant: stringify!($sys), number: libc::$sys, reason: $reason },)*]
    };
}

/// The system calls a confined job is refused (`EPERM`), with the reason.
pub const BLOCKED: &[Blocked] = blocked! {
    SYS_unshare: "makes new namespaces (a user namespace is kernel attack surface no step needs)",
    SYS_setns: "joins other namespaces",
    SYS_mount: "changes the job's view of files (the sandbox decides it)",
    SYS_umount2: "uncovers what the sandbox hid",
    SYS_pivot_root: "changes the root the sandbox set up",
    SYS_chroot: "changes the root the sandbox set up",
    SYS_open_tree: "the new mount API: same as mount",
    SYS_move_mount: "the new mount API: same as mount",
    SYS_fsopen: "the new mount API: same as mount",
    SYS_fsconfig: "the new mount API: same as mount",
    SYS_fsmount: "the new mount API: same as mount",
    SYS_fspick: "the new mount API: same as mount",
    SYS_mount_setattr: "the new mount API: same as mount",
    SYS_keyctl: "the kernel keyring is shared across the machine and not namespaced",
    SYS_add_key: "the kernel keyring is shared across the machine and not namespaced",
    SYS_request_key: "the kernel keyring is shared across the machine and not namespaced",
    SYS_bpf: "loads programs into the kernel",
    SYS_perf_event_open: "observes other processes and the kernel; a frequent kernel exploit path",
    SYS_userfaultfd: "a frequent building block of kernel exploits",
    SYS_kexec_load: "replaces the running kernel",
    SYS_kexec_file_load: "replaces the running kernel",
    SYS_init_module: "loads kernel modules",
    SYS_finit_module: "loads kernel modules",
    SYS_delete_module: "unloads kernel modules",
    SYS_acct: "switches process accounting for the machine",
    SYS_swapon: "changes the machine's swap",
    SYS_swapoff: "changes the machine's swap",
    SYS_reboot: "reboots the machine",
    SYS_syslog: "reads the kernel log (addresses that defeat KASLR)",
    SYS_quotactl: "changes disk quotas",
    SYS_io_uring_setup: "io_uring: a large kernel surface outside seccomp's view (Docker blocks it too)",
    SYS_io_uring_enter: "io_uring: a large kernel surface outside seccomp's view",
    SYS_io_uring_register: "io_uring: a large kernel surface outside seccomp's view",
    SYS_name_to_handle_at: "opens files by handle, around the sandbox's mounts",
    SYS_open_by_handle_at: "opens files by handle, around the sandbox's mounts (the 'shocker' escape)",
    SYS_settimeofday: "sets the machine's clock",
    SYS_clock_settime: "sets the machine's clock",
    SYS_adjtimex: "sets the machine's clock",
};

/// `clone` flags that make a new namespace: refused like `unshare`.
pub const NAMESPACE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
];

/// Terminal `ioctl`s refused: pushing input into a terminal (`TIOCSTI`,
/// CVE-2017-5226) and the Linux console's selection paste (`TIOCLINUX`).
pub const TERMINAL_IOCTLS: &[(&str, u64)] =
    &[("TIOCSTI", request(libc::TIOCSTI)), ("TIOCLINUX", request(libc::TIOCLINUX))];

/// An `ioctl` request number as a filter argument (`libc::Ioctl` is a
/// `c_ulong` with glibc and a `c_int` with musl).
#[allow(clippy::unnecessary_cast)]
const fn request(number: libc::Ioctl) -> u64 {
    number as u64
}

/// The compiled programs, built once per process: each is a classic BPF
/// program as bubblewrap reads it (`struct sock_filter`s, native endian).
pub fn programs() -> Result<&'static [Vec<u8>], String> {
    static PROGRAMS: OnceLock<Result<Vec<Vec<u8>>, String>> = OnceLock::new();
    PROGRAMS.get_or_init(compile).as_ref().map(Vec::as_slice).map_err(Clone::clone)
}

fn compile() -> Result<Vec<Vec<u8>>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| format!("no seccomp filter for this processor ({})", std::env::consts::ARCH))?;
    let failed = |error: seccompiler::BackendError| format!("cannot build the seccomp filter: {error}");
    let condition = |arg, len, op, value| SeccompCondition::new(arg, len, op, value).map_err(failed);
    let rule = |conditions| SeccompRule::new(conditions).map_err(failed);

    let mut refused: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for call in BLOCKED {
        refused.insert(call.number, Vec::new()); // refused whatever the arguments
    }
    let mut clone_rules = Vec::new();
    for (_, flag) in NAMESPACE_FLAGS {
        clone_rules.push(rule(vec![condition(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*flag), *flag)?])?);
    }
    refused.insert(libc::SYS_clone, clone_rules);
    let mut ioctl_rules = Vec::new();
    for (_, request) in TERMINAL_IOCTLS {
        // The request is an `unsigned int`: compare the low 32 bits only.
        ioctl_rules.push(rule(vec![condition(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *request)?])?);
    }
    refused.insert(libc::SYS_ioctl, ioctl_rules);
    let eperm = SeccompFilter::new(refused, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(failed)?;

    let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let enosys = SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch)
        .map_err(failed)?;

    let mut programs = Vec::new();
    for filter in [eperm, enosys] {
        let program: BpfProgram = filter.try_into().map_err(failed)?;
        programs.push(bytes(&program));
    }
    if std::env::consts::ARCH == "x86_64" {
        programs.push(bytes(&no_x32_calls()));
    }
    Ok(programs)
}

/// x86_64 only: `ENOSYS` for system call numbers with the x32 bit set. Four
/// instructions written by hand: seccompiler matches exact numbers, not ranges.
fn no_x32_calls() -> BpfProgram {
    const X32_BIT: u32 = 0x4000_0000;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let statement = |code: u16, k: u32| sock_filter { code, jt: 0, jf: 0, k };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| sock_filter { code, jt, jf, k };
    let (ld_w_abs, jeq_k, jge_k, ret_k) = (0x20, 0x15, 0x35, 0x06);
    vec![
        statement(ld_w_abs, 4),               // seccomp_data.arch
        jump(jeq_k, AUDIT_ARCH_X86_64, 0, 3), // another arch: allow (the other programs decide)
        statement(ld_w_abs, 0),               // seccomp_data.nr
        jump(jge_k, X32_BIT, 0, 1),           // an x32 call?
        statement(ret_k, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        statement(ret_k, SECCOMP_RET_ALLOW),
    ]
}

/// A program as bytes: `struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }`.
fn bytes(program: &[sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for instruction in program {
        out.extend(instruction.code.to_ne_bytes());
        out.push(instruction.jt);
        out.push(instruction.jf);
        out.extend(instruction.k.to_ne_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_once_into_whole_instructions() {
        let compiled = programs().expect("compiles");
        assert!(compiled.len() >= 2);
        for program in compiled {
            assert!(!program.is_empty() && program.len() % 8 == 0);
        }
        assert!(std::ptr::eq(compiled, programs().expect("cached")), "built once per process");
    }

    #[test]
    fn every_blocked_call_has_a_reason_and_appears_once() {
        let mut seen = std::collections::BTreeSet::new();
        for call in BLOCKED {
            assert!(!call.reason.is_empty(), "{}", call.name());
            assert!(seen.insert(call.number), "{} listed twice", call.name());
        }
        assert!(!seen.contains(&libc::SYS_clone) && !seen.contains(&libc::SYS_ioctl), "filtered by argument instead");
    }
}
