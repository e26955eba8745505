#!/usr/bin/env python3
"""Where a store's files lie on disk, in the order its layers stream them.

    benches/store-layout.py ROOT [ROOT...]

For each store root (read-only: its strata.db and files/), takes every
distinct file content in layer and tar order and prints: how many, the
median distance in 4 KiB blocks between the first blocks of consecutive
files (FIEMAP), how many of those steps are longer than 1 MiB, and the
same for inode numbers, with how many block groups and inode-table
windows the inodes are in (a window: the 32 inode-table blocks, 512
inodes of 256 bytes, that ext4 reads at once when it reads an inode
from a block not cached, `inode_readahead_blks`; each window of an
image is a read of its cold walk or read). Two stores holding the same
image, written by two builds, compare how each lays an image out
(docs/store.md, "Where the bytes land"). Needs a filesystem with FIEMAP
(ext4, xfs, btrfs).
"""
import fcntl
import os
import sqlite3
import statistics
import struct
import sys

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 1


def first_block(path):
    """The physical 4 KiB block of a file's first extent, or None (empty or inline)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        # struct fiemap (32 bytes) asking for one extent, then room for it (56 bytes).
        request = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, 1, 0) + bytes(56))
        fcntl.ioctl(fd, FS_IOC_FIEMAP, request)
        if struct.unpack_from("=I", request, 20)[0] == 0:
            return None
        _logical, physical = struct.unpack_from("=QQ", request, 32)
        return physical // 4096
    finally:
        os.close(fd)


WINDOW = 512


def inodes_per_group(path):
    """ext4's inodes per block group, from statvfs: the inode count over the
    first group count, from the data blocks' (32,768 blocks of 4 KiB a
    group), that divides it (the blocks the inode tables take are not in
    f_blocks)."""
    st = os.statvfs(path)
    groups = -(-st.f_blocks // 32768)
    while st.f_files % groups:
        groups += 1
    return st.f_files // groups


def layout(root):
    db = sqlite3.connect(f"file:{root}/strata.db?mode=ro", uri=True)
    rows = db.execute(
        "SELECT file_digest FROM entries WHERE file_digest IS NOT NULL ORDER BY layer_id, seq"
    )
    seen, blocks, inodes = set(), [], []
    for (digest,) in rows:
        hex_ = digest.hex()
        if hex_ in seen:
            continue
        seen.add(hex_)
        path = f"{root}/files/{hex_[:2]}/{hex_}"
        block = first_block(path)
        if block is not None:
            blocks.append(block)
        inodes.append(os.stat(path).st_ino)
    steps = [abs(b - a) for a, b in zip(blocks, blocks[1:])]
    inode_steps = [abs(b - a) for a, b in zip(inodes, inodes[1:])]
    per_group = inodes_per_group(root)
    if not steps:
        print(f"{root}: fewer than two files with data")
        return
    print(
        f"{root}: {len(seen)} files; first blocks: median step {statistics.median(steps):g} blocks, "
        f"{sum(s > 256 for s in steps)} steps over 1 MiB; "
        f"inodes: median step {statistics.median(inode_steps):g}, span {max(inodes) - min(inodes)}, "
        f"in {len({i // per_group for i in inodes})} groups and "
        f"{len({i // WINDOW for i in inodes})} windows"
    )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: store-layout.py ROOT [ROOT...]")
    for root in sys.argv[1:]:
        layout(root)
