//! Manifests as bytes: [`RegistryClient::get_manifest`], [`RegistryClient::put_manifest`] and
//! [`RegistryClient::retag`], which moves tags without moving a blob.

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use shipit_core::ImageRef;
use shipit_core::image::{is_valid_digest, is_valid_tag};

use crate::client::{Call, MANIFEST_LIMIT, RegistryClient, Target, bare, read_limited};
use crate::error::RegistryError;
use crate::push::checked_tags;
use crate::resolve::{DIGEST_HEADER, MANIFEST_ACCEPT, sha256_digest};

/// A manifest or index exactly as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawManifest {
    /// Its media type (the response's `Content-Type`, else the manifest's `mediaType`).
    pub media_type: String,
    /// Its exact bytes: put them elsewhere unchanged and the digest stays the same.
    pub bytes: Vec<u8>,
    /// `sha256:` of the bytes.
    pub digest: String,
}

/// What [`RegistryClient::retag`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetagReport {
    /// The image the tags now point at, by digest.
    pub image: ImageRef,
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The tags put, in order.
    pub tags: Vec<String>,
    /// HTTP requests made (one GET and one PUT per tag, plus any token requests).
    pub requests: u64,
}

impl RegistryClient {
    /// The manifest or index `image` names (its digest if it has one, else its tag, else
    /// `latest`), as raw bytes, with one `GET` accepting OCI and Docker manifests and indexes.
    ///
    /// Fetched by digest, the bytes must hash to it; a `Docker-Content-Digest` that disagrees
    /// with the bytes is an error.
    pub async fn get_manifest(&self, image: &ImageRef) -> Result<RawManifest, RegistryError> {
        self.fetch_manifest(&Target::new(image), image).await
    }

    /// Puts `bytes` as a manifest of `media_type` (sent as `Content-Type`, unchanged) under
    /// `image`'s tag, or under its digest when it has no tag; returns the digest (`sha256:` of
    /// the bytes). A digest in `image` must be the bytes' digest. Blobs and child manifests
    /// must already be in the repository (the registry checks).
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        if let Some(wanted) = &image.digest
            && *wanted != digest
        {
            return Err(RegistryError::InvalidReference {
                image: image.to_string(),
                detail: format!("the manifest's digest is {digest}, not {wanted}"),
            });
        }
        let reference = match &image.tag {
            Some(tag) if is_valid_tag(tag) => tag.clone(),
            Some(tag) => return Err(RegistryError::InvalidTag { tag: tag.clone() }),
            None => digest,
        };
        let target = Target::push(&bare(image), &[]);
        self.put_manifest_bytes(&target, &reference, media_type, bytes).await
    }

    /// Points `new_tags` at the manifest `src` names (a tag or a digest) without moving a blob:
    /// one `GET` of its raw bytes, then one `PUT` of those exact bytes with the same
    /// `Content-Type` per tag, all in `src`'s repository. The token asks for `pull,push` from
    /// the start, so one token serves both.
    ///
    /// Every tag is checked before any request ([`RegistryError::InvalidTag`]).
    pub async fn retag(&self, src: &ImageRef, new_tags: &[String]) -> Result<RetagReport, RegistryError> {
        let tags = checked_tags(new_tags.iter())?;
        let repo = bare(src);
        let target = Target { image: src.to_string(), ..Target::push(&repo, &[]) };
        let manifest = self.fetch_manifest(&target, src).await?;
        for tag in &tags {
            self.put_manifest_bytes(&target, tag, &manifest.media_type, &manifest.bytes).await?;
        }
        Ok(RetagReport {
            image: repo.with_digest(&manifest.digest),
            digest: manifest.digest,
            media_type: manifest.media_type,
            tags,
            requests: target.requests_made(),
        })
    }

    async fn fetch_manifest(&self, target: &Target, image: &ImageRef) -> Result<RawManifest, RegistryError> {
        let reference = match (&image.digest, &image.tag) {
            (Some(digest), _) if is_valid_digest(digest) => digest.clone(),
            (Some(digest), _) => {
                return Err(RegistryError::InvalidReference {
                    image: image.to_string(),
                    detail: format!("{digest:?} is not a digest (sha256: and 64 lowercase hex digits)"),
                });
            }
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        };
        let url = self.url(&target.registry, &format!("/v2/{}/manifests/{reference}", target.repository))?;
        let response = self.send_authorized(target, Method::GET, &url, Some(MANIFEST_ACCEPT)).await?;
        if !response.status().is_success() {
            return Err(self.error_from(target, response, None).await);
        }
        let invalid = |detail: String| RegistryError::InvalidResponse { registry: target.registry.clone(), detail };
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|v| !v.is_empty() && v != "application/json" && v != "application/octet-stream");
        let announced = response.headers().get(DIGEST_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = read_limited(response, MANIFEST_LIMIT + 1)
            .await
            .map_err(|e| self.network_error(url.as_str(), &target.registry, e))?;
        if bytes.len() > MANIFEST_LIMIT {
            return Err(invalid(format!("the manifest of {} is larger than 4 MiB", target.image)));
        }
        let digest = sha256_digest(&bytes);
        let expected = image.digest.clone().or(announced.filter(|d| d.starts_with("sha256:")));
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(invalid(format!("the manifest of {} has digest {digest}, not {expected}", target.image)));
        }
        let media_type = match content_type {
            Some(media_type) => media_type,
            None => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string))
                .ok_or_else(|| invalid(format!("the manifest of {} has no media type", target.image)))?,
        };
        Ok(RawManifest { media_type, bytes, digest })
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the exact bytes; returns their digest.
    /// Idempotent (the same bytes under the same name), so retried like a read.
    pub(crate) async fn put_manifest_bytes(
        &self,
        target: &Target,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        let url = self.url(&target.registry, &format!("/v2/{}/manifests/{reference}", target.repository))?;
        let mut headers = HeaderMap::new();
        let content_type = HeaderValue::from_str(media_type).map_err(|_| RegistryError::InvalidReference {
            image: target.image.clone(),
            detail: format!("{media_type:?} is not a media type"),
        })?;
        headers.insert(CONTENT_TYPE, content_type);
        let body = bytes::Bytes::copy_from_slice(bytes);
        let make = || Ok(reqwest::Body::from(body.clone()));
        let response = self.call(target, Call { headers, body: Some(&make), ..Call::new(Method::PUT, &url) }).await?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(self.error_from(target, response, None).await);
        }
        if let Some(announced) = response.headers().get(DIGEST_HEADER).and_then(|v| v.to_str().ok())
            && announced.starts_with("sha256:")
            && announced != digest
        {
            return Err(RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                detail: format!("stored {reference} as {announced}, but its bytes are {digest}"),
            });
        }
        Ok(digest)
    }
}
