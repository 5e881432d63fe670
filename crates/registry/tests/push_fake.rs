//! Pushes, retags and layout checks against the registry fake: GHCR's token flow with push and
//! mount scopes, a token expiring mid-push, retried blob HEADs, a 416 resumed from the upload
//! status, GHCR's chunk limit, refusals, ordering (tags last), and every layout error found
//! before the first request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use secrecy::SecretString;
use shipit_core::retry::RetryPolicy;
use shipit_core::{ErrorKind, ImageRef};
use shipit_registry::{PushOptions, RegistryClient, RegistryConfig, RegistryError, UploadMode};
use shipit_testkit::registry::{OCI_MANIFEST, RecordedRequest, RegistryFake};
use support::{Layout, multi_arch, random_bytes, seed, single_arch};

const USER: &str = "octocat";
const TOKEN: &str = "ghp_s3cr3tT0kenValue1234567890";

fn config(fake: &RegistryFake) -> RegistryConfig {
    RegistryClient::builder().insecure_hosts(vec![fake.host()]).retry(RetryPolicy::fast())
}

fn client(fake: &RegistryFake) -> RegistryClient {
    config(fake).build().unwrap()
}

fn authed(fake: &RegistryFake) -> RegistryClient {
    config(fake).credentials(USER, SecretString::from(TOKEN)).build().unwrap()
}

fn image(fake: &RegistryFake, repo: &str) -> ImageRef {
    format!("{}/{repo}", fake.host()).parse().unwrap()
}

fn tags(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn summary(requests: &[RecordedRequest]) -> Vec<String> {
    requests.iter().map(|r| format!("{} {} {}", r.method, r.path, r.status)).collect()
}

#[tokio::test]
async fn ghcr_token_flow_asks_for_push_and_the_mount_source() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    let (layout, manifest) = single_arch(2, 10_000);
    // The base repository already has the first layer.
    let m: serde_json::Value = serde_json::from_slice(&layout.blobs[manifest["digest"].as_str().unwrap()]).unwrap();
    let shared = m["layers"][0]["digest"].as_str().unwrap();
    fake.put_blob("acme/base", &layout.blobs[shared]);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let c = authed(&fake);

    let opts = PushOptions::default().mount_from(vec!["acme/base".into()]);
    let report = c.push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &opts).await.unwrap();

    assert_eq!((report.blobs_mounted, report.blobs_uploaded), (1, 2), "{report:?}");
    assert_eq!(fake.tag_digest("acme/api", "v1").as_deref(), Some(manifest["digest"].as_str().unwrap()));
    let requests = fake.requests();
    let tokens: Vec<_> = requests.iter().filter(|r| r.path == "/token").collect();
    assert_eq!(tokens.len(), 1, "one token serves the whole push: {:#?}", summary(&requests));
    assert_eq!(tokens[0].auth_scheme.as_deref(), Some("Basic"));
    assert!(
        tokens[0].query.contains("scope=repository%3Aacme%2Fapi%3Apull%2Cpush&scope=repository%3Aacme%2Fbase%3Apull"),
        "{}",
        tokens[0].query
    );
    assert_eq!(fake.tokens_issued(), 1);
    assert_eq!(report.requests, requests.len() as u64);
    assert_eq!(fake.open_uploads(), 0);
}

#[tokio::test]
async fn mount_candidates_are_tried_in_order_and_unused_sessions_cancelled() {
    let fake = RegistryFake::start().await;
    let (layout, _) = single_arch(1, 1000);
    for bytes in layout.blobs.values() {
        fake.put_blob("acme/base", bytes);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());

    let opts = PushOptions::default().mount_from(vec!["acme/empty".into(), "acme/base".into()]);
    let report = client(&fake).push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &opts).await.unwrap();

    assert_eq!((report.blobs_mounted, report.blobs_uploaded), (2, 0), "{report:?}");
    let requests = fake.requests();
    assert_eq!(requests.iter().filter(|r| r.method == "DELETE").count(), 2, "{:#?}", summary(&requests));
    assert_eq!(fake.open_uploads(), 0);
}

#[tokio::test]
async fn a_server_error_during_an_upload_starts_the_blob_over() {
    let fake = RegistryFake::start().await;
    let (layout, manifest) = single_arch(1, 2 * 1024 * 1024 + 5);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    fake.inject_status_on("PATCH", "/blobs/uploads/", 1, 500, 1);

    let opts = PushOptions::default().upload(UploadMode::Chunked).chunk_size(1024 * 1024).concurrency(1);
    let report = client(&fake).push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &opts).await.unwrap();

    assert_eq!(report.digest, manifest["digest"].as_str().unwrap());
    for (digest, bytes) in &layout.blobs {
        if digest != manifest["digest"].as_str().unwrap() {
            assert_eq!(fake.blob("acme/api", digest).as_ref(), Some(bytes));
        }
    }
    let posts = fake.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 3, "two blobs, one of them started over");
}

#[tokio::test]
async fn a_token_refused_mid_push_is_renewed_and_the_push_goes_on() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    let (layout, manifest) = single_arch(1, 3 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_tar(&dir.path().join("l.tar"));
    // The token "expires" at the second PATCH.
    fake.expire_tokens_on("PATCH", "/blobs/uploads/", 1);
    let c = authed(&fake);

    let opts = PushOptions::default().upload(UploadMode::Chunked).chunk_size(1024 * 1024).concurrency(1);
    let report = c.push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &opts).await.unwrap();

    assert_eq!(report.digest, manifest["digest"].as_str().unwrap());
    assert_eq!(fake.tokens_issued(), 2);
    let requests = fake.requests();
    let patches: Vec<u16> = requests.iter().filter(|r| r.method == "PATCH").map(|r| r.status).collect();
    assert!(patches.contains(&401), "{:#?}", summary(&requests));
    // The refused chunk is sent again, whole: the layer arrives intact.
    let layer = layout.blobs.iter().find(|(_, b)| b.len() == 3 * 1024 * 1024).unwrap();
    assert_eq!(fake.blob("acme/api", layer.0).as_deref(), Some(&layer.1[..]));
}

#[tokio::test]
async fn a_server_error_on_a_blob_head_is_retried() {
    let fake = RegistryFake::start().await;
    let (layout, manifest) = single_arch(1, 1000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    fake.inject_status_on("HEAD", "/blobs/", 0, 503, 2);

    let report = client(&fake)
        .push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &PushOptions::default())
        .await
        .unwrap();

    assert_eq!(report.blobs_uploaded, 2);
    let heads: Vec<u16> = fake.requests().iter().filter(|r| r.method == "HEAD").map(|r| r.status).collect();
    assert_eq!(heads.iter().filter(|s| **s == 503).count(), 2, "{heads:?}");
    assert_eq!(fake.tag_digest("acme/api", "v1").as_deref(), Some(manifest["digest"].as_str().unwrap()));
}

#[tokio::test]
async fn a_416_on_a_patch_resumes_from_the_upload_status() {
    let fake = RegistryFake::start().await;
    let mut layout = Layout::default();
    let layer = random_bytes(seed(), 3 * 1024 * 1024 + 17);
    let manifest = layout.image("linux", "arm64", vec![layer.clone()]);
    layout.top(manifest.clone(), None);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    // The second PATCH of the session is refused with 416.
    fake.inject_status_on("PATCH", "/blobs/uploads/", 1, 416, 1);

    let opts = PushOptions::default().upload(UploadMode::Chunked).chunk_size(1024 * 1024).concurrency(1);
    let report = client(&fake).push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &opts).await.unwrap();

    let requests = fake.requests();
    let i = requests.iter().position(|r| r.method == "PATCH" && r.status == 416).unwrap();
    assert_eq!(requests[i + 1].method, "GET", "upload status after the 416: {:#?}", summary(&requests));
    assert!(requests[i + 1].path.contains("/blobs/uploads/"));
    assert_eq!(requests[i + 2].method, "PATCH");
    assert_eq!(requests[i + 2].status, 202);
    assert_eq!(fake.blob("acme/api", &support::sha256(&layer)), Some(layer));
    assert_eq!(report.digest, manifest["digest"].as_str().unwrap());
    // 4 chunks of the layer, 1 resent after the 416, 1 for the config.
    assert_eq!(requests.iter().filter(|r| r.method == "PATCH").count(), 4 + 1 + 1);
}

#[tokio::test]
async fn chunks_stay_within_ghcrs_limit() {
    let fake = RegistryFake::start().await;
    fake.max_chunk_size(Some(4 * 1024 * 1024));
    let (layout, _) = single_arch(1, 9 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_tar(&dir.path().join("l.tar"));

    let opts = PushOptions::default().upload(UploadMode::Chunked);
    client(&fake).push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &opts).await.unwrap();

    let patches: Vec<usize> = fake.requests().iter().filter(|r| r.method == "PATCH").map(|r| r.body_len).collect();
    assert!(patches.iter().all(|n| *n <= 4 * 1024 * 1024), "{patches:?}");
    assert_eq!(patches.iter().filter(|n| **n == 4 * 1024 * 1024).count(), 2, "{patches:?}");

    // Without tags the image is pushed by digest only.
    let (layout, _) = single_arch(1, 1000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let report =
        client(&fake).push_layout(&path, &image(&fake, "acme/small"), &[], &PushOptions::default()).await.unwrap();
    assert!(report.tags.is_empty());
    assert_eq!(fake.manifest("acme/small", &report.digest).map(|m| m.0).as_deref(), Some(OCI_MANIFEST));
}

#[tokio::test]
async fn a_token_without_write_permission_is_unauthorized_and_says_packages_write() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    fake.deny_push(true);
    let (layout, _) = single_arch(1, 1000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());

    let err = authed(&fake)
        .push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &PushOptions::default())
        .await
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err:?}");
    let text = err.to_string();
    assert!(text.contains("GITHUB_TOKEN") && text.contains("GHCR_TOKEN") && text.contains("packages: write"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(fake.tag_digest("acme/api", "v1").is_none());

    // Anonymous: the token service gives pull only; the push ends in the same advice.
    fake.deny_push(false);
    let err = client(&fake)
        .push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &PushOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err:?}");
    assert!(err.to_string().contains("packages: write"), "{err}");
}

#[tokio::test]
async fn children_before_parents_and_tags_last() {
    let fake = RegistryFake::start().await;
    let (layout, index) = multi_arch(5000);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_tar(&dir.path().join("m.tar"));

    let report = client(&fake)
        .push_layout(
            &path,
            &image(&fake, "acme/web").with_tag("latest"),
            &tags(&["v1", "latest"]),
            &PushOptions::default(),
        )
        .await
        .unwrap();

    assert_eq!(report.tags, ["v1", "latest"], "the image's own tag is not put twice");
    let digest = index["digest"].as_str().unwrap();
    let requests = fake.requests();
    let manifest_puts: Vec<String> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(manifest_puts.len(), 5 + 2);
    assert_eq!(manifest_puts[4], digest, "the index after its children");
    assert_eq!(&manifest_puts[5..], ["v1", "latest"]);
    let last_blob = requests.iter().rposition(|r| r.path.contains("/blobs/")).unwrap();
    let first_manifest = requests.iter().position(|r| r.path.contains("/manifests/")).unwrap();
    assert!(last_blob < first_manifest, "{:#?}", summary(&requests));
    // Every blob once, the shared ones included.
    let posts = requests.iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, layout.blobs.len() - 5);
    assert_eq!(fake.tag_digest("acme/web", "latest").as_deref(), Some(digest));
}

#[tokio::test]
async fn push_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let fake = RegistryFake::start().await;
    let c = client(&fake);
    let img = image(&fake, "acme/api");
    let path = std::path::PathBuf::from("/nonexistent");
    let opts = PushOptions::default();
    let push = c.push_layout(&path, &img, &[], &opts);
    assert_send(&push);
    let retag = c.retag(&img, &[]);
    assert_send(&retag);
}

#[tokio::test]
async fn retag_is_two_requests_and_keeps_bytes_and_media_type() {
    let fake = RegistryFake::start().await;
    let digest = fake.put_image("acme/api", "3f2c1ab");
    let c = client(&fake);
    let img = image(&fake, "acme/api");

    let report = c.retag(&img.with_tag("3f2c1ab"), &tags(&["production"])).await.unwrap();

    assert_eq!(report.digest, digest);
    assert_eq!(report.requests, 2);
    assert_eq!(
        summary(&fake.requests()),
        ["GET /v2/acme/api/manifests/3f2c1ab 200".to_string(), "PUT /v2/acme/api/manifests/production 201".to_string()]
    );
    assert_eq!(fake.manifest("acme/api", "production"), fake.manifest("acme/api", &digest));
    assert_eq!(fake.bytes_received(), fake.manifest("acme/api", &digest).unwrap().1.len());

    // By digest, with auth: one token for pull,push, then the same two requests.
    fake.require_auth(USER, TOKEN);
    fake.clear_requests();
    let c = authed(&fake);
    let report = c.retag(&img.with_digest(&digest), &tags(&["staging", "production"])).await.unwrap();
    assert_eq!(report.tags, ["staging", "production"]);
    let requests = fake.requests();
    assert_eq!(requests.iter().filter(|r| r.path == "/token").count(), 1, "{:#?}", summary(&requests));
    assert!(requests.iter().find(|r| r.path == "/token").unwrap().query.contains("pull%2Cpush"));
    assert!(requests.iter().all(|r| !r.path.contains("/blobs/")));
    assert_eq!(fake.tag_digest("acme/api", "staging").as_deref(), Some(digest.as_str()));
}

#[tokio::test]
async fn get_and_put_manifest() {
    let fake = RegistryFake::start().await;
    let digest = fake.put_image("acme/api", "v1");
    let c = client(&fake);
    let img = image(&fake, "acme/api");
    let got = c.get_manifest(&img.with_tag("v1")).await.unwrap();
    assert_eq!((got.digest.as_str(), got.media_type.as_str()), (digest.as_str(), OCI_MANIFEST));
    let put = c.put_manifest(&img.with_tag("copy"), &got.media_type, &got.bytes).await.unwrap();
    assert_eq!(put, digest);
    let put = c.put_manifest(&img, &got.media_type, &got.bytes).await.unwrap();
    assert_eq!(put, digest, "no tag: put by digest");
    let wrong = img.with_digest(&support::sha256(b"other"));
    assert!(matches!(
        c.put_manifest(&wrong, OCI_MANIFEST, &got.bytes).await,
        Err(RegistryError::InvalidReference { .. })
    ));
    // A manifest whose blobs the repository lacks is refused by the registry.
    let err = c.put_manifest(&image(&fake, "acme/empty").with_tag("v1"), OCI_MANIFEST, &got.bytes).await.unwrap_err();
    assert!(err.to_string().contains("MANIFEST_BLOB_UNKNOWN"), "{err}");
}

/// Errors found before the first request.
async fn refused_before_any_request(path: &std::path::Path, tags: &[String], opts: &PushOptions) -> RegistryError {
    let fake = RegistryFake::start().await;
    let c = client(&fake);
    let err = c.push_layout(path, &image(&fake, "acme/api"), tags, opts).await.unwrap_err();
    assert_eq!(c.requests_made(), 0, "{err}");
    assert!(fake.requests().is_empty());
    err
}

#[tokio::test]
async fn a_directory_that_is_not_a_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused_before_any_request(dir.path(), &[], &PushOptions::default()).await;
    assert!(matches!(err, RegistryError::InvalidLayout { .. }), "{err:?}");
    assert!(err.to_string().contains("not an OCI image layout: it has no oci-layout file"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);

    std::fs::write(dir.path().join("oci-layout"), "{}").unwrap();
    let err = refused_before_any_request(dir.path(), &[], &PushOptions::default()).await;
    assert!(err.to_string().contains("no index.json"), "{err}");

    let file = dir.path().join("not.tar");
    std::fs::write(&file, "hello").unwrap();
    let err = refused_before_any_request(&file, &[], &PushOptions::default()).await;
    assert!(err.to_string().contains("tar"), "{err}");

    let err = refused_before_any_request(&dir.path().join("missing"), &[], &PushOptions::default()).await;
    assert!(err.to_string().contains("no such file"), "{err}");
}

#[tokio::test]
async fn a_missing_blob_is_refused() {
    let (mut layout, manifest) = single_arch(2, 1000);
    let m: serde_json::Value = serde_json::from_slice(&layout.blobs[manifest["digest"].as_str().unwrap()]).unwrap();
    let gone = m["layers"][1]["digest"].as_str().unwrap().to_string();
    layout.blobs.remove(&gone);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_tar(&dir.path().join("l.tar"));
    let err = refused_before_any_request(&path, &tags(&["v1"]), &PushOptions::default()).await;
    assert!(matches!(err, RegistryError::InvalidLayout { .. }), "{err:?}");
    assert!(err.to_string().contains(&gone) && err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn a_corrupt_manifest_is_refused_before_any_request() {
    let (mut layout, manifest) = single_arch(1, 1000);
    layout.corrupt(manifest["digest"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let err = refused_before_any_request(&path, &tags(&["v1"]), &PushOptions::default()).await;
    assert!(matches!(err, RegistryError::CorruptBlob { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unknown_platform_is_refused() {
    let mut layout = Layout::default();
    let amd = layout.image("linux", "amd64", vec![random_bytes(seed(), 100)]);
    let odd = layout.image("unknown", "unknown", vec![random_bytes(seed(), 100)]);
    let index = layout.index_of(vec![amd, odd.clone()]);
    layout.top(index, None);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let err = refused_before_any_request(&path, &tags(&["v1"]), &PushOptions::default()).await;
    let text = err.to_string();
    assert!(text.contains("unknown/unknown") && text.contains(odd["digest"].as_str().unwrap()), "{text}");
    assert!(text.contains("attestation"), "{text}");
}

#[tokio::test]
async fn an_invalid_tag_is_refused() {
    let (layout, _) = single_arch(1, 100);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let err = refused_before_any_request(&path, &tags(&["v1", "-bad"]), &PushOptions::default()).await;
    assert!(matches!(&err, RegistryError::InvalidTag { tag } if tag == "-bad"), "{err:?}");
    let err = refused_before_any_request(&path, &tags(&["a:b"]), &PushOptions::default()).await;
    assert!(matches!(err, RegistryError::InvalidTag { .. }), "{err:?}");
    let fake = RegistryFake::start().await;
    let err = client(&fake).retag(&image(&fake, "acme/api").with_tag("v1"), &tags(&["no/slash"])).await.unwrap_err();
    assert!(matches!(err, RegistryError::InvalidTag { .. }), "{err:?}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn several_images_need_a_ref_name() {
    let (mut layout, first) = single_arch(1, 100);
    let second = layout.image("linux", "arm64", vec![random_bytes(seed(), 100)]);
    layout.top(second.clone(), Some("arm"));
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let err = refused_before_any_request(&path, &[], &PushOptions::default()).await;
    let text = err.to_string();
    assert!(text.contains("lists 2 images") && text.contains("latest, arm") && text.contains("ref_name"), "{text}");
    let err = refused_before_any_request(&path, &[], &PushOptions::default().ref_name("nope")).await;
    assert!(err.to_string().contains("no image named \"nope\""), "{err}");

    let fake = RegistryFake::start().await;
    let c = client(&fake);
    let report = c
        .push_layout(&path, &image(&fake, "acme/api"), &tags(&["v1"]), &PushOptions::default().ref_name("arm"))
        .await
        .unwrap();
    assert_eq!(report.digest, second["digest"].as_str().unwrap());
    assert_ne!(report.digest, first["digest"].as_str().unwrap());
}

#[tokio::test]
async fn a_pinned_digest_must_be_the_layouts() {
    let (layout, manifest) = single_arch(1, 100);
    let dir = tempfile::tempdir().unwrap();
    let path = layout.write_dir(dir.path());
    let fake = RegistryFake::start().await;
    let c = client(&fake);
    let wrong = image(&fake, "acme/api").with_digest(&support::sha256(b"x"));
    let err = c.push_layout(&path, &wrong, &[], &PushOptions::default()).await.unwrap_err();
    assert!(matches!(err, RegistryError::InvalidReference { .. }), "{err:?}");
    assert!(fake.requests().is_empty());
    let right = image(&fake, "acme/api").with_digest(manifest["digest"].as_str().unwrap());
    c.push_layout(&path, &right, &[], &PushOptions::default()).await.unwrap();
}
