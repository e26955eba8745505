//! What the snapshotter tests start: `strata snapshotter` on a private
//! store and socket, and a real containerd (Debian's 1.6) with a private
//! root, state directory, socket and a config naming strata's snapshotter
//! as a proxy plugin. Both are stopped by pid on drop; the mounts and
//! processes they leave (snapshot mounts, shims of this containerd) are
//! found by this test's own paths and removed.

#![allow(dead_code)]

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A test's directory (on the build's disk, short enough for sockets).
pub fn test_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("snap-")
        .tempdir_in(crate::common::scratch_base())
        .expect("tempdir")
}

/// Root, FUSE, containerd, ctr, runc and the registry tools; in CI their
/// absence fails the test, elsewhere it skips.
pub fn available() -> bool {
    crate::common::require_root()
        && crate::registry::harness::tools_available(&[
            "containerd",
            "ctr",
            "runc",
            "docker-registry",
            "skopeo",
        ])
}

fn wait_for_socket(path: &Path, what: &str, log: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
            && std::os::unix::net::UnixStream::connect(path).is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {}: {}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `done` every 20 ms for up to 30 s; panics naming `what` then.
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_until_for(what, Duration::from_secs(30), done)
}

/// Polls `done` every 20 ms for up to `timeout`; panics naming `what` then.
pub fn wait_until_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a child by pid: SIGTERM, then SIGKILL after `grace`.
fn stop_child(child: &mut Child, grace: Duration) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Mount points below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(PathBuf::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points
}

/// Pids of processes whose command line contains `needle` (this test's
/// own socket or root path, so never another test's process).
pub fn pids_with_arg(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let me = std::process::id() as i32;
    for item in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = item.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(item.path().join("cmdline")) {
            if cmdline
                .split(|&b| b == 0)
                .any(|a| String::from_utf8_lossy(a).contains(needle))
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// `strata snapshotter` on a store and socket of its own.
pub struct StrataSnapshotter {
    child: Option<Child>,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// The umask it starts with (the caller's when None).
    umask: Option<&'static str>,
}

impl StrataSnapshotter {
    pub fn start(dir: &Path) -> StrataSnapshotter {
        StrataSnapshotter::start_with_umask(dir, None)
    }

    /// Started with `umask` (e.g. "000"), by a shell that sets it.
    pub fn start_with_umask(dir: &Path, umask: Option<&'static str>) -> StrataSnapshotter {
        let mut s = StrataSnapshotter {
            child: None,
            root: dir.join("strata"),
            socket: dir.join("run").join("strata.sock"),
            log: dir.join("strata-snapshotter.log"),
            umask,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = match self.umask {
            Some(umask) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_strata"));
                sh
            }
            None => Command::new(env!("CARGO_BIN_EXE_strata")),
        };
        let mut child = command
            .arg("--root")
            .arg(&self.root)
            .args(["--log-level", "info", "snapshotter", "--address"])
            .arg(&self.socket)
            .env("DOCKER_CONFIG", self.root.with_file_name("docker"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start strata snapshotter");
        wait_for_socket(&self.socket, "strata snapshotter", &self.log, &mut child);
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// kill -9, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a strata command on this store.
    pub fn strata(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The store's SQLite index, read-only.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.root.join("strata.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    /// Snapshot rows of the store: backend key -> (kind, parent key).
    pub fn snapshots(&self) -> std::collections::BTreeMap<String, (i64, Option<String>)> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT s.key, s.kind, p.key FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Snapshot rows of a kind (1 view, 2 active, 3 committed).
    pub fn count_snapshots(&self, kind: Option<i64>) -> i64 {
        let db = self.db();
        match kind {
            Some(k) => db.query_row("SELECT COUNT(*) FROM snapshots WHERE kind = ?1", [k], |r| {
                r.get(0)
            }),
            None => db.query_row("SELECT COUNT(*) FROM snapshots", [], |r| r.get(0)),
        }
        .unwrap_or(-1)
    }

    /// Staging entries in the store's tmp/.
    pub fn staging_dirs(&self) -> usize {
        std::fs::read_dir(self.root.join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// fsck of this store: panics unless it is clean and says nothing
    /// more than `allowed` notes; returns its output.
    pub fn fsck_clean(&self, notes_allowed: bool) -> String {
        let fsck = self.strata(&["fsck"]);
        let out = String::from_utf8_lossy(&fsck.stdout).into_owned();
        assert!(fsck.status.success() && out.contains("clean"), "{out}");
        assert!(notes_allowed || !out.contains("note"), "{out}");
        out
    }

    /// Live snapshot-mount daemons of this store.
    pub fn mount_daemons(&self) -> Vec<i32> {
        pids_with_arg(&format!("{}/snapshots/", self.root.display()))
    }
}

impl Drop for StrataSnapshotter {
    fn drop(&mut self) {
        self.stop();
        for point in mounts_under(&self.root) {
            let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.mount_daemons().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in self.mount_daemons() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A containerd with its own root, state, socket and namespace, whose
/// config names strata's snapshotter (`strata`) as a proxy plugin.
pub struct Containerd {
    child: Option<Child>,
    pub dir: PathBuf,
    pub address: PathBuf,
    pub namespace: String,
    pub log: PathBuf,
}

impl Containerd {
    pub fn start(dir: &Path, snapshotter_socket: &Path) -> Containerd {
        let dir = dir.join("containerd");
        std::fs::create_dir_all(&dir).unwrap();
        let address = dir.join("c.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
# gc after every deletion, so removed containers' and images' snapshots
# leave the snapshotter promptly (the default waits for 100 mutations).
[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 1

[proxy_plugins]
  [proxy_plugins.strata]
    type = "snapshot"
    address = "{snapshotter}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            address = address.display(),
            opt = dir.join("opt").display(),
            snapshotter = snapshotter_socket.display(),
        );
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("containerd.log");
        let mut c = Containerd {
            child: None,
            namespace: format!("strata-test-{:08x}", rand::random::<u32>()),
            dir,
            address,
            log,
        };
        let logfile = std::fs::File::create(&c.log).unwrap();
        let mut child = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("start containerd");
        wait_for_socket(&c.address, "containerd", &c.log, &mut child);
        c.child = Some(child);
        c
    }

    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.address)
            .args(["--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().unwrap()
    }

    /// Runs ctr; panics with its output unless it succeeds; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}):\nstdout: {}\nstderr: {}\ncontainerd log tail: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr images pull --plain-http --snapshotter strata IMAGE`.
    pub fn pull(&self, image: &str) {
        self.ctr_ok(&[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "strata",
            image,
        ]);
    }

    /// `ctr run --rm --snapshotter strata IMAGE <new id> COMMAND...`;
    /// returns its output.
    pub fn run_rm(&self, image: &str, command: &[&str]) -> String {
        let id = run_id();
        let mut args = vec!["run", "--rm", "--snapshotter", "strata", image, &id];
        args.extend_from_slice(command);
        self.ctr_ok(&args)
    }

    /// containerd's connection to a proxy snapshotter backs off (up to 3 s
    /// in 1.6) after the snapshotter went away: calls that reach it fail
    /// with `unavailable` until it has reconnected. Waits for that by
    /// preparing (and removing) a probe snapshot, as a node's kubelet
    /// retries.
    pub fn wait_for_reconnect(&self) {
        wait_until("containerd to reach the snapshotter again", || {
            let out = self.ctr(&[
                "snapshots",
                "--snapshotter",
                "strata",
                "prepare",
                "probe",
                "",
            ]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || err.contains("unavailable"),
                "probe: {err}"
            );
            out.status.success()
        });
        self.ctr_ok(&["snapshots", "--snapshotter", "strata", "rm", "probe"]);
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(20));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks left by a failed test: kill them, then this containerd.
        if self.child.is_some() {
            let out = self.ctr(&["tasks", "ls", "-q"]);
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
                let _ = self.ctr(&["tasks", "delete", "-f", id]);
                let _ = self.ctr(&["containers", "delete", id]);
            }
        }
        self.stop();
        // Shims of this containerd (they name its socket).
        for pid in pids_with_arg(&self.address.display().to_string()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for point in mounts_under(&self.dir) {
            let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(format!("/run/containerd/runc/{}", self.namespace));
    }
}

/// Whether containerd's Go packages are installed (Debian's
/// golang-go and golang-github-containerd-containerd-dev); fails in CI
/// without them, skips elsewhere.
pub fn go_available() -> bool {
    if !crate::common::require_tool("go") {
        return false;
    }
    let testsuite = "/usr/share/gocode/src/github.com/containerd/containerd/snapshots/testsuite";
    if std::path::Path::new(testsuite).is_dir() {
        return true;
    }
    let message = "golang-github-containerd-containerd-dev is not installed";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// `go` in GOPATH mode over Debian's Go packages, offline.
pub fn go_command(dir: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", crate::common::scratch_base().join("go-cache"));
    cmd
}

/// Builds tests/snapshotter-cri-pull (once per test binary run).
pub fn cri_pull_tool() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let src = PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/snapshotter-cri-pull"
            ));
            let out = crate::common::scratch_base().join("strata-cri-pull");
            let built = go_command(&src)
                .args(["build", "-o"])
                .arg(&out)
                .arg(".")
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "go build strata-cri-pull: {}",
                String::from_utf8_lossy(&built.stderr)
            );
            out
        })
        .clone()
}

/// A fresh container id.
pub fn run_id() -> String {
    format!("c{:08x}", rand::random::<u32>())
}

/// What a snapshot's Mounts say, mounted at a directory as containerd
/// would (one overlay or bind); unmounted on drop.
pub struct MountGuard {
    pub target: PathBuf,
}

impl MountGuard {
    pub fn mount(mounts: &[strata::snapshotter::proto::types::Mount], target: &Path) -> MountGuard {
        use nix::mount::{mount, MsFlags};
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        let m = &mounts[0];
        std::fs::create_dir_all(target).unwrap();
        match m.r#type.as_str() {
            "overlay" => mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(m.options.join(",").as_str()),
            )
            .unwrap_or_else(|e| panic!("mount {m:?}: {e}")),
            "bind" => {
                mount(
                    Some(m.source.as_str()),
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .unwrap_or_else(|e| panic!("mount {m:?}: {e}"));
                if m.options.iter().any(|o| o == "ro") {
                    mount(
                        None::<&str>,
                        target,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&str>,
                    )
                    .unwrap();
                }
            }
            other => panic!("unexpected mount type {other}"),
        }
        MountGuard {
            target: target.to_path_buf(),
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}
