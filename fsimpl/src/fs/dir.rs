//! Directory listings: snapshots of merged directories taken at opendir,
//! and the entries (with `.` and `..`) served to readdir and readdirplus.

use std::collections::HashSet;

use fuser::{Errno, FileHandle, FileType};
use rustix::fs::FileType as HostType;

use super::{read, StrataFs};
use crate::union::{errno, host_file_type, node_file_type, Obj, OpResult};
use crate::upper;

/// One listed entry: (next offset, ino, kind, name).
type Listed = (u64, u64, FileType, Vec<u8>);

pub(super) struct DirEntryInfo {
    name: Vec<u8>,
    kind: FileType,
    ino: u64,
}

impl StrataFs {
    /// The entries of a directory with an upper part, merged with the
    /// lower directory it shows (if any).
    pub(super) fn op_snapshot(&self, ino: u64) -> OpResult<Option<Vec<DirEntryInfo>>> {
        let Obj::Upper(u) = self.union.resolve(ino)? else {
            return Ok(None);
        };
        if u.host_type != HostType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let names = upper::read_names(&u.fd).map_err(errno)?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for n in names {
            seen.insert(n.name.clone());
            if !n.whiteout {
                out.push(DirEntryInfo {
                    kind: host_file_type(n.file_type),
                    name: n.name,
                    ino: u64::MAX,
                });
            }
        }
        if let Some(l) = u.lower {
            let children = self.union.tree.dir_children(l).map_err(errno)?;
            for (name, child) in children.into_iter().flat_map(|c| c.listing()) {
                if seen.contains(&**name) {
                    continue;
                }
                let node = self.union.tree.node(*child).ok_or(Errno::EIO)?;
                out.push(DirEntryInfo {
                    name: name.to_vec(),
                    kind: node_file_type(&node.kind),
                    ino: *child as u64 + 1,
                });
            }
        }
        Ok(Some(out))
    }

    /// Entries of directory `ino` from position `offset` (0 and 1 are `.`
    /// and `..`): (next offset, ino, kind, name).
    pub(super) fn op_entries(
        &self,
        ino: u64,
        fh: FileHandle,
        offset: u64,
        limit: usize,
    ) -> OpResult<Vec<Listed>> {
        let mut out = Vec::new();
        let parent = match self.union.resolve(ino)? {
            Obj::Lower(n) => self
                .union
                .tree
                .node(n)
                .map_or(ino, |node| node.parent as u64 + 1),
            Obj::Upper(_) => ino,
        };
        let mut pos = offset;
        while pos < 2 && out.len() < limit {
            let name: &[u8] = if pos == 0 { b"." } else { b".." };
            out.push((
                pos + 1,
                if pos == 0 { ino } else { parent },
                FileType::Directory,
                name.to_vec(),
            ));
            pos += 1;
        }
        let index = (pos - 2) as usize;
        let snapshot = read(&self.dirs).get(&fh.0).cloned();
        match snapshot {
            Some(entries) => {
                for (i, e) in entries
                    .iter()
                    .enumerate()
                    .skip(index)
                    .take(limit.saturating_sub(out.len()))
                {
                    out.push((i as u64 + 3, e.ino, e.kind, e.name.clone()));
                }
            }
            None => {
                // Opened as a lower directory (handle 0): keep listing the
                // lower directory even if it was copied up since.
                if !self.union.pinned(ino) {
                    return Err(Errno::EBADF);
                }
                let n = (ino - 1) as u32;
                // Listed in the layers' order (the order their files were
                // written in): a walk that reads every file then reads the
                // store's files in the order they lie on disk.
                let children = self
                    .union
                    .tree
                    .dir_children(n)
                    .map_err(errno)?
                    .ok_or(Errno::ENOTDIR)?;
                let wanted = limit.saturating_sub(out.len());
                for i in index..index.saturating_add(wanted) {
                    let Some((name, child)) = children.listed_at(i) else {
                        break;
                    };
                    let node = self.union.tree.node(*child).ok_or(Errno::EIO)?;
                    out.push((
                        i as u64 + 3,
                        *child as u64 + 1,
                        node_file_type(&node.kind),
                        name.to_vec(),
                    ));
                }
            }
        }
        Ok(out)
    }
}
