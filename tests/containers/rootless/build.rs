//! Issue 13, the rest of `build` as an ordinary user (docs/rootless.md,
//! docs/build.md): ADD of a tar with several owners and of a URL, ADD and
//! COPY `--chown`, the RUN networks, secrets, cache, bind, tmpfs and
//! `from=` mounts, and the flags (`--target`, `--build-arg`, `-f` outside
//! the context, `--iidfile`). The owners in the user's image are compared
//! with root's build of the same Dockerfile, layer by layer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::super::harness::eventually;
use super::{free_loopback_port, installed_or_skip, lines_with, missing, Rootless};

/// A python3 http.server on 127.0.0.1 serving `dir`, killed by pid on
/// drop.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path) -> HttpServer {
        let port = free_loopback_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (Debian's python3) for the test's http server");
        let server = HttpServer { child, port };
        assert!(
            eventually(10, || std::net::TcpStream::connect(("127.0.0.1", port))
                .is_ok()),
            "the http server on 127.0.0.1:{port} did not start"
        );
        server
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `args` (a command and its arguments) as root; panics on failure.
fn as_root(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// Every layer of the image in the docker-archive `archive`, in order:
/// one line per entry (mode, owner, size, path), `---` after each layer.
fn layer_listing(archive: &Path, scratch: &Path) -> String {
    std::fs::create_dir_all(scratch).unwrap();
    as_root(&[
        "tar",
        "-xf",
        archive.to_str().unwrap(),
        "-C",
        scratch.to_str().unwrap(),
    ]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch.join("manifest.json")).unwrap()).unwrap();
    let mut listing = String::new();
    for layer in manifest[0]["Layers"].as_array().expect("layers") {
        let out = Command::new("tar")
            .args(["-tv", "--numeric-owner", "-f"])
            .arg(scratch.join(layer.as_str().unwrap()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            listing.push_str(&format!(
                "{} {} {} {}\n",
                f[0],
                f[1],
                f[2],
                f[5..].join(" ")
            ));
        }
        listing.push_str("---\n");
    }
    listing
}

/// A gzipped tar with files of several owners (0, 1000 and 123:456, one
/// of mode 0600), made by root at `tar`.
fn owners_tar(tree: &Path, tar: &Path) {
    let d = tree.join("d");
    std::fs::create_dir_all(&d).unwrap();
    for (name, text) in [("root-file", "a\n"), ("u-file", "b\n"), ("odd", "c\n")] {
        std::fs::write(d.join(name), text).unwrap();
    }
    std::fs::set_permissions(
        d.join("odd"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::chown(d.join("u-file"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(d.join("odd"), Some(123), Some(456)).unwrap();
    std::os::unix::fs::chown(&d, Some(123), Some(456)).unwrap();
    as_root(&[
        "tar",
        "--numeric-owner",
        "-C",
        tree.to_str().unwrap(),
        "-czf",
        tar.to_str().unwrap(),
        ".",
    ]);
}

/// Writes `files` (path, text) below `dir` and gives it all to `user`.
fn user_files(setup: &Rootless, dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }
    let owner = format!("{}:{}", setup.user.uid, setup.user.gid);
    as_root(&["chown", "-R", &owner, dir.to_str().unwrap()]);
}

/// The Dockerfile of the first test: every step leaves its evidence in
/// a file of the image.
fn dockerfile(port: u16) -> String {
    format!(
        r#"FROM rl:1 AS base
ADD t.tar.gz /x/
ADD http://127.0.0.1:{port}/remote.txt /r/
ADD --chown=1000:1000 plain.txt /c/add-chowned
COPY --chown=1000:1000 plain.txt /c/copy-chowned
COPY --chown=u dir /c/dir
RUN --network=host wget -q -O /net-host http://127.0.0.1:{port}/remote.txt
RUN --network=none ip -o link | grep -vc ': lo:' > /links-none || true
RUN --mount=type=secret,id=x wc -c < /run/secrets/x > /secret-read
RUN --mount=type=cache,target=/c2,uid=1000,gid=1000,mode=0750 stat -c %u:%g:%a /c2 > /cache-owner && mkdir -p /c2/d && echo . >> /c2/d/runs && chown -R 1000:1000 /c2/d && wc -l < /c2/d/runs > /cache-runs
RUN --mount=type=bind,source=dir,target=/b cat /b/f > /bound
RUN --mount=type=bind,source=dir,target=/b,rw sh -c 'mkdir /b/nd && touch /b/nd/x && chown -R 1000 /b/nd && ls /b/nd > /bound-rw'
RUN --mount=type=tmpfs,target=/t sh -c 'mkdir /t/d && touch /t/d/x && chown -R 1000 /t/d && ls /t/d > /tmpfs-ok'
FROM rl:1 AS other
RUN mkdir /o && echo other > /o/f && chown 1000:1000 /o/f && chmod 600 /o/f
FROM base
RUN --mount=type=bind,from=other,source=/o,target=/o stat -c %u:%g:%a /o/f > /from-owner && cat /o/f > /from-read && {{ touch /o/w 2>/dev/null && echo writable || echo read-only; }} > /from-ro
COPY --from=other /o /o2
"#
    )
}

/// Issue 13: ADD (a tar of several owners, a URL), `--chown`, RUN's
/// networks and mounts as an ordinary user, with the layers (owners,
/// modes, sizes, paths) of root's build of the same Dockerfile; the
/// secret never in the image, the cache kept across builds and removed
/// by `builder prune -a`, nothing left in the store's tmp.
#[test]
fn an_ordinary_users_build_adds_mounts_and_networks_as_roots_does() {
    rootless_or_skip!();
    if !installed_or_skip("pasta", "pasta (Debian's passt)") {
        return;
    }
    let setup = Rootless::new();
    let home = setup.user.home.clone();
    let www = home.join("www");
    user_files(&setup, &www, &[("remote.txt", "remote\n")]);
    let server = HttpServer::start(&www);
    let ctx = home.join("ctx");
    let tree = tempfile::tempdir().unwrap();
    user_files(
        &setup,
        &ctx,
        &[
            ("plain.txt", "plain\n"),
            ("dir/f", "bound\n"),
            ("Dockerfile", &dockerfile(server.port)),
        ],
    );
    owners_tar(tree.path(), &ctx.join("t.tar.gz"));
    user_files(&setup, &home.join("s"), &[("secret.txt", "s3cret\n")]);
    let ctx2 = home.join("ctx2");
    user_files(
        &setup,
        &ctx2,
        &[(
            "Dockerfile",
            &format!(
                "FROM rl:1\nRUN wget -q -O /got http://127.0.0.1:{}/remote.txt || echo unreachable > /got\n",
                server.port
            ),
        )],
    );
    let script = r#"
build() {
  $S build --progress plain --secret id=x,src="$HOME/s/secret.txt" "$@" > "$HOME/build.log" 2>&1 || { echo "FAILED build $*"; cat "$HOME/build.log"; }
}
build -t built:1 "$HOME/ctx"
build --no-cache -t built:2 "$HOME/ctx"
show='cat /net-host /links-none /secret-read /cache-owner /cache-runs /bound /bound-rw /tmpfs-ok /from-owner /from-read /from-ro; for d in /run/secrets /c2 /t /b /o; do [ -e $d ] && echo "in the image: $d"; done'
echo "FIRST $($S run --rm --network none built:1 sh -c "$show" 2>&1 | tr '\n' ' ')"
echo "SECOND $($S run --rm --network none built:2 sh -c "$show" 2>&1 | tr '\n' ' ')"
echo "TMP-LEFT $(ls -A "$XDG_DATA_HOME/strata/tmp" | grep -c '^build-')"
$S save built:1 > "$HOME/user.tar" || echo "FAILED save"
build --network host -t net:host "$HOME/ctx2"
build --network none -t net:none "$HOME/ctx2"
echo "NET-HOST $($S run --rm --network none net:host cat /got)"
echo "NET-NONE $($S run --rm --network none net:none cat /got)"
$S builder prune -a -f > /dev/null || echo "FAILED prune"
echo "CACHE-DIRS-LEFT $(ls -A "$XDG_DATA_HOME/strata" | grep -c '^build-mounts$')"
"#;
    let (stdout, context) = setup.run(script);
    assert!(!stdout.contains("FAILED"), "{context}");
    // The first build's cache step saw a new directory owned as asked;
    // the second (--no-cache) found what the first left in it.
    let evidence = |runs: &str| {
        format!("remote 0 7 1000:1000:750 {runs} bound x x 1000:1000:600 other read-only ")
    };
    assert_eq!(
        lines_with(&stdout, "FIRST"),
        [evidence("1").trim()],
        "{context}"
    );
    assert_eq!(
        lines_with(&stdout, "SECOND"),
        [evidence("2").trim()],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "TMP-LEFT"), ["0"], "{context}");
    assert_eq!(lines_with(&stdout, "NET-HOST"), ["remote"], "{context}");
    assert_eq!(
        lines_with(&stdout, "NET-NONE"),
        ["unreachable"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "CACHE-DIRS-LEFT"), ["0"], "{context}");
    let user_archive = home.join("user.tar");
    let saved = std::fs::read(&user_archive).unwrap();
    assert!(
        !saved.windows(6).any(|w| w == b"s3cret"),
        "the secret is in the saved image"
    );

    // Root's build of the same Dockerfile, in a store of its own (RUN
    // steps on `none` but the one that asks for the host's network).
    let root_store = tempfile::tempdir().unwrap();
    let strata = env!("CARGO_BIN_EXE_strata");
    let root = |args: &[&str]| {
        let out = Command::new(strata)
            .arg("--root")
            .arg(root_store.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "root's strata {args:?}: {out:?}");
    };
    let secret = format!("id=x,src={}", home.join("s/secret.txt").display());
    let root_archive = root_store.path().join("root.tar");
    root(&["import", setup.tar.to_str().unwrap(), "rl:1"]);
    let context_dir = ctx.to_str().unwrap();
    root(&[
        "build",
        "-q",
        "--network",
        "none",
        "--secret",
        &secret,
        "-t",
        "built:1",
        context_dir,
    ]);
    root(&["save", "-o", root_archive.to_str().unwrap(), "built:1"]);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(root_store.path().to_str().unwrap()),
        "root's build left a mount: {mounts}"
    );
    let user_layers = layer_listing(&user_archive, &tree.path().join("user"));
    let root_layers = layer_listing(&root_archive, &tree.path().join("root"));
    assert_eq!(user_layers, root_layers, "{context}");
    // The owners the tar and --chown gave are there (not only equal).
    for entry in [
        "-rw------- 123/456 2 x/d/odd",
        "-rw-r--r-- 1000/1000 2 x/d/u-file",
        "-rw------- 0/0 7 r/remote.txt",
        "-rw-r--r-- 1000/1000 6 c/add-chowned",
        "-rw-r--r-- 1000/1000 6 c/copy-chowned",
        "-rw-r--r-- 1000/1000 6 c/dir/f",
    ] {
        assert!(user_layers.contains(entry), "{entry}\n{user_layers}");
    }
    drop(server);
}

/// Issue 13: `--target`, `--build-arg`, `-f` of a file outside the
/// context and `--iidfile` as an ordinary user.
#[test]
fn an_ordinary_users_build_takes_target_build_args_file_and_iidfile() {
    rootless_or_skip!();
    let setup = Rootless::new();
    let home: PathBuf = setup.user.home.clone();
    user_files(
        &setup,
        &home,
        &[
            ("ctx/f.txt", "in the context\n"),
            (
                "elsewhere/Dockerfile.x",
                "FROM rl:1 AS one\nARG WHO=nobody\nCOPY f.txt /f.txt\nRUN echo \"$WHO\" > /who\nFROM one AS two\nRUN echo two > /two\n",
            ),
        ],
    );
    let script = r#"
$S build -q --network none --target one --build-arg WHO=alice -f "$HOME/elsewhere/Dockerfile.x" --iidfile "$HOME/iid" -t flags:1 "$HOME/ctx" > "$HOME/out" 2>&1 || { echo "FAILED build"; cat "$HOME/out"; }
echo "IID $([ "$(cat "$HOME/iid")" = "$($S inspect -f '{{.Id}}' flags:1)" ] && echo same)"
echo "FILES $($S run --rm --network none flags:1 sh -c 'cat /f.txt /who; ls /two 2>&1' | tr '\n' ' ')"
"#;
    let (stdout, context) = setup.run(script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(lines_with(&stdout, "IID"), ["same"], "{context}");
    let files = lines_with(&stdout, "FILES");
    assert!(
        files.len() == 1
            && files[0].starts_with("in the context alice ")
            && files[0].contains("No such file"),
        "{context}"
    );
}

/// Issue 13: `-o type=local|tar` and a Dockerfile from stdin (`build -f -`)
/// as an ordinary user: the exported files are the user's, with the
/// image's content, and nothing is left half-written.
#[test]
fn an_ordinary_users_build_exports_to_a_directory_and_a_tar() {
    rootless_or_skip!();
    let setup = Rootless::new();
    let home: PathBuf = setup.user.home.clone();
    user_files(&setup, &home, &[("ctx/f.txt", "exported\n")]);
    let script = r#"
D='FROM rl:1
COPY f.txt /out/f.txt
RUN echo ran > /out/ran && chmod 0640 /out/ran'
printf '%s\n' "$D" | $S build -q --network none -f - -o "type=local,dest=$HOME/local" "$HOME/ctx" > "$HOME/o1" 2>&1 || { echo "FAILED local"; cat "$HOME/o1"; }
echo "EXPORTED-LOCAL $(cat "$HOME/local/out/f.txt" "$HOME/local/out/ran" | tr '\n' ' ')"
echo "OWNER $(stat -c '%u %a' "$HOME/local/out/ran")"
echo "BUSYBOX $([ -x "$HOME/local/bin/busybox" ] && echo yes)"
printf '%s\n' "$D" | $S build -q --network none -f - -o "type=tar,dest=$HOME/out.tar" "$HOME/ctx" > "$HOME/o2" 2>&1 || { echo "FAILED tar"; cat "$HOME/o2"; }
echo "EXPORTED-TAR $(tar -xOf "$HOME/out.tar" out/f.txt out/ran | tr '\n' ' ')"
echo "MODE $(tar -tvf "$HOME/out.tar" out/ran | cut -c1-10)"
"#;
    let (stdout, context) = setup.run(script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(
        lines_with(&stdout, "EXPORTED-LOCAL"),
        ["exported ran"],
        "{context}"
    );
    assert_eq!(
        lines_with(&stdout, "OWNER"),
        [format!("{} 640", setup.user.uid)],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "BUSYBOX"), ["yes"], "{context}");
    assert_eq!(
        lines_with(&stdout, "EXPORTED-TAR"),
        ["exported ran"],
        "{context}"
    );
    assert_eq!(lines_with(&stdout, "MODE"), ["-rw-r-----"], "{context}");
}

/// Issue 13: Ctrl-C of an ordinary user's build stops it at once and
/// leaves no process, mount or image behind; a Dockerfile on stdin with
/// no context (`build -`) builds.
#[test]
fn an_ordinary_users_build_stops_on_ctrl_c_and_reads_stdin() {
    rootless_or_skip!();
    let setup = Rootless::new();
    let home: PathBuf = setup.user.home.clone();
    user_files(
        &setup,
        &home,
        &[
            ("ctx/f.txt", "x\n"),
            ("slow.Dockerfile", "FROM rl:1\nRUN sleep 30\n"),
        ],
    );
    let script = r#"
# As a terminal's Ctrl-C does: SIGINT to the build's process group (its
# own, with SIGINT not ignored as a shell without job control would).
setsid env --default-signal=INT $S build -q --network none -f "$HOME/slow.Dockerfile" -t slow:1 "$HOME/ctx" > "$HOME/o3" 2>&1 &
pid=$!
i=0; while [ $i -lt 100 ] && ! pgrep -u "$(id -u)" -x sleep >/dev/null; do i=$((i+1)); sleep 0.1; done
echo "STARTED $(pgrep -u "$(id -u)" -c -x sleep)"
t0=$(date +%s%N)
/bin/kill -INT -- -$pid
wait $pid; echo "RC $?"
echo "WAITED-MS $(( ($(date +%s%N) - t0) / 1000000 ))"
i=0; while [ $i -lt 30 ] && pgrep -u "$(id -u)" -x sleep >/dev/null; do i=$((i+1)); sleep 0.1; done
echo "LEFT $(pgrep -u "$(id -u)" -c -x sleep)"
echo "MOUNTS $(grep -c " $HOME" /proc/mounts)"
$S fsck >/dev/null 2>&1 && echo "FSCK clean"
echo "IMAGES $($S images -q slow:1 | wc -l)"
printf 'FROM rl:1\nRUN echo from-stdin > /x\n' | $S build -q --network none -t stdin:1 - > "$HOME/o4" 2>&1 || { echo "FAILED stdin"; cat "$HOME/o4"; }
echo "STDIN $($S run --rm --network none stdin:1 cat /x)"
"#;
    let (stdout, context) = setup.run(script);
    assert!(!stdout.contains("FAILED"), "{context}");
    assert_eq!(lines_with(&stdout, "STARTED"), ["1"], "{context}");
    let rc = lines_with(&stdout, "RC");
    assert!(rc.len() == 1 && rc[0] != "0", "{context}");
    let waited: u64 = lines_with(&stdout, "WAITED-MS")[0].parse().unwrap();
    assert!(
        waited < 10_000,
        "the build went on for {waited} ms\n{context}"
    );
    assert_eq!(lines_with(&stdout, "LEFT"), ["0"], "{context}");
    assert_eq!(lines_with(&stdout, "MOUNTS"), ["0"], "{context}");
    assert_eq!(lines_with(&stdout, "FSCK"), ["clean"], "{context}");
    assert_eq!(lines_with(&stdout, "IMAGES"), ["0"], "{context}");
    assert_eq!(lines_with(&stdout, "STDIN"), ["from-stdin"], "{context}");
}
