//! `login` and `logout`: verify credentials against a registry, then keep
//! them in Docker's `config.json` (or its credential helper).

use reqwest::StatusCode;

use super::client::{ClientOptions, RegistryClient};
use super::credentials::{erase_credentials, store_credentials, Credentials};
use super::RegistryError;
use crate::reference::DEFAULT_DOMAIN;

/// The registry a `login [SERVER]` names: Docker Hub by default; a URL's
/// scheme and path are dropped (`https://reg:5000/v2/` -> `reg:5000`).
pub fn normalize_server(server: Option<&str>) -> String {
    let Some(server) = server.map(str::trim).filter(|s| !s.is_empty()) else {
        return DEFAULT_DOMAIN.to_string();
    };
    let without_scheme = server
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(server);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_DOMAIN.to_string(),
        other => other.to_string(),
    }
}

/// Checks the credentials with the registry (Basic, or a token for no
/// particular scope), then stores them.
pub fn login(
    server: &str,
    credentials: &Credentials,
    options: &ClientOptions,
) -> Result<(), RegistryError> {
    let client = RegistryClient::connect_with(server, options, Some(credentials.clone()))?;
    let what = format!("login to {server}");
    let url = client.url("v2/")?;
    let resp = client.send(&what, &[], &|http| http.get(url.clone()))?;
    match resp.status() {
        s if s.is_success() => {}
        StatusCode::UNAUTHORIZED => {
            return Err(RegistryError::Unauthorized {
                registry: server.to_string(),
                what: format!("{what}: incorrect username or password"),
            })
        }
        _ => return Err(super::client::status_error(resp, &what)),
    }
    store_credentials(&options.docker_config, server, credentials)
}

/// Forgets the credentials for a registry; false if there were none.
pub fn logout(server: &str, options: &ClientOptions) -> Result<bool, RegistryError> {
    erase_credentials(&options.docker_config, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_servers_like_docker() {
        assert_eq!(normalize_server(None), "docker.io");
        assert_eq!(
            normalize_server(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(
            normalize_server(Some("http://127.0.0.1:5000/v2/")),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_server(Some("reg.example")), "reg.example");
    }
}
