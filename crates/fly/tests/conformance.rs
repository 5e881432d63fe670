//! The shared conformance suite (shipit-testkit), run through the engine against the Fly fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use secrecy::SecretString;
use shipit_core::retry::RetryPolicy;
use shipit_core::{App, Platform};
use shipit_fly::FlyPlatform;
use shipit_testkit::conformance::{self, Harness};
use shipit_testkit::fly::{Behaviour, FlyFake, TOKEN};

struct Fly {
    fake: FlyFake,
    platform: FlyPlatform,
    app: App,
}

impl Fly {
    async fn new() -> Self {
        let fake = FlyFake::start().await;
        let platform = FlyPlatform::builder()
            .with_base_url(fake.uri())
            .token(SecretString::from(TOKEN.to_string()))
            .poll_interval(Duration::from_millis(10))
            .retry(RetryPolicy::fast())
            .build()
            .unwrap();
        let manifest = conformance::manifest("fly", "[targets.fly]\norg = \"acme\"\nprimary_region = \"iad\"");
        let app = shipit_core::parse(&manifest, "shipit.toml").unwrap();
        Self { fake, platform, app }
    }
}

impl Harness for Fly {
    fn platform(&self) -> &dyn Platform {
        &self.platform
    }
    fn app(&self) -> &App {
        &self.app
    }
    fn make_unhealthy(&self, digest: &str) {
        self.fake.set_behaviour(digest, Behaviour::FailingChecks);
    }
    fn make_crash(&self, digest: &str) {
        self.fake.set_behaviour(digest, Behaviour::Crash);
    }
    fn locks_held(&self) -> usize {
        self.fake.leases_held().len()
    }
    fn secret_value(&self, service: &str, name: &str) -> Option<String> {
        self.fake.secret_value(&format!("conf-{service}-staging"), name)
    }
}

#[tokio::test]
async fn fly_passes_the_conformance_suite() {
    let mut failures = Vec::new();
    for check in conformance::CHECKS {
        let h = Fly::new().await;
        if let Err(e) = conformance::run(check, &h).await {
            failures.push(format!("{check}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
