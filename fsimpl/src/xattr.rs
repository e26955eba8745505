//! Extended attributes of host files, read and written by path (through
//! rustix's safe wrappers). Upper-directory objects are reached through
//! `/proc/self/fd/N` of the `O_PATH` descriptor the mount holds for them.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::XattrFlags;

/// `/proc/self/fd/N`: a path that reaches the object an `O_PATH`
/// descriptor refers to, whatever its current name.
pub fn proc_path(fd: impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(rustix::io::Errno::NOTSUP) | Some(rustix::io::Errno::NODATA)
    )
}

/// Names of the attributes of `path` (NUL-separated list, as the kernel
/// gives it).
pub fn list_names(path: &Path, follow: bool) -> io::Result<Vec<u8>> {
    loop {
        let size = if follow {
            rustix::fs::listxattr_query(path)
        } else {
            rustix::fs::llistxattr_query(path)
        };
        let size = match size {
            Ok(s) => s,
            Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        let got = if follow {
            rustix::fs::listxattr(path, &mut buf[..])
        } else {
            rustix::fs::llistxattr(path, &mut buf[..])
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e == rustix::io::Errno::RANGE => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One attribute's value; `Ok(None)` if it is absent.
pub fn get(path: &Path, name: &[u8], follow: bool) -> io::Result<Option<Vec<u8>>> {
    let name = OsStr::from_bytes(name);
    loop {
        let size = if follow {
            rustix::fs::getxattr_query(path, name)
        } else {
            rustix::fs::lgetxattr_query(path, name)
        };
        let size = match size {
            Ok(s) => s,
            Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::NOTSUP => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        let got = if follow {
            rustix::fs::getxattr(path, name, &mut buf[..])
        } else {
            rustix::fs::lgetxattr(path, name, &mut buf[..])
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if e == rustix::io::Errno::RANGE => continue,
            Err(e) if e == rustix::io::Errno::NODATA => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Every attribute of `path` with its value.
pub fn list_path(path: &Path, follow: bool) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match list_names(path, follow) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if let Some(value) = get(path, name, follow)? {
            out.push((name.to_vec(), value));
        }
    }
    Ok(out)
}

pub fn set(path: &Path, name: &[u8], value: &[u8], flags: XattrFlags) -> io::Result<()> {
    let name = OsStr::from_bytes(name);
    Ok(rustix::fs::setxattr(path, name, value, flags)?)
}

pub fn remove(path: &Path, name: &[u8]) -> io::Result<()> {
    let name = OsStr::from_bytes(name);
    Ok(rustix::fs::removexattr(path, name)?)
}
