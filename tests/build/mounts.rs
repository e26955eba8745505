//! `RUN --mount` semantics BuildKit specifies and Docker 20.10's legacy
//! builder lacks: a cache's `sharing=shared|locked|private` between RUNs
//! that use it at the same time (two stages built at once), and a
//! writable (`rw`) bind whose writes are thrown away.

use crate::harness::Env;
use crate::{assert_clean, assert_ok, build, context, env_or_skip};

/// Two independent stages whose RUNs each hold cache `c` for a second:
/// each leaves a marker in it, lists it, and removes the marker; their
/// start and end times (seconds since boot) and what they saw go into
/// the image.
fn sharing_dockerfile(mode: &str) -> String {
    let run = |me: &str| {
        format!(
            "FROM bb AS {me}\n\
             RUN --mount=type=cache,id=c,target=/cache,sharing={mode} \
             cat /proc/uptime > /{me}-start; touch /cache/{me}; sleep 1; \
             ls /cache > /{me}-saw; rm /cache/{me}; cat /proc/uptime > /{me}-end\n"
        )
    };
    format!(
        "{}{}FROM bb\nCOPY --from=one /one-start /one-end /one-saw /\nCOPY --from=two /two-start /two-end /two-saw /\n",
        run("one"),
        run("two")
    )
}

/// What each RUN saw, and whether their times overlapped.
fn sharing_outcome(env: &Env, mode: &str) -> (String, String, bool) {
    let dir = context(env, &sharing_dockerfile(mode), &[]);
    let tag = format!("sharing-{mode}");
    assert_ok(&build(env, &dir, &["-t", &tag, "--no-cache"]));
    let read = |f: &str| {
        env.ok(&["run", "--rm", "--network", "none", &tag, "cat", f])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let time = |f: &str| -> f64 {
        read(f)
            .split(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("uptime")
    };
    let (one, two) = (
        (time("/one-start"), time("/one-end")),
        (time("/two-start"), time("/two-end")),
    );
    let overlap = one.0 < two.1 && two.0 < one.1;
    (read("/one-saw"), read("/two-saw"), overlap)
}

#[test]
fn cache_sharing_shared_locked_and_private() {
    let env = env_or_skip!();
    // shared (the default): both RUNs use the directory at once.
    let (one, two, overlap) = sharing_outcome(&env, "shared");
    assert!(overlap, "the two stages did not run at the same time");
    // (Each removes its marker once it has listed: the one listing
    // second may find the other's gone already.)
    assert!(
        one == "one two" || two == "one two",
        "shared: neither RUN saw the other's marker: {one:?} {two:?}"
    );
    // locked: the second waits until the first is done.
    let (one, two, overlap) = sharing_outcome(&env, "locked");
    assert!(!overlap, "locked: the RUNs held the cache at the same time");
    assert_eq!((one.as_str(), two.as_str()), ("one", "two"));
    // private: the second gets a directory of its own while the first
    // holds the cache; both still run at the same time.
    let (one, two, overlap) = sharing_outcome(&env, "private");
    assert!(overlap, "private: the RUNs did not run at the same time");
    assert_eq!((one.as_str(), two.as_str()), ("one", "two"));
    // A mode that does not exist is an error naming the line.
    let bad = context(
        &env,
        "FROM bb\nRUN --mount=type=cache,target=/c,sharing=bogus true\n",
        &[],
    );
    let out = build(&env, &bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Dockerfile:2") && err.contains("sharing=bogus"),
        "{err}"
    );
    assert_clean(&env);
}

#[test]
fn a_writable_bind_takes_writes_and_keeps_none() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb AS src\nRUN mkdir /stuff && echo original > /stuff/f\n\
         FROM bb\n\
         RUN --mount=type=bind,source=sub,target=/ctx,rw \
             echo changed > /ctx/f && echo new > /ctx/new && cat /ctx/f /ctx/new > /ctx-saw\n\
         RUN --mount=type=bind,from=src,source=/stuff,target=/mnt,readwrite \
             echo changed > /mnt/f && cat /mnt/f > /src-saw\n\
         RUN --mount=type=bind,source=a.txt,target=/a.txt,rw echo more >> /a.txt && cat /a.txt > /file-saw\n\
         RUN --mount=type=bind,source=sub,target=/ctx cat /ctx/f > /ctx-after && ls /ctx > /ctx-list\n\
         RUN --mount=type=bind,from=src,source=/stuff,target=/mnt cat /mnt/f > /src-after\n",
        &[("sub/f", "original\n"), ("a.txt", "a\n")],
    );
    assert_ok(&build(&env, &dir, &["-t", "rw"]));
    let cat = |f: &str| env.ok(&["run", "--rm", "--network", "none", "rw", "cat", f]);
    // The writes were there during their RUN...
    assert_eq!(cat("/ctx-saw"), "changed\nnew\n");
    assert_eq!(cat("/src-saw"), "changed\n");
    assert_eq!(cat("/file-saw"), "a\nmore\n");
    // ...and went with it: not in the context, the other stage, a later
    // RUN's view, or the image's layers.
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/f")).expect("f"),
        "original\n"
    );
    assert!(!dir.join("sub/new").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).expect("a"),
        "a\n"
    );
    assert_eq!(cat("/ctx-after"), "original\n");
    assert_eq!(cat("/ctx-list"), "f\n");
    assert_eq!(cat("/src-after"), "original\n");
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "rw",
        "sh",
        "-c",
        "ls /ctx /mnt /a.txt",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "mount targets or writes in the image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ok(&build(&env, &dir, &["-t", "rw-src", "--target", "src"]));
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "rw-src",
            "cat",
            "/stuff/f"
        ]),
        "original\n"
    );
    assert_clean(&env);
}
