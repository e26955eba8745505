//! Registry authentication: `WWW-Authenticate` challenges, Basic
//! credentials, and the Bearer token flow with a per-scope token cache.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::credentials::Credentials;

/// What the registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Challenge {
    /// No challenge seen yet (anonymous so far).
    #[default]
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value: `Bearer realm="...",service="...",scope="..."`
/// or `Basic realm="..."`. Unknown schemes give `None`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let realm = params.get("realm")?.clone();
            Some(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

/// `key="value", key=value` pairs; quoted values may contain commas and
/// backslash escapes.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// `Basic base64(user:password)`.
pub fn basic_header(credentials: &Credentials) -> String {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A token endpoint's answer (distribution's token spec).
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long it may be used. Tokens without a lifetime
    /// count as 60 seconds (the spec's default); a few seconds are kept
    /// in hand so a token never expires in flight.
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = self.expires_in.unwrap_or(60).max(60);
        Some((token, Duration::from_secs(lifetime.saturating_sub(10))))
    }
}

/// Tokens by scope set, until they expire.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: HashMap<String, (String, Instant)>,
}

impl TokenCache {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.tokens
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.as_str())
    }
    pub fn insert(&mut self, key: String, token: String, lifetime: Duration) {
        self.tokens.insert(key, (token, Instant::now() + lifetime));
    }
    pub fn remove(&mut self, key: &str) {
        self.tokens.remove(key);
    }
}

/// The cache key of a set of scopes (order does not matter).
pub fn scope_key(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn token_lifetime_and_cache() {
        let (t, life) = TokenResponse {
            token: None,
            access_token: Some("abc".into()),
            expires_in: Some(300),
        }
        .into_token()
        .unwrap();
        assert_eq!(t, "abc");
        assert_eq!(life, Duration::from_secs(290));
        let mut cache = TokenCache::default();
        cache.insert(scope_key(&["b".into(), "a".into()]), "tok".into(), life);
        assert_eq!(
            cache.get(&scope_key(&["a".into(), "b".into()])),
            Some("tok")
        );
        cache.insert("expired".into(), "old".into(), Duration::ZERO);
        assert_eq!(cache.get("expired"), None);
        assert!(TokenResponse {
            token: Some(String::new()),
            access_token: None,
            expires_in: None
        }
        .into_token()
        .is_none());
    }

    #[test]
    fn basic_header_encodes_user_and_password() {
        let c = Credentials {
            username: "user".into(),
            password: "pa:ss".into(),
        };
        assert_eq!(basic_header(&c), "Basic dXNlcjpwYTpzcw==");
    }
}
