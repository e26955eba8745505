//! Issue 16: directories renamed in a container (a redirect in its upper
//! directory) keep their contents through `commit`, `diff` and `cp`. The
//! oracle is `export`, which reads the container's merged view: a
//! container created from the committed image must export the same tree.

use std::collections::BTreeMap;
use std::io::Read;

use crate::env_or_skip;
use crate::harness::Env;

/// Builds `/usr/share/doc` (37 packages of 3 files, 111 entries and a
/// README), a nested tree, hard links (one from outside `doc`) and a
/// symlink in a container of `bb`, and commits it as `bb:doc`.
fn doc_image(env: &Env) {
    let script = "set -e
        i=1
        while test $i -le 37; do
            mkdir -p /usr/share/doc/pkg$i
            for f in copyright changelog README; do echo \"pkg$i $f\" > /usr/share/doc/pkg$i/$f; done
            i=$((i+1))
        done
        echo readme > /usr/share/doc/README
        mkdir -p /usr/share/doc/a/b/c /usr/share/other/x
        echo deep > /usr/share/doc/a/b/c/deep
        echo other > /usr/share/other/x/f
        ln /usr/share/doc/pkg1/copyright /usr/share/doc/pkg1/hardlink
        ln /usr/share/doc/pkg2/README /usr/share/outside-link
        ln -s ../pkg2/README /usr/share/doc/pkg1/symlink
        chmod 0750 /usr/share/doc/pkg3";
    env.ok(&["run", "--name", "builder", "bb", "sh", "-c", script]);
    env.ok(&["commit", "builder", "bb:doc"]);
    env.ok(&["rm", "builder"]);
}

/// One entry of an exported tree, without times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    content: Vec<u8>,
    link: Option<String>,
}

/// The container's tree as `export` writes it (hard links resolved to
/// their target's content, marked `h`).
fn exported(env: &Env, container: &str) -> BTreeMap<String, Item> {
    let path = env.root().join(format!("export-{container}.tar"));
    env.ok(&["export", "-o", path.to_str().expect("utf8"), container]);
    let mut archive = tar::Archive::new(std::fs::File::open(&path).expect("open export"));
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let h = entry.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Regular => 'f',
            other => format!("{other:?}").chars().next().unwrap_or('?'),
        };
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read");
        let link = entry
            .link_name()
            .expect("link")
            .map(|l| l.to_string_lossy().trim_start_matches("./").to_string());
        out.insert(
            name,
            Item {
                kind,
                mode: h.mode().expect("mode"),
                uid: h.uid().expect("uid"),
                gid: h.gid().expect("gid"),
                content,
                link,
            },
        );
    }
    std::fs::remove_file(&path).expect("rm export");
    // Hard links: the same file, whichever name comes first.
    let targets: BTreeMap<String, Vec<u8>> = out
        .iter()
        .filter(|(_, i)| i.kind == 'f')
        .map(|(k, i)| (k.clone(), i.content.clone()))
        .collect();
    for item in out.values_mut() {
        if item.kind == 'h' {
            item.kind = 'f';
            item.content = targets[item.link.as_deref().expect("target")].clone();
            item.link = None;
        }
    }
    out
}

fn assert_same_tree(got: &BTreeMap<String, Item>, want: &BTreeMap<String, Item>, what: &str) {
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<&String> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}, different {differ:?}"
    );
}

fn count_under(tree: &BTreeMap<String, Item>, dir: &str) -> usize {
    tree.keys()
        .filter(|k| k.starts_with(&format!("{dir}/")))
        .count()
}

/// The case and its harder relatives: a renamed directory (renamed
/// twice), a directory renamed inside it, one moved into it from
/// elsewhere, one moved out of it into another image directory, a lower
/// file deleted, a file added and a directory emptied and made again
/// (opaque) inside it. The committed image shows exactly what the
/// container showed; a container of that image renames again and commits
/// again.
#[test]
fn commit_keeps_renamed_directories() {
    let env = env_or_skip!();
    doc_image(&env);
    let script = "set -e
        mv /usr/share/doc /usr/share/docx
        mv /usr/share/docx /usr/share/doc2
        mv /usr/share/doc2/pkg1 /usr/share/doc2/pkg1-renamed
        mv /usr/share/other /usr/share/doc2/other
        mv /usr/share/doc2/a /data/a
        rm /usr/share/doc2/pkg2/changelog
        echo new > /usr/share/doc2/pkg4/new
        rm -r /usr/share/doc2/pkg5
        mkdir /usr/share/doc2/pkg5
        echo only > /usr/share/doc2/pkg5/only";
    env.ok(&["run", "--name", "c2", "bb:doc", "sh", "-c", script]);
    let live = exported(&env, "c2");
    // 155 entries in doc (37 directories of 3 files, 2 links, README and
    // the 4 of a/b/c/deep), +3 (other) -4 (a) -1 +1 -3 +1.
    assert_eq!(count_under(&live, "usr/share/doc2"), 152);
    env.ok(&["commit", "c2", "bb:doc2"]);
    env.ok(&["run", "--name", "from-commit", "bb:doc2", "true"]);
    let committed = exported(&env, "from-commit");
    assert_same_tree(&committed, &live, "container of the committed image");
    // The hard link is still one file.
    // The hard links are still one file each: inside the renamed
    // directory, and across its edge.
    for pair in [
        [
            "/usr/share/doc2/pkg1-renamed/copyright",
            "/usr/share/doc2/pkg1-renamed/hardlink",
        ],
        ["/usr/share/doc2/pkg2/README", "/usr/share/outside-link"],
    ] {
        let out = env.ok(&[
            "run", "--rm", "bb:doc2", "stat", "-c", "%h %i", pair[0], pair[1],
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0], lines[1], "hard link lost: {pair:?} {out}");
        assert!(lines[0].starts_with("2 "), "{pair:?} {out}");
    }

    // A second commit, of a container of the committed image, after
    // another rename.
    let script = "set -e
        mv /usr/share/doc2 /usr/share/doc3
        mv /usr/share/doc3/pkg6 /pkg6
        echo again > /usr/share/doc3/pkg7/again";
    env.ok(&["run", "--name", "c3", "bb:doc2", "sh", "-c", script]);
    let live3 = exported(&env, "c3");
    assert_eq!(
        count_under(&live3, "usr/share/doc3"),
        count_under(&live, "usr/share/doc2") - 4 + 1
    );
    env.ok(&["commit", "c3", "bb:doc3"]);
    env.ok(&["run", "--name", "from-commit3", "bb:doc3", "true"]);
    assert_same_tree(
        &exported(&env, "from-commit3"),
        &live3,
        "container of the second commit",
    );
}

/// `diff` lists a renamed directory as Docker's naive diff does (checked
/// against Docker 20.10): `A` for the new path and everything in it, `D`
/// for the old path only; a directory deleted and made again lists its
/// old children as `D`; a directory copied up only for the launcher's
/// mount targets (`/etc`) is not listed.
#[test]
fn diff_lists_renamed_directories_as_added() {
    let env = env_or_skip!();
    doc_image(&env);
    let script = "set -e
        mv /usr/share/doc /usr/share/doc2
        rm /usr/share/doc2/pkg2/changelog
        echo new > /usr/share/doc2/pkg4/new
        rm -r /usr/share/other/x
        mkdir /usr/share/other/x
        echo g > /usr/share/other/x/g";
    env.ok(&["run", "--name", "cc", "bb:doc", "sh", "-c", script]);
    let diff = env.ok(&["diff", "cc"]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in [
        "C /usr/share",
        "A /usr/share/doc2",
        "A /usr/share/doc2/README",
        "A /usr/share/doc2/pkg1/hardlink",
        "A /usr/share/doc2/pkg1/symlink",
        "A /usr/share/doc2/pkg4/new",
        "A /usr/share/doc2/pkg37/copyright",
        "A /usr/share/doc2/a/b/c/deep",
        "D /usr/share/doc",
        "C /usr/share/other",
        "C /usr/share/other/x",
        "D /usr/share/other/x/f",
        "A /usr/share/other/x/g",
    ] {
        assert!(lines.contains(&want), "{want} missing from:\n{diff}");
    }
    assert!(
        !lines.iter().any(|l| l.starts_with("D /usr/share/doc/")
            || l.contains("pkg2/changelog")
            || l.contains("outside-link")
            || l.contains("/etc")),
        "{diff}"
    );
    // Everything the new path shows, and nothing else.
    let under_doc2 = lines
        .iter()
        .filter(|l| l.starts_with("A /usr/share/doc2/"))
        .count();
    // The 155 entries of doc, one file deleted and one added.
    assert_eq!(under_doc2, 155, "{diff}");
    let paths: Vec<&str> = lines.iter().map(|l| &l[2..]).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(sorted, paths, "diff is sorted by path");
}

/// `cp` out of a renamed directory of a stopped container.
#[test]
fn cp_from_a_renamed_directory_of_a_stopped_container() {
    let env = env_or_skip!();
    doc_image(&env);
    env.ok(&[
        "run",
        "--name",
        "cc",
        "bb:doc",
        "sh",
        "-c",
        "mv /usr/share/doc /usr/share/doc2 && mv /usr/share/doc2/a /data/a",
    ]);
    let dest = env.root().join("out");
    std::fs::create_dir_all(&dest).expect("mkdir");
    env.ok(&["cp", "cc:/usr/share/doc2", dest.to_str().expect("utf8")]);
    let copied = dest.join("doc2");
    assert_eq!(
        std::fs::read_to_string(copied.join("pkg37/changelog")).expect("read"),
        "pkg37 changelog\n"
    );
    let entries = std::fs::read_dir(&copied).expect("read_dir").count();
    assert_eq!(entries, 37 + 1, "pkg1..pkg37 and README");
    env.ok(&["cp", "cc:/data/a/b/c/deep", dest.to_str().expect("utf8")]);
    assert_eq!(
        std::fs::read_to_string(dest.join("deep")).expect("read"),
        "deep\n"
    );
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

/// xattrs survive a commit: those of the files a renamed directory
/// carries from the image, and those of the container's own files.
#[test]
fn commit_keeps_xattrs() {
    let env = env_or_skip!();
    let base = env.build_image_tar(&[]);
    let src = env.root().join("xattr-src");
    std::fs::create_dir_all(src.join("opt/app")).expect("mkdir");
    let run = |cmd: &mut std::process::Command| {
        let ok = cmd.status().expect("run").success();
        assert!(ok, "{cmd:?}");
    };
    run(std::process::Command::new("tar")
        .arg("-xf")
        .arg(&base)
        .arg("-C")
        .arg(&src));
    std::fs::write(src.join("opt/app/tool"), "tool\n").expect("write");
    let setfattr = |path: &std::path::Path, value: &str| {
        run(std::process::Command::new("setfattr")
            .args(["-n", "user.note", "-v", value])
            .arg(path));
    };
    setfattr(&src.join("opt/app/tool"), "from-image");
    let tar = env.root().join("xattr-image.tar");
    run(std::process::Command::new("tar")
        .args(["--xattrs", "--xattrs-include=user.*", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("."));
    env.ok(&["import", tar.to_str().expect("utf8"), "xa:1"]);
    env.ok(&[
        "run",
        "--name",
        "xa",
        "xa:1",
        "sh",
        "-c",
        "mv /opt/app /opt/app2 && echo new > /opt/app2/new",
    ]);
    let id = env.container("xa").id;
    let upper_file = env
        .root()
        .join(format!("containers/{id}/upper/opt/app2/new"));
    setfattr(&upper_file, "from-container");
    env.ok(&["commit", "xa", "xa:2"]);
    let mp = env
        .ok(&["mount", "--driver", "fuse", "xa:2"])
        .trim()
        .to_string();
    let getfattr = |rel: &str| {
        let out = std::process::Command::new("getfattr")
            .args(["--only-values", "-n", "user.note"])
            .arg(std::path::Path::new(&mp).join(rel))
            .output()
            .expect("getfattr");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let carried = getfattr("opt/app2/tool");
    let own = getfattr("opt/app2/new");
    env.ok(&["umount", "xa:2"]);
    assert_eq!(carried, "from-image");
    assert_eq!(own, "from-container");
}

/// A redirect overlayfs would refuse, in a container's upper directory:
/// `commit` and `diff` fail with one line naming the directory, and
/// nothing is stored.
#[test]
fn commit_and_diff_refuse_an_invalid_redirect() {
    let env = env_or_skip!();
    env.ok(&["run", "--name", "bad", "bb", "true"]);
    let id = env.container("bad").id;
    let dir = env.root().join(format!("containers/{id}/upper/broken"));
    std::fs::create_dir(&dir).expect("mkdir");
    let ok = std::process::Command::new("setfattr")
        .args(["-n", "trusted.overlay.redirect", "-v", "a/b"])
        .arg(&dir)
        .status()
        .expect("setfattr")
        .success();
    assert!(ok);
    let images = env.ok(&["images", "-q"]);
    for args in [&["commit", "bad", "bb:bad"][..], &["diff", "bad"][..]] {
        let out = env.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("upper/broken") && err.contains("invalid overlay redirect \"a/b\""),
            "{args:?}: {err}"
        );
    }
    assert_eq!(env.ok(&["images", "-q"]), images, "nothing stored");
    std::fs::remove_dir(&dir).expect("rmdir");
    env.ok(&["commit", "bad", "bb:fine"]);
}
