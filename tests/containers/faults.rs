use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::env_or_skip;
use crate::harness::eventually;

#[test]
fn kill_9_of_the_monitor_marks_the_container_exited_and_cleans_up() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "victim", "bb", "sleep", "1000"]);
    let c = env.container("victim");
    assert!(c.state.monitor_pid > 0 && c.state.pid > 0);
    assert_eq!(env.mounts().len(), 1, "{:?}", env.mounts());
    kill(Pid::from_raw(c.state.monitor_pid), Signal::SIGKILL).unwrap();
    // The container's process dies with its monitor.
    assert!(eventually(5, || kill(Pid::from_raw(c.state.pid), None).is_err()));
    let status = env.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(status.starts_with("Exited (255)"), "{status}");
    assert!(
        env.mounts().is_empty(),
        "the next command cleans the mount: {:?}",
        env.mounts()
    );
    assert!(env.container("victim").state.error.contains("monitor"));
    env.ok(&["rm", "victim"]);
}

#[test]
fn kill_9_of_the_process_is_recorded() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "victim", "bb", "sleep", "1000"]);
    let c = env.container("victim");
    kill(Pid::from_raw(c.state.pid), Signal::SIGKILL).unwrap();
    assert_eq!(env.ok(&["wait", "victim"]), "137\n");
    let status = env.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(status.starts_with("Exited (137)"), "{status}");
    assert!(env.mounts().is_empty());
    assert!(
        eventually(2, || env.processes().is_empty()),
        "{:?}",
        env.processes()
    );
}

#[test]
fn rm_f_of_a_running_container() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "bb",
        "sh",
        "-c",
        "trap '' TERM; sleep 1000",
    ]);
    let c = env.container("victim");
    env.ok(&["rm", "-f", "victim"]);
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    assert!(kill(Pid::from_raw(c.state.pid), None).is_err());
    assert!(env.mounts().is_empty());
    assert!(!env.root().join("containers").join(&c.id).exists());
    assert!(
        eventually(2, || env.processes().is_empty()),
        "{:?}",
        env.processes()
    );
}

#[test]
fn start_stop_loop_leaves_no_mount_process_or_fd() {
    let env = env_or_skip!();
    env.ok(&["create", "--name", "loop", "bb", "sleep", "1000"]);
    for _ in 0..5 {
        env.ok(&["start", "loop"]);
        assert_eq!(env.mounts().len(), 1);
        env.ok(&["stop", "-t", "1", "loop"]);
        assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    }
    // No process of ours (monitor, container) is left, and none holds a
    // descriptor into the root.
    assert!(
        eventually(2, || env.processes().is_empty()),
        "{:?}",
        env.processes()
    );
    let status = env.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(
        status.starts_with("Exited (137)"),
        "sleep ignores TERM as pid 1: {status}"
    );
}

/// A `--rm` container whose monitor was killed is removed by the next
/// command that notices (it stayed `Exited (255)` for ever), with its
/// directory and anonymous volumes, as its monitor would have.
#[test]
fn rm_container_whose_monitor_died_is_removed_by_the_next_command() {
    let env = env_or_skip!();
    env.ok(&[
        "run", "-d", "--rm", "--name", "victim", "-v", "/scratch", "bb", "sleep", "1000",
    ]);
    let c = env.container("victim");
    assert_eq!(env.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    kill(Pid::from_raw(c.state.monitor_pid), Signal::SIGKILL).unwrap();
    assert!(eventually(5, || kill(Pid::from_raw(c.state.pid), None).is_err()));
    assert_eq!(env.ok(&["ps", "-aq"]), "", "the next command removes it");
    assert!(env.run(&["inspect", "victim"]).status.code() != Some(0));
    assert!(!env.root().join("containers").join(&c.id).exists());
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    // The name is free again.
    env.ok(&["run", "--rm", "--name", "victim", "bb", "true"]);
}

/// The pid recorded for a container whose monitor died may belong to
/// another process by now: the next command must not kill it. (A
/// concurrent test's `strata create` got SIGKILL this way, 1 in 1,200.)
#[test]
fn a_dead_monitors_recycled_pid_is_not_killed() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "stale", "bb", "sleep", "1000"]);
    let c = env.container("stale");
    kill(Pid::from_raw(c.state.monitor_pid), Signal::SIGKILL).unwrap();
    assert!(eventually(5, || kill(Pid::from_raw(c.state.pid), None).is_err()));
    // An unrelated process of ours now holds the recorded pid.
    let mut bystander = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let store = strata::store::Store::open(env.root()).expect("store");
    strata::container::records::update_state(&store, &c.id, |s| {
        s.pid = bystander.id() as i32;
        Ok(())
    })
    .expect("update");
    drop(store);
    let status = env.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(status.starts_with("Exited (255)"), "{status}");
    assert!(
        bystander.try_wait().expect("try_wait").is_none(),
        "the process holding the recycled pid was killed"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
    env.ok(&["rm", "stale"]);
}
