//! shipit-registry: the OCI registry client shipit will use to resolve tags to digests, push
//! OCI image layouts to GitHub Container Registry and retag without moving blobs.
//!
//! It has no code yet: nothing in shipit talks to a registry before `deploy` resolves a
//! `--tag`. The crate exists so the workspace has the layout the design describes.
