//! What an image's config means, as Docker 20.10 (overlay2, Go's
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
