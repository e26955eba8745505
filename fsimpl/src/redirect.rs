//! Overlayfs directory redirects (`trusted.overlay.redirect`).
//!
//! A merged directory renamed on a writable mount keeps showing its lower
//! directory through a redirect stored on the renamed (upper) directory.
//! Overlayfs writes two forms, and both are read here:
//! - absolute, `/a/b`: the lower directory's path from the root of the
//!   layers below (strata-fs always writes this form; the kernel does when
//!   a directory moves to another parent);
//! - relative, a bare name: the lower directory is the name in the same
//!   parent directory's lower directory (the kernel's form for a rename
//!   within one directory).
//!
//! The kernel refuses empty components in an absolute redirect and `/` in a
//! relative one; `.` and `..` never name a lower directory either. Such
//! values are [`InvalidRedirect`].

use std::fmt;

/// The xattr overlayfs keeps a redirect in.
pub const REDIRECT_XATTR: &str = "trusted.overlay.redirect";

/// A parsed redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The path (components) from the root of the layers below.
    Absolute(Vec<Vec<u8>>),
    /// A name in the parent directory's lower directory.
    Relative(Vec<u8>),
}

/// A redirect value overlayfs would not follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidRedirect(pub Vec<u8>);

impl fmt::Display for InvalidRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid overlay redirect {:?}",
            String::from_utf8_lossy(&self.0)
        )
    }
}

impl From<InvalidRedirect> for std::io::Error {
    fn from(e: InvalidRedirect) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Redirect {
    /// Parses an xattr value.
    pub fn parse(value: &[u8]) -> Result<Redirect, InvalidRedirect> {
        let invalid = || InvalidRedirect(value.to_vec());
        match value.strip_prefix(b"/") {
            Some(path) => {
                let components: Vec<Vec<u8>> =
                    path.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
                if components.iter().all(|c| valid_name(c)) {
                    Ok(Redirect::Absolute(components))
                } else {
                    Err(invalid())
                }
            }
            None if valid_name(value) => Ok(Redirect::Relative(value.to_vec())),
            None => Err(invalid()),
        }
    }

    /// The lower path (relative to the root, no leading `/`) of a
    /// directory with this redirect whose parent's lower directory is at
    /// `parent_lower` (`None`: the parent shows no lower directory, so a
    /// relative redirect leads nowhere).
    pub fn lower_path(&self, parent_lower: Option<&[u8]>) -> Option<Vec<u8>> {
        match self {
            Redirect::Absolute(components) => Some(components.join(&b'/')),
            Redirect::Relative(name) => parent_lower.map(|p| join(p, name)),
        }
    }
}

/// `dir/name` (`name` alone when `dir` is the root).
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_what_overlayfs_refuses() {
        assert_eq!(
            Redirect::parse(b"/a/b"),
            Ok(Redirect::Absolute(vec![b"a".to_vec(), b"b".to_vec()]))
        );
        assert_eq!(
            Redirect::parse(b"old"),
            Ok(Redirect::Relative(b"old".to_vec()))
        );
        for bad in [
            &b""[..],
            b"/",
            b"//a",
            b"/a/",
            b"/a//b",
            b"a/b",
            b"..",
            b"/a/../b",
            b".",
        ] {
            assert!(
                Redirect::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let abs = Redirect::parse(b"/x/y").unwrap();
        assert_eq!(abs.lower_path(None), Some(b"x/y".to_vec()));
        let rel = Redirect::parse(b"old").unwrap();
        assert_eq!(rel.lower_path(Some(b"p/q")), Some(b"p/q/old".to_vec()));
        assert_eq!(rel.lower_path(Some(b"")), Some(b"old".to_vec()));
        assert_eq!(rel.lower_path(None), None);
    }
}
