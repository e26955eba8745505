//! The seccomp filter (issue 16): Docker's default profile unless
//! `--security-opt seccomp=unconfined` or `--privileged`; a profile file
//! in Docker's format; bad profiles refused before anything is created.

use std::path::Path;

use crate::env_or_skip;
use crate::harness::{stderr, stdout, Env};

fn seccomp_mode(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no Seccomp line in {out:?}"))
}

/// Whether this host lets an unprivileged process make a user namespace
/// (what `unshare -U -r` needs once seccomp no longer stops it).
fn host_allows_user_namespaces() -> bool {
    std::process::Command::new(crate::harness::busybox())
        .args(["unshare", "-U", "-r", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

fn write_profile(env: &Env, name: &str, text: &str) -> String {
    let path = env.root().join(name);
    std::fs::write(&path, text).expect("profile");
    path.to_string_lossy().into_owned()
}

#[test]
fn default_profile_refuses_user_namespaces_to_container_root() {
    let env = env_or_skip!();
    let script = "grep Seccomp: /proc/self/status; unshare -U -r true; echo unshare=$?";
    let out = env.run(&["run", "--rm", "bb", "sh", "-c", script]);
    let text = stdout(&out);
    assert_eq!(seccomp_mode(&text), "2", "{text}");
    assert!(text.contains("unshare=1"), "{text}");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "EPERM, as Docker: {}",
        stderr(&out)
    );
    // The same for another user, with no-new-privileges, and for exec.
    for extra in [
        &["-u", "nobody"][..],
        &["--security-opt", "no-new-privileges"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend(["bb", "sh", "-c", script]);
        let text = env.ok(&args);
        assert_eq!(seccomp_mode(&text), "2", "{extra:?}: {text}");
        assert!(text.contains("unshare=1"), "{extra:?}: {text}");
    }
    env.ok(&["run", "-d", "--name", "long", "bb", "sleep", "60"]);
    let text = env.ok(&["exec", "long", "sh", "-c", script]);
    assert_eq!(seccomp_mode(&text), "2", "{text}");
    assert!(text.contains("unshare=1"), "{text}");
    // exec --privileged gets every capability but keeps the filter, as
    // Docker's does.
    let text = env.ok(&[
        "exec",
        "--privileged",
        "long",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(seccomp_mode(&text), "2", "{text}");
    env.ok(&["rm", "-f", "long"]);
    // With CAP_SYS_ADMIN the profile allows the namespace syscalls.
    let text = env.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "bb",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; unshare -m true; echo unshare=$?",
    ]);
    assert_eq!(seccomp_mode(&text), "2", "{text}");
    assert!(text.contains("unshare=0"), "{text}");
}

#[test]
fn unconfined_and_privileged_get_no_filter() {
    let env = env_or_skip!();
    let script = "grep Seccomp: /proc/self/status; unshare -U -r true; echo unshare=$?";
    let text = env.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "bb",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(seccomp_mode(&text), "0", "{text}");
    if host_allows_user_namespaces() {
        assert!(text.contains("unshare=0"), "{text}");
    } else {
        eprintln!("this host refuses unprivileged user namespaces: not checking unshare");
    }
    let text = env.ok(&[
        "run",
        "--rm",
        "--privileged",
        "bb",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(seccomp_mode(&text), "0", "{text}");
    // Docker's colon form; inspect shows the choice.
    env.ok(&[
        "create",
        "--name",
        "open",
        "--security-opt",
        "seccomp:unconfined",
        "bb",
        "true",
    ]);
    let opts = env.ok(&["inspect", "-f", "{{json .HostConfig.SecurityOpt}}", "open"]);
    assert_eq!(opts.trim(), r#"["seccomp=unconfined"]"#);
    env.ok(&["rm", "open"]);
}

#[test]
fn a_profile_file_sets_the_errno_of_denied_syscalls() {
    let env = env_or_skip!();
    let profile = write_profile(
        &env,
        "no-mkdir.json",
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}
            ]
        }"#,
    );
    let opt = format!("seccomp={profile}");
    let out = env.run(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "bb",
        "mkdir",
        "/tmp/d",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "errno 28: {}",
        stderr(&out)
    );
    // Kept with the container (the file may go), applied to exec too,
    // and shown by inspect as Docker shows it: the compacted profile.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "custom",
        "--security-opt",
        &opt,
        "bb",
        "sleep",
        "60",
    ]);
    std::fs::remove_file(&profile).expect("rm profile");
    let out = env.run(&["exec", "custom", "mkdir", "/tmp/d"]);
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let text = env.ok(&[
        "exec",
        "custom",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; touch /tmp/f && echo touched",
    ]);
    assert_eq!(seccomp_mode(&text), "2", "{text}");
    assert!(text.contains("touched"), "{text}");
    let opts = env.ok(&[
        "inspect",
        "-f",
        "{{json .HostConfig.SecurityOpt}}",
        "custom",
    ]);
    let opts: Vec<String> = serde_json::from_str(&opts).expect("json");
    assert_eq!(
        opts,
        [
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":28}]}"#
        ]
    );
    env.ok(&["rm", "-f", "custom"]);
}

#[test]
fn bad_profiles_are_one_line_errors_and_create_nothing() {
    let env = env_or_skip!();
    let missing = env.root().join("missing.json");
    let not_json = write_profile(&env, "bad.json", "{\"defaultAction\": ");
    let bad_action = write_profile(
        &env,
        "action.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}]}"#,
    );
    for (profile, expected) in [
        (missing.to_str().expect("utf8"), "opening seccomp profile"),
        (not_json.as_str(), "decoding seccomp profile"),
        (bad_action.as_str(), "unknown action \"SCMP_ACT_EXPLODE\""),
    ] {
        for verb in ["run", "create"] {
            let opt = format!("seccomp={profile}");
            let out = env.run(&[verb, "--security-opt", &opt, "bb", "true"]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(125), "{verb} {profile}: {err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains(expected) && err.contains(profile), "{err}");
        }
    }
    let out = env.run(&["run", "--security-opt", "seccomp", "bb", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Invalid --security-opt"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "", "nothing was created");
}

#[test]
fn ordinary_workloads_run_under_the_default_profile() {
    let env = env_or_skip!();
    let script = "echo hi > /tmp/f && cat /tmp/f && ls / >/dev/null && ps >/dev/null \
                  && sleep 0.1 && mkdir /tmp/d && echo ok";
    assert_eq!(
        env.ok(&["run", "--rm", "bb", "sh", "-c", script]),
        "hi\nok\n"
    );
    // With --init, pid 1 (init) is filtered too and still forwards
    // signals and reaps.
    let script = "trap 'echo got-usr1; exit 7' USR1; while true; do sleep 0.05; done";
    env.ok(&[
        "run", "-d", "--init", "--name", "trapper", "bb", "sh", "-c", script,
    ]);
    let init = env.ok(&["exec", "trapper", "grep", "Seccomp:", "/proc/1/status"]);
    assert_eq!(seccomp_mode(&init), "2", "{init}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    env.ok(&["kill", "-s", "USR1", "trapper"]);
    assert_eq!(env.ok(&["wait", "trapper"]).trim(), "7");
    assert!(env.ok(&["logs", "trapper"]).contains("got-usr1"));
    env.ok(&["rm", "trapper"]);
}

#[test]
fn compiled_filters_are_cached_in_the_store() {
    let env = env_or_skip!();
    env.ok(&["run", "--rm", "bb", "true"]);
    let cache = env.root().join("seccomp");
    let files: Vec<_> = std::fs::read_dir(&cache)
        .expect("seccomp cache")
        .flatten()
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // A damaged entry is replaced, not loaded.
    let entry = files[0].path();
    std::fs::write(&entry, [0u8; 40]).expect("damage");
    let text = env.ok(&["run", "--rm", "bb", "grep", "Seccomp:", "/proc/self/status"]);
    assert_eq!(seccomp_mode(&text), "2");
    assert!(std::fs::metadata(&entry).expect("entry").len() > 40);
    assert!(Path::new(&entry).exists());
}
