//! Registry I/O settings from the store's `config.json`:
//! `{"registry": {"connect_timeout": 30, "read_timeout": 60, "download_attempts": 5}}`
//! (seconds, and attempts per request or blob including the first).
//!
//! Defaults follow Docker's daemon where it has one: its registry
//! transport dials with a 30 s timeout and a 30 s TCP keep-alive, and a
//! layer download is tried 5 times (`--max-download-attempts`). Docker
//! sets no read timeout, so a registry that goes silent mid-body hangs its
//! pull for ever; strata gives up on a read after `read_timeout` seconds
//! without a byte and retries (see docs/store.md).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ClientOptions;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// Seconds to establish a TCP connection (and TLS handshake).
    pub connect_timeout: u64,
    /// Seconds without a byte of the answer (headers or body) before the
    /// request counts as stalled.
    pub read_timeout: u64,
    /// Attempts per request or blob (the first included).
    pub download_attempts: u32,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            connect_timeout: 30,
            read_timeout: 60,
            download_attempts: 5,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    registry: RegistrySettings,
}

impl RegistrySettings {
    /// The settings of a store root (defaults when it has no `config.json`
    /// or it has no `registry` key).
    pub fn for_root(root: &Path) -> Result<RegistrySettings, String> {
        let path = root.join("config.json");
        let settings = match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice::<ConfigFile>(&data)
                .map(|c| c.registry)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistrySettings::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        settings
            .validate()
            .map_err(|e| format!("{}: registry: {e}", path.display()))?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        if self.connect_timeout == 0 || self.read_timeout == 0 {
            return Err("timeouts must be at least 1 second".into());
        }
        if self.download_attempts == 0 {
            return Err("download_attempts must be at least 1".into());
        }
        Ok(())
    }

    /// `options` with these settings.
    pub fn apply(&self, options: ClientOptions) -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(self.connect_timeout),
            read_timeout: Duration::from_secs(self.read_timeout),
            attempts: self.download_attempts,
            ..options
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_config_json() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            RegistrySettings::for_root(dir.path()).unwrap(),
            RegistrySettings::default()
        );
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"limits": {}, "registry": {"read_timeout": 2}}"#,
        )
        .unwrap();
        let settings = RegistrySettings::for_root(dir.path()).unwrap();
        assert_eq!(settings.read_timeout, 2);
        assert_eq!(settings.connect_timeout, 30);
        let options = settings.apply(ClientOptions::default());
        assert_eq!(options.read_timeout, Duration::from_secs(2));
        std::fs::write(&config, r#"{"registry": {"read_timeout": 0}}"#).unwrap();
        let err = RegistrySettings::for_root(dir.path()).unwrap_err();
        assert!(err.contains("at least 1 second"), "{err}");
        std::fs::write(&config, r#"{"registry": {"read_timout": 3}}"#).unwrap();
        let err = RegistrySettings::for_root(dir.path()).unwrap_err();
        assert!(err.contains("read_timout"), "{err}");
    }
}
