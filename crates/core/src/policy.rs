//! Image policy: what an image must satisfy before shipit deploys it (`policy = { … }`).
//!
//! The facts come from the registry (manifest sizes and the image config), so a policy is
//! checked against exactly the digest that would run, for every platform of a multi-arch image.

use serde::Serialize;

use crate::model::{ImagePolicy, Service};

/// What the registry says about one image (every platform of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageFacts {
    /// The image, pinned by digest.
    pub image: String,
    /// One entry per platform (a single-arch image has one).
    pub platforms: Vec<PlatformImage>,
}

impl ImageFacts {
    /// Facts about `image`.
    pub fn new(image: impl Into<String>, platforms: Vec<PlatformImage>) -> Self {
        Self { image: image.into(), platforms }
    }
}

/// One platform's image: its size and what its config declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlatformImage {
    /// `os/architecture[/variant]`, e.g. `linux/amd64`.
    pub platform: String,
    /// Sum of the compressed layer sizes, in bytes.
    pub compressed_bytes: u64,
    /// `config.User`, when set.
    pub user: Option<String>,
    /// `config.ExposedPorts` keys (`4000/tcp`).
    pub exposed_ports: Vec<String>,
    /// Whether `config.Healthcheck` declares a test (other than NONE).
    pub healthcheck: bool,
}

impl PlatformImage {
    /// One platform's facts.
    pub fn new(platform: impl Into<String>, compressed_bytes: u64) -> Self {
        Self { platform: platform.into(), compressed_bytes, user: None, exposed_ports: Vec::new(), healthcheck: false }
    }

    /// Whether it runs as root: no user, or `root`/`0` (with or without a group).
    pub fn runs_as_root(&self) -> bool {
        match self.user.as_deref() {
            None => true,
            Some(u) => {
                let user = u.split(':').next().unwrap_or_default().trim();
                user.is_empty() || user == "root" || user == "0"
            }
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Violation {
    /// Service.
    pub service: String,
    /// `max_image_mb`, `non_root` or `require_healthcheck`.
    pub rule: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// Checks `facts` against the service's policy; empty when everything holds.
pub fn check(service: &Service, facts: &ImageFacts) -> Vec<Violation> {
    check_policy(&service.name, &service.policy, facts)
}

/// Checks `facts` against `policy`.
pub fn check_policy(service: &str, policy: &ImagePolicy, facts: &ImageFacts) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |rule, message: String| Violation { service: service.to_string(), rule, message };
    for p in &facts.platforms {
        if let Some(max) = policy.max_image_mb {
            let mb = p.compressed_bytes.div_ceil(1_000_000);
            if p.compressed_bytes > max.saturating_mul(1_000_000) {
                out.push(v(
                    "max_image_mb",
                    format!("{} ({}) is {mb} MB compressed; the policy allows {max} MB", facts.image, p.platform),
                ));
            }
        }
        if policy.non_root && p.runs_as_root() {
            let who = p.user.as_deref().map_or("no USER, so root".to_string(), |u| format!("USER {u}"));
            out.push(v(
                "non_root",
                format!("{} ({}) runs as root ({who}); the policy requires a non-root USER", facts.image, p.platform),
            ));
        }
        if policy.require_healthcheck && !p.healthcheck {
            out.push(v(
                "require_healthcheck",
                format!("{} ({}) declares no HEALTHCHECK; the policy requires one", facts.image, p.platform),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(bytes: u64, user: Option<&str>, healthcheck: bool) -> ImageFacts {
        let mut p = PlatformImage::new("linux/amd64", bytes);
        p.user = user.map(str::to_string);
        p.healthcheck = healthcheck;
        ImageFacts::new("ghcr.io/a/b@sha256:x", vec![p])
    }

    #[test]
    fn each_rule() {
        let policy = ImagePolicy { max_image_mb: Some(100), non_root: true, require_healthcheck: true };
        assert!(check_policy("api", &policy, &facts(99_000_000, Some("node"), true)).is_empty());
        let v = check_policy("api", &policy, &facts(150_000_001, None, false));
        let rules: Vec<&str> = v.iter().map(|v| v.rule).collect();
        assert_eq!(rules, ["max_image_mb", "non_root", "require_healthcheck"]);
        assert!(v[0].message.contains("151 MB") && v[0].message.contains("allows 100 MB"), "{}", v[0].message);
        for root in ["root", "0", "0:0", "root:staff", ""] {
            assert_eq!(check_policy("api", &policy, &facts(1, Some(root), true)).len(), 1, "{root:?} is root");
        }
        assert!(check_policy("api", &ImagePolicy::default(), &facts(u64::MAX, None, false)).is_empty());
    }
}
