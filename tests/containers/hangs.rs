//! Issue 16: no hang on a hostile image. An image whose /etc/passwd is a
//! FIFO must not block the monitor; `rm -f` kills a monitor that does not
//! answer, with its container's processes, cgroups and mount.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::env_or_skip;
use crate::harness::{busybox, eventually, rand_suffix, Env};

/// Imports `fifo:latest`: busybox, with /etc/passwd (and /etc/group) FIFOs.
fn import_fifo_image(env: &Env) {
    let dir = env.root().join(format!("fifo-src-{}", rand_suffix()));
    for d in ["bin", "etc", "root", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(busybox(), dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "true", "cat"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    for file in ["etc/passwd", "etc/group"] {
        nix::unistd::mkfifo(
            &dir.join(file),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
    }
    let tar = env.root().join(format!("fifo-{}.tar", rand_suffix()));
    let status = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap();
    env.ok(&["import", tar.to_str().unwrap(), "fifo:latest"]);
}

/// Runs strata, failing the test (after killing it) if it takes longer than `limit`.
fn run_within(env: &Env, args: &[&str], limit: Duration) -> Output {
    let started = Instant::now();
    let mut child = env
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strata {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn cgroup_dirs(id: &str) -> Vec<std::path::PathBuf> {
    ["/sys/fs/cgroup/strata", "/sys/fs/cgroup/unified/strata"]
        .iter()
        .chain(
            ["freezer", "cpuacct", "pids"]
                .map(|c| format!("/sys/fs/cgroup/{c}/strata"))
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .iter(),
        )
        .map(|base| Path::new(base).join(id))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn a_fifo_passwd_never_blocks_run() {
    let env = env_or_skip!();
    import_fifo_image(&env);
    let limit = Duration::from_secs(20);
    // No user named: the FIFOs count as absent, the container runs as
    // root. (`id` would block on the FIFO itself, inside the container.)
    let status = ["run", "--rm", "fifo", "cat", "/proc/self/status"];
    let out = run_within(&env, &status, limit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nUid:\t0\t"));
    // A user name must be looked up there: refused, Docker's 125.
    let out = run_within(
        &env,
        &["run", "--rm", "-u", "nobody", "fifo", "true"],
        limit,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/etc/passwd") && err.contains("FIFO"),
        "the error says why: {err}"
    );
    // A group name likewise; a numeric user and group run.
    let out = run_within(
        &env,
        &["run", "--rm", "-u", "0:wheel", "fifo", "true"],
        limit,
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/etc/group"));
    let out = run_within(
        &env,
        &[
            "run",
            "--rm",
            "-u",
            "7:8",
            "fifo",
            "cat",
            "/proc/self/status",
        ],
        limit,
    );
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("\nUid:\t7\t") && status.contains("\nGid:\t8\t"),
        "{status}"
    );
    assert!(
        eventually(5, || env.processes().is_empty()),
        "left running: {:?}",
        env.processes()
    );
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

#[test]
fn rm_f_kills_a_monitor_that_does_not_answer() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "stuck", "bb", "sleep", "1000"]);
    let c = env.container("stuck");
    let monitor = Pid::from_raw(c.state.monitor_pid);
    // A monitor that cannot answer: stopped.
    kill(monitor, Signal::SIGSTOP).unwrap();
    let out = run_within(&env, &["rm", "-f", "stuck"], Duration::from_secs(25));
    assert!(
        out.status.success(),
        "rm -f failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(5, || env.processes().is_empty()),
        "left running: {:?}",
        env.processes()
    );
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    assert!(cgroup_dirs(&c.id).is_empty(), "{:?}", cgroup_dirs(&c.id));
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn gc_removes_the_cgroups_of_a_dead_monitor() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "orphan", "bb", "sleep", "1000"]);
    let c = env.container("orphan");
    if cgroup_dirs(&c.id).is_empty() {
        eprintln!("SKIPPED: no cgroups here");
        return;
    }
    kill(Pid::from_raw(c.state.monitor_pid), Signal::SIGKILL).unwrap();
    assert!(eventually(5, || kill(Pid::from_raw(c.state.pid), None).is_err()));
    // gc is the first command to look.
    env.ok(&["gc"]);
    assert!(cgroup_dirs(&c.id).is_empty(), "{:?}", cgroup_dirs(&c.id));
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    let status = env.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(status.starts_with("Exited (255)"), "{status}");
    env.ok(&["rm", "orphan"]);
}
