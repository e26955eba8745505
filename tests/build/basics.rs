//! What a build makes: the image's files and config, Docker's history,
//! RUN output shown, heredocs, ONBUILD, ADD, exports, failures and
//! interrupts that leave nothing behind.

use crate::{assert_clean, assert_ok, build, context, env_or_skip, inspect};

#[test]
fn run_copy_env_workdir_cmd_make_the_image_docker_would() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nARG V=1\nENV GREETING=hi\nCOPY a.txt /data/\nCOPY sub /data/sub\n\
         RUN echo \"$GREETING $V\" > /data/out && echo ran-the-step\n\
         WORKDIR /app\nEXPOSE 80 53/udp\nLABEL a=b \"c d\"=e\nUSER nobody\nSTOPSIGNAL SIGQUIT\nVOLUME /vol\n\
         ENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"cat /data/out\"]\n",
        &[("a.txt", "hello\n"), ("sub/b.txt", "b\n"), ("sub/deep/c.txt", "c\n")],
    );
    let stderr = assert_ok(&build(&env, &dir, &["-t", "app"]));
    assert!(
        stderr.contains("ran-the-step"),
        "RUN output not shown: {stderr}"
    );
    assert!(stderr.contains("#2 [1/14] FROM bb"), "{stderr}");
    assert!(stderr.contains("writing image sha256:"), "{stderr}");
    // The files, read by a container of the new image.
    let out = env.ok(&["run", "--rm", "--entrypoint", "", "-u", "0", "app", "sh", "-c",
        "cat /data/a.txt /data/sub/b.txt /data/sub/deep/c.txt /data/out; pwd; stat -c '%U %a' /data/a.txt"]);
    assert_eq!(out, "hello\nb\nc\nhi 1\n/app\nroot 644\n");
    assert_eq!(
        inspect(&env, "app", "{{json .Config.Env}}"),
        "[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\"GREETING=hi\"]"
    );
    assert_eq!(
        inspect(&env, "app", "{{json .Config.Cmd}}"),
        "[\"cat /data/out\"]"
    );
    assert_eq!(
        inspect(&env, "app", "{{json .Config.Entrypoint}}"),
        "[\"/bin/sh\",\"-c\"]"
    );
    assert_eq!(inspect(&env, "app", "{{.Config.WorkingDir}}"), "/app");
    assert_eq!(inspect(&env, "app", "{{.Config.User}}"), "nobody");
    assert_eq!(inspect(&env, "app", "{{.Config.StopSignal}}"), "SIGQUIT");
    assert_eq!(
        inspect(&env, "app", "{{json .Config.ExposedPorts}}"),
        "{\"53/udp\":{},\"80/tcp\":{}}"
    );
    assert_eq!(
        inspect(&env, "app", "{{json .Config.Labels}}"),
        "{\"a\":\"b\",\"c d\":\"e\"}"
    );
    assert_eq!(
        inspect(&env, "app", "{{json .Config.Volumes}}"),
        "{\"/vol\":{}}"
    );
    // History: one entry per instruction after FROM (plus the base's);
    // layers only for COPY, COPY, RUN and the WORKDIR that made /app.
    let history = env.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Size}}",
        "app",
    ]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 13 + 1, "{history}");
    assert!(
        lines[0].starts_with("/bin/sh -c #(nop)  CMD [\"cat /data/out\"]"),
        "{history}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("|1 V=1 /bin/sh -c echo \"$GREETING $V\" > /data/out")),
        "{history}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("/bin/sh -c #(nop) WORKDIR /app")),
        "{history}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("/bin/sh -c #(nop) COPY file:")),
        "{history}"
    );
    let layers = inspect(&env, "app", "{{json .RootFS.Layers}}");
    assert_eq!(
        layers.matches("sha256:").count(),
        5,
        "base + COPY + COPY + RUN + WORKDIR: {layers}"
    );
    assert_clean(&env);
}

#[test]
fn a_failing_run_shows_its_output_tags_nothing_and_leaves_nothing() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nRUN echo before-fail && exit 3\nRUN echo never\n",
        &[],
    );
    let out = build(&env, &dir, &["-t", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("before-fail"), "{stderr}");
    assert!(
        stderr.contains("did not complete successfully: exit code: 3"),
        "{stderr}"
    );
    assert!(!stderr.contains("never"), "{stderr}");
    assert!(env.run(&["inspect", "broken"]).status.code() != Some(0));
    assert_clean(&env);
}

#[test]
fn an_interrupted_build_leaves_no_container_mount_or_tag() {
    let env = env_or_skip!();
    let dir = context(&env, "FROM bb\nRUN echo started && sleep 60\n", &[]);
    let mut child = env
        .cmd(&[
            "build",
            "--progress=plain",
            "-t",
            "never",
            dir.to_str().expect("utf8"),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the RUN's container to run.
    assert!(crate::harness::eventually(20, || env
        .ok(&["ps", "-q"])
        .trim()
        .len()
        >= 12));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    assert!(env.run(&["inspect", "never"]).status.code() != Some(0));
    assert_clean(&env);
}

#[test]
fn heredocs_run_and_copy() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nARG NAME=world\nRUN <<EOF\necho one > /one\necho two >> /one\nEOF\n\
         COPY <<A /greeting\nhello $NAME\nA\nCOPY <<-'B' /raw\n\tliteral $NAME\n\tB\n\
         RUN cat <<EOF > /three\nthree $NAME\nEOF\n",
        &[],
    );
    assert_ok(&build(&env, &dir, &["-t", "hd"]));
    let out = env.ok(&[
        "run",
        "--rm",
        "hd",
        "cat",
        "/one",
        "/greeting",
        "/raw",
        "/three",
    ]);
    assert_eq!(out, "one\ntwo\nhello world\nliteral $NAME\nthree world\n");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let env = env_or_skip!();
    let base = context(
        &env,
        "FROM bb\nONBUILD RUN echo triggered > /trigger\n",
        &[],
    );
    assert_ok(&build(&env, &base, &["-t", "base-ob"]));
    assert_eq!(
        inspect(&env, "base-ob", "{{json .Config.OnBuild}}"),
        "[\"RUN echo triggered > /trigger\"]"
    );
    let child = context(&env, "FROM base-ob\nCMD [\"cat\", \"/trigger\"]\n", &[]);
    assert_ok(&build(&env, &child, &["-t", "child-ob"]));
    assert_eq!(env.ok(&["run", "--rm", "child-ob"]), "triggered\n");
    assert_eq!(
        inspect(&env, "child-ob", "{{json .Config.OnBuild}}"),
        "null"
    );
}

#[test]
fn add_unpacks_local_archives_and_copy_does_not() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nADD files.tar.gz /unpacked/\nCOPY files.tar.gz /copied/\n",
        &[],
    );
    let src = env.root().join("archive-src");
    std::fs::create_dir_all(src.join("d")).expect("mkdir");
    std::fs::write(src.join("d/x.txt"), "from the archive\n").expect("write");
    let status = std::process::Command::new("tar")
        .args([
            "-czf",
            dir.join("files.tar.gz").to_str().expect("utf8"),
            "-C",
            src.to_str().expect("utf8"),
            "d",
        ])
        .status()
        .expect("tar");
    assert!(status.success());
    assert_ok(&build(&env, &dir, &["-t", "added"]));
    let out = env.ok(&[
        "run",
        "--rm",
        "added",
        "sh",
        "-c",
        "cat /unpacked/d/x.txt; ls /copied",
    ]);
    assert_eq!(out, "from the archive\nfiles.tar.gz\n");
}

#[test]
fn outputs_local_and_tar_export_the_files_instead_of_an_image() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM scratch\nCOPY a.txt /a.txt\nCOPY sub/ /sub/\n",
        &[("a.txt", "A\n"), ("sub/b", "B\n")],
    );
    let out_dir = env.root().join("exported");
    let spec = format!("type=local,dest={}", out_dir.display());
    assert_ok(&build(&env, &dir, &["-o", &spec]));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("a.txt")).expect("a"),
        "A\n"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("sub/b")).expect("b"),
        "B\n"
    );
    let tar = env.root().join("exported.tar");
    let spec = format!("type=tar,dest={}", tar.display());
    assert_ok(&build(&env, &dir, &["-o", &spec]));
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("a.txt") && listing.contains("sub/b"),
        "{listing}"
    );
    assert_eq!(
        env.ok(&["images", "-q"]).lines().count(),
        1,
        "only bb: no image was made"
    );
}

#[test]
fn dockerignore_leaves_paths_out_with_exceptions() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nCOPY . /ctx/\n",
        &[
            (".dockerignore", "*.log\n**/secret*\nbuild\n!build/keep\n"),
            ("a.log", "x"),
            ("keep.txt", "k"),
            ("deep/er/secret.key", "s"),
            ("build/out", "o"),
            ("build/keep", "kept"),
        ],
    );
    assert_ok(&build(&env, &dir, &["-t", "ign"]));
    let out = env.ok(&["run", "--rm", "ign", "find", "/ctx", "-type", "f"]);
    let mut files: Vec<&str> = out.lines().collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/build/keep",
            "/ctx/keep.txt"
        ]
    );
}

#[test]
fn run_mounts_cache_persists_and_secrets_stay_out_of_layers() {
    let env = env_or_skip!();
    let secret = env.root().join("token");
    std::fs::write(&secret, "s3cr3t\n").expect("secret");
    let dir = context(
        &env,
        "FROM bb\nRUN --mount=type=cache,target=/cache echo x >> /cache/runs && wc -l < /cache/runs > /count\n\
         RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-length-only && wc -c < /run/secrets/tok > /len && rm /seen-length-only\n\
         RUN --mount=type=bind,source=a.txt,target=/a.txt cp /a.txt /copied\n",
        &[("a.txt", "bound\n")],
    );
    let s = format!("id=tok,src={}", secret.display());
    assert_ok(&build(&env, &dir, &["-t", "m1", "--secret", &s]));
    assert_ok(&build(
        &env,
        &dir,
        &["-t", "m2", "--secret", &s, "--no-cache"],
    ));
    assert_eq!(env.ok(&["run", "--rm", "m1", "cat", "/count"]).trim(), "1");
    assert_eq!(
        env.ok(&["run", "--rm", "m2", "cat", "/count"]).trim(),
        "2",
        "the cache mount persisted"
    );
    assert_eq!(env.ok(&["run", "--rm", "m2", "cat", "/len"]).trim(), "7");
    assert_eq!(env.ok(&["run", "--rm", "m2", "cat", "/copied"]), "bound\n");
    let listing = env.ok(&[
        "run",
        "--rm",
        "m2",
        "sh",
        "-c",
        "ls /run/secrets /cache 2>&1; ls / ",
    ]);
    assert!(!listing.contains("tok"), "{listing}");
    // No layer holds the secret.
    let save = env.root().join("m2.tar");
    env.ok(&["save", "-o", save.to_str().expect("utf8"), "m2"]);
    let bytes = std::fs::read(&save).expect("save");
    assert!(
        !bytes.windows(6).any(|w| w == b"s3cr3t"),
        "the secret is in a layer"
    );
    assert_clean(&env);
}

/// Docker's reference specifies `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`
/// and `${v/p/r}` (BuildKit; Docker 20.10's builder lacks them).
#[test]
fn expansion_modifiers_docker_20_10_lacks() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "FROM bb\nENV P=/usr/local/bin/tool.tar.gz\n\
         ENV BASE=${P##*/} DIR=${P%/*} EXT=${P#*.} STEM=${P%%.*} SWAP=${P/tool/app} ALL=${P//o/0}\n\
         RUN echo \"$BASE|$DIR|$EXT|$STEM|$SWAP|$ALL\" > /out\n",
        &[],
    );
    assert_ok(&build(&env, &dir, &["-t", "mods"]));
    assert_eq!(
        env.ok(&["run", "--rm", "mods", "cat", "/out"]),
        "tool.tar.gz|/usr/local/bin|tar.gz|/usr/local/bin/tool|/usr/local/bin/app.tar.gz|/usr/l0cal/bin/t00l.tar.gz\n"
    );
}

/// `--check`, a Dockerfile on stdin (`-` and `-f -`), `--iidfile`,
/// `--label`, `-q`.
#[test]
fn check_stdin_iidfile_label_and_quiet() {
    let env = env_or_skip!();
    let dir = context(
        &env,
        "# syntax=docker/dockerfile:1\nFROM bb\nARG USED\nRUN echo $USED > /u\n",
        &[],
    );
    let d = dir.to_string_lossy().into_owned();
    let out = env.run(&[
        "build",
        "--check",
        "--build-arg",
        "USED=1",
        "--build-arg",
        "UNUSED=2",
        &d,
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("UNUSED") && stderr.contains("syntax"),
        "{stderr}"
    );
    assert_eq!(
        env.ok(&["images", "-q"]).lines().count(),
        1,
        "--check built nothing"
    );
    let bad = context(&env, "FROM bb\nCOPY\n", &[]);
    let out = env.run(&["build", "--check", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    // A Dockerfile on stdin, no context; then with a context.
    let feed = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = env
            .cmd(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
    };
    let iid = env.root().join("iid");
    let out = feed(
        &[
            "build",
            "-q",
            "-t",
            "stdin-img",
            "--iidfile",
            iid.to_str().expect("utf8"),
            "--label",
            "k=v",
            "-",
        ],
        "FROM bb\nRUN echo from-stdin > /s\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(printed.starts_with("sha256:"), "{printed}");
    assert_eq!(std::fs::read_to_string(&iid).expect("iidfile"), printed);
    assert_eq!(
        inspect(&env, "stdin-img", "{{json .Config.Labels}}"),
        "{\"k\":\"v\"}"
    );
    let ctx = context(&env, "unused", &[("f.txt", "from the context\n")]);
    let out = feed(
        &[
            "build",
            "-q",
            "-t",
            "stdin-f",
            "-f",
            "-",
            ctx.to_str().expect("utf8"),
        ],
        "FROM bb\nCOPY f.txt /f.txt\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.ok(&["run", "--rm", "stdin-f", "cat", "/f.txt"]),
        "from the context\n"
    );
}

/// A one-file HTTP server on loopback: serves `body` to every request,
/// until dropped.
struct Server {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Server {
    fn start(body: &'static [u8]) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(head.as_bytes());
                        let _ = s.write_all(body);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        Server { port, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn add_downloads_urls_and_checks_the_checksum() {
    let env = env_or_skip!();
    let server = Server::start(b"downloaded content\n");
    let url = format!("http://127.0.0.1:{}/path/file.txt", server.port);
    let sum = strata::digest::Digest::of(b"downloaded content\n").to_string();
    let dir = context(
        &env,
        &format!("FROM bb\nADD --checksum={sum} {url} /dl/\n"),
        &[],
    );
    assert_ok(&build(&env, &dir, &["-t", "dl"]));
    let out = env.ok(&["run", "--rm", "dl", "stat", "-c", "%a %Y", "/dl/file.txt"]);
    assert_eq!(
        out.trim(),
        "600 1796119200",
        "mode 0600, mtime from Last-Modified"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "dl", "cat", "/dl/file.txt"]),
        "downloaded content\n"
    );
    let wrong = format!("sha256:{}", "0".repeat(64));
    let bad = context(
        &env,
        &format!("FROM bb\nADD --checksum={wrong} {url} /dl/\n"),
        &[],
    );
    let out = env.run(&["build", "-q", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Dockerfile:2:") && stderr.contains("digest mismatch"),
        "{stderr}"
    );
}
