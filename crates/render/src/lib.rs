//! shipit's Render platform: the `render.yaml` Blueprint for one environment, and deploys through
//! Render's REST API ([`RenderPlatform`]).
//!
//! # Deploys
//!
//! One manifest service is one image-backed Render service (`web_service` or
//! `background_worker`) in the workspace `[targets.render] owner` names. The API's vocabulary is
//! built from the same [`render::ServerService`] the Blueprint is written from, so the two cannot
//! drift. Design points (the request sequence is in `docs/platforms/render.md`):
//!
//! - **Create starts a deploy.** `POST /services` has already started the first deploy; shipit
//!   waits on its `deployId` and never POSTs another.
//! - **Exactly once.** A create, a deploy and a rollback are sent once; a 202 (queued) or an
//!   ambiguous failure is resolved by listing the deploys (or the service by name) before
//!   anything is sent again, and a 429 is waited out, never turned into two deploys
//!   ([`rollout`](crate::rollout)). Everything else is retried through core's policy.
//! - **Image and settings together.** The service's image setting is PATCHed with the deploy,
//!   and put back with the settings on failure, so no deploy Render starts by itself can ship a
//!   failed image. Region and instance count are not PATCHable: a region change is an error.
//! - **Only what shipit set.** Env vars go one key at a time (never the replace-all PUT), and a
//!   key is deleted only if shipit recorded setting it ([`platform::OWNED_VARIABLES`]).
//! - **Releases in the tag.** Render keeps no commit for image deploys: shipit's release id and
//!   git sha ride in the tag of `repo:tag@digest`; the digest decides what runs.
//!
//! Trade-offs: no locks or strategies (Render runs one deploy per service at a time), a rollback
//! keeps today's settings (Render records none per deploy), instance health comes from the live
//! deploy (the API reports a count, not each instance's checks), and database references are
//! resolved to connection strings when the database exists.
//!
//! # The Blueprint
//!
//! [`render()`] turns an environment of the model into one Blueprint: a `web` service for each
//! service with a port, a `worker` for each without, a `keyvalue` service for each Redis
//! database and a `databases:` entry for each Postgres one. Services run prebuilt images
//! (`runtime: image`) tagged with the environment's name, the tag shipit moves on deploy.
//!
//! Trade-offs and assumptions:
//!
//! - Render sizes services by plan, not by CPU and memory: the smallest plan that fits `vm` is
//!   chosen (never `free`), unless `targets.render.services.<name>.plan` says otherwise. A web
//!   service gets a `PORT` variable unless it sets one (Render's default is 10000).
//! - Render has no scale-to-zero for paid instances: `scale.min = 0` runs one instance, and
//!   `auto_stop` is ignored. Autoscaling targets 70% CPU.
//! - A service's `url` is assumed to be its default `https://<name>.onrender.com` address;
//!   custom domains are not known to shipit.
//! - Key Value (Redis) offers only `connection_string`, `host` and `port`, and has no version
//!   setting, so `version` of a Redis database is ignored.
//! - Databases and Key Value instances get an empty `ipAllowList`: reachable only from inside
//!   Render.
//! - The output is serialized from typed structs, so field order is fixed and two renders of
//!   the same manifest are byte-identical.

pub mod check;
pub mod client;
pub mod config;
pub mod error;
pub mod platform;
pub mod regions;
pub mod render;
mod rollout;

pub use client::RenderClient;
pub use config::RenderConfig;
pub use error::RenderApiError;
pub use platform::RenderPlatform;
pub use render::render;
