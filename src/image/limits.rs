//! Limits on what a layer stream may contain, so that a hostile or broken
//! layer fails with a clear error instead of exhausting the machine.
//!
//! Defaults suit real images; `<root>/config.json` may override any of
//! them: `{"limits": {"max_layer_size": 1073741824, ...}}`.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest path (bytes) an entry may have.
    pub max_path_len: usize,
    /// Largest PAX extended header or GNU long name/link record (bytes).
    pub max_pax_size: u64,
    /// Most entries one layer may hold.
    pub max_entries: u64,
    /// Largest uncompressed layer stream (bytes).
    pub max_layer_size: u64,
    /// Highest uncompressed/compressed ratio, checked once the
    /// uncompressed stream passes `ratio_grace` bytes.
    pub max_compression_ratio: u64,
    pub ratio_grace: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_path_len: 4096,
            max_pax_size: 1 << 20,
            max_entries: 2_000_000,
            max_layer_size: 64 << 30,
            max_compression_ratio: 200,
            ratio_grace: 128 << 20,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    limits: Limits,
}

impl Limits {
    /// The limits configured for a store root (defaults when it has no
    /// `config.json`).
    pub fn for_root(root: &Path) -> Result<Limits, String> {
        let path = root.join("config.json");
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice::<ConfigFile>(&data)
                .map(|c| c.limits)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Limits::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}
