//! `run --init` in an image without any libc (the test image is a static
//! busybox and nothing else): the launcher stays as pid 1.

use std::time::{Duration, Instant};

use crate::env_or_skip;
use crate::harness::{eventually, stderr, stdout};

#[test]
fn init_is_pid_1_and_the_command_its_child() {
    let env = env_or_skip!();
    let out = env.run(&[
        "run",
        "--rm",
        "--init",
        "bb",
        "sh",
        "-c",
        "echo $$ $PPID; cat /proc/1/comm; busybox tr '\\0' ' ' </proc/1/cmdline; echo; \
         grep -E '^(Uid|CapEff)' /proc/1/status",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let (me, parent) = lines[0].split_once(' ').expect("pids");
    assert_ne!(me, "1", "{text}");
    assert_eq!(parent, "1", "{text}");
    assert_eq!(lines[1], "strata-init", "{text}");
    assert!(lines[2].starts_with("strata-init -- sh -c "), "{text}");
    // Init has the container's credentials, no more: the capabilities
    // of the command itself (Docker's default set).
    assert!(lines[3].starts_with("Uid:\t0\t0"), "{text}");
    assert_eq!(lines[4], "CapEff:\t00000000a80425fb", "{text}");

    // As another user, init is that user too.
    let out = env.ok(&[
        "run",
        "--rm",
        "--init",
        "-u",
        "nobody",
        "bb",
        "sh",
        "-c",
        "grep -E '^(Uid|CapEff)' /proc/1/status",
    ]);
    assert!(out.starts_with("Uid:\t65534\t65534"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");

    // Without --init the command is pid 1.
    let out = env.ok(&["run", "--rm", "bb", "sh", "-c", "echo $$"]);
    assert_eq!(out, "1\n");
}

/// Zombies in the container, as pid 1 sees /proc.
fn zombies(env: &crate::harness::Env, name: &str) -> usize {
    let out = env.ok(&["exec", name, "sh", "-c", "cat /proc/[0-9]*/stat"]);
    out.lines().filter(|l| l.contains(") Z ")).count()
}

#[test]
fn init_reaps_orphans() {
    let env = env_or_skip!();
    // The subshell leaves `sleep 0.1` an orphan, reparented to pid 1; the
    // command then becomes a `sleep` that never waits for anything.
    let script = "(sleep 0.1 &); exec sleep 60";
    env.ok(&[
        "run", "-d", "--init", "--name", "reaped", "bb", "sh", "-c", script,
    ]);
    env.ok(&["run", "-d", "--name", "unreaped", "bb", "sh", "-c", script]);
    // Without an init the orphan stays a zombie (so the check can fail).
    assert!(eventually(10, || zombies(&env, "unreaped") == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(zombies(&env, "reaped"), 0);
    let ps = env.ok(&["exec", "reaped", "ps", "-o", "pid,comm"]);
    assert!(ps.contains("strata-init"), "{ps}");
    env.ok(&["rm", "-f", "reaped", "unreaped"]);
}

#[test]
fn stop_reaches_the_command_through_init() {
    let env = env_or_skip!();
    // `sleep` as pid 1 would ignore SIGTERM; as init's child it dies of it.
    env.ok(&[
        "run", "-d", "--init", "--name", "sleeper", "bb", "sleep", "60",
    ]);
    let started = Instant::now();
    env.ok(&["stop", "-t", "20", "sleeper"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let code = env.ok(&["inspect", "-f", "{{.State.ExitCode}}", "sleeper"]);
    assert_eq!(code.trim(), "143");

    // Signals from `kill` are forwarded too.
    env.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "trapper",
        "bb",
        "sh",
        "-c",
        "trap 'exit 42' USR1; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["kill", "-s", "USR1", "trapper"]);
    assert_eq!(env.ok(&["wait", "trapper"]).trim(), "42");
}

#[test]
fn init_passes_on_exit_codes() {
    let env = env_or_skip!();
    let code = |args: &[&str]| env.run(args).status.code();
    assert_eq!(
        code(&["run", "--rm", "--init", "bb", "sh", "-c", "exit 3"]),
        Some(3)
    );
    assert_eq!(
        code(&["run", "--rm", "--init", "bb", "sh", "-c", "kill -9 $$"]),
        Some(137)
    );
    let out = env.run(&["run", "--rm", "--init", "bb", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("executable file not found"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["run", "--rm", "--init", "bb", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(stderr(&out).contains("/etc/passwd"), "{}", stderr(&out));
    let out = env.run(&["run", "--rm", "--init", "bb", "echo", "hi"]);
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    // The monitor unmounts a removed container's root after run returned.
    assert!(
        eventually(2, || env.mounts().is_empty()),
        "{:?}",
        env.mounts()
    );
}
