//! strata's default seccomp profile, built in Docker's format so that it
//! goes through the same resolution and compilation as a user's
//! `--security-opt seccomp=PROFILE.json`.
//!
//! It is equivalent to Docker's default profile (moby's
//! `profiles/seccomp/default.json`, Apache-2.0; this follows
//! `github.com/moby/profiles/seccomp` v0.2.3): every syscall not allowed
//! fails with EPERM; a fixed allow list; more syscalls for containers
//! whose bounding set has CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE
//! and others; clone only without namespace flags (and clone3, whose
//! flags a filter cannot read, fails with ENOSYS so that libcs fall back
//! to clone) unless CAP_SYS_ADMIN; socket without AF_ALG and AF_VSOCK;
//! personality only with the values programs use to query or for
//! 32-bit/uname26 emulation. Changes to Docker's profile belong here
//! too; `tests` below pins the parts that matter most.

use super::profile::{ArchMap, ArgRule, Condition, Profile, SyscallRule};

/// Allowed to every container (sorted, ignoring leading underscores).
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed to a container whose bounding set has the capability.
const ALLOWED_WITH_CAP: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Allowed on some architectures only (Docker's names for them).
const ALLOWED_ON_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// The clone flags that make namespaces: refused without CAP_SYS_ADMIN
/// (this is what stops `unshare -U -r` as container root).
pub const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// personality(2) personas allowed: PER_LINUX, PER_LINUX32, UNAME26,
/// PER_LINUX32|UNAME26, and 0xffffffff (which only queries).
const PERSONAS: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Socket families refused: AF_ALG (38) and AF_VSOCK (40).
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

fn allow(names: &[&str]) -> SyscallRule {
    SyscallRule {
        names: names.iter().map(|n| n.to_string()).collect(),
        action: "SCMP_ACT_ALLOW".into(),
        ..SyscallRule::default()
    }
}

fn arg(index: u32, op: &str, value: u64) -> ArgRule {
    ArgRule {
        index,
        value,
        value_two: 0,
        op: op.into(),
    }
}

fn caps(names: &[&str]) -> Option<Condition> {
    Some(Condition {
        caps: names.iter().map(|c| c.to_string()).collect(),
        ..Condition::default()
    })
}

fn arches(names: &[&str]) -> Option<Condition> {
    Some(Condition {
        arches: names.iter().map(|c| c.to_string()).collect(),
        ..Condition::default()
    })
}

fn arch_map(arch: &str, subs: &[&str]) -> ArchMap {
    ArchMap {
        architecture: format!("SCMP_ARCH_{arch}"),
        sub_architectures: subs.iter().map(|s| format!("SCMP_ARCH_{s}")).collect(),
    }
}

/// The default profile.
pub fn default_profile() -> Profile {
    let mut rules = vec![allow(ALLOWED)];
    // Since 4.8 ptrace cannot be used to get around seccomp.
    rules.push(SyscallRule {
        includes: Some(Condition {
            min_kernel: Some("4.8".into()),
            ..Condition::default()
        }),
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    });
    for (op, family) in [
        ("SCMP_CMP_LT", AF_ALG),
        ("SCMP_CMP_EQ", AF_ALG + 1),
        ("SCMP_CMP_GT", AF_VSOCK),
    ] {
        rules.push(SyscallRule {
            args: vec![arg(0, op, family)],
            ..allow(&["socket"])
        });
    }
    for persona in PERSONAS {
        rules.push(SyscallRule {
            args: vec![arg(0, "SCMP_CMP_EQ", *persona)],
            ..allow(&["personality"])
        });
    }
    for (on, names) in ALLOWED_ON_ARCH {
        rules.push(SyscallRule {
            includes: arches(on),
            ..allow(names)
        });
    }
    for (cap, names) in ALLOWED_WITH_CAP {
        rules.push(SyscallRule {
            includes: caps(&[cap]),
            ..allow(names)
        });
    }
    // Without CAP_SYS_ADMIN: clone without namespace flags (its flags
    // are the second argument on s390), clone3 not at all.
    let masked = |index| ArgRule {
        op: "SCMP_CMP_MASKED_EQ".into(),
        ..arg(index, "", CLONE_NAMESPACE_FLAGS)
    };
    rules.push(SyscallRule {
        args: vec![masked(0)],
        excludes: Some(Condition {
            caps: vec!["CAP_SYS_ADMIN".into()],
            arches: vec!["s390".into(), "s390x".into()],
            min_kernel: None,
        }),
        ..allow(&["clone"])
    });
    rules.push(SyscallRule {
        args: vec![masked(1)],
        comment: "s390 parameter ordering for clone is different".into(),
        includes: arches(&["s390", "s390x"]),
        excludes: caps(&["CAP_SYS_ADMIN"]),
        ..allow(&["clone"])
    });
    rules.push(SyscallRule {
        names: vec!["clone3".into()],
        action: "SCMP_ACT_ERRNO".into(),
        errno_ret: Some(libc::ENOSYS as u32),
        excludes: caps(&["CAP_SYS_ADMIN"]),
        ..SyscallRule::default()
    });
    Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(libc::EPERM as u32),
        arch_map: vec![
            arch_map("X86_64", &["X86", "X32"]),
            arch_map("AARCH64", &["ARM"]),
            arch_map("MIPS64", &["MIPS", "MIPS64N32"]),
            arch_map("MIPS64N32", &["MIPS", "MIPS64"]),
            arch_map("MIPSEL64", &["MIPSEL", "MIPSEL64N32"]),
            arch_map("MIPSEL64N32", &["MIPSEL", "MIPSEL64"]),
            arch_map("S390X", &["S390"]),
            arch_map("RISCV64", &[]),
        ],
        syscalls: rules,
        ..Profile::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::profile::{resolve, Action, Op, Rules, Target};
    use super::*;

    fn rules_for(caps: &[&str]) -> Rules {
        let target = Target {
            arch: "amd64",
            seccomp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
            caps: caps.iter().map(|c| c.to_string()).collect(),
        };
        resolve(&default_profile(), &target).unwrap().unwrap()
    }

    fn unconditional(rules: &Rules, name: &str) -> Option<Action> {
        rules
            .rules
            .iter()
            .find(|r| r.args.is_empty() && r.names.iter().any(|n| n == name))
            .map(|r| r.action)
    }

    #[test]
    fn namespaces_need_cap_sys_admin() {
        assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7E02_0000, "Docker's mask");
        let plain = rules_for(&["CAP_CHOWN", "CAP_SETUID"]);
        assert_eq!(plain.default_action, Action::Errno(1));
        assert_eq!(
            plain.arches,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        for refused in ["unshare", "setns", "mount", "clone", "bpf", "ptrace_nope"] {
            assert_eq!(unconditional(&plain, refused), None, "{refused}");
        }
        assert_eq!(unconditional(&plain, "clone3"), Some(Action::Errno(38)));
        let clone = plain.rules.iter().find(|r| r.names == ["clone"]).unwrap();
        assert_eq!(clone.args.len(), 1);
        assert_eq!(
            (
                clone.args[0].index,
                clone.args[0].op,
                clone.args[0].value,
                clone.args[0].value_two
            ),
            (0, Op::MaskedEqual, CLONE_NAMESPACE_FLAGS, 0)
        );
        let admin = rules_for(&["CAP_SYS_ADMIN"]);
        for allowed in ["unshare", "setns", "mount", "clone", "clone3", "bpf"] {
            assert_eq!(
                unconditional(&admin, allowed),
                Some(Action::Allow),
                "{allowed}"
            );
        }
        assert!(!admin
            .rules
            .iter()
            .any(|r| !r.args.is_empty() && r.names == ["clone"]));
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let plain = rules_for(&[]);
        for name in [
            "reboot",
            "init_module",
            "kcmp",
            "settimeofday",
            "iopl",
            "acct",
            "chroot",
        ] {
            assert_eq!(unconditional(&plain, name), None, "{name}");
        }
        assert_eq!(
            unconditional(&plain, "ptrace"),
            Some(Action::Allow),
            "kernel >= 4.8"
        );
        assert_eq!(unconditional(&plain, "arch_prctl"), Some(Action::Allow));
        assert_eq!(unconditional(&plain, "riscv_flush_icache"), None);
        for (cap, name) in [
            ("CAP_SYS_BOOT", "reboot"),
            ("CAP_SYS_MODULE", "init_module"),
            ("CAP_SYS_PTRACE", "kcmp"),
            ("CAP_SYS_TIME", "settimeofday"),
            ("CAP_SYS_CHROOT", "chroot"),
        ] {
            assert_eq!(
                unconditional(&rules_for(&[cap]), name),
                Some(Action::Allow),
                "{cap}"
            );
        }
        for name in [
            "read",
            "write",
            "execve",
            "wait4",
            "rt_sigtimedwait",
            "kill",
            "close_range",
        ] {
            assert_eq!(unconditional(&plain, name), Some(Action::Allow), "{name}");
        }
        assert_eq!(ALLOWED.len(), 361);
    }

    #[test]
    fn a_changed_profile_gets_a_new_cache_name() {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(&default_profile()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(json)),
            "ed2a7bbeaca4a9da8b9ff01496938ed4f7fd21b2481a2a844ebbd1a85923f3d8",
            "the built-in profile changed: change BUILTIN_SOURCE (mod.rs), \
             so that no cached program of the old one is used, then this digest"
        );
        assert!(super::super::BUILTIN_SOURCE.contains("v0.2.3"));
    }

    #[test]
    fn the_default_round_trips_through_dockers_json() {
        let json = serde_json::to_string(&default_profile()).unwrap();
        assert!(
            json.starts_with(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"archMap""#)
        );
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, default_profile());
    }
}
