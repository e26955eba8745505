//! Renamed directories and upper directories reused as lower layers, with
//! kernel overlayfs as the oracle (the unionmount-testsuite `--ov=N`
//! setting: after each round the upper directory is rotated to the top of
//! the lower stack and a new upper directory is made).
//!
//! Two stacks start from the same lower layer. Kernel overlayfs
//! (`redirect_dir=on`) writes one, strata-fs the other; every operation is
//! applied to both and must give the same result and the same tree. The
//! lower redirects strata-fs reads are then the kernel's own in one stack
//! (relative for renames within a directory, absolute otherwise) and its
//! own (always absolute) in the other. At the end each filesystem reads
//! the other's stack read-only, and both must show the same tree again.

use std::fs;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_fs::{MountConfig, MountHandle, RedirectDir};

use crate::common::*;

const ALL: SnapshotOptions = SnapshotOptions {
    nlink: false,
    owners: true,
};

/// One rotating stack of layer directories, bottom first.
struct Stack {
    base: PathBuf,
    layers: Vec<PathBuf>,
}

impl Stack {
    fn new(base: &Path) -> Stack {
        let l0 = base.join("l0");
        populate(&l0);
        Stack {
            base: base.to_path_buf(),
            layers: vec![l0],
        }
    }

    /// A new, empty upper directory and work directory for round `n`.
    fn next_upper(&self, n: usize) -> (PathBuf, PathBuf) {
        let upper = self.base.join(format!("u{n}"));
        let work = self.base.join(format!("w{n}"));
        fs::create_dir_all(&upper).expect("mkdir upper");
        fs::create_dir_all(&work).expect("mkdir work");
        (upper, work)
    }
}

/// The lower layer every stack starts from: populated directories at
/// several depths, as unionmount-testsuite's `non_empty_dir` ones.
fn populate(l0: &Path) {
    let files = [
        "a/f1",
        "a/f2",
        "a/sub/s1",
        "b/f",
        "c/f",
        "c/sub/x",
        "c/sub/deeper/y",
        "g/h/deep",
        "g/k",
        "top",
    ];
    for f in files {
        let p = l0.join(f);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, format!("{f}\n")).expect("write");
    }
    for d in ["d", "e", "empty"] {
        fs::create_dir_all(l0.join(d)).expect("mkdir");
    }
    // Hard links inside directories that get renamed (the random test
    // leaves these names alone: kernel overlayfs without `index` breaks a
    // link on copy-up, strata-fs keeps it).
    fs::hard_link(l0.join("a/f2"), l0.join("a/hl")).expect("link");
    fs::hard_link(l0.join("c/f"), l0.join("c/sub/hl")).expect("link");
}

/// A kernel overlayfs mount; unmounted when dropped.
fn kernel_mount(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, mp: &Path) -> DetachOnDrop {
    fs::create_dir_all(mp).expect("mountpoint");
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut data = format!("lowerdir={}", lowerdir.join(":"));
    let mut flags = rustix::mount::MountFlags::RDONLY;
    match upper {
        Some((u, w)) => {
            data += &format!(
                ",upperdir={},workdir={},redirect_dir=on,index=off,metacopy=off",
                u.display(),
                w.display()
            );
            flags = rustix::mount::MountFlags::empty();
        }
        None => data += ",redirect_dir=follow",
    }
    let data = std::ffi::CString::new(data).expect("cstring");
    rustix::mount::mount("overlay", mp, "overlay", flags, Some(data.as_c_str()))
        .expect("kernel overlay mount");
    DetachOnDrop(mp.to_path_buf())
}

fn strata_mount(lowers: &[PathBuf], upper: Option<&Path>, mp: &Path) -> MountHandle {
    let mut config = MountConfig::new(dir_layers(lowers));
    if let Some(u) = upper {
        config.upper = Some(u.to_path_buf());
        config.read_only = false;
    }
    mount(config, mp)
}

/// What one step does; paths are relative to the mount root.
#[derive(Debug, Clone)]
enum Op {
    Rename(String, String),
    Mkdir(String),
    Write(String),
    Unlink(String),
    Rmdir(String),
}

fn rename(a: &str, b: &str) -> Op {
    Op::Rename(a.into(), b.into())
}

fn mkdir(d: &str) -> Op {
    Op::Mkdir(d.into())
}

fn write(f: &str) -> Op {
    Op::Write(f.into())
}

fn unlink(f: &str) -> Op {
    Op::Unlink(f.into())
}

fn rmdir(d: &str) -> Op {
    Op::Rmdir(d.into())
}

/// The operations of each round: called with the round and the kernel
/// mount's root before each operation, until it answers `None`.
type Plan<'a> = dyn FnMut(usize, &Path) -> Option<Op> + 'a;

/// A plan of fixed operations.
fn fixed(rounds: Vec<Vec<Op>>) -> (usize, impl FnMut(usize, &Path) -> Option<Op>) {
    let count = rounds.len();
    let mut rounds: Vec<std::vec::IntoIter<Op>> = rounds.into_iter().map(Vec::into_iter).collect();
    (count, move |round: usize, _: &Path| rounds[round].next())
}

fn apply(root: &Path, op: &Op) -> Result<(), i32> {
    let r = match op {
        Op::Rename(a, b) => fs::rename(root.join(a), root.join(b)),
        Op::Mkdir(d) => fs::create_dir(root.join(d)),
        Op::Write(f) => fs::write(root.join(f), format!("written as {f}\n")),
        Op::Unlink(f) => fs::remove_file(root.join(f)),
        Op::Rmdir(d) => fs::remove_dir(root.join(d)),
    };
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// Applies the round's operations to both mounts, comparing the results
/// and the trees after each one; returns how many succeeded.
fn apply_both(kernel: &Path, ours: &Path, round: usize, plan: &mut Plan, context: &str) -> usize {
    let mut succeeded = 0;
    let mut i = 0;
    while let Some(op) = plan(round, kernel) {
        i += 1;
        let op = &op;
        let want = apply(kernel, op);
        let got = apply(ours, op);
        assert_eq!(got, want, "{context}: result of step {i} {op:?}");
        assert_same_tree(ours, kernel, &format!("{context}: after step {i} {op:?}"));
        succeeded += usize::from(got.is_ok());
    }
    succeeded
}

fn assert_same_tree(ours: &Path, kernel: &Path, context: &str) {
    let want = snapshot(kernel, ALL);
    let got = snapshot(ours, ALL);
    if got != want {
        for (k, v) in &want {
            if got.get(k) != Some(v) {
                eprintln!("kernel {k}: {v:?}\nstrata {k}: {:?}", got.get(k));
            }
        }
        for k in got.keys().filter(|k| !want.contains_key(*k)) {
            eprintln!("only in strata: {k}");
        }
        panic!("{context}: strata-fs differs from kernel overlayfs");
    }
}

/// Runs `rounds` rounds of `plan` on a kernel-written and a strata-written
/// stack in lock step, rotating each upper directory into the lower stack
/// after its round; then each filesystem reads the other's final stack.
/// Returns the two stacks and how many operations succeeded.
fn rotate_and_compare(
    tmp: &Path,
    rounds: usize,
    plan: &mut Plan,
    name: &str,
) -> (Stack, Stack, usize) {
    let mut succeeded = 0;
    let mut k = Stack::new(&tmp.join("kernel-stack"));
    let mut s = Stack::new(&tmp.join("strata-stack"));
    for n in 0..rounds {
        let (ku, kw) = k.next_upper(n);
        let (su, _) = s.next_upper(n);
        let kmp = tmp.join(format!("k{n}"));
        let smp = tmp.join(format!("s{n}"));
        {
            let _kernel = kernel_mount(&k.layers, Some((&ku, &kw)), &kmp);
            let _ours = strata_mount(&s.layers, Some(&su), &smp);
            assert_same_tree(&smp, &kmp, &format!("{name}: start of round {n}"));
            succeeded += apply_both(&kmp, &smp, n, plan, &format!("{name}, round {n}"));
        }
        k.layers.push(ku);
        s.layers.push(su);
    }
    // Read-only, each stack through both filesystems.
    for (stack, what) in [(&k, "kernel-written"), (&s, "strata-written")] {
        let kmp = tmp.join(format!("ro-kernel-{what}"));
        let smp = tmp.join(format!("ro-strata-{what}"));
        let _kernel = kernel_mount(&stack.layers, None, &kmp);
        let _ours = strata_mount(&stack.layers, None, &smp);
        assert_same_tree(&smp, &kmp, &format!("{name}: {what} stack read-only"));
        assert_eq!(
            link_groups(&smp),
            link_groups(&kmp),
            "{name}: {what} stack: hard link groups"
        );
    }
    (k, s, succeeded)
}

fn redirects_in(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.symlink_metadata().expect("lstat").is_dir() {
                let mut buf = vec![0u8; 4096];
                if let Ok(n) = rustix::fs::lgetxattr(&p, "trusted.overlay.redirect", &mut buf) {
                    let rel = p.strip_prefix(dir).expect("prefix");
                    out.push((
                        rel.to_string_lossy().into_owned(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    ));
                }
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// unionmount-testsuite rename-dir: a populated lower directory renamed,
/// renamed twice, and renamed back; then, with the upper rotated into the
/// lower stack, renamed again.
#[test]
fn rename_dir_then_rotate() {
    if !fuse_available("rename_dir_then_rotate") {
        return;
    }
    let tmp = tempdir();
    let (count, mut plan) = fixed(vec![
        vec![
            rename("a", "a2"),
            rename("a2", "a3"),
            rename("b", "b2"),
            rename("b2", "b"),
            rename("g", "g2"),
            rename("g2/h", "g2/h2"),
        ],
        vec![
            rename("a3", "a4"),
            rename("a4/sub", "a4/sub2"),
            rename("g2/h2", "g2/h3"),
            rename("b", "a"),
        ],
        vec![rename("a4", "a5"), rename("g2", "g")],
    ]);
    let (k, _, succeeded) = rotate_and_compare(tmp.path(), count, &mut plan, "rename-dir");
    assert_eq!(succeeded, 12);
    // The kernel wrote relative redirects (renames within one directory):
    // the lower stack strata-fs just read had them.
    let kernel_u0 = redirects_in(&k.layers[1]);
    assert!(
        kernel_u0.iter().any(|(p, r)| p == "a3" && r == "a"),
        "{kernel_u0:?}"
    );
}

/// rename-pop-dir: renamed directories populated (files and directories
/// added, lower files removed) before and after the rotation.
#[test]
fn rename_pop_dir_then_rotate() {
    if !fuse_available("rename_pop_dir_then_rotate") {
        return;
    }
    let tmp = tempdir();
    let (count, mut plan) = fixed(vec![
        vec![
            rename("a", "a2"),
            write("a2/new"),
            mkdir("a2/newdir"),
            write("a2/newdir/f"),
            unlink("a2/f1"),
            write("a2/sub/s2"),
            rename("c", "c2"),
            unlink("c2/sub/x"),
        ],
        vec![
            write("a2/after"),
            unlink("a2/f2"),
            rename("a2", "a3"),
            write("a3/sub/s3"),
            rename("c2/sub", "c2/sub2"),
            unlink("c2/sub2/deeper/y"),
            rmdir("c2/sub2/deeper"),
            mkdir("a2"),
            write("a2/fresh"),
        ],
        vec![rename("a3", "a"), write("a/last")],
    ]);
    let (_, _, succeeded) = rotate_and_compare(tmp.path(), count, &mut plan, "rename-pop-dir");
    assert_eq!(succeeded, 19);
}

/// rename-new-pop-dir: a new directory, populated, renamed (no redirect:
/// it is upper only); after the rotation it is a lower directory and
/// renaming it needs one.
#[test]
fn rename_new_pop_dir_then_rotate() {
    if !fuse_available("rename_new_pop_dir_then_rotate") {
        return;
    }
    let tmp = tempdir();
    let (count, mut plan) = fixed(vec![
        vec![
            mkdir("n"),
            write("n/f"),
            mkdir("n/sub"),
            write("n/sub/g"),
            rename("n", "n2"),
        ],
        vec![
            rename("n2", "n3"),
            write("n3/h"),
            rename("n3/sub", "n3/sub2"),
        ],
        vec![rename("n3", "d/n4"), write("d/n4/sub2/i")],
    ]);
    let (_, _, succeeded) = rotate_and_compare(tmp.path(), count, &mut plan, "rename-new-pop-dir");
    assert_eq!(succeeded, 10);
}

/// rename-move-dir: directories moved into other directories (absolute
/// redirects), a moved directory's subdirectory moved elsewhere, moves
/// out again after the rotation, and a name reused.
#[test]
fn rename_move_dir_then_rotate() {
    if !fuse_available("rename_move_dir_then_rotate") {
        return;
    }
    let tmp = tempdir();
    let (count, mut plan) = fixed(vec![
        vec![
            rename("c", "d/c"),
            rename("d/c/sub", "e/sub"),
            rename("empty", "d/c/empty"),
            rename("a", "d/a"),
            rename("d/a", "d/a2"),
        ],
        vec![
            rename("d/c", "c"),
            rename("e/sub/deeper", "deeper"),
            rename("e", "g/e"),
            rename("d/a2", "a"),
            write("a/moved-back"),
        ],
        vec![
            rename("g", "d/g"),
            rename("d/g/e/sub", "sub"),
            rename("deeper", "c/deeper"),
        ],
    ]);
    let (_, _, succeeded) = rotate_and_compare(tmp.path(), count, &mut plan, "rename-move-dir");
    assert_eq!(succeeded, 13);
}

/// Random directory operations over a small name space, four rounds with
/// rotation; the seed is printed (rerun with STRATA_REDIRECT_SEED=N).
#[test]
fn random_directory_operations_with_rotation() {
    if !fuse_available("random_directory_operations_with_rotation") {
        return;
    }
    let seed: u64 = std::env::var("STRATA_REDIRECT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("random_directory_operations_with_rotation: STRATA_REDIRECT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = 0;
    let mut plan = |_: usize, root: &Path| -> Option<Op> {
        steps += 1;
        if steps % 41 == 0 {
            return None; // 40 operations a round
        }
        Some(random_op(&mut rng, root))
    };
    let tmp = tempdir();
    let context = format!("random (seed {seed})");
    let (k, _, succeeded) = rotate_and_compare(tmp.path(), 4, &mut plan, &context);
    let redirects: usize = k.layers.iter().map(|l| redirects_in(l).len()).sum();
    eprintln!(
        "{context}: {succeeded} of 160 operations succeeded, kernel wrote {redirects} redirects"
    );
    assert!(
        succeeded >= 60,
        "too few operations succeed to test anything"
    );
}

/// An operation on the current tree under `root`: mostly on names that
/// exist (sources) or whose parent directory exists (targets), over a
/// small name space so that names collide and come back.
fn random_op(rng: &mut StdRng, root: &Path) -> Op {
    const NAMES: &[&str] = &["a", "b", "c", "d", "sub", "x", "f1", "y"];
    let tree = snapshot(root, ALL);
    let dirs: Vec<&String> = tree
        .iter()
        .filter(|(_, m)| m.kind == 'd')
        .map(|(k, _)| k)
        .collect();
    let existing: Vec<&String> = tree
        .keys()
        .filter(|k| !k.ends_with("hl") && !k.ends_with("f2") && !k.ends_with("/f"))
        .collect();
    let name = |rng: &mut StdRng| NAMES[rng.gen_range(0..NAMES.len())];
    let any_existing = |rng: &mut StdRng, want_dir: bool| -> String {
        let pool = if want_dir { &dirs } else { &existing };
        if pool.is_empty() || rng.gen_bool(0.1) {
            return name(rng).to_string();
        }
        pool[rng.gen_range(0..pool.len())].clone()
    };
    let new_name = |rng: &mut StdRng| -> String {
        if dirs.is_empty() || rng.gen_bool(0.3) {
            return name(rng).to_string();
        }
        format!("{}/{}", dirs[rng.gen_range(0..dirs.len())], name(rng))
    };
    match rng.gen_range(0..10) {
        0..=4 => {
            let want_dir = rng.gen_bool(0.7);
            let from = any_existing(rng, want_dir);
            Op::Rename(from, new_name(rng))
        }
        5 | 6 => Op::Mkdir(new_name(rng)),
        7 => Op::Write(new_name(rng)),
        8 => Op::Unlink(any_existing(rng, false)),
        _ => Op::Rmdir(any_existing(rng, true)),
    }
}

/// With `redirect_dir=follow` renaming a merged directory fails with EXDEV
/// (as overlayfs); with `nofollow` a lower redirect is not followed.
#[test]
fn redirect_dir_follow_and_nofollow() {
    if !fuse_available("redirect_dir_follow_and_nofollow") {
        return;
    }
    let tmp = tempdir();
    let (count, mut plan) = fixed(vec![vec![rename("a", "a2")]]);
    let (_, s, _) = rotate_and_compare(tmp.path(), count, &mut plan, "setup");
    let (upper, _) = s.next_upper(9);
    let mp = tmp.path().join("follow");
    let mut config = MountConfig::new(dir_layers(&s.layers));
    config.upper = Some(upper);
    config.read_only = false;
    config.redirect_dir = RedirectDir::Follow;
    let follow = mount(config, &mp);
    assert_eq!(fs::read(mp.join("a2/f1")).expect("read"), b"a/f1\n");
    assert_eq!(apply(&mp, &rename("a2", "a3")), Err(libc::EXDEV));
    assert_eq!(apply(&mp, &rename("b", "b2")), Err(libc::EXDEV));
    assert_eq!(apply(&mp, &mkdir("n")), Ok(()));
    assert_eq!(apply(&mp, &rename("n", "n2")), Ok(()));
    drop(follow);
    let mp = tmp.path().join("nofollow");
    let mut config = MountConfig::new(dir_layers(&s.layers));
    config.redirect_dir = RedirectDir::NoFollow;
    let _nofollow = mount(config, &mp);
    let names: Vec<_> = fs::read_dir(mp.join("a2"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// An invalid redirect in a lower directory fails the mount with an error
/// naming the directory.
#[test]
fn invalid_lower_redirect_is_refused() {
    let tmp = tempdir();
    let dir = tmp.path().join("layer/x");
    fs::create_dir_all(&dir).expect("mkdir");
    if rustix::fs::setxattr(
        &dir,
        "trusted.overlay.redirect",
        b"/a//b",
        rustix::fs::XattrFlags::empty(),
    )
    .is_err()
    {
        eprintln!("invalid_lower_redirect_is_refused: skipped (needs trusted xattrs)");
        return;
    }
    let err = strata_fs::load_dir_layer(&tmp.path().join("layer")).expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("layer/x") && text.contains("invalid overlay redirect"),
        "{text}"
    );
}

/// An upper directory kernel overlayfs wrote (relative redirects for
/// renames within a directory, absolute ones for moves) used as the upper
/// directory of a strata-fs mount: the renamed directories show their
/// lower contents, and can be renamed again.
#[test]
fn kernel_upper_directory_as_strata_upper() {
    if !fuse_available("kernel_upper_directory_as_strata_upper") {
        return;
    }
    let tmp = tempdir();
    let k = Stack::new(&tmp.path().join("kernel-stack"));
    let (upper, work) = k.next_upper(0);
    {
        let mp = tmp.path().join("writer");
        let _kernel = kernel_mount(&k.layers, Some((&upper, &work)), &mp);
        for op in [
            rename("g/h", "g/h2"),
            rename("c/sub", "d/sub"),
            rename("a", "a2"),
        ] {
            assert_eq!(apply(&mp, &op), Ok(()), "{op:?}");
        }
    }
    let written = redirects_in(&upper);
    assert!(
        written.contains(&("g/h2".to_string(), "h".to_string())),
        "{written:?}"
    );
    let mut stack = k.layers.clone();
    stack.push(upper.clone());
    let kmp = tmp.path().join("kernel-ro");
    let _kernel = kernel_mount(&stack, None, &kmp);
    let smp = tmp.path().join("strata");
    let _ours = strata_mount(&k.layers, Some(&upper), &smp);
    assert_same_tree(&smp, &kmp, "kernel upper through strata-fs");
    // Its changes layer (a commit) on the lower layer shows the same.
    let image = dir_layers(&k.layers);
    let mut committed = image.clone();
    committed.push(commit_layer(&image, &upper));
    let cmp = tmp.path().join("committed");
    let _committed = mount(MountConfig::new(committed), &cmp);
    assert_same_tree(&cmp, &kmp, "the kernel upper's changes layer");
    assert_eq!(apply(&smp, &rename("g/h2", "g/h3")), Ok(()));
    assert_eq!(
        fs::read(smp.join("g/h3/deep")).expect("read"),
        b"g/h/deep\n"
    );
}
