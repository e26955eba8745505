//! Restart policies carried out by the monitor, and `system boot`.

use std::time::{Duration, Instant};

use crate::env_or_skip;
use crate::harness::{container_events, eventually, private_network, stderr, Env};

fn status(env: &Env, name: &str) -> String {
    env.ok(&["inspect", "-f", "{{.State.Status}}", name])
        .trim()
        .to_string()
}

fn ps_status(env: &Env, name: &str) -> String {
    env.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ])
    .trim()
    .to_string()
}

fn events(env: &Env, name: &str, action: &str) -> usize {
    container_events(|a| env.ok(a), name, Some(action), "{{.Action}}")
        .lines()
        .count()
}

/// `on-failure:5` with a command that fails at once: five restarts with
/// Docker's back-off (100+200+400+800+1600 ms), `Restarting (1) ...` in
/// `ps` meanwhile, then `Exited (1)` with RestartCount 5; each run had
/// its own mount and veth (on the default bridge), and none is left, nor
/// any process.
#[test]
fn on_failure_restarts_n_times_with_back_off_and_leaks_nothing() {
    private_network();
    let env = env_or_skip!();
    let began = Instant::now();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:5",
        "bb",
        "sh",
        "-c",
        "echo ran; exit 1",
    ]);
    let mut seen_restarting = String::new();
    assert!(eventually(10, || {
        let s = ps_status(&env, "flaky");
        if s.starts_with("Restarting") {
            seen_restarting = s;
        }
        !seen_restarting.is_empty()
    }));
    assert!(
        seen_restarting.starts_with("Restarting (1) ") && seen_restarting.ends_with(" ago"),
        "{seen_restarting}"
    );
    assert!(
        eventually(30, || status(&env, "flaky") == "exited"),
        "{}",
        status(&env, "flaky")
    );
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(3100), "{took:?}");
    let v = env.inspect("flaky");
    assert_eq!(v["RestartCount"], 5, "{v}");
    assert_eq!(v["State"]["ExitCode"], 1);
    assert_eq!(v["State"]["Restarting"], false);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 5);
    assert!(ps_status(&env, "flaky").starts_with("Exited (1) "));
    // Six runs, each with its own start and die.
    assert_eq!(env.ok(&["logs", "flaky"]), "ran\n".repeat(6));
    assert_eq!(events(&env, "flaky", "start"), 6);
    assert_eq!(events(&env, "flaky", "die"), 6);
    // Nothing left of any run.
    env.assert_nothing_left();
    // Stays exited.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.inspect("flaky")["RestartCount"], 5);
    env.ok(&["rm", "flaky"]);
}

/// `always` restarts a command that succeeds too; `kill` (during the
/// back-off or while it runs) and `stop` end the policy until the next
/// `start`; `update --restart` changes it for a running container.
#[test]
fn kill_and_stop_end_the_policy_and_update_sets_it() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "bb",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    assert!(eventually(10, || env.container("loop").state.restart_count >= 2));
    env.ok(&["kill", "loop"]);
    assert!(eventually(5, || status(&env, "loop") == "exited"));
    let count = env.container("loop").state.restart_count;
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(status(&env, "loop"), "exited");
    assert_eq!(env.container("loop").state.restart_count, count);
    assert!(env.processes().is_empty(), "{:?}", env.processes());
    // `start` brings the policy back, counted from zero.
    env.ok(&["start", "loop"]);
    assert!(eventually(10, || env.container("loop").state.restart_count >= 1));
    env.ok(&["stop", "-t", "1", "loop"]);
    assert_eq!(status(&env, "loop"), "exited");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(status(&env, "loop"), "exited");
    // `restart` is Docker's event (a policy restart is die and start).
    assert_eq!(events(&env, "loop", "restart"), 0);
    env.ok(&["restart", "-t", "0", "loop"]);
    assert_eq!(events(&env, "loop", "restart"), 1);
    env.ok(&["stop", "-t", "0", "loop"]);

    // A policy given to a running container applies at its exit.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "later",
        "bb",
        "sh",
        "-c",
        "sleep 0.5; exit 3",
    ]);
    env.ok(&["update", "--restart", "on-failure:2", "later"]);
    assert!(eventually(15, || status(&env, "later") == "exited"
        && env.container("later").state.restart_count == 2));
    assert_eq!(
        env.inspect("later")["HostConfig"]["RestartPolicy"]["MaximumRetryCount"],
        2
    );
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

/// Bad policies are Docker's one-line errors, exit 125, and create
/// nothing.
#[test]
fn bad_restart_policies_are_dockers_errors() {
    let env = env_or_skip!();
    for (args, message) in [
        (
            vec!["run", "--rm", "--restart", "always", "bb", "true"],
            "Conflicting options: --restart and --rm",
        ),
        (
            vec!["create", "--restart", "sometimes", "bb"],
            "invalid restart policy 'sometimes'",
        ),
        (
            vec!["create", "--restart", "always:3", "bb"],
            "maximum retry count cannot be used with restart policy 'always'",
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    let id = env.ok(&["create", "--name", "gone", "--rm", "bb", "true"]);
    // The daemon's refusal: exit 1, in Docker 20.10's words.
    let out = env.run(&["update", "--restart", "always", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "Error response from daemon: Cannot update container {}: Restart policy cannot be updated because AutoRemove is enabled for the container\n",
            id.trim()
        )
    );
}

/// A reboot, simulated by killing every monitor of the test's store:
/// `system boot` starts the `always` containers (even one the user
/// stopped, as Docker's daemon does) and the `unless-stopped` ones the
/// user did not stop; not the others.
#[test]
fn system_boot_starts_what_the_policies_say_after_a_reboot() {
    let env = env_or_skip!();
    for (name, policy) in [
        ("al", "always"),
        ("al-stopped", "always"),
        ("us", "unless-stopped"),
        ("us-stopped", "unless-stopped"),
        ("none", "no"),
    ] {
        env.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--restart",
            policy,
            "bb",
            "sleep",
            "1000",
        ]);
    }
    env.ok(&["stop", "-t", "0", "al-stopped", "us-stopped"]);
    // The "reboot": only this store's monitors, by pid.
    for name in ["al", "us", "none"] {
        let monitor = env.container(name).state.monitor_pid;
        assert!(monitor > 0);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(monitor),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    assert!(eventually(5, || env.processes().is_empty()));
    let out = env.ok(&["system", "boot"]);
    let mut started: Vec<&str> = out.lines().collect();
    started.sort();
    assert_eq!(started, vec!["al", "al-stopped", "us"]);
    for (name, want) in [
        ("al", "running"),
        ("al-stopped", "running"),
        ("us", "running"),
        ("us-stopped", "exited"),
        ("none", "exited"),
    ] {
        assert_eq!(status(&env, name), want, "{name}");
    }
    // Once more changes nothing: they run.
    assert_eq!(env.ok(&["system", "boot"]), "");
    env.ok(&["rm", "-f", "al", "al-stopped", "us", "us-stopped", "none"]);
    assert!(eventually(3, || env.mounts().is_empty()));
}

/// A check that fails until a file exists: `(health: starting)`, then
/// `(unhealthy)` after the retries, then `(healthy)` once the file is
/// made; `State.Health` holds the streak and the last five probes; the
/// two changes are `health_status` events. `--no-healthcheck` with a
/// `--health-*` flag is Docker's error.
#[test]
fn health_check_flips_from_unhealthy_to_healthy() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--network",
        "none",
        "--health-cmd",
        "test -f /ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "bb",
        "sleep",
        "1000",
    ]);
    assert!(ps_status(&env, "hc").ends_with("(health: starting)"));
    assert!(
        eventually(10, || ps_status(&env, "hc").ends_with("(unhealthy)")),
        "{}",
        ps_status(&env, "hc")
    );
    let health = &env.inspect("hc")["State"]["Health"];
    assert_eq!(health["Status"], "unhealthy");
    assert!(health["FailingStreak"].as_u64().unwrap() >= 2, "{health}");
    assert_eq!(health["Log"][0]["ExitCode"], 1, "{health}");
    env.ok(&["exec", "hc", "sh", "-c", ">/ok"]);
    assert!(
        eventually(10, || ps_status(&env, "hc").ends_with("(healthy)")),
        "{}",
        ps_status(&env, "hc")
    );
    std::thread::sleep(Duration::from_millis(1500));
    let health = env.inspect("hc")["State"]["Health"].clone();
    assert_eq!(health["FailingStreak"], 0);
    let log = health["Log"].as_array().unwrap();
    assert_eq!(log.len(), 5, "{health}");
    assert_eq!(log[4]["Output"], "fine\n");
    assert_eq!(
        env.inspect("hc")["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -f /ok && echo fine"])
    );
    // Docker's filter matches the action before its colon.
    assert_eq!(events(&env, "hc", "health_status"), 2);
    env.ok(&["rm", "-f", "hc"]);
    let out = env.run(&["create", "--no-healthcheck", "--health-retries", "1", "bb"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("--no-healthcheck conflicts with --health-* options"),
        "{}",
        stderr(&out)
    );
    assert!(eventually(3, || env.mounts().is_empty()));
}
