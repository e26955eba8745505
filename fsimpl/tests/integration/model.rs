//! Randomised model test: random operations applied to a writable mount
//! and to a plain directory holding the same starting tree; results and
//! trees must agree after every step. The seed is printed on failure
//! (rerun with STRATA_MODEL_SEED=N); STRATA_MODEL_OPS sets the count.
//! Directory renames included: merged directories move with a redirect.
//! After each directory rename the changes are "committed": the changes
//! layer (`layer_changes`) is mounted on the image and must show the live
//! view; every third commit becomes the image of a new mount with a fresh
//! upper directory (a container from the committed image), on which the
//! operations go on.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_fs::MountConfig;

use crate::common::*;

const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "sub",
    "sub/x",
    "sub/y",
    "sub/deep",
    "sub/deep/z",
    "lower",
    "lower/f1",
    "lower/f2",
    "lower/f3",
    "lower/f4",
    "lower/f5",
    "lower/dir",
    "lower/dir/g",
    "lower/dir/i",
    "lower/dir/j",
    "e",
];

#[derive(Debug, Clone)]
enum Op {
    Create(String, Vec<u8>),
    WriteAt(String, u64, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Link(String, String),
    Symlink(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Chmod(String, u32),
    SetXattr(String, String, Vec<u8>),
    /// Open read-only and keep the descriptor for a while, so that later
    /// operations copy up files that have lower opens.
    Hold(String),
}

/// Descriptors kept open by [`Op::Hold`], oldest first.
const HELD: usize = 8;

fn pick(rng: &mut StdRng) -> String {
    NAMES[rng.gen_range(0..NAMES.len())].to_string()
}

/// Mostly a name that exists in the model (so most operations do
/// something), sometimes any name (so errors are compared too).
fn pick_existing(rng: &mut StdRng, model: &Path) -> String {
    let existing: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| model.join(n).symlink_metadata().is_ok())
        .collect();
    if existing.is_empty() || rng.gen_bool(0.2) {
        return pick(rng);
    }
    existing[rng.gen_range(0..existing.len())].to_string()
}

/// Mostly a name whose parent directory exists in the model.
fn pick_creatable(rng: &mut StdRng, model: &Path) -> String {
    let creatable: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| Path::new(n).parent().is_none_or(|p| model.join(p).is_dir()))
        .collect();
    if creatable.is_empty() || rng.gen_bool(0.2) {
        return pick(rng);
    }
    creatable[rng.gen_range(0..creatable.len())].to_string()
}

fn random_op(rng: &mut StdRng, model: &Path) -> Op {
    let data = |rng: &mut StdRng| {
        let len = rng.gen_range(0..64);
        (0..len)
            .map(|_| rng.gen_range(b'a'..=b'z'))
            .collect::<Vec<u8>>()
    };
    let (e, c) = (pick_existing, pick_creatable);
    match rng.gen_range(0..12) {
        0 => Op::Create(c(rng, model), data(rng)),
        1 => Op::WriteAt(e(rng, model), rng.gen_range(0..100), data(rng)),
        2 => Op::Truncate(e(rng, model), rng.gen_range(0..80)),
        3 => Op::Rename(e(rng, model), c(rng, model)),
        4 => Op::Link(e(rng, model), c(rng, model)),
        5 => Op::Symlink(pick(rng), c(rng, model)),
        6 => Op::Unlink(e(rng, model)),
        7 => Op::Mkdir(c(rng, model)),
        8 => Op::Rmdir(e(rng, model)),
        9 => Op::Chmod(
            e(rng, model),
            [0o644, 0o600, 0o755, 0o700, 0o4755][rng.gen_range(0..5)],
        ),
        10 => Op::Hold(e(rng, model)),
        _ => Op::SetXattr(
            e(rng, model),
            ["user.a", "user.b"][rng.gen_range(0..2)].into(),
            data(rng),
        ),
    }
}

/// Applies `op` under `root`; the result is the errno, if any.
fn apply(root: &Path, op: &Op, held: &mut Vec<fs::File>) -> Result<(), i32> {
    let p = |n: &str| root.join(n);
    let r: std::io::Result<()> = match op {
        Op::Create(n, data) => fs::write(p(n), data),
        Op::WriteAt(n, off, data) => OpenOptions::new().write(true).open(p(n)).and_then(|mut f| {
            f.seek(SeekFrom::Start(*off))?;
            f.write_all(data)
        }),
        Op::Truncate(n, len) => OpenOptions::new()
            .write(true)
            .open(p(n))
            .and_then(|f| f.set_len(*len)),
        Op::Rename(a, b) => fs::rename(p(a), p(b)),
        Op::Link(a, b) => fs::hard_link(p(a), p(b)),
        Op::Symlink(a, b) => symlink(a, p(b)),
        Op::Unlink(n) => fs::remove_file(p(n)),
        Op::Mkdir(n) => fs::create_dir(p(n)),
        Op::Rmdir(n) => fs::remove_dir(p(n)),
        Op::Chmod(n, mode) => fs::set_permissions(p(n), fs::Permissions::from_mode(*mode)),
        Op::SetXattr(n, name, value) => {
            rustix::fs::lsetxattr(p(n), name.as_str(), value, rustix::fs::XattrFlags::empty())
                .map_err(Into::into)
        }
        Op::Hold(n) => fs::File::open(p(n)).map(|f| {
            if held.len() == HELD {
                held.remove(0);
            }
            held.push(f);
        }),
    };
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn populate_lower(dir: &Path) {
    fs::create_dir_all(dir.join("lower/dir")).expect("mkdir");
    fs::write(dir.join("lower/f1"), b"lower file one").expect("write");
    fs::write(dir.join("lower/f2"), b"two").expect("write");
    fs::write(dir.join("lower/dir/g"), b"g").expect("write");
    fs::hard_link(dir.join("lower/f2"), dir.join("lower/dir/h")).expect("link");
    fs::write(dir.join("lower/f3"), b"three").expect("write");
    fs::hard_link(dir.join("lower/f3"), dir.join("lower/dir/i")).expect("link");
    fs::write(dir.join("lower/f4"), b"four").expect("write");
    fs::write(dir.join("lower/f5"), b"five").expect("write");
    fs::write(dir.join("lower/dir/j"), b"j").expect("write");
    fs::write(dir.join("a"), b"top-level a").expect("write");
    rustix::fs::setxattr(
        dir.join("lower/f1"),
        "user.a",
        b"from lower",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
}

#[test]
fn random_operations_match_a_plain_directory() {
    if !fuse_available("random_operations_match_a_plain_directory") {
        return;
    }
    run_model(true, 3000, Duration::from_secs(45));
}

/// The same with every byte of file data through the daemon (no
/// passthrough): exercises the cached read and write paths.
#[test]
fn random_operations_without_passthrough() {
    if !fuse_available("random_operations_without_passthrough") {
        return;
    }
    run_model(false, 1500, Duration::from_secs(25));
}

/// Panics with the differences of two snapshots.
fn assert_same(got: &Tree, want: &Tree, what: &str, context: &dyn Fn() -> String) {
    if got == want {
        return;
    }
    for (k, v) in want {
        if got.get(k) != Some(v) {
            eprintln!("want {k}: {v:?}\n got {k}: {:?}", got.get(k));
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        eprintln!("extra {k}: {:?}", got.get(k));
    }
    panic!("{what}; {}", context());
}

type Tree = std::collections::BTreeMap<String, Meta>;

fn run_model(passthrough: bool, default_ops: usize, limit: Duration) {
    let seed: u64 = std::env::var("STRATA_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let ops: usize = std::env::var("STRATA_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_ops);
    let tmp = tempdir();
    let lower = tmp.path().join("lower-layer");
    let model = tmp.path().join("model");
    populate_lower(&lower);
    populate_lower(&model);
    let mut image = dir_layers(&[lower]);
    let live = |image: &[strata_fs::Layer], n: usize| {
        let upper = tmp.path().join(format!("upper-{n}"));
        fs::create_dir_all(&upper).expect("mkdir");
        let mut config = MountConfig::new(image.to_vec());
        config.upper = Some(upper.clone());
        config.read_only = false;
        config.passthrough = passthrough;
        let mp: PathBuf = tmp.path().join(format!("mnt-{n}"));
        (mount(config, &mp), upper, mp)
    };
    let (mut mount_handle, mut upper, mut mp) = live(&image, 0);
    let opts = SnapshotOptions {
        nlink: true,
        owners: true,
    };
    let deadline = Instant::now() + limit;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = Vec::new();
    let (mut succeeded, mut failed, mut commits) = (0, 0, 0);
    let (mut our_held, mut model_held) = (Vec::new(), Vec::new());
    for step in 0..ops {
        if Instant::now() > deadline {
            eprintln!("model test: time bound reached after {step} operations (seed {seed})");
            break;
        }
        let op = random_op(&mut rng, &model);
        history.push(op.clone());
        let ours = apply(&mp, &op, &mut our_held);
        let want = apply(&model, &op, &mut model_held);
        let commits_before = commits;
        let context = || {
            let tail: Vec<String> = history
                .iter()
                .rev()
                .take(8)
                .rev()
                .map(|o| format!("{o:?}"))
                .collect();
            format!(
                "seed {seed}, step {step}, op {op:?}, after {commits_before} commits\nlast ops:\n  {}",
                tail.join("\n  ")
            )
        };
        assert_eq!(ours, want, "result differs; {}", context());
        if ours.is_ok() {
            succeeded += 1;
        } else {
            failed += 1;
        }
        let got_tree = snapshot(&mp, opts);
        let want_tree = snapshot(&model, opts);
        assert_same(&got_tree, &want_tree, "trees differ", &context);
        let renamed_dir =
            matches!(&op, Op::Rename(_, to) if ours.is_ok() && model.join(to).is_dir());
        if !renamed_dir {
            continue;
        }
        // Commit: the image plus the changes layer shows the live view.
        commits += 1;
        let layer = commit_layer(&image, &upper);
        let mut committed = image.clone();
        committed.push(layer);
        let check = tmp.path().join("committed");
        let committed_mount = mount(MountConfig::new(committed.clone()), &check);
        assert_same(
            &snapshot(&check, opts),
            &snapshot(&mp, opts),
            "image + changes layer differs from the live view",
            &context,
        );
        drop(committed_mount);
        if commits % 3 == 0 {
            // A new container from the committed image.
            our_held.clear();
            model_held.clear();
            drop(mount_handle);
            image = committed;
            (mount_handle, upper, mp) = live(&image, commits);
            assert_same(
                &snapshot(&mp, opts),
                &snapshot(&model, opts),
                "a mount of the committed image differs",
                &context,
            );
        }
    }
    eprintln!(
        "model test (seed {seed}): {succeeded} operations succeeded, {failed} failed identically; {:?}",
        mount_handle.io_stats()
    );
    eprintln!(
        "model test (seed {seed}): {commits} commits checked, {} layers at the end",
        image.len()
    );
    // About a third succeed; errors are compared as closely as results.
    assert!(
        succeeded * 3 > failed,
        "too few operations succeed to test anything"
    );
}
