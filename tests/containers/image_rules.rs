//! What an image's layers and config mean, as Docker 20.10 (overlay2, Go's
//! archive/tar) applies them, under both root providers (the strata-fs
//! FUSE mount and `STRATA_ROOTFS=overlay`). Each case's comment records
//! what Docker did with the same crafted image (`docker load`, then
//! `docker export` / `docker run`).

use std::path::PathBuf;

use crate::env_or_skip;
use crate::harness::{stderr, stdout, Env};

#[path = "../it/common.rs"]
#[allow(unused_imports)]
mod common;
use common::{RawEntry, RawTar};

const PROVIDERS: [&str; 2] = ["fuse", "overlay"];

/// A docker-archive of the busybox layer and `extra` layers, with
/// `config` merged into the image config's `config` and the given `os`,
/// tagged `tag`; loaded.
fn load_layers(env: &Env, extra: &[&[u8]], tag: &str, config: serde_json::Value, os: &str) {
    let base = std::fs::read(env.build_image_tar(&[])).expect("base layer");
    let layers: Vec<Vec<u8>> = std::iter::once(base)
        .chain(extra.iter().map(|l| l.to_vec()))
        .collect();
    let hex = |d: &[u8]| common::sha256_hex(d);
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", hex(l)))
        .collect();
    let mut run = serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]});
    if let (Some(run), Some(extra)) = (run.as_object_mut(), config.as_object()) {
        run.extend(extra.clone());
    }
    let image_config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": os, "config": run,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("json");
    let config_name = format!("blobs/sha256/{}", hex(&image_config));
    let layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", hex(l)))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": [tag], "Layers": layer_names}
    ]))
    .expect("json");
    let mut archive = tar::Builder::new(Vec::new());
    let members = layer_names.into_iter().zip(layers).chain([
        (config_name, image_config),
        ("manifest.json".to_string(), manifest),
    ]);
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_path(&name).expect("path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        archive.append(&h, data.as_slice()).expect("append");
    }
    let path: PathBuf = env.root().join(format!("{}.tar", tag.replace(':', "-")));
    std::fs::write(&path, archive.into_inner().expect("archive")).expect("write");
    env.ok(&["load", "-i", path.to_str().expect("utf8")]);
}

fn load_image(env: &Env, top: &[u8], tag: &str) {
    load_layers(env, &[top], tag, serde_json::json!({}), "linux");
}

fn layer(build: impl FnOnce(&mut RawTar)) -> Vec<u8> {
    let mut t = RawTar::default();
    build(&mut t);
    t.finish()
}

/// `run --rm IMAGE ARGS` under one root provider; the whole output.
fn run_on(env: &Env, provider: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd(&[&["run", "--rm", "--network", "none"], args].concat());
    if provider == "overlay" {
        cmd.env("STRATA_ROOTFS", "overlay");
    }
    cmd.output().expect("run strata")
}

/// The image's tree under `/` (busybox's own `bin` and `etc` left out)
/// as `type mode path` lines, and the root's mode, under each provider;
/// both must agree.
fn tree(env: &Env, image: &str) -> String {
    let script = "stat -c 'root %A' /; cd / && find . -xdev ! -path . ! -path './bin*' \
                  ! -path './etc*' ! -path './dev*' ! -path './proc*' ! -path './sys*' \
                  ! -path './data*' ! -path './root*' ! -path './tmp*' \
                  -exec stat -c '%A %n' {} + | busybox sort -k 2";
    let mut seen = Vec::new();
    for provider in PROVIDERS {
        let out = run_on(env, provider, &[image, "sh", "-c", script]);
        assert!(out.status.success(), "{provider}: {}", stderr(&out));
        seen.push(stdout(&out));
    }
    assert_eq!(seen[0], seen[1], "the FUSE and overlay roots differ");
    seen.remove(0)
}

/// GNU long names and PAX records combine as in Go's reader: the GNU
/// long name wins whatever the order, a second PAX header replaces the
/// first, an empty PAX value keeps the header's field, and a GNU long
/// name ends at its first NUL byte.
#[test]
fn names_combine_as_in_gos_tar_reader() {
    let env = env_or_skip!();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        // Docker: "gnu-name" (strata took "pax-name").
        (
            "gnu-then-pax",
            layer(|t| {
                t.gnu_long_name(b"gnu-name");
                t.pax(&[("path", b"pax-name")]);
                t.add(RawEntry::file(b"hdr-name", b"x"));
            }),
            "./gnu-name",
        ),
        // Docker: "gnu-name".
        (
            "pax-then-gnu",
            layer(|t| {
                t.pax(&[("path", b"pax-name")]);
                t.gnu_long_name(b"gnu-name");
                t.add(RawEntry::file(b"hdr-name", b"x"));
            }),
            "./gnu-name",
        ),
        // Docker: "hdr-name" (strata merged the two: "pax-first").
        (
            "two-pax",
            layer(|t| {
                t.pax(&[("path", b"pax-first")]);
                t.pax(&[("mtime", b"1600000000")]);
                t.add(RawEntry::file(b"hdr-name", b"x"));
            }),
            "./hdr-name",
        ),
        // Docker: "hdr-name" (strata made the entry the root).
        (
            "empty-pax-path",
            layer(|t| {
                t.pax(&[("path", b"")]);
                t.add(RawEntry::file(b"hdr-name", b"x"));
            }),
            "./hdr-name",
        ),
        // Docker: "good" (strata kept the NUL byte and the rest).
        (
            "gnu-nul",
            layer(|t| {
                t.gnu_long_name(b"good\0bad");
                t.add(RawEntry::file(b"hdr-name", b"x"));
            }),
            "./good",
        ),
    ];
    for (name, top, expected) in cases {
        let tag = format!("{name}:1");
        load_image(&env, &top, &tag);
        assert_eq!(
            tree(&env, &tag),
            format!("root drwxr-xr-x\n-rw-r--r-- {expected}\n"),
            "{name}"
        );
    }
}

/// `.` and `./` name the root: Docker skips such an entry whatever its
/// type (the root stays a 0755 directory), and a PAX header left without
/// an entry at the end of the stream ends it, as in Go's reader.
#[test]
fn dot_entries_and_a_dangling_pax_header_are_ignored() {
    let env = env_or_skip!();
    let cases: [(&str, Vec<u8>); 5] = [
        // Docker: f1 only; strata made the root a file (mode 644).
        (
            "dot-file",
            layer(|t| {
                t.add(RawEntry::file(b"f1", b"x"));
                t.add(RawEntry::file(b"./", b"dot content"));
            }),
        ),
        // Docker: f1 only.
        (
            "dot-symlink",
            layer(|t| {
                t.add(RawEntry::file(b"f1", b"x"));
                t.add(RawEntry::link(b".", b'2', b"/tmp"));
            }),
        ),
        // Docker: the root stays 0755 (strata's FUSE root took 0700).
        (
            "dot-dir",
            layer(|t| {
                t.add(RawEntry {
                    mode: 0o700,
                    ..RawEntry::dir(b"./")
                });
                t.add(RawEntry::file(b"f1", b"x"));
            }),
        ),
        // Docker: loads, f1 (the PAX header before the end blocks is ignored).
        (
            "dangling-pax",
            layer(|t| {
                t.add(RawEntry::file(b"f1", b"x"));
                t.pax(&[("path", b"dangling")]);
            }),
        ),
        // Docker: loads, f1 (strata refused the stream as truncated).
        ("dangling-pax-eof", {
            let mut t = RawTar::default();
            t.add(RawEntry::file(b"f1", b"x"));
            t.pax(&[("path", b"dangling")]);
            std::mem::take(&mut t.data)
        }),
    ];
    for (name, top) in cases {
        let tag = format!("{name}:1");
        load_image(&env, &top, &tag);
        assert_eq!(
            tree(&env, &tag),
            "root drwxr-xr-x\n-rw-r--r-- ./f1\n",
            "{name}"
        );
    }
}

/// A whiteout followed by an entry at the same path in one layer: the
/// entry replaces the whiteout (Docker's overlay2 removes the whiteout
/// device and creates the entry), so a directory merges with the lower
/// one. A root opaque marker changes nothing (overlayfs ignores it at
/// the root): the lower layers stay visible under both providers.
#[test]
fn whiteouts_and_opaque_markers_as_overlay2_applies_them() {
    let env = env_or_skip!();
    let lower = layer(|t| {
        t.add(RawEntry::dir(b"lower/"));
        t.add(RawEntry::file(b"lower/file", b"old"));
    });
    let cases: [(&str, Vec<u8>, &str); 3] = [
        // Docker: lower/file (the new one) and lower/new.
        (
            "whiteout-then-file",
            layer(|t| {
                t.add(RawEntry::dir(b"lower/"));
                t.add(RawEntry::file(b"lower/.wh.file", b""));
                t.add(RawEntry::file(b"lower/file", b"new"));
            }),
            "drwxr-xr-x ./lower\n-rw-r--r-- ./lower/file\n",
        ),
        // Docker: lower (0700) holds the lower layer's file and y (strata
        // hid the lower directory's content).
        (
            "whiteout-then-dir",
            layer(|t| {
                t.add(RawEntry::file(b".wh.lower", b""));
                t.add(RawEntry {
                    mode: 0o700,
                    ..RawEntry::dir(b"lower/")
                });
                t.add(RawEntry::file(b"lower/y", b"y"));
            }),
            "drwx------ ./lower\n-rw-r--r-- ./lower/file\n-rw-r--r-- ./lower/y\n",
        ),
        // Docker: everything below stays (strata's FUSE root hid it all,
        // busybox included, while the overlay provider did not).
        (
            "root-opaque",
            layer(|t| {
                t.add(RawEntry::file(b".wh..wh..opq", b""));
                t.add(RawEntry::file(b"newfile", b"x"));
            }),
            "drwxr-xr-x ./lower\n-rw-r--r-- ./lower/file\n-rw-r--r-- ./newfile\n",
        ),
    ];
    for (name, top, expected) in cases {
        // Three layers: busybox, `lower`, then the case.
        let tag = format!("{name}:1");
        load_layers(&env, &[&lower, &top], &tag, serde_json::json!({}), "linux");
        assert_eq!(
            tree(&env, &tag),
            format!("root drwxr-xr-x\n{expected}"),
            "{name}"
        );
    }
    // The content is the top layer's.
    for provider in PROVIDERS {
        let out = run_on(
            &env,
            provider,
            &["whiteout-then-file:1", "cat", "/lower/file"],
        );
        assert_eq!(stdout(&out), "new", "{provider}");
    }
}

/// Image configs Docker accepts at load and create but cannot run: its
/// runtime (runc) refuses them at start, `docker run` exits 125. strata
/// refuses them at start too, with one line: a volume over the root or
/// on or below /proc, a relative working directory, an environment entry
/// with a NUL byte or without a name. A relative volume path is not
/// refused: Docker mounts it under the root (`data` at `/data`).
#[test]
fn configs_docker_cannot_run_are_refused_at_start() {
    let env = env_or_skip!();
    let top = layer(|t| {
        t.add(RawEntry::file(b"f1", b"x"));
    });
    let cases = [
        // Docker: "OCI runtime create failed: ... ip_unprivileged_port_start:
        // no such file or directory" (the volume hid the root), exit 127.
        (
            "vol-root",
            serde_json::json!({"Volumes": {"/": {}}}),
            "over the container's root",
        ),
        // Docker: "... cannot be mounted because it is not of type proc", 125.
        (
            "vol-proc",
            serde_json::json!({"Volumes": {"/proc": {}}}),
            "/proc",
        ),
        // Docker: "... cannot be mounted because it is inside /proc", 125.
        (
            "vol-proc-sub",
            serde_json::json!({"Volumes": {"/proc/foo": {}}}),
            "inside /proc",
        ),
        // Docker: "runc create failed: Cwd must be an absolute path", 125.
        (
            "wd-relative",
            serde_json::json!({"WorkingDir": "rel/dir"}),
            "absolute path",
        ),
        // Docker: "environment variable value can't contain null(\x00)", 125.
        (
            "env-nul",
            serde_json::json!({"Env": ["PATH=/bin", "A=b\0c"]}),
            "NUL",
        ),
        // Docker: "environment variable name can't be empty", 125.
        (
            "env-no-name",
            serde_json::json!({"Env": ["PATH=/bin", "=foo"]}),
            "name can't be empty",
        ),
    ];
    for (name, config, expected) in cases {
        let tag = format!("{name}:1");
        load_layers(&env, &[&top], &tag, config, "linux");
        // As Docker: create accepts it.
        env.ok(&["create", "--name", name, &tag, "true"]);
        for provider in PROVIDERS {
            let out = run_on(&env, provider, &[&tag, "true"]);
            assert_eq!(
                out.status.code(),
                Some(125),
                "{name} {provider}: {}",
                stderr(&out)
            );
            let lines: Vec<String> = stderr(&out).lines().map(str::to_string).collect();
            assert_eq!(lines.len(), 1, "{name} {provider}: {lines:?}");
            assert!(lines[0].contains(expected), "{name} {provider}: {lines:?}");
        }
        let out = env.run(&["start", name]);
        assert!(!out.status.success(), "{name}: start succeeded");
        env.ok(&["rm", name]);
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "", "run --rm left containers");
    // `-w` relative: Docker refuses it at create ("the working directory
    // 'rel' is invalid, it needs to be an absolute path"), 125.
    let out = env.run(&["create", "-w", "rel", "bb", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("absolute path"), "{}", stderr(&out));
    // `-v x:/`: Docker: "invalid volume specification: ... destination
    // can't be '/'", at create.
    let out = env.run(&["create", "-v", "x:/", "bb", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("can't be '/'"), "{}", stderr(&out));
    // A relative volume path: Docker mounts it under the root.
    load_layers(
        &env,
        &[&top],
        "vol-rel:1",
        serde_json::json!({"Volumes": {"vol": {}}}),
        "linux",
    );
    for provider in PROVIDERS {
        let out = run_on(
            &env,
            provider,
            &["vol-rel:1", "grep", "-c", " /vol ", "/proc/mounts"],
        );
        assert_eq!(stdout(&out), "1\n", "{provider}: {}", stderr(&out));
    }
}
