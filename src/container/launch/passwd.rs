//! Users and groups from the image's own /etc/passwd and /etc/group
//! (never the host's NSS), resolved as runc resolves `--user`.

use crate::container::error::ContainerError;

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdLine<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_lines(passwd: &str) -> impl Iterator<Item = PasswdLine<'_>> {
    passwd
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdLine {
                name: f[0],
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5],
            })
        })
}

fn group_lines(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
            Some((f[0], f[2].parse().ok()?, members))
        })
}

/// Resolves `user[:group]` (names or numbers; empty = root) against the
/// contents of the image's passwd and group files (empty if absent).
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, ContainerError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_user = user_part.parse::<u32>().ok();
    let entry = passwd_lines(passwd).find(|p| match numeric_user {
        Some(n) => p.uid == n,
        None => p.name == user_part,
    });
    let (uid, mut gid, home, name) = match (entry, numeric_user) {
        (Some(p), _) => (p.uid, p.gid, p.home.to_string(), Some(p.name.to_string())),
        (None, Some(n)) => (n, 0, "/".to_string(), None),
        (None, None) => {
            return Err(ContainerError::Invalid(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            )))
        }
    };
    let mut groups = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_lines(group)
                    .find(|(n, _, _)| *n == g)
                    .map(|(_, id, _)| id)
                    .ok_or_else(|| {
                        ContainerError::Invalid(format!(
                            "unable to find group {g}: no matching entries in group file"
                        ))
                    })?,
            };
        }
        _ => {
            if let Some(name) = &name {
                groups = group_lines(group)
                    .filter(|(_, _, members)| members.contains(&name.as_str()))
                    .map(|(_, id, _)| id)
                    .filter(|id| *id != gid)
                    .collect();
                groups.sort_unstable();
            }
        }
    }
    // Docker's daemon lists the primary group first among the additional
    // ones (moby's `getUser`), so `id` shows it in `groups=` even for
    // `-u UID:GID`; the kernel keeps the list sorted.
    groups.insert(0, gid);
    groups.dedup();
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\napp:x:1000:\nnogroup:x:65534:\n";

    #[test]
    fn users_and_groups_from_the_image() {
        assert_eq!(
            resolve_user("", PASSWD, GROUP).unwrap(),
            ExecUser {
                uid: 0,
                gid: 0,
                groups: vec![0],
                home: "/root".into()
            }
        );
        assert_eq!(
            resolve_user("app", PASSWD, GROUP).unwrap(),
            ExecUser {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10],
                home: "/home/app".into()
            }
        );
        assert_eq!(resolve_user("1000:wheel", PASSWD, GROUP).unwrap().gid, 10);
        // An explicit group is the only one, as Docker's `-u 1000:1000`
        // gives `groups=1000`.
        assert_eq!(
            resolve_user("1000:1000", PASSWD, GROUP).unwrap().groups,
            vec![1000]
        );
        assert_eq!(
            resolve_user("4242", PASSWD, GROUP).unwrap(),
            ExecUser {
                uid: 4242,
                gid: 0,
                groups: vec![0],
                home: "/".into()
            }
        );
        assert_eq!(resolve_user("4242:77", "", "").unwrap().gid, 77);
        assert!(resolve_user("ghost", PASSWD, GROUP).is_err());
        assert!(resolve_user("app:ghosts", PASSWD, GROUP).is_err());
    }
}
