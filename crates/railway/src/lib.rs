//! shipit's Railway platform: the settings shipit applies to each Railway service.
//!
//! Railway stops reading `railway.json` on 2026-12-01, so shipit applies service settings
//! through the GraphQL API instead. [`render()`] writes what it will apply, one
//! `railway.<service>.json` per service, so that a review shows every change: `instance` holds
//! `ServiceInstanceUpdateInput` fields, `limits` the `ServiceInstanceLimitsUpdateInput` ones,
//! `variables` what `variableCollectionUpsert` sets, and `secrets` the names of variables whose
//! values are set on Railway and never written here.
//!
//! Trade-offs and assumptions:
//!
//! - Railway does not autoscale: `numReplicas` is `scale.min` (at least 1) and `scale.max` is
//!   ignored. `auto_stop` with `min = 0` becomes App Sleeping (`sleepApplication`).
//! - Railway's `healthcheckTimeout` is how long a new deployment has to answer at all, so it is
//!   the grace period plus one check's timeout, in whole seconds.
//! - References become Railway reference variables (`${{db.DATABASE_URL}}`), resolved by
//!   Railway; a service's `url` is its public domain over HTTPS.
//! - Regions are used only when they are Railway's (`us-west2`, …): an environment that targets
//!   Railway must name Railway regions, while another target's regions are left out and Railway
//!   keeps its default. Several regions each get `scale.min` replicas.
//! - A service with a port gets a `PORT` variable unless it sets one.
//! - `cpu_kind` has no Railway equivalent and is ignored. Databases are referenced by name but
//!   not described here: they are Railway's Postgres and Redis services.

pub mod render;

pub use render::render;
