//! The container events every verb and the monitor record
//! (`crate::events`), with Docker's attributes: the container's labels,
//! `image` (as the user named it) and `name`, and what the action adds
//! (`exitCode` for `die`, `signal` for `kill`, ...).

use std::collections::BTreeMap;

use super::records::Container;
use crate::store::Store;

/// Records `action` for the container now; never fails the caller.
pub fn record_container_event(
    store: &Store,
    container: &Container,
    action: &str,
    extra: &[(&str, String)],
) {
    let mut attributes: BTreeMap<String, String> = container.spec.labels.clone();
    attributes.insert("image".into(), container.spec.image_name.clone());
    attributes.insert("name".into(), container.name.clone());
    for (k, v) in extra {
        attributes.insert((*k).to_string(), v.clone());
    }
    crate::events::record(store, "container", action, &container.id, attributes);
}

/// Records a volume event (`create`, `mount`, `unmount`, `destroy`).
pub fn record_volume_event(store: &Store, name: &str, action: &str, extra: &[(&str, String)]) {
    let mut attributes = BTreeMap::new();
    attributes.insert("driver".to_string(), "local".to_string());
    for (k, v) in extra {
        attributes.insert((*k).to_string(), v.clone());
    }
    crate::events::record(store, "volume", action, name, attributes);
}
