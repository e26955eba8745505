use crate::env_or_skip;
use crate::harness::{eventually, rand_suffix, stderr, stdout};

#[test]
fn diff_commit_cp_export() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "--name",
        "c1",
        "bb",
        "sh",
        "-c",
        "echo hi > /root/new; rm /bin/grep; mkdir -p /data/x; echo y > /data/x/f",
    ]);
    let diff = env.ok(&["diff", "c1"]);
    for line in [
        "C /bin",
        "D /bin/grep",
        "A /data/x",
        "A /data/x/f",
        "A /root/new",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line} in {diff}");
    }
    assert!(
        !diff.contains(" /proc") && !diff.contains("/etc/hostname"),
        "{diff}"
    );
    let id = env.ok(&["commit", "-m", "msg", "c1", "bb:two"]);
    assert!(id.starts_with("sha256:"));
    let out = env.ok(&[
        "run",
        "--rm",
        "bb:two",
        "sh",
        "-c",
        "cat /root/new /data/x/f; test -e /bin/grep || echo no-grep",
    ]);
    assert_eq!(out, "hi\ny\nno-grep\n");
    let dest = env.root().join("out");
    env.ok(&["cp", "c1:/data", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dest.join("x/f")).unwrap(), "y\n");
    let host_file = env.root().join("hostfile");
    std::fs::write(&host_file, "from host\n").unwrap();
    env.ok(&["cp", host_file.to_str().unwrap(), "c1:/root"]);
    let exported = env.root().join("export.tar");
    env.ok(&["export", "-o", exported.to_str().unwrap(), "c1"]);
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&exported)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "root/hostfile"),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{listing}"
    );
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

#[test]
fn cp_and_export_during_a_symlink_swap_touch_no_host_path() {
    let env = env_or_skip!();
    let tag = rand_suffix();
    // Inside, /data/d flips between a directory holding a file and a
    // symlink to / (where, on the host, a marker lives under /tmp).
    let host_marker_dir = std::path::PathBuf::from(format!("/tmp/strata-swap-{tag}"));
    std::fs::create_dir(&host_marker_dir).unwrap();
    std::fs::write(host_marker_dir.join("host-secret"), "secret").unwrap();
    let script = format!(
        "mkdir -p /data; while true; do rm -rf /data/d; mkdir /data/d; echo ok > /data/d/file; rm -rf /data/d; ln -s / /data/d; \
         rm -f /data/e; ln -s /tmp/strata-swap-{tag} /data/e; done"
    );
    env.ok(&["run", "-d", "--name", "swap", "bb", "sh", "-c", &script]);
    let out_dir = env.root().join("cp-out");
    for i in 0..20 {
        let dest = out_dir.join(i.to_string());
        std::fs::create_dir_all(&dest).unwrap();
        let _ = env.run(&["cp", "swap:/data/d", dest.to_str().unwrap()]);
        let _ = env.run(&["cp", "swap:/data/e/host-secret", dest.to_str().unwrap()]);
        // Into the container through the symlink: lands inside, never on the host.
        let src = env.root().join(format!("in-{i}"));
        std::fs::write(&src, "in").unwrap();
        let _ = env.run(&["cp", src.to_str().unwrap(), "swap:/data/e"]);
        let _ = env.run(&["cp", src.to_str().unwrap(), "swap:/data/d"]);
        let tar = env.root().join(format!("export-{i}.tar"));
        let _ = env.run(&["export", "-o", tar.to_str().unwrap(), "swap"]);
        let listing = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&tar)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
        assert!(
            !listing.contains("host-secret"),
            "export reached the host: {listing}"
        );
    }
    // Nothing copied out is host content; nothing copied in reached the host.
    let found = std::process::Command::new("grep")
        .arg("-r")
        .arg("-l")
        .arg("secret")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "host file copied out: {}",
        String::from_utf8_lossy(&found.stdout)
    );
    let host_entries: Vec<_> = std::fs::read_dir(&host_marker_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        host_entries,
        vec![std::ffi::OsString::from("host-secret")],
        "cp into the container wrote on the host"
    );
    assert!(!std::path::Path::new("/in-0").exists());
    env.ok(&["rm", "-f", "swap"]);
    std::fs::remove_dir_all(&host_marker_dir).unwrap();
    assert!(eventually(2, || env.mounts().is_empty()));
}

/// The overlayfs fallback extracts layers under `<root>/layer-dirs/`:
/// `system df` counts them, gc keeps those a container's image uses and
/// removes the rest.
#[test]
fn gc_removes_extracted_layer_dirs_no_container_uses() {
    let env = env_or_skip!();
    let overlay = |args: &[&str]| {
        let out = env
            .cmd(args)
            .env("STRATA_ROOTFS", "overlay")
            .output()
            .expect("run strata");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(
        overlay(&["run", "--name", "ov", "bb", "cat", "/etc/group"]),
        "root:x:0:\nnogroup:x:65534:\n"
    );
    let dirs = || -> Vec<String> {
        std::fs::read_dir(env.root().join("layer-dirs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let extracted = dirs();
    assert_eq!(extracted.len(), 1, "{extracted:?}");
    let df = env.ok(&["system", "df"]);
    assert!(
        df.contains("Extracted layers (overlayfs fallback): 1 directories"),
        "{df}"
    );
    assert!(df.contains("; 0B reclaimable"), "{df}");
    // A stale extraction and one of a layer the store no longer has.
    let layer_dirs = env.root().join("layer-dirs");
    std::fs::create_dir(layer_dirs.join(format!("{:064x}", 7))).expect("mkdir");
    let stale = layer_dirs.join(".tmp-killed");
    std::fs::create_dir(&stale).expect("mkdir");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::open(&stale)
        .and_then(|f| f.set_modified(old))
        .expect("age the stale extraction");
    let fresh = layer_dirs.join(".tmp-running");
    std::fs::create_dir(&fresh).expect("mkdir");

    // The container still exists (stopped): its layers stay.
    let gc = env.ok(&["gc"]);
    assert!(gc.contains(" 2 extracted layer directories"), "{gc}");
    let mut left = dirs();
    left.sort();
    assert_eq!(left, vec![".tmp-running".to_string(), extracted[0].clone()]);
    env.ok(&["rm", "ov"]);
    let df = env.ok(&["system", "df"]);
    assert!(!df.contains("; 0B reclaimable"), "{df}");
    let gc = env.ok(&["gc"]);
    assert!(gc.contains(" 1 extracted layer directories"), "{gc}");
    assert_eq!(dirs(), vec![".tmp-running".to_string()]);
    assert!(!env.ok(&["system", "df"]).contains("Extracted layers"));
    let layer_locks = || -> Vec<String> {
        std::fs::read_dir(env.root().join("locks"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("layer-"))
            .collect()
    };
    assert_eq!(
        layer_locks(),
        Vec::<String>::new(),
        "gc removed the lock too"
    );
    // The image is still there: a new container extracts it again.
    assert_eq!(overlay(&["run", "--rm", "bb", "echo", "again"]), "again\n");
    assert_eq!(dirs().len(), 2);
    assert_eq!(layer_locks().len(), 1);

    // An extraction whose layer's lock is held is being written: gc
    // leaves it, however old; once nobody holds the lock, it goes.
    let hex = format!("{:064x}", 9);
    let writing = layer_dirs.join(format!(".tmp-{hex}-0000abcd"));
    std::fs::create_dir(&writing).expect("mkdir");
    std::fs::File::open(&writing)
        .and_then(|f| f.set_modified(old))
        .expect("age it");
    let lock = strata::store::layer_dirs::LayerLock::exclusive(env.root(), &hex).unwrap();
    env.ok(&["gc"]);
    assert!(writing.exists());
    drop(lock);
    let gc = env.ok(&["gc"]);
    assert!(gc.contains(" 1 extracted layer directories"), "{gc}");
    assert!(!writing.exists());
    assert_eq!(
        layer_locks(),
        Vec::<String>::new(),
        "locks of layers with no directory go"
    );
}

/// `cp` out of a container makes a FIFO as one (as Docker does) but never
/// a device node on the host: a container could otherwise leave a 0666
/// node of the host's disk in the directory of whoever copies from it.
/// Alone, a device node is an error; within a directory it is left out,
/// with a warning.
#[test]
fn cp_makes_fifos_but_no_device_nodes_on_the_host() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "--name",
        "nodes",
        "bb",
        "sh",
        "-c",
        "mkdir /x && mkfifo -m 640 /x/fifo && mknod -m 666 /x/disk b 8 0 && echo f > /x/file",
    ]);
    let out = env.root().join("cp-nodes");
    std::fs::create_dir(&out).unwrap();
    let dir = env.run(&["cp", "nodes:/x", out.join("x").to_str().unwrap()]);
    assert!(dir.status.success(), "{}", stderr(&dir));
    assert_eq!(
        stderr(&dir),
        "strata cp: left out x/disk: a device node (strata cp does not make device nodes on the host)\n"
    );
    let fifo = std::fs::symlink_metadata(out.join("x/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o640);
    assert_eq!(std::fs::read_to_string(out.join("x/file")).unwrap(), "f\n");
    assert!(!out.join("x/disk").exists());
    let alone = env.run(&["cp", "nodes:/x/disk", out.to_str().unwrap()]);
    assert_eq!(alone.status.code(), Some(1));
    assert_eq!(
        stderr(&alone),
        "Error: nodes:/x/disk is a device node: strata cp does not make device nodes on the host\n"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("x")],
        "staging left behind"
    );
    env.ok(&["rm", "nodes"]);
}

/// Runs `strata cp - CONTAINER:DEST` with `tar` on its stdin.
fn cp_tar_in(env: &crate::harness::Env, tar: &[u8], dest: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = env
        .cmd(&["cp", "-", dest])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    child.wait_with_output().unwrap()
}

/// A tar of `entries`: (path, type, link target or device numbers).
fn special_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, extra) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o640);
        h.set_size(if *kind == tar::EntryType::Regular {
            2
        } else {
            0
        });
        match kind {
            tar::EntryType::Link => {
                h.set_link_name(extra).unwrap();
            }
            tar::EntryType::Char => {
                let (major, minor) = extra.split_once(':').unwrap();
                h.set_device_major(major.parse().unwrap()).unwrap();
                h.set_device_minor(minor.parse().unwrap()).unwrap();
            }
            _ => {}
        }
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"f\n"
        } else {
            b""
        };
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `cp` into a container keeps what Docker's keeps: FIFOs, device nodes
/// (which do not open there: its root is `nodev`) and hard links, from a
/// host path or a tar on stdin; a hard link reaches only what the
/// archive put in the container, never through a symlink the container
/// made, never with `..`.
#[test]
fn cp_into_a_container_keeps_fifos_devices_and_hard_links() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "into",
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "ln -s /etc /tmp/evil; sleep 1000",
    ]);
    // From host paths: a FIFO alone, a device node alone, a directory
    // holding a FIFO.
    let host = env.root().join("cp-in");
    std::fs::create_dir_all(host.join("d")).unwrap();
    for fifo in [host.join("fifo"), host.join("d/fifo")] {
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
    }
    env.ok(&["cp", host.join("fifo").to_str().unwrap(), "into:/tmp/"]);
    env.ok(&["cp", "/dev/null", "into:/tmp/null"]);
    env.ok(&["cp", host.join("d").to_str().unwrap(), "into:/tmp/"]);
    // From a tar: a file and its hard link, a FIFO, a device node.
    let tar = special_tar(&[
        ("t/file", tar::EntryType::Regular, ""),
        ("t/link", tar::EntryType::Link, "t/file"),
        ("t/fifo", tar::EntryType::Fifo, ""),
        ("t/dev", tar::EntryType::Char, "1:3"),
    ]);
    let out = cp_tar_in(&env, &tar, "into:/tmp");
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = env.ok(&[
        "exec", "into", "sh", "-c",
        "stat -c '%n %F %a %t:%T' /tmp/fifo /tmp/null /tmp/d/fifo /tmp/t/fifo /tmp/t/dev; \
         stat -c %i /tmp/t/file /tmp/t/link | uniq | wc -l; stat -c %h /tmp/t/link; cat /tmp/t/link",
    ]);
    assert_eq!(
        listing,
        "/tmp/fifo fifo 644 0:0\n/tmp/null character special file 666 1:3\n\
         /tmp/d/fifo fifo 644 0:0\n/tmp/t/fifo fifo 640 0:0\n\
         /tmp/t/dev character special file 640 1:3\n1\n2\nf\n",
    );
    // Hard links that would leave the copy: through the container's
    // symlink to /etc, or up with `..`.
    for target in ["tmp/evil/passwd", "../../etc/passwd"] {
        let tar = special_tar(&[("x", tar::EntryType::Link, target)]);
        let out = cp_tar_in(&env, &tar, "into:/");
        assert_eq!(out.status.code(), Some(1), "{target}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    let passwd = std::fs::metadata("/etc/passwd").unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&passwd), 1);
    let absent = env.run(&["exec", "into", "test", "-e", "/x"]);
    assert!(!absent.status.success());
    env.ok(&["rm", "-f", "into"]);
}

/// `export` and `cp` out of a container write a file's later names as
/// hard links to its first, as Docker's archives do: an import of the
/// export, and the copy, keep one file with three names.
#[test]
fn export_and_cp_keep_hard_links() {
    use std::os::unix::fs::MetadataExt;
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "--name",
        "links",
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "mkdir /l && echo a > /l/one && ln /l/one /l/two && mkdir /l/d && ln /l/one /l/d/three",
    ]);
    let exported = env.root().join("links.tar");
    env.ok(&["export", "-o", exported.to_str().unwrap(), "links"]);
    let mut archive = tar::Archive::new(std::fs::File::open(&exported).unwrap());
    let mut regular = 0;
    let mut hard = 0;
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.trim_start_matches("./").starts_with("l/") {
            match entry.header().entry_type() {
                tar::EntryType::Regular => regular += 1,
                tar::EntryType::Link => hard += 1,
                _ => {}
            }
        }
    }
    assert_eq!((regular, hard), (1, 2));
    env.ok(&["import", exported.to_str().unwrap(), "links:1"]);
    let inside = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "links:1",
        "sh",
        "-c",
        "stat -c %i /l/one /l/two /l/d/three | uniq | wc -l; stat -c %h /l/two",
    ]);
    assert_eq!(inside, "1\n3\n");
    let out = env.root().join("links-out");
    env.ok(&["cp", "links:/l", out.to_str().unwrap()]);
    let ino = |p: &str| std::fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("one"), ino("two"));
    assert_eq!(ino("one"), ino("d/three"));
    assert_eq!(std::fs::read_to_string(out.join("d/three")).unwrap(), "a\n");
    env.ok(&["rm", "links"]);
}
