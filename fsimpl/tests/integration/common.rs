//! Shared helpers: FUSE availability, mount guards, tree snapshots.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use strata_fs::{load_dir_layer, Layer, MountConfig, MountHandle};

/// Whether this test can use FUSE; in CI (CI=true) it must, so a missing
/// /dev/fuse or root fails the test instead of skipping it.
pub fn fuse_available(test: &str) -> bool {
    let ok = Path::new("/dev/fuse").exists() && rustix::process::geteuid().is_root();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: needs root and /dev/fuse, which CI must provide");
        }
        eprintln!("{test}: skipped (needs root and /dev/fuse)");
    }
    ok
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-fs-test-")
        .tempdir()
        .expect("tempdir")
}

/// Layers from plain directories, bottom first.
/// A writable mount of the directory `lower` with the upper directory
/// `tmp/upper` (made here).
pub fn writable(tmp: &Path, lower: &Path) -> MountConfig {
    let upper = tmp.join("upper");
    std::fs::create_dir_all(&upper).expect("mkdir");
    let mut config = MountConfig::new(dir_layers(&[lower.to_path_buf()]));
    config.upper = Some(upper);
    config.read_only = false;
    config
}

pub fn dir_layers(dirs: &[PathBuf]) -> Vec<Layer> {
    dirs.iter()
        .map(|d| load_dir_layer(d).expect("load layer"))
        .collect()
}

/// Mounts in this process; unmounted when dropped.
pub fn mount(config: MountConfig, mountpoint: &Path) -> MountHandle {
    std::fs::create_dir_all(mountpoint).expect("mountpoint");
    strata_fs::spawn(config, mountpoint).expect("mount")
}

/// A mount (the overlayfs oracle, a daemon of a test) detached when dropped.
pub struct DetachOnDrop(pub PathBuf);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// A child process killed (by pid) and reaped when dropped.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the comparisons look at for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size of files and symlinks (directory sizes differ by design).
    pub size: u64,
    pub nlink: Option<u64>,
    pub target: Option<Vec<u8>>,
    pub content: Option<Vec<u8>>,
    pub rdev: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy)]
pub struct SnapshotOptions {
    pub nlink: bool,
    pub owners: bool,
}

/// Every path under `root` with its metadata, sorted.
pub fn snapshot(root: &Path, opts: SnapshotOptions) -> BTreeMap<String, Meta> {
    let mut out = BTreeMap::new();
    walk(root, root, opts, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, opts: SnapshotOptions, out: &mut BTreeMap<String, Meta>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let md = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let rel = path
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let content = (kind == 'f').then(|| {
            std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        });
        let target = (kind == 'l').then(|| {
            std::fs::read_link(&path)
                .expect("readlink")
                .as_os_str()
                .as_bytes()
                .to_vec()
        });
        let xattrs = if kind == 'l' {
            Vec::new()
        } else {
            user_xattrs(&path)
        };
        out.insert(
            rel,
            Meta {
                kind,
                mode: md.mode() & 0o7777,
                uid: if opts.owners { md.uid() } else { 0 },
                gid: if opts.owners { md.gid() } else { 0 },
                size: if kind == 'd' { 0 } else { md.size() },
                nlink: (opts.nlink && kind != 'd').then_some(md.nlink()),
                target,
                content,
                rdev: md.rdev(),
                xattrs,
            },
        );
        if kind == 'd' {
            walk(root, &path, opts, out);
        }
    }
}

fn user_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::listxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names[..n]
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"user."))
        .map(|name| {
            let mut value = vec![0u8; 4096];
            let os = std::ffi::OsStr::from_bytes(name);
            let len = rustix::fs::getxattr(path, os, &mut value[..]).expect("getxattr");
            (name.to_vec(), value[..len].to_vec())
        })
        .collect();
    out.sort();
    out
}

/// Groups of paths that share an inode (hard links), sorted.
pub fn link_groups(root: &Path) -> Vec<Vec<String>> {
    let mut by_ino: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let md = std::fs::symlink_metadata(&path).expect("lstat");
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                by_ino.entry(md.ino()).or_default().push(rel);
            }
        }
    }
    let mut groups: Vec<Vec<String>> = by_ino
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    groups
}

/// Mount points of this test still listed in /proc/mounts.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    let prefix = dir.to_string_lossy().into_owned();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .map(String::from)
        .collect()
}

/// The changes layer of `upper` over the layers `image` (what a commit
/// stores, see `strata_fs::layer_changes`), as a layer to mount: upper
/// objects are backed by the upper directory's files, carried lower files
/// by their own backing files.
pub fn commit_layer(image: &[Layer], upper: &Path) -> Layer {
    use strata_fs::tree::{NodeKind, Tree};
    use strata_fs::{Entry, EntryKind, LayerChangeKind, MemorySource};
    let tree = Tree::lazy(std::sync::Arc::new(MemorySource::new(image.to_vec()))).expect("tree");
    let changes = strata_fs::layer_changes(upper, &tree).expect("layer_changes");
    let mut layer = Layer::default();
    for change in changes {
        let path = change.path.clone();
        let entry = match change.kind {
            LayerChangeKind::Whiteout => {
                layer.whiteouts.push(path);
                continue;
            }
            LayerChangeKind::Opaque => {
                layer.opaque_dirs.push(path);
                continue;
            }
            LayerChangeKind::Link(target) | LayerChangeKind::KeptLink(target) => Entry {
                path,
                kind: EntryKind::Hardlink { target },
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime_sec: 0,
                mtime_nsec: 0,
                xattrs: Vec::new(),
            },
            LayerChangeKind::Upper => {
                let host = upper.join(std::ffi::OsStr::from_bytes(&path));
                let md = std::fs::symlink_metadata(&host).expect("lstat upper");
                let ft = md.file_type();
                let kind = if ft.is_dir() {
                    EntryKind::Dir
                } else if ft.is_file() {
                    EntryKind::File {
                        size: md.size(),
                        backing: host.clone(),
                    }
                } else if ft.is_symlink() {
                    EntryKind::Symlink {
                        target: std::fs::read_link(&host)
                            .expect("readlink")
                            .as_os_str()
                            .as_bytes()
                            .to_vec(),
                    }
                } else if ft.is_fifo() {
                    EntryKind::Fifo
                } else {
                    let (major, minor) = (libc::major(md.rdev()), libc::minor(md.rdev()));
                    if ft.is_block_device() {
                        EntryKind::BlockDevice { major, minor }
                    } else {
                        EntryKind::CharDevice { major, minor }
                    }
                };
                Entry {
                    path,
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    mtime_sec: md.mtime(),
                    mtime_nsec: md.mtime_nsec() as u32,
                    xattrs: if ft.is_symlink() {
                        Vec::new()
                    } else {
                        user_xattrs(&host)
                    },
                }
            }
            LayerChangeKind::Lower(id) => {
                let node = tree.node(id).expect("lower node");
                let kind = match &node.kind {
                    NodeKind::Dir { .. } => EntryKind::Dir,
                    NodeKind::File { size, backing } => EntryKind::File {
                        size: *size,
                        backing: backing.clone().expect("backing file"),
                    },
                    NodeKind::Symlink { target } => EntryKind::Symlink {
                        target: target.to_vec(),
                    },
                    NodeKind::CharDevice { rdev } => EntryKind::CharDevice {
                        major: libc::major(*rdev),
                        minor: libc::minor(*rdev),
                    },
                    NodeKind::BlockDevice { rdev } => EntryKind::BlockDevice {
                        major: libc::major(*rdev),
                        minor: libc::minor(*rdev),
                    },
                    NodeKind::Fifo => EntryKind::Fifo,
                };
                Entry {
                    path,
                    kind,
                    mode: node.mode,
                    uid: node.uid,
                    gid: node.gid,
                    mtime_sec: node.mtime_sec,
                    mtime_nsec: node.mtime_nsec,
                    xattrs: node
                        .xattrs
                        .iter()
                        .map(|(n, v)| (n.to_vec(), v.to_vec()))
                        .collect(),
                }
            }
        };
        layer.entries.push(entry);
    }
    layer
}
