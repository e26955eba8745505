//! Rootless strata (docs/rootless.md): an ordinary user made for the test
//! (useradd gives it a subordinate id range; userdel removes it and its
//! home at the end, after its processes are killed by pid) imports an
//! image the test builds, mounts and reads it, and runs containers in a
//! user namespace.
//!
//! The user's commands run in one private mount namespace where a 0666
//! FUSE device node (Debian's default mode) is bound over /dev/fuse, so
//! that a host whose /dev/fuse is root's alone is not changed for anyone
//! else; the mounts made there vanish with it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::harness::{busybox, rand_suffix};

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (useradd, a private mount namespace)".into());
    }
    for tool in [
        "newuidmap",
        "newgidmap",
        "fusermount3",
        "useradd",
        "setpriv",
    ] {
        if !installed(tool) {
            return Some(format!(
                "needs {tool} (packages uidmap, fuse3, passwd, util-linux)"
            ));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("needs /dev/fuse".into());
    }
    None
}

/// Whether the program `tool` is in one of the system's bin directories.
fn installed(tool: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

/// Whether `tool` (told as `what`) is installed; outside CI a test that
/// needs it is skipped without it, in CI it fails.
fn installed_or_skip(tool: &str, what: &str) -> bool {
    if installed(tool) {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is required in CI");
    }
    eprintln!("skipped: needs {what}");
    false
}

macro_rules! rootless_or_skip {
    () => {
        if let Some(why) = missing() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("rootless test cannot run in CI: {why}");
            }
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// An ordinary user with a subordinate range, removed on drop with
/// everything it ran.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    subuid: u32,
}

impl User {
    fn new() -> User {
        let name = format!("strl{}", &rand_suffix()[..6]);
        let status = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", &name])
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {name}");
        let entry = nix::unistd::User::from_name(&name)
            .expect("getpwnam")
            .expect("the new user");
        let subuid = std::fs::read_to_string("/etc/subuid")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let mut f = l.split(':');
                (f.next() == Some(name.as_str())).then(|| f.next()?.parse().ok())?
            });
        let user = User {
            uid: entry.uid.as_raw(),
            gid: entry.gid.as_raw(),
            home: entry.dir,
            subuid: subuid.unwrap_or(0),
            name,
        };
        assert!(
            subuid.is_some(),
            "useradd gave {} no subordinate range",
            user.name
        );
        user
    }

    /// Pids of the user's processes.
    fn processes(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if entry.metadata().is_ok_and(|m| m.uid() == self.uid) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Kills every process of the user (three passes: one may fork while
    /// the first is killed).
    fn kill_processes(&self) {
        for _ in 0..3 {
            for pid in self.processes() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        self.kill_processes();
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Runs `script` (sh) as `user` with HOME and XDG_DATA_HOME in its home,
/// `strata` on PATH as `$S`, in a private mount namespace with a usable
/// /dev/fuse, and /dev/net/tun for pasta (a 0666 node beside the FUSE
/// node, made here if missing).
fn as_user(user: &User, fuse_node: &Path, script: &str) -> Output {
    let strata = env!("CARGO_BIN_EXE_strata");
    let tun_node = fuse_node.with_file_name("tun");
    if !tun_node.exists() {
        let made = Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&tun_node)
            .args(["c", "10", "200"])
            .status()
            .unwrap();
        assert!(made.success(), "mknod of a tun node");
    }
    let inner = format!(
        "mount --bind {node} /dev/fuse || exit 99; \
         if [ -e /dev/net/tun ]; then mount --bind {tun} /dev/net/tun || exit 99; fi; exec setpriv --reuid={uid} --regid={gid} --init-groups -- \
         env -i HOME={home} XDG_DATA_HOME={home}/.local/share PATH=/usr/sbin:/usr/bin:/sbin:/bin S={strata} \
         /bin/sh -c \"$0\"",
        node = fuse_node.display(),
        tun = tun_node.display(),
        uid = user.uid,
        gid = user.gid,
        home = user.home.display(),
    );
    let mut child = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &inner,
            script,
        ])
        .current_dir(&user.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare");
    let (sent, outputs) = std::sync::mpsc::channel();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, mut pipe)| {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = sent.send((i, bytes));
        })
    })
    .collect();
    // A hang fails the test, with what the script printed, instead of
    // holding up the whole run: the script's processes (the user's) are
    // killed, which closes the pipes.
    let deadline = std::time::Instant::now() + SCRIPT_TIMEOUT;
    let mut got: [Option<Vec<u8>>; 2] = [None, None];
    let mut timed_out = false;
    while got.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match outputs.recv_timeout(if timed_out { SCRIPT_TIMEOUT } else { left }) {
            Ok((i, bytes)) => got[i] = Some(bytes),
            Err(_) if !timed_out => {
                timed_out = true;
                let _ = child.kill();
                user.kill_processes();
            }
            Err(_) => {
                panic!("the script's output pipes stayed open after its processes were killed")
            }
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().expect("waiting for unshare");
    let [stdout, stderr] = got.map(Option::unwrap_or_default);
    assert!(
        !timed_out,
        "the script as {} did not finish within {} s (killed):\nstdout:\n{}\nstderr:\n{}",
        user.name,
        SCRIPT_TIMEOUT.as_secs(),
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    Output {
        status,
        stdout,
        stderr,
    }
}

/// How long one script of a rootless test may take (the slowest take
/// ~30 s on two busy cores).
const SCRIPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A busybox image tree: /bin/busybox root-owned, /home/u/f owned by
/// 1000, /sbin/cat a setuid-root copy of busybox; as a tar in `dir`.
fn build_image(dir: &Path, user: &User) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("home/u")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::copy(busybox(), tree.join("bin/busybox")).unwrap();
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    // A setuid-root busybox that runs as `cat`.
    std::fs::copy(busybox(), tree.join("sbin/cat")).unwrap();
    for applet in [
        "sh", "id", "stat", "cat", "touch", "chown", "chmod", "ls", "echo", "mkdir", "sleep",
        "httpd", "wget", "whoami", "tr", "hostname", "printf", "test", "ip",
    ] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    std::fs::set_permissions(
        tree.join("sbin/cat"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    std::fs::write(tree.join("home/u/f"), "image file\n").unwrap();
    std::fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000:u:/home/u:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/group"), "root:x:0:\nu:x:1000:\n").unwrap();
    std::os::unix::fs::chown(tree.join("home/u"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(tree.join("home/u/f"), Some(1000), Some(1000)).unwrap();
    let tar = dir.join("image.tar");
    let status = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::chown(&tar, Some(user.uid), Some(user.gid)).unwrap();
    tar
}

fn lines_with<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|l| l.strip_prefix(tag).map(str::trim))
        .collect()
}

/// The test's user, a usable FUSE node for it, a root-only host file
/// (`secret/file` in the scratch directory) and the test image's tar in
/// the user's home. The user (and all it ran) goes first on drop.
struct Rootless {
    user: User,
    fuse_node: PathBuf,
    secret_dir: PathBuf,
    tar: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Rootless {
    fn new() -> Rootless {
        let user = User::new();
        let scratch = tempfile::tempdir().unwrap();
        let fuse_node = scratch.path().join("fuse");
        let made = Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&fuse_node)
            .args(["c", "10", "229"])
            .status()
            .unwrap();
        assert!(made.success(), "mknod of a FUSE node");
        // A host file only root may read, in a directory anyone may enter.
        let secret_dir = scratch.path().join("secret");
        std::fs::create_dir(&secret_dir).unwrap();
        std::fs::write(secret_dir.join("file"), "root only\n").unwrap();
        std::fs::set_permissions(
            secret_dir.join("file"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(
            scratch.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let tar = build_image(&user.home.join("img"), &user);
        Rootless {
            user,
            fuse_node,
            secret_dir,
            tar,
            _scratch: scratch,
        }
    }

    /// Runs `script` as the user (see [`as_user`]) after importing the
    /// test image as `rl:1`: its stdout, and a context for failures.
    fn run(&self, script: &str) -> (String, String) {
        let script = format!(
            "$S import {} rl:1 >/dev/null || echo \"FAILED import\"\n{script}",
            self.tar.display()
        );
        let out = as_user(&self.user, &self.fuse_node, &script);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
        (stdout, context)
    }
}

#[test]
fn an_ordinary_user_mounts_and_runs_images_in_a_user_namespace() {
    rootless_or_skip!();
    let setup = Rootless::new();
    let user = &setup.user;
    let (tar, fuse_node, secret_dir) = (&setup.tar, &setup.fuse_node, &setup.secret_dir);
    let script = format!(
        r#"
$S import {tar} rl:1 >/dev/null || echo "FAILED import"
mkdir -p "$HOME/m"
$S mount rl:1 "$HOME/m" >/dev/null || echo "FAILED mount"
echo "MOUNT-OWNERS $(stat -c %u:%g "$HOME/m/bin/busybox" "$HOME/m/home/u/f" | tr '\n' ' ')"
echo "MOUNT-READ $(cat "$HOME/m/home/u/f")"
echo "MOUNT-LIST $($S mount | grep -c "$HOME/m")"
$S umount "$HOME/m" || echo "FAILED umount"
echo "MOUNTED-AFTER $(grep -c " $HOME/m " /proc/self/mountinfo)"
echo "ID $($S run --rm rl:1 id 2>/dev/null)"
echo "INSIDE-OWNERS $($S run --rm rl:1 stat -c %u:%g /bin/busybox /home/u/f 2>/dev/null | tr '\n' ' ')"
$S run --name maker rl:1 sh -c 'touch /made && chown 1000:1000 /made' 2>/dev/null || echo "FAILED maker"
echo "SECRET $($S run --rm --network none -v {secret}:/s rl:1 cat /s/file 2>&1)"
echo "SUID-SECRET $($S run --rm --network none --user 1000 -v {secret}:/s rl:1 /sbin/cat /s/file 2>&1)"
echo "SUID-MAP $($S run --rm --network none --user 1000 rl:1 /sbin/cat /proc/self/uid_map 2>&1 | head -1)"
limit=$($S run --rm --memory 64m rl:1 true 2>&1); echo "LIMIT $limit exit=$?"
device=$($S create --network none --device /dev/null:/dev/x:r rl:1 true 2>&1); echo "DEVICE $device exit=$?"
echo "NODES $($S run --rm --network none rl:1 sh -c 'chmod 600 /dev/null 2>&1; echo x >/dev/null && echo writes; stat -c %a /dev/null' 2>&1 | tr '\n' ' ')"
"#,
        tar = tar.display(),
        secret = secret_dir.display(),
    );
    let out = as_user(user, fuse_node, &script);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(
        lines_with(&stdout, "MOUNT-OWNERS"),
        ["0:0 1000:1000"],
        "{context}"
    );
    assert_eq!(
        lines_with(&stdout, "MOUNT-READ"),
        ["image file"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "MOUNT-LIST"), ["1"], "{context}");
    assert_eq!(lines_with(&stdout, "MOUNTED-AFTER"), ["0"], "{context}");
    let id = lines_with(&stdout, "ID");
    assert!(
        id.first()
            .is_some_and(|l| l.starts_with("uid=0(root) gid=0(root)")),
        "{context}"
    );
    assert_eq!(
        lines_with(&stdout, "INSIDE-OWNERS"),
        ["0:0 1000:1000"],
        "{context}"
    );
    // The file the container made (and gave to its uid 1000) is owned on
    // the host by the user's subordinate id for 1000.
    let containers = user.home.join(".local/share/strata/containers");
    let upper_made = std::fs::read_dir(&containers)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("upper/made"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no container made /made\n{context}"));
    let meta = std::fs::symlink_metadata(&upper_made).unwrap();
    assert_eq!(meta.uid(), user.subuid + 999, "{context}");
    assert_eq!(meta.gid(), user.subuid + 999, "{context}");
    let secret = lines_with(&stdout, "SECRET");
    assert!(
        secret
            .first()
            .is_some_and(|l| l.contains("Permission denied") && !l.contains("root only")),
        "{context}"
    );
    let suid = lines_with(&stdout, "SUID-SECRET");
    assert!(
        suid.first().is_some_and(|l| !l.contains("root only")),
        "{context}"
    );
    // Root in the container (as a setuid-root program makes it) is the
    // user on the host, never host root.
    let map = lines_with(&stdout, "SUID-MAP");
    let fields: Vec<&str> = map
        .first()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(fields, ["0", &user.uid.to_string(), "1"], "{context}");
    let limit = lines_with(&stdout, "LIMIT");
    assert!(
        limit
            .first()
            .is_some_and(|l| l.contains("delegated cgroup") && l.ends_with("exit=125")),
        "{context}"
    );
    // No devices cgroup for an ordinary user: PERMS that only one could
    // enforce are refused, not ignored.
    let device = lines_with(&stdout, "DEVICE");
    assert!(
        device.first().is_some_and(|l| l.contains(
            "--device /dev/null:/dev/x:r: cannot enforce the permissions \"r\": an ordinary user's containers have no devices cgroup"
        ) && l.ends_with("exit=125")),
        "{context}"
    );
    // /dev's nodes are the host's here (no mknod in a user namespace):
    // they work, and the container cannot change them.
    let nodes = lines_with(&stdout, "NODES");
    assert!(
        nodes
            .first()
            .is_some_and(|l| l.contains("Operation not permitted")
                && l.contains("writes")
                && l.trim_end().ends_with("666")),
        "{context}"
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata("/dev/null").unwrap().permissions()
        ) & 0o7777,
        0o666
    );
    // rm removes the container's files, subordinate-owned ones included.
    let rm = as_user(user, fuse_node, "$S rm maker >/dev/null && echo REMOVED");
    assert!(
        String::from_utf8_lossy(&rm.stdout).contains("REMOVED"),
        "{rm:?}"
    );
    assert_eq!(std::fs::read_dir(&containers).unwrap().count(), 0);
    assert!(!user
        .home
        .join(".local/share/strata/tmp")
        .read_dir()
        .unwrap()
        .any(|e| e
            .map(|e| e.file_name().to_string_lossy().starts_with("removed-"))
            .unwrap_or(false)));
}

/// Issue 13, image commands as the user: push to and pull from a
/// registry on the host's loopback, save and load, images, rmi, gc,
/// fsck and system df, all in the user's own store.
#[test]
fn an_ordinary_user_pulls_pushes_saves_and_loads_images() {
    rootless_or_skip!();
    let Some(registry) = super::cli_parity::Registry::start() else {
        return;
    };
    let setup = Rootless::new();
    let script = format!(
        r#"
R=127.0.0.1:{port}/rl/img:1
$S tag rl:1 $R || echo "FAILED tag"
$S push $R >/dev/null || echo "FAILED push"
$S rmi $R rl:1 >/dev/null || echo "FAILED rmi"
$S gc >/dev/null || echo "FAILED gc"
echo "AFTER-RMI $($S images -q | wc -l)"
$S pull $R >/dev/null || echo "FAILED pull"
echo "PULLED-OWNERS $($S run --rm --network none $R stat -c %u:%g /bin/busybox /home/u/f | tr '\n' ' ')"
$S save -o "$HOME/saved.tar" $R || echo "FAILED save"
$S rmi $R >/dev/null || echo "FAILED rmi after save"
$S load -i "$HOME/saved.tar" >/dev/null || echo "FAILED load"
echo "IMAGES $($S images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | tr '\n' ' ')"
$S fsck >/dev/null || echo "FAILED fsck"
$S system df >/dev/null || echo "FAILED system df"
$S rmi $R >/dev/null || echo "FAILED last rmi"
$S gc >/dev/null || echo "FAILED last gc"
echo "LEFT $($S images -q | wc -l)"
echo "OTHERS-MAY-WRITE $(find "$HOME/.local/share/strata" -perm -o+w ! -type l | wc -l)"
"#,
        port = registry.port
    );
    let (stdout, context) = setup.run(&script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(lines_with(&stdout, "AFTER-RMI"), ["0"], "{context}");
    assert_eq!(
        lines_with(&stdout, "PULLED-OWNERS"),
        ["0:0 1000:1000"],
        "{context}"
    );
    assert_eq!(
        lines_with(&stdout, "IMAGES"),
        [format!("127.0.0.1:{}/rl/img:1", registry.port)],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "LEFT"), ["0"], "{context}");
    assert_eq!(lines_with(&stdout, "OTHERS-MAY-WRITE"), ["0"], "{context}");
}

/// Waits (in the user's script) until the container `$1` has made
/// /ready.
const WAIT_READY: &str = r#"
wait_ready() {
  i=0
  while [ $i -lt 100 ]; do
    $S exec "$1" test -e /ready 2>/dev/null && return 0
    i=$((i+1)); sleep 0.1
  done
  echo "FAILED $1 never became ready"
}
"#;

/// The file commands of one container (`box`), running or stopped;
/// each line tagged with `$1`.
const FILE_COMMANDS: &str = r#"
file_commands() {
  echo "$1-CP-DATA $($S cp box:/data/s - | tar -xO)"
  echo "$1-CP-OUT-OWNER $($S cp box:/data/s - | tar -tv --numeric-owner | awk '{{print $2}}')"
  echo "from the host $1" > "$HOME/h-$1"
  $S cp "$HOME/h-$1" box:/data/ || echo "FAILED $1 cp in"
  echo "$1-DIFF $($S diff box | sort | tr '\n' ' ')"
  echo "$1-EXPORT $($S export box | tar -tv --numeric-owner | awk '$6 == "data/s" {print $1, $2}')"
  $S commit box "rl:$1" >/dev/null || echo "FAILED $1 commit"
  echo "$1-COMMITTED $($S run --rm --network none "rl:$1" sh -c "stat -c %u:%g:%a /data/s; cat /data/h-$1" | tr '\n' ' ')"
}
"#;

/// Issue 13: cp (both ways), diff, export and commit of an ordinary
/// user's container, running and stopped, with the owners the container
/// gave its files (a subordinate id on the host), and `mount CONTAINER`.
#[test]
fn an_ordinary_users_container_files_are_copied_diffed_exported_and_committed() {
    rootless_or_skip!();
    let setup = Rootless::new();
    let script = format!(
        r#"{WAIT_READY}{FILE_COMMANDS}
$S run -d --name box --network none rl:1 sh -c 'mkdir /data /drop /data/closed && chmod 1777 /drop && printf secret > /data/s && chown 1000:1000 /data/s /data/closed && chmod 600 /data/s && chmod 700 /data/closed && dd if=/dev/zero of=/data/closed/3m bs=1024 count=3072 2>/dev/null && touch /ready && exec sleep 1000' >/dev/null || echo "FAILED run"
wait_ready box
file_commands RUNNING
mounted=$($S mount box 2>&1); echo "MOUNT-RUNNING $mounted exit=$?"
$S stop -t 0 box >/dev/null || echo "FAILED stop"
file_commands STOPPED
view=$($S mount box) || echo "FAILED mount stopped"
echo "VIEW-OWNERS $(stat -c '%u:%g:%a' "$view/data/s" "$view/ready" "$view/bin/busybox" | tr '\n' ' ')"
cat "$view/data/s" >/dev/null 2>&1 && echo "VIEW-READ-OTHERS allowed" || echo "VIEW-READ-OTHERS denied"
printf new > "$view/drop/mine" || echo "FAILED write through the view"
echo "VIEW-NEW $(stat -c '%u:%g' "$view/drop/mine")"
$S umount box || echo "FAILED umount box"
echo "DF-CONTAINERS $($S system df --format '{{{{.Type}}}} {{{{.Size}}}}' | sed -n 's/^Containers //p')"
echo "PS-SIZE $($S ps -a -s --filter name=box --format '{{{{.Size}}}}' | cut -d' ' -f1)"
echo "VIEW-CP-NEW $($S cp box:/drop/mine - | tar -tvf - | awk '{{print $2}}')"
"#
    );
    let (stdout, context) = setup.run(&script);
    assert!(!stdout.contains("FAILED"), "{context}");
    for state in ["RUNNING", "STOPPED"] {
        let tag = |t: &str| format!("{state}-{t}");
        assert_eq!(
            lines_with(&stdout, &tag("CP-DATA")),
            ["secret"],
            "{context}"
        );
        assert_eq!(
            lines_with(&stdout, &tag("CP-OUT-OWNER")),
            ["1000/1000"],
            "{context}"
        );
        assert_eq!(
            lines_with(&stdout, &tag("EXPORT")),
            ["-rw------- 1000/1000"],
            "{context}"
        );
        let diff = lines_with(&stdout, &tag("DIFF"));
        let diff = diff.first().copied().unwrap_or_default();
        for change in [
            "A /data",
            "A /data/s",
            "A /ready",
            &format!("A /data/h-{state}"),
        ] {
            assert!(diff.contains(change), "{change} in {diff}\n{context}");
        }
        assert_eq!(
            lines_with(&stdout, &tag("COMMITTED")),
            [format!("1000:1000:600 from the host {state}")],
            "{context}"
        );
    }
    // The stopped container's view shows the owners the container sees
    // (its upper directory's as the image's), served from its user
    // namespace; the user reaches what the modes let the owners' others
    // reach, and what they create there is the container root's.
    assert_eq!(
        lines_with(&stdout, "VIEW-OWNERS"),
        ["1000:1000:600 0:0:644 0:0:755"],
        "{context}"
    );
    assert_eq!(
        lines_with(&stdout, "VIEW-READ-OTHERS"),
        ["denied"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "VIEW-NEW"), ["0:0"], "{context}");
    assert_eq!(lines_with(&stdout, "VIEW-CP-NEW"), ["0/0"], "{context}");
    // Sizes count the 3 MiB file in a directory closed to the user
    // outside the container's user namespace (walked inside it).
    for tag in ["DF-CONTAINERS", "PS-SIZE"] {
        let size = lines_with(&stdout, tag);
        let megabytes = size
            .first()
            .and_then(|s| s.strip_suffix("MB"))
            .and_then(|n| n.parse::<f64>().ok());
        assert!(
            megabytes.is_some_and(|m| (3.1..4.0).contains(&m)),
            "{tag}: {size:?}\n{context}"
        );
    }
    let mount = lines_with(&stdout, "MOUNT-RUNNING");
    assert!(
        mount
            .first()
            .is_some_and(|l| l.contains("rootless") && l.ends_with("exit=1")),
        "{context}"
    );
}

/// Issue 13: `exec --user NAME` reads the container's /etc/passwd inside
/// its user namespace, and a process started by `exec` as root may
/// create a file in a directory of another owner (uid 1000 of the image)
/// as the container's first process may.
#[test]
fn exec_in_an_ordinary_users_container_resolves_names_and_writes_as_root() {
    rootless_or_skip!();
    let setup = Rootless::new();
    let script = format!(
        r#"{WAIT_READY}
$S run -d --name ex --network none rl:1 sh -c 'touch /home/u/by-first && touch /ready && exec sleep 1000' >/dev/null || echo "FAILED run"
wait_ready ex
echo "EXEC-ID $($S exec --user u ex id 2>&1)"
echo "EXEC-HOME $($S exec --user u ex sh -c 'echo $HOME' 2>&1)"
$S exec ex touch /home/u/by-exec || echo "FAILED exec touch"
echo "EXEC-MADE $($S exec ex ls /home/u | tr '\n' ' ')"
nobody=$($S exec --user nosuchuser ex id 2>&1); echo "EXEC-NOBODY $nobody exit=$?"
"#
    );
    let (stdout, context) = setup.run(&script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(
        lines_with(&stdout, "EXEC-ID"),
        ["uid=1000(u) gid=1000(u) groups=1000(u)"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "EXEC-HOME"), ["/home/u"], "{context}");
    assert_eq!(
        lines_with(&stdout, "EXEC-MADE"),
        ["by-exec by-first f"],
        "{context}"
    );
    let nobody = lines_with(&stdout, "EXEC-NOBODY");
    assert!(
        nobody
            .first()
            .is_some_and(|l| l.contains("nosuchuser") && l.ends_with("exit=126")),
        "{context}"
    );
}

/// Issue 13: a restart policy on an ordinary user's container: the
/// monitor relaunches itself inside the container's user namespace.
#[test]
fn an_ordinary_users_container_restarts_on_failure() {
    rootless_or_skip!();
    let setup = Rootless::new();
    let script = r#"
$S run -d --name rs --restart on-failure:2 --network none rl:1 sh -c 'echo ran; exit 3' >/dev/null || echo "FAILED run"
i=0
while [ $i -lt 150 ]; do
  [ "$($S inspect -f '{{.State.Status}} {{.RestartCount}}' rs)" = "exited 2" ] && break
  i=$((i+1)); sleep 0.1
done
echo "STATE $($S inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}' rs)"
echo "RUNS $($S logs rs | grep -c ran)"
"#;
    let (stdout, context) = setup.run(script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(lines_with(&stdout, "STATE"), ["exited 3 2"], "{context}");
    assert_eq!(lines_with(&stdout, "RUNS"), ["3"], "{context}");
}

/// A free port on the host's loopback.
fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Issue 13: an ordinary user's default network is pasta: a port
/// published on the host's loopback reaches a server in the container,
/// and the container reaches a server on the host's loopback through the
/// gateway address (pasta maps it to the host's loopback). Nothing
/// leaves the machine.
#[test]
fn an_ordinary_users_container_publishes_ports_through_pasta() {
    rootless_or_skip!();
    if !installed_or_skip("pasta", "pasta (Debian's passt)") {
        return;
    }
    let setup = Rootless::new();
    // A server on the host's loopback, answering one request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nhost-side");
        }
    });
    let published = free_loopback_port();
    // A host port in use: pasta fails to start on it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let script = format!(
        r#"
mkdir "$HOME/www" && echo container-side > "$HOME/www/index.html"
$S run -d --name web -p 127.0.0.1:{published}:80 -v "$HOME/www:/www" rl:1 httpd -f -p 80 -h /www >/dev/null || echo "FAILED run"
i=0
while [ $i -lt 100 ]; do
  got=$(curl -s --max-time 2 http://127.0.0.1:{published}/index.html) && [ -n "$got" ] && break
  i=$((i+1)); sleep 0.1
done
echo "INBOUND $got"
echo "NETWORK $($S inspect -f '{{{{.HostConfig.NetworkMode}}}}' web)"
$S port web | sed 's/^/PORT-ALL /'
echo "PORT-80 $($S port web 80)"
echo "PS-PORTS $($S ps --format '{{{{.Ports}}}}')"
echo "INSPECT-PORTS $($S inspect -f '{{{{json .NetworkSettings.Ports}}}}' web)"
echo "INSPECT-BINDINGS $($S inspect -f '{{{{json .HostConfig.PortBindings}}}}' web)"
$S run -d --name any -p 80 -v "$HOME/www:/www" rl:1 httpd -f -p 80 -h /www >/dev/null || echo "FAILED run any"
any=$($S port any 80/tcp | sed -n 1p)
port=${{any##*:}}
$S port any 80/tcp | sed "s/$port\$/PORT/; s/^/ANY-PORT /"
$S port any | sed "s/$port\$/PORT/; s/^/ANY-ALL /"
echo "ANY-PS $($S ps --filter name=any --format '{{{{.Ports}}}}' | sed "s/:$port->/:PORT->/g")"
echo "ANY-LISTEN $(ss -ltnH "sport = :$port" | awk '{{print $4}}' | sed "s/:$port\$/:PORT/" | sort | tr '\n' ' ')"
got=$(curl -s --max-time 2 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:$port/index.html)
echo "ANY-REACHED $got"
got=$(curl -s -g --max-time 2 -o /dev/null -w '%{{http_code}}' "http://[::1]:$port/index.html")
echo "ANY-V6-REACHED $got"
$S rm -f any >/dev/null || echo "FAILED rm any"
taken=$($S run -d --name taken -p 127.0.0.1:{taken}:80 rl:1 httpd -f -p 80 -h / 2>&1); echo "TAKEN-RUN exit=$? $taken"
echo "TAKEN-FILES $(find "$HOME/.local/share/strata/containers/$($S inspect -f '{{{{.Id}}}}' taken)" -name 'pasta*' | wc -l)"
echo "OUTBOUND $($S run --rm rl:1 sh -c 'set -- $(ip route | grep default); wget -q -O - http://$3:{host_port}/' 2>&1)"
$S rm -f web >/dev/null || echo "FAILED rm"
echo "PASTA-LEFT $(pgrep -u "$(id -u)" -c '^(pasta|passt)')"
"#
    );
    let (stdout, context) = setup.run(&script);
    let _ = std::net::TcpStream::connect(("127.0.0.1", host_port));
    let _ = server.join();
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(
        lines_with(&stdout, "INBOUND"),
        ["container-side"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "NETWORK"), ["pasta"], "{context}");
    // Issue 13: the ports pasta publishes are listed as rootless podman
    // and Docker list theirs.
    let on = assert_port_listed(&stdout, &context, published, "PS-PORTS", "");
    assert_eq!(lines_with(&stdout, "PORT-80"), [on.as_str()], "{context}");
    assert_eq!(
        lines_with(&stdout, "INSPECT-BINDINGS"),
        [format!(
            r#"{{"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":"{published}"}}]}}"#
        )],
        "{context}"
    );
    // A port without a host port gets a free one, reachable, and listed
    // as Docker 20.10 lists one on both families where pasta listens on
    // both (the host has IPv6).
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    assert_eq!(lines_with(&stdout, "ANY-REACHED"), ["200"], "{context}");
    if ipv6 {
        assert_eq!(
            lines_with(&stdout, "ANY-PORT"),
            ["0.0.0.0:PORT", ":::PORT"],
            "{context}"
        );
        assert_eq!(
            lines_with(&stdout, "ANY-ALL"),
            ["80/tcp -> 0.0.0.0:PORT", "80/tcp -> :::PORT"],
            "{context}"
        );
        assert_eq!(
            lines_with(&stdout, "ANY-PS"),
            ["0.0.0.0:PORT->80/tcp, :::PORT->80/tcp"],
            "{context}"
        );
        // One socket of pasta's takes both families.
        let listen = lines_with(&stdout, "ANY-LISTEN");
        assert!(
            listen == ["*:PORT"] || listen == ["0.0.0.0:PORT [::]:PORT"],
            "{context}"
        );
        assert_eq!(lines_with(&stdout, "ANY-V6-REACHED"), ["200"], "{context}");
    } else {
        assert_eq!(
            lines_with(&stdout, "ANY-PORT"),
            ["0.0.0.0:PORT"],
            "{context}"
        );
    }
    // pasta's failure is one line with its own reason, and leaves no
    // file behind.
    assert_one_failure(
        &stdout,
        &context,
        "TAKEN-RUN",
        125,
        &["pasta failed: Failed to bind"],
    );
    assert_eq!(lines_with(&stdout, "TAKEN-FILES"), ["0"], "{context}");
    drop(holder);
    assert_eq!(lines_with(&stdout, "OUTBOUND"), ["host-side"], "{context}");
    assert_eq!(lines_with(&stdout, "PASTA-LEFT"), ["0"], "{context}");
}

/// The line tagged `tag` is the only one, a command's failure with exit
/// status `exit` whose message says each of `words`.
fn assert_one_failure(stdout: &str, context: &str, tag: &str, exit: i32, words: &[&str]) {
    let found = lines_with(stdout, tag);
    let prefix = format!("exit={exit} ");
    assert!(
        found.len() == 1
            && found[0].starts_with(&prefix)
            && words.iter().all(|w| found[0].contains(w)),
        "{tag}: {found:?}\n{context}"
    );
}

/// The lines `port` (PORT-ALL), `ps` (tag `ps_tag`, after `ps_prefix`)
/// and `inspect` (INSPECT-PORTS) print for container port 80/tcp
/// published on 127.0.0.1:`published`; returns that address.
fn assert_port_listed(
    stdout: &str,
    context: &str,
    published: u16,
    ps_tag: &str,
    ps_prefix: &str,
) -> String {
    let on = format!("127.0.0.1:{published}");
    assert_eq!(
        lines_with(stdout, "PORT-ALL"),
        [format!("80/tcp -> {on}")],
        "{context}"
    );
    assert_eq!(
        lines_with(stdout, ps_tag),
        [format!("{ps_prefix}{on}->80/tcp")],
        "{context}"
    );
    assert_eq!(
        lines_with(stdout, "INSPECT-PORTS"),
        [format!(
            r#"{{"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":"{published}"}}]}}"#
        )],
        "{context}"
    );
    on
}

/// Issue 13: a monitor killed with -9 takes its pasta with it (pasta
/// has the monitor's death as its parent-death signal, and the next
/// command collects one left over, by pid and start time): no pasta of
/// the user's is left and the published host port is free again.
#[test]
fn a_killed_monitors_pasta_goes_with_it() {
    rootless_or_skip!();
    if !installed_or_skip("pasta", "pasta (Debian's passt)") {
        return;
    }
    a_killed_monitors_helper_goes_with_it("pasta", "^(pasta|passt)");
}

/// Issue 13: the same for slirp4netns.
#[test]
fn a_killed_monitors_slirp4netns_goes_with_it() {
    rootless_or_skip!();
    if !installed_or_skip("slirp4netns", "slirp4netns") {
        return;
    }
    a_killed_monitors_helper_goes_with_it("slirp4netns", "^slirp4netns$");
}

/// Runs a container on `network` with a published port, kills its
/// monitor with -9, and checks that the helper (processes matching
/// `helper`) is gone and the host port free again.
fn a_killed_monitors_helper_goes_with_it(network: &str, helper: &str) {
    let setup = Rootless::new();
    let published = free_loopback_port();
    let script = format!(
        r#"
$S run -d --name web --network {network} -p 127.0.0.1:{published}:80 rl:1 httpd -f -p 80 -h / >/dev/null || echo "FAILED run"
echo "HELPER-RUNNING $(pgrep -u "$(id -u)" -c '{helper}')"
monitor=$(pgrep -u "$(id -u)" -x strata-monitor)
[ -n "$monitor" ] || {{ echo "FAILED no monitor"; ps -o pid,ppid,comm,args -u "$(id -u)"; }}
kill -9 $monitor
i=0
while [ $i -lt 50 ] && kill -0 $monitor 2>/dev/null; do i=$((i+1)); sleep 0.1; done
$S ps -a --format '{{{{.Status}}}}' | sed 's/^/STATUS /'
i=0
while [ $i -lt 30 ] && pgrep -u "$(id -u)" '{helper}' >/dev/null; do i=$((i+1)); sleep 0.1; done
echo "HELPER-LEFT $(pgrep -u "$(id -u)" -c '{helper}')"
"#
    );
    let (stdout, context) = setup.run(&script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(lines_with(&stdout, "HELPER-RUNNING"), ["1"], "{context}");
    let status = lines_with(&stdout, "STATUS");
    assert!(
        status.len() == 1 && status[0].starts_with("Exited (255)"),
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "HELPER-LEFT"), ["0"], "{context}");
    // Checked before the user's processes are killed on drop.
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", published)).is_ok(),
        "host port {published} is still taken: {context}"
    );
}

/// A server on the host's loopback answering every request with
/// `host-side`, counting the connections it accepted; stopped on drop.
struct LoopbackServer {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoopbackServer {
    fn start() -> LoopbackServer {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, stopped) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            use std::io::{Read, Write};
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nhost-side");
            }
        });
        LoopbackServer {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Issue 13: `--network slirp4netns` for an ordinary user's container,
/// as rootless podman has it: a port published on the host's loopback
/// (through slirp4netns's API socket) reaches a server in the container
/// and is listed by `port`, `ps` and `inspect`; the container's DNS is
/// slirp4netns's forwarder; the host's loopback is reached at 10.0.2.2
/// with `allow_host_loopback=true` and not without it; an unknown
/// option and root's use are one-line errors; without pasta the user's
/// default network is slirp4netns.
#[test]
fn an_ordinary_users_container_publishes_ports_through_slirp4netns() {
    rootless_or_skip!();
    if !installed_or_skip("slirp4netns", "slirp4netns") {
        return;
    }
    let setup = Rootless::new();
    let server = LoopbackServer::start();
    let published = free_loopback_port();
    let script = format!(
        r#"
mkdir "$HOME/www" && echo container-side > "$HOME/www/index.html"
$S run -d --name web --network slirp4netns -p 127.0.0.1:{published}:80 -v "$HOME/www:/www" rl:1 httpd -f -p 80 -h /www >/dev/null || echo "FAILED run"
i=0
while [ $i -lt 100 ]; do
  got=$(curl -s --max-time 2 http://127.0.0.1:{published}/index.html) && [ -n "$got" ] && break
  i=$((i+1)); sleep 0.1
done
echo "INBOUND $got"
echo "NETWORK $($S inspect -f '{{{{.HostConfig.NetworkMode}}}}' web)"
echo "PORT-ALL $($S port web)"
echo "PS $($S ps --format '{{{{.Networks}}}} {{{{.Ports}}}}')"
echo "INSPECT-PORTS $($S inspect -f '{{{{json .NetworkSettings.Ports}}}}' web)"
echo "RESOLV $($S exec web cat /etc/resolv.conf | grep nameserver)"
echo "ADDRESS $($S exec web ip -o -4 addr show tap0 | awk '{{print $4}}')"
$S rm -f web >/dev/null || echo "FAILED rm"
echo "SLIRP-LEFT $(pgrep -u "$(id -u)" -c '^slirp4netns$')"
echo "ALLOWED $($S run --rm --network slirp4netns:allow_host_loopback=true rl:1 wget -q -O - http://10.0.2.2:{host_port}/ 2>&1)"
denied=$($S run --rm --network slirp4netns rl:1 wget -q -O - http://10.0.2.2:{host_port}/ 2>&1); echo "DENIED exit=$? $denied"
bad=$($S run --rm --network slirp4netns:allow_host_loopbak=true rl:1 true 2>&1); echo "BAD exit=$? $bad"
mkdir "$HOME/nopasta"
for f in /usr/bin/*; do case "${{f##*/}}" in pasta*|passt*) ;; *) ln -s "$f" "$HOME/nopasta/" ;; esac; done
id=$(PATH="$HOME/nopasta:/usr/sbin" $S create rl:1 true) || echo "FAILED create without pasta"
echo "DEFAULT $($S inspect -f '{{{{.HostConfig.NetworkMode}}}}' $id)"
"#,
        host_port = server.port
    );
    let (stdout, context) = setup.run(&script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(
        lines_with(&stdout, "INBOUND"),
        ["container-side"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "NETWORK"), ["slirp4netns"], "{context}");
    assert_port_listed(&stdout, &context, published, "PS", "slirp4netns ");
    assert_eq!(
        lines_with(&stdout, "RESOLV"),
        ["nameserver 10.0.2.3"],
        "{context}"
    );
    assert_eq!(
        lines_with(&stdout, "ADDRESS"),
        ["10.0.2.100/24"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "SLIRP-LEFT"), ["0"], "{context}");
    assert_eq!(lines_with(&stdout, "ALLOWED"), ["host-side"], "{context}");
    let denied = lines_with(&stdout, "DENIED");
    assert!(
        denied
            .first()
            .is_some_and(|l| l.starts_with("exit=1 ") && l.contains("unreachable")),
        "{context}"
    );
    // The one connection the server saw is the allowed one.
    assert_eq!(server.accepted(), 1, "{context}");
    assert_eq!(
        lines_with(&stdout, "BAD"),
        [r#"exit=125 Error: unknown option for slirp4netns: "allow_host_loopbak""#],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "DEFAULT"), ["slirp4netns"], "{context}");
    // Root's containers may not ask for it.
    let root = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--root"])
        .arg(setup._scratch.path().join("root-store"))
        .args([
            "create",
            "--pull",
            "never",
            "--network",
            "slirp4netns",
            "rl:1",
            "true",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&root.stderr);
    assert_eq!(root.status.code(), Some(125), "{said}");
    assert!(
        said.trim().lines().count() == 1 && said.contains("ordinary users"),
        "{said}"
    );
}

/// Issue 13: `build` as an ordinary user: COPY, RUN steps as rootless
/// containers (on pasta, the user's default network, with owners of
/// subordinate ids and a mode-0600 file in the layer as the step made
/// them), a cached rebuild with the same image ID, and a one-line error
/// for a network only root may use.
#[test]
fn an_ordinary_user_builds_images() {
    rootless_or_skip!();
    if !installed_or_skip("pasta", "pasta (Debian's passt)") {
        return;
    }
    let setup = Rootless::new();
    let script = r#"
mkdir -p "$HOME/ctx" && echo copied > "$HOME/ctx/hello.txt"
cat > "$HOME/ctx/Dockerfile" <<'DOCKERFILE'
FROM rl:1
COPY hello.txt /hello.txt
RUN mkdir /made && echo run > /made/f && chown 1000:1000 /made /made/f && chmod 600 /made/f
RUN id -u > /uid && ip -o link | grep -vc ': lo:' > /links
DOCKERFILE
$S build -q -t built:1 "$HOME/ctx" > "$HOME/first" 2>&1 || { echo "FAILED build"; cat "$HOME/first"; }
echo "RESULT $($S run --rm --network none built:1 sh -c 'cat /hello.txt; stat -c %u:%g:%a /made /made/f; cat /made/f; cat /uid /links' | tr '\n' ' ')"
$S build -t built:2 "$HOME/ctx" > "$HOME/second" 2>&1 || { echo "FAILED rebuild"; cat "$HOME/second"; }
echo "CACHED $(grep -c CACHED "$HOME/second")"
echo "SAME $([ "$($S images -q built:1)" = "$($S images -q built:2)" ] && echo yes)"
$S build --network user-defined -t built:3 "$HOME/ctx" > "$HOME/third" 2>&1
echo "BAD-EXIT $?"
grep -v '^#' "$HOME/third" | grep . | sed 's/^/BAD-SAYS /'
echo "IMAGES $($S images --format '{{.Repository}}' | sort -u | tr '\n' ' ')"
"#;
    let (stdout, context) = setup.run(script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(
        lines_with(&stdout, "RESULT"),
        ["copied 1000:1000:755 1000:1000:600 run 0 1"],
        "{context}"
    );
    // The three steps after FROM come from the cache.
    assert_eq!(lines_with(&stdout, "CACHED"), ["3"], "{context}");
    assert_eq!(lines_with(&stdout, "SAME"), ["yes"], "{context}");
    assert_eq!(lines_with(&stdout, "BAD-EXIT"), ["1"], "{context}");
    let says = lines_with(&stdout, "BAD-SAYS");
    assert!(
        says.len() == 1 && says[0].contains("user-defined") && says[0].contains("root"),
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "IMAGES"), ["built rl"], "{context}");
}

/// Issue 13: the everyday commands as an ordinary user: named volumes
/// (kept from one container to the next, `volume ls/rm/prune`), a bind
/// of a directory of the user's, `top`, `stats`, `update --restart`,
/// `rename`, `wait`, `attach` and `events` work; `pause` and `update`
/// with limits fail with one line (no delegated cgroup), as rootless
/// podman's do on a host without one.
#[test]
fn an_ordinary_users_everyday_commands_work_or_say_why_not() {
    rootless_or_skip!();
    let setup = Rootless::new();
    let script = r#"
$S volume create keep >/dev/null || echo "FAILED volume create"
$S run --rm --network none -v keep:/d rl:1 sh -c 'echo kept > /d/f && chown 1000:1000 /d/f' || echo "FAILED write volume"
echo "VOLUME-DATA $($S run --rm --network none -v keep:/d rl:1 stat -c '%u:%g %n' /d/f) $($S run --rm --network none -v keep:/d rl:1 cat /d/f)"
echo "VOLUME-LS $($S volume ls -q | tr '\n' ' ')"
$S volume rm keep >/dev/null || echo "FAILED volume rm"
$S volume create spare >/dev/null || echo "FAILED volume create spare"
$S run --network none --name anon -v /anon rl:1 sh -c : || echo "FAILED anonymous volume"
$S rm anon >/dev/null || echo "FAILED rm anon"
$S volume prune -f >/dev/null || echo "FAILED volume prune"
echo "VOLUME-LEFT $($S volume ls -q | tr '\n' ' ')"
mkdir "$HOME/host" && echo from-host > "$HOME/host/in"
$S run --rm --network none -v "$HOME/host:/h" rl:1 sh -c 'cat /h/in > /h/out' || echo "FAILED bind"
echo "BIND $(cat "$HOME/host/out") $(stat -c %U "$HOME/host/out")"
$S run -d --name box --network none rl:1 sleep 1000 >/dev/null || echo "FAILED run box"
echo "TOP $($S top box | awk 'NR > 1 {print $(NF-1), $NF}')"
echo "STATS $($S stats --no-stream --format '{{.Name}} {{.PIDs}}' box)"
paused=$($S pause box 2>&1); echo "PAUSE-RUN exit=$? $paused"
echo "PAUSED-STATE $($S inspect -f '{{.State.Status}}' box)"
limit=$($S update -m 64m box 2>&1); echo "UPDATE-LIMIT exit=$? $limit"
$S update --restart unless-stopped box >/dev/null || echo "FAILED update --restart"
echo "RESTART $($S inspect -f '{{.HostConfig.RestartPolicy.Name}}' box)"
$S rename box renamed || echo "FAILED rename"
echo "RENAMED $($S ps --format '{{.Names}}')"
$S rm -f renamed >/dev/null || echo "FAILED rm renamed"
$S run -d --name waited --network none rl:1 sh -c 'sleep 0.5; echo said; exit 7' >/dev/null || echo "FAILED run waited"
echo "ATTACH $($S attach waited)"
echo "WAIT $($S wait waited)"
echo "EVENTS $($S events --since 5m --until 0s --filter container=waited --format '{{.Action}}' | tr '\n' ' ')"
$S rm waited >/dev/null || echo "FAILED rm waited"
"#;
    let (stdout, context) = setup.run(script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(
        lines_with(&stdout, "VOLUME-DATA"),
        ["1000:1000 /d/f kept"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "VOLUME-LS"), ["keep"], "{context}");
    // prune removes the anonymous volume of a removed container.
    assert_eq!(lines_with(&stdout, "VOLUME-LEFT"), ["spare"], "{context}");
    assert_eq!(
        lines_with(&stdout, "BIND"),
        [format!("from-host {}", setup.user.name)],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "TOP"), ["sleep 1000"], "{context}");
    assert_eq!(lines_with(&stdout, "STATS"), ["box 1"], "{context}");
    assert_one_failure(
        &stdout,
        &context,
        "PAUSE-RUN",
        1,
        &["rootless: pause needs the freezer", "delegated cgroup"],
    );
    assert_eq!(
        lines_with(&stdout, "PAUSED-STATE"),
        ["running"],
        "{context}"
    );
    assert_one_failure(&stdout, &context, "UPDATE-LIMIT", 1, &["delegated cgroup"]);
    assert!(
        !lines_with(&stdout, "UPDATE-LIMIT")[0].contains("Permission denied"),
        "{context}"
    );
    assert_eq!(
        lines_with(&stdout, "RESTART"),
        ["unless-stopped"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "RENAMED"), ["renamed"], "{context}");
    assert_eq!(lines_with(&stdout, "ATTACH"), ["said"], "{context}");
    assert_eq!(lines_with(&stdout, "WAIT"), ["7"], "{context}");
    assert_eq!(
        lines_with(&stdout, "EVENTS"),
        ["create start attach die"],
        "{context}"
    );
}

/// The rest of `build` as an ordinary user.
mod build;
