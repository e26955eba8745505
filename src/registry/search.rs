//! `search`: repositories matching a term, from the registry's catalog
//! (`GET /v2/_catalog`, following `Link` pages), or from Docker Hub's
//! search API for `docker.io`.

use reqwest::header::{HeaderMap, LINK};

use super::client::{read_limited, ClientOptions, RegistryClient};
use super::RegistryError;
use crate::reference::DEFAULT_DOMAIN;

/// One search result, in Docker's columns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SearchResult {
    pub name: String,
    pub description: String,
    pub stars: u64,
    pub official: bool,
}

/// Splits `REGISTRY/TERM` the way Docker splits a reference's domain:
/// the first component is a registry if it has a dot or a port or is
/// `localhost`; otherwise the registry is Docker Hub.
pub fn split_search_term(input: &str) -> (String, String) {
    match input.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), input.to_string()),
    }
}

/// The next page named by a `Link: <...>; rel="next"` header, relative to
/// the registry's root.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(LINK)?.to_str().ok()?;
    value
        .split(',')
        .find(|part| part.contains("rel=\"next\"") || part.contains("rel=next"))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            let target = &part[start..end];
            Some(target.trim_start_matches('/').to_string())
        })
}

/// Searches `REGISTRY/TERM`; at most `limit` results (Docker's default is 25).
pub fn search(
    input: &str,
    limit: usize,
    options: &ClientOptions,
) -> Result<Vec<SearchResult>, RegistryError> {
    let (registry, term) = split_search_term(input);
    if registry == DEFAULT_DOMAIN {
        return search_hub(&term, limit, options);
    }
    let client = RegistryClient::connect(&registry, options)?;
    let what = format!("{registry} catalog");
    let scopes = vec!["registry:catalog:*".to_string()];
    let mut results = Vec::new();
    let mut next = Some("v2/_catalog?n=1000".to_string());
    while let Some(page) = next.take() {
        let url = client.url(&page)?;
        let resp = client.send_ok(&what, &scopes, &|http| http.get(url.clone()))?;
        next = next_link(resp.headers());
        let body = read_limited(resp, 64 << 20, &what)?;
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let catalog: Catalog =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Transport {
                what: what.clone(),
                reason: format!("invalid catalog: {e}"),
            })?;
        for name in catalog.repositories.unwrap_or_default() {
            if name.contains(term.as_str()) && results.len() < limit {
                results.push(SearchResult {
                    name: format!("{registry}/{name}"),
                    description: String::new(),
                    stars: 0,
                    official: false,
                });
            }
        }
        if results.len() >= limit {
            break;
        }
    }
    Ok(results)
}

/// Docker Hub's `GET /v1/search?q=TERM&n=LIMIT` on index.docker.io.
fn search_hub(
    term: &str,
    limit: usize,
    options: &ClientOptions,
) -> Result<Vec<SearchResult>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        results: Vec<HubResult>,
    }
    #[derive(serde::Deserialize)]
    struct HubResult {
        name: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        star_count: u64,
        #[serde(default)]
        is_official: bool,
    }
    let what = format!("search {term:?} on Docker Hub");
    let http = reqwest::blocking::Client::builder()
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .tls_danger_accept_invalid_certs(!options.tls_verify)
        .build()
        .map_err(|e| RegistryError::Transport {
            what: what.clone(),
            reason: e.to_string(),
        })?;
    let mut url = reqwest::Url::parse("https://index.docker.io/v1/search").map_err(|e| {
        RegistryError::Transport {
            what: what.clone(),
            reason: e.to_string(),
        }
    })?;
    url.query_pairs_mut()
        .append_pair("q", term)
        .append_pair("n", &limit.to_string());
    let resp = http.get(url).send().map_err(|e| RegistryError::Connect {
        registry: "index.docker.io".into(),
        reason: super::client::error_chain(&e),
    })?;
    if !resp.status().is_success() {
        return Err(super::client::status_error(resp, &what));
    }
    let body = read_limited(resp, 16 << 20, &what)?;
    let answer: Answer = serde_json::from_slice(&body).map_err(|e| RegistryError::Transport {
        what: what.clone(),
        reason: format!("invalid answer: {e}"),
    })?;
    Ok(answer
        .results
        .into_iter()
        .take(limit)
        .map(|r| SearchResult {
            name: r.name,
            description: r.description,
            stars: r.star_count,
            official: r.is_official,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_registry_and_term() {
        assert_eq!(
            split_search_term("127.0.0.1:5000/busy"),
            ("127.0.0.1:5000".into(), "busy".into())
        );
        assert_eq!(
            split_search_term("localhost/x"),
            ("localhost".into(), "x".into())
        );
        assert_eq!(
            split_search_term("nginx"),
            ("docker.io".into(), "nginx".into())
        );
        assert_eq!(
            split_search_term("user/app"),
            ("docker.io".into(), "user/app".into())
        );
    }

    #[test]
    fn follows_link_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            r#"</v2/_catalog?last=b&n=2>; rel="next""#.parse().unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
