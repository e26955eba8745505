//! What every container test needs: its own store root, a busybox image
//! imported through `strata import`, a way to run the CLI, and a guard
//! that on drop kills what the test started (by pid) and unmounts
//! anything left under its root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Env {
    /// The test's own directory; the store root is it, or a directory in it.
    pub dir: tempfile::TempDir,
    root: PathBuf,
    pub bin: PathBuf,
}

/// Whether the tests can run here (root, overlayfs, a static busybox).
/// In CI (CI=true) a test that cannot run fails; elsewhere it is skipped
/// with a message.
fn can_run() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (namespaces, mounts)".into());
    }
    if !Path::new("/usr/bin/busybox").exists() && !Path::new("/bin/busybox").exists() {
        return Err("needs a static busybox (apt-get install busybox-static)".into());
    }
    if !std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .contains("overlay")
    {
        return Err("needs overlayfs".into());
    }
    Ok(())
}

pub fn busybox() -> PathBuf {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox")
}

impl Env {
    /// A fresh root with image `bb` imported; None (skip) if the tests
    /// cannot run here and CI is not set.
    pub fn new() -> Option<Env> {
        Self::with_root(false)
    }

    /// As [`Env::new`], with the store root `store/` in a directory every
    /// user may enter (0755), where strata creates it: so the store's own
    /// permissions are all that keeps other users out.
    pub fn with_public_parent() -> Option<Env> {
        Self::with_root(true)
    }

    fn with_root(public_parent: bool) -> Option<Env> {
        if let Err(why) = can_run() {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("container tests cannot run in CI: {why}");
            }
            eprintln!("skipping container test: {why}");
            return None;
        }
        private_network();
        let dir = tempfile::Builder::new()
            .prefix("strata-ctr-test")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = if public_parent {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            dir.path().join("store")
        } else {
            dir.path().to_path_buf()
        };
        let env = Env {
            dir,
            root,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_strata")),
        };
        let tar = env.build_image_tar(&[]);
        env.ok(&["import", tar.to_str().expect("utf8"), "bb:latest"]);
        Some(env)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A busybox root filesystem as a tar; `extra` adds (path, file, mode).
    pub fn build_image_tar(&self, extra: &[(&str, &Path, u32)]) -> PathBuf {
        self.build_image_tar_with(extra, |_| {})
    }

    /// As [`Env::build_image_tar`]; `prepare` may add to the tree (at its
    /// path) before it is packed.
    pub fn build_image_tar_with(
        &self,
        extra: &[(&str, &Path, u32)],
        prepare: impl FnOnce(&Path),
    ) -> PathBuf {
        let dir = self.dir.path().join(format!("image-src-{}", rand_suffix()));
        for d in ["bin", "etc", "root", "tmp", "data"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        std::fs::copy(busybox(), dir.join("bin/busybox")).expect("copy busybox");
        for applet in [
            "sh", "ls", "cat", "echo", "id", "true", "sleep", "ps", "mount", "hostname", "grep",
            "env", "ln", "rm", "mkdir", "mv", "readlink", "test", "touch", "find", "wc", "stat",
            "stty", "tty",
        ] {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).expect("symlink");
        }
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
        for (path, src, mode) in extra {
            let target = dir.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::copy(src, &target).expect("copy extra");
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))
                .expect("chmod");
        }
        prepare(&dir);
        let tar = self.dir.path().join(format!("image-{}.tar", rand_suffix()));
        let status = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(status.success());
        std::fs::remove_dir_all(&dir).expect("cleanup image source");
        tar
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run strata")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's record, read through the library.
    pub fn container(&self, name: &str) -> strata::container::Container {
        let store = strata::store::Store::open(self.root()).expect("store");
        strata::container::lookup(&store, name).expect("container")
    }

    /// A container's `inspect`, as JSON.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let text = self.ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&text).expect("inspect json");
        v[0].clone()
    }

    /// Asserts that nothing the test's containers held is left: no
    /// mount under this root, no veth in the test's network namespace,
    /// no process of this root's. A veth goes with its container's
    /// namespace, and a monitor may still be on its way out after `rm
    /// -f` has returned: each is waited for, up to 3 s.
    pub fn assert_nothing_left(&self) {
        assert!(
            eventually(3, || self.mounts().is_empty()),
            "mounts left: {:?}",
            self.mounts()
        );
        assert!(
            eventually(3, || crate::netns::links("veth").is_empty()),
            "veths left: {:?}",
            crate::netns::links("veth")
        );
        assert!(
            eventually(3, || self.processes().is_empty()),
            "processes left: {:?}",
            self.processes()
        );
    }

    /// Mounts under this root, from the host's mount table.
    pub fn mounts(&self) -> Vec<String> {
        let root = self.root().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&root))
            .collect()
    }

    /// Processes with this root on their command line or an open fd
    /// below it (monitors, container processes).
    pub fn processes(&self) -> Vec<i32> {
        let root = self.root().to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        let exe = |pid: &str| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let own_exe = exe("self");
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            // A child another test's thread has forked but not yet exec'd
            // still runs this test binary and holds copies of every fd of
            // this process, this Env's store among them: it is not ours
            // (a concurrent `strata create` was killed that way).
            if own_exe.is_some() && exe(&pid.to_string()) == own_exe {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // The flusher an ingest leaves behind (docs/store.md,
            // "Write-behind") ends on its own once the disk has its data,
            // and holds nothing but a lock file: not a leak.
            if cmdline.split(|&b| b == 0).any(|a| a == b"__flush") {
                continue;
            }
            let mut hit = String::from_utf8_lossy(&cmdline).contains(&root);
            if !hit {
                for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(&root)) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let mut ids = Vec::new();
        // A `run --rm` that returned leaves its monitor tearing down for a
        // moment (unmount, cgroup, then the moved directory): let it
        // finish.
        let _ = eventually(2, || {
            std::fs::read_dir(self.root().join("tmp")).map_or(true, |d| {
                d.flatten()
                    .all(|e| !e.file_name().to_string_lossy().starts_with("removed-"))
            })
        });
        if let Ok(store) = strata::store::Store::open(self.root()) {
            if let Ok(all) = strata::container::records::list_containers(&store) {
                for c in all {
                    ids.push(c.id.clone());
                    // Only processes that are still this container's: a
                    // recorded pid that has exited may be another test's
                    // process by now (a concurrent `strata create` was
                    // killed that way). The monitor is checked by its start
                    // time; the container's pid 1 by its pid namespace.
                    let monitor = strata::container::monitor::liveness::monitor_alive(&c);
                    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
                    let own = ns(std::process::id() as i32);
                    let contained =
                        c.state.pid > 0 && ns(c.state.pid).is_some_and(|n| Some(n) != own);
                    for (pid, ours) in [(c.state.monitor_pid, monitor), (c.state.pid, contained)] {
                        if pid > 0 && ours {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
            }
        }
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // The killed containers' cgroups (their monitors cannot).
        for id in ids {
            strata::container::launch::cgroup::remove(&id);
        }
    }
}

/// A static setuid-able program that prints its effective uid (busybox
/// drops setuid by itself, so it cannot show the kernel's behaviour),
/// built with `cc -static` in the test's directory; None (skip) if it
/// cannot be built outside CI.
pub fn euid_program(env: &Env) -> Option<PathBuf> {
    let src = env.dir.path().join("euid.c");
    std::fs::write(&src, "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n").expect("write euid.c");
    let bin = env.dir.path().join("euid");
    let built = Command::new("cc")
        .arg("-static")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("CI").is_err(),
            "cc -static is needed for this test in CI"
        );
        eprintln!("skipping: cannot build a static test program");
        return None;
    }
    Some(bin)
}

/// Moves the calling test's thread into a network namespace of its own
/// with loopback up: every process the test starts (strata, its
/// monitors, peers) inherits it, so the bridges, veths, routes and
/// nftables rules strata makes never touch the machine's, and all go
/// when the test's thread ends. (libtest runs each test on a thread of
/// its own; a namespace is per thread.)
pub fn private_network() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip link set lo up");
    assert!(status.success(), "ip link set lo up");
}

pub fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `check` for up to `secs` seconds.
pub fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    check()
}

/// Makes a Env or returns from the test (skip).
#[macro_export]
macro_rules! env_or_skip {
    () => {
        match $crate::harness::Env::new() {
            Some(e) => e,
            None => return,
        }
    };
}

/// Runs `args` on the host as user and group nobody (65534), without
/// supplementary groups: another local user. Through a shell: setpriv
/// keeps its capabilities until its own execve, which would resolve the
/// path with CAP_DAC_OVERRIDE; the shell runs with none.
pub fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/bin/sh", "-c", "exec \"$@\"", "sh"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux)")
}

/// What an engine's `events` recorded for container `name` so far (and
/// of action `event`, if given), in `format`, through `ok` (a command
/// that must succeed, returning its stdout). `--until` is a second
/// ahead, so that this second's events are in.
pub fn container_events(
    ok: impl Fn(&[&str]) -> String,
    name: &str,
    event: Option<&str>,
    format: &str,
) -> String {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let until = until.to_string();
    let container = format!("container={name}");
    let mut args = vec![
        "events", "--since", "0", "--until", &until, "--filter", &container,
    ];
    let event = event.map(|e| format!("event={e}"));
    if let Some(event) = &event {
        args.extend(["--filter", event.as_str()]);
    }
    args.extend(["--format", format]);
    ok(&args)
}
