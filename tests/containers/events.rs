//! `strata events`: what the commands and monitors record, Docker's
//! line and JSON formats, filters, following, and the bound.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::env_or_skip;
use crate::harness::stdout;

fn lines(env: &crate::harness::Env, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["events", "--since", "0", "--until", "0s"];
    args.extend_from_slice(extra);
    stdout(&env.run(&args))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn commands_and_monitors_record_dockers_events() {
    let env = env_or_skip!();
    env.ok(&["volume", "create", "ev-vol"]);
    env.ok(&[
        "create",
        "--name",
        "ev1",
        "-l",
        "team=a",
        "-v",
        "ev-vol:/data",
        "bb",
        "sh",
        "-c",
        "sleep 30",
    ]);
    env.ok(&["start", "ev1"]);
    env.ok(&["exec", "ev1", "true"]);
    env.ok(&["pause", "ev1"]);
    env.ok(&["unpause", "ev1"]);
    env.ok(&["stop", "-t", "0", "ev1"]);
    env.ok(&["rename", "ev1", "ev2"]);
    env.ok(&["rm", "ev2"]);
    env.ok(&["volume", "rm", "ev-vol"]);
    env.ok(&["tag", "bb", "bb:two"]);
    env.ok(&["rmi", "bb:two"]);
    let shown = lines(
        &env,
        &[
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ],
    );
    let shown: Vec<String> = shown.iter().map(|l| l.replace(" <no value>", "")).collect();
    let expected = [
        "volume create",
        "container create ev1",
        "volume mount",
        "container start ev1",
        "container exec_create: true ev1",
        "container exec_start: true ev1",
        "container exec_die ev1 0",
        "container pause ev1",
        "container unpause ev1",
        "container kill ev1",
        "volume unmount",
        "container die ev1 137",
        "container stop ev1",
        "container rename ev2",
        "container destroy ev2",
        "volume destroy",
        "image tag bb:two",
        "image untag bb:two",
    ];
    let mut at = 0;
    for want in expected {
        let found = shown[at..].iter().position(|l| l.trim_end() == want);
        assert!(found.is_some(), "{want:?} after line {at} in {shown:#?}");
        at += found.unwrap() + 1;
    }
    // Docker's line: time, type, action, ID, sorted attributes.
    let die = lines(&env, &["--filter", "event=die"]);
    assert_eq!(die.len(), 1, "{die:?}");
    assert!(
        die[0].contains(" container die ")
            && die[0].ends_with("(exitCode=137, image=bb, name=ev1, team=a)"),
        "{}",
        die[0]
    );
    assert!(
        die[0].as_bytes()[4] == b'-' && die[0].contains('T'),
        "{}",
        die[0]
    );
    // {{json .}} is the API's message.
    let json = lines(
        &env,
        &[
            "--filter",
            "type=container",
            "--filter",
            "event=kill",
            "--format",
            "{{json .}}",
        ],
    );
    // stop -t 0: the stop signal, then SIGKILL at once, as Docker.
    assert_eq!(json.len(), 2, "{json:?}");
    let v: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
    assert_eq!(v["status"], "kill");
    assert_eq!(v["from"], "bb");
    assert_eq!(v["Actor"]["Attributes"]["signal"], "15");
    let v: serde_json::Value = serde_json::from_str(&json[1]).unwrap();
    assert_eq!(v["Actor"]["Attributes"]["signal"], "9");
    assert_eq!(v["scope"], "local");
    assert!(v["timeNano"].as_i64().unwrap() / 1_000_000_000 == v["time"].as_i64().unwrap());
    // Filters: label, container by name, image, volume.
    assert!(lines(&env, &["--filter", "label=team=a"]).len() >= 10);
    assert!(lines(&env, &["--filter", "label=team=b"]).is_empty());
    assert_eq!(lines(&env, &["--filter", "volume=ev-vol"]).len(), 4);
    assert_eq!(
        lines(&env, &["--filter", "container=ev2"]).len(),
        2,
        "rename and destroy carry the new name"
    );
    // bb:two's tag and untag match image=bb (the tag stripped, as Docker).
    assert_eq!(
        lines(&env, &["--filter", "image=bb", "--filter", "type=image"]).len(),
        2
    );
    // Bad input: one line, exit 125.
    let out = env.run(&["events", "--filter", "colour=red", "--until", "0"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid filter 'colour'"));
    let out = env.run(&["events", "--since", "yesterday", "--until", "0"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn events_without_until_follow_new_events() {
    let env = env_or_skip!();
    env.ok(&["run", "--rm", "--name", "before", "bb", "true"]);
    let mut follower = env
        .cmd(&[
            "system",
            "events",
            "--filter",
            "type=container",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = follower.id();
    let mut out = BufReader::new(follower.stdout.take().unwrap());
    // Give it time to start: what happened before is not shown.
    std::thread::sleep(std::time::Duration::from_millis(500));
    env.run(&["run", "--rm", "--name", "after", "bb", "sh", "-c", "exit 2"]);
    let mut seen = Vec::new();
    let mut line = String::new();
    while !seen.iter().any(|l: &String| l.starts_with("destroy")) {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{seen:?}");
        seen.push(line.trim_end().to_string());
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = follower.wait();
    assert_eq!(
        seen,
        ["create after", "start after", "die after", "destroy after"]
    );
}

#[test]
fn the_log_keeps_the_last_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = strata::store::Store::open(dir.path()).unwrap();
    let total = strata::events::MAX_EVENTS + 25;
    store.conn().execute_batch("BEGIN").unwrap();
    for i in 0..total {
        strata::events::record(
            &store,
            "volume",
            "create",
            &format!("v{i}"),
            Default::default(),
        );
    }
    store.conn().execute_batch("COMMIT").unwrap();
    let kept = strata::events::list(&store, 0, None, None).unwrap();
    assert_eq!(kept.len() as i64, strata::events::MAX_EVENTS);
    assert_eq!(kept[0].actor_id, "v25");
    assert_eq!(kept.last().unwrap().actor_id, format!("v{}", total - 1));
}
