//! Images and promotion, run as the built binary: `promote` moves exactly the digests staging
//! runs, environment tags follow what runs, the image policy refuses before anything changes,
//! and `push`/`tag` work without a shipit.toml.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use assert_cmd::Command;
use sha2::{Digest, Sha256};
use support::{SECRET, World, digest_of, output};

const REPO_API: &str = "acme/forgestack-api";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_runs_in_production_exactly_what_staging_runs() {
    let w = World::new().await;
    w.push("v1");
    let v2 = w.push("v2");
    assert_eq!(
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", "v1"])).0,
        0
    );
    assert_eq!(
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args([
            "deploy",
            "--env",
            "staging",
            "--tag",
            "v2",
            "--sha",
            "2222222abc"
        ]))
        .0,
        0
    );
    // the environment tag follows what runs
    assert_eq!(w.registry.tag_digest(REPO_API, "staging").as_deref(), Some(digest_of(&v2, "api")));

    // someone re-pushes the v2 tag: promote must not care, it reads what staging runs
    let moved = w.registry.put_image(REPO_API, "v2");
    assert_ne!(moved, digest_of(&v2, "api"));

    let (code, stdout, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["promote", "staging", "production"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("promote") && stdout.contains("live and healthy"), "{stdout}");
    for service in ["api", "worker", "web"] {
        let running = w.digests_running(&format!("forgestack-{service}-production"));
        assert!(!running.is_empty(), "{service} runs in production");
        assert!(
            running.iter().all(|d| d == digest_of(&v2, service)),
            "{service}: production runs staging's digest: {running:?}"
        );
    }
    // production machines in both regions
    let regions: std::collections::BTreeSet<String> =
        w.fly.machines("forgestack-api-production").into_iter().map(|m| m.region).collect();
    assert_eq!(regions.into_iter().collect::<Vec<_>>(), ["fra", "iad"]);
    assert_eq!(w.registry.tag_digest(REPO_API, "production").as_deref(), Some(digest_of(&v2, "api")));
    // the promoted release records the commit staging's release was built from
    let (code, stdout, _) = output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args([
        "releases",
        "--env",
        "production",
        "--service",
        "api",
        "--json",
    ]));
    assert_eq!(code, 0);
    let live: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!((live["status"].as_str(), live["git_sha"].as_str()), (Some("live"), Some("2222222abc")), "{live}");

    let (code, _, stderr) = output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["promote", "staging", "staging"]));
    assert_eq!(code, 4, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_needs_something_deployed() {
    let w = World::new().await;
    let (code, _, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["promote", "staging", "production"]));
    assert_ne!(code, 0);
    assert!(stderr.contains("not deployed in staging"), "{stderr}");
    assert!(w.fly.apps().is_empty(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_policy_refuses_before_anything_changes_unless_forced() {
    let w = World::with_api_lines("policy = { non_root = true, require_healthcheck = true, max_image_mb = 100 }").await;
    w.push("v1");
    let (code, stdout, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    assert!(stderr.contains("runs as root") && stderr.contains("declares no HEALTHCHECK"), "{stderr}");
    assert!(w.fly.apps().is_empty(), "nothing was changed");

    let (code, stdout, stderr) = output(
        w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", "v1", "--force"]),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("POLICY OVERRIDDEN"), "loudly: {stderr}");

    let (code, stdout, _) =
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["doctor", "--env", "staging", "--tag", "v1"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  policy") && stdout.contains("runs as root"), "{stdout}");
}

/// Writes a one-image OCI layout; returns the manifest's digest.
fn write_layout(dir: &Path) -> String {
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        (d, bytes.len())
    };
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (layer_d, layer_n) = put(&layer);
    let config = br#"{"architecture":"amd64","os":"linux","config":{"User":"app","ExposedPorts":{"4000/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (config_d, config_n) = put(config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_d, "size": layer_n}]
    })
    .to_string();
    let (manifest_d, manifest_n) = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest_n}]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    manifest_d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_tag_without_a_manifest() {
    let w = World::new().await;
    let layout = tempfile::tempdir().unwrap();
    let digest = write_layout(layout.path());
    let image = format!("{}/acme/uploaded", w.registry.host());
    let shipit = || {
        let mut c = Command::cargo_bin("shipit").unwrap();
        c.env_clear().env("CI", "true").env("SHIPIT_INSECURE_REGISTRIES", w.registry.host()).current_dir(layout.path());
        c
    };
    let (code, stdout, stderr) = output(
        shipit().arg("push").arg(layout.path()).args(["--image", &image, "--tag", "3f2c1ab", "--tag", "latest"]),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(w.registry.tag_digest("acme/uploaded", "3f2c1ab").as_deref(), Some(digest.as_str()), "digest preserved");
    assert_eq!(w.registry.tag_digest("acme/uploaded", "latest").as_deref(), Some(digest.as_str()));

    // again: every blob is already there
    let (code, stdout, _) =
        output(shipit().arg("--json").arg("push").arg(layout.path()).args(["--image", &image, "--tag", "again"]));
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!((report["blobs_uploaded"].as_u64(), report["bytes_uploaded"].as_u64()), (Some(0), Some(0)), "{report}");

    w.registry.clear_requests();
    let (code, stdout, stderr) = output(shipit().args(["tag", &format!("{image}:3f2c1ab"), "production"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(w.registry.tag_digest("acme/uploaded", "production").as_deref(), Some(digest.as_str()));
    let requests = w.registry.requests();
    assert_eq!(requests.len(), 2, "one GET and one PUT: {requests:?}");
    assert!(requests.iter().all(|r| r.path.contains("/manifests/")), "no blob moved: {requests:?}");

    // bad input changes nothing
    let (code, _, stderr) = output(shipit().args(["tag", &format!("{image}:3f2c1ab"), "not a tag"]));
    assert_eq!(code, 4, "{stderr}");
    let (code, _, stderr) = output(shipit().arg("push").arg("/nonexistent").args(["--image", &image, "--tag", "x"]));
    assert_eq!(code, 4, "{stderr}");
}
