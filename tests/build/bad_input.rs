//! Bad input: each gets one line on stderr naming `Dockerfile:LINE` (or
//! the flag), a non-zero exit, nothing tagged or left behind, fsck clean.

use crate::harness::Env;
use crate::{assert_clean, context, env_or_skip};

fn fails(env: &Env, dockerfile: &str, files: &[(&str, &str)], extra: &[&str]) -> String {
    let dir = context(env, dockerfile, files);
    fails_in(env, &dir, dockerfile, extra)
}

fn fails_in(env: &Env, dir: &std::path::Path, dockerfile: &str, extra: &[&str]) -> String {
    let before = env.ok(&["images", "-q", "--no-trunc"]);
    let mut args = vec!["build", "-q", "-t", "bad:1"];
    args.extend_from_slice(extra);
    let d = dir.to_string_lossy().into_owned();
    args.push(&d);
    let out = env.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{dockerfile:?} built: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{dockerfile:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{dockerfile:?}: not one line: {stderr}");
    assert_eq!(
        env.ok(&["images", "-q", "--no-trunc"]),
        before,
        "images changed"
    );
    assert_clean(env);
    lines[0].to_string()
}

#[test]
fn each_bad_dockerfile_gets_one_line_naming_its_line() {
    let env = env_or_skip!();
    let cases: &[(&str, &str)] = &[
        ("FROM bb\n\nFOO bar\n", "Dockerfile:3: unknown instruction: FOO"),
        ("FROM bb\nCMD [\"a\", \n", "Dockerfile:2: CMD: malformed JSON"),
        ("", "Dockerfile:1:"),
        ("# only a comment\n", "Dockerfile:1:"),
        ("RUN true\n", "Dockerfile:1: RUN before the first FROM"),
        ("ARG A=1\n", "Dockerfile:1: no FROM instruction"),
        ("FROM localhost:1/nosuchimage\n", "Dockerfile:1: FROM localhost:1/nosuchimage: no such image here"),
        ("FROM bb AS me\nFROM me AS me2\nFROM me2\nFROM later\nFROM bb AS later\n", "Dockerfile:4: FROM later: stage \"later\" is defined later (line 5)"),
        ("FROM bb AS self\nCOPY --from=self /bin/sh /x\n", "Dockerfile:2: stage \"self\" refers to itself"),
        ("FROM bb\nCOPY missing.txt /x\n", "Dockerfile:2: COPY missing.txt: file not found in build context"),
        ("FROM bb\nCOPY ../outside /x\n", "Dockerfile:2: COPY ../outside: forbidden path outside the build context"),
        ("FROM bb\nCOPY link /x\n", "Dockerfile:2: COPY link: forbidden path outside the build context"),
        ("ARG BASE\nFROM $BASE\n", "Dockerfile:2: base name ($BASE) should not be blank"),
        ("FROM bb\nRUN <<EOF\necho never ends\n", "Dockerfile:2: unterminated heredoc"),
        ("FROM bb\nRUN exit 7\n", "Dockerfile:2: process \"/bin/sh -c exit 7\" did not complete successfully: exit code: 7"),
    ];
    for (dockerfile, expected) in cases {
        let dir = context(&env, dockerfile, &[]);
        if dockerfile.contains("COPY link") {
            // A symlink that leaves the context.
            std::os::unix::fs::symlink("/etc", dir.join("link")).expect("symlink");
        }
        let line = fails_in(&env, &dir, dockerfile, &[]);
        assert!(
            line.contains(expected),
            "{dockerfile:?}: {line:?} lacks {expected:?}"
        );
    }
}

#[test]
fn a_target_that_names_no_stage_is_an_error() {
    let env = env_or_skip!();
    let line = fails(
        &env,
        "FROM bb AS one\nRUN true\n",
        &[],
        &["--target", "two"],
    );
    assert!(
        line.contains("target stage \"two\" could not be found"),
        "{line}"
    );
    assert!(line.contains("Dockerfile"), "{line}");
}

#[test]
fn a_foreign_platform_is_refused() {
    let env = env_or_skip!();
    let dir = context(&env, "FROM bb\n", &[]);
    let d = dir.to_string_lossy().into_owned();
    let out = env.run(&["build", "-q", "--platform", "linux/s390x", &d]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("platform \"linux/s390x\" is not supported")
    );
}
