//! shipit-registry: the OCI registry client shipit deploys through.
//!
//! **What.** [`RegistryClient`] turns an image tag into the digest it points to now
//! ([`RegistryClient::resolve_digest`], and [`shipit_core::Resolver`] for the engine), pushes
//! OCI image layouts as buildx writes them ([`RegistryClient::push_layout`]), and moves tags
//! without moving blobs ([`RegistryClient::retag`], [`RegistryClient::get_manifest`],
//! [`RegistryClient::put_manifest`]), speaking the OCI distribution API to GitHub Container
//! Registry or any other registry. [`RegistryClient::requests_made`] counts its HTTP requests.
//!
//! **Why.** shipit deploys by digest: a tag is resolved once, before anything changes, so every
//! platform runs exactly the bytes that were resolved and `promote` can move those same bytes
//! from staging to production even if the tag moves in between.
//!
//! **How (resolve).** One `HEAD /v2/<repository>/manifests/<tag>` accepting OCI and Docker manifests and
//! indexes, read `Docker-Content-Digest`; when a registry omits it, `GET` the manifest and hash
//! its exact bytes. Authentication follows the registry's `WWW-Authenticate` challenge: a Bearer
//! token from its token service (HTTP Basic with the credentials, or anonymous for public
//! images — GHCR wants a token even then), cached per registry and scope and renewed once when
//! refused (GHCR tokens carry no expiry); or Basic credentials on every request.
//!
//!
//! **How (push).** The layout is checked whole before the first request (see
//! [`RegistryClient::push_layout`]); then blobs go up concurrently (`HEAD` to skip, cross-repository
//! mount, or an upload streamed from disk and hashed on the way: one `PUT`, or `PATCH` chunks of at
//! most 4 MiB for GHCR), then manifests by digest, children first, then tags, last. A tar layout is
//! read in place: its entries are indexed once and blobs are byte ranges of the tar file.
//!
//! **Trade-offs.**
//! - Credentials from the environment (`GHCR_TOKEN`/`GITHUB_TOKEN`) go to `ghcr.io` only (and
//!   to hosts listed in `SHIPIT_GHCR_HOSTS`): resolving a Docker Hub image never sends a GitHub
//!   token elsewhere. Credentials given to the builder go wherever asked unless restricted.
//! - HTTPS everywhere — registry, token service and redirects — except for hosts listed in
//!   `SHIPIT_INSECURE_REGISTRIES`. `localhost` is not special: a local registry is listed too.
//! - Only requests safe to repeat (HEAD, GET, the token GET, a manifest PUT, a mount POST) are
//!   retried, on 5xx, 429 (honouring `Retry-After`, in seconds or as an HTTP date) and network
//!   errors; the last error says how many attempts were made. A blob upload that fails that way
//!   starts over in a new session; a chunk the registry did not take (`416`) is resent from
//!   where the session stands.
//! - Error bodies are quoted only through [`shipit_core::http::Scrubber`]: the token, in any
//!   encoding a registry may echo it, never reaches a message.
//! - Tokens are [`secrecy::SecretString`], `Authorization` headers are marked sensitive, and
//!   neither `Debug` nor an error message shows a token.

mod auth;
mod client;
mod config;
mod error;
mod inspect;
mod layout;
mod manifest;
mod push;
mod resolve;

pub use client::RegistryClient;
pub use config::{DEFAULT_USER, GHCR, RegistryConfig};
pub use error::RegistryError;
pub use layout::{REF_NAME_ANNOTATION, REFERENCE_TYPE_ANNOTATION};
pub use manifest::{RawManifest, RetagReport};
pub use push::{DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY, PushOptions, PushReport, UploadMode};
pub use resolve::{DIGEST_HEADER, MANIFEST_ACCEPT, sha256_digest};
