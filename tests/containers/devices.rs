//! `--device HOST:CONTAINER:PERMS` enforced by a devices cgroup, as
//! Docker's runc enforces it on cgroup v1: PERMS decides whether the
//! device opens for reading and for writing (`Operation not permitted`
//! otherwise), for the container's processes and its `exec`s; runc's
//! default devices stay `rwm`; `--privileged` keeps every device. A
//! Docker 20.10 of the test's own runs the same script as the oracle.
//!
//! The device is the host's /dev/fuse (c 10:229, not in runc's default
//! list; any user with the file's permissions may open it, for reading
//! or writing, with no capability): only opened, never read or written.

use std::path::Path;

use crate::dockerd::Docker;
use crate::env_or_skip;
use crate::harness::{eventually, stderr, stdout};

/// Opens /dev/x for reading, then for writing, and says which opened
/// (busybox sh's own error lines otherwise).
const PROBE: &str =
    "(exec 3</dev/x) 2>&1 && echo read-opens; (exec 4>/dev/x) 2>&1 && echo write-opens; true";

fn has_devices_hierarchy() -> bool {
    Path::new("/sys/fs/cgroup/devices/devices.allow").exists()
}

/// What PROBE prints in a container with `--device DEVICE` (and
/// `extra` flags), run by `run` (strata's CLI or Docker's).
fn probe(run: &dyn Fn(&[&str]) -> std::process::Output, device: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none", "--device", device];
    args.extend(extra);
    args.extend(["bb", "sh", "-c", PROBE]);
    let out = run(&args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

const DENIED_WRITE: &str = "sh: can't create /dev/x: Operation not permitted\n";
const DENIED_READ: &str = "sh: can't open /dev/x: Operation not permitted\n";

fn cases() -> Vec<(&'static str, &'static [&'static str], String)> {
    vec![
        (
            "/dev/fuse:/dev/x:r",
            &[],
            format!("read-opens\n{DENIED_WRITE}"),
        ),
        (
            "/dev/fuse:/dev/x:w",
            &[],
            format!("{DENIED_READ}write-opens\n"),
        ),
        (
            "/dev/fuse:/dev/x:rm",
            &[],
            format!("read-opens\n{DENIED_WRITE}"),
        ),
        (
            "/dev/fuse:/dev/x:rw",
            &[],
            "read-opens\nwrite-opens\n".into(),
        ),
        ("/dev/fuse:/dev/x", &[], "read-opens\nwrite-opens\n".into()),
        // runc's defaults come after the container's rules: /dev/null
        // stays rwm whatever PERMS says, under Docker too.
        (
            "/dev/null:/dev/x:r",
            &[],
            "read-opens\nwrite-opens\n".into(),
        ),
        // --privileged: every device, whatever PERMS says.
        (
            "/dev/fuse:/dev/x:r",
            &["--privileged"],
            "read-opens\nwrite-opens\n".into(),
        ),
    ]
}

/// PERMS as the devices cgroup enforces it, for the first process and
/// for an `exec`; the cgroup holds runc's rules and goes with the
/// container; a node the container makes still opens nothing.
#[test]
fn device_permissions_are_enforced() {
    let env = env_or_skip!();
    if !has_devices_hierarchy() {
        // Such a host refuses r/w-restricting PERMS instead (below).
        let out = env.run(&["create", "--device", "/dev/fuse:/dev/x:r", "bb"]);
        assert_eq!(out.status.code(), Some(125));
        assert!(
            stderr(&out).contains("cannot enforce the permissions \"r\""),
            "{}",
            stderr(&out)
        );
        return;
    }
    let strata = |args: &[&str]| env.run(args);
    for (device, extra, want) in cases() {
        assert_eq!(
            probe(&strata, device, extra),
            want,
            "--device {device} {extra:?}"
        );
    }

    // An exec is under the same rules, from its first instruction.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "dev",
        "--network",
        "none",
        "--device",
        "/dev/fuse:/dev/x:r",
        "bb",
        "sleep",
        "1000",
    ]);
    let out = env.run(&["exec", "dev", "sh", "-c", PROBE]);
    assert_eq!(stdout(&out), format!("read-opens\n{DENIED_WRITE}"));
    // The cgroup: deny all, the device's rule, then runc's defaults.
    let id = env.container("dev").id;
    let dir = Path::new("/sys/fs/cgroup/devices/strata").join(&id);
    // (The kernel lists them in the order written; Docker's runc
    // writes them sorted.)
    let list = std::fs::read_to_string(dir.join("devices.list")).expect("devices.list");
    let mut list: Vec<&str> = list.lines().collect();
    list.sort_unstable();
    assert_eq!(
        list,
        [
            "b *:* m",
            "c *:* m",
            "c 10:200 rwm",
            "c 10:229 r",
            "c 136:* rwm",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:1 rwm",
            "c 5:2 rwm",
        ]
    );
    let pid = env.container("dev").state.pid;
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    // mknod is allowed (runc's `c *:* m`), the node opens nothing.
    let out = env.run(&[
        "exec",
        "dev",
        "sh",
        "-c",
        "mknod /dev/sdz b 8 0 && echo made; (exec 3</dev/sdz) 2>/dev/null || echo closed",
    ]);
    assert_eq!(stdout(&out), "made\nclosed\n");
    env.ok(&["rm", "-f", "dev"]);
    assert!(eventually(5, || !dir.exists()), "{} left", dir.display());
    env.assert_nothing_left();
    // A container without --device gets no devices cgroup (its mounts
    // are nodev: nothing but /dev's defaults opens anyway).
    env.ok(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--network",
        "none",
        "bb",
        "sleep",
        "1000",
    ]);
    let plain = Path::new("/sys/fs/cgroup/devices/strata").join(env.container("plain").id);
    assert!(!plain.exists());
    env.ok(&["rm", "-f", "plain"]);
}

/// Docker 20.10 prints the same for every case.
#[test]
fn device_permissions_match_docker() {
    let env = env_or_skip!();
    if !has_devices_hierarchy() {
        eprintln!("skipping: no v1 devices hierarchy here (strata refuses r/w PERMS instead)");
        return;
    }
    let Some(docker) = Docker::start(&env, &[]) else {
        return;
    };
    let tar = env.build_image_tar(&[]);
    docker.ok(&["import", tar.to_str().expect("utf8"), "bb:latest"]);
    let strata = |args: &[&str]| env.run(args);
    let dockers = |args: &[&str]| docker.run(args);
    // (Docker's runc cannot start a --privileged container on this
    // machine: "unable to apply caps".)
    for (device, extra, want) in cases().into_iter().filter(|c| c.1.is_empty()) {
        let theirs = probe(&dockers, device, extra);
        assert_eq!(theirs, want, "Docker, --device {device} {extra:?}");
        assert_eq!(
            probe(&strata, device, extra),
            theirs,
            "--device {device} {extra:?}"
        );
    }
}

/// The host's mode and owner of each of `paths`.
fn host_modes(paths: &[&str]) -> Vec<(String, u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            (p.to_string(), m.mode() & 0o7777, m.uid(), m.gid())
        })
        .collect()
}

/// Puts back what a container changed of the host's nodes (so a failing
/// run does not leave the machine broken); says what it had to put back.
fn restore_host_modes(before: &[(String, u32, u32, u32)]) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let paths: Vec<&str> = before.iter().map(|b| b.0.as_str()).collect();
    let mut changed = Vec::new();
    for (was, now) in before.iter().zip(host_modes(&paths)) {
        if *was != now {
            changed.push(format!(
                "{} {:o} {}:{} (was {:o} {}:{})",
                now.0, now.1, now.2, now.3, was.1, was.2, was.3
            ));
            std::fs::set_permissions(&was.0, std::fs::Permissions::from_mode(was.1)).unwrap();
            std::os::unix::fs::chown(&was.0, Some(was.2), Some(was.3)).unwrap();
        }
    }
    changed
}

/// A container's root may chmod and chown its /dev nodes (they are its
/// own, as under Docker, whose runc makes them with mknod), through a
/// masked /proc file too, and a `--device` node gets the host node's
/// mode and owner; none of it reaches the host's nodes. Docker 20.10
/// prints the same.
#[test]
fn a_containers_device_nodes_are_its_own() {
    let env = env_or_skip!();
    let host = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/tty",
        "/dev/fuse",
    ];
    let before = host_modes(&host);
    let script = "chmod 600 /dev/null && chown 5:6 /dev/full /dev/tty && chmod 604 /proc/keys \
                  && chmod 640 /dev/fuse && echo x >/dev/null && echo changed; \
                  stat -c '%n %a %u:%g %t:%T' /dev/null /dev/full /dev/tty /dev/zero /dev/fuse";
    let run = |run: &dyn Fn(&[&str]) -> std::process::Output| {
        let out = run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--device",
            "/dev/fuse",
            "bb",
            "sh",
            "-c",
            script,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let ours = run(&|args: &[&str]| env.run(args));
    let changed = restore_host_modes(&before);
    assert!(
        changed.is_empty(),
        "the container changed host nodes: {changed:?}"
    );
    assert!(ours.starts_with("changed\n"), "{ours}");
    assert!(ours.contains("/dev/null 604 0:0 1:3\n"), "{ours}");
    assert!(ours.contains("/dev/full 666 5:6 1:7\n"), "{ours}");
    assert!(ours.contains("/dev/fuse 640 0:0 a:e5\n"), "{ours}");
    // And the same as root in a container that stays: exec changes the
    // running container's nodes, not the host's.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "nodes",
        "--network",
        "none",
        "bb",
        "sleep",
        "1000",
    ]);
    env.ok(&["exec", "nodes", "sh", "-c", "chmod 000 /dev/null /dev/zero"]);
    let changed = restore_host_modes(&before);
    assert!(changed.is_empty(), "exec changed host nodes: {changed:?}");
    env.ok(&["rm", "-f", "nodes"]);
    let changed = restore_host_modes(&before);
    assert!(
        changed.is_empty(),
        "the container changed host nodes: {changed:?}"
    );

    let Some(docker) = Docker::start(&env, &[]) else {
        return;
    };
    let tar = env.build_image_tar(&[]);
    docker.ok(&["import", tar.to_str().expect("utf8"), "bb:latest"]);
    let theirs = run(&|args: &[&str]| docker.run(args));
    let changed = restore_host_modes(&before);
    assert!(changed.is_empty(), "Docker changed host nodes: {changed:?}");
    assert_eq!(ours, theirs);
}
