//! Multi-stage builds: only what the target needs is built; COPY --from
//! takes files from an earlier stage without unpacking anything.

use crate::{assert_ok, build, context, env_or_skip, inspect};

#[test]
fn only_the_stages_the_target_needs_are_built() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "ARG BASE=bb\nFROM $BASE AS builder\nRUN echo built > /artifact\n\
         FROM bb AS unused\nRUN echo unused-stage-ran && exit 1\n\
         FROM scratch AS final\nCOPY --from=builder /artifact /artifact\nCOPY --from=0 /bin/busybox /bin/cat\n\
         CMD [\"/bin/cat\", \"/artifact\"]\n",
        &[],
    );
    let stderr = assert_ok(&build(&env, &dir, &["-t", "ms"]));
    assert!(!stderr.contains("unused-stage-ran"), "{stderr}");
    assert!(stderr.contains("[builder 2/2] RUN"), "{stderr}");
    assert_eq!(env.ok(&["run", "--rm", "ms"]), "built\n");
    assert_eq!(
        inspect(&env, "ms", "{{json .RootFS.Layers}}")
            .matches("sha256:")
            .count(),
        2
    );
    // --target stops at a named stage.
    let stderr = assert_ok(&build(&env, &dir, &["-t", "b-only", "--target", "builder"]));
    assert!(!stderr.contains("final"), "{stderr}");
    assert_eq!(
        env.ok(&["run", "--rm", "b-only", "cat", "/artifact"]),
        "built\n"
    );
    // The unused stage fails when it is the target.
    let out = build(&env, &dir, &["--target", "unused"]);
    assert_eq!(out.status.code(), Some(1));
}

/// Seconds since boot, from a file a RUN wrote with `cat /proc/uptime`.
fn uptime_in(env: &crate::harness::Env, image: &str, path: &str) -> f64 {
    env.ok(&["run", "--rm", "--network", "none", image, "cat", path])
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no uptime in {path}"))
}

#[test]
fn independent_stages_build_at_the_same_time() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb AS one\nRUN cat /proc/uptime > /one-start; sleep 1; cat /proc/uptime > /one-end\n\
         FROM bb AS two\nRUN cat /proc/uptime > /two-start; sleep 1; cat /proc/uptime > /two-end\n\
         FROM bb\nCOPY --from=one /one-start /one-end /\nCOPY --from=two /two-start /two-end /\n",
        &[],
    );
    let began = std::time::Instant::now();
    let stderr = assert_ok(&build(&env, &dir, &["-t", "both", "--no-cache"]));
    let wall = began.elapsed();
    let t = |p: &str| uptime_in(&env, "both", p);
    let (one_start, one_end, two_start, two_end) = (
        t("/one-start"),
        t("/one-end"),
        t("/two-start"),
        t("/two-end"),
    );
    // The two sleeps overlapped, and both took about one second, not two.
    assert!(
        two_start < one_end && one_start < two_end,
        "one {one_start}..{one_end}, two {two_start}..{two_end}\n{stderr}"
    );
    let span = one_end.max(two_end) - one_start.min(two_start);
    assert!(span < 1.8, "the two RUNs took {span:.2} s\n{stderr}");
    eprintln!("two 1 s stages: RUNs {span:.2} s, whole build {wall:.2?}");
    // Progress stays readable: each step is one numbered vertex; the
    // RUNs' lines carry their own numbers.
    for name in [
        "[one 2/2] RUN",
        "[two 2/2] RUN",
        "[stage-2 2/3] COPY --from=one",
    ] {
        assert_eq!(
            stderr.lines().filter(|l| l.contains(name)).count(),
            1,
            "{name}: {stderr}"
        );
    }
    crate::assert_clean(&env);
}

#[test]
fn a_failing_stage_stops_the_others_and_leaves_nothing() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb AS slow\nRUN sleep 30\n\
         FROM bb AS failing\nRUN sleep 0.5; exit 3\n\
         FROM bb\nCOPY --from=slow /bin/sh /a\nCOPY --from=failing /bin/sh /b\n",
        &[],
    );
    let began = std::time::Instant::now();
    let out = build(&env, &dir, &["-t", "never"]);
    let wall = began.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Dockerfile:4") && stderr.contains("exit code: 3"),
        "{stderr}"
    );
    assert!(
        wall < std::time::Duration::from_secs(20),
        "the slow stage was not stopped: {wall:?}"
    );
    let images = env.ok(&["images", "-q", "never"]);
    assert_eq!(images.trim(), "", "nothing is tagged");
    crate::assert_clean(&env);
}
