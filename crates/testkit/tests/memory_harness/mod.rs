//! The [`MemoryPlatform`] harness of the shared suites (the conformance checks and the fault
//! matrix). Used by `tests/conformance_memory.rs` and `tests/fault_matrix_memory.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use shipit_core::{App, Platform};
use shipit_testkit::conformance::{self, Harness};
use shipit_testkit::memory::{Fault, MemoryPlatform, Scope};

pub struct Memory {
    pub platform: MemoryPlatform,
    app: App,
}

impl Memory {
    pub async fn new() -> Self {
        let manifest = conformance::manifest("railway", "[targets.railway]\nproject = \"conf\"");
        let app = shipit_core::parse(&manifest, "shipit.toml").unwrap();
        Self { platform: MemoryPlatform::new(), app }
    }
}

impl Harness for Memory {
    fn platform(&self) -> &dyn Platform {
        &self.platform
    }
    fn app(&self) -> &App {
        &self.app
    }
    fn make_unhealthy(&self, digest: &str) {
        self.platform.inject(Scope::Digest(digest.to_string()), Fault::Unhealthy);
    }
    fn make_crash(&self, digest: &str) {
        self.platform.inject(Scope::Digest(digest.to_string()), Fault::Crash);
    }
    fn fail_after_settings(&self, digest: &str) {
        self.platform.inject(Scope::Digest(digest.to_string()), Fault::FailAfterSettings);
    }
    fn hold_lock(&self, service: &str, owner: &str) -> Result<(), String> {
        self.platform.inject(Scope::Service(service.to_string()), Fault::LockHeld { owner: owner.to_string() });
        Ok(())
    }
    fn locks_held(&self) -> usize {
        self.platform.locks_held()
    }
    fn settings_digest(&self, service: &str) -> Option<String> {
        self.platform.source_digest(service)
    }
    fn secret_value(&self, service: &str, name: &str) -> Option<String> {
        self.platform.secret_value(service, name)
    }
}
