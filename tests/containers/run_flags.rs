//! `run`/`create` flags beyond the resource limits: `--ulimit`,
//! `--shm-size`, `--tmpfs`, `--device`, `--sysctl`, `--log-driver`,
//! `--log-opt`. Each checked inside the container and in `inspect`'s
//! HostConfig against what Docker 20.10 shows for the same flags
//! (recorded side by side: `docker run -d --ulimit nofile=100:200
//! --ulimit core=-1 --shm-size 10m --tmpfs /run:rw,size=1m --tmpfs
//! /scratch --device /dev/null:/dev/mynull:r --sysctl
//! kernel.shmmax=1000000 --log-opt max-size=1k --log-opt max-file=3`).

use crate::env_or_skip;
use crate::harness::{stderr, stdout};

fn inspect(env: &crate::harness::Env, name: &str, format: &str) -> String {
    env.ok(&["inspect", "-f", format, name]).trim().to_string()
}

#[test]
fn host_flags_reach_the_container_and_inspect() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "flags",
        "--ulimit",
        "nofile=100:200",
        "--ulimit",
        "core=-1",
        "--shm-size",
        "10m",
        "--tmpfs",
        "/run:rw,size=1m",
        "--tmpfs",
        "/scratch",
        "--device",
        "/dev/null:/dev/mynull:r",
        "--sysctl",
        "kernel.shmmax=1000000",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "bb",
        "sleep",
        "60",
    ]);
    // Docker 20.10's HostConfig for the same flags (its JSON keys are in
    // Go's field order; the values are the same).
    assert_eq!(
        inspect(&env, "flags", "{{json .HostConfig.Ulimits}}"),
        r#"[{"Hard":-1,"Name":"core","Soft":-1},{"Hard":200,"Name":"nofile","Soft":100}]"#
    );
    assert_eq!(
        inspect(&env, "flags", "{{.HostConfig.ShmSize}}"),
        "10485760"
    );
    assert_eq!(
        inspect(&env, "flags", "{{json .HostConfig.Tmpfs}}"),
        r#"{"/run":"rw,size=1m","/scratch":""}"#
    );
    assert_eq!(
        inspect(&env, "flags", "{{json .HostConfig.Devices}}"),
        r#"[{"CgroupPermissions":"r","PathInContainer":"/dev/mynull","PathOnHost":"/dev/null"}]"#
    );
    assert_eq!(
        inspect(&env, "flags", "{{json .HostConfig.Sysctls}}"),
        r#"{"kernel.shmmax":"1000000","net.ipv4.ip_forward":"1"}"#
    );
    assert_eq!(
        inspect(&env, "flags", "{{json .HostConfig.LogConfig}}"),
        r#"{"Config":{},"Type":"json-file"}"#
    );
    let inside = |script: &str| env.ok(&["exec", "flags", "sh", "-c", script]);
    // Docker: 100, 200, unlimited (an exec gets the container's ulimits).
    assert_eq!(
        inside("ulimit -n; ulimit -Hn; ulimit -c"),
        "100\n200\nunlimited\n"
    );
    // Docker's /proc/mounts lines, the same.
    let mounts = inside("grep -E ' /run | /scratch | /dev/shm ' /proc/mounts");
    for line in [
        "shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=10240k 0 0",
        "tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k 0 0",
        "tmpfs /scratch tmpfs rw,nosuid,nodev,noexec,relatime 0 0",
    ] {
        assert!(mounts.lines().any(|l| l == line), "{line} in {mounts}");
    }
    assert_eq!(
        inside("cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward"),
        "1000000\n1\n"
    );
    // The device is the host's null, and opens (the container's /dev
    // is nodev but for its devices).
    assert_eq!(
        inside("stat -c '%t:%T %F' /dev/mynull; echo gone > /dev/mynull && echo written"),
        "1:3 character special file\nwritten\n"
    );
    // The host's own ulimits and sysctls are untouched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax")
            .unwrap()
            .trim(),
        "1000000"
    );
    env.ok(&["rm", "-f", "flags"]);
    // Defaults, as Docker's: 64m of /dev/shm, json-file.
    env.ok(&["create", "--name", "plain", "bb", "true"]);
    assert_eq!(
        inspect(
            &env,
            "plain",
            "{{.HostConfig.ShmSize}} {{json .HostConfig.Ulimits}} {{json .HostConfig.Devices}} {{json .HostConfig.Tmpfs}} {{json .HostConfig.Sysctls}}"
        ),
        "67108864 [] [] null null"
    );
}

/// Each bad value: Docker's message, exit 125, nothing created.
#[test]
fn bad_host_flags_are_refused_with_dockers_words() {
    let env = env_or_skip!();
    let cases: [(&[&str], &str); 12] = [
        (&["--ulimit", "foo=1"], "invalid argument \"foo=1\" for \"--ulimit\" flag: invalid ulimit type: foo"),
        (&["--ulimit", "nofile=10:5"], "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
        (&["--ulimit", "nofile=abc"], "strconv.ParseInt: parsing \"abc\": invalid syntax"),
        (&["--sysctl", "kernel.hostname=x"], "invalid argument \"kernel.hostname=x\" for \"--sysctl\" flag: sysctl 'kernel.hostname=x' is not allowed"),
        (&["--sysctl", "kernel.shmmax"], "sysctl 'kernel.shmmax' is not allowed"),
        (&["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"),
        (&["--log-driver", "syslogx"], "error looking up logging plugin syslogx: plugin \"syslogx\" not found"),
        (&["--log-opt", "max-size=abc"], "failed to initialize logging driver: invalid size: 'abc'"),
        (&["--log-opt", "foo=1"], "unknown log opt 'foo' for json-file log driver"),
        (&["--log-driver", "none", "--log-opt", "max-size=1m"], "invalid logging opts for driver none"),
        (&["--device", "/dev/no-such-device"], "error gathering device information while adding custom device \"/dev/no-such-device\": no such file or directory"),
        (&["--tmpfs", "/run:bogus"], "invalid tmpfs option \"bogus\""),
    ];
    for (flags, said) in cases {
        let mut args = vec!["create", "--name", "refused"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["bb", "true"]);
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(125), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{flags:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

/// `--log-driver none`: nothing kept; `logs` says Docker's words, exit 1.
#[test]
fn log_driver_none_keeps_nothing() {
    let env = env_or_skip!();
    let out = env.ok(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "bb",
        "echo",
        "hi",
    ]);
    assert_eq!(out, "hi\n");
    // Docker 20.10's client prints its daemon's refusal as is, exit 1.
    let logs = env.run(&["logs", "quiet"]);
    assert_eq!(logs.status.code(), Some(1));
    assert_eq!(
        stderr(&logs),
        "Error response from daemon: configured logging driver does not support reading\n"
    );
    assert_eq!(stdout(&logs), "");
    assert_eq!(
        inspect(
            &env,
            "quiet",
            "{{json .HostConfig.LogConfig}} {{json .LogPath}}"
        ),
        r#"{"Config":{},"Type":"none"} """#
    );
    let dir = env
        .root()
        .join("containers")
        .join(inspect(&env, "quiet", "{{.Id}}"));
    assert!(!dir.join("log.json").exists());
}

/// `--log-opt max-size=1k --log-opt max-file=3`: the json log rotates as
/// Docker's json-file does (at most 3 files, none much above 1 KiB), and
/// `logs` reads across the rotated files: the last lines, in order.
#[test]
fn json_log_rotates_and_logs_reads_across_files() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "bb",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    assert_eq!(
        inspect(&env, "chatty", "{{json .HostConfig.LogConfig}}"),
        r#"{"Config":{"max-file":"3","max-size":"1k"},"Type":"json-file"}"#
    );
    let dir = env
        .root()
        .join("containers")
        .join(inspect(&env, "chatty", "{{.Id}}"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log.json"))
        .collect();
    files.sort();
    assert_eq!(files, ["log.json", "log.json.1", "log.json.2"]);
    for f in &files {
        let size = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(size < 1024 + 200, "{f}: {size}");
    }
    let logs = env.ok(&["logs", "chatty"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() > 20 && lines.len() < 200, "{}", lines.len());
    let first: usize = lines[0].trim_start_matches("line-").parse().unwrap();
    let want: Vec<String> = (first..200).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, want);
    assert_eq!(
        env.ok(&["logs", "--tail", "2", "chatty"]),
        "line-198\nline-199\n"
    );
}
