//! Write-behind (docs/store.md): an ingest returns before its files are
//! flushed and a detached flusher follows; after a crash (a batch of
//! another boot that no flush covered) the next command verifies the
//! batch and removes what lost its content, with what names it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;

fn tree_tar(env: &Env, seed: u64) -> PathBuf {
    let tree = env.path(&format!("tree-{seed}"));
    make_tree(&tree, 40, seed, 20_000);
    let tar = env.path(&format!("tree-{seed}.tar"));
    tar_dir(&tree, &tar);
    tar
}

fn import_tree(env: &Env, name: &str, seed: u64) -> String {
    let tar = tree_tar(env, seed);
    env.ok(&["import", tar.to_str().unwrap(), name])
        .trim()
        .to_string()
}

/// `strata import TAR TAG` under `strace -f` tracing `calls`; the trace.
fn import_traced(env: &Env, tar: &std::path::Path, tag: &str, calls: &[&str]) -> String {
    let log = env.path("strace.log");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-e"])
        .arg(format!("trace={}", calls.join(",")))
        .arg("-o")
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&env.root)
        .args(["import", tar.to_str().unwrap(), tag])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&log).unwrap()
}

fn db(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(env.root.join("strata.db")).unwrap()
}

fn unflushed_batches(env: &Env) -> i64 {
    db(env)
        .query_row("SELECT COUNT(*) FROM unflushed", [], |r| r.get(0))
        .unwrap()
}

/// The batch id `locks/flushed` says is on disk.
fn flushed(env: &Env) -> i64 {
    std::fs::read_to_string(env.root.join("locks/flushed"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The digests of the files of the image tagged `name`.
fn files_of(env: &Env, name: &str) -> Vec<Vec<u8>> {
    let db = db(env);
    let mut stmt = db
        .prepare(
            "SELECT DISTINCT e.file_digest FROM entries e
             JOIN image_layers il ON il.layer_id = e.layer_id
             JOIN tags t ON t.image_id = il.image_id
             WHERE t.name LIKE ?1 AND e.file_digest IS NOT NULL",
        )
        .unwrap();
    let rows = stmt.query_map([format!("%/{name}")], |r| r.get(0)).unwrap();
    let mut files: Vec<Vec<u8>> = rows.collect::<Result<_, _>>().unwrap();
    assert!(!files.is_empty(), "{name} has no files");
    files.sort();
    files
}

fn file_path(env: &Env, digest: &[u8]) -> PathBuf {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    env.root.join("files").join(&hex[..2]).join(&hex)
}

/// Records `files` as a batch written by another boot and never flushed:
/// the state a power cut right after an ingest leaves.
fn batch_of_another_boot(env: &Env, files: &[Vec<u8>]) {
    db(env)
        .execute(
            "INSERT INTO unflushed(boot_id, files, blobs) VALUES ('an-earlier-boot', ?1, x'')",
            [files.concat()],
        )
        .unwrap();
}

/// What a file written but never flushed may hold after a power cut:
/// zeros where its content should be.
fn lose_content(path: &std::path::Path) {
    let size = std::fs::metadata(path).unwrap().len();
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, vec![0u8; size as usize]).unwrap();
}

/// Asserts a command succeeded and said nothing on stderr.
fn assert_quiet(out: &std::process::Output) {
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tags(env: &Env) -> String {
    env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
}

#[test]
fn an_ingest_returns_before_its_flush_and_a_flusher_follows() {
    if !require_tool("strace") {
        return;
    }
    let env = Env::new();
    env.ok(&["images"]);
    let tar = tree_tar(&env, 7);
    let log = import_traced(&env, &tar, "wb:1", &["execve", "syncfs"]);
    // Every syncfs is the detached flusher's, none the import's own.
    let flusher: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("execve(") && l.contains("\"__flush\""))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(flusher.len(), 1, "one flusher is started:\n{log}");
    let syncs: Vec<&str> = log.lines().filter(|l| l.contains("syncfs(")).collect();
    assert!(!syncs.is_empty(), "the flusher flushes:\n{log}");
    for line in syncs {
        assert!(
            line.starts_with(&format!("{} ", flusher[0])),
            "a syncfs outside the flusher: {line}\n{log}"
        );
    }
    // The flusher recorded its batch as flushed.
    let batch: i64 = db(&env)
        .query_row("SELECT MAX(id) FROM unflushed", [], |r| r.get(0))
        .unwrap();
    assert!(flushed(&env) >= batch, "locks/flushed is behind");
    // Another ingest: flushed in the background too, without waiting.
    import_tree(&env, "wb:2", 8);
    let deadline = Instant::now() + Duration::from_secs(30);
    let batch: i64 = db(&env)
        .query_row("SELECT MAX(id) FROM unflushed", [], |r| r.get(0))
        .unwrap();
    while flushed(&env) < batch {
        assert!(
            Instant::now() < deadline,
            "no flusher covered batch {batch}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // `system sync` leaves nothing waiting.
    env.ok(&["system", "sync"]);
    assert_eq!(unflushed_batches(&env), 0);
    env.fsck_clean();
}

#[test]
fn after_a_crash_a_batch_that_lost_content_is_removed_with_its_image() {
    let env = Env::new();
    import_tree(&env, "lost:1", 1);
    import_tree(&env, "kept:1", 2);
    env.ok(&["system", "sync"]);
    let files = files_of(&env, "lost:1");
    batch_of_another_boot(&env, &files);
    // One of its files never reached the disk: zeros where it should be.
    let victim = file_path(&env, &files[files.len() / 2]);
    lose_content(&victim);

    let out = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.trim(), "kept:1", "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one warning: {stderr}");
    assert!(
        stderr.starts_with("strata: warning: ") && stderr.contains("lost:1"),
        "{stderr}"
    );
    assert!(!victim.exists(), "the damaged file is removed");
    assert_eq!(unflushed_batches(&env), 0);
    env.fsck_clean();
    // Said once: the next command is quiet.
    assert_quiet(&env.run(&["images"]));
    // Importing it again restores its files.
    import_tree(&env, "lost:1", 1);
    assert_eq!(files_of(&env, "lost:1"), files);
    env.ok(&["system", "sync"]);
    assert!(victim.exists());
    env.fsck_clean();
}

#[test]
fn after_a_crash_a_batch_whose_config_was_lost_loses_its_image() {
    let env = Env::new();
    import_tree(&env, "noconfig:1", 6);
    import_tree(&env, "other:1", 9);
    env.ok(&["system", "sync"]);
    let config: String = db(&env)
        .query_row(
            "SELECT i.config_digest FROM images i JOIN tags t ON t.image_id = i.id
             WHERE t.name LIKE '%/noconfig:1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let hex = config.strip_prefix("sha256:").unwrap();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    db(&env)
        .execute(
            "INSERT INTO unflushed(boot_id, files, blobs) VALUES ('an-earlier-boot', x'', ?1)",
            [bytes],
        )
        .unwrap();
    // Written, renamed, never flushed: an empty file after the crash.
    let blob = env.root.join("blobs/sha256").join(hex);
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, b"").unwrap();
    let out = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("noconfig:1"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "other:1");
    assert!(!blob.exists());
    env.fsck_clean();
}

#[test]
fn after_a_crash_a_batch_whose_image_was_removed_since_is_quiet() {
    let env = Env::new();
    import_tree(&env, "gone:1", 10);
    env.ok(&["system", "sync"]);
    let files = files_of(&env, "gone:1");
    // Removed and collected before the crash: nothing of it is looked for.
    env.ok(&["rmi", "gone:1"]);
    env.ok(&["gc"]);
    batch_of_another_boot(&env, &files);
    assert!(!file_path(&env, &files[0]).exists());
    assert_quiet(&env.run(&["images", "-q"]));
    assert_eq!(unflushed_batches(&env), 0);
    env.fsck_clean();
}

#[test]
fn after_a_crash_an_intact_batch_is_kept_silently() {
    let env = Env::new();
    import_tree(&env, "whole:1", 3);
    env.ok(&["system", "sync"]);
    batch_of_another_boot(&env, &files_of(&env, "whole:1"));
    let out = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_quiet(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "whole:1");
    assert_eq!(unflushed_batches(&env), 0);
    env.fsck_clean();
}

#[test]
fn after_a_crash_a_batch_flushed_before_it_is_not_verified() {
    let env = Env::new();
    import_tree(&env, "done:1", 4);
    env.ok(&["system", "sync"]);
    let files = files_of(&env, "done:1");
    batch_of_another_boot(&env, &files);
    // locks/flushed covers it: the flush completed before the crash, so
    // nothing is hashed (a damaged file is then fsck's to find, not this).
    let batch: i64 = db(&env)
        .query_row("SELECT MAX(id) FROM unflushed", [], |r| r.get(0))
        .unwrap();
    std::fs::write(env.root.join("locks/flushed"), format!("{batch:020}")).unwrap();
    lose_content(&file_path(&env, &files[0]));
    let out = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_quiet(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done:1");
    assert_eq!(unflushed_batches(&env), 0);
    assert!(
        !env.run(&["fsck"]).status.success(),
        "fsck finds the damage"
    );
}

#[test]
fn after_a_crash_an_image_a_container_uses_stays_and_fsck_names_the_damage() {
    let env = Env::new();
    import_tree(&env, "used:1", 5);
    env.ok(&["create", "--name", "user", "used:1", "/nothing"]);
    env.ok(&["system", "sync"]);
    let files = files_of(&env, "used:1");
    batch_of_another_boot(&env, &files);
    let victim = file_path(&env, &files[0]);
    std::fs::remove_file(&victim).unwrap();
    let out = env.run(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stay for their containers") && stderr.contains("used:1"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "user");
    // Untagged, still there for its container; fsck names the lost file.
    assert_eq!(tags(&env).trim(), "<none>:<none>");
    let fsck = env.run(&["fsck"]);
    assert!(!fsck.status.success());
    let hex: String = files[0].iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        String::from_utf8_lossy(&fsck.stdout).contains(&hex)
            || String::from_utf8_lossy(&fsck.stderr).contains(&hex),
        "fsck names {hex}"
    );
    // Removing the container and pruning leaves a clean store.
    env.ok(&["rm", "user"]);
    env.ok(&["image", "prune", "-f"]);
    env.ok(&["system", "prune", "-f"]);
    env.fsck_clean();
}

#[test]
fn a_publish_leaves_its_checkpoint_to_the_flusher() {
    if !require_tool("strace") {
        return;
    }
    let env = Env::new();
    env.ok(&["images"]);
    // Enough entries that the commit's WAL passes the 256 pages past
    // which a commit checkpoints on its own.
    let tree = env.path("many");
    make_tree(&tree, 5000, 3, 300);
    let tar = env.path("many.tar");
    tar_dir(&tree, &tar);
    let log = import_traced(&env, &tar, "many:1", &["execve", "pwrite64"]);
    let wal = std::fs::metadata(env.root.join("strata.db-wal"))
        .unwrap()
        .len();
    assert!(wal > 256 * 4096, "the commit wrote {wal} bytes of WAL");
    let flusher = log
        .lines()
        .find(|l| l.contains("execve(") && l.contains("\"__flush\""))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no flusher:\n{log}"));
    // Pages written into the database itself (not its WAL): a checkpoint.
    let into_db = |l: &&str| l.contains("pwrite64(") && l.contains("/strata.db>");
    let checkpoints: Vec<&str> = log.lines().filter(into_db).collect();
    assert!(!checkpoints.is_empty(), "nobody checkpointed:\n{log}");
    for line in checkpoints {
        assert!(
            line.starts_with(&format!("{flusher} ")),
            "the import checkpointed: {line}"
        );
    }
    // Every page is in the database file now.
    let conn = db(&env);
    let pages: u64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let size = std::fs::metadata(env.root.join("strata.db")).unwrap().len();
    assert_eq!(
        size,
        pages * page_size,
        "the database file is behind its WAL"
    );
}
