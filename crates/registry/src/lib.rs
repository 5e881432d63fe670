//! shipit-registry: the OCI registry client shipit deploys through.
//!
//! **What.** [`RegistryClient`] turns an image tag into the digest it points to now
//! ([`RegistryClient::resolve_digest`], and [`shipit_core::Resolver`] for the engine), speaking
//! the OCI distribution API to GitHub Container Registry or any other registry.
//!
//! **Why.** shipit deploys by digest: a tag is resolved once, before anything changes, so every
//! platform runs exactly the bytes that were resolved and `promote` can move those same bytes
//! from staging to production even if the tag moves in between.
//!
//! **How.** One `HEAD /v2/<repository>/manifests/<tag>` accepting OCI and Docker manifests and
//! indexes, read `Docker-Content-Digest`; when a registry omits it, `GET` the manifest and hash
//! its exact bytes. Authentication follows the registry's `WWW-Authenticate` challenge: a Bearer
//! token from its token service (HTTP Basic with the credentials, or anonymous for public
//! images — GHCR wants a token even then), cached per registry and scope and renewed once when
//! refused (GHCR tokens carry no expiry); or Basic credentials on every request.
//!
//! **Trade-offs.**
//! - Credentials from the environment (`GHCR_TOKEN`/`GITHUB_TOKEN`) go to `ghcr.io` only (and
//!   to hosts listed in `SHIPIT_GHCR_HOSTS`): resolving a Docker Hub image never sends a GitHub
//!   token elsewhere. Credentials given to the builder go wherever asked unless restricted.
//! - HTTPS everywhere — registry, token service and redirects — except for hosts listed in
//!   `SHIPIT_INSECURE_REGISTRIES`. `localhost` is not special: a local registry is listed too.
//! - Only idempotent requests (HEAD, GET, the token GET) are retried, on 5xx, 429 (honouring
//!   `Retry-After`) and network errors.
//! - Tokens are [`secrecy::SecretString`], `Authorization` headers are marked sensitive, and
//!   neither `Debug` nor an error message shows a token.

mod auth;
mod client;
mod config;
mod error;
mod resolve;

pub use client::RegistryClient;
pub use config::{DEFAULT_USER, GHCR, RegistryConfig};
pub use error::RegistryError;
pub use resolve::{DIGEST_HEADER, MANIFEST_ACCEPT, sha256_digest};
