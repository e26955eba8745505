//! What a writable mount leaves in its upper directory is a faithful,
//! standard record: remounting it, and kernel overlayfs reading it (with
//! `redirect_dir=follow`), both show the tree the operations produced, and
//! `list_changes` names exactly the changes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use strata_fs::{list_changes, ChangeKind, MountConfig};

use crate::common::*;

fn populate(dir: &Path) {
    for d in ["keep", "moved/inner", "gone/deep", "opaque", "plain"] {
        fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    fs::write(dir.join("keep/a"), b"a").expect("write");
    fs::write(dir.join("moved/m1"), b"m1").expect("write");
    fs::write(dir.join("moved/inner/m2"), b"m2").expect("write");
    fs::write(dir.join("gone/deep/g"), b"g").expect("write");
    fs::write(dir.join("opaque/old"), b"old").expect("write");
    fs::write(dir.join("plain/f"), b"f").expect("write");
    fs::write(dir.join("plain/chmod"), b"c").expect("write");
}

/// The same changes through any path: a mount or a plain directory.
fn change(root: &Path) {
    fs::rename(root.join("moved"), root.join("renamed")).expect("rename merged dir");
    fs::write(root.join("renamed/new"), b"new in renamed").expect("write");
    fs::write(root.join("renamed/inner/m2"), b"changed").expect("write");
    fs::remove_dir_all(root.join("gone")).expect("rm -r");
    fs::remove_dir_all(root.join("opaque")).expect("rm -r");
    fs::create_dir(root.join("opaque")).expect("mkdir");
    fs::write(root.join("opaque/fresh"), b"fresh").expect("write");
    fs::set_permissions(root.join("plain/chmod"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    fs::remove_file(root.join("keep/a")).expect("rm");
    fs::write(root.join("added"), b"added").expect("write");
}

#[test]
fn upper_directory_is_a_standard_faithful_record() {
    if !fuse_available("upper_directory_is_a_standard_faithful_record") {
        return;
    }
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    let model = tmp.path().join("model");
    let upper = tmp.path().join("upper");
    populate(&lower);
    populate(&model);
    fs::create_dir_all(&upper).expect("mkdir");
    change(&model);
    let writable = |upper: &Path| {
        let mut c = MountConfig::new(dir_layers(std::slice::from_ref(&lower)));
        c.upper = Some(upper.to_path_buf());
        c.read_only = false;
        c
    };
    let opts = SnapshotOptions {
        nlink: true,
        owners: true,
    };
    let mp = tmp.path().join("mnt");
    {
        let _m = mount(writable(&upper), &mp);
        change(&mp);
        assert_eq!(snapshot(&mp, opts), snapshot(&model, opts), "live mount");
    }
    // A new mount over the same upper directory.
    {
        let _m = mount(writable(&upper), &mp);
        assert_eq!(snapshot(&mp, opts), snapshot(&model, opts), "remount");
    }
    // Kernel overlayfs reads the same upper directory as a layer.
    let kmp = tmp.path().join("kernel");
    fs::create_dir_all(&kmp).expect("mkdir");
    let data = std::ffi::CString::new(format!(
        "lowerdir={}:{},redirect_dir=follow",
        upper.display(),
        lower.display()
    ))
    .expect("cstring");
    rustix::mount::mount(
        "overlay",
        &kmp,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(data.as_c_str()),
    )
    .expect("kernel overlay");
    let _k = DetachOnDrop(kmp.clone());
    assert_eq!(
        snapshot(&kmp, opts),
        snapshot(&model, opts),
        "kernel overlayfs on the upper"
    );
    // The change list, O(changes).
    let changes = list_changes(&upper).expect("changes");
    let kind = |p: &str| {
        changes
            .iter()
            .find(|c| c.path == p.as_bytes())
            .map(|c| c.kind.clone())
    };
    assert_eq!(kind("moved"), Some(ChangeKind::Deleted));
    assert_eq!(
        kind("renamed"),
        Some(ChangeKind::RedirectedDir {
            from: b"moved".to_vec()
        })
    );
    assert_eq!(kind("renamed/new"), Some(ChangeKind::Modified));
    assert_eq!(kind("gone"), Some(ChangeKind::Deleted));
    assert_eq!(kind("opaque"), Some(ChangeKind::OpaqueDir));
    assert_eq!(kind("keep/a"), Some(ChangeKind::Deleted));
    assert_eq!(kind("plain/chmod"), Some(ChangeKind::Modified));
    assert_eq!(kind("added"), Some(ChangeKind::Modified));
    assert_eq!(kind("plain/f"), None, "untouched files are not changes");
    assert!(
        changes.len() <= 14,
        "more entries than changes: {changes:?}"
    );
}

#[test]
fn rename_noreplace_and_exchange() {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    if !fuse_available("rename_noreplace_and_exchange") {
        return;
    }
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(lower.join("ldir")).expect("mkdir");
    fs::write(lower.join("lfile"), b"lower").expect("write");
    fs::write(lower.join("ldir/in"), b"in").expect("write");
    fs::write(lower.join("gone"), b"gone").expect("write");
    let upper = tmp.path().join("upper");
    fs::create_dir_all(&upper).expect("mkdir");
    let mut config = MountConfig::new(dir_layers(std::slice::from_ref(&lower)));
    config.upper = Some(upper.clone());
    config.read_only = false;
    let mp = tmp.path().join("mnt");
    let _m = mount(config, &mp);
    let p = |n: &str| mp.join(n);
    fs::write(p("ufile"), b"upper").expect("write");
    fs::create_dir(p("udir")).expect("mkdir");
    fs::remove_file(p("gone")).expect("rm");

    // NOREPLACE: refuses upper and lower targets, takes a whited-out name.
    let noreplace = |a: &str, b: &str| renameat_with(CWD, p(a), CWD, p(b), RenameFlags::NOREPLACE);
    assert_eq!(noreplace("ufile", "lfile"), Err(rustix::io::Errno::EXIST));
    assert_eq!(noreplace("lfile", "ufile"), Err(rustix::io::Errno::EXIST));
    noreplace("ufile", "gone").expect("rename onto a whiteout");
    assert_eq!(fs::read(p("gone")).expect("read"), b"upper");
    assert!(!p("ufile").exists());

    // EXCHANGE: a lower file with an upper file, a file with a directory.
    let exchange = |a: &str, b: &str| renameat_with(CWD, p(a), CWD, p(b), RenameFlags::EXCHANGE);
    exchange("lfile", "gone").expect("exchange files");
    assert_eq!(fs::read(p("lfile")).expect("read"), b"upper");
    assert_eq!(fs::read(p("gone")).expect("read"), b"lower");
    exchange("gone", "udir").expect("exchange file and dir");
    assert!(p("gone").is_dir());
    assert_eq!(fs::read(p("udir")).expect("read"), b"lower");
    assert_eq!(exchange("udir", "missing"), Err(rustix::io::Errno::NOENT));
    // A merged directory cannot be exchanged (documented limit).
    assert_eq!(exchange("ldir", "udir"), Err(rustix::io::Errno::XDEV));
    // Both sides survive a remount.
    drop(_m);
    let mut config = MountConfig::new(dir_layers(std::slice::from_ref(&lower)));
    config.upper = Some(upper);
    config.read_only = false;
    let _m = mount(config, &mp);
    assert_eq!(fs::read(p("lfile")).expect("read"), b"upper");
    assert_eq!(fs::read(p("udir")).expect("read"), b"lower");
    assert!(p("gone").is_dir());
    assert_eq!(fs::read(p("ldir/in")).expect("read"), b"in");
}

/// The changes layer of renamed directories: the new path carries the
/// lower contents and hides the lower tree there only where it has a
/// directory; the old path is a whiteout; upper changes inside are merged
/// in and whiteouts inside left out; nothing else is carried.
#[test]
fn layer_changes_of_renamed_directories() {
    use strata_fs::{layer_changes, LayerChangeKind};
    if !fuse_available("layer_changes_of_renamed_directories") {
        return;
    }
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    for f in [
        "a/f1", "a/f2", "a/sub/s", "b/keep", "c/x/y", "big/1", "big/2", "big/3",
    ] {
        let p = lower.join(f);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, f).expect("write");
    }
    fs::create_dir_all(lower.join("empty")).expect("mkdir");
    let mp = tmp.path().join("mnt");
    let m = mount(writable(tmp.path(), &lower), &mp);
    fs::rename(mp.join("a"), mp.join("moved")).expect("mv a moved");
    fs::remove_file(mp.join("moved/f1")).expect("rm");
    fs::write(mp.join("moved/new"), "new").expect("write");
    fs::rename(mp.join("c/x"), mp.join("moved/sub/x")).expect("mv c/x");
    fs::rename(mp.join("b"), mp.join("empty-over")).expect("mv b");
    fs::rename(mp.join("empty-over"), mp.join("empty")).expect("mv over empty");
    drop(m);
    let upper = tmp.path().join("upper");
    let image = dir_layers(&[lower]);
    let tree = strata_fs::tree::Tree::lazy(std::sync::Arc::new(strata_fs::MemorySource::new(
        image.clone(),
    )))
    .expect("tree");
    let changes = layer_changes(&upper, &tree).expect("changes");
    let listed: Vec<(String, String)> = changes
        .iter()
        .map(|c| {
            let kind = match &c.kind {
                LayerChangeKind::Upper => "upper",
                LayerChangeKind::Lower(_) => "lower",
                LayerChangeKind::Link(_) | LayerChangeKind::KeptLink(_) => "link",
                LayerChangeKind::Whiteout => "whiteout",
                LayerChangeKind::Opaque => "opaque",
            };
            (
                String::from_utf8_lossy(&c.path).into_owned(),
                kind.to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("a", "whiteout"),
        ("b", "whiteout"),
        ("c", "upper"),
        ("c/x", "whiteout"),
        // `empty` was an empty lower directory: hidden by an opaque marker.
        ("empty", "upper"),
        ("empty", "opaque"),
        ("empty/keep", "lower"),
        // Nothing at `moved` below: no marker needed.
        ("moved", "upper"),
        ("moved/new", "upper"),
        ("moved/sub", "upper"),
        ("moved/sub/x", "upper"),
        ("moved/sub/x/y", "lower"),
        ("moved/sub/s", "lower"),
        ("moved/f2", "lower"),
    ]
    .iter()
    .map(|(p, k)| (p.to_string(), k.to_string()))
    .collect();
    assert_eq!(listed, want);
    assert!(changes.iter().all(|c| !c.path.starts_with(b"big")));
    // Mounted on the image, the layer shows what the mount showed.
    let mut committed = image;
    committed.push(commit_layer(&committed.clone(), &upper));
    let cmp = tmp.path().join("committed");
    let _c = mount(MountConfig::new(committed), &cmp);
    let view = tmp.path().join("view");
    let mut config = writable(tmp.path(), &tmp.path().join("lower"));
    config.read_only = true;
    let _v = mount(config, &view);
    let opts = SnapshotOptions {
        nlink: true,
        owners: true,
    };
    assert_eq!(snapshot(&cmp, opts), snapshot(&view, opts));
}
