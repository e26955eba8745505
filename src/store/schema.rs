//! The SQLite schema and its migrations (`PRAGMA user_version`).
//!
//! The steps an old store needs are applied together in one transaction,
//! so an upgrade either reaches the current version or leaves the store
//! as it was; a store written by a newer strata is refused rather than
//! misread.

use rusqlite::Connection;

/// Migrations, in order; index + 1 is the schema version they produce.
const MIGRATIONS: &[&str] = &[
    // 1: blobs, files, layers and their entries, images and references.
    r#"
    CREATE TABLE blobs (
        digest     TEXT PRIMARY KEY,
        size       INTEGER NOT NULL,
        media_type TEXT
    );
    CREATE TABLE files (
        digest BLOB PRIMARY KEY,
        size   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE layers (
        id           INTEGER PRIMARY KEY,
        diff_id      TEXT NOT NULL UNIQUE,
        tar_size     INTEGER NOT NULL,
        content_size INTEGER NOT NULL,
        entry_count  INTEGER NOT NULL,
        recipe       BLOB NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE TABLE entries (
        layer_id    INTEGER NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
        path        BLOB NOT NULL,
        kind        INTEGER NOT NULL,
        mode        INTEGER NOT NULL,
        uid         INTEGER NOT NULL,
        gid         INTEGER NOT NULL,
        mtime_sec   INTEGER NOT NULL,
        mtime_nsec  INTEGER NOT NULL,
        size        INTEGER NOT NULL,
        file_digest BLOB REFERENCES files(digest),
        link_target BLOB,
        dev_major   INTEGER NOT NULL DEFAULT 0,
        dev_minor   INTEGER NOT NULL DEFAULT 0,
        xattrs      BLOB,
        seq         INTEGER NOT NULL,
        PRIMARY KEY (layer_id, path)
    ) WITHOUT ROWID;
    CREATE INDEX entries_by_file ON entries(file_digest) WHERE file_digest IS NOT NULL;
    CREATE TABLE whiteouts (
        layer_id INTEGER NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
        path     BLOB NOT NULL,
        PRIMARY KEY (layer_id, path)
    ) WITHOUT ROWID;
    CREATE TABLE opaque_dirs (
        layer_id INTEGER NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
        path     BLOB NOT NULL,
        PRIMARY KEY (layer_id, path)
    ) WITHOUT ROWID;
    CREATE TABLE layer_blobs (
        digest     TEXT PRIMARY KEY,
        diff_id    TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size       INTEGER NOT NULL,
        source     TEXT
    );
    CREATE TABLE images (
        id              TEXT PRIMARY KEY,
        manifest_digest TEXT NOT NULL REFERENCES blobs(digest),
        config_digest   TEXT NOT NULL REFERENCES blobs(digest),
        created         TEXT,
        size            INTEGER NOT NULL,
        added_at        INTEGER NOT NULL,
        last_tag_time   TEXT
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        layer_id INTEGER NOT NULL REFERENCES layers(id),
        PRIMARY KEY (image_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX image_layers_by_layer ON image_layers(layer_id);
    CREATE TABLE tags (
        name     TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id)
    );
    CREATE INDEX tags_by_image ON tags(image_id);
    CREATE TABLE repo_digests (
        name     TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE TABLE containers (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        image_id   TEXT NOT NULL REFERENCES images(id),
        created_at TEXT NOT NULL,
        spec       TEXT NOT NULL,
        state      TEXT NOT NULL
    );
    CREATE INDEX containers_by_image ON containers(image_id);
    CREATE TABLE mounts (
        mountpoint TEXT PRIMARY KEY,
        image_id   TEXT REFERENCES images(id),
        container  TEXT,
        pid        INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    "#,
    // 2: named volumes (containers).
    r#"
    CREATE TABLE volumes (
        name       TEXT PRIMARY KEY,
        driver     TEXT NOT NULL DEFAULT 'local',
        created_at TEXT NOT NULL,
        labels     TEXT NOT NULL DEFAULT '{}',
        anonymous  INTEGER NOT NULL DEFAULT 0
    );
    "#,
    // 3: the per-directory index mounts read lazily (image/dir_index.rs);
    // existing rows are filled in by `dir_index::backfill`.
    r#"
    ALTER TABLE entries ADD COLUMN dir_len INTEGER NOT NULL DEFAULT -1;
    CREATE INDEX entries_by_dir ON entries(layer_id, dir_len, path);
    CREATE INDEX entries_hardlinks ON entries(layer_id, kind) WHERE kind = 3;
    CREATE TABLE implicit_dirs (
        layer_id INTEGER NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
        path     BLOB NOT NULL,
        dir_len  INTEGER NOT NULL,
        PRIMARY KEY (layer_id, path)
    ) WITHOUT ROWID;
    CREATE INDEX implicit_dirs_by_dir ON implicit_dirs(layer_id, dir_len, path);
    "#,
    // 4: the build cache (src/build/cache.rs): each step's result, by the
    // hash of its inputs, and the layers it keeps alive; and the digests
    // of context files by their stat (src/build/digests.rs).
    r#"
    CREATE TABLE build_cache (
        key         TEXT PRIMARY KEY,
        config      TEXT NOT NULL REFERENCES blobs(digest),
        description TEXT NOT NULL,
        size        INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        last_used   INTEGER NOT NULL
    );
    CREATE INDEX build_cache_by_config ON build_cache(config);
    CREATE TABLE build_cache_layers (
        key      TEXT NOT NULL REFERENCES build_cache(key) ON DELETE CASCADE,
        layer_id INTEGER NOT NULL REFERENCES layers(id),
        PRIMARY KEY (key, layer_id)
    ) WITHOUT ROWID;
    CREATE INDEX build_cache_layers_by_layer ON build_cache_layers(layer_id);
    CREATE TABLE build_file_digests (
        path     BLOB PRIMARY KEY,
        dev      INTEGER NOT NULL,
        ino      INTEGER NOT NULL,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        digest   BLOB NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 5: networks, their endpoints (a container's membership, and while it
    // runs its address lease and the monitor holding it), and the ports a
    // running container publishes (src/network/, docs/network.md).
    r#"
    CREATE TABLE networks (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        driver     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        subnet     TEXT NOT NULL DEFAULT '',
        gateway    TEXT NOT NULL DEFAULT '',
        ip_range   TEXT NOT NULL DEFAULT '',
        ipam_given INTEGER NOT NULL DEFAULT 0,
        internal   INTEGER NOT NULL DEFAULT 0,
        bridge     TEXT NOT NULL DEFAULT '',
        labels     TEXT NOT NULL DEFAULT '{}',
        options    TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE endpoints (
        network_id   TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL,
        endpoint_id  TEXT NOT NULL,
        aliases      TEXT NOT NULL DEFAULT '[]',
        links        TEXT NOT NULL DEFAULT '[]',
        static_ip    TEXT NOT NULL DEFAULT '',
        static_mac   TEXT NOT NULL DEFAULT '',
        ip           TEXT,
        mac          TEXT,
        holder_pid   INTEGER NOT NULL DEFAULT 0,
        holder_start INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (network_id, container_id)
    );
    CREATE UNIQUE INDEX endpoint_leases ON endpoints(network_id, ip) WHERE ip IS NOT NULL;
    CREATE INDEX endpoints_by_container ON endpoints(container_id);
    CREATE TABLE published_ports (
        container_id   TEXT NOT NULL,
        proto          TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        host_ip        TEXT NOT NULL,
        host_port      INTEGER NOT NULL,
        target_ip      TEXT NOT NULL,
        PRIMARY KEY (proto, host_ip, host_port)
    );
    CREATE INDEX published_by_container ON published_ports(container_id);
    "#,
    // 6: containerd snapshots served by `strata snapshotter`
    // (src/snapshotter/records.rs). A committed snapshot names its layer,
    // which pins it against gc; kind is containerd's (1 view, 2 active,
    // 3 committed); times are nanoseconds since the epoch.
    r#"
    CREATE TABLE snapshots (
        id         INTEGER PRIMARY KEY,
        key        TEXT NOT NULL UNIQUE,
        kind       INTEGER NOT NULL,
        parent_id  INTEGER REFERENCES snapshots(id),
        layer_id   INTEGER REFERENCES layers(id),
        labels     TEXT NOT NULL DEFAULT '{}',
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        size       INTEGER NOT NULL DEFAULT 0,
        inodes     INTEGER NOT NULL DEFAULT 0,
        pid        INTEGER
    );
    CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
    CREATE INDEX snapshots_by_layer ON snapshots(layer_id) WHERE layer_id IS NOT NULL;
    "#,
    // 7: the event log (src/events/): the last `events::MAX_EVENTS`
    // events, in the order they were recorded (`seq` never reused).
    r#"
    CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        time_nano  INTEGER NOT NULL,
        type       TEXT NOT NULL,
        action     TEXT NOT NULL,
        actor_id   TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_by_time ON events(time_nano);
    "#,
    // 8: write-behind batches (src/store/flush.rs): the files and blobs
    // (32-byte digests, concatenated) a publish added before they were
    // flushed, and the boot that wrote them; `id` never reused, so
    // `locks/flushed` can name the last one flushed.
    r#"
    CREATE TABLE unflushed (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        boot_id TEXT NOT NULL,
        files   BLOB NOT NULL,
        blobs   BLOB NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    // The common case, an up-to-date store, takes no write lock.
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    // Every step in one transaction: a new store's schema costs one
    // commit (one fsync) rather than one per step, and an upgrade that
    // fails leaves the store at the version it had.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "store schema version {version} is newer than this strata supports ({SCHEMA_VERSION}); upgrade strata"
            )),
        ));
    }
    if version == SCHEMA_VERSION {
        // Another process migrated it meanwhile.
        return Ok(());
    }
    while version < SCHEMA_VERSION {
        tx.execute_batch(MIGRATIONS[version as usize])?;
        if version + 1 == 3 {
            crate::image::dir_index::backfill(&tx)?;
        }
        version += 1;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    fn has_table(conn: &Connection, name: &str) -> bool {
        conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }

    #[test]
    fn a_new_store_gets_every_step_and_a_second_migrate_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        assert!(has_table(&conn, "unflushed"));
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn an_upgrade_that_fails_leaves_the_store_at_its_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        // Schema 2, with a table in the way of step 4 (after step 3 worked).
        conn.execute_batch("PRAGMA user_version = 2; CREATE TABLE build_cache (x);")
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("build_cache"), "{err}");
        assert_eq!(version(&conn), 2);
        // Step 3's table and column were rolled back with the rest.
        assert!(!has_table(&conn, "implicit_dirs"));
        let dir_len: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('entries') WHERE name = 'dir_len'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(dir_len, 0);
        // With the obstacle gone, the same store upgrades.
        conn.execute_batch("DROP TABLE build_cache").unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_store_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("upgrade strata"), "{err}");
        assert_eq!(version(&conn), SCHEMA_VERSION + 1);
    }
}
