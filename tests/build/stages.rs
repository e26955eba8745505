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
