//! Active snapshots are written on disk: at the root a bind of a plain
//! upper directory, above it a kernel overlay whose lowerdir is the
//! parents' read-only strata-fs mount, so containerd's applier (and a
//! container) write at disk speed, never through FUSE. Commit ingests
//! the upper directory, overlayfs whiteouts and opaque directories
//! included.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::client::Client;
use super::harness::{
    available, mounts_under, test_dir, Containerd, MountGuard, StrataSnapshotter,
};
use super::{layer_tar, push_layers};
use crate::registry::harness::{Auth, Registry};
use crate::registry::images::busybox;

fn option(mount: &strata::snapshotter::proto::types::Mount, name: &str) -> PathBuf {
    let prefix = format!("{name}=");
    mount
        .options
        .iter()
        .find_map(|o| o.strip_prefix(&prefix))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no {name} in {mount:?}"))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn active_snapshots_are_written_on_disk_and_commit_their_upper_directory() {
    if !available() {
        return;
    }
    let dir = test_dir();
    let strata = StrataSnapshotter::start(dir.path());
    let mut client = Client::connect(&strata.socket);

    // At the root: a bind of a plain directory of the store's disk, with
    // no FUSE mount in between.
    let mounts = client.prepare("base-active", "", &[]).unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].r#type, "bind", "{mounts:?}");
    assert!(mounts[0].options.contains(&"rw".to_string()), "{mounts:?}");
    let upper = PathBuf::from(&mounts[0].source);
    assert!(upper.starts_with(&strata.root), "{}", upper.display());
    assert_eq!(
        mounts_under(&strata.root),
        Vec::<PathBuf>::new(),
        "nothing is mounted for an active snapshot at the root"
    );
    let target = dir.path().join("mnt");
    {
        let _mounted = MountGuard::mount(&mounts, &target);
        write(&target.join("etc/motd"), "base\n");
        write(&target.join("data/gone"), "gone\n");
        write(&target.join("data/kept"), "kept\n");
        write(&target.join("old/inner"), "inner\n");
    }
    assert_eq!(read(&upper.join("etc/motd")), "base\n");
    client.commit("base", "base-active").unwrap();

    // Above it: a kernel overlay; its lowerdir is the parents' strata-fs
    // mount, read-only, its upperdir and workdir plain directories.
    let mounts = client.prepare("top-active", "base", &[]).unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].r#type, "overlay", "{mounts:?}");
    let (lower, upper) = (
        option(&mounts[0], "lowerdir"),
        option(&mounts[0], "upperdir"),
    );
    option(&mounts[0], "workdir");
    assert_eq!(read(&lower.join("etc/motd")), "base\n");
    assert!(
        std::fs::write(lower.join("etc/new"), "x").is_err(),
        "the parents' mount is read-only"
    );
    assert_eq!(
        nix::sys::statfs::statfs(&upper).unwrap().filesystem_type(),
        nix::sys::statfs::statfs(&strata.root)
            .unwrap()
            .filesystem_type(),
        "the upper directory is on the store's disk"
    );
    // Mounts answers the same for the same snapshot.
    assert_eq!(client.mounts("top-active").unwrap(), mounts);
    {
        let _mounted = MountGuard::mount(&mounts, &target);
        assert_eq!(read(&target.join("data/kept")), "kept\n");
        write(&target.join("etc/motd"), "top\n");
        write(&target.join("etc/added"), "added\n");
        std::fs::remove_file(target.join("data/gone")).unwrap();
        std::fs::remove_dir_all(target.join("old")).unwrap();
        write(&target.join("old/fresh"), "fresh\n");
    }
    // What the overlay left: a whiteout (0/0) for the deleted file.
    let gone = std::fs::symlink_metadata(upper.join("data/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(
        client.usage("top-active").unwrap().inodes >= 5,
        "usage counts the upper directory"
    );
    client.commit("top", "top-active").unwrap();

    // A view of the committed snapshot: the merged tree, from the store.
    let mounts = client.view("look", "top").unwrap();
    assert_eq!(mounts[0].r#type, "bind", "{mounts:?}");
    assert!(mounts[0].options.contains(&"ro".to_string()), "{mounts:?}");
    let root = PathBuf::from(&mounts[0].source);
    assert_eq!(read(&root.join("etc/motd")), "top\n");
    assert_eq!(read(&root.join("etc/added")), "added\n");
    assert_eq!(names(&root.join("data")), ["kept"]);
    assert_eq!(names(&root.join("old")), ["fresh"], "the opaque directory");
    for key in ["look", "top", "base"] {
        client.remove(key).unwrap();
    }
    assert!(mounts_under(&strata.root).is_empty());
    strata.fsck_clean(true);
}

/// containerd's applier writes an overlay snapshot's upperdir itself,
/// turning the layer's `.wh.` entries into overlayfs whiteouts and
/// opaque directories, which Commit turns back into the layer's.
#[test]
fn containerd_applies_whiteouts_into_the_upper_directory() {
    if !available() {
        return;
    }
    let dir = test_dir();
    let registry = Registry::start(Auth::None, None);
    let image = format!("{}/snap/whiteouts:t", registry.host());
    let one = layer_tar(
        &[
            ("bin/busybox", busybox(), 0o755),
            ("data/a", b"a\n".to_vec(), 0o644),
            ("data/b", b"b\n".to_vec(), 0o644),
            ("old/x", b"x\n".to_vec(), 0o644),
        ],
        &[],
    );
    let two = layer_tar(
        &[
            ("data/.wh.a", Vec::new(), 0o644),
            ("old/.wh..wh..opq", Vec::new(), 0o644),
            ("old/y", b"y\n".to_vec(), 0o644),
        ],
        &[],
    );
    push_layers(&image, &[one, two]);
    let strata = StrataSnapshotter::start(dir.path());
    let containerd = Containerd::start(dir.path(), &strata.socket);
    containerd.pull(&image);
    let out = containerd.run_rm(&image, &["/bin/busybox", "ls", "/data", "/old"]);
    assert_eq!(out, "/data:\nb\n\n/old:\ny\n", "{out}");
    strata.fsck_clean(true);
}
