//! Differences found side by side with Docker 20.10, each pinned.

use crate::env_or_skip;
use crate::harness::stderr;

#[test]
fn exec_of_a_missing_command_exits_126() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "ex", "bb", "sleep", "60"]);
    let out = env.run(&["exec", "ex", "no-such-command"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("executable file not found"),
        "{}",
        stderr(&out)
    );
    env.ok(&["rm", "-f", "ex"]);
}

#[test]
fn exec_on_a_paused_container_says_so_once() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "pz", "bb", "sleep", "60"]);
    env.ok(&["pause", "pz"]);
    let out = env.run(&["exec", "pz", "true"]);
    assert_ne!(out.status.code(), Some(0));
    // Docker 20.10's line, exit 1, naming the container as asked.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error response from daemon: Container pz is paused, unpause the container before exec\n"
    );
    env.ok(&["unpause", "pz"]);
    env.ok(&["rm", "-f", "pz"]);
}

#[test]
fn commit_records_the_message_and_the_containers_own_command() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "--name",
        "cm",
        "-e",
        "GREETING=hi",
        "bb",
        "sh",
        "-c",
        "touch /made",
    ]);
    let id = env.ok(&["commit", "-m", "made a file", "cm", "committed:1"]);
    assert!(!id.trim().is_empty());
    let show = |f: &str| {
        env.ok(&["image", "inspect", "-f", f, "committed:1"])
            .trim()
            .to_string()
    };
    assert_eq!(show("{{.Comment}}"), "made a file");
    assert_eq!(show("{{json .Config.Cmd}}"), r#"["sh","-c","touch /made"]"#);
    assert!(show("{{json .Config.Env}}").contains("GREETING=hi"));
    // Without -m, no comment.
    env.ok(&["commit", "cm", "committed:2"]);
    assert_eq!(
        env.ok(&["image", "inspect", "-f", "{{.Comment}}", "committed:2"])
            .trim(),
        ""
    );
}

/// An image whose /etc/group makes `app` (1000) a member of `wheel` (10).
fn import_users_image(env: &crate::harness::Env) {
    let tar = env.build_image_tar_with(&[], |dir| {
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/group"),
            "root:x:0:\nwheel:x:10:app\napp:x:1000:\nstaff:x:50:\n",
        )
        .unwrap();
    });
    env.ok(&["import", tar.to_str().unwrap(), "users:1"]);
}

/// Docker 20.10 (`docker run --rm -u U img id`, same image):
///   1000       uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)
///   1000:1000  uid=1000(app) gid=1000(app) groups=1000(app)
///   app        uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)
///   1000:50    uid=1000(app) gid=50(staff) groups=50(staff)
/// and the same for `exec -u`.
#[test]
fn user_flags_set_dockers_supplementary_groups() {
    let env = env_or_skip!();
    import_users_image(&env);
    let cases = [
        (
            "1000",
            "uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)",
        ),
        ("1000:1000", "uid=1000(app) gid=1000(app) groups=1000(app)"),
        (
            "app",
            "uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)",
        ),
        ("1000:50", "uid=1000(app) gid=50(staff) groups=50(staff)"),
    ];
    for (user, want) in cases {
        let got = env.ok(&["run", "--rm", "-u", user, "users:1", "id"]);
        assert_eq!(got.trim(), want, "run -u {user}");
    }
    env.ok(&["run", "-d", "--name", "ids", "users:1", "sleep", "60"]);
    for (user, want) in cases {
        let got = env.ok(&["exec", "-u", user, "ids", "id"]);
        assert_eq!(got.trim(), want, "exec -u {user}");
    }
    env.ok(&["rm", "-f", "ids"]);
}

/// A container's files as `cp CTR:PATH -` sees them: the tar's entries.
fn tar_names(env: &crate::harness::Env, source: &str) -> Vec<String> {
    let out = env.run(&["cp", source, "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .map(|n| n.trim_end_matches('/').to_string())
        .filter(|n| !n.is_empty() && n != ".")
        .collect();
    names.sort();
    names
}

/// Docker 20.10's rules for `cp HOST CTR:DEST`, recorded side by side:
/// a missing DEST is created (file or directory), an existing directory
/// receives SRC under its name, `SRC/.` copies the contents, a file
/// replaces a file; a file to a missing `DEST/` says "no such directory",
/// a directory onto a file "cannot copy directory", a missing parent
/// "Could not find the file /nope in container NAME" (each exit 1).
fn check_cp_destinations(env: &crate::harness::Env, name: &str) {
    let host = env.dir.path().join(format!("cp-src-{name}"));
    std::fs::create_dir_all(host.join("dir/sub")).unwrap();
    std::fs::write(host.join("f"), "hi\n").unwrap();
    std::fs::write(host.join("dir/sub/x"), "x\n").unwrap();
    let f = host.join("f");
    let dir = host.join("dir");
    let f = f.to_str().unwrap();
    let dir = dir.to_str().unwrap();
    let ctr = |p: &str| format!("{name}:{p}");
    env.ok(&["cp", f, &ctr("/tmp/newname")]);
    env.ok(&["cp", dir, &ctr("/tmp/newdir")]);
    env.ok(&["cp", dir, &ctr("/tmp/newdir2/")]);
    env.ok(&["cp", &format!("{dir}/."), &ctr("/tmp/dot")]);
    env.ok(&["cp", f, &ctr("/tmp/newdir")]);
    env.ok(&["cp", f, &ctr("/tmp/newname")]);
    let fails = [
        (
            f.to_string(),
            "/tmp/nodir/",
            "no such directory".to_string(),
        ),
        (
            dir.to_string(),
            "/tmp/newname",
            "cannot copy directory".to_string(),
        ),
        (
            f.to_string(),
            "/nope/x",
            format!("Could not find the file /nope in container {name}"),
        ),
    ];
    for (src, dest, said) in fails {
        let out = env.run(&["cp", &src, &ctr(dest)]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "cp {src} {dest}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&said),
            "cp {src} {dest}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        tar_names(env, &ctr("/tmp/.")),
        [
            "dot",
            "dot/sub",
            "dot/sub/x",
            "newdir",
            "newdir/f",
            "newdir/sub",
            "newdir/sub/x",
            "newdir2",
            "newdir2/sub",
            "newdir2/sub/x",
            "newname",
        ]
    );
    let out = env.run(&["cp", &ctr("/tmp/newname"), "-"]);
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    assert_eq!(text, "hi\n");
}

#[test]
fn cp_creates_a_missing_destination_as_docker_does() {
    let env = env_or_skip!();
    env.ok(&["run", "-d", "--name", "cprun", "bb", "sleep", "60"]);
    check_cp_destinations(&env, "cprun");
    env.ok(&["rm", "-f", "cprun"]);
    // A stopped container: the same rules, through its offline view.
    env.ok(&["create", "--name", "cpstopped", "bb", "true"]);
    check_cp_destinations(&env, "cpstopped");
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

/// `cp` and `export` of a stopped container mount its view for the
/// command and unmount it: Docker takes ~0.1 s, strata took 5.1 s (it
/// waited for its mount daemon, which it had not reaped). The bound is
/// loose for a loaded machine; the median is in BENCHMARKS.md.
#[test]
fn cp_and_export_of_a_stopped_container_are_quick() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "--name",
        "quick",
        "bb",
        "sh",
        "-c",
        "echo hi > /made",
    ]);
    for args in [
        vec!["cp", "quick:/made", "-"],
        vec!["export", "quick"],
        vec!["cp", "quick:/etc", "-"],
    ] {
        let started = std::time::Instant::now();
        let out = env.run(&args);
        let took = started.elapsed();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            took < std::time::Duration::from_secs(1),
            "{args:?} took {took:?}"
        );
    }
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

/// Docker 20.10 `inspect` of a container: `HostnamePath`, `HostsPath`,
/// `ResolvConfPath` empty before the first start and the files' paths
/// after; `ExecIDs` null, or the IDs of the execs running;
/// `HostConfig.NetworkMode` "default" without `--network`.
#[test]
fn inspect_shows_the_etc_files_and_running_execs() {
    let env = env_or_skip!();
    env.ok(&["create", "--name", "paths", "bb", "sleep", "60"]);
    let show = |f: &str| env.ok(&["inspect", "-f", f, "paths"]).trim().to_string();
    assert_eq!(
        show(
            "{{json .HostnamePath}} {{json .HostsPath}} {{json .ResolvConfPath}} {{json .ExecIDs}}"
        ),
        r#""" "" "" null"#
    );
    assert_eq!(show("{{.HostConfig.NetworkMode}}"), "default");
    env.ok(&["start", "paths"]);
    let id = show("{{.Id}}");
    for (field, file) in [
        ("HostnamePath", "hostname"),
        ("HostsPath", "hosts"),
        ("ResolvConfPath", "resolv.conf"),
    ] {
        let path = show(&format!("{{{{.{field}}}}}"));
        assert!(path.ends_with(&format!("{id}/{file}")), "{field}: {path}");
        let inside = env.ok(&["exec", "paths", "cat", &format!("/etc/{file}")]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), inside, "{field}");
    }
    env.ok(&["exec", "-d", "paths", "sleep", "30"]);
    let ids: Vec<String> = serde_json::from_str(&show("{{json .ExecIDs}}")).unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[0].len(), 64, "{ids:?}");
    // An exec that has ended is not listed.
    env.ok(&["exec", "paths", "true"]);
    let after: Vec<String> = serde_json::from_str(&show("{{json .ExecIDs}}")).unwrap();
    assert_eq!(after, ids);
    env.ok(&["rm", "-f", "paths"]);
}

/// Docker hides the /etc files it writes (hostname, hosts, resolv.conf)
/// from `diff`, and lists no `C /etc` for them: `docker diff` of a
/// container that changed nothing is empty.
#[test]
fn diff_does_not_list_the_etc_files_strata_writes() {
    let env = env_or_skip!();
    env.ok(&["run", "--name", "quiet", "bb", "true"]);
    assert_eq!(env.ok(&["diff", "quiet"]), "");
    env.ok(&["run", "--name", "busy", "bb", "touch", "/etc/made"]);
    assert_eq!(env.ok(&["diff", "busy"]), "C /etc\nA /etc/made\n");
}
