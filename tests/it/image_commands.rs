//! The offline image commands end to end: import, images, tag, rmi,
//! inspect, history, save and load round trips, prune, df, dedup.

use crate::common::*;

fn import_demo(env: &Env, name: &str) -> String {
    let tar = busybox_rootfs_tar(env, "demo");
    let out = env.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-c",
        "ENV A=1",
        "-m",
        "first",
        tar.to_str().unwrap(),
        name,
    ]);
    let id = out.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import printed {out:?}"
    );
    id
}

#[test]
fn import_then_list_inspect_history() {
    let env = Env::new();
    let id = import_demo(&env, "demo:1");
    let listing = env.ok(&["images"]);
    let mut lines = listing.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("demo ") && row.contains(&id[7..19]),
        "row {row:?}"
    );
    assert_eq!(env.ok(&["images", "-q"]).trim(), &id[7..19]);
    assert_eq!(
        env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .trim(),
        "demo:1"
    );
    // Inspect: Docker's shape, -f templates, the diff_id of the tar as given.
    let cmd = env.ok(&[
        "inspect",
        "-f",
        "{{json .Config.Cmd}} {{.Config.Env}} {{index .RepoTags 0}}",
        "demo:1",
    ]);
    assert_eq!(cmd.trim(), r#"["/bin/sh"] [A=1] demo:1"#);
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "demo:1"])).unwrap();
    assert_eq!(json[0]["Id"], id);
    let tar = std::fs::read(env.path("demo.tar")).unwrap();
    assert_eq!(
        json[0]["RootFS"]["Layers"][0],
        format!("sha256:{}", sha256_hex(&tar))
    );
    let history = env.ok(&["history", "demo:1"]);
    assert!(
        history.starts_with("IMAGE ") && history.contains("first"),
        "{history}"
    );
    // Lookup by short ID, full ID and sha256: prefix.
    for name in [&id[7..19], &id[7..], &id[..15]] {
        assert_eq!(env.ok(&["inspect", "-f", "{{.Id}}", name]).trim(), id);
    }
    assert!(env.fails(&["inspect", "nosuch"]).contains("No such object"));
}

#[test]
fn tag_and_rmi_follow_docker() {
    let env = Env::new();
    let id = import_demo(&env, "demo:1");
    env.ok(&["tag", "demo:1", "localhost:5000/team/demo:v2"]);
    env.ok(&["tag", &id[7..19], "other"]);
    let names = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for n in ["demo:1", "localhost:5000/team/demo:v2", "other:latest"] {
        assert!(names.contains(n), "{names}");
    }
    // Referenced in several repositories: removing by ID needs -f.
    assert!(env.fails(&["rmi", &id[7..19]]).contains("must be forced"));
    assert_eq!(env.ok(&["rmi", "other"]).trim(), "Untagged: other:latest");
    env.ok(&["rmi", "localhost:5000/team/demo:v2"]);
    let out = env.ok(&["rmi", "demo:1"]);
    assert!(
        out.contains("Untagged: demo:1") && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert_eq!(env.ok(&["images", "-q"]), "");
    assert!(env.fails(&["rmi", "demo:1"]).contains("No such image"));
    env.fsck_clean();
    // Everything the image held is gone from disk.
    let files: usize = std::fs::read_dir(env.root.join("files"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum();
    assert_eq!(files, 0);
    // Bad references are refused with one line.
    import_demo(&env, "demo:1");
    assert!(env
        .fails(&["tag", "demo:1", "UPPER:case"])
        .contains("invalid reference format"));
}

#[test]
fn save_load_round_trip_all_formats() {
    let env = Env::new();
    let id = import_demo(&env, "demo:1");
    let diff_id = env.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "demo:1"]);
    for (format, path) in [
        ("docker-archive", "a.tar"),
        ("oci-archive", "b.tar"),
        ("oci-dir", "c"),
    ] {
        let out = env.path(path);
        env.ok(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            "demo:1",
        ]);
        let other = Env::new();
        let loaded = other.ok(&["load", "-i", out.to_str().unwrap()]);
        assert_eq!(loaded.trim(), "Loaded image: demo:1", "{format}");
        assert_eq!(
            other.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "demo:1"]),
            diff_id,
            "{format}"
        );
        assert_eq!(other.ok(&["inspect", "-f", "{{.Id}}", "demo:1"]).trim(), id);
        other.fsck_clean();
    }
    // Compressed archives and stdin.
    let archive = std::fs::read(env.path("a.tar")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &archive).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(archive.as_slice(), 3).unwrap();
    for data in [gz, zst] {
        let other = Env::new();
        let out = other.run_with_input(&["load"], &data);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(other.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    }
    // Loading the same archive twice changes nothing.
    let before = env.snapshot();
    env.ok(&["load", "-i", env.path("a.tar").to_str().unwrap()]);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn layers_rebuild_byte_for_byte() {
    // A layer with PAX records, GNU long names, hardlinks, devices, fifos,
    // xattrs and odd padding must come back with the same digest.
    let env = Env::new();
    let long = "x".repeat(150);
    let mut t = RawTar::default();
    t.add(RawEntry::dir(b"./"));
    t.add(RawEntry::dir(b"./etc/"));
    t.add(RawEntry::file(b"./etc/hello", b"hello world\n"));
    t.pax(&[
        ("path", format!("etc/{long}").as_bytes()),
        ("mtime", b"1700000000.123456789"),
        ("SCHILY.xattr.user.k", b"v\x00bin"),
    ]);
    t.add(RawEntry::file(b"./etc/placeholder", b"long named\n"));
    t.add(RawEntry::link(b"./etc/hard", b'1', b"./etc/hello"));
    t.add(RawEntry::link(b"./etc/soft", b'2', b"hello"));
    t.add(RawEntry {
        name: b"./dev-null",
        kind: b'3',
        body: b"",
        link: b"",
        mode: 0o666,
        size_override: None,
    });
    t.add(RawEntry {
        name: b"./fifo",
        kind: b'6',
        body: b"",
        link: b"",
        mode: 0o644,
        size_override: None,
    });
    let layer = t.finish();
    std::fs::write(env.path("odd.tar"), &layer).unwrap();
    env.ok(&["import", env.path("odd.tar").to_str().unwrap(), "odd"]);
    let expected = format!("sha256:{}\n", sha256_hex(&layer));
    assert_eq!(
        env.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "odd"]),
        expected
    );
    env.ok(&[
        "save",
        "-o",
        env.path("odd-save.tar").to_str().unwrap(),
        "odd",
    ]);
    let listing = sh(&format!("tar -tf {}", env.path("odd-save.tar").display()));
    let member = format!("blobs/sha256/{}", sha256_hex(&layer));
    assert!(listing.lines().any(|l| l == member), "{listing}");
    let saved = sh(&format!(
        "tar -xOf {} {member} | sha256sum",
        env.path("odd-save.tar").display()
    ));
    assert!(saved.starts_with(&sha256_hex(&layer)));
}

#[test]
fn dedup_across_layers_and_images() {
    let env = Env::new();
    let tree = env.path("tree");
    make_tree(&tree, 200, 7, 20_000);
    tar_dir(&tree, &env.path("a.tar"));
    sh(&format!(
        "tar -C {} --mtime=@0 -cf {} .",
        tree.display(),
        env.path("b.tar").display()
    ));
    env.ok(&["import", env.path("a.tar").to_str().unwrap(), "a"]);
    let after_a: u64 = stored_bytes(&env);
    env.ok(&["import", env.path("b.tar").to_str().unwrap(), "b"]);
    assert_eq!(
        stored_bytes(&env),
        after_a,
        "identical contents must be stored once"
    );
    let df = env.ok(&["system", "df"]);
    assert!(
        df.contains("Deduplication:") && df.contains("saved"),
        "{df}"
    );
    env.fsck_clean();
}

fn stored_bytes(env: &Env) -> u64 {
    let mut total = 0;
    for d in std::fs::read_dir(env.root.join("files")).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            total += f.metadata().unwrap().len();
        }
    }
    total
}

#[test]
fn prune_removes_dangling_only() {
    let env = Env::new();
    let first = import_demo(&env, "demo:1");
    let tar = env.path("demo.tar");
    // Re-importing under the same name leaves the old image dangling.
    let second = env
        .ok(&["import", "-m", "second", tar.to_str().unwrap(), "demo:1"])
        .trim()
        .to_string();
    assert_ne!(first, second);
    let dangling = env.ok(&["images", "--filter", "dangling=true", "-q", "--no-trunc"]);
    assert_eq!(dangling.trim(), first);
    let out = env.ok(&["image", "prune", "-f"]);
    assert!(
        out.contains(&format!("deleted: {first}")) && out.contains("Total reclaimed space"),
        "{out}"
    );
    assert_eq!(env.ok(&["images", "-q", "--no-trunc"]).trim(), second);
    env.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(env.ok(&["images", "-q"]), "");
    env.fsck_clean();
}

#[test]
fn images_filters() {
    let env = Env::new();
    import_demo(&env, "alpha:1");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let tar = env.path("demo.tar");
    env.ok(&[
        "import",
        "-c",
        "LABEL tier=web",
        tar.to_str().unwrap(),
        "beta:2",
    ]);
    let f = |filter: &str| {
        env.ok(&["images", "--filter", filter, "--format", "{{.Repository}}"])
            .trim()
            .to_string()
    };
    assert_eq!(f("reference=al*"), "alpha");
    assert_eq!(f("label=tier=web"), "beta");
    assert_eq!(f("since=alpha:1"), "beta");
    assert_eq!(f("before=beta:2"), "alpha");
    assert!(env
        .fails(&["images", "--filter", "bogus=1"])
        .contains("invalid filter"));
    let json = env.ok(&["images", "--format", "json"]);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["ID"].as_str().unwrap().len() == 12);
    }
}

#[test]
fn gnu_long_names_and_links_round_trip() {
    let env = Env::new();
    let tree = env.path("gnu");
    let long_dir = tree.join("a".repeat(120));
    std::fs::create_dir_all(&long_dir).unwrap();
    let long_file = long_dir.join(format!("{}.txt", "b".repeat(130)));
    std::fs::write(&long_file, "long\n").unwrap();
    std::os::unix::fs::symlink(
        format!("{}/{}.txt", "a".repeat(120), "b".repeat(130)),
        tree.join("long-link"),
    )
    .unwrap();
    std::fs::hard_link(&long_file, tree.join("hard")).unwrap();
    sh(&format!(
        "tar --format=gnu -C {} -cf {} .",
        tree.display(),
        env.path("gnu.tar").display()
    ));
    let data = std::fs::read(env.path("gnu.tar")).unwrap();
    assert!(
        data.windows(13).any(|w| w == b"././@LongLink"),
        "GNU tar wrote no long-name records"
    );
    env.ok(&["import", env.path("gnu.tar").to_str().unwrap(), "gnu:1"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "gnu:1"])
            .trim(),
        format!("sha256:{}", sha256_hex(&data))
    );
    env.ok(&[
        "save",
        "-o",
        env.path("gnu-save.tar").to_str().unwrap(),
        "gnu:1",
    ]);
    let other = Env::new();
    other.ok(&["load", "-i", env.path("gnu-save.tar").to_str().unwrap()]);
    other.fsck_clean();
}

/// Output to a closed pipe (`strata images | grep -m1 x`) ends a command
/// as it ends Docker's client (`docker images | head -1` is killed by
/// SIGPIPE when its output outlives the reader): the signal, nothing on
/// stderr. strata panicked ("failed printing to stdout").
#[test]
fn closed_stdout_ends_image_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    import_demo(&env, "demo:1");
    for args in [
        &["images"][..],
        &["images", "-q"],
        &["image", "ls", "--format", "{{json .}}"],
        &["inspect", "demo:1"],
        &["history", "demo:1"],
        &["save", "demo:1"],
        &["system", "df"],
        &["tag", "demo:1", "demo:2"],
        &["--version"],
    ] {
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = env
            .cmd(args)
            .stdout(std::process::Stdio::from(write))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if args[0] == "tag" {
            // Prints nothing: no reason to stop.
            assert!(out.status.success(), "{stderr}");
            continue;
        }
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {stderr}",
            out.status
        );
        assert_eq!(stderr, "", "{args:?}");
    }
    env.fsck_clean();
}

/// A zero-filled file expands a thousandfold under gzip but writes
/// nothing: its blocks are holes in the store. The bomb check weighs what
/// is really written, so the layer imports (it was refused past 128 MiB
/// as a compression bomb), costs no disk, and reads back exactly.
#[test]
fn a_zero_filled_file_is_not_a_bomb() {
    use std::io::Read;
    let env = Env::new();
    let size: u64 = 200 << 20;
    let layer = crate::bad_input::gzip_one_file(size, 0);
    assert!(layer.len() < 1 << 20, "{} bytes compressed", layer.len());
    let path = env.path("zeros.tar.gz");
    std::fs::write(&path, &layer).unwrap();
    env.ok(&["import", path.to_str().unwrap(), "zeros:1"]);
    let zeros = vec![0u8; size as usize];
    let digest = sha256_hex(&zeros);
    let file = env.root.join("files").join(&digest[..2]).join(&digest);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), size);
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "{} blocks allocated",
        meta.blocks()
    );
    assert!(std::fs::read(&file).unwrap() == zeros);
    env.fsck_clean();
    // The rebuilt tar is the original one.
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(layer.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        env.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "zeros:1"]),
        format!("sha256:{}\n", sha256_hex(&tar))
    );
}

/// `save -o` replaces a regular file atomically, but writes a FIFO, a
/// device (`-o /dev/null`) or a symlink's target in place, as Docker
/// does: renaming over them turned `/dev/null` into a regular file.
#[test]
fn save_writes_into_fifos_and_through_symlinks() {
    use std::os::unix::fs::FileTypeExt;
    let env = Env::new();
    import_demo(&env, "demo:1");
    let fifo = env.path("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).unwrap())
    };
    env.ok(&["save", "-o", fifo.to_str().unwrap(), "demo:1"]);
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "save replaced the FIFO"
    );
    // Joined after the check: a replaced FIFO never gets a writer.
    let through_fifo = reader.join().unwrap();
    let file = env.path("plain.tar");
    env.ok(&["save", "-o", file.to_str().unwrap(), "demo:1"]);
    assert_eq!(through_fifo, std::fs::read(&file).unwrap());
    // A symlink stays a symlink; its target gets the archive (shorter
    // than what was there before: the file is truncated).
    let target = env.path("target.tar");
    std::fs::write(&target, vec![b'x'; through_fifo.len() + 4096]).unwrap();
    let link = env.path("link.tar");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    env.ok(&["save", "-o", link.to_str().unwrap(), "demo:1"]);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), through_fifo);
}

/// Bytes a strata command's process dirtied (written to storage or about
/// to be), from `/proc/PID/io` of a shell that ran it: a reaped child's
/// counts go to its parent.
fn bytes_written_by(env: &Env, args: &[&str]) -> u64 {
    let mut command = format!(
        "{} --root {}",
        env!("CARGO_BIN_EXE_strata"),
        env.root.display()
    );
    for a in args {
        command.push(' ');
        command.push_str(a);
    }
    let out = sh(&format!(
        "{command} >/dev/null && awk '/^write_bytes/ {{print $2}}' /proc/$$/io"
    ));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("write_bytes of {command}: {out}"))
}

/// A rebuilt image whose layer holds mostly files the store has (here a
/// 3 MiB one, as a distribution's libraries are) writes only the new ones:
/// files up to 8 MiB are hashed before anything is written. (Files over
/// 1 MiB used to be written while they streamed in and removed afterwards
/// if known.)
#[test]
fn a_rebuilt_layer_writes_only_its_new_files() {
    let env = Env::new();
    // Incompressible, so the ratio of written to read bytes is no issue.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let known: Vec<u8> = (0..3 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut first = RawTar::default();
    first.add(RawEntry::dir(b"lib/"));
    first.add(RawEntry::file(b"lib/libbig.so", &known));
    first.add(RawEntry::file(b"lib/version", b"1\n"));
    std::fs::write(env.path("first.tar"), first.finish()).unwrap();
    let mut second = RawTar::default();
    second.add(RawEntry::dir(b"lib/"));
    second.add(RawEntry::file(b"lib/libbig.so", &known));
    second.add(RawEntry::file(b"lib/version", b"2\n"));
    std::fs::write(env.path("second.tar"), second.finish()).unwrap();
    let first_path = env.path("first.tar");
    let second_path = env.path("second.tar");
    let wrote_first = bytes_written_by(&env, &["import", first_path.to_str().unwrap(), "app:1"]);
    assert!(
        wrote_first >= 3 << 20,
        "the first import wrote {wrote_first} bytes"
    );
    let wrote_second = bytes_written_by(&env, &["import", second_path.to_str().unwrap(), "app:2"]);
    assert!(
        wrote_second < 1 << 20,
        "the rebuilt layer wrote {wrote_second} bytes for one new 2-byte file"
    );
    env.fsck_clean();
    // The known file serves the second image too.
    let back = env.path("back.tar");
    env.ok(&["save", "-o", back.to_str().unwrap(), "app:2"]);
    assert!(std::fs::metadata(&back).unwrap().len() > 3 << 20);
}
