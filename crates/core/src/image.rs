//! Image references, parsed and printed like docker's: `registry/repository[:tag][@digest]`.

use std::fmt;
use std::str::FromStr;

/// A reference to an image in a registry.
///
/// The registry part is recognised the way docker does it: the first path component is a
/// registry when it contains a `.` or a `:` or is `localhost`; otherwise the registry is
/// `docker.io` (and a single-component name gets docker's `library/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct ImageRef {
    /// Registry host, with a port when one was given (`ghcr.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path within the registry (`acme/forgestack-api`).
    pub repository: String,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Content digest (`sha256:…`), when given.
    pub digest: Option<String>,
}

/// Why an image reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {found:?}")]
pub struct ImageRefError {
    /// What is wrong.
    pub reason: &'static str,
    /// The text that was refused.
    pub found: String,
}

impl ImageRef {
    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }

    /// The same repository pinned to a digest (the tag is kept for readability).
    pub fn with_digest(&self, digest: &str) -> Self {
        Self { digest: Some(digest.to_string()), ..self.clone() }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Whether `tag` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether `digest` is `algorithm:hex` with a known algorithm and the right length.
pub fn is_valid_digest(digest: &str) -> bool {
    match digest.split_once(':') {
        Some(("sha256", hex)) => {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        Some(("sha512", hex)) => {
            hex.len() == 128 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        _ => false,
    }
}

fn is_valid_component(c: &str) -> bool {
    // lowercase alphanumerics separated by '.', '_', '__' or runs of '-'
    let bytes = c.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else { return false };
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    alnum(first)
        && alnum(last)
        && bytes.iter().all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && !c.contains("..")
        && !c.contains("___")
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ImageRefError { reason, found: s.to_string() };
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                if !is_valid_digest(d) {
                    return Err(err("the digest must be sha256: followed by 64 lowercase hex digits"));
                }
                (rest, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !is_valid_tag(tag) {
                    return Err(err("the tag must be letters, digits, '_', '.' or '-' (at most 128)"));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(err("an image reference needs a repository name"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            Some(_) => ("docker.io".to_string(), name.to_string()),
            None => ("docker.io".to_string(), format!("library/{name}")),
        };
        let (host, port) = registry.split_once(':').unwrap_or((registry.as_str(), "1"));
        let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !host_ok || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the registry host is not valid"));
        }
        if !repository.split('/').all(is_valid_component) {
            return Err(err(
                "repository names are lowercase letters, digits and separators ('.', '_', '-') between '/'",
            ));
        }
        Ok(Self { registry, repository, tag, digest })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_docker() {
        let r: ImageRef = "ghcr.io/acme/forgestack-api:3f2c1ab".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("ghcr.io", "acme/forgestack-api", Some("3f2c1ab"))
        );
        let r: ImageRef = "localhost:5000/app".parse().unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag), ("localhost:5000", "app", None));
        let r: ImageRef = "redis".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/redis");
        let d = format!("sha256:{}", "a".repeat(64));
        let r: ImageRef = format!("ghcr.io/a/b:t@{d}").parse().unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.to_string(), format!("ghcr.io/a/b:t@{d}"));
    }

    #[test]
    fn refuses_bad_references() {
        for bad in ["", "ghcr.io/Acme/api", "ghcr.io/a/b:", "a/b@sha256:xyz", "ghcr.io/a//b", "a:b:c/d"] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} should be refused");
        }
    }
}
