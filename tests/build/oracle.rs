//! The oracles: Docker 20.10's builder and buildah build the same
//! Dockerfiles as strata; the images must agree. Files are compared
//! after `umoci unpack` of each image (names, types, modes, owners,
//! sizes, contents, link targets; not times), configs field by field
//! (Env, Cmd, Entrypoint, WorkingDir, User, Labels, ExposedPorts,
//! Volumes, StopSignal, Healthcheck, OnBuild, Shell), and with Docker
//! the number of layers and history entries too. buildah differs from
//! Docker in what gets a layer (an empty RUN, a WORKDIR) and adds its
//! own label: against it the files and the other config fields count.
//!
//! Docker runs as `dockerd` in a network namespace of its own
//! (`unshare --net`; the harness in `tests/containers/dockerd.rs`),
//! with its data, exec root and socket under the test's root; buildah
//! with its own storage there. Both get the test's busybox image from a
//! tar; nothing is downloaded. Features Docker
//! 20.10's builder lacks (here-documents, `--link`, `--chmod`,
//! `RUN --mount`) are checked against Docker's reference in
//! `basics.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::dockerd::{have, ok, required, unmount_and_remove, Docker};
use crate::harness::Env;
use crate::{context, env_or_skip};

/// buildah with its own storage under the test's root.
struct Buildah {
    root: PathBuf,
}

impl Buildah {
    fn new(env: &Env) -> Option<Buildah> {
        for tool in ["buildah", "skopeo", "unshare"] {
            if !have(tool) {
                required(&format!("needs {tool}"));
                return None;
            }
        }
        let root = env.root().join("buildah");
        std::fs::create_dir_all(root.join("storage")).expect("mkdir");
        std::fs::create_dir_all(root.join("run")).expect("mkdir");
        Some(Buildah { root })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.arg("--net")
            .arg("--")
            .arg("buildah")
            .arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn storage(&self) -> String {
        format!(
            "containers-storage:[vfs@{}+{}]",
            self.root.join("storage").display(),
            self.root.join("run").display()
        )
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        unmount_and_remove(&self.root);
    }
}

/// One path of an unpacked image.
type Tree = BTreeMap<String, String>;

/// `umoci unpack` of an OCI layout's `tag`, as a map of path to
/// "type mode uid gid size content-or-target".
fn unpack(layout: &Path, tag: &str, bundle: &Path) -> Tree {
    ok(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle)
            .output()
            .expect("umoci"),
        "umoci unpack",
    );
    let mut out = Tree::new();
    walk(&bundle.join("rootfs"), "", &mut out);
    out
}

fn walk(dir: &Path, rel: &str, out: &mut Tree) {
    use std::os::unix::fs::MetadataExt;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let r = format!("{rel}/{name}");
        let m = std::fs::symlink_metadata(&path).expect("lstat");
        let ft = m.file_type();
        let (kind, what) = if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                std::fs::read_link(&path)
                    .expect("readlink")
                    .display()
                    .to_string(),
            )
        } else if ft.is_file() {
            let data = std::fs::read(&path).expect("read");
            ("file", strata::digest::Digest::of(&data).short())
        } else {
            ("other", format!("{:o}", m.mode() & 0o170000))
        };
        let size = if ft.is_file() { m.len() } else { 0 };
        out.insert(
            r.clone(),
            format!(
                "{kind} {:o} {}:{} {size} {what}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ),
        );
        if ft.is_dir() {
            walk(&path, &r, out);
        }
    }
}

fn diff_trees(a: &Tree, b: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("only strata: {k} {v}")),
            Some(w) if w != v => out.push(format!("{k}: strata {v} / other {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push(format!("only other: {k} {v}"));
        }
    }
    out
}

const FIELDS: [&str; 12] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// The compared config fields; null, missing and empty are one.
fn config_fields(
    config: &serde_json::Value,
    skip_labels: &[&str],
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for f in FIELDS {
        let mut v = config.get(f).cloned().unwrap_or(serde_json::Value::Null);
        if let Some(obj) = v.as_object_mut() {
            for l in skip_labels {
                obj.remove(*l);
            }
        }
        let empty = match &v {
            serde_json::Value::Null => true,
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty {
            out.insert(f.to_string(), v);
        }
    }
    out
}

/// A case of the corpus.
struct Case {
    name: &'static str,
    /// Built first (and tagged `NAME-base`) by each engine, when set.
    base: Option<&'static str>,
    dockerfile: &'static str,
    files: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    /// Whether buildah is compared (some behaviours differ by design).
    buildah: bool,
}

const fn case(name: &'static str, dockerfile: &'static str) -> Case {
    Case {
        name,
        base: None,
        dockerfile,
        files: &[],
        args: &[],
        buildah: true,
    }
}

const FILES: &[(&str, &str)] = &[
    ("a.txt", "alpha\n"),
    ("b.txt", "beta\n"),
    ("c.md", "# c\n"),
    ("dir/one", "1\n"),
    ("dir/sub/two", "2\n"),
    ("dir/.hidden", "h\n"),
];

fn corpus() -> Vec<Case> {
    let with_files = |mut c: Case| {
        c.files = FILES;
        c
    };
    vec![
        case("run-shell", "FROM bb\nRUN echo hello > /hello && mkdir -p /x/y && echo deep > /x/y/z\n"),
        case("run-exec", "FROM bb\nRUN [\"/bin/sh\", \"-c\", \"echo exec > /exec\"]\n"),
        case("run-chained", "FROM bb\nRUN mkdir /w \\\n && cd /w \\\n && echo a > a \\\n && echo b > b \\\n && rm a\n"),
        case("run-delete-base-file", "FROM bb\nRUN rm /etc/group && rm -r /tmp\n"),
        case("run-chmod-chown-base", "FROM bb\nRUN chmod 700 /root && chown nobody /etc/passwd && touch /etc/new\n"),
        case("run-empty", "FROM bb\nRUN true\nRUN echo x > /x\nRUN true\n"),
        case("run-as-user", "FROM bb\nRUN mkdir /home && chown nobody /home\nUSER nobody\nRUN echo me > /home/mine && id -u > /home/uid\n"),
        case("run-workdir", "FROM bb\nWORKDIR /srv/app\nRUN echo here > file && pwd > where\n"),
        case("run-symlinks", "FROM bb\nRUN ln -s /etc/passwd /pw && ln -s relative /dangling && ln /bin/busybox /hard\n"),
        with_files(case("copy-file", "FROM bb\nCOPY a.txt /a.txt\n")),
        with_files(case("copy-into-dir", "FROM bb\nCOPY a.txt b.txt /dest/\n")),
        with_files(case("copy-dir-contents", "FROM bb\nCOPY dir /d\n")),
        with_files(case("copy-dir-into-existing", "FROM bb\nCOPY dir/ /etc/\n")),
        with_files(case("copy-wildcard", "FROM bb\nCOPY *.txt /w/\nCOPY d?r/s* /s/\n")),
        with_files(case("copy-relative-dest", "FROM bb\nWORKDIR /app\nCOPY a.txt .\nCOPY b.txt rel/\nCOPY c.md renamed.md\n")),
        with_files(case("copy-chown", "FROM bb\nCOPY --chown=nobody:nogroup a.txt /owned/\nCOPY --chown=1234 dir /numeric\n")),
        with_files(case("copy-whole-context", "FROM bb\nCOPY . /ctx/\n")),
        Case {
            files: &[(".dockerignore", "*.md\ndir/sub\n!dir/sub/two\n"), ("a.txt", "a\n"), ("c.md", "c\n"), ("dir/sub/two", "2\n"), ("dir/sub/three", "3\n")],
            ..case("dockerignore", "FROM bb\nCOPY . /ctx/\n")
        },
        with_files(case("copy-from-stage", "FROM bb AS build\nRUN echo built > /artifact && mkdir /out && echo o > /out/file\nFROM bb\nCOPY --from=build /artifact /artifact\nCOPY --from=build /out /out2\nCOPY --from=0 /bin/busybox /bb-copy\n")),
        case("scratch-add", "FROM scratch\nADD busybox.tar /\nCMD [\"/bin/sh\"]\n"),
        with_files(case("add-local-file", "FROM bb\nADD a.txt /added/\nADD dir /added-dir\n")),
        case("add-tar-gz", "FROM bb\nADD archive.tar.gz /unpacked/\n"),
        case("env-forms", "FROM bb\nENV A=1 B=\"two words\" C=$A\nENV D the rest of the line\nENV E=${B:+set}\nRUN echo \"$A $B $C $D $E\" > /env\n"),
        case("env-expansion-defaults", "FROM bb\nENV P=/usr/local/bin\nENV DEF=${NOPE:-default} ALT=${P:+alt} BR=${P}/x\nWORKDIR $P\nRUN echo $DEF $ALT $BR > out\n"),
        Case { args: &["--build-arg", "V=given"], ..case("arg-build-arg", "FROM bb\nARG V=default\nARG W=w\nRUN echo $V $W > /args\n") },
        case("arg-global-and-stage", "ARG TAG=bb\nARG G=global\nFROM $TAG\nARG G\nRUN echo $G > /g\n"),
        case("arg-env-precedence", "FROM bb\nARG X=arg\nENV X=env\nRUN echo $X > /x\n"),
        case("label-maintainer", "FROM bb\nLABEL a=b \"c d\"=\"e f\" version=1.0\nLABEL multi=one \\\n   second=two\nMAINTAINER Someone <someone@example.com>\n"),
        // buildah keeps a port range as one key; Docker expands it.
        Case { buildah: false, ..case("expose", "FROM bb\nEXPOSE 80 443/tcp 53/udp\nEXPOSE 8000-8002\n") },
        case("volume", "FROM bb\nRUN mkdir -p /data && echo before > /data/kept\nVOLUME /data /other\nVOLUME [\"/json\", \"/j2\"]\nRUN echo after > /data/discarded\n"),
        case("cmd-entrypoint", "FROM bb\nENTRYPOINT [\"/bin/echo\"]\nCMD [\"hello\"]\n"),
        case("cmd-shell-form", "FROM bb\nCMD echo shell form\n"),
        case("entrypoint-resets-inherited-cmd", "FROM bb\nCMD [\"base\"]\nFROM bb\nCMD [\"mine\"]\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n"),
        case("user-stopsignal", "FROM bb\nUSER nobody:nogroup\nSTOPSIGNAL SIGQUIT\n"),
        Case { buildah: false, ..case("healthcheck", "FROM bb\nHEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=4 CMD echo ok\n") },
        Case { buildah: false, ..case("healthcheck-exec-and-none", "FROM bb\nHEALTHCHECK CMD [\"/bin/true\"]\nFROM bb\nHEALTHCHECK NONE\n") },
        Case { buildah: false, ..case("shell", "FROM bb\nSHELL [\"/bin/sh\", \"-e\", \"-c\"]\nRUN echo $0 > /shell\nCMD echo via shell\n") },
        Case { base: Some("FROM bb\nONBUILD RUN echo triggered > /trigger\nONBUILD ENV FROM_TRIGGER=1\n"), buildah: false, ..case("onbuild", "FROM onbuild-base\nRUN cat /trigger > /seen\n") },
        case("onbuild-stored", "FROM bb\nONBUILD RUN echo later\nONBUILD COPY . /app\n"),
        Case { args: &["--target", "middle"], ..case("target", "FROM bb AS first\nRUN echo 1 > /1\nFROM first AS middle\nRUN echo 2 > /2\nFROM middle\nRUN echo 3 > /3\n") },
        case("multi-stage-scratch", "FROM bb AS tools\nRUN mkdir -p /out/bin && cp /bin/busybox /out/bin/ && ln -s busybox /out/bin/sh\nFROM scratch\nCOPY --from=tools /out /\nENTRYPOINT [\"/bin/sh\"]\n"),
        case("escape-directive", "# escape=`\nFROM bb\nRUN echo one `\n  two > /joined && echo 'back\\slash' > /literal\n"),
        // buildah makes a WORKDIR's directory only when a RUN follows;
        // Docker always does.
        Case { buildah: false, ..case("comments-and-case", "# a comment\nfrom bb\n# another\nrun echo lower > /lower \\\n# inside\n  && echo more >> /lower\nworkdir /w\n") },
        Case { args: &["--label", "from.flag=yes"], ..case("label-flag", "FROM bb\nLABEL in.file=1\n") },
        Case { buildah: false, ..case("workdir-relative", "FROM bb\nWORKDIR /a\nWORKDIR b\nWORKDIR ../c\nRUN pwd > /pwd\n") },
    ]
}

fn write_context(env: &Env, case: &Case, dockerfile: &str) -> PathBuf {
    let dir = context(env, dockerfile, case.files);
    if dockerfile.contains("busybox.tar") {
        let src = env
            .root()
            .join(format!("bbtar-{}", crate::harness::rand_suffix()));
        std::fs::create_dir_all(src.join("bin")).expect("mkdir");
        std::fs::copy(crate::harness::busybox(), src.join("bin/busybox")).expect("copy");
        std::os::unix::fs::symlink("busybox", src.join("bin/sh")).expect("symlink");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(dir.join("busybox.tar"))
            .arg(".")
            .status()
            .expect("tar");
        assert!(st.success());
    }
    if dockerfile.contains("archive.tar.gz") {
        let src = env
            .root()
            .join(format!("arch-{}", crate::harness::rand_suffix()));
        std::fs::create_dir_all(src.join("top/inner")).expect("mkdir");
        std::fs::write(src.join("top/inner/f"), "in the archive\n").expect("write");
        std::os::unix::fs::symlink("inner/f", src.join("top/link")).expect("symlink");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-czf")
            .arg(dir.join("archive.tar.gz"))
            .arg("top")
            .status()
            .expect("tar");
        assert!(st.success());
    }
    dir
}

type Image = (Tree, serde_json::Value, usize, usize);

fn strata_image(env: &Env, case: &Case, dir: &Path, tag: &str) -> Result<Image, String> {
    let d = dir.to_string_lossy().into_owned();
    let mut args = vec!["build", "-q", "-t", tag];
    args.extend_from_slice(case.args);
    args.push(&d);
    let out = env.run(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let layout = env.root().join(format!("oci-strata-{tag}"));
    env.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().expect("utf8"),
        tag,
    ]);
    let tree = unpack(
        &layout,
        "latest",
        &env.root().join(format!("bundle-strata-{tag}")),
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", tag])).expect("json");
    let layers = inspect[0]["RootFS"]["Layers"]
        .as_array()
        .map_or(0, Vec::len);
    let history = env.ok(&["history", "-q", tag]).lines().count();
    Ok((tree, inspect[0]["Config"].clone(), layers, history))
}

#[test]
fn docker_and_buildah_build_the_same_images() {
    let env = env_or_skip!();
    if !have("umoci") {
        required("needs umoci");
        return;
    }
    let Some(docker) = Docker::start(
        &env,
        &["--bridge=none", "--iptables=false", "--ip6tables=false"],
    ) else {
        return;
    };
    let buildah = Buildah::new(&env);
    // The same busybox image in every engine.
    let bb_tar = env.build_image_tar(&[]);
    docker.ok(&["import", bb_tar.to_str().expect("utf8"), "bb:latest"]);
    let docker_bb = env.root().join("bb-docker.tar");
    docker.ok(&["save", "-o", docker_bb.to_str().expect("utf8"), "bb:latest"]);
    if let Some(b) = &buildah {
        ok(
            Command::new("skopeo")
                .args(["copy", "--quiet"])
                .arg(format!("docker-archive:{}", docker_bb.display()))
                .arg(format!("{}localhost/bb:latest", b.storage()))
                .output()
                .expect("skopeo"),
            "skopeo copy into buildah's storage",
        );
    }
    let cases = corpus();
    assert!(
        cases.len() >= 40,
        "the corpus has {} Dockerfiles",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let tag = case.name;
        if let Some(base) = case.base {
            let base_tag = format!("{tag}-base");
            let dir = write_context(&env, case, base);
            let d = dir.to_string_lossy().into_owned();
            env.ok(&["build", "-q", "-t", &base_tag, &d]);
            docker.ok(&["build", "-q", "-t", &base_tag, &d]);
        }
        let dir = write_context(&env, case, case.dockerfile);
        let (s_tree, s_config, s_layers, s_history) = match strata_image(&env, case, &dir, tag) {
            Ok(i) => i,
            Err(e) => {
                failures.push(format!("{tag}: strata build failed: {e}"));
                continue;
            }
        };
        // Docker.
        let d = dir.to_string_lossy().into_owned();
        let mut args = vec!["build", "-q", "-t", tag];
        args.extend_from_slice(case.args);
        args.push(&d);
        let built = docker.cmd(&args).output().expect("docker build");
        if !built.status.success() {
            failures.push(format!(
                "{tag}: docker build failed: {}",
                String::from_utf8_lossy(&built.stderr)
            ));
            continue;
        }
        let saved = env.root().join(format!("docker-{tag}.tar"));
        docker.ok(&["save", "-o", saved.to_str().expect("utf8"), tag]);
        let layout = env.root().join(format!("oci-docker-{tag}"));
        ok(
            Command::new("skopeo")
                .args(["copy", "--quiet"])
                .arg(format!("docker-archive:{}", saved.display()))
                .arg(format!("oci:{}:{tag}", layout.display()))
                .output()
                .expect("skopeo"),
            "skopeo copy",
        );
        let d_tree = unpack(
            &layout,
            tag,
            &env.root().join(format!("bundle-docker-{tag}")),
        );
        let d_inspect: serde_json::Value =
            serde_json::from_str(&docker.ok(&["inspect", tag])).expect("json");
        let d_layers = d_inspect[0]["RootFS"]["Layers"]
            .as_array()
            .map_or(0, Vec::len);
        let d_history = docker.ok(&["history", "-q", tag]).lines().count();
        let tree_diff = diff_trees(&s_tree, &d_tree);
        if !tree_diff.is_empty() {
            failures.push(format!(
                "{tag}: files differ from Docker's:\n  {}",
                tree_diff.join("\n  ")
            ));
        }
        let (sc, dc) = (
            config_fields(&s_config, &[]),
            config_fields(&d_inspect[0]["Config"], &[]),
        );
        if sc != dc {
            failures.push(format!(
                "{tag}: config differs from Docker's:\n  strata {sc:?}\n  docker {dc:?}"
            ));
        }
        if (s_layers, s_history) != (d_layers, d_history) {
            failures.push(format!(
                "{tag}: strata has {s_layers} layers and {s_history} history entries, Docker {d_layers} and {d_history}"
            ));
        }
        // buildah.
        if let (Some(b), true) = (&buildah, case.buildah && case.base.is_none()) {
            // Outside the context (a COPY . would take it).
            let df = env.root().join(format!("Dockerfile.buildah-{tag}"));
            std::fs::write(
                &df,
                case.dockerfile
                    .replace("FROM bb", "FROM localhost/bb")
                    .replace("from bb", "from localhost/bb"),
            )
            .expect("write");
            let mut args = vec![
                "bud",
                "--layers",
                "--isolation",
                "chroot",
                "--format",
                "docker",
                "-q",
                "-f",
            ];
            let dfs = df.to_string_lossy().into_owned();
            args.push(&dfs);
            args.extend_from_slice(&["-t", tag]);
            args.extend_from_slice(case.args);
            args.push(&d);
            let built = b.cmd(&args).output().expect("buildah");
            if !built.status.success() {
                failures.push(format!(
                    "{tag}: buildah bud failed: {}",
                    String::from_utf8_lossy(&built.stderr)
                ));
                continue;
            }
            let layout = env.root().join(format!("oci-buildah-{tag}"));
            ok(
                b.cmd(&[
                    "push",
                    "--quiet",
                    tag,
                    &format!("oci:{}:{tag}", layout.display()),
                ])
                .output()
                .expect("buildah push"),
                "buildah push",
            );
            let mut b_tree = unpack(
                &layout,
                tag,
                &env.root().join(format!("bundle-buildah-{tag}")),
            );
            // buildah leaves its RUNs' empty mount points in the layers.
            for stub in [
                "/dev",
                "/proc",
                "/sys",
                "/run",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
            ] {
                let empty = b_tree
                    .get(stub)
                    .is_some_and(|v| v.starts_with("dir ") || v.contains(" 0 e3b0c44298fc"));
                let below = b_tree.keys().any(|k| k.starts_with(&format!("{stub}/")));
                if empty && !below && !s_tree.contains_key(stub) {
                    b_tree.remove(stub);
                }
            }
            let tree_diff = diff_trees(&s_tree, &b_tree);
            if !tree_diff.is_empty() {
                failures.push(format!(
                    "{tag}: files differ from buildah's:\n  {}",
                    tree_diff.join("\n  ")
                ));
            }
            let b_inspect: serde_json::Value = serde_json::from_slice(
                &b.cmd(&["inspect", "--type", "image", tag])
                    .output()
                    .expect("inspect")
                    .stdout,
            )
            .expect("json");
            let bc = config_fields(&b_inspect["Docker"]["config"], &["io.buildah.version"]);
            if sc != bc {
                failures.push(format!(
                    "{tag}: config differs from buildah's:\n  strata {sc:?}\n  buildah {bc:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
