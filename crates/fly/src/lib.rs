//! shipit's Fly.io platform: the `fly.<service>.toml` files it renders.
//!
//! Each service of an environment becomes one Fly app named from the `[targets.fly]` name
//! template (default `{app}-{service}-{env}`), so [`render()`] writes one `fly.toml` per service.
//!
//! # Design
//!
//! The files are built with `toml_edit` rather than serde: key order is chosen here, so the
//! same manifest always renders byte-identical files and `shipit render --check` can compare
//! them. The files describe the app; shipit deploys by digest through the Machines API, so
//! `[build] image` names the environment's tag, which shipit moves to the deployed digest.
//!
//! Secrets never reach a file. Secret variables and database references become Fly app secrets
//! (set by `shipit secrets sync` and on deploy); the file only lists their names in a comment.
//! References to another service are known before deploy (`https://<app>.fly.dev`,
//! `<app>.internal`, the port), so they are written as plain `[env]` values.
//!
//! fly.toml holds one region and no machine maximum: the other regions and the machine count
//! are applied at deploy time, not here.

pub mod render;

pub use render::render;
