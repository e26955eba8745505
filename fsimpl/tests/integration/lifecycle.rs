//! Daemon lifecycle: readiness, unmount from outside, and a daemon killed
//! with SIGKILL leaving a dead mount that `cleanup_dead_mount` detects and
//! removes without hanging.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_fs::MountConfig;

use crate::common::*;

const DAEMON_ENV: &str = "STRATA_FS_TEST_DAEMON_MOUNTPOINT";

/// Not a test: the daemon process of `killed_daemon_is_detected_and_cleaned`,
/// which runs this test binary with `--ignored --exact` and the mount point
/// in the environment.
#[test]
#[ignore = "helper process, started by killed_daemon_is_detected_and_cleaned"]
fn helper_daemon_process() {
    let Ok(mp) = std::env::var(DAEMON_ENV) else {
        return;
    };
    let lower = Path::new(&mp).with_extension("lower");
    let config = MountConfig::new(dir_layers(&[lower]));
    let _ = strata_fs::serve(config, Path::new(&mp), || {});
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn killed_daemon_is_detected_and_cleaned() {
    if !fuse_available("killed_daemon_is_detected_and_cleaned") {
        return;
    }
    let tmp = tempdir();
    let mp = tmp.path().join("mnt");
    let lower = mp.with_extension("lower");
    fs::create_dir_all(&lower).expect("mkdir");
    fs::create_dir_all(&mp).expect("mkdir");
    fs::write(lower.join("hello"), b"hi").expect("write");
    let child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "lifecycle::helper_daemon_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DAEMON_ENV, &mp)
        .spawn()
        .expect("spawn daemon");
    // Dropped last: detaches the mount if an assertion fails first.
    let _detach = DetachOnDrop(mp.clone());
    let mut guard = ChildGuard(child);
    assert!(
        wait_for(|| fs::read(mp.join("hello")).is_ok_and(|c| c == b"hi")),
        "daemon did not mount"
    );
    assert!(
        !strata_fs::cleanup_dead_mount(&mp).expect("probe"),
        "live mount taken for dead"
    );
    guard.0.kill().expect("kill -9");
    guard.0.wait().expect("reap");
    let err = rustix::fs::statfs(&mp).expect_err("dead mount still answers");
    assert_eq!(err, rustix::io::Errno::NOTCONN);
    assert!(strata_fs::cleanup_dead_mount(&mp).expect("cleanup"));
    assert!(
        mounts_under(tmp.path()).is_empty(),
        "dead mount left behind"
    );
    assert!(fs::read_dir(&mp).expect("plain dir again").next().is_none());
}

#[test]
fn spawn_is_ready_on_return_and_unmount_ends_serving() {
    if !fuse_available("spawn_is_ready_on_return_and_unmount_ends_serving") {
        return;
    }
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(&lower).expect("mkdir");
    fs::write(lower.join("f"), b"data").expect("write");
    let mp = tmp.path().join("mnt");
    let started = Instant::now();
    let handle = mount(MountConfig::new(dir_layers(&[lower])), &mp);
    // Usable as soon as spawn returns, no polling.
    assert_eq!(fs::read(mp.join("f")).expect("read"), b"data");
    eprintln!("mount ready after {:?}", started.elapsed());
    handle.unmount().expect("unmount");
    assert!(mounts_under(tmp.path()).is_empty());
    assert!(fs::read(mp.join("f")).is_err());
}

/// `create_files`: empty root-owned files made in the upper directory
/// before the mount answers, only where missing and where the parent
/// directory exists; the copied-up parent keeps its lower metadata.
#[test]
fn create_files_makes_missing_files_before_serving() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !fuse_available("create_files_makes_missing_files_before_serving") {
        return;
    }
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(lower.join("etc")).expect("mkdir");
    fs::set_permissions(lower.join("etc"), fs::Permissions::from_mode(0o750)).expect("chmod");
    rustix::fs::chown(
        lower.join("etc").as_path(),
        Some(rustix::fs::Uid::from_raw(12)),
        Some(rustix::fs::Gid::from_raw(34)),
    )
    .expect("chown");
    fs::write(lower.join("etc/hosts"), b"lower hosts\n").expect("write");
    fs::write(lower.join("file"), b"x").expect("write");
    let upper = tmp.path().join("upper");
    let mut config = writable(tmp.path(), &lower);
    config.create_files = ["/etc/hostname", "/etc/hosts", "/nodir/f", "/file/f"]
        .iter()
        .map(std::path::PathBuf::from)
        .collect();
    let mp = tmp.path().join("mnt");
    let handle = mount(config, &mp);
    let made = fs::metadata(mp.join("etc/hostname")).expect("created");
    assert!(made.is_file());
    assert_eq!(
        (made.len(), made.mode() & 0o7777, made.uid()),
        (0, 0o644, 0)
    );
    assert!(upper.join("etc/hostname").is_file());
    // Existing files are left alone, missing parents are not made.
    assert_eq!(
        fs::read(mp.join("etc/hosts")).expect("read"),
        b"lower hosts\n"
    );
    assert!(!upper.join("etc/hosts").exists());
    assert!(!mp.join("nodir").exists());
    assert_eq!(fs::read(mp.join("file")).expect("read"), b"x");
    // The copied-up /etc is the lower one's.
    let etc = fs::metadata(mp.join("etc")).expect("etc");
    assert_eq!((etc.mode() & 0o7777, etc.uid(), etc.gid()), (0o750, 12, 34));
    let names: Vec<String> = fs::read_dir(mp.join("etc"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    handle.unmount().expect("unmount");
    assert!(mounts_under(tmp.path()).is_empty());
}

/// Missing names are cached as negative entries: every way of making the
/// name appear through the mount replaces them.
#[test]
fn negative_entries_give_way_to_new_names() {
    if !fuse_available("negative_entries_give_way_to_new_names") {
        return;
    }
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(lower.join("d")).expect("mkdir");
    fs::write(lower.join("f"), b"lower").expect("write");
    let mp = tmp.path().join("mnt");
    let handle = mount(writable(tmp.path(), &lower), &mp);
    let missing = |name: &str| {
        let err = fs::metadata(mp.join(name)).expect_err(name);
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{name}");
    };
    for name in ["a", "b", "c", "d/e", "g", "h"] {
        missing(name);
    }
    fs::write(mp.join("a"), b"1").expect("create");
    fs::create_dir(mp.join("b")).expect("mkdir");
    std::os::unix::fs::symlink("f", mp.join("c")).expect("symlink");
    fs::hard_link(mp.join("f"), mp.join("d/e")).expect("link");
    fs::rename(mp.join("a"), mp.join("g")).expect("rename");
    assert_eq!(fs::read(mp.join("g")).expect("read"), b"1");
    assert!(mp.join("b").is_dir());
    assert_eq!(fs::read(mp.join("c")).expect("read"), b"lower");
    assert_eq!(fs::read(mp.join("d/e")).expect("read"), b"lower");
    missing("a");
    fs::remove_file(mp.join("g")).expect("unlink");
    missing("g");
    fs::write(mp.join("g"), b"2").expect("create again");
    assert_eq!(fs::read(mp.join("g")).expect("read"), b"2");
    fs::remove_file(mp.join("f")).expect("unlink lower");
    missing("f");
    fs::write(mp.join("f"), b"3").expect("create over a whiteout");
    assert_eq!(fs::read(mp.join("f")).expect("read"), b"3");
    drop(handle);
}
