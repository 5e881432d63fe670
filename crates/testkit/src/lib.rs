//! shipit-testkit: stateful fakes of Fly.io, Railway, Render and an OCI registry, and the
//! conformance suite every platform must pass.
//!
//! It has no code yet: the fakes and the suite arrive with the first platform's API client,
//! when there is behaviour to test. (publish = false: it is for shipit's own tests.)
