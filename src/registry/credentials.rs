//! Registry credentials in Docker's `config.json`: `auths` entries
//! (base64 `user:password`), and the `credHelpers` / `credsStore`
//! helpers (`docker-credential-<name> get|store|erase`). The one client
//! setting strata reads from the same file is `detachKeys`.
//!
//! The file is rewritten atomically with mode 0600 and keeps every key
//! strata does not know.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::RegistryError;
use crate::reference::DEFAULT_DOMAIN;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Docker Hub's key in `auths`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker/config.json")
}

/// The key under which Docker files a registry's credentials.
pub fn server_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        DEFAULT_DOMAIN | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `https://host:port/v1/` -> `host:port`, as Docker matches `auths` keys.
fn key_host(key: &str) -> &str {
    let without_scheme = key.split_once("://").map(|(_, rest)| rest).unwrap_or(key);
    without_scheme.split('/').next().unwrap_or(without_scheme)
}

fn read_config(path: &Path) -> Result<Map<String, Value>, RegistryError> {
    let err = |reason: String| RegistryError::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::read(path) {
        Ok(data) if data.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(data) => match serde_json::from_slice::<Value>(&data)
            .map_err(|e| err(format!("not valid JSON: {e}")))?
        {
            Value::Object(map) => Ok(map),
            _ => Err(err("not a JSON object".into())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes the config atomically (temporary file, fsync, rename), mode 0600.
fn write_config(path: &Path, config: &Map<String, Value>) -> Result<(), RegistryError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err = |reason: String| RegistryError::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    let dir = path
        .parent()
        .ok_or_else(|| err("has no parent directory".into()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err(e.to_string()))?;
    let tmp = dir.join(format!(".config.json.{:016x}", rand::random::<u64>()));
    let data = serde_json::to_vec_pretty(config).map_err(|e| err(e.to_string()))?;
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&data)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e.to_string()));
    }
    Ok(())
}

/// The helper configured for a registry: `credHelpers` first, then `credsStore`.
fn helper_for(config: &Map<String, Value>, registry: &str) -> Option<String> {
    let key = server_key(registry);
    if let Some(Value::Object(helpers)) = config.get("credHelpers") {
        for (k, v) in helpers {
            if (k == &key || key_host(k) == key_host(&key))
                && v.as_str().is_some_and(|s| !s.is_empty())
            {
                return v.as_str().map(str::to_string);
            }
        }
    }
    config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The credentials stored for `registry` (a reference's domain), if any.
pub fn load_credentials(path: &Path, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let config = read_config(path)?;
    let key = server_key(registry);
    if let Some(Value::Object(auths)) = config.get("auths") {
        let entry = auths.get(&key).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| {
                    let host = key_host(k);
                    host == key_host(&key) || (is_docker_hub(host) && is_docker_hub(registry))
                })
                .map(|(_, v)| v)
        });
        if let Some(found) = entry.and_then(|e| decode_auth_entry(path, e).transpose()) {
            return found.map(Some);
        }
    }
    match helper_for(&config, registry) {
        Some(helper) => helper_get(&helper, &key),
        None => Ok(None),
    }
}

/// The client's default detach keys, `detachKeys` in the config (Docker's
/// syntax, unparsed); `None` if the file or the setting is absent.
pub fn configured_detach_keys(path: &Path) -> Result<Option<String>, RegistryError> {
    let err = |reason: String| RegistryError::ClientConfig {
        path: path.to_path_buf(),
        reason,
    };
    let config = read_config(path).map_err(|e| match e {
        RegistryError::Credentials { reason, .. } => err(reason),
        other => other,
    })?;
    match config.get("detachKeys") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(keys)) => Ok(Some(keys.clone()).filter(|k| !k.is_empty())),
        Some(other) => Err(err(format!("detachKeys is not a string: {other}"))),
    }
}

fn decode_auth_entry(path: &Path, entry: &Value) -> Result<Option<Credentials>, RegistryError> {
    let err = |reason: &str| RegistryError::Credentials {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| err("an \"auth\" entry is not valid base64"))?;
        let text = String::from_utf8(raw).map_err(|_| err("an \"auth\" entry is not UTF-8"))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| err("an \"auth\" entry is not user:password"))?;
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (
        entry.get("username").and_then(Value::as_str),
        entry.get("password").and_then(Value::as_str),
    ) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })),
        _ => Ok(None),
    }
}

/// Saves credentials for `registry` (through its helper if one is configured).
pub fn store_credentials(
    path: &Path,
    registry: &str,
    credentials: &Credentials,
) -> Result<(), RegistryError> {
    let mut config = read_config(path)?;
    let key = server_key(registry);
    if let Some(helper) = helper_for(&config, registry) {
        let input = serde_json::json!({"ServerURL": key, "Username": credentials.username, "Secret": credentials.password});
        run_helper(&helper, "store", &key, input.to_string().as_bytes())?;
        // Docker leaves an empty entry so the registry shows as logged in.
        set_auth_entry(&mut config, key, Value::Object(Map::new()));
    } else {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", credentials.username, credentials.password));
        set_auth_entry(&mut config, key, serde_json::json!({ "auth": auth }));
    }
    write_config(path, &config)
}

fn set_auth_entry(config: &mut Map<String, Value>, key: String, entry: Value) {
    let mut auths = match config.remove("auths") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    auths.insert(key, entry);
    config.insert("auths".to_string(), Value::Object(auths));
}

/// Removes the credentials for `registry`; false if there were none.
pub fn erase_credentials(path: &Path, registry: &str) -> Result<bool, RegistryError> {
    let mut config = read_config(path)?;
    let key = server_key(registry);
    let mut found = false;
    if let Some(Value::Object(auths)) = config.get_mut("auths") {
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| **k == key || key_host(k) == key_host(&key))
            .cloned()
            .collect();
        for k in keys {
            auths.remove(&k);
            found = true;
        }
    }
    if let Some(helper) = helper_for(&config, registry) {
        if run_helper(&helper, "erase", &key, key.as_bytes()).is_ok() {
            found = true;
        }
    }
    if found {
        write_config(path, &config)?;
    }
    Ok(found)
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credentials>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let output = match run_helper(helper, "get", key, key.as_bytes()) {
        Ok(out) => out,
        Err(RegistryError::CredentialHelper { reason, .. })
            if reason.contains("credentials not found") =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let answer: Answer =
        serde_json::from_slice(&output).map_err(|e| RegistryError::CredentialHelper {
            helper: helper.to_string(),
            server: key.to_string(),
            reason: format!("invalid answer: {e}"),
        })?;
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

fn run_helper(
    helper: &str,
    action: &str,
    key: &str,
    input: &[u8],
) -> Result<Vec<u8>, RegistryError> {
    let err = |reason: String| RegistryError::CredentialHelper {
        helper: helper.to_string(),
        server: key.to_string(),
        reason,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| err(e.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(if output.stdout.is_empty() {
            &output.stderr
        } else {
            &output.stdout
        });
        return Err(err(format!("{action}: {}", message.trim())));
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_reads_and_erases_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"auths":{},"psFormat":"table {{.ID}}"}"#).unwrap();
        let creds = Credentials {
            username: "alice".into(),
            password: "s3:cret".into(),
        };
        store_credentials(&path, "127.0.0.1:5000", &creds).unwrap();
        store_credentials(&path, "docker.io", &creds).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("psFormat"), "unknown keys are kept: {text}");
        assert!(text.contains(DOCKER_HUB_KEY));
        assert_eq!(
            load_credentials(&path, "127.0.0.1:5000").unwrap(),
            Some(creds.clone())
        );
        assert_eq!(load_credentials(&path, "docker.io").unwrap(), Some(creds));
        assert_eq!(load_credentials(&path, "other:5000").unwrap(), None);
        assert!(erase_credentials(&path, "127.0.0.1:5000").unwrap());
        assert!(!erase_credentials(&path, "127.0.0.1:5000").unwrap());
        assert_eq!(load_credentials(&path, "127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn matches_keys_with_scheme_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://reg.example:5000/v2/":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let found = load_credentials(&path, "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("u", "p")
        );
        std::fs::write(&path, r#"{"auths":{"reg.example":{"auth":"!!"}}}"#).unwrap();
        assert!(load_credentials(&path, "reg.example").is_err());
        assert_eq!(
            load_credentials(&dir.path().join("missing.json"), "reg.example").unwrap(),
            None
        );
    }

    #[test]
    fn reads_the_detach_keys_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(configured_detach_keys(&path).unwrap(), None);
        std::fs::write(&path, r#"{"auths":{},"detachKeys":"ctrl-a,x"}"#).unwrap();
        assert_eq!(
            configured_detach_keys(&path).unwrap().as_deref(),
            Some("ctrl-a,x")
        );
        std::fs::write(&path, r#"{"detachKeys":""}"#).unwrap();
        assert_eq!(configured_detach_keys(&path).unwrap(), None);
        std::fs::write(&path, r#"{"detachKeys":7}"#).unwrap();
        let e = configured_detach_keys(&path).unwrap_err().to_string();
        assert!(e.contains("detachKeys") && e.contains("config.json"), "{e}");
        std::fs::write(&path, "{").unwrap();
        let e = configured_detach_keys(&path).unwrap_err().to_string();
        assert!(
            e.contains("not valid JSON") && e.contains("config.json"),
            "{e}"
        );
    }

    #[test]
    fn uses_credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("docker-credential-fake");
        std::fs::write(
            &bin,
            "#!/bin/sh\nread server\ncase \"$1\" in get) [ \"$server\" = reg.example ] && printf '{\"ServerURL\":\"%s\",\"Username\":\"bob\",\"Secret\":\"pw\"}' \"$server\" || { echo 'credentials not found in native keychain'; exit 1; } ;; esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credHelpers":{"reg.example":"fake"}}"#).unwrap();
        let old_path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.path().to_path_buf()];
        paths.extend(std::env::split_paths(&old_path));
        // Only this test starts helpers, so changing PATH here is safe enough.
        std::env::set_var("PATH", std::env::join_paths(paths).unwrap());
        let found = load_credentials(&path, "reg.example").unwrap().unwrap();
        assert_eq!(found.username, "bob");
        std::fs::write(&path, r#"{"credsStore":"fake"}"#).unwrap();
        assert_eq!(load_credentials(&path, "other.example").unwrap(), None);
    }
}
