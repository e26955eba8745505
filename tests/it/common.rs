//! Shared test helpers: a per-test environment, the strata binary, and
//! builders for tar streams (including deliberately broken ones).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A test's own store root and scratch directory, removed on drop.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

/// Nothing is left in the tmp/ of the store at `root`: a published
/// staging's emptied directory (`spent-*`) is its flusher's to remove,
/// soon after, so it is waited for (up to 10 s).
pub fn assert_no_staging_left(root: &Path) {
    let left = || -> Vec<String> {
        std::fs::read_dir(root.join("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while left().iter().any(|n| n.starts_with("spent-")) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let left = left();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

/// Moves the calling test's thread into a network namespace of its own
/// with loopback up, for tests that run containers (on the default
/// bridge): bridges and rules never touch the machine's network.
pub fn private_network() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip link set lo up");
    assert!(status.success(), "ip link set lo up");
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir_in(scratch_base())
            .expect("tempdir");
        let root = dir.path().join("root");
        Env { dir, root }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs strata; returns the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run strata")
    }

    /// Runs strata and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs strata with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait");
        let _ = writer.join();
        out
    }

    /// Runs strata expecting failure with exactly one line on stderr;
    /// returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_fails_one_line(&out, args)
    }

    /// Nothing is left in the store's tmp/ (see [`assert_no_staging_left`]).
    pub fn assert_no_staging_left(&self) {
        assert_no_staging_left(&self.root);
    }

    pub fn fsck_clean(&self) {
        let out = self.run(&["fsck"]);
        assert!(
            out.status.success(),
            "fsck found damage:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fingerprint of everything stored: image IDs and tags, and the
    /// names of published files and blobs.
    pub fn snapshot(&self) -> String {
        let mut s = self.ok(&[
            "images",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ]);
        for sub in ["files", "blobs/sha256"] {
            let mut names = Vec::new();
            walk(&self.root.join(sub), &mut names);
            names.sort();
            s.push_str(&names.join("\n"));
        }
        s
    }
}

pub fn assert_fails_one_line(out: &Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "strata {args:?} succeeded but should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "strata {args:?}: expected one line on stderr, got: {stderr:?}"
    );
    lines[0].to_string()
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    if let Ok(items) = std::fs::read_dir(dir) {
        for item in items.flatten() {
            let p = item.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        }
    }
}

/// Where tests put their temporary directories: on the same disk as the
/// build, not a small tmpfs.
pub fn scratch_base() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).ok();
    base
}

/// Whether a peer tool exists. In CI a missing tool is a failure.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required in CI but is not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed (allowed outside CI only)");
    }
    found
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// In CI a test that needs root fails without it; elsewhere it skips.
pub fn require_root() -> bool {
    if !is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("this test needs root in CI");
        }
        eprintln!("SKIPPED: needs root (allowed outside CI only)");
        return false;
    }
    true
}

pub fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "sh -c {script:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A raw tar writer: full control over names, types and headers, so tests
/// can write what well-behaved tar libraries refuse to.
#[derive(Default)]
pub struct RawTar {
    pub data: Vec<u8>,
}

pub struct RawEntry<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub body: &'a [u8],
    pub link: &'a [u8],
    pub mode: u32,
    pub size_override: Option<u64>,
}

impl<'a> RawEntry<'a> {
    pub fn file(name: &'a [u8], body: &'a [u8]) -> Self {
        RawEntry {
            name,
            kind: b'0',
            body,
            link: b"",
            mode: 0o644,
            size_override: None,
        }
    }
    pub fn dir(name: &'a [u8]) -> Self {
        RawEntry {
            name,
            kind: b'5',
            body: b"",
            link: b"",
            mode: 0o755,
            size_override: None,
        }
    }
    pub fn link(name: &'a [u8], kind: u8, target: &'a [u8]) -> Self {
        RawEntry {
            name,
            kind,
            body: b"",
            link: target,
            mode: 0o777,
            size_override: None,
        }
    }
}

impl RawTar {
    pub fn header(e: &RawEntry) -> [u8; 512] {
        let mut h = [0u8; 512];
        let n = e.name.len().min(100);
        h[..n].copy_from_slice(&e.name[..n]);
        let octal = |h: &mut [u8; 512], off: usize, len: usize, v: u64| {
            let s = format!("{:0width$o}\0", v, width = len - 1);
            h[off..off + len].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, e.mode as u64);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(
            &mut h,
            124,
            12,
            e.size_override.unwrap_or(e.body.len() as u64),
        );
        octal(&mut h, 136, 12, 1_700_000_000);
        h[156] = e.kind;
        let l = e.link.len().min(100);
        h[157..157 + l].copy_from_slice(&e.link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        for b in &mut h[148..156] {
            *b = b' ';
        }
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let s = format!("{:06o}\0 ", sum);
        h[148..156].copy_from_slice(s.as_bytes());
        h
    }

    pub fn add(&mut self, e: RawEntry) -> &mut Self {
        self.data.extend_from_slice(&Self::header(&e));
        self.data.extend_from_slice(e.body);
        let pad = (512 - e.body.len() % 512) % 512;
        self.data.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A PAX extended header carrying `records` (key, value) for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut line_len = base + base.to_string().len();
            if line_len.to_string().len() != base.to_string().len() {
                line_len = base + line_len.to_string().len();
            }
            body.extend_from_slice(format!("{line_len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let body_ref: &[u8] = &body;
        self.add(RawEntry {
            name: b"PaxHeader",
            kind: b'x',
            body: body_ref,
            link: b"",
            mode: 0o644,
            size_override: None,
        });
        self
    }

    /// A GNU long name record (`L`) for the next entry.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut body = name.to_vec();
        body.push(0);
        self.add(RawEntry {
            name: b"././@LongLink",
            kind: b'L',
            body: &body,
            link: b"",
            mode: 0o644,
            size_override: None,
        });
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        self.data.extend(std::iter::repeat_n(0u8, 1024));
        std::mem::take(&mut self.data)
    }
}

/// Writes a deterministic tree of `count` files (sizes vary, some shared
/// contents) under `dir`; returns the total bytes written.
pub fn make_tree(dir: &Path, count: usize, seed: u64, max_size: usize) -> u64 {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut total = 0u64;
    for i in 0..count {
        let sub = dir.join(format!("d{:02}/e{:02}", i % 37, i % 11));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let size = (next() as usize) % max_size.max(1);
        let fill = (next() % 251) as u8;
        let content: Vec<u8> = (0..size)
            .map(|j| fill.wrapping_add((j % 97) as u8))
            .collect();
        std::fs::write(sub.join(format!("f{i}.bin")), &content).expect("write");
        total += size as u64;
    }
    total
}

/// Packs the directory `dir` into the tar `tar` with GNU tar (entries
/// relative to `dir`, as `./...`).
pub fn tar_dir(dir: &Path, tar: &Path) {
    sh(&format!("tar -C {} -cf {} .", dir.display(), tar.display()));
}

/// A rootfs with busybox (static) and a passwd file, packed by GNU tar.
pub fn busybox_rootfs_tar(env: &Env, name: &str) -> PathBuf {
    let tar = env.path(&format!("{name}.tar"));
    if tar.exists() {
        return tar;
    }
    let rootfs = env.path(&format!("{name}-rootfs"));
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "ls", "cat", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    tar_dir(&rootfs, &tar);
    tar
}

/// A xorshift generator for the kill -9 tests: seeded from
/// `STRATA_TEST_SEED` (to replay a failure) or the clock.
pub struct KillSchedule {
    pub seed: u64,
    state: u64,
}

impl KillSchedule {
    pub fn new() -> KillSchedule {
        let seed: u64 = std::env::var("STRATA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        KillSchedule {
            seed,
            state: seed | 1,
        }
    }

    /// The next delay before a kill, up to `tenths`/10 of `full`.
    pub fn next_delay(&mut self, full: std::time::Duration, tenths: u64) -> std::time::Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        std::time::Duration::from_micros(self.state % (full.as_micros() as u64 * tenths / 10 + 1))
    }
}
