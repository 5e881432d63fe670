//! shipit's Fly.io platform: the `fly.<service>.toml` files it renders, and deploys through the
//! Fly Machines API ([`FlyPlatform`]).
//!
//! Each service of an environment becomes one Fly app named from the `[targets.fly]` name
//! template (default `{app}-{service}-{env}`), so [`render()`] writes one `fly.toml` per service
//! and a deploy drives that app's machines.
//!
//! # Design
//!
//! Files are built with `toml_edit` rather than serde: key order is chosen here, so the same
//! manifest always renders byte-identical files and `shipit render --check` can compare them.
//! Secrets never reach a file or a machine config: secret variables and database references
//! are Fly app secrets (`shipit secrets sync`); references to another service are known before
//! deploy (`https://<app>.fly.dev`, `<app>.internal`) and become plain env values.
//!
//! Deploys go through the Machines API, not flyctl: shipit deploys by digest, one machine config
//! ([`machine`]) serves deploy, plan and `--dry-run`, and every step is a typed call
//! ([`client`]) with one error mapping ([`error::parse_error`]).
//!
//! - **Leases first.** A rollout leases every machine it will change before changing any, so a
//!   concurrent deploy fails with a conflict naming the holder (or waits `--lock-wait`) and
//!   nothing is half-done. Leases are released on success, failure and cancellation (and in the
//!   background if the deploy future is dropped), and refreshed at half their TTL.
//! - **Health gate.** Each machine must reach `started` and then report every configured check
//!   as passing. A crash (an exit nobody asked for, or the new instance stopped or failed) fails
//!   the gate at once; checks still failing at `--wait-timeout` (per machine) fail it with the
//!   check's output.
//! - **Rollback is a redeploy.** Fly has no release history, so shipit writes it into machine
//!   metadata (`shipit_release`, `shipit_digest`, `shipit_git_sha`, `shipit_failed`) and
//!   `releases` reads it back from each machine's config versions.
//! - **Retries only where safe.** GETs and lease releases are retried; creates look first
//!   (machines carry a unique name), and a machine update is re-sent only if reading the
//!   machine back shows it was not applied.
//!
//! Trade-offs: only `rolling` and `immediate` are offered (no canary or blue-green); the wait
//! timeout applies per machine, so a rollout of many batches may take longer in total; machines
//! in regions the manifest no longer lists are updated but never destroyed; public addresses
//! are allocated the way flyctl's first deploy does (a shared IPv4 and a dedicated IPv6, for a
//! service with a port that lacks them) but never released, and a token that may not allocate
//! them gets a warning naming the `fly ips allocate-…` commands, not a failure; and a token is
//! read from `FLY_API_TOKEN` (else
//! `FLY_ACCESS_TOKEN`) or given to [`FlyConfig::token`] (the CLI passes one it found in the OS
//! keyring, after `shipit login fly`; this crate knows no keyring). With no token, `render` and
//! `describe_deploy` still work and each API call fails before sending anything.

pub mod check;
pub mod client;
pub mod config;
pub mod error;
mod gate;
mod history;
mod ips;
mod leases;
pub mod machine;
pub mod platform;
pub mod regions;
pub mod render;
mod restore;
mod rollout;

pub use client::FlyClient;
pub use config::FlyConfig;
pub use error::FlyError;
pub use platform::FlyPlatform;
pub use render::render;
