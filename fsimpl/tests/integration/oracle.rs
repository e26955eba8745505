//! Whiteouts, opaque directories and hard links: the same plain-directory
//! layers mounted by strata and by kernel overlayfs (the oracle) must give
//! identical trees.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_fs::MountConfig;

use crate::common::*;

fn write(path: &Path, content: &str) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, content).expect("write");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().expect(cmd);
    assert!(st.success(), "{cmd} {args:?} failed");
}

/// Three OCI-style layers (bottom first) covering the whiteout cases.
fn make_layers(base: &Path) -> Vec<PathBuf> {
    let l1 = base.join("l1");
    let l2 = base.join("l2");
    let l3 = base.join("l3");
    // Layer 1: the base image.
    write(&l1.join("etc/passwd"), "root:x:0:0\n");
    write(&l1.join("etc/gone"), "deleted in l2\n");
    write(&l1.join("etc/readded"), "old\n");
    write(&l1.join("opq/a"), "a\n");
    write(&l1.join("opq/sub/b"), "b\n");
    write(&l1.join("deldir/x/y"), "y\n");
    write(&l1.join("p/inner"), "dir replaced by file\n");
    write(&l1.join("q"), "file replaced by dir\n");
    write(&l1.join("merge/one"), "1\n");
    write(&l1.join("hl/a"), "hard\n");
    fs::hard_link(l1.join("hl/a"), l1.join("hl/b")).expect("link");
    fs::hard_link(l1.join("hl/a"), l1.join("hl/c")).expect("link");
    write(&l1.join("hl2/x"), "pair\n");
    fs::hard_link(l1.join("hl2/x"), l1.join("hl2/y")).expect("link");
    write(&l1.join("hl3/m"), "replaced above\n");
    fs::hard_link(l1.join("hl3/m"), l1.join("hl3/n")).expect("link");
    symlink("passwd", l1.join("etc/link")).expect("symlink");
    symlink("/nowhere", l1.join("dangling")).expect("symlink");
    run("mkfifo", &[l1.join("fifo").to_str().expect("utf8")]);
    run(
        "mknod",
        &[l1.join("null").to_str().expect("utf8"), "c", "1", "3"],
    );
    write(&l1.join("modes/suid"), "s\n");
    chmod(&l1.join("modes/suid"), 0o4755);
    fs::create_dir_all(l1.join("modes/sticky")).expect("mkdir");
    chmod(&l1.join("modes/sticky"), 0o1777);
    write(&l1.join("owned"), "owned\n");
    run(
        "chown",
        &["1000:1001", l1.join("owned").to_str().expect("utf8")],
    );
    run(
        "setfattr",
        &[
            "-n",
            "user.note",
            "-v",
            "lower",
            l1.join("owned").to_str().expect("utf8"),
        ],
    );
    fs::create_dir_all(l1.join("empty")).expect("mkdir");
    write(&l1.join("deep/a/b/c/d/e/f"), "deep\n");
    // Layer 2: deletions and replacements.
    write(&l2.join("etc/.wh.gone"), "");
    write(&l2.join("etc/.wh.readded"), "");
    write(&l2.join(".wh.deldir"), "");
    write(&l2.join("opq/.wh..wh..opq"), "");
    write(&l2.join("opq/new"), "new in opaque dir\n");
    write(&l2.join("p"), "now a file\n");
    write(&l2.join("q/child"), "now a dir\n");
    write(&l2.join("merge/two"), "2\n");
    chmod(&l2.join("merge"), 0o700);
    write(&l2.join("hl/.wh.c"), "");
    write(&l2.join("hl3/m"), "new m\n");
    write(&l2.join(".wh.never-existed"), "");
    write(&l2.join("etc/.wh.link"), "");
    // Layer 3: re-additions on top of whiteouts.
    write(&l3.join("etc/readded"), "new\n");
    write(&l3.join("deldir/fresh"), "fresh\n");
    write(&l3.join("merge/three"), "3\n");
    vec![l1, l2, l3]
}

/// The same layer in overlayfs form: whiteouts as 0/0 character devices,
/// opaque directories by xattr.
fn to_overlay_form(src: &Path, dst: &Path) {
    run(
        "cp",
        &[
            "-a",
            src.to_str().expect("utf8"),
            dst.to_str().expect("utf8"),
        ],
    );
    let mut stack = vec![dst.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("read_dir")
            .map(|e| e.expect("e").path())
            .collect();
        for path in names {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            if name == ".wh..wh..opq" {
                fs::remove_file(&path).expect("rm");
                run(
                    "setfattr",
                    &[
                        "-n",
                        "trusted.overlay.opaque",
                        "-v",
                        "y",
                        dir.to_str().expect("utf8"),
                    ],
                );
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                fs::remove_file(&path).expect("rm");
                run(
                    "mknod",
                    &[dir.join(hidden).to_str().expect("utf8"), "c", "0", "0"],
                );
            } else if path.symlink_metadata().expect("lstat").is_dir() {
                stack.push(path);
            }
        }
    }
}

fn kernel_overlay(lowers_bottom_first: &[PathBuf], mountpoint: &Path) -> DetachOnDrop {
    fs::create_dir_all(mountpoint).expect("mkdir");
    let lowerdir: Vec<String> = lowers_bottom_first
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let data = std::ffi::CString::new(format!("lowerdir={}", lowerdir.join(":"))).expect("cstring");
    rustix::mount::mount(
        "overlay",
        mountpoint,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(data.as_c_str()),
    )
    .expect("kernel overlay mount");
    DetachOnDrop(mountpoint.to_path_buf())
}

const ALL: SnapshotOptions = SnapshotOptions {
    nlink: false,
    owners: true,
};

#[test]
fn layers_match_kernel_overlayfs() {
    if !fuse_available("layers_match_kernel_overlayfs") {
        return;
    }
    let tmp = tempdir();
    let oci = make_layers(&tmp.path().join("oci"));
    let overlay_form: Vec<PathBuf> = oci
        .iter()
        .map(|l| {
            let dst = tmp.path().join("ovl").join(l.file_name().expect("name"));
            fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
            to_overlay_form(l, &dst);
            dst
        })
        .collect();
    let _kernel = kernel_overlay(&overlay_form, &tmp.path().join("kernel"));
    let _ours = mount(MountConfig::new(dir_layers(&oci)), &tmp.path().join("ours"));
    let _ours_ovl = mount(
        MountConfig::new(dir_layers(&overlay_form)),
        &tmp.path().join("ours-ovl"),
    );
    let expected = snapshot(&tmp.path().join("kernel"), ALL);
    assert!(expected.contains_key("etc/readded") && !expected.contains_key("etc/gone"));
    let got = snapshot(&tmp.path().join("ours"), ALL);
    assert_eq!(
        got, expected,
        "strata (OCI whiteouts) differs from kernel overlayfs"
    );
    let got_ovl = snapshot(&tmp.path().join("ours-ovl"), ALL);
    assert_eq!(
        got_ovl, expected,
        "strata (overlay whiteouts) differs from kernel overlayfs"
    );
    assert_eq!(
        link_groups(&tmp.path().join("ours")),
        link_groups(&tmp.path().join("kernel")),
        "hard link groups differ"
    );
}

#[test]
fn hardlink_counts_follow_the_merged_names() {
    if !fuse_available("hardlink_counts_follow_the_merged_names") {
        return;
    }
    let tmp = tempdir();
    let oci = make_layers(&tmp.path().join("oci"));
    let mp = tmp.path().join("ours");
    let _ours = mount(MountConfig::new(dir_layers(&oci)), &mp);
    let nlink = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(mp.join(p)).expect("stat").nlink()
    };
    // Untouched pair: same as the lower filesystem (and overlayfs).
    assert_eq!(nlink("hl2/x"), 2);
    assert_eq!(nlink("hl2/y"), 2);
    // One of three names whited out: two names remain. (Kernel overlayfs
    // reports the lower inode's 3 here.)
    assert_eq!(nlink("hl/a"), 2);
    assert_eq!(nlink("hl/b"), 2);
    // One name replaced by a new file in a higher layer.
    assert_eq!(nlink("hl3/m"), 1);
    assert_eq!(nlink("hl3/n"), 1);
    assert_eq!(
        fs::read_to_string(mp.join("hl3/n")).expect("read"),
        "replaced above\n"
    );
}

#[test]
fn layer_view_shows_each_layer_and_its_whiteouts() {
    if !fuse_available("layer_view_shows_each_layer_and_its_whiteouts") {
        return;
    }
    let tmp = tempdir();
    let oci = make_layers(&tmp.path().join("oci"));
    let mut config = MountConfig::new(dir_layers(&oci));
    config.layer_view = true;
    config.layer_names = vec!["1-aaaa".into(), "2-bbbb".into(), "3-cccc".into()];
    let mp = tmp.path().join("view");
    let _view = mount(config, &mp);
    let opts = SnapshotOptions {
        nlink: false,
        owners: true,
    };
    // Each layer directory reads back as the layer directory itself.
    for (dir, name) in oci.iter().zip(["1-aaaa", "2-bbbb", "3-cccc"]) {
        let mut want = snapshot(dir, opts);
        let mut got = snapshot(&mp.join(name), opts);
        for m in want.values_mut().chain(got.values_mut()) {
            if m.kind == 'f' && m.size == 0 {
                m.mode = 0; // whiteout markers are shown with mode 0
            }
        }
        assert_eq!(got, want, "layer {name}");
    }
    let _ours = mount(
        MountConfig::new(dir_layers(&oci)),
        &tmp.path().join("plain"),
    );
    assert_eq!(
        snapshot(&mp.join("merged"), opts),
        snapshot(&tmp.path().join("plain"), opts)
    );
}
