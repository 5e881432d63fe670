//! shipit's Render platform: the `render.yaml` Blueprint for one environment.
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

pub mod client;
pub mod config;
pub mod error;
pub mod platform;
pub mod render;
mod rollout;

pub use client::RenderClient;
pub use config::RenderConfig;
pub use error::RenderApiError;
pub use platform::RenderPlatform;
pub use render::render;
