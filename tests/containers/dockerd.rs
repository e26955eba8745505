//! A Docker 20.10 daemon of the test's own, the oracle of the build and
//! network tests: `dockerd` in a network namespace of its own
//! (`unshare --net`, loopback up), with its data root, exec root, socket
//! and pid file under the test's root. On drop it is stopped by pid,
//! what it mounted under its directory is unmounted and the directory
//! removed. Test images come from tars the tests build; nothing is
//! downloaded.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::harness::{eventually, Env};

/// Fails the test in CI, else says why it is skipped; returns false.
pub fn required(what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("the oracle tests cannot run in CI: {what}");
    }
    eprintln!("skipping oracle test: {what}");
    false
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The output of a command that must succeed.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Docker {
    pub dir: PathBuf,
    sock: String,
    child: std::process::Child,
}

impl Docker {
    /// Starts dockerd with `flags` added (e.g. `--bridge=none`); None
    /// (skip) outside CI when Docker is not installed.
    pub fn start(env: &Env, flags: &[&str]) -> Option<Docker> {
        for tool in ["dockerd", "docker", "unshare", "containerd", "runc"] {
            if !have(tool) {
                required(&format!("needs {tool} (Debian's docker.io)"));
                return None;
            }
        }
        let dir = env.root().join("docker");
        std::fs::create_dir_all(dir.join("data")).expect("mkdir");
        std::fs::create_dir_all(dir.join("exec")).expect("mkdir");
        let sock = format!("unix://{}", dir.join("sock").display());
        let log = std::fs::File::create(dir.join("log")).expect("log");
        let child = Command::new("unshare")
            .args(["--net", "--", "sh", "-c"])
            .arg("ip link set lo up && exec \"$0\" \"$@\"")
            .arg("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(&sock)
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd");
        let d = Docker { dir, sock, child };
        let up = eventually(60, || {
            d.cmd(&["version"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(
            up,
            "dockerd did not start: {}",
            std::fs::read_to_string(d.dir.join("log")).unwrap_or_default()
        );
        Some(d)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(&self.sock).args(args).stdin(Stdio::null());
        c.env("DOCKER_BUILDKIT", "0");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("docker")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.run(args), &format!("docker {args:?}"))
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // Its containers first, while it can still stop them.
        if let Ok(out) = self.cmd(&["ps", "-aq"]).output() {
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.cmd(&args).output();
            }
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = eventually(20, || matches!(self.child.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // What dockerd mounted under its directories.
        unmount_and_remove(&self.dir);
    }
}

/// Unmounts what a peer (dockerd, buildah) mounted under `dir`, deepest
/// first, then removes `dir`.
pub fn unmount_and_remove(dir: &std::path::Path) {
    let root = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&root))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}
