//! Shared setup of the Fly platform tests: a manifest, the fake, and a platform talking to it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use secrecy::SecretString;
use shipit_core::retry::RetryPolicy;
use shipit_core::{
    App, DeployRequest, Deployed, Error, ImageRef, PinnedImage, Platform, Release, ReleaseInfo, RestoreReason,
    RestoreRequest, Service, Strategy, Target,
};
use shipit_fly::FlyPlatform;
use shipit_testkit::fly::{FlyFake, RecordedRequest, TOKEN};

pub const MANIFEST: &str = r#"app = "shop"

[registry]
host = "ghcr.io"
namespace = "acme"

[services.api]
port = 4000
health = { path = "/api/health", interval = "10s", timeout = "2s", grace = "5s" }
env = { NODE_ENV = "production" }
secrets = ["STRIPE_SECRET_KEY"]
env_from = { DATABASE_URL = "db.connection_string" }
scale = { min = 2, max = 4 }
vm = { cpu_kind = "shared", cpus = 1, memory_mb = 512 }
restart = { policy = "on-failure", retries = 3 }

[services.worker]
command = ["node", "worker.js"]

[services.web]
port = 3000
health = { path = "/" }
env_from = { API_URL = "api.url" }

[databases.db]
engine = "postgres"

[environments.staging]
target = "fly"

[environments.production]
target = "fly"
regions = ["iad", "fra"]

[targets.fly]
org = "acme"
primary_region = "iad"
"#;

pub fn app() -> App {
    shipit_core::parse(MANIFEST, "shipit.toml").unwrap()
}

pub fn target<'a>(app: &'a App, env: &str) -> Target<'a> {
    Target { app, env: app.environments.get(env).unwrap() }
}

pub fn service<'a>(t: Target<'a>, name: &str) -> &'a Service {
    t.env.services.get(name).unwrap()
}

/// A digest made from a label.
pub fn digest(label: &str) -> String {
    shipit_testkit::conformance::digest(label)
}

/// A shipit release id (`YYYYMMDDTHHMMSSZ-sha`) `n` minutes after 03:00.
pub fn release(n: u32) -> String {
    format!("20261122T03{n:02}00Z-abc{n:04}")
}

pub fn builder(fake: &FlyFake) -> shipit_fly::FlyConfig {
    FlyPlatform::builder().with_base_url(fake.uri()).poll_interval(Duration::from_millis(10)).retry(RetryPolicy::fast())
}

pub fn platform(fake: &FlyFake) -> FlyPlatform {
    builder(fake).token(SecretString::from(TOKEN.to_string())).build().unwrap()
}

/// A deploy of `service` to the image labelled `label` as release `n`.
pub fn request<'a>(t: Target<'a>, service: &'a Service, label: &str, n: u32) -> DeployRequest<'a> {
    let image: ImageRef = service.image.with_tag(label).with_digest(&digest(label));
    let image = PinnedImage::new(image).unwrap();
    let mut req = DeployRequest::new(t, service, image, ReleaseInfo::new(release(n), Some(format!("abc{n:04}"))));
    req.strategy = Some(Strategy::Rolling);
    req.wait_timeout = Duration::from_secs(5);
    req
}

pub fn fly_app(env: &str, service: &str) -> String {
    format!("shop-{service}-{env}")
}

/// Machine updates (`POST /v1/apps/{app}/machines/{id}`).
pub fn updates(requests: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.split('/').count() == 6 && r.path.contains("/machines/"))
        .collect()
}

/// Lease acquisitions (`POST …/lease`).
pub fn lease_posts(requests: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/lease")).collect()
}

/// A deploy the way the engine runs it: the restore point first, then the deploy.
pub async fn deploy(fly: &FlyPlatform, req: &DeployRequest<'_>) -> Result<Deployed, Error> {
    let mut point = fly.restore_point(req.target, req.service).await?;
    fly.deploy(req, &mut point).await.map_err(Error::from)
}

/// A rollback the way the engine runs it: `to`'s restore point, then a restore with the
/// request's wait and lock settings; `req.release` names the failed release when it is not `to`.
pub async fn rollback(fly: &FlyPlatform, req: &DeployRequest<'_>, to: &Release) -> Result<Deployed, Error> {
    let point = fly.release_point(req.target, req.service, to).await?;
    let reason = if req.release.id == to.id {
        RestoreReason::Rollback
    } else {
        RestoreReason::Failed { release: req.release.clone(), why: "test".into() }
    };
    let mut r = RestoreRequest::new(req.target, req.service, reason);
    r.wait_timeout = req.wait_timeout;
    r.lock_wait = req.lock_wait;
    r.cancel = req.cancel.clone();
    r.events = req.events.clone();
    fly.restore(&r, &point).await.map_err(Error::from)
}
