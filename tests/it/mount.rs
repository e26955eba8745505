//! `strata mount`: images as directories, the layer view, dead daemons,
//! and mounts pinning their image.

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn fuse_available() -> bool {
    if !require_root() {
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("/dev/fuse is required in CI");
        }
        eprintln!("SKIPPED: no /dev/fuse");
        return false;
    }
    true
}

/// Unmounts everything mounted under this test's directory on drop.
struct MountGuard<'a>(&'a Env);

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        wait_for_view_builders(self.0);
        let _ = self
            .0
            .run(&["umount", self.0.root.join("mounts").to_str().unwrap()]);
        let base = self.0.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines() {
            if let Some(mp) = line.split(' ').nth(4) {
                if mp.starts_with(&base) {
                    let _ = Command::new("umount").arg("-l").arg(mp).status();
                }
            }
        }
    }
}

/// The pids of the view builders (`strata __build-view`, started by a
/// first mount) working on this test's store.
fn view_builders(env: &Env) -> Vec<i32> {
    let root = env.root.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for item in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = item.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(item.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.contains(&&b"__build-view"[..]) && args.contains(&root.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits (up to 60 s) for this store's view builders to finish, so that
/// none outlives the test.
fn wait_for_view_builders(env: &Env) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !view_builders(env).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn two_layer_image(env: &Env) {
    // Layer 1: a tree; layer 2 deletes a file, replaces a directory (opaque) and adds one.
    let tree = env.path("l1");
    make_tree(&tree, 60, 5, 5000);
    std::fs::write(tree.join("gone.txt"), "bye").unwrap();
    std::fs::create_dir_all(tree.join("opq/old")).unwrap();
    std::fs::write(tree.join("opq/old/file"), "old").unwrap();
    let l2 = env.path("l2");
    std::fs::create_dir_all(l2.join("opq")).unwrap();
    std::fs::write(l2.join(".wh.gone.txt"), "").unwrap();
    std::fs::write(l2.join("opq/.wh..wh..opq"), "").unwrap();
    std::fs::write(l2.join("opq/new"), "new").unwrap();
    std::fs::write(l2.join("added.txt"), "added").unwrap();
    tar_dir(&tree, &env.path("l1.tar"));
    tar_dir(&l2, &env.path("l2.tar"));
    // A two-layer docker-archive, written by hand.
    let l1 = std::fs::read(env.path("l1.tar")).unwrap();
    let l2 = std::fs::read(env.path("l2.tar")).unwrap();
    let ids = [sha256_hex(&l1), sha256_hex(&l2)];
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": ids.iter().map(|h| format!("sha256:{h}")).collect::<Vec<_>>()}})).unwrap();
    let chex = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{"Config": format!("blobs/sha256/{chex}"), "RepoTags": ["two:1"], "Layers": ids.iter().map(|h| format!("blobs/sha256/{h}")).collect::<Vec<_>>()}])).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        (format!("blobs/sha256/{}", ids[0]), l1),
        (format!("blobs/sha256/{}", ids[1]), l2),
        (format!("blobs/sha256/{chex}"), config),
        ("manifest.json".to_string(), manifest),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_path(&name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    std::fs::write(env.path("two.tar"), b.into_inner().unwrap()).unwrap();
    env.ok(&["load", "-i", env.path("two.tar").to_str().unwrap()]);
}

#[test]
fn mount_shows_the_merged_image_and_its_layers() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    two_layer_image(&env);
    let mp = env.ok(&["mount", "two:1"]).trim().to_string();
    let mp = Path::new(&mp);
    assert!(mp.starts_with(&env.root));
    assert!(!mp.join("gone.txt").exists());
    assert!(!mp.join("opq/old").exists());
    assert_eq!(std::fs::read_to_string(mp.join("opq/new")).unwrap(), "new");
    assert_eq!(
        std::fs::read_to_string(mp.join("added.txt")).unwrap(),
        "added"
    );
    // Every file of the first layer that was not deleted reads back identically.
    let listing = sh(&format!(
        "cd {} && find d* -type f -exec sha256sum {{}} + | sort",
        mp.display()
    ));
    let expected = sh(&format!(
        "cd {} && find d* -type f -exec sha256sum {{}} + | sort",
        env.path("l1").display()
    ));
    assert_eq!(listing, expected);
    // Read-only.
    assert!(std::fs::write(mp.join("added.txt"), "x").is_err());
    assert!(env.ok(&["mount"]).contains(mp.to_str().unwrap()));
    // The mount pins the image.
    let id = env.ok(&["images", "-q"]).trim().to_string();
    assert!(env.fails(&["rmi", "-f", &id]).contains("mounted"));
    // The layer view.
    let lv = env.path("layers");
    env.ok(&["mount", "--layers", "two:1", lv.to_str().unwrap()]);
    let names: Vec<String> = std::fs::read_dir(&lv)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"merged".to_string()));
    let second = names.iter().find(|n| n.starts_with("2-")).unwrap();
    let whiteout_listing = sh(&format!("ls -a {}", lv.join(second).display()));
    assert!(
        whiteout_listing.contains("gone.txt") || whiteout_listing.contains(".wh.gone.txt"),
        "{whiteout_listing}"
    );
    env.ok(&["umount", lv.to_str().unwrap()]);
    env.ok(&["umount", "two:1"]);
    assert_eq!(env.ok(&["mount", "-q"]), "");
    assert!(!std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(mp.to_str().unwrap()));
    env.ok(&["rmi", "two:1"]);
    env.fsck_clean();
}

#[test]
fn a_killed_daemon_is_cleaned_up_by_the_next_command() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    let tar = busybox_rootfs_tar(&env, "k");
    env.ok(&["import", tar.to_str().unwrap(), "k:1"]);
    let mp = env
        .ok(&["mount", "--driver", "fuse", "k:1"])
        .trim()
        .to_string();
    let listing = env.ok(&["mount"]);
    let pid: i32 = listing
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    // The next command notices, detaches and forgets it; nothing hangs.
    let start = std::time::Instant::now();
    assert_eq!(env.ok(&["mount", "-q"]), "");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert!(!std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(&mp));
    env.ok(&["rmi", "k:1"]);
    env.fsck_clean();
}

#[test]
fn mount_and_unmount_in_a_loop_leave_nothing_behind() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    let tar = busybox_rootfs_tar(&env, "loop");
    env.ok(&["import", tar.to_str().unwrap(), "loop:1"]);
    for _ in 0..15 {
        let mp = env.ok(&["mount", "loop:1"]).trim().to_string();
        let out = Command::new(format!("{mp}/bin/busybox"))
            .arg("true")
            .status()
            .unwrap();
        assert!(out.success());
        env.ok(&["umount", &mp]);
    }
    assert_eq!(env.ok(&["mount", "-q"]), "");
    let base = env.dir.path().to_string_lossy().into_owned();
    assert!(!std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(&base));
    assert!(env
        .fails(&["umount", "loop:1"])
        .contains("not a strata mount"));
    assert!(env.fails(&["mount", "nosuch:1"]).contains("No such image"));
}

#[test]
fn mount_container_shows_its_writable_view() {
    if !fuse_available() {
        return;
    }
    crate::common::private_network();
    let env = Env::new();
    let _guard = MountGuard(&env);
    let tar = busybox_rootfs_tar(&env, "c");
    env.ok(&["import", tar.to_str().unwrap(), "c:1"]);
    env.ok(&[
        "run",
        "--name",
        "writer",
        "c:1",
        "sh",
        "-c",
        "echo from-container > /note.txt; rm /etc/passwd",
    ]);
    let mp = env.ok(&["mount", "writer"]).trim().to_string();
    let mp = Path::new(&mp);
    assert_eq!(
        std::fs::read_to_string(mp.join("note.txt")).unwrap(),
        "from-container\n"
    );
    assert!(
        !mp.join("etc/passwd").exists(),
        "the container's deletion must show"
    );
    assert!(mp.join("bin/busybox").exists());
    // Writable: a change made here is the container's.
    std::fs::write(mp.join("added-outside.txt"), "x").unwrap();
    assert!(env.ok(&["mount"]).contains(mp.to_str().unwrap()));
    // Docker's start and rm print a second summary line; both must refuse.
    for args in [&["start", "writer"][..], &["rm", "writer"][..]] {
        let out = env.run(args);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is mounted at"),
            "{args:?}"
        );
    }
    env.ok(&["umount", "writer"]);
    let diff = env.ok(&["diff", "writer"]);
    assert!(
        diff.contains("A /added-outside.txt") && diff.contains("D /etc/passwd"),
        "{diff}"
    );
    env.ok(&["rm", "writer"]);
    assert_eq!(env.ok(&["mount", "-q"]), "");
}

#[test]
fn system_prune_removes_stopped_containers_and_gc_collects() {
    if !fuse_available() {
        return;
    }
    crate::common::private_network();
    let env = Env::new();
    let _guard = MountGuard(&env);
    let tar = busybox_rootfs_tar(&env, "p");
    env.ok(&["import", tar.to_str().unwrap(), "p:1"]);
    env.ok(&["run", "--name", "done", "p:1", "true"]);
    env.ok(&["create", "--name", "fresh", "p:1", "true"]);
    let out = env.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(
        env.ok(&["images", "-q"]),
        "",
        "the image is unused once its containers are gone"
    );
    let gc = env.ok(&["gc"]);
    assert!(gc.starts_with("removed "), "{gc}");
    env.fsck_clean();
}

/// Checks the mounted tree of [`sparse_layer`].
fn check_sparse_mount(env: &Env) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mp = env.ok(&["mount", "sparse:1"]).trim().to_string();
    let mp = Path::new(&mp);
    // Directories the tar only implies, at every depth.
    assert_eq!(std::fs::read_to_string(mp.join("a/b/c")).unwrap(), "deep");
    let a = std::fs::metadata(mp.join("a")).unwrap();
    assert!(a.is_dir());
    assert_eq!(a.permissions().mode() & 0o7777, 0o755);
    // An explicit directory keeps its own metadata.
    let d = std::fs::metadata(mp.join("d")).unwrap();
    assert_eq!(d.permissions().mode() & 0o7777, 0o700);
    assert_eq!(std::fs::read_to_string(mp.join("d/e")).unwrap(), "e");
    // Hard links share an inode and count their names, across directories.
    let x = std::fs::metadata(mp.join("x")).unwrap();
    let y = std::fs::metadata(mp.join("d/y")).unwrap();
    assert_eq!(x.ino(), y.ino());
    assert_eq!(x.nlink(), 2);
    let names = sh(&format!("cd {} && find . | sort", mp.display()));
    assert_eq!(names, ".\n./a\n./a/b\n./a/b/c\n./d\n./d/e\n./d/y\n./x\n");
    env.ok(&["umount", "sparse:1"]);
}

/// A layer without directory entries for `a` and `a/b`, an explicit 0700
/// directory, and a hard link into it (the link listed before its
/// directory is, as tar allows for paths it only implies).
fn sparse_layer(env: &Env) {
    let mut t = RawTar::default();
    t.add(RawEntry::file(b"a/b/c", b"deep"));
    t.add(RawEntry::file(b"x", b"linked"));
    let mut d = RawEntry::dir(b"d/");
    d.mode = 0o700;
    t.add(d);
    t.add(RawEntry::file(b"d/e", b"e"));
    t.add(RawEntry::link(b"d/y", b'1', b"x"));
    std::fs::write(env.path("sparse.tar"), t.finish()).unwrap();
    env.ok(&[
        "import",
        env.path("sparse.tar").to_str().unwrap(),
        "sparse:1",
    ]);
}

#[test]
fn lazy_mounts_read_implied_dirs_and_links_also_from_a_migrated_store() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    sparse_layer(&env);
    check_sparse_mount(&env);
    // Back to schema 2, as a store written before the directory index
    // (and the build cache of schema 4 and the network tables of schema 5, the snapshots of schema 6,
    // the events of schema 7, the write-behind batches of schema 8) existed; the next command
    // migrates it and fills the index in.
    let db = rusqlite::Connection::open(env.root.join("strata.db")).unwrap();
    db.execute_batch(
        "DROP INDEX entries_by_dir; DROP INDEX entries_hardlinks;
         DROP TABLE implicit_dirs; ALTER TABLE entries DROP COLUMN dir_len;
         DROP TABLE build_cache_layers; DROP TABLE build_cache; DROP TABLE build_file_digests;
         DROP TABLE published_ports; DROP TABLE endpoints; DROP TABLE networks;
         DROP TABLE snapshots; DROP TABLE events; DROP TABLE unflushed;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(db);
    check_sparse_mount(&env);
    let db = rusqlite::Connection::open(env.root.join("strata.db")).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 8);
    env.fsck_clean();
}

/// A tar of `entries` in the order given: (path, Some(content)) for a
/// file, (path, None) for a directory.
fn layer_tar(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        match content {
            Some(data) => {
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Loads `layers` (bottom first) as image `tag` from a docker-archive.
fn load_layers(env: &Env, tag: &str, layers: Vec<Vec<u8>>) {
    let ids: Vec<String> = layers.iter().map(|l| sha256_hex(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": ids.iter().map(|h| format!("sha256:{h}")).collect::<Vec<_>>()}})).unwrap();
    let chex = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{"Config": format!("blobs/sha256/{chex}"), "RepoTags": [tag], "Layers": ids.iter().map(|h| format!("blobs/sha256/{h}")).collect::<Vec<_>>()}])).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut members: Vec<(String, Vec<u8>)> = ids
        .iter()
        .zip(layers)
        .map(|(id, l)| (format!("blobs/sha256/{id}"), l))
        .collect();
    members.push((format!("blobs/sha256/{chex}"), config));
    members.push(("manifest.json".to_string(), manifest));
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_path(&name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    let archive = env.path("layers.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
}

fn listed(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Issue 14: a mount lists a directory in the order its layers hold it
/// (the order their files were written to the store, so that `tar cf`
/// or `cp -r` of a mounted image reads the store's files in the order
/// they lie on disk), top layer first, each name once; lookups and
/// readdir offsets still work.
#[test]
fn a_mount_lists_a_directory_in_its_layers_order() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    let lower = layer_tar(&[
        ("d", None),
        ("d/zeta", Some("z")),
        ("d/alpha", Some("a1")),
        ("d/gone", Some("g")),
        ("d/mid", Some("m")),
        ("top2", Some("2")),
        ("top1", Some("1")),
    ]);
    let upper = layer_tar(&[
        ("d", None),
        ("d/new", Some("n")),
        ("d/.wh.gone", Some("")),
        ("d/alpha", Some("a2")),
        ("d/aaa", Some("x")),
    ]);
    load_layers(&env, "order:1", vec![lower, upper]);
    let mp = env.path("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    // strata-fs's order: a kernel mount lists as ext4 does (docs/fs.md).
    env.ok(&["mount", "--driver", "fuse", "order:1", mp.to_str().unwrap()]);
    assert_eq!(
        listed(&mp.join("d")),
        ["new", "alpha", "aaa", "zeta", "mid"]
    );
    assert_eq!(listed(&mp), ["d", "top2", "top1"]);
    assert_eq!(std::fs::read_to_string(mp.join("d/alpha")).unwrap(), "a2");
    assert_eq!(std::fs::read_to_string(mp.join("d/zeta")).unwrap(), "z");
    assert!(!mp.join("d/gone").exists());
    // `ls -f` does not sort; telldir and seekdir (offsets) come back to
    // the same entries (`.`, `..`, `new`, `alpha` read first).
    let unsorted = sh(&format!("ls -f {}", mp.join("d").display()));
    let names: Vec<&str> = unsorted
        .split_whitespace()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names, ["new", "alpha", "aaa", "zeta", "mid"]);
    let seek = sh(&format!(
        "perl -e 'opendir(D, $ARGV[0]) or die; readdir D for 1..4; $p = telldir D; \
         @a = readdir D; seekdir D, $p; @b = readdir D; print \"@a|@b\"' {}",
        mp.join("d").display()
    ));
    assert_eq!(seek.trim(), "aaa zeta mid|aaa zeta mid");
    env.ok(&["umount", mp.to_str().unwrap()]);
    env.ok(&["rmi", "order:1"]);
    env.fsck_clean();
}

/// One layer with what a view must carry over: hard links, a symlink, a
/// setuid copy of busybox, a root-only file, a fifo, owners,
/// an old mtime, an empty file, user xattrs, and `trusted.overlay.*`
/// attributes an image sets to redirect a file or hide a directory.
fn special_image(env: &Env, tag: &str) {
    let t = env.path("special");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed");
    sh(&format!(
        "set -e; t={t}; mkdir -p $t/bin $t/etc $t/dev $t/deep/a/b $t/hidden; \
         cp {busybox} $t/bin/busybox; ln $t/bin/busybox $t/bin/sh; ln -s busybox $t/bin/ls; \
         cp {busybox} $t/bin/busybox-suid; chmod 4755 $t/bin/busybox-suid; \
         echo secret > $t/etc/shadow; chmod 600 $t/etc/shadow; \
         echo hello > $t/etc/motd; : > $t/etc/empty; echo other > $t/etc/other; \
         echo kept > $t/hidden/file; \
         mkfifo $t/dev/fifo; \
         setfattr -n user.note -v hi $t/etc/motd; setfattr -n user.dir -v d $t/deep; \
         setfattr -n trusted.overlay.metacopy $t/etc/other; \
         setfattr -n trusted.overlay.redirect -v /0 $t/etc/other; \
         setfattr -n trusted.overlay.opaque -v y $t/hidden; \
         chown -R 1000:1001 $t/deep/a; touch -d 2001-02-03T04:05:06 $t/etc/motd $t/deep; \
         tar --xattrs --xattrs-include='*' -C $t -cf {tar} .",
        t = t.display(),
        tar = env.path("special.tar").display(),
    ));
    env.ok(&["import", env.path("special.tar").to_str().unwrap(), tag]);
}

/// Every entry's type, mode, owners, size, mtime and link target, and
/// every file's content digest and xattrs: what both drivers must agree
/// on. (Directory link counts differ: FUSE reports 1, as overlayfs does
/// for merged directories; a view's directories count their children.)
fn described(mp: &str) -> String {
    sh(&format!(
        "cd {mp} && find . -printf '%p %y %m %U %G %s %T@ %l\\n' | sort && \
         find . -type f -exec sha256sum {{}} + | sort && \
         find . -type f -links +1 -printf '%p %n\\n' | sort && \
         getfattr -R -h -d -m- . 2>/dev/null"
    ))
}

#[test]
fn kernel_and_fuse_mounts_of_an_image_agree() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    special_image(&env, "special:1");
    two_layer_image(&env);
    for image in ["special:1", "two:1"] {
        let k = env.path("kernel");
        let f = env.path("fuse");
        env.ok(&["mount", "--driver", "overlay", image, k.to_str().unwrap()]);
        env.ok(&["mount", "--driver", "fuse", image, f.to_str().unwrap()]);
        let listing = env.ok(&["mount"]);
        assert!(
            listing.contains(&format!("overlay   -         {}", k.display())),
            "{listing}"
        );
        assert!(listing.contains(" fuse "), "{listing}");
        let fstype = sh(&format!("findmnt -n -o FSTYPE,OPTIONS {}", k.display()));
        assert!(fstype.starts_with("overlay"), "{fstype}");
        for opt in ["ro", "nosuid", "nodev"] {
            assert!(
                fstype.split([' ', ',']).any(|o| o == opt),
                "{opt}: {fstype}"
            );
        }
        let (kd, fd) = (
            described(k.to_str().unwrap()),
            described(f.to_str().unwrap()),
        );
        assert_eq!(kd, fd, "{image}: the two drivers disagree");
        assert!(std::fs::write(k.join("x"), "x").is_err(), "read-only");
        env.ok(&["umount", k.to_str().unwrap(), f.to_str().unwrap()]);
    }
    // What the image set cannot steer overlayfs: the file keeps its own
    // content and the directory its entries.
    let k = env.path("kernel");
    env.ok(&[
        "mount",
        "--driver",
        "overlay",
        "special:1",
        k.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(k.join("etc/other")).unwrap(),
        "other\n"
    );
    assert_eq!(
        std::fs::read_to_string(k.join("hidden/file")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        std::fs::read_to_string(k.join("etc/motd")).unwrap(),
        "hello\n"
    );
    let out = Command::new(k.join("bin/busybox"))
        .args(["echo", "ran"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    env.ok(&["umount", "special:1"]);
    assert_eq!(env.ok(&["mount", "-q"]), "");
    env.fsck_clean();
}

#[test]
fn a_kernel_mount_gives_another_user_what_the_image_allows_and_nothing_more() {
    if !fuse_available() || !require_tool("setpriv") {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    special_image(&env, "special:1");
    // A mount point another user can reach (the test's own directory is
    // private).
    let outside = tempfile::Builder::new()
        .prefix("strata-kmount-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mp = outside.path().join("mnt");
    env.ok(&[
        "mount",
        "--driver",
        "overlay",
        "special:1",
        mp.to_str().unwrap(),
    ]);
    let _unmount = scopeguard(&env, &mp);
    let id = env.ok(&["images", "-q", "--no-trunc", "special:1"]);
    let view = env
        .root
        .join("views")
        .join(id.trim().trim_start_matches("sha256:"));
    assert!(view.join("data").is_dir(), "{}", view.display());
    let as_nobody = |script: &str| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .output()
            .unwrap()
    };
    let m = mp.display();
    // What the image lets everyone read, they read.
    let read = as_nobody(&format!("cat {m}/etc/motd"));
    assert_eq!(String::from_utf8_lossy(&read.stdout), "hello\n");
    // Not the root-only file, not through the view, not its data.
    assert!(!as_nobody(&format!("cat {m}/etc/shadow")).status.success());
    for path in [view.join("data/0"), view.join("meta/etc/shadow")] {
        let out = as_nobody(&format!("cat {}", path.display()));
        assert!(!out.status.success(), "{} is readable", path.display());
    }
    // The setuid binary runs without its privilege (nosuid).
    let euid = as_nobody(&format!("{m}/bin/busybox-suid id -u"));
    assert_eq!(String::from_utf8_lossy(&euid.stdout).trim(), "65534");
    // Nothing can be written or made.
    assert!(!as_nobody(&format!("touch {m}/etc/new")).status.success());
    assert!(!as_nobody(&format!("echo x > {m}/etc/motd"))
        .status
        .success());
    // Nor by root: the mount is read-only.
    assert!(std::fs::write(mp.join("etc/motd"), "x").is_err());
    env.ok(&["umount", mp.to_str().unwrap()]);
}

/// Unmounts `mp` (a kernel mount) when dropped, if a test failed first.
fn scopeguard<'a>(env: &'a Env, mp: &'a Path) -> impl Drop + 'a {
    struct G<'a>(&'a Env, &'a Path);
    impl Drop for G<'_> {
        fn drop(&mut self) {
            if is_mounted(self.1) {
                let _ = self.0.run(&["umount", self.1.to_str().unwrap()]);
                let _ = nix::mount::umount2(self.1, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    G(env, mp)
}

#[test]
fn a_view_is_built_once_and_goes_with_its_image() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    let tar = busybox_rootfs_tar(&env, "v");
    env.ok(&["import", tar.to_str().unwrap(), "v:1"]);
    let id = env.ok(&["images", "-q", "--no-trunc", "v:1"]);
    let view = env
        .root
        .join("views")
        .join(id.trim().trim_start_matches("sha256:"));
    // The first mount is served by FUSE at once and starts the view's
    // builder in the background.
    let mp = env.ok(&["mount", "v:1"]).trim().to_string();
    let listing = env.ok(&["mount"]);
    assert!(
        listing.lines().nth(1).unwrap().contains(" fuse "),
        "{listing}"
    );
    wait_for_view_builders(&env);
    assert!(view.join("data").is_dir(), "no view after its build");
    // `system df` counts it: its own directories' blocks at least.
    let df = env.ok(&["system", "df"]);
    let line = df
        .lines()
        .find(|l| l.starts_with("Image views (kernel mounts): 1 views, "))
        .unwrap_or_else(|| panic!("no views line: {df}"));
    assert!(
        !line.contains(" 0B;") && line.ends_with("0B reclaimable by strata gc"),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&mp).join("etc/passwd"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    env.ok(&["umount", &mp]);
    // The next mounts are the kernel's, from the same view.
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let first = inode(&view.join("meta"));
    for _ in 0..2 {
        let mp = env.ok(&["mount", "v:1"]).trim().to_string();
        let listing = env.ok(&["mount"]);
        assert!(
            listing.contains(&format!("overlay   -         {mp}")),
            "{listing}"
        );
        assert!(view_builders(&env).is_empty());
        env.ok(&["umount", &mp]);
    }
    assert_eq!(inode(&view.join("meta")), first);
    // A kernel mount that is gone without `umount` is forgotten by the
    // next command.
    let mp = env.ok(&["mount", "v:1"]).trim().to_string();
    nix::mount::umount2(Path::new(&mp), nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert_eq!(env.ok(&["mount", "-q"]), "");
    // A build killed midway is removed by gc; a view whose image is
    // removed goes with it.
    let killed = env
        .root
        .join("views")
        .join(format!(".tmp-{}-999999999-1", "a".repeat(64)));
    std::fs::create_dir_all(killed.join("meta")).unwrap();
    let df = env.ok(&["system", "df"]);
    assert!(
        df.contains("Image views (kernel mounts): 2 views, ") && !df.contains(" 0B reclaimable"),
        "the killed build is reclaimable: {df}"
    );
    env.ok(&["rmi", "v:1"]);
    assert!(!view.exists(), "the view outlived its image");
    assert!(!killed.exists(), "a killed build's view was kept");
    assert!(!env.ok(&["system", "df"]).contains("Image views"));
    env.fsck_clean();
}

/// An image with a device node gets no view (a device node is never made
/// on the host): `--driver overlay` says so, and its mounts stay FUSE's,
/// showing the node (`nodev`: it does not open), with no builder started
/// again once one failed.
#[test]
fn an_image_with_a_device_node_stays_on_fuse() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    let t = env.path("dev");
    sh(&format!(
        "set -e; mkdir -p {t}/dev; mknod {t}/dev/sda b 8 0; chmod 666 {t}/dev/sda; \
         echo x > {t}/file; tar -C {t} -cf {t}.tar .",
        t = t.display()
    ));
    env.ok(&["import", &format!("{}.tar", t.display()), "devs:1"]);
    let mp = env.path("mnt");
    let args = [
        "mount",
        "--driver",
        "overlay",
        "devs:1",
        mp.to_str().unwrap(),
    ];
    let err = assert_fails_one_line(&env.run(&args), &args);
    assert!(err.contains("device node"), "{err}");
    let id = env.ok(&["images", "-q", "--no-trunc", "devs:1"]);
    let hex = id.trim().trim_start_matches("sha256:").to_string();
    let views = env.root.join("views");
    assert!(!views.join(&hex).exists());
    for _ in 0..2 {
        env.ok(&["mount", "devs:1", mp.to_str().unwrap()]);
        wait_for_view_builders(&env);
        assert!(env.ok(&["mount"]).contains(" fuse "));
        let meta = std::fs::symlink_metadata(mp.join("dev/sda")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_block_device(
            &meta.file_type()
        ));
        assert!(std::fs::File::open(mp.join("dev/sda")).is_err(), "nodev");
        env.ok(&["umount", mp.to_str().unwrap()]);
    }
    let note = std::fs::read_to_string(views.join(format!("{hex}.failed"))).unwrap();
    assert!(note.contains("device node"), "{note}");
    assert!(!views.join(&hex).exists());
    // Nothing under views/ holds a device node.
    assert_eq!(
        sh(&format!("find {} -type b -o -type c", views.display())),
        ""
    );
    env.ok(&["rmi", "devs:1"]);
    assert!(!views.join(format!("{hex}.failed")).exists());
    env.fsck_clean();
}

#[test]
fn driver_errors_are_clear() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    let tar = busybox_rootfs_tar(&env, "d");
    env.ok(&["import", tar.to_str().unwrap(), "d:1"]);
    let args = ["mount", "--driver", "overlay", "--layers", "d:1"];
    let err = assert_fails_one_line(&env.run(&args), &args);
    assert!(err.contains("served by FUSE only"), "{err}");
    env.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "box",
        "d:1",
        "true",
    ]);
    let args = ["mount", "--driver", "overlay", "box"];
    let err = assert_fails_one_line(&env.run(&args), &args);
    assert!(
        err.contains("container views are served by FUSE only"),
        "{err}"
    );
    env.ok(&["rm", "box"]);
    // A value clap refuses: its usual lines, the first naming the value.
    let out = env.run(&["mount", "--driver", "zfs", "d:1"]);
    assert_eq!(out.status.code(), Some(125));
    let first = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    assert!(
        first.contains("invalid value 'zfs' for '--driver"),
        "{first}"
    );
    assert_eq!(env.ok(&["mount", "-q"]), "");
}

/// kill -9 of a view's build at random points: the view is then complete
/// and agrees with strata-fs, or absent; gc removes the killed build's
/// directory, and the next mount builds a whole view.
#[test]
fn kill_9_during_a_views_build_leaves_a_whole_view_or_none() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let _guard = MountGuard(&env);
    let tree = env.path("big");
    make_tree(&tree, 4000, 11, 3000);
    tar_dir(&tree, &env.path("big.tar"));
    env.ok(&["import", env.path("big.tar").to_str().unwrap(), "big:1"]);
    let id = env.ok(&["images", "-q", "--no-trunc", "big:1"]);
    let views = env.root.join("views");
    let view = views.join(id.trim().trim_start_matches("sha256:"));
    let fuse = env.path("fuse");
    env.ok(&["mount", "--driver", "fuse", "big:1", fuse.to_str().unwrap()]);
    let expected = described(fuse.to_str().unwrap());
    // How long a whole build and mount takes here.
    let mp = env.path("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let start = std::time::Instant::now();
    env.ok(&[
        "mount",
        "--driver",
        "overlay",
        "big:1",
        mp.to_str().unwrap(),
    ]);
    let full = start.elapsed();
    env.ok(&["umount", mp.to_str().unwrap()]);
    let mut schedule = KillSchedule::new();
    for round in 0..6 {
        let _ = std::fs::remove_dir_all(&view);
        let mut child = env
            .cmd(&[
                "mount",
                "--driver",
                "overlay",
                "big:1",
                mp.to_str().unwrap(),
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(schedule.next_delay(full, 10));
        let _ = child.kill();
        let _ = child.wait();
        let seed = schedule.seed;
        if is_mounted(&mp) {
            assert_eq!(
                described(mp.to_str().unwrap()),
                expected,
                "round {round}, seed {seed}"
            );
            nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
        assert!(
            !view.exists() || view.join("data").is_dir(),
            "round {round}, seed {seed}: a partial view"
        );
        env.ok(&["gc"]);
        let left: Vec<String> = std::fs::read_dir(&views)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "round {round}, seed {seed}: {left:?}");
        assert_eq!(env.ok(&["mount", "-q"]).trim(), fuse.to_str().unwrap());
    }
    // Whatever the kills left, the next mount has a whole view.
    env.ok(&[
        "mount",
        "--driver",
        "overlay",
        "big:1",
        mp.to_str().unwrap(),
    ]);
    assert_eq!(described(mp.to_str().unwrap()), expected);
    env.ok(&["umount", mp.to_str().unwrap(), fuse.to_str().unwrap()]);
    env.fsck_clean();
}

/// Whether something is mounted at `path`.
fn is_mounted(path: &Path) -> bool {
    let wanted = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*wanted))
}
