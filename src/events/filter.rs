//! `events --filter`: Docker's rules (moby daemon/events/filter.go).
//! Values of one key are alternatives; different keys must all match.
//! `container`, `volume` and `network` match the actor's ID or name by
//! prefix; `image` matches exactly the image ID or name, with or without
//! its tag; `event` matches exactly, or by prefix when it names
//! `exec_create`, `exec_start` or `health_status` (whose actions carry
//! the command or status after a colon); `label` is `KEY` or
//! `KEY=VALUE`, and every one given must match.

use std::collections::BTreeMap;

use super::Event;

/// The keys `events --filter` takes.
const KEYS: &[&str] = &[
    "type",
    "event",
    "container",
    "image",
    "label",
    "network",
    "volume",
    "scope",
];

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("Invalid filter '{0}'")]
    Invalid(String),
    #[error("bad format of filter (expected name=value): {0}")]
    Format(String),
}

/// Parsed `--filter` values.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    by_key: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    pub fn parse(filters: &[String]) -> Result<EventFilter, FilterError> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in filters {
            let (key, value) = f
                .split_once('=')
                .ok_or_else(|| FilterError::Format(f.clone()))?;
            let key = key.trim().to_ascii_lowercase();
            if !KEYS.contains(&key.as_str()) {
                return Err(FilterError::Invalid(key));
            }
            by_key.entry(key).or_default().push(value.to_string());
        }
        Ok(EventFilter { by_key })
    }

    fn exact(&self, key: &str, value: &str) -> bool {
        self.by_key
            .get(key)
            .is_none_or(|vs| vs.iter().any(|v| v == value))
    }

    fn values(&self, key: &str) -> Option<&Vec<String>> {
        self.by_key.get(key)
    }

    fn fuzzy_any(&self, key: &str, candidates: &[&str]) -> bool {
        self.values(key).is_none_or(|vs| {
            vs.iter().any(|v| {
                candidates
                    .iter()
                    .any(|c| !c.is_empty() && c.starts_with(v.as_str()))
            })
        })
    }

    fn name_of<'a>(&self, event: &'a Event, kind: &str) -> Option<&'a str> {
        (event.kind == kind).then(|| event.attributes.get("name").map(String::as_str))?
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.matches_event(event)
            && self.exact("type", &event.kind)
            && self.exact("scope", "local")
            && self.matches_actor(event, "container")
            && self.matches_actor(event, "volume")
            && self.matches_actor(event, "network")
            && self.matches_image(event)
            && self.matches_labels(event)
    }

    fn matches_event(&self, event: &Event) -> bool {
        let Some(wanted) = self.values("event") else {
            return true;
        };
        let fuzzy = wanted
            .iter()
            .any(|w| matches!(w.as_str(), "exec_create" | "exec_start" | "health_status"));
        wanted
            .iter()
            .any(|w| event.action == *w || (fuzzy && event.action.starts_with(w.as_str())))
    }

    /// Docker's fuzzyMatchName: the actor's ID or its `name` attribute.
    /// An event of another type matches a `container=` filter only
    /// through those too, so it does not.
    fn matches_actor(&self, event: &Event, kind: &str) -> bool {
        if self.values(kind).is_none() {
            return true;
        }
        if event.kind != kind {
            // A volume or network event names its container in an
            // attribute (mount, connect): Docker matches only the actor.
            return false;
        }
        let name = self.name_of(event, kind).unwrap_or("");
        self.fuzzy_any(kind, &[event.actor_id.as_str(), name])
    }

    fn matches_image(&self, event: &Event) -> bool {
        let Some(wanted) = self.values("image") else {
            return true;
        };
        let attr = if event.kind == "image" {
            "name"
        } else {
            "image"
        };
        let name = event.attributes.get(attr).map(String::as_str).unwrap_or("");
        let candidates = [
            event.actor_id.as_str(),
            name,
            strip_tag(&event.actor_id),
            strip_tag(name),
        ];
        wanted
            .iter()
            .any(|w| candidates.iter().any(|c| !c.is_empty() && c == w))
    }

    fn matches_labels(&self, event: &Event) -> bool {
        let Some(wanted) = self.values("label") else {
            return true;
        };
        wanted.iter().all(|w| match w.split_once('=') {
            Some((k, v)) => event.attributes.get(k).is_some_and(|a| a == v),
            None => event.attributes.contains_key(w.as_str()),
        })
    }
}

/// `name:tag` without its tag (not a registry's port).
fn strip_tag(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap_or(reference);
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => &reference[..i],
        _ => reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            seq: 1,
            time_nano: 0,
            kind: kind.into(),
            action: action.into(),
            actor_id: id.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn f(list: &[&str]) -> EventFilter {
        EventFilter::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn docker_rules() {
        let die = ev(
            "container",
            "die",
            "abcdef",
            &[("name", "web"), ("image", "busybox:latest"), ("team", "a")],
        );
        assert!(f(&[]).matches(&die));
        assert!(f(&["container=web"]).matches(&die));
        assert!(f(&["container=abc"]).matches(&die));
        assert!(!f(&["container=other"]).matches(&die));
        assert!(f(&["event=die", "event=start"]).matches(&die));
        assert!(!f(&["event=di"]).matches(&die));
        assert!(f(&["image=busybox"]).matches(&die));
        assert!(f(&["label=team=a", "label=name"]).matches(&die));
        assert!(!f(&["label=team=b"]).matches(&die));
        assert!(!f(&["type=image"]).matches(&die));
        assert!(!f(&["volume=v"]).matches(&die));
        let exec = ev("container", "exec_start: sh -c true", "abcdef", &[]);
        assert!(f(&["event=exec_start"]).matches(&exec));
        assert!(EventFilter::parse(&["nope=1".into()]).is_err());
        assert!(EventFilter::parse(&["container".into()]).is_err());
        assert_eq!(strip_tag("localhost:5000/a:1"), "localhost:5000/a");
        assert_eq!(strip_tag("localhost:5000/a"), "localhost:5000/a");
    }
}
