//! Issue 16, part 1: another local user reaches nothing of a container's
//! (no setuid root through its mounts, no logs, no volumes), and the
//! overlayfs fallback makes no device node of an image's on the host.
//! The attacker is `nobody` (setpriv), the store root is made by strata
//! in a directory everyone may enter.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

use crate::harness::{as_nobody, euid_program, eventually, stderr, stdout, Env};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// `nobody` ran `what`, and it failed with no output: no euid 0,
/// nothing read.
fn refused(out: &Output, what: &str) {
    assert!(
        !out.status.success() && stdout(out).is_empty(),
        "nobody could use {what}: {:?} {}{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

#[test]
fn issue16_other_users_reach_no_containers_files() {
    let Some(env) = Env::with_public_parent() else {
        return;
    };
    let Some(euid) = euid_program(&env) else {
        return;
    };
    let tar = env.build_image_tar(&[("/bin/euid", &euid, 0o4755)]);
    env.ok(&["import", tar.to_str().unwrap(), "suid:1"]);
    // Inside, set-user-ID programs work as under Docker.
    assert_eq!(
        env.ok(&["run", "--rm", "-u", "nobody", "suid:1", "/bin/euid"]),
        "0\n"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "-v",
        "secrets:/data",
        "suid:1",
        "sh",
        "-c",
        "cp /bin/euid /tmp/made && chmod 4755 /tmp/made && echo vol-secret > /data/s \
         && echo log-secret && touch /tmp/ready && sleep 1000",
    ]);
    let id = env.container("victim").id;
    let dir = env.root().join("containers").join(&id);
    assert!(eventually(10, || dir.join("upper/tmp/ready").exists()));
    let path = |p: &Path| p.to_str().unwrap().to_string();

    // (1) The image's setuid-root program through the running
    // container's mount, (2) the one the container made, through its
    // upper directory.
    for attack in [dir.join("rootfs/bin/euid"), dir.join("upper/tmp/made")] {
        refused(&as_nobody(&[&path(&attack)]), &attack.display().to_string());
    }
    // (3) Its log, its volume, the index; the root cannot be listed.
    let log = dir.join("log.json");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("log-secret"));
    let volume = env.root().join("volumes/secrets/_data/s");
    assert_eq!(std::fs::read_to_string(&volume).unwrap(), "vol-secret\n");
    for target in [log, volume, env.root().join("strata.db")] {
        refused(&as_nobody(&["cat", &path(&target)]), &path(&target));
    }
    refused(&as_nobody(&["ls", &path(env.root())]), "the root's listing");
    assert_eq!(mode(env.root()), 0o711);
    for entry in std::fs::read_dir(env.root()).unwrap().flatten() {
        if entry.file_name() != "mounts" {
            assert_eq!(mode(&entry.path()) & 0o077, 0, "{:?}", entry.path());
        }
    }

    // A process of the container's that runs as a host user's uid lets
    // that user into /proc/PID/root, as under Docker; a mount seen
    // there belongs to another mount namespace, so set-user-ID does
    // not apply (the kernel's rule; see docs/store.md).
    env.ok(&[
        "run",
        "-d",
        "--name",
        "as-nobody",
        "-u",
        "nobody",
        "suid:1",
        "sleep",
        "1000",
    ]);
    let pid = env.container("as-nobody").state.pid;
    let out = as_nobody(&[&format!("/proc/{pid}/root/bin/euid")]);
    assert_ne!(stdout(&out), "0\n", "{}", stderr(&out));
    env.ok(&["rm", "-f", "as-nobody"]);

    // A stopped container's writable view is mounted where its root
    // was, as private.
    env.ok(&["stop", "-t", "0", "victim"]);
    let view = env.ok(&["mount", "victim"]).trim().to_string();
    assert_eq!(Path::new(&view), dir.join("rootfs"));
    assert!(Path::new(&view).join("tmp/made").exists());
    for attack in ["bin/euid", "tmp/made"] {
        let p = format!("{view}/{attack}");
        refused(&as_nobody(&[&p]), &p);
    }
    env.ok(&["umount", "victim"]);

    // An image mount stays readable by others, set-user-ID ignored, from
    // either driver (docs/fs.md, "Kernel image mounts").
    for driver in ["fuse", "overlay"] {
        let mp = env
            .ok(&["mount", "--driver", driver, "suid:1"])
            .trim()
            .to_string();
        assert!(mp.starts_with(env.root().join("mounts").to_str().unwrap()));
        let out = as_nobody(&["cat", &format!("{mp}/etc/group")]);
        assert_eq!(
            stdout(&out),
            "root:x:0:\nnogroup:x:65534:\n",
            "{driver}: {}",
            stderr(&out)
        );
        let out = as_nobody(&[&format!("{mp}/bin/euid")]);
        assert_eq!(stdout(&out), "65534\n", "{driver}: {}", stderr(&out));
        env.ok(&["umount", &mp]);
    }
    assert_eq!(mode(&env.root().join("mounts/logs")), 0o700);
    assert_eq!(mode(&env.root().join("views")), 0o700);
    env.ok(&["rm", "-f", "victim"]);
    env.ok(&["volume", "rm", "secrets"]);
}

#[test]
fn issue16_a_store_an_older_strata_made_wide_is_made_private_when_opened() {
    let Some(env) = Env::with_public_parent() else {
        return;
    };
    env.ok(&[
        "run",
        "--name",
        "old",
        "-v",
        "vol:/data",
        "bb",
        "sh",
        "-c",
        "echo hi > /data/x; echo logged",
    ]);
    // What an older strata left: everything 0755 or 0644.
    let root = env.root();
    let wide = |p: &Path| {
        let m = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    wide(root);
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        wide(&entry.path());
    }
    let logs = root.join("mounts/logs");
    std::fs::create_dir_all(&logs).unwrap();
    wide(&logs);
    let containers = root.join("containers");
    let listing = as_nobody(&["ls", containers.to_str().unwrap()]);
    assert_eq!(stdout(&listing).len(), 65, "the old layout lets nobody in");

    env.ok(&["ps", "-a"]);
    assert_eq!(mode(root), 0o711);
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        let m = mode(&entry.path());
        if entry.file_name() == "mounts" {
            assert_eq!(m, 0o755);
        } else {
            assert_eq!(m & 0o077, 0, "{:?} {m:o}", entry.path());
        }
    }
    assert_eq!(mode(&root.join("mounts/logs")), 0o700);
    assert_eq!(mode(&root.join("strata.db")), 0o600);
    refused(
        &as_nobody(&["ls", containers.to_str().unwrap()]),
        "containers/ of an old store",
    );
    // Once private, an open changes nothing (stats, no chmod): the
    // directories' change times stay (SQLite's files change by writes).
    let ctimes = || -> Vec<_> {
        std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .chain([root.to_path_buf()])
            .filter(|p| p.is_dir())
            .map(|p| {
                let m = std::fs::metadata(&p).unwrap();
                (p, m.ctime(), m.ctime_nsec())
            })
            .collect()
    };
    let before = ctimes();
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.ok(&["ps", "-a"]);
    assert_eq!(before, ctimes());
    env.ok(&["rm", "-v", "old"]);
}

#[test]
fn a_new_store_has_its_modes_whatever_the_umask() {
    let Some(env) = Env::new() else {
        return;
    };
    for umask in ["000", "077"] {
        let root = env.dir.path().join(format!("store-{umask}"));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "umask {umask}; exec \"$0\" --root \"$1\" images -q"
            ))
            .arg(&env.bin)
            .arg(&root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(mode(&root), 0o711, "umask {umask}");
        assert_eq!(mode(&root.join("mounts")), 0o755, "umask {umask}");
        for private in ["containers", "volumes", "tmp", "files", "blobs", "locks"] {
            assert_eq!(mode(&root.join(private)), 0o700, "umask {umask} {private}");
        }
        for db in ["strata.db", "strata.db-wal", "strata.db-shm"] {
            assert_eq!(mode(&root.join(db)), 0o600, "umask {umask} {db}");
        }
    }
}

/// An image with a character device 1:3 (/dev/null's numbers, mode
/// 0666) outside /dev, and a hard link to it.
fn device_image(env: &Env) -> std::path::PathBuf {
    env.build_image_tar_with(&[], |dir| {
        let node = dir.join("data/dev-null-copy");
        nix::sys::stat::mknod(
            &node,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .expect("mknod");
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::hard_link(&node, dir.join("data/dev-null-link")).unwrap();
    })
}

/// Inside: which of the image's device nodes exist, whether one could be
/// written, whether a device the container makes could be, and the
/// root's mount options.
const DEVICE_PROBE: &str = "for f in /data/dev-null-copy /data/dev-null-link; do \
       [ -e $f ] && echo exists $f; [ -c $f ] && echo x > $f && echo wrote $f; done; \
     busybox mknod /tmp/made c 1 3 && echo x > /tmp/made && echo wrote /tmp/made; \
     grep ' / / ' /proc/self/mountinfo";

#[test]
fn issue16_overlay_fallback_makes_no_device_of_an_images_on_the_host() {
    let Some(env) = Env::with_public_parent() else {
        return;
    };
    let tar = device_image(&env);
    env.ok(&["import", tar.to_str().unwrap(), "devs:1"]);
    for user in ["0", "1000"] {
        let out = env
            .cmd(&[
                "run",
                "--rm",
                "-u",
                user,
                "devs:1",
                "sh",
                "-c",
                DEVICE_PROBE,
            ])
            .env("STRATA_ROOTFS", "overlay")
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(
            !text.contains("wrote"),
            "user {user}: {text}{}",
            stderr(&out)
        );
        // The image's device nodes are left out.
        assert!(!text.contains("exists"), "user {user}: {text}");
        let root_line = text.lines().last().unwrap_or_default();
        assert!(
            root_line.contains("overlay") && root_line.contains("nodev"),
            "{text}"
        );
    }
    // Nothing but whiteouts (char 0/0) is a device under layer-dirs/,
    // which is private.
    let layer_dirs = env.root().join("layer-dirs");
    assert_eq!(mode(&layer_dirs), 0o700);
    let mut stack = vec![layer_dirs];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            seen += 1;
            if md.is_dir() {
                stack.push(e.path());
            }
            let device = md.file_type().is_char_device() || md.file_type().is_block_device();
            assert!(!device || md.rdev() == 0, "device {:?}", e.path());
        }
    }
    assert!(seen > 10, "the layer was extracted");
    // The FUSE root shows the nodes, which do not open as devices.
    let out = env.run(&["run", "--rm", "devs:1", "sh", "-c", DEVICE_PROBE]);
    assert!(!stdout(&out).contains("wrote"), "{}", stdout(&out));
}

#[test]
fn issue16_run_rm_whose_overlay_mount_fails_leaves_nothing() {
    let Some(env) = Env::new() else {
        return;
    };
    // The store lost the image's file contents: the extraction fails.
    for d in std::fs::read_dir(env.root().join("files"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    let out = env
        .cmd(&["run", "--rm", "--name", "doomed", "bb", "true"])
        .env("STRATA_ROOTFS", "overlay")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("/files/") && err.contains("No such file or directory"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    assert!(
        eventually(2, || env.mounts().is_empty()),
        "{:?}",
        env.mounts()
    );
    let left: Vec<_> = std::fs::read_dir(env.root().join("layer-dirs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Without --rm the container stays, created, with the error.
    let out = env
        .cmd(&["run", "--name", "kept", "bb", "true"])
        .env("STRATA_ROOTFS", "overlay")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        env.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]),
        "kept Created\n"
    );
    env.ok(&["rm", "kept"]);
}

#[test]
fn issue16_parallel_runs_of_a_fresh_image_extract_it_once() {
    let Some(env) = Env::new() else {
        return;
    };
    let tar = env.build_image_tar_with(&[], |dir| {
        std::fs::write(dir.join("data/big"), vec![7u8; 8 << 20]).unwrap();
    });
    env.ok(&["import", tar.to_str().unwrap(), "fresh:1"]);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            env.cmd(&["run", "--rm", "fresh:1", "wc", "-c", "/data/big"])
                .env("STRATA_ROOTFS", "overlay")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "8388608 /data/big");
    }
    let names: Vec<String> = std::fs::read_dir(env.root().join("layer-dirs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "one extraction, no leftovers: {names:?}");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}

/// The container's root holds CAP_MKNOD (as under Docker, whose device
/// cgroup refuses what it makes): a device node it makes in /dev, in a
/// volume or in a bind opens nothing, while /dev's own devices work; with
/// --read-only the image's device nodes stay closed too.
#[test]
fn issue16_a_device_node_the_container_makes_opens_nothing() {
    let Some(env) = Env::new() else {
        return;
    };
    let tar = device_image(&env);
    env.ok(&["import", tar.to_str().unwrap(), "devs:1"]);
    let host_dir = env.dir.path().join("bound");
    std::fs::create_dir(&host_dir).unwrap();
    let bind = format!("{}:/bound", host_dir.display());
    let probe = "for d in /dev /vol /bound; do busybox mknod $d/made c 1 3 || echo no-mknod $d; \
                   echo x > $d/made && echo wrote $d; done; \
                 echo x > /dev/null && echo null-ok; head -c 4 /dev/urandom | wc -c; \
                 echo x > /data/dev-null-copy && echo wrote-image-device";
    for (volume, extra) in [("vol1:/vol", &[][..]), ("vol2:/vol", &["--read-only"][..])] {
        let mut args = vec!["run", "--rm", "-v", volume, "-v", &bind];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["devs:1", "sh", "-c", probe]);
        let out = env.run(&args);
        let text = stdout(&out);
        assert!(!text.contains("wrote"), "{extra:?}: {text}{}", stderr(&out));
        assert!(
            text.contains("null-ok\n4\n"),
            "{extra:?}: {text}{}",
            stderr(&out)
        );
        assert!(!text.contains("no-mknod"), "{extra:?}: {text}");
        std::fs::remove_file(host_dir.join("made")).unwrap();
    }
    // --privileged: every device, as under Docker.
    let out = env.ok(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        "vol3:/vol",
        "devs:1",
        "sh",
        "-c",
        "for d in /dev /vol; do busybox mknod $d/made c 1 3 && echo x > $d/made && echo wrote; done",
    ]);
    assert_eq!(out, "wrote\nwrote\n");
    env.ok(&["volume", "rm", "vol1", "vol2", "vol3"]);
}
