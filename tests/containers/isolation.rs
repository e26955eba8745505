use crate::env_or_skip;
use crate::harness::{euid_program, eventually, stderr, stdout};

#[test]
fn capability_bounding_set_is_dockers_default() {
    let env = env_or_skip!();
    let out = env.ok(&["run", "--rm", "bb", "grep", "Cap", "/proc/self/status"]);
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(
        out.contains("CapInh:\t0000000000000000") && out.contains("CapAmb:\t0000000000000000"),
        "{out}"
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "bb",
        "grep",
        "CapBnd",
        "/proc/self/status",
    ]);
    assert_eq!(out, "CapBnd:\t0000000000000001\n");
    let out = env.ok(&[
        "run",
        "--rm",
        "-u",
        "nobody",
        "bb",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(out, "CapEff:\t0000000000000000\n");
}

#[test]
fn proc_is_masked_and_mount_fails() {
    let env = env_or_skip!();
    let script = "cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable; \
                  test -s /proc/keys && echo keys-visible; \
                  echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable; \
                  echo x > /proc/sys/kernel/hostname 2>/dev/null && echo sys-writable; \
                  mkdir -p /mnt; mount -t tmpfs none /mnt 2>/dev/null && echo mount-works; \
                  touch /sys/x 2>/dev/null && echo sys-rw; \
                  ls /dev | tr '\\n' ' '; echo";
    let out = env.ok(&["run", "--rm", "bb", "sh", "-c", script]);
    for bad in [
        "kcore-readable",
        "keys-visible",
        "sysrq-writable",
        "sys-writable",
        "mount-works",
        "sys-rw",
    ] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
    ] {
        assert!(
            out.split_whitespace().any(|d| d == dev),
            "/dev/{dev} missing: {out}"
        );
    }
    // --privileged lifts the masks and keeps every capability.
    let out = env.ok(&[
        "run",
        "--rm",
        "--privileged",
        "bb",
        "sh",
        "-c",
        "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted",
    ]);
    assert_eq!(out, "mounted\n");
}

#[test]
fn only_fds_0_to_2_reach_the_container() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "fds", "bb", "sleep", "100"]);
    // pid 1 (sleep) has exactly what the launcher gave it.
    let out = env.ok(&["exec", "fds", "ls", "/proc/1/fd"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"]);
    env.ok(&["rm", "-f", "fds"]);
}

#[test]
fn host_root_is_unreachable() {
    let env = env_or_skip!();
    let marker = env
        .root()
        .join(format!("host-marker-{}", crate::harness::rand_suffix()));
    std::fs::write(&marker, "secret").unwrap();
    let marker_s = marker.to_string_lossy().into_owned();
    let script = format!(
        "cat {m} 2>/dev/null && echo reached; cd /; cd ../../..; cat .{m} 2>/dev/null && echo reached-dotdot; \
         cat /proc/1/root{m} 2>/dev/null && echo reached-proc; ls / | tr '\\n' ' '",
        m = marker_s
    );
    let out = env.ok(&["run", "--rm", "bb", "sh", "-c", &script]);
    assert!(!out.contains("reached"), "{out}");
    assert!(
        !out.contains("usr ") || !out.contains("boot"),
        "host root listing: {out}"
    );
    assert!(out.contains("bin") && out.contains("etc"), "{out}");
    // The old root was detached: nothing in the container's mount table
    // points at the host's /.
    let mounts = env.ok(&["run", "--rm", "bb", "cat", "/proc/self/mountinfo"]);
    assert!(
        mounts
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some("/"))
            .count()
            == 1,
        "{mounts}"
    );
}

#[test]
fn no_new_privileges_blocks_setuid_elevation() {
    let env = env_or_skip!();
    let Some(bin) = euid_program(&env) else {
        return;
    };
    let tar = env.build_image_tar(&[("/bin/euid", &bin, 0o4755)]);
    env.ok(&["import", tar.to_str().unwrap(), "suid:latest"]);
    assert_eq!(
        env.ok(&["run", "--rm", "-u", "nobody", "suid", "/bin/euid"]),
        "0\n",
        "setuid must work without the option"
    );
    let out = env.run(&[
        "run",
        "--rm",
        "-u",
        "nobody",
        "--security-opt",
        "no-new-privileges",
        "suid",
        "/bin/euid",
    ]);
    assert_eq!(stdout(&out), "65534\n", "{}", stderr(&out));
    let out = env.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "suid",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert_eq!(out, "NoNewPrivs:\t1\n");
}

#[test]
fn network_none_has_only_loopback_and_read_only_root() {
    let env = env_or_skip!();
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "ls /sys/class/net | tr '\\n' ' '; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags",
    ]);
    let mut words = out.split_whitespace();
    assert_eq!(words.next(), Some("lo"), "{out}");
    let flags = out.split_whitespace().last().unwrap();
    assert!(
        u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap() & 1 == 1,
        "lo is up: {out}"
    );
    let out = env.run(&["run", "--rm", "--read-only", "bb", "touch", "/root/x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(eventually(1, || env.mounts().is_empty()));
}

/// `stats` NET I/O counts the container's own interfaces: none of its
/// own with `--network host` (Docker shows 0B / 0B, not the host's
/// counters), and only loopback (not counted) with `--network none`.
#[test]
fn stats_net_io_is_the_containers_own() {
    let env = env_or_skip!();
    let host_bytes: u64 = std::fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        .filter_map(|(_, v)| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    eprintln!("host receive bytes (non-lo): {host_bytes}");
    env.ok(&[
        "run",
        "-d",
        "--network",
        "host",
        "--name",
        "onhost",
        "bb",
        "sleep",
        "60",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "alone",
        "bb",
        "sleep",
        "60",
    ]);
    let out = env.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.NetIO}}",
        "onhost",
        "alone",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["alone 0B / 0B", "onhost 0B / 0B"], "{out}");
    env.ok(&["rm", "-f", "onhost", "alone"]);
}

/// Where the container's cgroup is, as the kernel lists it for `pid`:
/// (unified path, v1 freezer path).
fn cgroups_of(pid: i32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let find = |prefix: &str| {
        text.lines()
            .find_map(|l| l.split_once(prefix).map(|(_, p)| p.to_string()))
            .unwrap_or_default()
    };
    (find("0::"), find(":freezer:"))
}

/// The first process starts in the container's cgroup (cloned into the
/// unified hierarchy where there is one; moved into v1 hierarchies where
/// there is none, here by hiding the unified one from `run`), pause
/// freezes that cgroup, and the cgroups go with the container.
#[test]
fn first_process_is_in_the_containers_cgroup_and_pause_freezes_it() {
    let env = env_or_skip!();
    let unified = [
        "/sys/fs/cgroup/cgroup.controllers",
        "/sys/fs/cgroup/unified/cgroup.controllers",
    ]
    .into_iter()
    .map(std::path::Path::new)
    .find(|p| p.exists())
    .map(|p| p.parent().unwrap().to_path_buf());
    let hybrid = unified.as_deref() == Some(std::path::Path::new("/sys/fs/cgroup/unified"));
    let mut cases = vec![("uni", false)];
    if hybrid {
        cases.push(("v1only", true));
    } else {
        eprintln!("no hybrid cgroup layout here: the v1-only case is not run");
    }
    for (name, hide_unified) in cases {
        if hide_unified {
            let out = std::process::Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c"])
                .arg("umount /sys/fs/cgroup/unified && exec \"$0\" \"$@\"")
                .arg(&env.bin)
                .arg("--root")
                .arg(env.root())
                .args(["run", "-d", "--name", name, "bb", "sleep", "1000"])
                .output()
                .expect("run under unshare");
            assert!(out.status.success(), "{}", stderr(&out));
        } else {
            env.ok(&["run", "-d", "--name", name, "bb", "sleep", "1000"]);
        }
        let c = env.container(name);
        let (uni, freezer) = cgroups_of(c.state.pid);
        let mine = format!("/strata/{}", c.id);
        let state = if unified.is_some() && !hide_unified {
            assert_eq!(uni, mine, "{name}");
            unified
                .clone()
                .unwrap()
                .join(&mine[1..])
                .join("cgroup.events")
        } else {
            assert_eq!(freezer, mine, "{name}");
            std::path::PathBuf::from(format!("/sys/fs/cgroup/freezer{mine}/freezer.state"))
        };
        let frozen = || {
            let s = std::fs::read_to_string(&state).unwrap_or_default();
            s.lines().any(|l| l == "frozen 1" || l == "FROZEN")
        };
        assert!(!frozen(), "{name}");
        env.ok(&["pause", name]);
        assert!(frozen(), "{name}");
        env.ok(&["unpause", name]);
        assert!(!frozen(), "{name}");
        env.ok(&["rm", "-f", name]);
        assert!(
            eventually(2, || !state.parent().unwrap().exists()),
            "{name}"
        );
    }
}

/// A start keeps to one CPU (affinity.rs) but the container's processes
/// and, once it runs, its monitor's threads have the caller's CPUs.
#[test]
fn the_container_and_its_monitor_get_every_cpu_back() {
    let env = env_or_skip!();
    let allowed = |status: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let mine = allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    for init in [false, true] {
        let mut args = vec!["run", "--rm"];
        if init {
            args.push("--init");
        }
        args.extend(["bb", "sh", "-c", "cat /proc/1/status /proc/self/status"]);
        let out = env.ok(&args);
        let lists: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .collect();
        assert_eq!(lists, vec![mine.as_str(), mine.as_str()], "init {init}");
    }
    env.ok(&["run", "-d", "--name", "cpus", "bb", "sleep", "1000"]);
    let monitor = env.container("cpus").state.monitor_pid;
    for task in std::fs::read_dir(format!("/proc/{monitor}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert_eq!(allowed(&status), mine, "{status}");
    }
    env.ok(&["rm", "-f", "cpus"]);
}
