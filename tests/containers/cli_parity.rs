//! Docker's client at the CLI, with containers: `ps` COMMAND quoted as
//! Docker quotes it, `stats` streaming in Docker's units, the
//! `container` group, and `run`/`create` pulling a missing image
//! (`--pull missing|always|never`) from a registry of the test's own.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env_or_skip;
use crate::harness::{eventually, stderr, stdout};

#[test]
fn ps_command_is_quoted_as_docker_quotes_it() {
    let env = env_or_skip!();
    // Docker 20.10's COMMAND for the same containers (`docker ps -a
    // --no-trunc --format '{{.Names}} {{.Command}}'`), newest first.
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "loop",
            &["sh", "-c", "i=0; while true; do i=$((i+1)); done"],
            r#""sh -c 'i=0; while true; do i=$((i+1)); done'""#,
        ),
        (
            "quoted",
            &["echo", "hi there", "a\"b"],
            r#""echo 'hi there' a\"b""#,
        ),
        (
            "tabs",
            &["sh", "-c", "echo 'x' $HOME \\ back tab\tx"],
            r#""sh -c 'echo 'x' $HOME \\ back tab\tx'""#,
        ),
        ("plain", &["sleep", "1000"], r#""sleep 1000""#),
    ];
    for (name, argv, _) in &cases {
        let mut args = vec!["create", "--network", "none", "--name", name, "bb"];
        args.extend_from_slice(argv);
        env.ok(&args);
    }
    let listed = env.ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        "{{.Names}} {{.Command}}",
    ]);
    let expected: String = cases
        .iter()
        .rev()
        .map(|(name, _, command)| format!("{name} {command}\n"))
        .collect();
    assert_eq!(listed, expected);
    // Cut to 20 characters before quoting, as Docker does.
    let table = env.ok(&["container", "ls", "-a", "--filter", "name=loop"]);
    assert!(table.contains(r#"   "sh -c 'i=0; while t…"   "#), "{table}");
    env.ok(&["container", "prune", "-f"]);
}

/// `strata stats ARGS` in the background, stdout captured; killed (by
/// pid) on drop.
struct Streaming(Child);

impl Streaming {
    fn start(env: &crate::harness::Env, args: &[&str]) -> Streaming {
        let child = env
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("stats");
        Streaming(child)
    }

    /// Waits up to `secs` for the process to end by itself.
    fn ended_within(&mut self, secs: u64) -> bool {
        eventually(secs, || matches!(self.0.try_wait(), Ok(Some(_))))
    }

    fn stop_and_read(mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut text = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `units.BytesSize`: at most four significant digits, binary units.
fn is_binary_size(s: &str) -> bool {
    let unit_at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
    let (number, unit) = s.split_at(unit_at);
    ["B", "KiB", "MiB", "GiB", "TiB"].contains(&unit)
        && number.parse::<f64>().is_ok()
        && number.chars().filter(|c| c.is_ascii_digit()).count() <= 4
}

#[test]
fn stats_stream_in_dockers_units() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "busy",
        "bb",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); done",
    ]);
    env.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "idle",
        "bb",
        "true",
    ]);

    // --no-stream: running containers only, unless -a or named.
    let table = env.ok(&["stats", "--no-stream"]);
    let mut lines = table.lines();
    // The columns' widths follow the rows (Go's tabwriter): a container
    // that wrote "4.1kB" widens BLOCK I/O. The titles are checked here,
    // the padding with no rows below.
    let header = lines.next().unwrap_or_default();
    let titles: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(
        titles,
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ],
        "{table}"
    );
    assert_eq!(lines.count(), 1, "{table}");
    let row = env.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.PIDs}}",
        "busy",
    ]);
    let fields: Vec<&str> = row.trim_end().split('|').collect();
    assert_eq!(fields[0], "busy");
    let cpu: f64 = fields[1].trim_end_matches('%').parse().expect("cpu %");
    assert!(fields[1].ends_with('%') && fields[1].split('.').nth(1).map(str::len) == Some(3));
    assert!(cpu > 5.0, "a busy loop uses CPU: {row}");
    let (used, limit) = fields[2].split_once(" / ").expect("usage / limit");
    assert!(is_binary_size(used) && is_binary_size(limit), "{row}");
    assert!(fields[3].ends_with('%') && fields[3].split('.').nth(1).map(str::len) == Some(3));
    assert_eq!(fields[4], "0B / 0B", "--network none: no traffic");
    assert_eq!(fields[5], "1");
    // -a: a stopped container is all zeros, as in Docker.
    let all = env.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.MemPerc}} {{.BlockIO}} {{.PIDs}}",
    ]);
    assert_eq!(
        all.lines().next(),
        Some("idle 0.00% 0B / 0B 0.00% 0B / 0B 0"),
        "{all}"
    );
    assert_eq!(all.lines().count(), 2, "{all}");

    // Streaming: the table again every second, after clearing the screen.
    let stream = Streaming::start(&env, &["stats", "--format", "{{.Name}} {{.CPUPerc}}"]);
    std::thread::sleep(Duration::from_millis(2800));
    let text = stream.stop_and_read();
    let frames: Vec<&str> = text.split("\x1b[2J\x1b[H").skip(1).collect();
    assert!(frames.len() >= 2, "{text:?}");
    assert!(frames.iter().all(|f| f.starts_with("busy ")), "{text:?}");
    assert!(text.starts_with("\x1b[2J\x1b[H"), "{text:?}");

    // Without names or -a, the stream ends when no container is left.
    let mut stream = Streaming::start(&env, &["stats"]);
    std::thread::sleep(Duration::from_millis(1200));
    env.ok(&["kill", "busy"]);
    assert!(
        stream.ended_within(10),
        "stats kept running with nothing to show"
    );
    let text = stream.stop_and_read();
    assert!(text.ends_with("\x1b[2J\x1b[HCONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O   BLOCK I/O   PIDS\n"), "{text:?}");
    let out = env.run(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("No such container: nosuch"),
        "{}",
        stderr(&out)
    );
    env.ok(&["rm", "-f", "busy", "idle"]);
}

#[test]
fn container_group_has_every_verb() {
    let env = env_or_skip!();
    let id = env.ok(&[
        "container",
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "grp",
        "bb",
        "sleep",
        "1000",
    ]);
    let short = &id[..12];
    assert_eq!(env.ok(&["container", "ls", "-q"]).trim(), short);
    assert_eq!(env.ok(&["container", "list", "-q"]).trim(), short);
    assert_eq!(env.ok(&["container", "ps", "-q"]).trim(), short);
    assert_eq!(
        env.ok(&["container", "inspect", "-f", "{{.State.Status}}", "grp"]),
        "running\n"
    );
    assert_eq!(env.ok(&["container", "exec", "grp", "echo", "in"]), "in\n");
    assert!(env.ok(&["container", "top", "grp"]).contains("sleep 1000"));
    env.ok(&["container", "pause", "grp"]);
    env.ok(&["container", "unpause", "grp"]);
    env.ok(&["container", "rename", "grp", "grp2"]);
    env.ok(&["container", "stop", "-t", "1", "grp2"]);
    assert_eq!(env.ok(&["container", "wait", "grp2"]), "137\n");
    assert_eq!(env.ok(&["container", "logs", "grp2"]), "");
    env.ok(&["container", "diff", "grp2"]);
    // An image's name is no container's (`bb` itself is hex, so it may
    // be a prefix of a container's ID: 1 run in 256 found `grp`).
    env.ok(&["tag", "bb", "image-only"]);
    let out = env.run(&["container", "inspect", "image-only"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error: No such container: image-only\n");
    // prune: stopped containers only, with Docker's report.
    env.ok(&[
        "container",
        "create",
        "--network",
        "none",
        "--name",
        "keep",
        "--label",
        "keep=yes",
        "bb",
        "true",
    ]);
    let pruned = env.ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    assert!(
        pruned.starts_with(&format!(
            "Deleted Containers:\n{}\n\nTotal reclaimed space: ",
            id.trim()
        )),
        "{pruned}"
    );
    assert_eq!(
        env.ok(&["container", "ls", "-a", "--format", "{{.Names}}"]),
        "keep\n"
    );
    env.ok(&["container", "rm", "keep"]);
}

/// A `docker-registry` on the test's own loopback (its network
/// namespace); killed, by pid, on drop. (The rootless tests use it too.)
pub(super) struct Registry {
    child: Child,
    pub(super) port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub(super) fn start() -> Option<Registry> {
        if Command::new("sh")
            .args(["-c", "command -v docker-registry"])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("docker-registry is required in CI");
            }
            eprintln!("SKIPPED: docker-registry is not installed");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry");
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn run_and_create_pull_a_missing_image() {
    let env = env_or_skip!();
    let Some(registry) = Registry::start() else {
        return;
    };
    let image = format!("127.0.0.1:{}/pulled/bb:1", registry.port);
    env.ok(&["tag", "bb", &image]);
    env.ok(&["push", &image]);
    env.ok(&["rmi", &image]);

    // --pull never: Docker's error, nothing pulled.
    let out = env.run(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        &image,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("Error: No such image: {image}\n"));
    let out = env.run(&["create", "--pull", "sometimes", &image, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        stderr(&out),
        "Error: invalid pull option: 'sometimes': must be one of \"always\", \"missing\" or \"never\"\n"
    );
    assert_eq!(env.ok(&["images", "-q", &image]), "");

    // missing (the default): pulled, with pull's progress on stderr and
    // the container's output alone on stdout.
    let out = env.run(&["run", "--rm", "--network", "none", &image, "echo", "ran"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n");
    let progress = stderr(&out);
    assert!(
        progress.starts_with(&format!(
            "Unable to find image '{image}' locally\n1: Pulling from pulled/bb\n"
        )),
        "{progress}"
    );
    assert!(
        progress.ends_with(&format!("Status: Downloaded newer image for {image}\n")),
        "{progress}"
    );
    // Now stored: no pull.
    let out = env.run(&[
        "create",
        "--network",
        "none",
        "--name",
        "made",
        &image,
        "true",
    ]);
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout(&out).trim().len(), 64);
    // always: pulled again, up to date.
    let out = env.run(&[
        "create",
        "--pull",
        "always",
        "--network",
        "none",
        &image,
        "true",
    ]);
    assert!(
        stderr(&out).ends_with(&format!("Status: Image is up to date for {image}\n")),
        "{}",
        stderr(&out)
    );
    // create pulls too; a tag the registry lacks fails as the pull does.
    env.ok(&["rmi", "-f", &image]);
    let out = env.run(&["create", "--network", "none", &image, "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let missing = format!("127.0.0.1:{}/pulled/bb:nope", registry.port);
    let out = env.run(&["run", "--rm", "--network", "none", &missing, "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "Unable to find image '{missing}' locally\nError: "
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    env.ok(&["container", "prune", "-f"]);
}
