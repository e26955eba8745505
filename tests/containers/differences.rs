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

#[test]
fn commit_records_the_message_and_the_containers_own_command() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "--name",
        "cm",
        "-e",
        "GREETING=hi",
        "bb",
        "sh",
        "-c",
        "touch /made",
    ]);
    let id = env.ok(&["commit", "-m", "made a file", "cm", "committed:1"]);
    assert!(!id.trim().is_empty());
    let show = |f: &str| {
        env.ok(&["image", "inspect", "-f", f, "committed:1"])
            .trim()
            .to_string()
    };
    assert_eq!(show("{{.Comment}}"), "made a file");
    assert_eq!(show("{{json .Config.Cmd}}"), r#"["sh","-c","touch /made"]"#);
    assert!(show("{{json .Config.Env}}").contains("GREETING=hi"));
    // Without -m, no comment.
    env.ok(&["commit", "cm", "committed:2"]);
    assert_eq!(
        env.ok(&["image", "inspect", "-f", "{{.Comment}}", "committed:2"])
            .trim(),
        ""
    );
}
