//! Concurrency: parallel readers and writers, two processes copying up the
//! same file at once, and a mount/unmount loop under load.

use std::fs;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;

fn big_content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn parallel_readers_and_writers() {
    if fuse_available("parallel_readers_and_writers") {
        readers_and_writers(true);
    }
}

#[test]
fn parallel_readers_and_writers_without_passthrough() {
    if fuse_available("parallel_readers_and_writers_without_passthrough") {
        readers_and_writers(false);
    }
}

fn readers_and_writers(passthrough: bool) {
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(&lower).expect("mkdir");
    let shared = big_content(3 << 20);
    for i in 0..8 {
        fs::write(lower.join(format!("r{i}")), &shared).expect("write");
    }
    let mp = tmp.path().join("mnt");
    let mut config = writable(tmp.path(), &lower);
    config.passthrough = passthrough;
    let _m = mount(config, &mp);
    std::thread::scope(|s| {
        for t in 0..8 {
            let mp = &mp;
            let shared = &shared;
            s.spawn(move || {
                for round in 0..5 {
                    let got = fs::read(mp.join(format!("r{}", (t + round) % 8))).expect("read");
                    assert!(got == *shared, "reader {t} saw wrong content");
                    let name = mp.join(format!("w{t}"));
                    let data = vec![t as u8 + round as u8; 1 << 20];
                    let mut f = fs::File::create(&name).expect("create");
                    f.write_all(&data).expect("write");
                    drop(f);
                    assert_eq!(fs::read(&name).expect("read back"), data);
                }
            });
        }
    });
    // Writers into lower files (copy-up) in parallel with readers of them.
    std::thread::scope(|s| {
        for t in 0..4 {
            let mp = &mp;
            s.spawn(move || {
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(mp.join(format!("r{t}")))
                    .expect("open");
                f.write_all(b"tail").expect("append");
            });
            s.spawn(move || {
                let got = fs::read(mp.join(format!("r{t}"))).expect("read");
                assert!(got.len() == 3 << 20 || got.len() == (3 << 20) + 4);
            });
        }
    });
    for t in 0..4 {
        let got = fs::read(mp.join(format!("r{t}"))).expect("read");
        assert_eq!(got.len(), (3 << 20) + 4);
        assert_eq!(&got[got.len() - 4..], b"tail");
    }
}

#[test]
fn two_processes_copy_up_the_same_file() {
    if !fuse_available("two_processes_copy_up_the_same_file") {
        return;
    }
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(&lower).expect("mkdir");
    let content = big_content(32 << 20);
    fs::write(lower.join("big"), &content).expect("write");
    let mp = tmp.path().join("mnt");
    let _m = mount(writable(tmp.path(), &lower), &mp);
    for round in 0..3 {
        let name = format!("big{round}");
        fs::write(lower.join(&name), &content).expect("write");
    }
    // The mount was built before big0..2 existed in the lower dir: remount.
    drop(_m);
    let _m = mount(writable(tmp.path(), &lower), &mp);
    for round in 0..3 {
        let file = mp.join(format!("big{round}"));
        let spawn = |line: &str| {
            ChildGuard(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("printf '{line}\\n' >> '{}'", file.display()))
                    .spawn()
                    .expect("spawn sh"),
            )
        };
        let mut a = spawn("first");
        let mut b = spawn("second");
        assert!(a.0.wait().expect("wait").success());
        assert!(b.0.wait().expect("wait").success());
        let got = fs::read(&file).expect("read");
        assert_eq!(got.len(), content.len() + 13, "round {round}");
        assert!(
            got[..content.len()] == content[..],
            "round {round}: copied-up content differs"
        );
        let tail = String::from_utf8_lossy(&got[content.len()..]).into_owned();
        assert!(
            tail == "first\nsecond\n" || tail == "second\nfirst\n",
            "round {round}: tail {tail:?}"
        );
        let upper =
            fs::read(tmp.path().join("upper").join(format!("big{round}"))).expect("upper copy");
        assert_eq!(upper, got);
    }
}

#[test]
fn mount_unmount_loop_under_load() {
    if !fuse_available("mount_unmount_loop_under_load") {
        return;
    }
    let tmp = tempdir();
    let lower = tmp.path().join("lower");
    for d in 0..20 {
        fs::create_dir_all(lower.join(format!("d{d}"))).expect("mkdir");
        for f in 0..20 {
            fs::write(lower.join(format!("d{d}/f{f}")), format!("{d}/{f}")).expect("write");
        }
    }
    let mp = tmp.path().join("mnt");
    for round in 0..15 {
        let handle = mount(writable(tmp.path(), &lower), &mp);
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|t| {
                let mp = mp.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // Errors are expected once the mount goes away.
                        if let Ok(s) = fs::read_to_string(mp.join(format!("d{t}/f{}", ok % 20))) {
                            assert_eq!(s, format!("{t}/{}", ok % 20));
                            ok += 1;
                        }
                        let _ = fs::write(mp.join(format!("new{t}")), b"x");
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        handle
            .unmount()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("reader panicked");
        }
        assert!(
            mounts_under(tmp.path()).is_empty(),
            "round {round}: mount left behind"
        );
    }
}
