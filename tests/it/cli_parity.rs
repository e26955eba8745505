//! Docker's client at the CLI: `version` and `info` (`system info`) in
//! Docker's layout and with `--format`, and the `image` and `system`
//! command groups beside the top-level verbs.

use crate::common::{assert_fails_one_line, busybox_rootfs_tar, sh, Env};

#[test]
fn version_in_dockers_layout_and_with_format() {
    let env = Env::new();
    let text = env.ok(&["version"]);
    let version = env!("CARGO_PKG_VERSION");
    // Docker's tabwriter: labels padded to 20 columns, then the value.
    assert!(
        text.starts_with(&format!("Client:\n Version:           {version}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\nServer:\n Engine:\n  Version:          {version}\n"
        )),
        "{text}"
    );
    assert!(text.contains(" OS/Arch:           linux/"), "{text}");
    assert!(text.contains(" strata-fs:\n"), "{text}");
    // No containerd or runc: strata does not use them.
    assert!(!text.contains("runc") || text.contains("no runc"), "{text}");
    assert_eq!(
        env.ok(&[
            "version",
            "--format",
            "{{.Server.Version}}|{{.Client.Version}}"
        ]),
        format!("{version}|{version}\n")
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["version", "-f", "{{json .}}"])).expect("json");
    assert_eq!(json["Server"]["Components"][0]["Name"], "Engine");
    assert_eq!(
        json["Server"]["KernelVersion"],
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .expect("osrelease")
            .trim()
    );
    // Docker: a template that does not parse is 64, with no "Error:".
    let out = env.run(&["version", "-f", "{{nope}}"]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "template parsing error: template: :1: function \"nope\" not defined\n"
    );
    let out = env.run(&["version", "-f", "{{.Server.Version.X}}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("template: :1:"),
        "{out:?}"
    );
}

#[test]
fn info_tells_the_truth_about_the_store_and_host() {
    let env = Env::new();
    // Two images with the same busybox: deduplication saves one copy.
    let a = busybox_rootfs_tar(&env, "a");
    env.ok(&["import", a.to_str().expect("utf8"), "a:1"]);
    // Another layer (a file more) with the same busybox in it.
    let b_rootfs = env.path("b-rootfs");
    sh(&format!(
        "cp -a {} {b} && echo b > {b}/etc/b && tar -C {b} -cf {b}.tar .",
        env.path("a-rootfs").display(),
        b = b_rootfs.display()
    ));
    env.ok(&["import", &format!("{}.tar", b_rootfs.display()), "b:1"]);
    let busybox_size = std::fs::metadata(env.path("a-rootfs/bin/busybox"))
        .expect("busybox")
        .len();

    let text = env.ok(&["info"]);
    let expected_in_order = [
        "Server:\n",
        " Containers: 0\n",
        "  Running: 0\n",
        "  Paused: 0\n",
        "  Stopped: 0\n",
        " Images: 2\n",
        &format!(" Server Version: {}\n", env!("CARGO_PKG_VERSION")),
        " Storage Driver: ",
        "  Backing Filesystem: ",
        "  Saved by Deduplication: ",
        " Logging Driver: json-file\n",
        " Cgroup Driver: cgroupfs\n",
        " Cgroup Version: ",
        " Plugins:\n",
        " Security Options:\n",
        &format!(
            " Kernel Version: {}\n",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .expect("osrelease")
                .trim()
        ),
        " Operating System: ",
        " OSType: linux\n",
        &format!(" Architecture: {}\n", std::env::consts::ARCH),
        &format!(
            " CPUs: {}\n",
            std::thread::available_parallelism().expect("cpus")
        ),
        " Total Memory: ",
        &format!(" Strata Root Dir: {}\n", env.root.display()),
        " Insecure Registries:\n  127.0.0.0/8\n",
    ];
    let mut at = 0;
    for piece in expected_in_order {
        let found = text[at..]
            .find(piece)
            .unwrap_or_else(|| panic!("{piece:?} not found (in order) in:\n{text}"));
        at += found + piece.len();
    }
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    assert_eq!(
        env.ok(&[
            "system",
            "info",
            "--format",
            "{{.Images}} {{.Containers}} {{.CgroupVersion}} {{.OSType}} {{.DockerRootDir}}"
        ]),
        format!("2 0 {cgroup} linux {}\n", env.root.display())
    );
    let saved: u64 = env
        .ok(&["info", "-f", "{{.Store.DeduplicationSavedBytes}}"])
        .trim()
        .parse()
        .expect("a number");
    assert!(
        saved >= busybox_size,
        "saved {saved}, busybox is {busybox_size}"
    );
    let out = env.run(&["info", "-f", "{{if}}"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("template parsing error: "));
}

#[test]
fn image_and_system_groups_match_the_top_level_verbs() {
    let env = Env::new();
    let tar = busybox_rootfs_tar(&env, "g");
    env.ok(&["image", "import", tar.to_str().expect("utf8"), "grp:1"]);
    env.ok(&["image", "tag", "grp:1", "grp:2"]);
    let listed = env.ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed, "grp:1\ngrp:2\n");
    assert_eq!(
        env.ok(&["image", "list", "--format", "{{.Tag}}"]),
        env.ok(&["images", "--format", "{{.Tag}}"])
    );
    let id = env.ok(&["image", "inspect", "-f", "{{.Id}}", "grp:1"]);
    assert_eq!(id, env.ok(&["inspect", "-f", "{{.Id}}", "grp:2"]));
    assert!(env
        .ok(&["image", "history", "-q", "grp:1"])
        .starts_with(&id[7..19]));
    env.ok(&["image", "rmi", "grp:2"]);
    env.ok(&[
        "image",
        "save",
        "-o",
        env.path("g.tar").to_str().expect("utf8"),
        "grp:1",
    ]);
    env.ok(&["image", "rm", "grp:1"]);
    env.ok(&[
        "image",
        "load",
        "-i",
        env.path("g.tar").to_str().expect("utf8"),
    ]);
    assert_eq!(env.ok(&["image", "ls", "-q"]).trim(), &id[7..19]);
    assert_eq!(
        env.ok(&["system", "df", "--format", "{{.Type}}:{{.TotalCount}}"]),
        "Images:1\nContainers:0\nLocal Volumes:0\nBuild Cache:0\n"
    );
    let table = env.ok(&["system", "df", "--format", "table {{.Type}}\t{{.Active}}"]);
    assert!(
        table.starts_with("TYPE            ACTIVE\nImages          0\n"),
        "{table}"
    );

    // `image inspect` looks for images only; `container inspect` for
    // containers only; each says what it did not find, as Docker does.
    let args = ["container", "inspect", "grp:1"];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]\n");
    let line = assert_fails_one_line(&out, &args);
    assert_eq!(line, "Error: No such container: grp:1");
    let args = ["image", "inspect", "nosuch"];
    let out = env.run(&args);
    assert_eq!(
        assert_fails_one_line(&out, &args),
        "Error: No such image: nosuch"
    );
    assert_eq!(env.ok(&["container", "ls", "-a", "-q"]), "");
}
