//! Terminals beyond `run -t`: `exec -t` in the container's own devpts,
//! terminals owned by a non-root user, `--detach-keys`, `--sig-proxy`,
//! and an attached start whose client never connects.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::env_or_skip;
use crate::harness::{eventually, stderr, stdout, Env};
use crate::stdio::{read_until, wait_code, Terminal};

fn running(env: &Env, name: &str) -> bool {
    env.ok(&["ps", "-q", "--filter", &format!("name={name}")])
        .trim()
        .len()
        == 12
}

#[test]
fn exec_t_opens_its_terminal_in_the_container_devpts() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "box", "bb", "sleep", "1000"]);
    let (mut term, mut exec) = Terminal::spawn(&env, &["exec", "-it", "box", "sh"], 31, 97);
    term.type_in(b"tty; stty size; echo $((6*7))\n");
    // The container's devpts (its first terminal), not the host's.
    term.expect("/dev/pts/0");
    term.expect("31 97");
    term.expect("42");
    term.resize(44, 111);
    std::thread::sleep(Duration::from_millis(300));
    term.type_in(b"stty size\n");
    term.expect("44 111");
    term.type_in(b"exit 6\n");
    assert_eq!(wait_code(&mut exec), Some(6));
    // Without a terminal on the client, exec -t still gives one.
    let out = env.run(&["exec", "-t", "box", "tty"]);
    assert!(stdout(&out).starts_with("/dev/pts/"), "{}", stdout(&out));
}

#[test]
fn a_non_root_user_owns_and_can_reopen_its_terminal() {
    let env = env_or_skip!();
    let script = "stat -c '%u %g %a' $(tty); echo hi >/dev/tty && echo reopened-tty; \
                  echo hi >$(tty) && echo reopened-pts";
    let out = env.run(&[
        "run",
        "-t",
        "--rm",
        "-u",
        "1000:1000",
        "bb",
        "sh",
        "-c",
        script,
    ]);
    let text = stdout(&out);
    assert!(text.contains("1000 1000 620"), "{text}");
    assert!(
        text.contains("reopened-tty") && text.contains("reopened-pts"),
        "{text}"
    );

    env.ok(&["run", "-d", "--name", "box", "bb", "sleep", "1000"]);
    let out = env.run(&["exec", "-t", "-u", "nobody", "box", "sh", "-c", script]);
    let text = stdout(&out);
    assert!(text.contains("65534 65534 620"), "{text}");
    assert!(
        text.contains("reopened-tty") && text.contains("reopened-pts"),
        "{text}"
    );
}

/// The default keys (ctrl-p ctrl-q) no longer detach the client, ctrl-a x
/// does; ctrl-u clears what the default keys typed.
fn only_ctrl_a_x_detaches(term: &mut Terminal, client: &mut std::process::Child) {
    term.type_in(b"echo $((2+3))\n");
    term.expect("5");
    term.type_in(&[0x10, 0x11, 0x15]);
    term.type_in(b"echo $((3+4))\n");
    term.expect("7");
    term.type_in(&[0x01, b'x']);
    assert_eq!(wait_code(client), Some(0));
}

#[test]
fn detach_keys_can_be_chosen_for_run_attach_exec_and_start() {
    let env = env_or_skip!();
    let (mut term, mut run) = Terminal::spawn(
        &env,
        &[
            "run",
            "-it",
            "--detach-keys",
            "ctrl-a,x",
            "--name",
            "keys",
            "bb",
            "sh",
        ],
        24,
        80,
    );
    only_ctrl_a_x_detaches(&mut term, &mut run);
    assert!(eventually(5, || running(&env, "keys")));

    let (mut term, mut attach) =
        Terminal::spawn(&env, &["attach", "--detach-keys=ctrl-@", "keys"], 24, 80);
    term.type_in(b"echo $((4+5))\n");
    term.expect("9");
    term.type_in(&[0]);
    assert_eq!(wait_code(&mut attach), Some(0));
    assert!(running(&env, "keys"));

    let (mut term, mut exec) = Terminal::spawn(
        &env,
        &["exec", "-it", "--detach-keys", "ctrl-b", "keys", "sh"],
        24,
        80,
    );
    term.type_in(b"echo exec-$((5+6))\n");
    term.expect("exec-11");
    term.type_in(&[0x02]);
    assert_eq!(wait_code(&mut exec), Some(0));
    // The exec's shell outlives its detached client.
    let ps = env.ok(&["exec", "keys", "ps", "-o", "comm"]);
    assert_eq!(ps.lines().filter(|l| l.trim() == "sh").count(), 2, "{ps}");

    env.ok(&["create", "-it", "--name", "starter", "bb", "sh"]);
    let (mut term, mut start) = Terminal::spawn(
        &env,
        &["start", "-ai", "--detach-keys", "q", "starter"],
        24,
        80,
    );
    term.type_in(b"echo $((6+7))\n");
    term.expect("13");
    term.type_in(b"q");
    assert_eq!(wait_code(&mut start), Some(0));
    assert!(eventually(5, || running(&env, "starter")));
}

#[test]
fn invalid_detach_keys_fail_with_one_line_and_125() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "box", "bb", "sleep", "1000"]);
    for args in [
        &["run", "--detach-keys", "foo", "bb", "true"][..],
        &["start", "--detach-keys", "ctrl-", "box"],
        &["attach", "--detach-keys", "ctrl-1", "box"],
        &["exec", "--detach-keys", "a,,b", "box", "true"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("Invalid detach keys"), "{args:?}: {err}");
    }
    // The failed run created nothing.
    assert_eq!(env.ok(&["ps", "-a", "-q"]).lines().count(), 1);
}

/// A client of a container that says "ready", then exits 3 on SIGUSR1.
fn spawn_trapper(env: &Env, args: &[&str]) -> std::process::Child {
    let mut child = env
        .cmd(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    read_until(&mut child, "ready");
    child
}

const TRAPPER: &str =
    "trap 'echo got-usr1; exit 3' USR1; echo ready; while true; do sleep 0.1; done";

#[test]
fn sig_proxy_forwards_signals_unless_turned_off() {
    let env = env_or_skip!();
    let usr1 = |child: &std::process::Child| {
        kill(Pid::from_raw(child.id() as i32), Signal::SIGUSR1).expect("kill client")
    };
    let mut run = spawn_trapper(&env, &["run", "--name", "siga", "bb", "sh", "-c", TRAPPER]);
    usr1(&run);
    read_until(&mut run, "got-usr1");
    assert_eq!(wait_code(&mut run), Some(3));

    let mut run = spawn_trapper(
        &env,
        &[
            "run",
            "--sig-proxy=false",
            "--name",
            "sigb",
            "bb",
            "sh",
            "-c",
            TRAPPER,
        ],
    );
    usr1(&run);
    // The signal ends the client; the container never saw it.
    assert_eq!(wait_code(&mut run), None);
    assert!(running(&env, "sigb"));

    let attach = |extra: &[&str]| {
        let mut args = vec!["attach"];
        args.extend_from_slice(extra);
        args.push("sigb");
        let child = env
            .cmd(&args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("attach");
        // attach shows only new output: give it time to connect.
        std::thread::sleep(Duration::from_millis(500));
        child
    };
    let mut client = attach(&["--sig-proxy=false"]);
    usr1(&client);
    assert_eq!(wait_code(&mut client), None);
    assert!(running(&env, "sigb"));
    let mut client = attach(&[]);
    usr1(&client);
    read_until(&mut client, "got-usr1");
    assert_eq!(wait_code(&mut client), Some(3));
}
/// `start -a` whose client cannot reach the monitor's socket: the client
/// runs where /proc is not mounted (the socket is reached through
/// /proc/self/fd), the monitor (through STRATA_BIN) in a mount namespace
/// of its own with /proc mounted again.
#[test]
fn an_attached_start_whose_client_cannot_connect_does_not_run_the_container() {
    let env = env_or_skip!();
    env.ok(&["create", "--name", "lonely", "bb", "echo", "hi"]);
    let wrapper = env.root().join("monitor.sh");
    let script = format!(
        "#!/bin/sh\nexec unshare -m --propagation private /bin/sh -c \
         'mount -t proc proc /proc && exec \"$0\" \"$@\"' {} \"$@\"\n",
        env.bin.display()
    );
    std::fs::write(&wrapper, script).expect("write wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod wrapper");
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
        .arg("umount -l /proc && exec \"$0\" --root \"$1\" start -a lonely")
        .arg(&env.bin)
        .arg(env.root())
        .env("STRATA_BIN", &wrapper)
        .stdin(Stdio::null())
        .output()
        .expect("start -a");
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("attach.sock"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    // When the client has returned, the record agrees: never started.
    let c = env.container("lonely");
    assert_eq!(c.state.status.as_str(), "created");
    assert!(c.state.error.contains("went away"), "{}", c.state.error);
    assert_eq!(c.state.pid, 0);
    // Nor is the cgroup made for the start left behind.
    for base in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/freezer",
    ] {
        let dir = std::path::Path::new(base).join("strata").join(&c.id);
        assert!(
            crate::harness::eventually(2, || !dir.exists()),
            "{}",
            dir.display()
        );
    }
    let status = env.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert_eq!(status.trim(), "Created");
    // And it starts normally afterwards.
    assert_eq!(env.ok(&["start", "-a", "lonely"]), "hi\n");
}

#[test]
fn exec_d_t_gets_a_terminal_kept_open_by_the_monitor_and_not_logged() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "box", "bb", "sleep", "1000"]);
    // Megabytes of output (the terminal holds a few kilobytes: someone
    // must read it), then a heartbeat written to the terminal.
    let script = "tty >/tmp/tty; stty size >/tmp/size; cat /bin/busybox /bin/busybox; \
                  echo flooded >/tmp/flooded; i=0; \
                  while true; do i=$((i+1)); echo $i >/tmp/beat; echo beat-$i; sleep 0.1; done";
    let status = env
        .cmd(&["exec", "-d", "-t", "box", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("exec -d -t");
    assert_eq!(status.code(), Some(0));
    let read = |path: &str| env.ok(&["exec", "box", "cat", path]);
    assert!(
        eventually(15, || env
            .run(&["exec", "box", "test", "-e", "/tmp/flooded"])
            .status
            .success()),
        "the exec's output was not read"
    );
    // A terminal of the container's devpts, at the default size.
    assert!(
        read("/tmp/tty").starts_with("/dev/pts/"),
        "{}",
        read("/tmp/tty")
    );
    assert_eq!(read("/tmp/size").trim(), "24 80");
    // It keeps running and writing to its terminal (no hangup, no EIO)
    // with no client anywhere.
    let beat = || read("/tmp/beat").trim().parse::<u64>().unwrap_or(0);
    let first = beat();
    std::thread::sleep(Duration::from_millis(800));
    assert!(beat() > first, "the exec stopped");
    // An exec's output is not the container's (Docker does not log it).
    assert_eq!(env.ok(&["logs", "box"]), "");
}

#[test]
fn start_a_forwards_signals_unless_sig_proxy_is_false() {
    let env = env_or_skip!();
    env.ok(&["create", "--name", "sigs", "bb", "sh", "-c", TRAPPER]);
    let mut start = spawn_trapper(&env, &["start", "-a", "--sig-proxy=false", "sigs"]);
    kill(Pid::from_raw(start.id() as i32), Signal::SIGUSR1).expect("kill client");
    // The signal ends the client; the container never saw it.
    assert_eq!(wait_code(&mut start), None);
    assert!(running(&env, "sigs"));
    env.ok(&["kill", "sigs"]);
    assert!(eventually(10, || !running(&env, "sigs")));

    let mut start = spawn_trapper(&env, &["start", "-a", "--sig-proxy", "sigs"]);
    kill(Pid::from_raw(start.id() as i32), Signal::SIGUSR1).expect("kill client");
    read_until(&mut start, "got-usr1");
    assert_eq!(wait_code(&mut start), Some(3));
}

#[test]
fn detach_keys_come_from_the_client_config_unless_a_flag_gives_them() {
    let env = env_or_skip!();
    let config = env.root().join("docker-config");
    std::fs::create_dir_all(&config).expect("mkdir");
    let write_config = |text: &str| {
        std::fs::write(config.join("config.json"), text).expect("write config.json");
    };
    write_config(r#"{"auths": {}, "detachKeys": "ctrl-a,x"}"#);
    let vars = [("DOCKER_CONFIG", config.as_path())];
    let spawn = |args: &[&str]| Terminal::spawn_with_env(&env, args, 24, 80, &vars);

    let (mut term, mut run) = spawn(&["run", "-it", "--name", "cfg", "bb", "sh"]);
    only_ctrl_a_x_detaches(&mut term, &mut run);
    assert!(eventually(5, || running(&env, "cfg")));

    let (mut term, mut attach) = spawn(&["attach", "cfg"]);
    term.type_in(b"echo $((4+5))\n");
    term.expect("9");
    term.type_in(&[0x01, b'x']);
    assert_eq!(wait_code(&mut attach), Some(0));

    let (mut term, mut exec) = spawn(&["exec", "-it", "cfg", "sh"]);
    term.type_in(b"echo exec-$((5+6))\n");
    term.expect("exec-11");
    term.type_in(&[0x01, b'x']);
    assert_eq!(wait_code(&mut exec), Some(0));

    // The flag wins over the config.
    let (mut term, mut attach) = spawn(&["attach", "--detach-keys", "ctrl-b", "cfg"]);
    term.type_in(b"echo $((6+7))\n");
    term.expect("13");
    term.type_in(&[0x02]);
    assert_eq!(wait_code(&mut attach), Some(0));

    env.ok(&["create", "-it", "--name", "starter", "bb", "sh"]);
    let (mut term, mut start) = spawn(&["start", "-ai", "starter"]);
    term.type_in(b"echo $((7+8))\n");
    term.expect("15");
    term.type_in(&[0x01, b'x']);
    assert_eq!(wait_code(&mut start), Some(0));
    assert!(eventually(5, || running(&env, "starter")));

    // Invalid keys in the config fail as an invalid flag does.
    write_config(r#"{"detachKeys": "ctrl-"}"#);
    let out = env
        .cmd(&["attach", "cfg"])
        .env("DOCKER_CONFIG", &config)
        .output()
        .expect("attach");
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        stderr(&out).trim(),
        "Error: Invalid detach keys (ctrl-) provided"
    );
    // A config that is not JSON: a warning, and the default keys.
    write_config("{");
    let out = env
        .cmd(&["exec", "cfg", "echo", "fine"])
        .env("DOCKER_CONFIG", &config)
        .output()
        .expect("exec");
    assert_eq!(stdout(&out), "fine\n");
    assert!(
        stderr(&out).starts_with("WARNING: Error loading config file: "),
        "{}",
        stderr(&out)
    );
}
