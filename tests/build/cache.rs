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
