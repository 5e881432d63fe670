//! Registry authentication: `WWW-Authenticate` challenges and the token cache.
//!
//! The distribution spec's flow: a request without (valid) credentials gets a 401 with
//! `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`; the client fetches a token from
//! the realm (HTTP Basic with the credentials, or anonymously) and repeats the request with
//! `Authorization: Bearer <token>`. A `Basic` challenge means the registry wants the
//! credentials on every request.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use secrecy::{ExposeSecret, SecretString};

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Lowercased scheme (`bearer`, `basic`).
    pub(crate) scheme: String,
    /// Parameters, keys lowercased.
    pub(crate) params: HashMap<String, String>,
}

impl Challenge {
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// The challenge to answer: Bearer when offered, else Basic, else the first one.
pub(crate) fn challenge(headers: &HeaderMap) -> Option<Challenge> {
    let all: Vec<Challenge> =
        headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).flat_map(parse_challenges).collect();
    let pick = |scheme: &str| all.iter().find(|c| c.scheme == scheme).cloned();
    pick("bearer").or_else(|| pick("basic")).or_else(|| all.first().cloned())
}

/// Parses `Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull"`
/// (several challenges may share one header, separated by commas).
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut chars = header.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let mut token = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != ',' && *c != '=') {
            token.push(c);
        }
        if token.is_empty() {
            if chars.next().is_none() {
                break;
            }
            continue;
        }
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let is_param = chars.peek() == Some(&'=') && !out.is_empty();
        if !is_param {
            out.push(Challenge { scheme: token.to_ascii_lowercase(), params: HashMap::new() });
            continue;
        }
        chars.next();
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
            }
        }
        if let Some(last) = out.last_mut() {
            last.params.insert(token.to_ascii_lowercase(), value);
        }
    }
    out
}

/// How to authenticate requests for one (registry, scope).
#[derive(Clone)]
pub(crate) enum Auth {
    /// A token from the registry's token service.
    Bearer {
        /// The token.
        token: SecretString,
        /// When it stops being valid, if the token service said (`expires_in`; GHCR does not).
        expires: Option<Instant>,
    },
    /// The credentials on every request.
    Basic,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer { expires, .. } => {
                f.debug_struct("Bearer").field("token", &"[redacted]").field("expires", expires).finish()
            }
            Self::Basic => f.write_str("Basic"),
        }
    }
}

impl Auth {
    /// A bearer token valid for `expires_in` seconds (with a margin), or until refused.
    pub(crate) fn bearer(token: SecretString, expires_in: Option<u64>) -> Self {
        let expires = expires_in
            .filter(|s| *s > 0)
            .map(|s| Instant::now() + Duration::from_secs(s).saturating_sub(Duration::from_secs(10)));
        Self::Bearer { token, expires }
    }

    /// Whether both are the same token (or both Basic).
    pub(crate) fn same(&self, other: &Auth) -> bool {
        match (self, other) {
            (Self::Bearer { token: a, .. }, Self::Bearer { token: b, .. }) => a.expose_secret() == b.expose_secret(),
            (Self::Basic, Self::Basic) => true,
            _ => false,
        }
    }

    fn is_fresh(&self) -> bool {
        match self {
            Self::Bearer { expires: Some(at), .. } => Instant::now() < *at,
            _ => true,
        }
    }
}

/// Tokens per (registry host, scope), and the scopes whose authentication is settled (a
/// request got through, with or without a token). `Debug` shows how many, never what.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<(String, String), Auth>>,
    known: Mutex<HashSet<(String, String)>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.entries.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("TokenCache").field("entries", &n).finish()
    }
}

impl TokenCache {
    pub(crate) fn get(&self, host: &str, scope: &str) -> Option<Auth> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(&(host.to_string(), scope.to_string())).filter(|a| a.is_fresh()).cloned()
    }

    pub(crate) fn insert(&self, host: &str, scope: &str, auth: Auth) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert((host.to_string(), scope.to_string()), auth);
    }

    /// Whether a request of this scope has got through (so its authentication is settled).
    pub(crate) fn is_known(&self, host: &str, scope: &str) -> bool {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.contains(&(host.to_string(), scope.to_string()))
    }

    pub(crate) fn mark_known(&self, host: &str, scope: &str) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.insert((host.to_string(), scope.to_string()));
    }

    pub(crate) fn remove(&self, host: &str, scope: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(&(host.to_string(), scope.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ghcr_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/api:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://ghcr.io/token"));
        assert_eq!(c[0].param("service"), Some("ghcr.io"));
        assert_eq!(c[0].param("scope"), Some("repository:acme/api:pull"));
    }

    #[test]
    fn parses_several_challenges_and_escapes() {
        let c = parse_challenges(r#"Basic realm="a \"quoted\" realm", Bearer realm=https://x/token , service = "s""#);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].scheme.as_str(), c[0].param("realm")), ("basic", Some(r#"a "quoted" realm"#)));
        assert_eq!((c[1].param("realm"), c[1].param("service")), (Some("https://x/token"), Some("s")));
        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Basic")[0].scheme, "basic");
    }
}
