//! The per-directory index of stored layers, which lets a mount read one
//! directory at a time (see [`super::layer_source`]).
//!
//! `entries.dir_len` is the length of an entry's parent path with its
//! trailing `/` (`0` for top-level names, `-1` for the layer's root
//! entry), so the children of `a/b` are the rows of the layer with
//! `dir_len = 4` and a path in [`a/b/`, `a/b0`): one range of the index
//! `entries_by_dir`. `implicit_dirs` holds the directories a layer implies
//! without an entry of their own (a tar that lists `a/b/f` but not `a/b`,
//! or a whiteout inside a directory it does not list).

use rusqlite::{params, Transaction};

/// The length of `path`'s parent with its `/`; -1 for the root (`""`).
pub fn dir_len(path: &[u8]) -> i64 {
    if path.is_empty() {
        return -1;
    }
    path.iter()
        .rposition(|b| *b == b'/')
        .map_or(0, |i| i as i64 + 1)
}

/// The bounds of the paths directly or indirectly inside `dir`:
/// `dir/` ≤ path < `dir0` (`0` follows `/`); `None` for the root.
pub fn children_range(dir: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if dir.is_empty() {
        return None;
    }
    Some(([dir, b"/"].concat(), [dir, b"0"].concat()))
}

/// Records the directories layer `layer_id` implies.
pub fn record_implicit_dirs<'a>(
    tx: &Transaction,
    layer_id: i64,
    entries: impl IntoIterator<Item = &'a [u8]>,
    whiteouts: impl IntoIterator<Item = &'a [u8]>,
    opaque_dirs: impl IntoIterator<Item = &'a [u8]>,
) -> rusqlite::Result<()> {
    let implied = strata_fs::source::implicit_dirs(entries, whiteouts, opaque_dirs);
    insert_implicit_dirs(tx, layer_id, implied.iter().map(Vec::as_slice))
}

/// Records directories layer `layer_id` implies, already known.
pub fn insert_implicit_dirs<'a>(
    tx: &Transaction,
    layer_id: i64,
    dirs: impl IntoIterator<Item = &'a [u8]>,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO implicit_dirs(layer_id, path, dir_len) VALUES (?1, ?2, ?3)",
    )?;
    for path in dirs {
        insert.execute(params![layer_id, path, dir_len(path)])?;
    }
    Ok(())
}

/// Schema 3: fills `dir_len` and `implicit_dirs` for layers stored before.
pub fn backfill(tx: &Transaction) -> rusqlite::Result<()> {
    let layers: Vec<i64> = tx
        .prepare("SELECT id FROM layers")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for layer in layers {
        let read = |sql: &str| -> rusqlite::Result<Vec<Vec<u8>>> {
            tx.prepare(sql)?.query_map([layer], |r| r.get(0))?.collect()
        };
        let entries = read("SELECT path FROM entries WHERE layer_id = ?1")?;
        let whiteouts = read("SELECT path FROM whiteouts WHERE layer_id = ?1")?;
        let opaque = read("SELECT path FROM opaque_dirs WHERE layer_id = ?1")?;
        let mut update =
            tx.prepare_cached("UPDATE entries SET dir_len = ?3 WHERE layer_id = ?1 AND path = ?2")?;
        for path in &entries {
            update.execute(params![layer, path, dir_len(path)])?;
        }
        record_implicit_dirs(
            tx,
            layer,
            entries.iter().map(Vec::as_slice),
            whiteouts.iter().map(Vec::as_slice),
            opaque.iter().map(Vec::as_slice),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_lengths_and_ranges() {
        assert_eq!(dir_len(b""), -1);
        assert_eq!(dir_len(b"etc"), 0);
        assert_eq!(dir_len(b"etc/passwd"), 4);
        assert_eq!(dir_len(b"a/b/c"), 4);
        assert_eq!(children_range(b""), None);
        let (lo, hi) = children_range(b"a/b").unwrap();
        assert!(lo.as_slice() <= &b"a/b/c"[..] && &b"a/b/c"[..] < hi.as_slice());
        assert!(!(lo.as_slice() <= &b"a/bc"[..] && &b"a/bc"[..] < hi.as_slice()));
        assert!(!(lo.as_slice() <= &b"a/b"[..] && &b"a/b"[..] < hi.as_slice()));
        assert!(!(lo.as_slice() <= &b"a/b."[..] && &b"a/b."[..] < hi.as_slice()));
    }
}
