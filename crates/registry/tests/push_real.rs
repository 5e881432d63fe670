//! Pushes and retags against a REAL registry (Debian's `docker-registry`, started by each test,
//! see `support`): layouts as directories and tars, single- and multi-platform with
//! attestations, skipping and mounting blobs, chunked uploads, failures that leave no tag, and
//! retags that move no blob — checked through the registry's own access log and `skopeo`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use shipit_core::retry::RetryPolicy;
use shipit_core::{ErrorKind, ImageRef};
use shipit_registry::{PushOptions, RegistryClient, RegistryError, UploadMode};
use support::{Layout, RealRegistry, multi_arch, random_bytes, single_arch, skopeo_raw};

fn client(registry: &RealRegistry) -> RegistryClient {
    RegistryClient::builder().insecure_hosts(vec![registry.host()]).retry(RetryPolicy::fast()).build().unwrap()
}

fn image(registry: &RealRegistry, repo: &str) -> ImageRef {
    format!("{}/{repo}", registry.host()).parse().unwrap()
}

fn tags(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn single_arch_directory_push_resolves_to_the_layout_digest_and_skopeo_sees_the_same_bytes() {
    let Some(registry) = RealRegistry::start() else { return };
    let (layout, manifest) = single_arch(2, 300_000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let c = client(&registry);
    let img = image(&registry, "acme/api");

    let report = c.push_layout(&path, &img, &tags(&["v1", "latest"]), &PushOptions::default()).await.unwrap();

    let digest = manifest["digest"].as_str().unwrap();
    assert_eq!(report.digest, digest);
    assert_eq!(report.tags, ["v1", "latest"]);
    assert_eq!((report.blobs_uploaded, report.blobs_skipped, report.blobs_mounted), (3, 0, 0), "{report:?}");
    assert_eq!(
        report.bytes_uploaded,
        layout.blobs.values().map(|b| b.len() as u64).sum::<u64>() - manifest["size"].as_u64().unwrap()
    );
    assert_eq!(report.manifests_pushed, 1);
    assert_eq!(report.image.to_string(), format!("{}/acme/api@{digest}", registry.host()));
    assert_eq!(c.resolve_digest(&img.with_tag("v1")).await.unwrap(), digest);
    assert_eq!(c.resolve_digest(&img.with_tag("latest")).await.unwrap(), digest);

    // Blobs, then the manifest by digest, then the tags.
    let log = registry.access_log();
    let writes: Vec<String> = log
        .iter()
        .filter(|a| a.method == "PUT")
        .map(|a| if a.is_blob() { "blob".to_string() } else { a.path().rsplit('/').next().unwrap().to_string() })
        .collect();
    assert_eq!(writes, ["blob", "blob", "blob", digest, "v1", "latest"], "{log:#?}");
    assert_eq!(report.requests, log.iter().filter(|a| a.uri != "/v2/").count() as u64 - 2, "resolves made 2: {log:#?}");

    let Some(raw) = skopeo_raw(&format!("{}/acme/api:v1", registry.host())) else { return };
    assert_eq!(raw, layout.blobs[digest], "the registry serves the layout's manifest byte for byte");
}

#[tokio::test]
async fn tar_layout_push() {
    let Some(registry) = RealRegistry::start() else { return };
    let (layout, manifest) = single_arch(3, 200_000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_tar(&dir.path().join("image.tar"));
    let c = client(&registry);
    let img = image(&registry, "acme/worker");

    let report = c.push_layout(&path, &img, &tags(&["3f2c1ab"]), &PushOptions::default()).await.unwrap();

    let digest = manifest["digest"].as_str().unwrap();
    assert_eq!(report.digest, digest);
    assert_eq!(report.blobs_uploaded, 4);
    assert_eq!(c.resolve_digest(&img.with_tag("3f2c1ab")).await.unwrap(), digest);
    let Some(raw) = skopeo_raw(&format!("{}/acme/worker:3f2c1ab", registry.host())) else { return };
    assert_eq!(raw, layout.blobs[digest]);
}

#[tokio::test]
async fn multi_arch_index_with_attestations_is_pushed_with_its_digest_intact() {
    let Some(registry) = RealRegistry::start() else { return };
    let (layout, index) = multi_arch(150_000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_tar(&dir.path().join("multi.tar"));
    let c = client(&registry);
    let img = image(&registry, "acme/web");

    let report = c.push_layout(&path, &img, &tags(&["v2"]), &PushOptions::default().concurrency(3)).await.unwrap();

    let digest = index["digest"].as_str().unwrap();
    assert_eq!(report.digest, digest);
    assert_eq!(report.media_type, support::OCI_INDEX);
    assert_eq!(report.manifests_pushed, 5, "two images, two attestations, the index");
    // Every blob once: the shared base layer and the identical attestation configs too.
    let blobs = layout.blobs.len() - 5;
    assert_eq!(report.blobs_uploaded, blobs, "{report:?}");
    let log = registry.access_log();
    let sessions = log.iter().filter(|a| a.method == "POST" && a.uri.contains("/blobs/uploads/")).count();
    assert_eq!(sessions, blobs, "one upload per distinct blob: {log:#?}");

    assert_eq!(c.resolve_digest(&img.with_tag("v2")).await.unwrap(), digest);
    let got = c.get_manifest(&img.with_tag("v2")).await.unwrap();
    assert_eq!(got.bytes, layout.blobs[digest]);
    assert_eq!(got.media_type, support::OCI_INDEX);
    // Children are there by digest, attestations included.
    let parsed: serde_json::Value = serde_json::from_slice(&got.bytes).unwrap();
    for child in parsed["manifests"].as_array().unwrap() {
        let child_digest = child["digest"].as_str().unwrap();
        let m = c.get_manifest(&img.with_digest(child_digest)).await.unwrap();
        assert_eq!(m.digest, child_digest);
    }
    let Some(raw) = skopeo_raw(&format!("{}/acme/web:v2", registry.host())) else { return };
    assert_eq!(raw, layout.blobs[digest]);
}

#[tokio::test]
async fn a_second_push_skips_the_blobs_the_registry_has() {
    let Some(registry) = RealRegistry::start() else { return };
    let (layout, _) = multi_arch(100_000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let c = client(&registry);
    let img = image(&registry, "acme/api");
    let first = c.push_layout(&path, &img, &tags(&["v1"]), &PushOptions::default()).await.unwrap();
    let before = registry.access_log().len();

    let second = c.push_layout(&path, &img, &tags(&["v1"]), &PushOptions::default()).await.unwrap();

    assert_eq!(second.digest, first.digest);
    assert_eq!((second.blobs_uploaded, second.bytes_uploaded), (0, 0), "{second:?}");
    assert_eq!(second.blobs_skipped, first.blobs_uploaded);
    let log = registry.access_log_since(before);
    assert!(log.iter().filter(|a| a.is_blob()).all(|a| a.method == "HEAD" && a.status == 200), "{log:#?}");
}

#[tokio::test]
async fn a_sibling_repository_push_mounts_the_blobs() {
    let Some(registry) = RealRegistry::start() else { return };
    let seed = support::seed();
    let (os, layer1, layer2) =
        (random_bytes(seed, 250_000), random_bytes(seed + 1, 250_000), random_bytes(seed + 2, 9));
    let mut base = Layout::default();
    let desc = base.image("linux", "amd64", vec![os.clone(), layer1.clone()]);
    base.top(desc, None);
    // The app: the base's layers and one of its own (and its own config).
    let mut app = Layout::default();
    let desc = app.image("linux", "amd64", vec![os, layer1, layer2]);
    app.top(desc, None);
    let dir = tempfile::tempdir().unwrap();
    let base_path = base.write_dir(&dir.path().join("base"));
    let app_path = app.write_tar(&dir.path().join("app.tar"));
    let c = client(&registry);
    c.push_layout(&base_path, &image(&registry, "acme/base"), &tags(&["v1"]), &PushOptions::default()).await.unwrap();
    let before = registry.access_log().len();

    let opts = PushOptions::default().mount_from(vec!["acme/base".into()]);
    let api = c.push_layout(&app_path, &image(&registry, "acme/api"), &tags(&["v1"]), &opts).await.unwrap();

    assert_eq!((api.blobs_mounted, api.blobs_uploaded), (2, 2), "{api:?}");
    let log = registry.access_log_since(before);
    let mounts: Vec<_> = log.iter().filter(|a| a.method == "POST" && a.uri.contains("mount=")).collect();
    assert_eq!(mounts.len(), 4, "{log:#?}");
    assert!(mounts.iter().all(|a| a.uri.contains("from=acme%2Fbase")), "{mounts:#?}");
    assert_eq!(mounts.iter().filter(|a| a.status == 201).count(), 2, "mounted: {mounts:#?}");
    assert_eq!(mounts.iter().filter(|a| a.status == 202).count(), 2, "not there, uploaded in the session: {mounts:#?}");
    assert_eq!(log.iter().filter(|a| a.method == "POST").count(), 4, "the 202 sessions are used: {log:#?}");
    assert_eq!(c.resolve_digest(&image(&registry, "acme/api").with_tag("v1")).await.unwrap(), api.digest);
}

#[tokio::test]
async fn retag_is_one_manifest_get_and_one_put_and_no_blob() {
    let Some(registry) = RealRegistry::start() else { return };
    let (layout, index) = multi_arch(50_000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let c = client(&registry);
    let img = image(&registry, "acme/api");
    c.push_layout(&path, &img, &tags(&["3f2c1ab"]), &PushOptions::default()).await.unwrap();
    let before_log = registry.access_log().len();
    let before = c.requests_made();

    let report = c.retag(&img.with_tag("3f2c1ab"), &tags(&["staging"])).await.unwrap();

    assert_eq!(c.requests_made() - before, 2);
    assert_eq!(report.requests, 2);
    let log = registry.access_log_since(before_log);
    let calls: Vec<(String, String)> = log.iter().map(|a| (a.method.clone(), a.path().to_string())).collect();
    assert_eq!(
        calls,
        [
            ("GET".into(), "/v2/acme/api/manifests/3f2c1ab".into()),
            ("PUT".into(), "/v2/acme/api/manifests/staging".into())
        ],
        "{log:#?}"
    );
    assert!(log.iter().all(|a| !a.is_blob()));
    let digest = index["digest"].as_str().unwrap();
    assert_eq!(report.digest, digest);
    assert_eq!(c.resolve_digest(&img.with_tag("staging")).await.unwrap(), digest);
    let Some(raw) = skopeo_raw(&format!("{}/acme/api:staging", registry.host())) else { return };
    assert_eq!(raw, layout.blobs[digest]);
}

async fn corrupt_blob_push_leaves_no_tag(mode: UploadMode) {
    let Some(registry) = RealRegistry::start() else { return };
    let (mut layout, manifest) = single_arch(2, 2_500_000);
    let m: serde_json::Value = serde_json::from_slice(&layout.blobs[manifest["digest"].as_str().unwrap()]).unwrap();
    let bad = m["layers"][1]["digest"].as_str().unwrap().to_string();
    layout.corrupt(&bad);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_tar(&dir.path().join("bad.tar"));
    let c = client(&registry);
    let img = image(&registry, "acme/api");

    let opts = PushOptions::default().upload(mode).chunk_size(1024 * 1024);
    let err = c.push_layout(&path, &img, &tags(&["v1"]), &opts).await.unwrap_err();

    assert!(matches!(&err, RegistryError::CorruptBlob { digest, .. } if *digest == bad), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("nothing was tagged"), "{err}");
    let missing = c.resolve_digest(&img.with_tag("v1")).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    let log = registry.access_log();
    assert!(!log.iter().any(|a| a.is_manifest() && a.method == "PUT"), "{log:#?}");
    assert!(
        !log.iter().any(|a| a.method == "PUT"
            && a.status == 201
            && a.uri.contains(&format!("digest={}", bad.replace(':', "%3A")))),
        "the corrupt blob is never committed: {log:#?}"
    );
}

#[tokio::test]
async fn a_corrupt_blob_fails_the_monolithic_push_and_leaves_no_tag() {
    corrupt_blob_push_leaves_no_tag(UploadMode::Monolithic).await;
}

#[tokio::test]
async fn a_corrupt_blob_fails_the_chunked_push_and_leaves_no_tag() {
    corrupt_blob_push_leaves_no_tag(UploadMode::Chunked).await;
}

#[tokio::test]
async fn an_interrupted_push_leaves_no_tag() {
    let Some(registry) = RealRegistry::start() else { return };
    let (layout, _) = single_arch(4, 4_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let c = client(&registry);
    let img = image(&registry, "acme/api");

    let (tags, opts) = (tags(&["v1"]), PushOptions::default());
    let push = c.push_layout(&path, &img, &tags, &opts);
    assert!(tokio::time::timeout(Duration::from_millis(1), push).await.is_err(), "the push was cut short");

    let missing = c.resolve_digest(&img.with_tag("v1")).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
}

#[tokio::test]
async fn one_mib_chunks_make_several_patches_against_the_real_registry() {
    let Some(registry) = RealRegistry::start() else { return };
    let (layout, manifest) = single_arch(1, 3_500_000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_tar(&dir.path().join("big.tar"));
    let c = client(&registry);
    let img = image(&registry, "acme/big");

    let opts = PushOptions::default().upload(UploadMode::Chunked).chunk_size(1024 * 1024);
    let report = c.push_layout(&path, &img, &tags(&["v1"]), &opts).await.unwrap();

    assert_eq!(report.blobs_uploaded, 2);
    let log = registry.access_log();
    let patches = log.iter().filter(|a| a.method == "PATCH").count();
    assert_eq!(patches, 4 + 1, "3.5 MB in 1 MiB chunks is 4 PATCHes, the config 1: {log:#?}");
    assert!(log.iter().filter(|a| a.method == "PATCH").all(|a| a.status == 202), "{log:#?}");
    let digest = manifest["digest"].as_str().unwrap();
    assert_eq!(c.resolve_digest(&img.with_tag("v1")).await.unwrap(), digest);
    let Some(raw) = skopeo_raw(&format!("{}/acme/big:v1", registry.host())) else { return };
    assert_eq!(raw, layout.blobs[digest]);
}

#[tokio::test]
async fn a_layout_written_by_skopeo_pushes_back_to_the_same_digest() {
    let Some(registry) = RealRegistry::start() else { return };
    let (layout, _) = multi_arch(20_000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(&dir.path().join("ours"));
    let c = client(&registry);
    c.push_layout(&path, &image(&registry, "acme/web"), &tags(&["v1"]), &PushOptions::default()).await.unwrap();

    // Another tool's layout: skopeo copies the whole index into an OCI directory.
    let theirs = dir.path().join("theirs");
    let src = format!("docker://{}/acme/web:v1", registry.host());
    let dest = format!("oci:{}:v1", theirs.display());
    let copied =
        std::process::Command::new("skopeo").args(["copy", "--all", "--src-tls-verify=false", &src, &dest]).output();
    let output = match copied {
        Ok(output) => output,
        Err(_) => {
            // Same rule as the registry: fails in CI, skips visibly elsewhere.
            if skopeo_raw(&format!("{}/acme/web:v1", registry.host())).is_none() {
                return;
            }
            panic!("skopeo is installed but could not run");
        }
    };
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // skopeo may re-encode manifests: what counts is the digest ITS index.json names.
    let their_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(theirs.join("index.json")).unwrap()).unwrap();
    let their_digest = their_index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let report =
        c.push_layout(&theirs, &image(&registry, "acme/copy"), &tags(&["v1"]), &PushOptions::default()).await.unwrap();
    assert_eq!(report.digest, their_digest);
    assert_eq!(report.manifests_pushed, 5, "{report:?}");
    assert_eq!(c.resolve_digest(&image(&registry, "acme/copy").with_tag("v1")).await.unwrap(), report.digest);
}
