//! Tag -> digest: `HEAD /v2/<repository>/manifests/<tag>` and its `Docker-Content-Digest`.

use reqwest::Method;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};
use shipit_core::ImageRef;
use shipit_core::image::is_valid_digest;

use crate::client::{MANIFEST_LIMIT, RegistryClient, Target, read_limited};
use crate::error::RegistryError;

/// Manifest media types a resolve accepts: OCI index and manifest, Docker manifest list and v2
/// manifest. Multi-platform images resolve to their index, so a deploy keeps every platform.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// The header registries put a manifest's digest in.
pub const DIGEST_HEADER: &str = "docker-content-digest";

/// `sha256:<hex>` of `bytes`: a manifest's digest is the digest of its exact bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl RegistryClient {
    /// The digest `image`'s tag points to now (`latest` when it has no tag).
    ///
    /// An image that already carries a digest is returned as it is, without a request. Otherwise
    /// one `HEAD` of the manifest; when the registry sends no `Docker-Content-Digest`, one `GET`
    /// and the sha256 of the exact bytes.
    pub async fn resolve_digest(&self, image: &ImageRef) -> Result<String, RegistryError> {
        if let Some(digest) = &image.digest {
            if is_valid_digest(digest) {
                return Ok(digest.clone());
            }
            return Err(RegistryError::InvalidReference {
                image: image.to_string(),
                detail: format!("{digest:?} is not a digest (sha256: and 64 lowercase hex digits)"),
            });
        }
        let reference = image.tag.as_deref().unwrap_or("latest");
        let target = Target::new(&image.with_tag(reference));
        let url = self.url(&target.registry, &format!("/v2/{}/manifests/{reference}", target.repository))?;

        let head = self.send_authorized(&target, Method::HEAD, &url, Some(MANIFEST_ACCEPT)).await?;
        if !head.status().is_success() {
            return Err(self.error_from(&target, head, None).await);
        }
        if let Some(digest) = header_digest(&target, head.headers()).map_err(|e| self.scrubbed(e))? {
            return Ok(digest);
        }

        // No Docker-Content-Digest: the digest is the sha256 of the manifest's exact bytes.
        let get = self.send_authorized(&target, Method::GET, &url, Some(MANIFEST_ACCEPT)).await?;
        if !get.status().is_success() {
            return Err(self.error_from(&target, get, None).await);
        }
        let announced = header_digest(&target, get.headers()).map_err(|e| self.scrubbed(e))?;
        let body = read_limited(get, MANIFEST_LIMIT + 1)
            .await
            .map_err(|e| self.network_error(url.as_str(), &target.registry, e))?;
        if body.len() > MANIFEST_LIMIT {
            return Err(RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                detail: format!("the manifest of {} is larger than 4 MiB", target.image),
            });
        }
        let computed = sha256_digest(&body);
        match announced {
            Some(d) if d.starts_with("sha256:") && d != computed => Err(RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                detail: format!("the manifest of {} has digest {computed}, not the {d} announced", target.image),
            }),
            _ => Ok(computed),
        }
    }
}

/// The `Docker-Content-Digest` header, checked.
fn header_digest(target: &Target, headers: &HeaderMap) -> Result<Option<String>, RegistryError> {
    let Some(value) = headers.get(DIGEST_HEADER) else { return Ok(None) };
    let digest = value.to_str().unwrap_or_default().trim();
    if is_valid_digest(digest) {
        Ok(Some(digest.to_string()))
    } else {
        Err(RegistryError::InvalidResponse {
            registry: target.registry.clone(),
            detail: format!("Docker-Content-Digest {digest:?} is not a digest"),
        })
    }
}

#[async_trait::async_trait]
impl shipit_core::Resolver for RegistryClient {
    async fn resolve(&self, image: &ImageRef) -> Result<String, shipit_core::Error> {
        self.resolve_digest(image).await.map_err(shipit_core::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_bytes() {
        assert_eq!(sha256_digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
