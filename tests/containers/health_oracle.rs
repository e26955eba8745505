//! Restart policies and health checks side by side with Docker 20.10
//! (a daemon of the test's own, `dockerd.rs`): the same commands on
//! both, and the same `inspect` JSON (HostConfig.RestartPolicy, State
//! with Restarting and Health, RestartCount, Config.Healthcheck), `ps`
//! STATUS texts, `events` and `--format` output, with times, pids and
//! durations masked (their values differ, their shapes must not).

use std::process::Output;

use serde_json::{json, Value};

use crate::dockerd::Docker;
use crate::env_or_skip;
use crate::harness::{container_events, eventually, stderr, stdout};

type Run<'a> = &'a dyn Fn(&[&str]) -> Output;

fn ok(run: Run, args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn inspect(run: Run, name: &str) -> Value {
    let v: Value = serde_json::from_str(&ok(run, &["inspect", name])).expect("inspect json");
    v[0].clone()
}

/// A time as `<time>` (but Go's zero time, which shows what was never
/// set), a pid as `<pid>` (but 0).
fn mask(v: &Value, key: &str) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), mask(v, k))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|v| mask(v, key)).collect()),
        Value::String(s) if s.len() > 19 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' => {
            if s == "0001-01-01T00:00:00Z" {
                v.clone()
            } else {
                json!("<time>")
            }
        }
        Value::Number(n) if key == "Pid" && n.as_i64() != Some(0) => json!("<pid>"),
        _ => v.clone(),
    }
}

/// The parts of `inspect` this test holds to Docker's, masked; the
/// health log cut to its first entry and the failing streak to whether
/// there is one (both grow with time).
fn restart_and_health(v: &Value) -> Value {
    let mut state = v["State"].clone();
    if let Some(health) = state.get_mut("Health") {
        if let Some(log) = health["Log"].as_array_mut() {
            log.truncate(1);
        }
        let streak = health["FailingStreak"].as_u64().unwrap_or(0);
        health["FailingStreak"] = json!(streak.min(1));
    }
    let mut parts = json!({
        "State": state,
        "RestartCount": v["RestartCount"],
        "HostConfig.RestartPolicy": v["HostConfig"]["RestartPolicy"],
    });
    // Present (maybe null) or missing, as Docker has it.
    if let Some(check) = v["Config"].get("Healthcheck") {
        parts["Config.Healthcheck"] = check.clone();
    }
    mask(&parts, "")
}

/// `ps`'s STATUS for `name`, durations masked: `Up <d> (healthy)`,
/// `Exited (1) <d> ago`, `Restarting (2) <d> ago`.
fn ps_status(run: Run, name: &str) -> String {
    let out = ok(run, &["ps", "-a", "--format", "{{.Names}}\t{{.Status}}"]);
    let status = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}\t")))
        .unwrap_or_default()
        .to_string();
    if let Some(rest) = status.strip_prefix("Up ") {
        let health = rest.find(" (").map(|i| &rest[i..]).unwrap_or_default();
        return format!("Up <d>{health}");
    }
    match status.find(") ") {
        Some(i) if status.ends_with(" ago") => format!("{}<d> ago", &status[..i + 2]),
        _ => status,
    }
}

/// An event's action and the names of its attributes.
type EventShape = (String, Vec<String>);

/// The container's events so far: each action once, in the order first
/// seen, and the attribute names of each.
fn events(run: Run, name: &str) -> Vec<EventShape> {
    let text = container_events(|a| ok(run, a), name, None, "{{json .}}");
    let mut seen: Vec<EventShape> = Vec::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).expect("event json");
        let action = e["Action"].as_str().unwrap_or_default().to_string();
        let attributes = e["Actor"]["Attributes"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        if !seen.iter().any(|(a, _)| *a == action) {
            seen.push((action, attributes));
        }
    }
    seen
}

/// The actions of the container's events, in order.
fn actions(run: Run, name: &str) -> Vec<String> {
    container_events(|a| ok(run, a), name, None, "{{.Action}}")
        .lines()
        .map(str::to_string)
        .collect()
}

fn health_status(run: Run, name: &str) -> String {
    ok(
        run,
        &["inspect", "--format", "{{.State.Health.Status}}", name],
    )
    .trim()
    .to_string()
}

/// Everything the test compares, for one engine.
#[derive(Debug, PartialEq)]
struct Transcript {
    inspect: Vec<(String, Value)>,
    ps: Vec<(String, String)>,
    events: Vec<(String, Vec<EventShape>)>,
    restart_actions: Vec<String>,
    formats: Vec<String>,
}

fn transcript(run: Run) -> Transcript {
    let mut t = Transcript {
        inspect: Vec::new(),
        ps: Vec::new(),
        events: Vec::new(),
        restart_actions: Vec::new(),
        formats: Vec::new(),
    };
    let keep = |t: &mut Transcript, what: &str, name: &str| {
        t.inspect
            .push((what.to_string(), restart_and_health(&inspect(run, name))));
        t.ps.push((what.to_string(), ps_status(run, name)));
    };
    let net = ["--network", "none"];
    // No policy, no check.
    ok(run, &["create", "--name", "plain", "bb", "true"]);
    keep(&mut t, "created", "plain");
    // Waiting to restart: Restarting, Running, no pid.
    let mut args = vec!["run", "-d", "--name", "again", "--restart", "always"];
    args.extend(net);
    args.extend(["bb", "sh", "-c", "exit 2"]);
    ok(run, &args);
    assert!(eventually(30, || inspect(run, "again")["State"]
        ["Restarting"]
        == true));
    keep(&mut t, "restarting", "again");
    ok(run, &["rm", "-f", "again"]);
    // on-failure:3: three restarts, then exited.
    let mut args = vec!["run", "-d", "--name", "flaky", "--restart", "on-failure:3"];
    args.extend(net);
    args.extend(["bb", "sh", "-c", "exit 1"]);
    ok(run, &args);
    assert!(eventually(60, || {
        let v = inspect(run, "flaky");
        v["State"]["Status"] == "exited" && v["RestartCount"] == 3
    }));
    keep(&mut t, "on-failure exited", "flaky");
    t.restart_actions = actions(run, "flaky");
    // Health: healthy, unhealthy, starting.
    let checks: [(&str, &[&str], &str); 3] = [
        (
            "fine",
            &[
                "--health-cmd",
                "echo ok",
                "--health-interval",
                "1s",
                "--health-timeout",
                "2s",
                "--health-retries",
                "2",
                "--health-start-period",
                "3s",
            ],
            "healthy",
        ),
        (
            "sick",
            &[
                "--health-cmd",
                "echo bad; exit 1",
                "--health-interval",
                "1s",
                "--health-retries",
                "1",
            ],
            "unhealthy",
        ),
        (
            "new",
            &["--health-cmd", "echo ok", "--health-interval", "30s"],
            "starting",
        ),
    ];
    for (name, flags, _) in checks {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(net);
        args.extend(flags);
        args.extend(["bb", "sleep", "1000"]);
        ok(run, &args);
    }
    for (name, _, want) in checks {
        assert!(
            eventually(30, || health_status(run, name) == want),
            "{name}: {}",
            health_status(run, name)
        );
        keep(&mut t, want, name);
        t.formats.push(health_status(run, name));
        if want != "starting" {
            t.events.push((name.to_string(), events(run, name)));
        }
    }
    // A check stops with its container: unhealthy, the log kept; a new
    // start makes it starting again, the log still kept.
    let mut args = vec!["run", "-d", "--name", "ended"];
    args.extend(net);
    args.extend(["--health-cmd", "echo ok", "--health-interval", "1s"]);
    args.extend(["bb", "sleep", "1.5"]);
    ok(run, &args);
    assert!(eventually(30, || inspect(run, "ended")["State"]["Status"] == "exited"));
    keep(&mut t, "ended", "ended");
    ok(run, &["start", "ended"]);
    keep(&mut t, "started again", "ended");
    ok(
        run,
        &["rm", "-f", "fine", "sick", "new", "flaky", "plain", "ended"],
    );
    t
}

#[test]
fn restart_and_health_output_match_docker() {
    let env = env_or_skip!();
    let Some(docker) = Docker::start(&env, &[]) else {
        return;
    };
    let tar = env.build_image_tar(&[]);
    docker.ok(&["import", tar.to_str().expect("utf8"), "bb:latest"]);
    let theirs = transcript(&|args: &[&str]| docker.run(args));
    let ours = transcript(&|args: &[&str]| env.run(args));
    for (d, s) in theirs.inspect.iter().zip(&ours.inspect) {
        assert_eq!(
            d,
            s,
            "inspect, {}: Docker (left) and strata (right) differ:\n{}\n{}",
            d.0,
            serde_json::to_string_pretty(&d.1).unwrap_or_default(),
            serde_json::to_string_pretty(&s.1).unwrap_or_default()
        );
    }
    assert_eq!(
        theirs.ps, ours.ps,
        "ps STATUS: Docker (left), strata (right)"
    );
    assert_eq!(
        theirs.events, ours.events,
        "events: Docker (left), strata (right)"
    );
    assert_eq!(
        theirs.restart_actions, ours.restart_actions,
        "a policy's restarts' events: Docker (left), strata (right)"
    );
    assert_eq!(theirs.formats, ours.formats);
    assert_eq!(theirs, ours);
}
