//! Differences found side by side with Docker 20.10, each pinned.

use crate::env_or_skip;
use crate::harness::stderr;

#[test]
fn exec_of_a_missing_command_exits_126() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "ex", "bb", "sleep", "60"]);
    let out = env.run(&["exec", "ex", "no-such-command"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("executable file not found"),
        "{}",
        stderr(&out)
    );
    env.ok(&["rm", "-f", "ex"]);
}

#[test]
fn exec_on_a_paused_container_says_so_once() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "pz", "bb", "sleep", "60"]);
    env.ok(&["pause", "pz"]);
    let out = env.run(&["exec", "pz", "true"]);
    assert_ne!(out.status.code(), Some(0));
    let said = stderr(&out);
    assert_eq!(said.matches("paused").count(), 1, "{said}");
    assert!(
        said.contains("is paused, unpause the container before exec"),
        "{said}"
    );
    env.ok(&["unpause", "pz"]);
    env.ok(&["rm", "-f", "pz"]);
}
