//! shipit's Railway platform: the `railway.<service>.json` files it renders, and deploys through
//! Railway's public GraphQL API ([`RailwayPlatform`]).
//!
//! Each manifest service is one Railway service in the environment's Railway environment (same
//! name unless `[targets.railway.environments]` maps it), named by the `[targets.railway]` name
//! template (default `{service}`). Railway stops reading `railway.json` on 2026-12-01, so shipit
//! sets every service setting through the API; [`render()`] writes what it sets, for review.
//!
//! # Design
//!
//! - **Typed operations, checked twice.** Each operation is one `.graphql` file, typed at compile
//!   time by `graphql_client`'s derive against the project's own SDL subset
//!   (`graphql/schema.graphql`: only the types shipit uses), which CI checks against Railway's
//!   published schema. graphql_client only builds bodies and types answers; requests go out with
//!   the workspace's reqwest, with the shared retry and polling plumbing of
//!   [`shipit_core::http`] ([`client`]), and one mapping of answers to errors
//!   ([`error::parse_error`] for statuses, [`error::graphql_error`] for the `errors[]` Railway
//!   sends inside a 200).
//! - **Never a null.** Railway resets a setting sent as null (and an update without
//!   `multiRegionConfig` can reset replicas), so every setting is sent every deploy, with
//!   Railway's default where the manifest is silent, and nulls are stripped from every request.
//!   The same [`render::InstanceSettings`] value is what `render` writes and what `deploy` sends.
//! - **Names first, changes after.** The project, the environment and the token's reach are
//!   settled before anything is written ([`scope`](crate::scope)): a project token bound to
//!   another environment fails with exit 5, naming `RAILWAY_API_TOKEN`.
//! - **Image and settings move together, and come back together.** A deploy points the service
//!   instance at the digest with every setting (`serviceInstanceUpdate`), then starts one
//!   deployment (`serviceInstanceDeployV2`, never the redeploys that re-run the old image) and
//!   waits for Railway's verdict ([`rollout`](crate::rollout)). Railway keeps the old deployment
//!   serving when a new one fails, but its source would still name the failed image; a restore
//!   puts the source and the settings back from the restore point, and deploys again only when
//!   the old digest no longer serves.
//! - **Rollback without old variables.** `deploymentRollback` restores the target deployment's
//!   variables too (a rotated secret would come back), and the API cannot show which variables a
//!   deployment ran with; shipit never calls it and redeploys the target's digest and settings
//!   with today's variables.
//! - **Only what shipit set.** Variables are upserted (`replace: false`, `skipDeploys: true`,
//!   `serviceId`), and a variable is deleted only if shipit recorded setting it
//!   ([`platform::OWNED_VARIABLES`]).
//!
//! Trade-offs: Railway has no locks (concurrent deploys of one service are not excluded; the
//! loser's wait ends with a conflict), no rollout strategies and no autoscaling; databases are
//! referenced, not created; a rollback keeps today's size (`serviceInstanceLimits` is not part of
//! a deployment's record); a release's id is Railway's deployment id. With no token, `render` and
//! `describe_deploy` still work and each API call fails before sending anything.
//! `docs/platforms/railway.md` lists the request sequence of a deploy.

pub mod check;
pub mod client;
pub mod config;
pub mod error;
pub mod platform;
pub mod regions;
pub mod render;
mod rollout;
mod scope;

pub use client::RailwayClient;
pub use config::{RailwayConfig, RailwayToken};
pub use error::RailwayError;
pub use platform::RailwayPlatform;
pub use render::render;
