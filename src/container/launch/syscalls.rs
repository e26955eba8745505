//! The narrow set of system calls the launcher makes, behind a trait so
//! that its logic can be unit-tested without root: [`Host`] makes them,
//! [`Recorder`] (a fake injected explicitly by tests) writes them down.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

use super::seccomp::Program;
use crate::container::sys;

/// What `lstat` found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// A device node: a host's, as `stat` finds it, or one to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceNode {
    /// A block device (else a character device).
    pub block: bool,
    pub major: u64,
    pub minor: u64,
    /// The permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl DeviceNode {
    /// A character device `major:minor`, mode 0666, root's.
    pub fn char_666(major: u64, minor: u64) -> DeviceNode {
        DeviceNode {
            block: false,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        }
    }
}

/// The system calls of the launcher.
pub trait Syscalls {
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno>;
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;
    fn umount_detach(&self, target: &Path) -> Result<(), Errno>;
    /// chdir(new_root); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/").
    fn pivot_into(&self, new_root: &Path) -> Result<(), Errno>;
    fn chdir(&self, path: &Path) -> Result<(), Errno>;
    fn lstat_kind(&self, path: &Path) -> Result<Option<FileKind>, Errno>;
    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    fn create_file(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    fn rmdir(&self, path: &Path) -> Result<(), Errno>;
    /// Makes `node` at `path` with exactly its mode and owner.
    fn mknod(&self, path: &Path, node: &DeviceNode) -> Result<(), Errno>;
    /// Its major and minor numbers if `path` is a character device.
    fn char_device(&self, path: &Path) -> Result<Option<(u64, u64)>, Errno>;
    /// The per-mount flags of the mount `path` is on (statvfs), as
    /// mount(2) flags: `MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`,
    /// and the atime ones.
    fn mount_flags(&self, path: &Path) -> Result<MsFlags, Errno>;
    fn symlink(&self, target: &str, link: &Path) -> Result<(), Errno>;
    fn sethostname(&self, name: &str) -> Result<(), Errno>;
    fn loopback_up(&self) -> Result<(), Errno>;
    fn last_cap(&self) -> u32;
    fn capbset_drop(&self, cap: u32) -> Result<(), Errno>;
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno>;
    fn ambient_clear(&self) -> Result<(), Errno>;
    fn set_no_new_privs(&self) -> Result<(), Errno>;
    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<(), Errno>;
    /// Loads a compiled seccomp filter.
    fn load_seccomp(&self, program: &Program) -> Result<(), Errno>;
    /// The device node `path` (followed) is, None if it is none.
    fn device_stat(&self, path: &Path) -> Result<Option<DeviceNode>, Errno>;
    /// Writes `value` to `/proc/sys/<key with dots as slashes>`.
    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), Errno>;
    /// setrlimit(2); -1 is unlimited.
    fn set_rlimit(
        &self,
        resource: nix::sys::resource::Resource,
        soft: i64,
        hard: i64,
    ) -> Result<(), Errno>;
}

/// The real system calls.
pub struct Host;

impl Syscalls for Host {
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
        nix::sched::unshare(flags)
    }
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        nix::mount::mount(Some(source), target, fstype, flags, data)
    }
    fn umount_detach(&self, target: &Path) -> Result<(), Errno> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
    }
    fn pivot_into(&self, new_root: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")
    }
    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }
    fn lstat_kind(&self, path: &Path) -> Result<Option<FileKind>, Errno> {
        match nix::sys::stat::lstat(path) {
            Ok(st) => Ok(Some(
                match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
                    SFlag::S_IFDIR => FileKind::Dir,
                    SFlag::S_IFREG => FileKind::File,
                    SFlag::S_IFLNK => FileKind::Symlink,
                    _ => FileKind::Other,
                },
            )),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        nix::unistd::mkdir(path, Mode::from_bits_truncate(mode))
    }
    fn create_file(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::open(
            path,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )?;
        nix::unistd::close(fd)
    }
    fn rmdir(&self, path: &Path) -> Result<(), Errno> {
        nix::unistd::unlinkat(None, path, nix::unistd::UnlinkatFlags::RemoveDir)
    }
    fn mknod(&self, path: &Path, node: &DeviceNode) -> Result<(), Errno> {
        let kind = if node.block {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFCHR
        };
        nix::sys::stat::mknod(
            path,
            kind,
            Mode::from_bits_truncate(node.mode),
            nix::sys::stat::makedev(node.major, node.minor),
        )?;
        // mknod honours the umask; set the exact mode, then the owner.
        nix::sys::stat::fchmodat(
            None,
            path,
            Mode::from_bits_truncate(node.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
        if node.uid != 0 || node.gid != 0 {
            nix::unistd::fchownat(
                None,
                path,
                Some(nix::unistd::Uid::from_raw(node.uid)),
                Some(nix::unistd::Gid::from_raw(node.gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }
    fn char_device(&self, path: &Path) -> Result<Option<(u64, u64)>, Errno> {
        let st = nix::sys::stat::lstat(path)?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFCHR {
            return Ok(None);
        }
        Ok(Some((
            nix::sys::stat::major(st.st_rdev),
            nix::sys::stat::minor(st.st_rdev),
        )))
    }
    fn mount_flags(&self, path: &Path) -> Result<MsFlags, Errno> {
        use nix::sys::statvfs::FsFlags;
        let have = nix::sys::statvfs::statvfs(path)?.flags();
        let mut flags = MsFlags::empty();
        for (fs, ms) in [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if have.contains(fs) {
                flags |= ms;
            }
        }
        Ok(flags)
    }
    fn symlink(&self, target: &str, link: &Path) -> Result<(), Errno> {
        nix::unistd::symlinkat(target, None, link)
    }
    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        nix::unistd::sethostname(name)
    }
    fn loopback_up(&self) -> Result<(), Errno> {
        sys::loopback_up()
    }
    fn last_cap(&self) -> u32 {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    }
    fn capbset_drop(&self, cap: u32) -> Result<(), Errno> {
        sys::capbset_drop(cap)
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
        sys::capset(effective, permitted, inheritable)
    }
    fn ambient_clear(&self) -> Result<(), Errno> {
        sys::cap_ambient_clear()
    }
    fn set_no_new_privs(&self) -> Result<(), Errno> {
        nix::sys::prctl::set_no_new_privs()
    }
    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<(), Errno> {
        let groups: Vec<nix::unistd::Gid> = groups
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups)?;
        let gid = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setresgid(gid, gid, gid)?;
        let uid = nix::unistd::Uid::from_raw(uid);
        nix::unistd::setresuid(uid, uid, uid)
    }
    fn load_seccomp(&self, program: &Program) -> Result<(), Errno> {
        sys::load_seccomp_filter(&program.bpf, program.flags)
    }
    fn device_stat(&self, path: &Path) -> Result<Option<DeviceNode>, Errno> {
        let st = nix::sys::stat::stat(path)?;
        let block = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFBLK => true,
            SFlag::S_IFCHR => false,
            _ => return Ok(None),
        };
        Ok(Some(DeviceNode {
            block,
            major: nix::sys::stat::major(st.st_rdev),
            minor: nix::sys::stat::minor(st.st_rdev),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        }))
    }
    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), Errno> {
        use std::io::Write;
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        file.write_all(value.as_bytes())
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }
    fn set_rlimit(
        &self,
        resource: nix::sys::resource::Resource,
        soft: i64,
        hard: i64,
    ) -> Result<(), Errno> {
        let limit = |v: i64| {
            if v < 0 {
                nix::sys::resource::RLIM_INFINITY
            } else {
                v as nix::sys::resource::rlim_t
            }
        };
        nix::sys::resource::setrlimit(resource, limit(soft), limit(hard))
    }
}

/// A fake that records each call as one line and answers `lstat_kind`
/// from a table (paths not in it do not exist), `mount_flags` from
/// another (empty flags for paths not in it), and `char_device` as a
/// host's /dev would. For unit tests.
#[derive(Default)]
pub struct Recorder {
    pub calls: RefCell<Vec<String>>,
    pub files: RefCell<BTreeMap<PathBuf, FileKind>>,
    pub mount_flags: RefCell<BTreeMap<PathBuf, MsFlags>>,
    /// mknod fails with `EPERM`, as in a user namespace.
    pub mknod_refused: std::cell::Cell<bool>,
}

impl Recorder {
    pub fn with_files(files: &[(&str, FileKind)]) -> Recorder {
        let r = Recorder::default();
        for (p, k) in files {
            r.files.borrow_mut().insert(PathBuf::from(p), *k);
        }
        r
    }
    fn note(&self, line: String) -> Result<(), Errno> {
        self.calls.borrow_mut().push(line);
        Ok(())
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Syscalls for Recorder {
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
        self.note(format!("unshare {flags:?}"))
    }
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        let flags = format!("{flags:?}");
        let flags = flags.trim_start_matches("MsFlags(").trim_end_matches(')');
        self.note(format!(
            "mount {source} {} {} {flags} {}",
            target.display(),
            fstype.unwrap_or("-"),
            data.unwrap_or("-")
        ))
    }
    fn umount_detach(&self, target: &Path) -> Result<(), Errno> {
        self.note(format!("umount {}", target.display()))
    }
    fn pivot_into(&self, new_root: &Path) -> Result<(), Errno> {
        self.note(format!("pivot_root {}", new_root.display()))
    }
    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        if path != Path::new("/") && self.files.borrow().get(path) != Some(&FileKind::Dir) {
            return Err(Errno::ENOENT);
        }
        self.note(format!("chdir {}", path.display()))
    }
    fn lstat_kind(&self, path: &Path) -> Result<Option<FileKind>, Errno> {
        Ok(self.files.borrow().get(path).copied())
    }
    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        self.files
            .borrow_mut()
            .insert(path.to_path_buf(), FileKind::Dir);
        self.note(format!("mkdir {} {mode:o}", path.display()))
    }
    fn create_file(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        // O_CREAT | O_EXCL, as the host's.
        if self.files.borrow().contains_key(path) {
            return Err(Errno::EEXIST);
        }
        self.files
            .borrow_mut()
            .insert(path.to_path_buf(), FileKind::File);
        self.note(format!("create {} {mode:o}", path.display()))
    }
    fn rmdir(&self, path: &Path) -> Result<(), Errno> {
        self.files.borrow_mut().remove(path);
        self.note(format!("rmdir {}", path.display()))
    }
    fn mknod(&self, path: &Path, node: &DeviceNode) -> Result<(), Errno> {
        if self.mknod_refused.get() {
            return Err(Errno::EPERM);
        }
        self.files
            .borrow_mut()
            .insert(path.to_path_buf(), FileKind::Other);
        let kind = if node.block { 'b' } else { 'c' };
        self.note(format!(
            "mknod {} {kind} {}:{} {:o} {}:{}",
            path.display(),
            node.major,
            node.minor,
            node.mode,
            node.uid,
            node.gid
        ))
    }
    fn char_device(&self, path: &Path) -> Result<Option<(u64, u64)>, Errno> {
        Ok(match path.to_str() {
            Some("/dev/null") => Some((1, 3)),
            Some("/dev/zero") => Some((1, 5)),
            Some("/dev/full") => Some((1, 7)),
            Some("/dev/random") => Some((1, 8)),
            Some("/dev/urandom") => Some((1, 9)),
            Some("/dev/tty") => Some((5, 0)),
            _ => None,
        })
    }
    fn mount_flags(&self, path: &Path) -> Result<MsFlags, Errno> {
        Ok(self
            .mount_flags
            .borrow()
            .get(path)
            .copied()
            .unwrap_or(MsFlags::empty()))
    }
    fn symlink(&self, target: &str, link: &Path) -> Result<(), Errno> {
        self.note(format!("symlink {target} {}", link.display()))
    }
    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        self.note(format!("sethostname {name}"))
    }
    fn loopback_up(&self) -> Result<(), Errno> {
        self.note("loopback_up".into())
    }
    fn last_cap(&self) -> u32 {
        40
    }
    fn capbset_drop(&self, cap: u32) -> Result<(), Errno> {
        self.note(format!("capbset_drop {cap}"))
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
        self.note(format!(
            "capset {effective:#x} {permitted:#x} {inheritable:#x}"
        ))
    }
    fn ambient_clear(&self) -> Result<(), Errno> {
        self.note("ambient_clear".into())
    }
    fn set_no_new_privs(&self) -> Result<(), Errno> {
        self.note("no_new_privs".into())
    }
    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<(), Errno> {
        self.note(format!("set_ids {uid} {gid} {groups:?}"))
    }
    fn load_seccomp(&self, program: &Program) -> Result<(), Errno> {
        self.note(format!("seccomp {}", program.instruction_count()))
    }
    fn device_stat(&self, path: &Path) -> Result<Option<DeviceNode>, Errno> {
        Ok(match path.to_str() {
            // A block device of a group's, mode 0660.
            Some("/dev/sdz") => Some(DeviceNode {
                block: true,
                major: 8,
                minor: 0,
                mode: 0o660,
                uid: 0,
                gid: 6,
            }),
            _ => self
                .char_device(path)?
                .map(|(major, minor)| DeviceNode::char_666(major, minor)),
        })
    }
    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), Errno> {
        self.note(format!("sysctl {key}={value}"))
    }
    fn set_rlimit(
        &self,
        resource: nix::sys::resource::Resource,
        soft: i64,
        hard: i64,
    ) -> Result<(), Errno> {
        self.note(format!("rlimit {resource:?} {soft} {hard}"))
    }
}
