//! Resolving tags to digests against the registry fake: plain, moved tags, registries without
//! `Docker-Content-Digest`, GHCR's token flow (with credentials, anonymous, refused, renewed),
//! Basic auth, retries, not found, plain-HTTP refusal, and tokens kept out of `Debug` and errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use secrecy::SecretString;
use shipit_core::retry::RetryPolicy;
use shipit_core::{ErrorKind, ImageRef, Resolver};
use shipit_registry::{RegistryClient, RegistryConfig, RegistryError};
use shipit_testkit::registry::{OCI_INDEX, RegistryFake};

const USER: &str = "octocat";
const TOKEN: &str = "ghp_s3cr3tT0kenValue1234567890";

fn image(fake: &RegistryFake, repo: &str, tag: &str) -> ImageRef {
    fake.reference(repo, tag).parse().unwrap()
}

/// A client that may use plain HTTP to the fake, with fast retries.
fn config(fake: &RegistryFake) -> RegistryConfig {
    RegistryClient::builder().insecure_hosts(vec![fake.host()]).retry(RetryPolicy::fast())
}

fn client(fake: &RegistryFake) -> RegistryClient {
    config(fake).build().unwrap()
}

fn authed(fake: &RegistryFake, token: &str) -> RegistryClient {
    config(fake).credentials(USER, SecretString::from(token.to_string())).build().unwrap()
}

fn manifest_requests(fake: &RegistryFake) -> Vec<String> {
    fake.requests().iter().filter(|r| r.path.contains("/manifests/")).map(|r| r.method.clone()).collect()
}

#[tokio::test]
async fn resolves_a_tag_with_one_head() {
    let fake = RegistryFake::start().await;
    let digest = fake.put_image("acme/forgestack-api", "3f2c1ab");
    let resolved = client(&fake).resolve(&image(&fake, "acme/forgestack-api", "3f2c1ab")).await.unwrap();
    assert_eq!(resolved, digest);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "HEAD");
    assert_eq!(requests[0].path, "/v2/acme/forgestack-api/manifests/3f2c1ab");
}

#[tokio::test]
async fn resolves_an_index_and_returns_a_pinned_digest_without_a_request() {
    let fake = RegistryFake::start().await;
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let digest = fake.put_manifest("acme/web", "v1", OCI_INDEX, index.to_vec());
    let c = client(&fake);
    assert_eq!(c.resolve(&image(&fake, "acme/web", "v1")).await.unwrap(), digest);

    fake.clear_requests();
    let pinned = image(&fake, "acme/web", "v1").with_digest(&digest);
    assert_eq!(c.resolve(&pinned).await.unwrap(), digest);
    assert!(fake.requests().is_empty(), "a pinned image needs no request");
}

#[tokio::test]
async fn a_moved_tag_resolves_to_the_new_digest() {
    let fake = RegistryFake::start().await;
    let first = fake.put_image("acme/api", "latest");
    let c = client(&fake);
    let img = image(&fake, "acme/api", "latest");
    assert_eq!(c.resolve(&img).await.unwrap(), first);

    let second = fake.put_image("acme/api", "other");
    assert_ne!(first, second);
    assert!(fake.move_tag("acme/api", "latest", &second));
    assert_eq!(c.resolve(&img).await.unwrap(), second);
}

#[tokio::test]
async fn without_the_digest_header_the_manifest_bytes_are_hashed() {
    let fake = RegistryFake::start().await;
    let digest = fake.put_image("acme/worker", "3f2c1ab");
    fake.omit_digest_header(true);
    let resolved = client(&fake).resolve(&image(&fake, "acme/worker", "3f2c1ab")).await.unwrap();
    assert_eq!(resolved, digest);
    assert_eq!(manifest_requests(&fake), ["HEAD", "GET"]);
}

#[tokio::test]
async fn bearer_flow_with_credentials_fetches_one_token_and_caches_it() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    let digest = fake.put_image("acme/api", "v1");
    let c = authed(&fake, TOKEN);
    let img = image(&fake, "acme/api", "v1");

    assert_eq!(c.resolve(&img).await.unwrap(), digest);
    assert_eq!(c.resolve(&img).await.unwrap(), digest);

    let requests = fake.requests();
    let tokens: Vec<_> = requests.iter().filter(|r| r.path == "/token").collect();
    assert_eq!(tokens.len(), 1, "the token is cached: {requests:?}");
    assert_eq!(tokens[0].auth_scheme.as_deref(), Some("Basic"));
    assert!(tokens[0].query.contains("scope=repository%3Aacme%2Fapi%3Apull"), "{}", tokens[0].query);
    assert!(tokens[0].query.contains("service="), "{}", tokens[0].query);
    // 401, then HEAD with the token; the second resolve goes straight in with the cached one.
    let heads: Vec<_> =
        requests.iter().filter(|r| r.method == "HEAD").map(|r| (r.status, r.auth_scheme.clone())).collect();
    assert_eq!(
        heads,
        [(401, None), (200, Some("Bearer".to_string())), (200, Some("Bearer".to_string()))],
        "{requests:?}"
    );
    assert_eq!(fake.tokens_issued(), 1);
}

#[tokio::test]
async fn anonymous_pull_gets_an_anonymous_token() {
    let fake = RegistryFake::start().await;
    fake.allow_anonymous_pull(true);
    let digest = fake.put_image("acme/public", "v1");
    let resolved = client(&fake).resolve(&image(&fake, "acme/public", "v1")).await.unwrap();
    assert_eq!(resolved, digest);
    let token = fake.requests().into_iter().find(|r| r.path == "/token").expect("a token request");
    assert!(!token.has_authorization, "no credentials to send");
}

#[tokio::test]
async fn without_credentials_a_private_image_is_unauthorized_and_names_the_variables() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    fake.put_image("acme/private", "v1");
    let err = client(&fake).resolve(&image(&fake, "acme/private", "v1")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("none were sent"), "{err}");
    assert!(err.message.contains("GITHUB_TOKEN") && err.message.contains("GITHUB_ACTOR"), "{err}");
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_without_showing_the_token() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    fake.put_image("acme/api", "v1");
    let wrong = "ghp_wrongTokenValue0987654321";
    let err = authed(&fake, wrong).resolve(&image(&fake, "acme/api", "v1")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("GITHUB_TOKEN") && err.message.contains("GHCR_TOKEN"), "{err}");
    assert!(err.message.contains("GITHUB_ACTOR") && err.message.contains(USER), "{err}");
    let everything = format!("{err} {err:?}");
    assert!(!everything.contains(wrong), "the token leaked: {everything}");
    assert!(!everything.contains(TOKEN));
    // One token attempt, not retried: a refusal is not temporary.
    assert_eq!(fake.requests().iter().filter(|r| r.path == "/token").count(), 1);
}

#[tokio::test]
async fn a_refused_cached_token_is_renewed_once() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    let digest = fake.put_image("acme/api", "v1");
    let c = authed(&fake, TOKEN);
    let img = image(&fake, "acme/api", "v1");
    assert_eq!(c.resolve(&img).await.unwrap(), digest);

    fake.invalidate_tokens();
    fake.clear_requests();
    assert_eq!(c.resolve(&img).await.unwrap(), digest);
    let seen: Vec<_> = fake.requests().iter().map(|r| (r.method.clone(), r.path.clone(), r.status)).collect();
    let head = "/v2/acme/api/manifests/v1".to_string();
    assert_eq!(
        seen,
        [("HEAD".into(), head.clone(), 401), ("GET".into(), "/token".into(), 200), ("HEAD".into(), head, 200)]
    );
    assert_eq!(fake.tokens_issued(), 2);
}

#[tokio::test]
async fn basic_challenges_get_the_credentials() {
    let fake = RegistryFake::start().await;
    fake.require_basic_auth(USER, TOKEN);
    let digest = fake.put_image("acme/api", "v1");
    let c = authed(&fake, TOKEN);
    let img = image(&fake, "acme/api", "v1");
    assert_eq!(c.resolve(&img).await.unwrap(), digest);
    assert_eq!(c.resolve(&img).await.unwrap(), digest);
    let schemes: Vec<_> = fake.requests().iter().map(|r| r.auth_scheme.clone()).collect();
    assert_eq!(schemes, [None, Some("Basic".to_string()), Some("Basic".to_string())], "Basic is remembered");
}

#[tokio::test]
async fn credentials_are_sent_only_to_their_hosts() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    fake.put_image("acme/api", "v1");
    let c = config(&fake)
        .credentials(USER, SecretString::from(TOKEN))
        .credential_hosts(vec!["ghcr.io".to_string()])
        .build()
        .unwrap();
    let err = c.resolve(&image(&fake, "acme/api", "v1")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.message.contains("SHIPIT_GHCR_HOSTS"), "{err}");
    assert!(fake.requests().iter().all(|r| !r.has_authorization), "nothing sent to another host");
}

#[tokio::test]
async fn server_errors_are_retried() {
    let fake = RegistryFake::start().await;
    let digest = fake.put_image("acme/api", "v1");
    fake.inject_status("/manifests/", 503, 2, None);
    let resolved = client(&fake).resolve(&image(&fake, "acme/api", "v1")).await.unwrap();
    assert_eq!(resolved, digest);
    let statuses: Vec<_> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn token_service_errors_are_retried() {
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    let digest = fake.put_image("acme/api", "v1");
    fake.inject_status("/token", 502, 1, None);
    assert_eq!(authed(&fake, TOKEN).resolve(&image(&fake, "acme/api", "v1")).await.unwrap(), digest);
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_delay() {
    let fake = RegistryFake::start().await;
    let digest = fake.put_image("acme/api", "v1");
    fake.inject_status("/manifests/", 429, 1, Some(Duration::from_secs(1)));
    let started = std::time::Instant::now();
    let resolved = client(&fake).resolve(&image(&fake, "acme/api", "v1")).await.unwrap();
    assert_eq!(resolved, digest);
    assert_eq!(fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    // Retry-After (1 s) is capped by the fast policy's max delay (50 ms), and waited.
    assert!(started.elapsed() >= Duration::from_millis(40), "{:?}", started.elapsed());
}

#[tokio::test]
async fn persistent_rate_limits_end_as_rate_limited_with_retry_after() {
    let fake = RegistryFake::start().await;
    fake.put_image("acme/api", "v1");
    fake.inject_status("/manifests/", 429, 100, Some(Duration::from_secs(7)));
    let c = config(&fake).retry(RetryPolicy::none()).build().unwrap();
    let err = c.resolve(&image(&fake, "acme/api", "v1")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited, "{err}");
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn persistent_server_errors_end_as_transient() {
    let fake = RegistryFake::start().await;
    fake.put_image("acme/api", "v1");
    fake.inject_status("/manifests/", 500, 100, None);
    let err = client(&fake).resolve(&image(&fake, "acme/api", "v1")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert_eq!(fake.requests().len(), 5, "one attempt and the fast policy's four retries");
    assert!(err.message.contains("after 5 attempts over "), "the last error says so: {err}");
}

#[tokio::test]
async fn a_missing_tag_is_not_found() {
    let fake = RegistryFake::start().await;
    fake.put_image("acme/api", "v1");
    let img = image(&fake, "acme/api", "3f2c1ab");
    let err = client(&fake).resolve(&img).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.message, format!("{img} not found in the registry"));
    assert_eq!(fake.requests().len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn a_host_not_listed_as_insecure_gets_no_plain_http() {
    let fake = RegistryFake::start().await;
    fake.put_image("acme/api", "v1");
    let c = RegistryClient::builder().build().unwrap();
    let started = std::time::Instant::now();
    let err = c.resolve_digest(&image(&fake, "acme/api", "v1")).await.unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "not retried: the configuration has to change");
    assert!(started.elapsed() < Duration::from_millis(250), "no retry delay: {:?}", started.elapsed());
    assert!(err.to_string().contains("SHIPIT_INSECURE_REGISTRIES"), "{err}");
    assert!(err.to_string().contains(&format!("https://{}/v2/acme/api/manifests/v1", fake.host())), "{err}");
    assert!(fake.requests().is_empty(), "no plain HTTP request was made: {:?}", fake.requests());
}

#[tokio::test]
async fn a_plain_http_token_realm_needs_its_host_listed() {
    // The registry is reached over plain HTTP through another name for the same server
    // (`localhost:PORT`), so its token realm (`127.0.0.1:PORT`) is not listed.
    let fake = RegistryFake::start().await;
    fake.require_auth(USER, TOKEN);
    fake.put_image("acme/api", "v1");
    let port = fake.host().rsplit_once(':').unwrap().1.to_string();
    let host = format!("localhost:{port}");
    let c = RegistryClient::builder()
        .insecure_hosts(vec![host.clone()])
        .credentials(USER, SecretString::from(TOKEN))
        .retry(RetryPolicy::fast())
        .build()
        .unwrap();
    let img: ImageRef = format!("{host}/acme/api:v1").parse().unwrap();
    let err = c.resolve_digest(&img).await.unwrap_err();
    assert!(matches!(err, RegistryError::PlainHttpRefused { .. }), "{err:?}");
    assert!(err.to_string().contains(&fake.host()) && err.to_string().contains("SHIPIT_INSECURE_REGISTRIES"), "{err}");
    assert!(fake.requests().iter().all(|r| r.path != "/token"), "the credentials never went over plain HTTP");
}

#[tokio::test]
async fn a_redirect_to_plain_http_is_refused() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let port = server.address().port();
    Mock::given(method("HEAD"))
        .and(path("/v2/acme/api/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", format!("http://localhost:{port}/elsewhere").as_str()),
        )
        .mount(&server)
        .await;
    let host = server.address().to_string();
    let c = RegistryClient::builder().insecure_hosts(vec![host.clone()]).retry(RetryPolicy::fast()).build().unwrap();
    let img: ImageRef = format!("{host}/acme/api:v1").parse().unwrap();
    let err = c.resolve_digest(&img).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::PlainHttpRefused { host, .. } if *host == format!("localhost:{port}")),
        "{err:?}"
    );
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "the redirect was not followed");
}

#[test]
fn debug_never_shows_the_token() {
    let config = RegistryClient::builder().credentials(USER, SecretString::from(TOKEN));
    let shown = format!("{config:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains(USER), "{shown}");
    let client = config.build().unwrap();
    let shown = format!("{client:?} {:#?}", client.config());
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[test]
fn from_vars_reads_ghcr_credentials_and_insecure_hosts() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_string())
    };
    let c = RegistryConfig::from_vars(vars(&[
        ("GITHUB_TOKEN", "ghs_job"),
        ("GHCR_TOKEN", "ghp_pat"),
        ("SHIPIT_INSECURE_REGISTRIES", " localhost:5000, registry.internal ,"),
    ]));
    assert_eq!(c.user(), Some("shipit"), "any user name works with a token");
    assert!(c.sends_credentials_to("ghcr.io"));
    assert!(!c.sends_credentials_to("docker.io"), "a GitHub token stays with GitHub");
    assert!(c.is_insecure("localhost:5000") && c.is_insecure("registry.internal:8080"));
    assert!(!c.is_insecure("localhost:5001") && !c.is_insecure("127.0.0.1:5000"));
    assert!(!format!("{c:?}").contains("ghp_pat"));

    let c = RegistryConfig::from_vars(vars(&[("GITHUB_TOKEN", "ghs_job"), ("GITHUB_ACTOR", "octocat")]));
    assert_eq!(c.user(), Some("octocat"));
    let c = RegistryConfig::from_vars(vars(&[("GITHUB_TOKEN", "x"), ("SHIPIT_GHCR_HOSTS", "containers.ghe.example")]));
    assert!(c.sends_credentials_to("containers.ghe.example"));

    let c = RegistryConfig::from_vars(vars(&[("GITHUB_ACTOR", "octocat"), ("GITHUB_TOKEN", "")]));
    assert_eq!(c.user(), None, "no token, no credentials");

    let err = RegistryConfig::from_vars(vars(&[("SHIPIT_INSECURE_REGISTRIES", "http://ok:5000,not a host")]))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("not a host"), "{err}");
}
