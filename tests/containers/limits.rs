//! Resource limits through cgroups: memory (an OOM kill), pids, CPU
//! quota, cpusets; limits the host cannot apply; `update`.

use crate::env_or_skip;
use crate::harness::{eventually, stderr, stdout};

fn inspect(env: &crate::harness::Env, name: &str, format: &str) -> String {
    env.ok(&["inspect", "-f", format, name]).trim().to_string()
}

/// The v1 hierarchy's (or the unified hierarchy's) cgroup of `id` for
/// `controller`.
fn cgroup_dir(controller: &str, id: &str) -> std::path::PathBuf {
    let v1 = std::path::Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("strata")
        .join(id);
    if v1.exists() {
        return v1;
    }
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|r| std::path::Path::new(r).join("strata").join(id))
        .find(|d| d.exists())
        .unwrap_or(v1)
}

#[test]
fn a_memory_hog_is_oom_killed_with_137_and_oomkilled() {
    let env = env_or_skip!();
    // A string doubling until the 16 MiB limit stops it.
    let out = env.run(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "bb",
        "sh",
        "-c",
        "x=0123456789abcdef; while true; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(inspect(&env, "hog", "{{.State.OOMKilled}}"), "true");
    assert_eq!(inspect(&env, "hog", "{{.State.ExitCode}}"), "137");
    assert_eq!(
        inspect(
            &env,
            "hog",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"
        ),
        format!("{} {}", 16 << 20, 32 << 20)
    );
    // A container killed otherwise is not OOMKilled.
    let out = env.run(&[
        "run",
        "--name",
        "killed",
        "-m",
        "16m",
        "bb",
        "sh",
        "-c",
        "sh -c 'kill -9 $$'; exit $?",
    ]);
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(inspect(&env, "killed", "{{.State.OOMKilled}}"), "false");
    // An `oom` event for the hog only, before its `die`, as Docker
    // records them.
    let events = env.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let lines: Vec<&str> = events.lines().collect();
    let oom = lines.iter().position(|l| *l == "oom hog");
    let die = lines.iter().position(|l| *l == "die hog");
    assert!(oom.is_some() && oom < die, "{events}");
    assert!(!lines.contains(&"oom killed"), "{events}");
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let env = env_or_skip!();
    // 40 sleepers: fine without a limit; with 10 processes allowed the
    // shell cannot fork (busybox sh gives up with exit 2).
    let bomb =
        "i=0; while [ $i -lt 40 ]; do sleep 3 & i=$((i+1)); done; echo all forked; kill $(jobs -p)";
    let out = env.run(&["run", "--rm", "bb", "sh", "-c", bomb]);
    assert_eq!(stdout(&out), "all forked\n", "{}", stderr(&out));
    let out = env.run(&["run", "--rm", "--pids-limit", "10", "bb", "sh", "-c", bomb]);
    assert_eq!(stdout(&out), "", "{}", stderr(&out));
    assert!(stderr(&out).contains("can't fork"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(2));
    env.ok(&["create", "--name", "pl", "--pids-limit", "10", "bb", "true"]);
    assert_eq!(inspect(&env, "pl", "{{.HostConfig.PidsLimit}}"), "10");
}

fn nr_throttled(dir: &std::path::Path) -> u64 {
    std::fs::read_to_string(dir.join("cpu.stat"))
        .expect("cpu.stat")
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|n| n.trim().parse().ok())
        .expect("nr_throttled")
}

#[test]
fn half_a_cpu_is_throttled() {
    let env = env_or_skip!();
    let busy = ["sh", "-c", "while :; do :; done & while :; do :; done"];
    let id = env
        .ok(&[&["run", "-d", "--cpus", "0.5", "bb"][..], &busy].concat())
        .trim()
        .to_string();
    let dir = cgroup_dir("cpu", &id);
    let read = |v1: &str| std::fs::read_to_string(dir.join(v1)).map(|s| s.trim().to_string());
    match (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
        (Ok(q), Ok(p)) => assert_eq!((q.as_str(), p.as_str()), ("50000", "100000")),
        _ => assert_eq!(read("cpu.max").expect("a CPU quota"), "50000 100000"),
    }
    assert_eq!(
        inspect(
            &env,
            &id,
            "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}"
        ),
        "500000000 0"
    );
    env.ok(&["rm", "-f", &id]);
    assert!(!dir.exists(), "the cpu cgroup outlived the container");
    // The same quota in 2 ms periods: whenever the loops run they use up
    // a period's millisecond, so throttling shows even on a host loaded
    // enough to keep them under half a CPU in 100 ms periods.
    let id = env
        .ok(&[
            &[
                "run",
                "-d",
                "--cpu-period",
                "2000",
                "--cpu-quota",
                "1000",
                "bb",
            ][..],
            &busy,
        ]
        .concat())
        .trim()
        .to_string();
    let dir = cgroup_dir("cpu", &id);
    assert!(
        eventually(10, || nr_throttled(&dir) > 0),
        "never throttled: {:?}",
        std::fs::read_to_string(dir.join("cpu.stat"))
    );
    assert_eq!(
        inspect(
            &env,
            &id,
            "{{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}}"
        ),
        "2000 1000"
    );
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn limits_the_host_cannot_apply_are_refused() {
    let env = env_or_skip!();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let too_many = format!("{}", cpus + 1);
    for (args, says) in [
        (
            vec!["--cpus", too_many.as_str()],
            "Range of CPUs is from 0.01",
        ),
        (
            vec!["--cpuset-cpus", "63"],
            "Requested CPUs are not available",
        ),
        (
            vec!["--cpuset-mems", "7"],
            "Requested memory nodes are not available",
        ),
        (vec!["-m", "1m"], "Minimum memory limit allowed is 6MB"),
        (vec!["-m", "lots"], "invalid size"),
        (vec!["--memory-swap", "64m"], "always set the Memory limit"),
        (
            vec!["--cpus", "1", "--cpu-period", "50000"],
            "Conflicting options",
        ),
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend(args.iter().copied());
        full.extend(["bb", "true"]);
        let out = env.run(&full);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "", "a refused container was kept");
}

#[test]
fn cpusets_and_shares_reach_the_cgroup() {
    let env = env_or_skip!();
    let out = env.ok(&[
        "run",
        "--rm",
        "--cpuset-cpus",
        "0",
        "--cpu-shares",
        "512",
        "bb",
        "sh",
        "-c",
        "grep Cpus_allowed_list /proc/self/status",
    ]);
    assert!(out.contains("Cpus_allowed_list:\t0\n"), "{out}");
}

#[test]
fn update_changes_limits_of_running_and_stopped_containers() {
    let env = env_or_skip!();
    // Running, with no limit at first: the new cgroups are made and the
    // container's processes moved into them.
    let id = env
        .ok(&["run", "-d", "--name", "up", "bb", "sleep", "60"])
        .trim()
        .to_string();
    assert_eq!(
        env.ok(&["update", "-m", "32m", "--pids-limit", "5", "up"]),
        "up\n"
    );
    let memory = cgroup_dir("memory", &id);
    let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(memory.join("memory.max")))
        .expect("a memory limit");
    assert_eq!(limit.trim(), (32 << 20).to_string());
    let pid = inspect(&env, "up", "{{.State.Pid}}");
    let procs = std::fs::read_to_string(memory.join("cgroup.procs")).expect("procs");
    assert!(procs.lines().any(|p| p == pid), "{pid} not in {procs}");
    assert_eq!(
        inspect(
            &env,
            "up",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}"
        ),
        format!("{} 5", 32 << 20)
    );
    // Docker's rule: more memory than the memory+swap limit needs both.
    let out = env.run(&["update", "-m", "128m", "up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("memoryswap"), "{}", stderr(&out));
    env.ok(&["update", "-m", "128m", "--memory-swap", "256m", "up"]);
    assert_eq!(
        inspect(
            &env,
            "up",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"
        ),
        format!("{} {}", 128 << 20, 256 << 20)
    );
    env.ok(&["rm", "-f", "up"]);
    // Stopped: stored, and in force at the next start.
    env.ok(&[
        "create",
        "--name",
        "later",
        "bb",
        "sh",
        "-c",
        "sleep 1 & sleep 1 & sleep 1 & wait",
    ]);
    env.ok(&[
        "update",
        "--pids-limit",
        "2",
        "--restart",
        "on-failure:3",
        "later",
    ]);
    assert_eq!(inspect(&env, "later", "{{.HostConfig.PidsLimit}}"), "2");
    let out = env.run(&["start", "-a", "later"]);
    assert!(stderr(&out).contains("can't fork"), "{}", stderr(&out));
    // Bad values: one line, nothing changed.
    let out = env.run(&["update", "--restart", "sometimes", "later"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid restart policy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.run(&["update", "later"]).status.code(), Some(125));
    assert_eq!(
        env.run(&["update", "-m", "8m", "nosuch"]).status.code(),
        Some(1)
    );
    assert_eq!(inspect(&env, "later", "{{.HostConfig.PidsLimit}}"), "2");
}
