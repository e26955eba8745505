//! The build cache: keys on content, not on timestamps; lives in the
//! store across builds; shown by `system df`, kept by gc, removed by
//! `builder prune`.

use crate::harness::Env;
use crate::{assert_ok, build, context, env_or_skip};

fn image_id(env: &Env, name: &str) -> String {
    env.ok(&["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

fn cached_steps(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.ends_with(" CACHED")).count()
}

#[test]
fn a_rebuild_is_cached_a_touch_is_not_a_change_an_edit_or_rename_is() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nENV A=1\nCOPY files/ /files/\nRUN ls /files > /list\nCMD [\"cat\", \"/list\"]\n",
        &[("files/one", "1\n"), ("files/two", "2\n")],
    );
    assert_ok(&build(&env, &dir, &["-t", "c"]));
    let first = image_id(&env, "c");
    let again = assert_ok(&build(&env, &dir, &["-t", "c"]));
    assert_eq!(cached_steps(&again), 4, "{again}");
    assert_eq!(
        image_id(&env, "c"),
        first,
        "a cached rebuild makes the same image"
    );
    // Touched, same content: still cached.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(100);
    std::fs::File::options()
        .write(true)
        .open(dir.join("files/one"))
        .expect("open")
        .set_modified(later)
        .expect("touch");
    let touched = assert_ok(&build(&env, &dir, &["-t", "c"]));
    assert_eq!(cached_steps(&touched), 4, "{touched}");
    // Changed content of the same size: COPY and what follows run again.
    std::fs::write(dir.join("files/one"), "9\n").expect("write");
    let edited = assert_ok(&build(&env, &dir, &["-t", "c"]));
    assert_eq!(cached_steps(&edited), 1, "{edited}");
    // Renamed: the same.
    std::fs::rename(dir.join("files/two"), dir.join("files/three")).expect("rename");
    let renamed = assert_ok(&build(&env, &dir, &["-t", "c"]));
    assert_eq!(cached_steps(&renamed), 1, "{renamed}");
    assert_eq!(env.ok(&["run", "--rm", "c"]), "one\nthree\n");
    // --no-cache runs everything.
    let fresh = assert_ok(&build(&env, &dir, &["-t", "c", "--no-cache"]));
    assert_eq!(cached_steps(&fresh), 0, "{fresh}");
    // A different --build-arg value is a different RUN.
    let dir2 = context(&env, "FROM bb\nARG X=1\nRUN echo $X > /x\n", &[]);
    assert_ok(&build(&env, &dir2, &["-t", "x1"]));
    let other = assert_ok(&build(&env, &dir2, &["-t", "x2", "--build-arg", "X=2"]));
    assert_eq!(cached_steps(&other), 1, "only the ARG step: {other}");
    assert_eq!(env.ok(&["run", "--rm", "x2", "cat", "/x"]), "2\n");
}

#[test]
fn the_cache_survives_gc_is_shown_by_df_and_removed_by_builder_prune() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nRUN echo data > /made\nCOPY f /f\n",
        &[("f", "content\n")],
    );
    assert_ok(&build(&env, &dir, &["-t", "p"]));
    env.ok(&["rmi", "p"]);
    env.ok(&["gc"]);
    env.ok(&["fsck"]);
    let df = env.ok(&["system", "df"]);
    let line = df
        .lines()
        .find(|l| l.starts_with("Build Cache"))
        .expect("Build Cache line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], "2", "{df}");
    let rebuilt = assert_ok(&build(&env, &dir, &["-t", "p"]));
    assert_eq!(
        cached_steps(&rebuilt),
        2,
        "the cache outlived rmi and gc: {rebuilt}"
    );
    env.ok(&["rmi", "p"]);
    let pruned = env.ok(&["builder", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("Deleted build cache objects: 2"),
        "{pruned}"
    );
    let df = env.ok(&["system", "df"]);
    let line = df
        .lines()
        .find(|l| l.starts_with("Build Cache"))
        .expect("Build Cache line");
    assert_eq!(line.split_whitespace().nth(2), Some("0"), "{df}");
    let cold = assert_ok(&build(&env, &dir, &["-t", "p"]));
    assert_eq!(cached_steps(&cold), 0, "{cold}");
    env.ok(&["fsck"]);
}

#[test]
fn two_images_copying_the_same_files_store_them_once() {
    let env = env_or_skip!();
    let big: String = (0..200_000).map(|i| format!("{i}\n")).collect();
    let files = [("big.txt", big.as_str())];
    let a = context(&env, "FROM bb\nCOPY big.txt /a/\n", &files);
    let b = context(&env, "FROM bb\nLABEL other=1\nCOPY big.txt /b/\n", &files);
    assert_ok(&build(&env, &a, &["-t", "a"]));
    let size = |env: &Env| {
        let mut total = 0u64;
        let mut stack = vec![env.root().join("files")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let m = e.metadata().expect("meta");
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    total += m.len();
                }
            }
        }
        total
    };
    let before = size(&env);
    assert_ok(&build(&env, &b, &["-t", "b"]));
    assert_eq!(size(&env), before, "the second COPY wrote no file content");
}

/// Every cache entry's state is whole: its config blob and every layer
/// it names are stored.
fn assert_cache_entries_whole(env: &Env) -> usize {
    let store = strata::store::Store::open(env.root()).expect("store");
    let configs: Vec<String> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT config FROM build_cache")
            .expect("prepare");
        let rows = stmt.query_map([], |r| r.get(0)).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    };
    for config in &configs {
        let digest: strata::digest::Digest = config.parse().expect("digest");
        let blob = store.read_blob(&digest).expect("the entry's config blob");
        let parsed: serde_json::Value = serde_json::from_slice(&blob).expect("config json");
        for diff_id in parsed["rootfs"]["diff_ids"].as_array().expect("diff_ids") {
            let found: i64 = store
                .conn()
                .query_row(
                    "SELECT count(*) FROM layers WHERE diff_id = ?1",
                    [diff_id.as_str().expect("str")],
                    |r| r.get(0),
                )
                .expect("count");
            assert_eq!(found, 1, "layer {diff_id} of cache entry {config} is gone");
        }
    }
    configs.len()
}

#[test]
fn gc_never_breaks_a_cache_entry_even_with_every_image_gone() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nRUN echo data > /made\nCOPY f /f\nENV X=1\n",
        &[("f", "content\n")],
    );
    assert_ok(&build(&env, &dir, &["-t", "g"]));
    let saved = env.root().join("bb-saved.tar");
    env.ok(&["save", "-o", saved.to_str().expect("utf8"), "bb"]);
    // No image is left at all, the base included: the cache alone keeps
    // the states' layers and configs.
    env.ok(&["rmi", "g"]);
    env.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(env.ok(&["images", "-q"]).trim(), "");
    env.ok(&["gc"]);
    env.ok(&["fsck"]);
    assert_eq!(assert_cache_entries_whole(&env), 3);
    // The base comes back with the same ID; every step is cached and the
    // image runs from the layers the cache kept.
    env.ok(&["load", "-i", saved.to_str().expect("utf8")]);
    let rebuilt = assert_ok(&build(&env, &dir, &["-t", "g"]));
    assert_eq!(cached_steps(&rebuilt), 3, "{rebuilt}");
    assert_eq!(
        env.ok(&["run", "--rm", "g", "cat", "/made", "/f"]),
        "data\ncontent\n"
    );
}

#[test]
fn system_prune_removes_dangling_build_cache_and_all_with_a() {
    let env = env_or_skip!();
    let kept = context(&env, "FROM bb\nRUN echo kept > /k\n", &[]);
    let gone = context(&env, "FROM bb\nRUN echo gone > /g\n", &[]);
    assert_ok(&build(&env, &kept, &["-t", "kept"]));
    assert_ok(&build(&env, &gone, &["-t", "gone"]));
    env.ok(&["rmi", "gone"]);
    // The entry of the removed image is dangling; the tagged image's stays.
    let out = env.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Deleted build cache objects: 1"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    let reclaimed = out
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .expect("total");
    assert_ne!(
        reclaimed.trim(),
        "0B",
        "the dangling RUN layer was freed: {out}"
    );
    assert_cache_entries_whole(&env);
    let again = assert_ok(&build(&env, &kept, &["-t", "kept"]));
    assert_eq!(cached_steps(&again), 1, "{again}");
    let rerun = assert_ok(&build(&env, &gone, &["-t", "gone"]));
    assert_eq!(cached_steps(&rerun), 0, "{rerun}");
    // -a: all build cache.
    let out = env.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted build cache objects: 2"), "{out}");
    let df = env.ok(&["system", "df"]);
    let line = df
        .lines()
        .find(|l| l.starts_with("Build Cache"))
        .expect("Build Cache line");
    assert_eq!(line.split_whitespace().nth(2), Some("0"), "{df}");
    env.ok(&["fsck"]);
}

/// Size and modification time (ns) of the store's database and its WAL.
fn database_stamps(env: &Env) -> Vec<(u64, i128)> {
    ["strata.db", "strata.db-wal"]
        .iter()
        .map(|f| {
            std::fs::metadata(env.root().join(f)).map_or((0, 0), |m| {
                let t = m
                    .modified()
                    .expect("mtime")
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("epoch");
                (m.len(), t.as_nanos() as i128)
            })
        })
        .collect()
}

/// Files whose ctime is older than the racy margin (digests::RACY_MARGIN_NS)
/// have their digests remembered by the first build.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(2100));
}

#[test]
fn a_cached_rebuild_writes_nothing_to_the_store() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nENV A=1\nCOPY files/ /files/\nRUN ls /files > /list\nCMD [\"cat\", \"/list\"]\n",
        &[("files/one", "1\n"), ("files/sub/two", "2\n")],
    );
    settle();
    assert_ok(&build(&env, &dir, &["-t", "w"]));
    // The first build's flusher checkpoints the database behind it:
    // `system sync` returns once it has.
    env.ok(&["system", "sync"]);
    let before = database_stamps(&env);
    let again = assert_ok(&build(&env, &dir, &["-t", "w"]));
    assert_eq!(cached_steps(&again), 4, "{again}");
    assert_eq!(
        database_stamps(&env),
        before,
        "a rebuild with nothing changed wrote to strata.db or its WAL"
    );
}

#[test]
fn a_change_that_keeps_size_and_mtime_is_seen() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nCOPY files/ /files/\n",
        &[("files/one", "aaaa\n"), ("files/two", "2\n")],
    );
    settle();
    assert_ok(&build(&env, &dir, &["-t", "s"]));
    let file = dir.join("files/one");
    let mtime = std::fs::metadata(&file)
        .expect("stat")
        .modified()
        .expect("mtime");
    // Same size, the mtime put back: the ctime (and the content) tell.
    std::fs::write(&file, "bbbb\n").expect("write");
    std::fs::File::options()
        .write(true)
        .open(&file)
        .expect("open")
        .set_modified(mtime)
        .expect("utimes");
    let rebuilt = assert_ok(&build(&env, &dir, &["-t", "s"]));
    assert_eq!(cached_steps(&rebuilt), 0, "{rebuilt}");
    assert_eq!(env.ok(&["run", "--rm", "s", "cat", "/files/one"]), "bbbb\n");
}

/// A cached rebuild's COPY looks at each context file once, by its name
/// relative to its directory's descriptor (the walk by directory fd:
/// no absolute-path stat per file, whose path walk in the kernel was
/// most of a cached rebuild), and opens none of them (their digests are
/// remembered with their stat).
#[test]
fn a_cached_copy_stats_each_file_by_name_and_reads_none() {
    let env = env_or_skip!();
    if !crate::dockerd::have("strace") {
        crate::dockerd::required("strace is not installed (tools/install-deps.sh)");
        return;
    }
    let names: Vec<String> = (0..60)
        .map(|i| format!("files/d{}/item{i:03}", i % 3))
        .collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "data\n")).collect();
    let dir = context(&env, "FROM bb\nCOPY files/ /files/\n", &files);
    settle();
    assert_ok(&build(&env, &dir, &["-t", "walk"]));
    let log = env.dir.path().join("strace-walk");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%stat,%file", "-o"])
        .arg(&log)
        .arg(&env.bin)
        .arg("--root")
        .arg(env.root())
        .args(["build", "--progress=plain", "-t", "walk"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("strace");
    let stderr = assert_ok(&out);
    assert_eq!(cached_steps(&stderr), 1, "{stderr}");
    let trace = std::fs::read_to_string(&log).expect("strace log");
    let _ = std::fs::remove_file(&log);
    let absolute = format!("\"{}/files/", dir.display());
    let by_path: Vec<&str> = trace.lines().filter(|l| l.contains(&absolute)).collect();
    assert!(
        by_path.is_empty(),
        "context files looked up by absolute path:\n{}",
        by_path.join("\n")
    );
    for name in &names {
        let base = format!("\"{}\"", name.rsplit('/').next().expect("base name"));
        let calls: Vec<&str> = trace.lines().filter(|l| l.contains(&base)).collect();
        assert_eq!(calls.len(), 1, "{name}: {calls:#?}");
        assert!(
            calls[0].contains("stat") && calls[0].contains("AT_SYMLINK_NOFOLLOW"),
            "{name}: {}",
            calls[0]
        );
    }
}
