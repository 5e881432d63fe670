//! Image facts for the policy: per platform, the compressed size (sum of layers) and what the
//! image config declares (`User`, `ExposedPorts`, `Healthcheck`). Reads manifests and the small
//! config blobs only; no layer is downloaded.

use reqwest::Method;
use serde::Deserialize;
use shipit_core::ImageRef;
use shipit_core::policy::{ImageFacts, PlatformImage};

use crate::client::{MANIFEST_LIMIT, RegistryClient, Target, read_limited};
use crate::error::RegistryError;

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Deserialize, Default)]
struct RunConfig {
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "ExposedPorts", default)]
    exposed_ports: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Healthcheck", default)]
    healthcheck: Option<Healthcheck>,
}

#[derive(Deserialize)]
struct Healthcheck {
    #[serde(rename = "Test", default)]
    test: Vec<String>,
}

fn invalid(registry: &str, detail: String) -> RegistryError {
    RegistryError::InvalidResponse { registry: registry.to_string(), detail }
}

impl RegistryClient {
    /// Sizes and config of every platform of `image` (a tag or digest); attestation manifests
    /// are left out.
    pub async fn inspect(&self, image: &ImageRef) -> Result<ImageFacts, RegistryError> {
        let top = self.get_manifest(image).await?;
        let parsed: Manifest = serde_json::from_slice(&top.bytes).map_err(|e| {
            self.scrubbed(invalid(&image.registry, format!("the manifest of {image} is not JSON: {e}")))
        })?;
        let pinned = image.with_digest(&top.digest);
        let mut platforms = Vec::new();
        if parsed.manifests.is_empty() {
            platforms.push(self.platform_image(image, &parsed, None).await?);
        } else {
            for child in parsed.manifests.iter().filter(|d| {
                d.annotations.get("vnd.docker.reference.type").is_none_or(|t| t != "attestation-manifest")
                    && d.platform.as_ref().is_none_or(|p| p.os != "unknown")
            }) {
                let child_ref = image.with_digest(&child.digest);
                let raw = self.get_manifest(&child_ref).await?;
                let m: Manifest = serde_json::from_slice(&raw.bytes).map_err(|e| {
                    self.scrubbed(invalid(&image.registry, format!("the manifest {} is not JSON: {e}", child.digest)))
                })?;
                platforms.push(self.platform_image(image, &m, child.platform.as_ref()).await?);
            }
        }
        Ok(ImageFacts::new(pinned.to_string(), platforms))
    }

    async fn platform_image(
        &self,
        image: &ImageRef,
        manifest: &Manifest,
        platform: Option<&Platform>,
    ) -> Result<PlatformImage, RegistryError> {
        let size: u64 = manifest.layers.iter().map(|l| l.size).sum();
        let config = match &manifest.config {
            Some(c) => self.config_blob(image, &c.digest).await?,
            None => ConfigFile::default(),
        };
        let name = |os: &str, arch: &str, variant: Option<&str>| match variant {
            Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
            _ => format!("{os}/{arch}"),
        };
        let label = match platform {
            Some(p) => name(&p.os, &p.architecture, p.variant.as_deref()),
            None if !config.os.is_empty() => name(&config.os, &config.architecture, config.variant.as_deref()),
            None => "unknown".to_string(),
        };
        let run = config.config.unwrap_or_default();
        let mut facts = PlatformImage::new(label, size);
        facts.user = run.user.filter(|u| !u.is_empty());
        facts.exposed_ports = run.exposed_ports.map(|p| p.into_keys().collect()).unwrap_or_default();
        facts.healthcheck = run.healthcheck.is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE"));
        Ok(facts)
    }

    async fn config_blob(&self, image: &ImageRef, digest: &str) -> Result<ConfigFile, RegistryError> {
        let target = Target::new(image);
        let url = self.url(&target.registry, &format!("/v2/{}/blobs/{digest}", target.repository))?;
        let response = self.send_authorized(&target, Method::GET, &url, None).await?;
        if !response.status().is_success() {
            return Err(self.error_from(&target, response, None).await);
        }
        let bytes = read_limited(response, MANIFEST_LIMIT)
            .await
            .map_err(|e| self.network_error(url.as_str(), &target.registry, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.scrubbed(invalid(&image.registry, format!("the image config {digest} is not JSON: {e}"))))
    }
}

#[async_trait::async_trait]
impl shipit_core::ImageRegistry for RegistryClient {
    async fn inspect(&self, image: &ImageRef) -> Result<ImageFacts, shipit_core::Error> {
        RegistryClient::inspect(self, image).await.map_err(Into::into)
    }

    async fn tag(&self, image: &ImageRef, tag: &str) -> Result<(), shipit_core::Error> {
        self.retag(image, &[tag.to_string()]).await.map(|_| ()).map_err(Into::into)
    }
}
