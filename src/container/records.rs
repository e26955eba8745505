//! Container records in the store: creating, finding (by name, full ID or
//! unique ID prefix), listing, updating state, renaming and deleting.
//!
//! State changes go through [`update_state`], which reads and writes the
//! row in one IMMEDIATE transaction, so the monitor and a command never
//! overwrite each other's change.
//!
//! Container rows are written with `synchronous=NORMAL` (see [`Store::relaxed`]):
//! in WAL mode that keeps the database consistent through a crash but may
//! lose the last state changes on power loss, when every container process
//! is gone anyway and the next command reaps what the rows still claim.
//! It saves the fsyncs that dominated `run`'s start-up on this disk.
//! Image and layer records keep `synchronous=FULL`.

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::error::ContainerError;
use super::spec::{ContainerSpec, ContainerState};
use crate::store::Store;

/// A container as recorded.
#[derive(Debug, Clone)]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    /// Without Docker's leading slash.
    pub name: String,
    /// `sha256:<hex>`.
    pub image_id: String,
    pub created_at: String,
    pub spec: ContainerSpec,
    pub state: ContainerState,
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// The container's directory: `<root>/containers/<id>`.
pub fn container_dir(store: &Store, id: &str) -> PathBuf {
    store.root().join("containers").join(id)
}

/// A new random 64-hex container ID.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Docker's rule for container and volume names:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A container name by [`is_valid_name`].
pub fn validate_name(name: &str) -> Result<(), ContainerError> {
    if !is_valid_name(name) {
        return Err(ContainerError::InvalidName(name.to_string()));
    }
    Ok(())
}

// Generated names are `adjective_noun`, as Docker's, from word lists of
// strata's own: 126 x 248 = 31,248 names.
const ADJECTIVES: &str = "\
    amber ancient arctic azure balmy bitter blazing bold bouncy brave breezy bright brisk \
    broad calm candid cheerful chilly clear cloudy coastal copper cosmic crimson crisp curly \
    dappled daring dawning deep distant dusky dusty eager early eastern electric emerald \
    endless fading fancy fierce floral foggy fragrant frozen gentle gilded glassy gleaming \
    golden grand hardy hazel hidden hollow humble icy indigo ivory jade jolly keen lively \
    lofty lunar marbled mellow merry misty mossy muddy nimble noble northern oaken ochre \
    pale patient plucky polar proud quiet radiant rapid restless rising rocky rolling rosy \
    rugged rustic sandy scarlet shady shining silent silver sleek snowy solar southern \
    sparkling spry starry steady steep stormy sunny swift tidal tranquil twilight velvet \
    verdant vivid wandering warm western whispering wild windy wintry woven young zesty";
const NOUNS: &str = "\
    aardvark albatross alder alpaca anchovy anemone antelope armadillo aspen avocet axolotl \
    badger barnacle basil beaver beech beetle birch bison bittern bluebell boar bobcat \
    bonobo bramble buffalo bullfinch bumblebee buzzard camel capybara caracal cardinal \
    caribou carp cedar chamois cheetah chestnut chickadee chipmunk cicada clover cobra \
    condor coral cormorant cougar coyote crane cricket crocus crow cuckoo curlew cypress \
    daisy dingo dolphin dormouse dove dragonfly duck dunlin eagle egret eider elk elm ermine \
    falcon fennel fern ferret finch firefly flamingo flounder fox foxglove gannet gazelle \
    gecko gerbil gibbon ginkgo giraffe goldfinch goose gopher gorilla grouse gull hamster \
    hare harrier hawk hazel hedgehog heron herring hickory hippo hornet hyena ibex ibis \
    iguana impala jackal jaguar jay jellyfish juniper kestrel kingfisher kite kiwi koala \
    krill ladybird lapwing lark larch lemming lemur leopard lichen lily limpet linden linnet \
    lizard llama lobster locust lotus lynx macaw magpie mallard mammoth manatee mantis maple \
    marmot marten meerkat merlin mink minnow mole mongoose moose moth mussel narwhal newt \
    nightjar nuthatch ocelot octopus okapi olive orca oriole osprey ostrich otter owl oyster \
    panda pangolin panther parrot partridge pelican penguin petrel pheasant pika pike pine \
    plover poplar porcupine possum puffin puma quail quokka rabbit raccoon raven redwood \
    reindeer robin rook rowan sable salmon sandpiper sardine seahorse seal sequoia shrew \
    shrike skua skylark sloth snipe sparrow spruce squid squirrel starling stoat stork \
    sturgeon swallow swan swift sycamore tamarin tapir tern thistle thrush tiger toucan \
    trout tuna turtle viper vole vulture wagtail walrus warbler weasel whale willow wolf \
    wombat wren yak zebra";

/// The `index`th word of a list (modulo its length).
fn word(list: &'static str, index: usize) -> &'static str {
    let count = list.split_whitespace().count();
    list.split_whitespace()
        .nth(index % count)
        .unwrap_or("strata")
}

/// A random `adjective_noun` name. From the second attempt on (the last
/// name was taken) a number follows, as Docker does.
pub fn random_name(attempt: u32) -> String {
    let a = word(ADJECTIVES, rand::random());
    let n = word(NOUNS, rand::random());
    match attempt {
        0 => format!("{a}_{n}"),
        1..=4 => format!("{a}_{n}{}", rand::random::<u32>() % 10),
        _ => format!("{a}_{n}{}", rand::random::<u32>() % 10_000),
    }
}

/// Inserts a new container record under a generated name: a name taken
/// meanwhile (by a concurrent create, say) is a uniqueness conflict in
/// SQLite, and another name is tried; `container.name` is the one used.
pub fn insert_with_generated_name(
    store: &Store,
    container: &mut Container,
) -> Result<(), ContainerError> {
    const ATTEMPTS: u32 = 20;
    let mut attempt = 0;
    loop {
        container.name = random_name(attempt);
        match insert_container(store, container) {
            Err(ContainerError::NameInUse { .. }) if attempt + 1 < ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// Inserts a new container record.
pub fn insert_container(store: &Store, container: &Container) -> Result<(), ContainerError> {
    store.relaxed(|| insert_row(store, container))
}

fn insert_row(store: &Store, container: &Container) -> Result<(), ContainerError> {
    let spec = serde_json::to_string(&container.spec).map_err(|e| corrupt(&container.id, e))?;
    let state = serde_json::to_string(&container.state).map_err(|e| corrupt(&container.id, e))?;
    let result = store.conn().execute(
        "INSERT INTO containers(id, name, image_id, created_at, spec, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![container.id, container.name, container.image_id, container.created_at, spec, state],
    );
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            let id: String = store
                .conn()
                .query_row(
                    "SELECT id FROM containers WHERE name = ?1",
                    [&container.name],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or_default();
            Err(ContainerError::NameInUse {
                name: container.name.clone(),
                id,
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn corrupt(id: &str, e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    }
}

const COLUMNS: &str = "id, name, image_id, created_at, spec, state";

fn from_row(
    r: &rusqlite::Row,
) -> rusqlite::Result<(String, String, String, String, String, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn parse_row(
    row: (String, String, String, String, String, String),
) -> Result<Container, ContainerError> {
    let (id, name, image_id, created_at, spec, state) = row;
    let spec = serde_json::from_str(&spec).map_err(|e| corrupt(&id, e))?;
    let state = serde_json::from_str(&state).map_err(|e| corrupt(&id, e))?;
    Ok(Container {
        id,
        name,
        image_id,
        created_at,
        spec,
        state,
    })
}

/// Every container, newest first.
pub fn list_containers(store: &Store) -> Result<Vec<Container>, ContainerError> {
    let mut stmt = store.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM containers ORDER BY created_at DESC"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(parse_row(row?)?);
    }
    Ok(out)
}

/// One container by its full ID.
pub fn get_container(store: &Store, id: &str) -> Result<Container, ContainerError> {
    let row = store
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?;
    parse_row(row.ok_or_else(|| ContainerError::NotFound(id.to_string()))?)
}

/// Resolves what a user typed as Docker does: a full ID, then a name
/// (with or without a leading `/`), then a unique ID prefix.
pub fn find_container(store: &Store, name_or_id: &str) -> Result<Container, ContainerError> {
    let conn = store.conn();
    let name = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
    if name.is_empty() {
        return Err(ContainerError::NotFound(name_or_id.to_string()));
    }
    let exact: Option<String> = conn
        .query_row(
            "SELECT id FROM containers WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = exact {
        return get_container(store, &id);
    }
    if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        let lower = name.to_ascii_lowercase();
        let mut stmt = conn.prepare("SELECT id FROM containers WHERE id >= ?1 AND id < ?2")?;
        let ids = stmt
            .query_map(params![lower, format!("{lower}g")], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        match ids.len() {
            0 => {}
            1 => return get_container(store, &ids[0]),
            count => {
                return Err(ContainerError::Ambiguous {
                    name: name_or_id.to_string(),
                    count,
                })
            }
        }
    }
    Err(ContainerError::NotFound(name_or_id.to_string()))
}

/// Reads the state, lets `change` modify it, and writes it back, all in
/// one IMMEDIATE transaction. Returns what `change` returned.
pub fn update_state<T>(
    store: &Store,
    id: &str,
    change: impl FnOnce(&mut ContainerState) -> Result<T, ContainerError>,
) -> Result<T, ContainerError> {
    store.relaxed(|| update_row(store, id, change))
}

fn update_row<T>(
    store: &Store,
    id: &str,
    change: impl FnOnce(&mut ContainerState) -> Result<T, ContainerError>,
) -> Result<T, ContainerError> {
    let tx = rusqlite::Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate)?;
    let text: Option<String> = tx
        .query_row("SELECT state FROM containers WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    let text = text.ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
    let mut state: ContainerState = serde_json::from_str(&text).map_err(|e| corrupt(id, e))?;
    let result = change(&mut state)?;
    let text = serde_json::to_string(&state).map_err(|e| corrupt(id, e))?;
    tx.execute(
        "UPDATE containers SET state = ?1 WHERE id = ?2",
        params![text, id],
    )?;
    tx.commit()?;
    Ok(result)
}

/// Reads the spec, lets `change` modify it, and writes it back in one
/// IMMEDIATE transaction (`update`).
pub fn update_spec(
    store: &Store,
    id: &str,
    change: impl FnOnce(&mut ContainerSpec) -> Result<(), ContainerError>,
) -> Result<ContainerSpec, ContainerError> {
    store.relaxed(|| {
        let tx =
            rusqlite::Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate)?;
        let text: Option<String> = tx
            .query_row("SELECT spec FROM containers WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let text = text.ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
        let mut spec: ContainerSpec = serde_json::from_str(&text).map_err(|e| corrupt(id, e))?;
        change(&mut spec)?;
        let text = serde_json::to_string(&spec).map_err(|e| corrupt(id, e))?;
        tx.execute(
            "UPDATE containers SET spec = ?1 WHERE id = ?2",
            params![text, id],
        )?;
        tx.commit()?;
        Ok(spec)
    })
}

/// Renames a container.
pub fn rename_container(
    store: &Store,
    name_or_id: &str,
    new_name: &str,
) -> Result<(), ContainerError> {
    let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
    validate_name(new_name)?;
    let container = find_container(store, name_or_id)?;
    let result = store.conn().execute(
        "UPDATE containers SET name = ?1 WHERE id = ?2",
        params![new_name, container.id],
    );
    match result {
        Ok(_) => {
            let renamed = Container {
                name: new_name.to_string(),
                ..container.clone()
            };
            super::events::record_container_event(
                store,
                &renamed,
                "rename",
                &[("oldName", format!("/{}", container.name))],
            );
            Ok(())
        }
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            let id: String = store
                .conn()
                .query_row(
                    "SELECT id FROM containers WHERE name = ?1",
                    [new_name],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or_default();
            Err(ContainerError::NameInUse {
                name: new_name.to_string(),
                id,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a container's row (its directory is the caller's business).
pub fn delete_record(store: &Store, id: &str) -> Result<(), ContainerError> {
    let removed = get_container(store, id).ok();
    store.relaxed(|| {
        store
            .conn()
            .execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok::<(), ContainerError>(())
    })?;
    // Its endpoints (and any port rows a killed monitor left).
    crate::network::forget_container(store, id)?;
    if let Some(c) = removed {
        super::events::record_container_event(store, &c, "destroy", &[]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_and_many() {
        // Docker's generator has about 25,000 names; ours at least as many.
        fn words(list: &str) -> Vec<&str> {
            list.split_whitespace().collect()
        }
        let (adjectives, nouns) = (words(ADJECTIVES), words(NOUNS));
        assert!(adjectives.len() * nouns.len() > 25_000);
        for list in [adjectives, nouns] {
            let unique: std::collections::HashSet<_> = list.iter().collect();
            assert_eq!(unique.len(), list.len());
            assert!(list
                .iter()
                .all(|w| w.bytes().all(|b| b.is_ascii_lowercase())));
        }
        for attempt in 0..10 {
            let name = random_name(attempt);
            validate_name(&name).unwrap();
            assert_eq!(name.matches('_').count(), 1, "{name}");
            assert_eq!(attempt == 0, !name.ends_with(|c: char| c.is_ascii_digit()));
        }
    }

    fn sample(store: &Store, id: &str, name: &str) -> Container {
        let _ = store;
        Container {
            id: id.to_string(),
            name: name.to_string(),
            image_id: "sha256:00".into(),
            created_at: super::super::spec::now_rfc3339(),
            spec: ContainerSpec::default(),
            state: ContainerState::default(),
        }
    }

    fn store_with_image() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.conn().execute_batch(
            "INSERT INTO blobs(digest,size) VALUES ('sha256:b',1);
             INSERT INTO images(id, manifest_digest, config_digest, size, added_at) VALUES ('sha256:00','sha256:b','sha256:b',0,0);",
        ).unwrap();
        (dir, store)
    }

    #[test]
    fn lookup_by_name_id_and_unique_prefix() {
        let (_dir, store) = store_with_image();
        let a = format!("abc{}", "0".repeat(61));
        let b = format!("abd{}", "1".repeat(61));
        insert_container(&store, &sample(&store, &a, "web")).unwrap();
        insert_container(&store, &sample(&store, &b, "db")).unwrap();
        assert_eq!(find_container(&store, "web").unwrap().id, a);
        assert_eq!(find_container(&store, "/db").unwrap().id, b);
        assert_eq!(find_container(&store, "abc").unwrap().id, a);
        assert_eq!(find_container(&store, &b).unwrap().name, "db");
        assert!(matches!(
            find_container(&store, "ab"),
            Err(ContainerError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            find_container(&store, "abe"),
            Err(ContainerError::NotFound(_))
        ));
        assert!(matches!(
            insert_container(&store, &sample(&store, &new_id(), "web")),
            Err(ContainerError::NameInUse { .. })
        ));
        rename_container(&store, "web", "front").unwrap();
        assert_eq!(find_container(&store, "front").unwrap().id, a);
        assert!(matches!(
            rename_container(&store, "front", "db"),
            Err(ContainerError::NameInUse { .. })
        ));
        assert!(rename_container(&store, "front", "-bad").is_err());
    }

    #[test]
    fn state_updates_are_read_modify_write() {
        let (_dir, store) = store_with_image();
        let id = new_id();
        assert_eq!(id.len(), 64);
        insert_container(&store, &sample(&store, &id, "x1")).unwrap();
        update_state(&store, &id, |s| {
            s.exit_code = 3;
            Ok(())
        })
        .unwrap();
        assert_eq!(get_container(&store, &id).unwrap().state.exit_code, 3);
        delete_record(&store, &id).unwrap();
        assert!(get_container(&store, &id).is_err());
    }
}
