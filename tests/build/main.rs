//! `strata build` integration tests: real RUN containers (namespaces,
//! strata-fs mounts), the real `strata` binary, a busybox image imported
//! by the test. Each test has its own store root and a guard that kills
//! and unmounts what it started.

#[path = "../containers/dockerd.rs"]
mod dockerd;
#[path = "../containers/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../containers/netns.rs"]
#[allow(dead_code)]
mod netns;

mod bad_input;
mod basics;
mod cache;
mod mounts;
mod network;
mod oracle;
mod stages;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A build context directory inside the test's root.
pub fn context(env: &harness::Env, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.root().join(format!("ctx-{}", harness::rand_suffix()));
    std::fs::create_dir_all(&dir).expect("mkdir context");
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("Dockerfile");
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
    dir
}

/// `strata build ARGS... DIR` with plain progress.
pub fn build(env: &harness::Env, dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["build", "--progress=plain"];
    all.extend_from_slice(args);
    let d = dir.to_string_lossy().into_owned();
    all.push(&d);
    env.run(&all)
}

pub fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "build failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Nothing of a build is left: no container, no mount, no process, no
/// staging; fsck clean.
pub fn assert_clean(env: &harness::Env) {
    assert_eq!(env.ok(&["ps", "-a", "-q"]).trim(), "", "containers left");
    assert!(
        harness::eventually(5, || env.mounts().is_empty()),
        "mounts left: {:?}",
        env.mounts()
    );
    assert!(
        harness::eventually(5, || std::fs::read_dir(env.root().join("tmp"))
            .map(|d| d.flatten().all(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !n.starts_with("stage-") && !n.starts_with("build-")
            }))
            .unwrap_or(true)),
        "staging left"
    );
    env.ok(&["fsck"]);
}

/// `inspect -f TEMPLATE IMAGE`, trimmed.
pub fn inspect(env: &harness::Env, image: &str, template: &str) -> String {
    env.ok(&["inspect", "-f", template, image])
        .trim()
        .to_string()
}
