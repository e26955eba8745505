//! Command line of `stratafs`, compatible with fuse-overlayfs:
//! `stratafs [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W] MOUNTPOINT`, or
//! `stratafs SOURCE MOUNTPOINT -o ...` as mount.fuse3 calls it. The leftmost
//! lower directory is the top layer.

use std::path::PathBuf;

/// Parsed `stratafs` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// Lower directories, top first (as given).
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub mountpoint: PathBuf,
    pub fsname: Option<String>,
    pub read_only: bool,
    pub allow_other: bool,
    pub nodev: bool,
    pub nosuid: bool,
    pub foreground: bool,
    pub debug: bool,
    /// `-o no_passthrough`: serve all file I/O in the daemon.
    pub no_passthrough: bool,
    /// `-o redirect_dir=on|follow|nofollow|off`, as overlayfs (`off` is
    /// `follow`, as with overlayfs's default `redirect_always_follow`).
    pub redirect_dir: strata_fs::RedirectDir,
    /// Options accepted and ignored (reported with -d).
    pub ignored: Vec<String>,
}

/// fuse-overlayfs and FUSE options that have no meaning here.
const IGNORED: &[&str] = &[
    "rw",
    "dev",
    "suid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "default_permissions",
    "allow_root",
    "auto_unmount",
    "noacl",
    "static_nlink",
    "squash_to_root",
    "volatile",
    "fast_ino",
    "threaded",
    "timeout",
    "index",
    "metacopy",
    "xino",
    "uidmapping",
    "gidmapping",
    "squash_to_uid",
    "squash_to_gid",
    "plugins",
    "xattr_permissions",
    "userxattr",
    "max_idle_threads",
    "clone_fd",
    "_netdev",
    "nofail",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "context",
    "fscontext",
    "defcontext",
    "rootcontext",
    "ino32_t",
];

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-o" => {
                let list = it.next().ok_or("-o needs an argument")?;
                apply_options(&mut opts, &list)?;
            }
            "-f" => opts.foreground = true,
            "-d" | "--debug" => {
                opts.debug = true;
                opts.foreground = true;
            }
            "-s" => {}
            s if s.starts_with("-o") => apply_options(&mut opts, &s[2..])?,
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown flag {s}")),
            _ => positional.push(arg),
        }
    }
    opts.mountpoint = match positional.len() {
        1 => PathBuf::from(&positional[0]),
        2 => {
            if opts.fsname.is_none() {
                opts.fsname = Some(positional[0].clone());
            }
            PathBuf::from(&positional[1])
        }
        0 => return Err("no mount point given".into()),
        _ => return Err(format!("too many arguments: {}", positional.join(" "))),
    };
    if opts.lowerdirs.is_empty() {
        return Err("no lowerdir given (-o lowerdir=A:B)".into());
    }
    if opts.upperdir.is_some() != opts.workdir.is_some() && opts.upperdir.is_none() {
        return Err("workdir given without upperdir".into());
    }
    Ok(opts)
}

fn apply_options(opts: &mut Options, list: &str) -> Result<(), String> {
    for opt in list.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let need = |v: Option<&str>| {
            v.map(str::to_string)
                .ok_or(format!("option {key} needs a value"))
        };
        match key {
            "lowerdir" => {
                opts.lowerdirs = need(value)?
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            }
            "upperdir" => opts.upperdir = Some(PathBuf::from(need(value)?)),
            "workdir" => opts.workdir = Some(PathBuf::from(need(value)?)),
            "fsname" => opts.fsname = Some(need(value)?),
            "ro" => opts.read_only = true,
            "allow_other" => opts.allow_other = true,
            "nodev" => opts.nodev = true,
            "nosuid" => opts.nosuid = true,
            "no_passthrough" => opts.no_passthrough = true,
            "redirect_dir" => {
                opts.redirect_dir = match need(value)?.as_str() {
                    "on" => strata_fs::RedirectDir::On,
                    "follow" | "off" => strata_fs::RedirectDir::Follow,
                    "nofollow" => strata_fs::RedirectDir::NoFollow,
                    other => {
                        return Err(format!(
                            "redirect_dir={other}: expected on, follow, nofollow or off"
                        ))
                    }
                }
            }
            "subtype" | "source" => opts.ignored.push(opt.to_string()),
            k if IGNORED.contains(&k) => opts.ignored.push(opt.to_string()),
            _ => return Err(format!("unknown option {opt}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn fuse_overlayfs_form() {
        let o = parse(args("-o lowerdir=/a:/b,upperdir=/u,workdir=/w,noacl /mnt")).expect("parse");
        assert_eq!(o.lowerdirs, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(o.upperdir, Some(PathBuf::from("/u")));
        assert_eq!(o.mountpoint, PathBuf::from("/mnt"));
        assert_eq!(o.ignored, vec!["noacl".to_string()]);
    }

    #[test]
    fn mount_fuse3_form() {
        let o = parse(args("overlay /mnt -o rw,lowerdir=/l,dev,suid")).expect("parse");
        assert_eq!(o.fsname.as_deref(), Some("overlay"));
        assert_eq!(o.lowerdirs, vec![PathBuf::from("/l")]);
    }

    #[test]
    fn redirect_dir_as_overlayfs() {
        let o = parse(args("-o lowerdir=/l,redirect_dir=nofollow /mnt")).expect("parse");
        assert_eq!(o.redirect_dir, strata_fs::RedirectDir::NoFollow);
        let o = parse(args("-o lowerdir=/l,redirect_dir=off /mnt")).expect("parse");
        assert_eq!(o.redirect_dir, strata_fs::RedirectDir::Follow);
        let o = parse(args("-o lowerdir=/l /mnt")).expect("parse");
        assert_eq!(o.redirect_dir, strata_fs::RedirectDir::On);
        assert!(parse(args("-o lowerdir=/l,redirect_dir=yes /mnt")).is_err());
    }

    #[test]
    fn errors() {
        assert!(parse(args("/mnt")).is_err());
        assert!(parse(args("-o lowerdir=/l,bogus /mnt")).is_err());
        assert!(parse(args("-o lowerdir=/l")).is_err());
    }
}
