//! The event log: what `strata events` shows. Every command and every
//! monitor records Docker's events (Type, Action, Actor.ID,
//! Actor.Attributes, time) in the store's `events` table (schema 7).
//!
//! Guarantees: the log keeps the last [`MAX_EVENTS`] events (older ones
//! are deleted by the insert that passes the bound); `seq` only grows, so
//! a follower that remembers the last `seq` it saw misses nothing that is
//! still kept. Recording never fails the command that records: a store
//! that cannot take the row is logged as a warning. Concurrent writers
//! are serialised by SQLite (WAL, the store's busy timeout).

mod filter;
mod time;

pub use filter::{EventFilter, FilterError};
pub use time::{parse_timestamp, TimeError};

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::store::{Store, StoreError};

/// How many events the store keeps (Docker's daemon keeps 1,000 in
/// memory; strata keeps more, on disk).
pub const MAX_EVENTS: i64 = 10_000;

/// One event, as Docker's API `events.Message` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its place in the log.
    pub seq: i64,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
    /// `container`, `image`, `volume`, `network`.
    pub kind: String,
    pub action: String,
    pub actor_id: String,
    pub attributes: BTreeMap<String, String>,
}

/// Records an event now. A failure is logged, never returned: the
/// command that did the thing has done it.
pub fn record(
    store: &Store,
    kind: &str,
    action: &str,
    actor_id: &str,
    attributes: BTreeMap<String, String>,
) {
    if let Err(e) = try_record(store, kind, action, actor_id, &attributes) {
        tracing::warn!("recording the {kind} {action} event of {actor_id}: {e}");
    }
}

fn try_record(
    store: &Store,
    kind: &str,
    action: &str,
    actor_id: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    let nanos = now
        .timestamp_nanos_opt()
        .unwrap_or_else(|| now.timestamp().saturating_mul(1_000_000_000));
    let attributes = serde_json::to_string(attributes).unwrap_or_else(|_| "{}".into());
    // Docker keeps events in memory only; here they are rows committed
    // without an fsync (Store::relaxed), so `run` pays none for them.
    store
        .relaxed(|| -> rusqlite::Result<()> {
            let conn = store.conn();
            conn.prepare_cached(
                "INSERT INTO events (time_nano, type, action, actor_id, attributes) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(rusqlite::params![nanos, kind, action, actor_id, attributes])?;
            let seq = conn.last_insert_rowid();
            if seq > MAX_EVENTS {
                // The oldest beyond the bound; cheap (rowid range).
                conn.prepare_cached("DELETE FROM events WHERE seq <= ?1")?
                    .execute([seq - MAX_EVENTS])?;
            }
            Ok(())
        })
        .map_err(|e| store.db_err(e))?;
    Ok(())
}

/// Records an image event: Docker's actor is the image ID (or, for
/// `pull` and `push`, the reference), with the image's name.
pub fn record_image(store: &Store, actor_id: &str, name: &str, action: &str) {
    let attributes = BTreeMap::from([("name".to_string(), name.to_string())]);
    record(store, "image", action, actor_id, attributes);
}

/// The kept events after `after_seq` whose time is in `[since, until]`
/// (nanoseconds), oldest first.
pub fn list(
    store: &Store,
    after_seq: i64,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<Event>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare_cached(
            "SELECT seq, time_nano, type, action, actor_id, attributes FROM events \
             WHERE seq > ?1 AND time_nano >= ?2 AND time_nano <= ?3 ORDER BY seq",
        )
        .map_err(|e| store.db_err(e))?;
    let rows = stmt
        .query_map(
            rusqlite::params![after_seq, since.unwrap_or(0), until.unwrap_or(i64::MAX)],
            |r| {
                let attributes: String = r.get(5)?;
                Ok(Event {
                    seq: r.get(0)?,
                    time_nano: r.get(1)?,
                    kind: r.get(2)?,
                    action: r.get(3)?,
                    actor_id: r.get(4)?,
                    attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                })
            },
        )
        .map_err(|e| store.db_err(e))?;
    rows.collect::<Result<_, _>>().map_err(|e| store.db_err(e))
}

/// The last `seq` recorded (0 for none): where a follower starts.
pub fn last_seq(store: &Store) -> Result<i64, StoreError> {
    store
        .conn()
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .map_err(|e| store.db_err(e))
}

impl Event {
    /// The JSON Docker 20.10's API sends (`docker events --format
    /// '{{json .}}'`): the deprecated `status`, `id` and `from` too, for
    /// container and image events.
    pub fn to_message(&self) -> Value {
        let mut message = serde_json::Map::new();
        if self.kind == "container" || self.kind == "image" {
            message.insert("status".into(), json!(self.action));
            message.insert("id".into(), json!(self.actor_id));
            if let Some(image) = self
                .attributes
                .get("image")
                .filter(|_| self.kind == "container")
            {
                message.insert("from".into(), json!(image));
            }
        }
        message.insert("Type".into(), json!(self.kind));
        message.insert("Action".into(), json!(self.action));
        message.insert(
            "Actor".into(),
            json!({"ID": self.actor_id, "Attributes": self.attributes}),
        );
        message.insert("scope".into(), json!("local"));
        message.insert("time".into(), json!(self.time_nano / 1_000_000_000));
        message.insert("timeNano".into(), json!(self.time_nano));
        Value::Object(message)
    }

    /// The fields a `--format` template names, as Go's `events.Message`
    /// has them (`.Status`, `.ID`, `.From`, `.Type`, `.Action`,
    /// `.Actor.ID`, `.Actor.Attributes`, `.Scope`, `.Time`, `.TimeNano`).
    pub fn to_template_value(&self) -> Value {
        let legacy = self.kind == "container" || self.kind == "image";
        let from = if self.kind == "container" {
            self.attributes.get("image").cloned().unwrap_or_default()
        } else {
            String::new()
        };
        json!({
            "Status": if legacy { self.action.as_str() } else { "" },
            "ID": if legacy { self.actor_id.as_str() } else { "" },
            "From": from,
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": self.attributes},
            "Scope": "local",
            "Time": self.time_nano / 1_000_000_000,
            "TimeNano": self.time_nano,
        })
    }

    /// Docker's line: `TIME TYPE ACTION ID (k=v, ...)`, the time in the
    /// local zone with nanoseconds (Go's RFC3339NanoFixed), the
    /// attributes sorted by key.
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{} {} {} {}",
            format_time(self.time_nano),
            self.kind,
            self.action,
            self.actor_id
        );
        if !self.attributes.is_empty() {
            let attrs: Vec<String> = self
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line.push_str(&format!(" ({})", attrs.join(", ")));
        }
        line
    }
}

/// Go's `2006-01-02T15:04:05.000000000Z07:00` in the local zone.
pub fn format_time(time_nano: i64) -> String {
    use chrono::TimeZone;
    let utc = chrono::Utc.timestamp_nanos(time_nano);
    let local = utc.with_timezone(&chrono::Local);
    if local.offset().local_minus_utc() == 0 {
        utc.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    } else {
        local.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            seq: 1,
            time_nano: 1_606_876_000_123_456_789,
            kind: "container".into(),
            action: "die".into(),
            actor_id: "abc".into(),
            attributes: [("name", "x"), ("image", "busybox"), ("exitCode", "3")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn message_has_docker_fields() {
        let m = event().to_message();
        assert_eq!(m["status"], "die");
        assert_eq!(m["from"], "busybox");
        assert_eq!(m["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(m["time"], 1_606_876_000i64);
        assert_eq!(m["scope"], "local");
    }

    #[test]
    fn line_sorts_attributes() {
        let line = event().to_line();
        assert!(
            line.ends_with(" container die abc (exitCode=3, image=busybox, name=x)"),
            "{line}"
        );
        assert!(line.contains(".123456789"), "{line}");
    }
}
