//! The account side of Render: which workspace (owner) is used, registry credentials for
//! private images, rate limits waited out without a second deploy, and no secret value or API
//! key in any error or event, even from a server that echoes the request back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use harness::{app, deploy, deploy_with, opts, raw, since, writes};
use secrecy::SecretString;
use shipit_core::engine::Outcome;
use shipit_core::{App, Events};
use shipit_render::RenderApiError;
use shipit_testkit::render::{API_KEY, Fault, RateBucket, RenderFake};

fn shop(render_extra: &str) -> App {
    app(&format!(
        r#"app = "shop"
[registry]
host = "ghcr.io"
namespace = "acme"

[services.api]
port = 8080
env = {{ MODE = "live" }}
secrets = ["API_TOKEN"]
env_from = {{ DATABASE_URL = "db.connection_string" }}

[databases.db]
engine = "postgres"

[environments.staging]
target = "render"

[targets.render]
region = "oregon"
{render_extra}
"#
    ))
}

/// What the operation said: the error, or every service's error in the summary.
fn said(r: &Result<shipit_core::engine::Summary, shipit_core::Error>) -> String {
    match r {
        Ok(s) => format!("{s:?}"),
        Err(e) => format!("{e} {e:?}"),
    }
}

// ---- owner ------------------------------------------------------------------------------------

#[tokio::test]
async fn several_owners_and_none_set_is_an_error_listing_them() {
    let fake = RenderFake::start().await;
    let acme = fake.seed_pro_owner("acme");
    let globex = fake.seed_owner("globex");
    let platform = harness::platform(&fake);
    let r = deploy_with(&platform, &shop(""), "staging", &["api"], "v1", &opts(), &Events::none()).await;
    let text = said(&r);
    assert!(r.as_ref().map_or(true, |s| s.outcome != Outcome::Succeeded), "{text}");
    for needle in ["acme", "globex", acme.as_str(), globex.as_str(), "owner"] {
        assert!(text.contains(needle), "the error names {needle}: {text}");
    }
    assert_eq!(fake.creates(), 0);
    assert!(writes(&fake.requests()).is_empty(), "{:?}", writes(&fake.requests()));
}

#[tokio::test]
async fn owner_by_name_or_id_and_the_only_one_by_default() {
    for (pick, in_globex) in [("globex", true), ("GLOBEX", true), ("<acme>", false)] {
        let fake = RenderFake::start().await;
        let acme = fake.seed_pro_owner("acme");
        let globex = fake.seed_pro_owner("globex");
        let owner = if pick == "<acme>" { acme.clone() } else { pick.to_string() };
        let platform = harness::platform(&fake);
        let s = deploy(&platform, &shop(&format!("owner = \"{owner}\"")), "staging", &["api"], "v1").await;
        assert_eq!(s.outcome, Outcome::Succeeded, "{pick}: {s:?}");
        let (yes, no) = if in_globex { (&globex, &acme) } else { (&acme, &globex) };
        assert!(fake.service_by_name(yes, "shop-api-staging").is_some(), "{pick}");
        assert!(fake.service_by_name(no, "shop-api-staging").is_none(), "{pick}");
    }
    // The only workspace, with no owner set.
    let fake = RenderFake::start().await;
    let only = fake.seed_owner("solo");
    let platform = harness::platform(&fake);
    deploy(&platform, &shop(""), "staging", &["api"], "v1").await;
    assert!(fake.service_by_name(&only, "shop-api-staging").is_some());
}

// ---- private images ---------------------------------------------------------------------------

#[tokio::test]
async fn a_named_registry_credential_is_used_and_a_missing_one_is_an_error() {
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let cred = platform
        .client()
        .create_credential(&owner, "pullbot", "bot", &SecretString::from("ghp_pull".to_string()))
        .await
        .unwrap();
    let app = shop("registry_credential = \"pullbot\"");
    deploy(&platform, &app, "staging", &["api"], "v1").await;
    let svc = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    assert_eq!(svc.registry_credential_id.as_deref(), Some(cred.id.as_str()));
    deploy(&platform, &app, "staging", &["api"], "v2").await;
    let svc = fake.service(&svc.id).unwrap();
    assert_eq!(svc.registry_credential_id.as_deref(), Some(cred.id.as_str()), "kept on update");

    let fake = RenderFake::start().await;
    fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let r = deploy_with(
        &platform,
        &shop("registry_credential = \"nope\""),
        "staging",
        &["api"],
        "v1",
        &opts(),
        &Events::none(),
    )
    .await;
    let text = said(&r);
    assert!(text.contains("nope") && text.contains("registry credential"), "{text}");
    assert_eq!(fake.creates(), 0, "nothing created without the credential");
}

#[tokio::test]
async fn a_ghcr_login_makes_one_shipit_credential_and_never_shows_its_token() {
    const TOKEN: &str = "ghp_Sup3rS3cretT0ken";
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::config(&fake).registry_login("bot", SecretString::from(TOKEN.to_string())).build().unwrap();
    let app = shop("");
    let (events, seen) = Events::collect();
    let s1 = deploy_with(&platform, &app, "staging", &["api"], "v1", &opts(), &events).await.unwrap();
    let s2 = deploy_with(&platform, &app, "staging", &["api"], "v2", &opts(), &events).await.unwrap();
    assert_eq!((s1.outcome, s2.outcome), (Outcome::Succeeded, Outcome::Succeeded));
    let creates = fake.requests().iter().filter(|r| r.method == "POST" && r.path == "/v1/registrycredentials").count();
    assert_eq!(creates, 1, "created once, then reused");
    let (_, listed) = raw(&fake, "GET", &format!("/registrycredentials?ownerId={owner}&name=shipit-ghcr"), None).await;
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["name"], "shipit-ghcr");
    assert_eq!(fake.registry_credential_token(&id).as_deref(), Some(TOKEN));
    let svc = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    assert_eq!(svc.registry_credential_id.as_deref(), Some(id.as_str()));
    let shown = harness::shown(&seen) + &format!("{s1:?}{s2:?}");
    assert!(!shown.contains(TOKEN), "the token is never shown");

    // A server quoting the credential request back: still not shown.
    let fake = RenderFake::start().await;
    fake.seed_pro_owner("acme");
    let platform = harness::config(&fake).registry_login("bot", SecretString::from(TOKEN.to_string())).build().unwrap();
    fake.inject(Fault::Echo {
        method: Some("POST".into()),
        path_contains: "/registrycredentials".into(),
        status: 400,
        times: 1,
    });
    let (events, seen) = Events::collect();
    let r = deploy_with(&platform, &app, "staging", &["api"], "v1", &opts(), &events).await;
    let text = said(&r) + &harness::shown(&seen);
    assert!(text.contains("echo"), "the echo reached the error: {text}");
    assert!(!text.contains(TOKEN) && !text.contains(API_KEY), "{text}");
    // A non-GHCR image needs no credential.
    let other = app_with_host("registry.example.com");
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::config(&fake).registry_login("bot", SecretString::from(TOKEN.to_string())).build().unwrap();
    deploy(&platform, &other, "staging", &["api"], "v1").await;
    assert!(!fake.requests().iter().any(|r| r.path.contains("registrycredentials")));
    assert_eq!(fake.service_by_name(&owner, "shop-api-staging").unwrap().registry_credential_id, None);
}

fn app_with_host(host: &str) -> App {
    app(&format!(
        "app = \"shop\"\n[registry]\nhost = \"{host}\"\nnamespace = \"acme\"\n[services.api]\nport = 8080\n[environments.staging]\ntarget = \"render\"\n[targets.render]\nregion = \"oregon\"\n"
    ))
}

// ---- rate limits ------------------------------------------------------------------------------

#[tokio::test]
async fn both_reset_forms_are_read() {
    for epoch in [false, true] {
        let fake = RenderFake::start().await;
        let owner = fake.seed_pro_owner("acme");
        let id = fake.seed_service(&owner, "someone-else", "ghcr.io/acme/x:v1").unwrap();
        fake.set_rate_limit(RateBucket::Service, 0);
        fake.set_reset_as_epoch(epoch);
        let platform = harness::platform(&fake);
        let e = platform.client().start_deploy(&id, "ghcr.io/acme/x:v2").await.unwrap_err();
        let wait = match &e {
            RenderApiError::RateLimited { retry_after, .. } => *retry_after,
            other => panic!("epoch {epoch}: {other:?}"),
        };
        assert!(
            wait.is_some_and(|w| w >= Duration::from_secs(55) && w <= Duration::from_secs(61)),
            "epoch {epoch}: {wait:?}"
        );
        assert_eq!(fake.deploy_posts(&id), 0);
    }
}

#[tokio::test]
async fn a_rate_limited_deploy_post_is_waited_out_and_makes_one_deploy() {
    for epoch in [false, true] {
        let fake = RenderFake::start().await;
        let owner = fake.seed_pro_owner("acme");
        let platform = harness::platform(&fake);
        let app = app_with_host("ghcr.io");
        deploy(&platform, &app, "staging", &["api"], "v1").await;
        let id = fake.service_by_name(&owner, "shop-api-staging").unwrap().id;
        // One request a minute for the service: the PATCH takes it, the deploy POST waits.
        fake.set_rate_limit(RateBucket::Service, 1);
        fake.set_reset_as_epoch(epoch);
        let from = fake.requests().len();
        let (events, seen) = Events::collect();
        let limited = || since(&fake, from).iter().any(|r| r.status == 429 && r.path.ends_with("/deploys"));
        let window = async {
            // Render's minute passes once the deploy POST was refused.
            while !limited() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            fake.advance(Duration::from_secs(61));
        };
        let o = opts();
        let (s, ()) = tokio::join!(deploy_with(&platform, &app, "staging", &["api"], "v2", &o, &events), window);
        let s = s.unwrap();
        assert_eq!(s.outcome, Outcome::Succeeded, "epoch {epoch}: {s:?}");
        assert!(limited());
        assert_eq!(fake.deploy_posts(&id), 1, "epoch {epoch}: exactly one deploy");
        assert_eq!(fake.deploys(&id).len(), 2);
        assert!(harness::shown(&seen).contains("rate limited by Render: waiting"), "epoch {epoch}");
    }
}

// ---- nothing secret shown ---------------------------------------------------------------------

#[tokio::test]
async fn no_secret_value_or_api_key_in_errors_or_events_even_when_echoed() {
    const SECRET: &str = "tok-Very-S3cret-Value";
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let db = fake.seed_postgres(&owner, "shop-db-staging");
    let (_, info) = raw(&fake, "GET", &format!("/postgres/{db}/connection-info"), None).await;
    let conn = info["internalConnectionString"].as_str().unwrap().to_string();
    let password = conn.split_once("://").unwrap().1.split_once('@').unwrap().0.split_once(':').unwrap().1.to_string();
    let platform = harness::platform(&fake);
    let app = shop("");
    let (events, seen) = Events::collect();
    let mut texts = Vec::new();

    // The create's body carries every env var (DATABASE_URL has the database's password).
    fake.inject(Fault::Echo {
        method: Some("POST".into()),
        path_contains: "/v1/services$".into(),
        status: 400,
        times: 1,
    });
    texts.push(said(&deploy_with(&platform, &app, "staging", &["api"], "v1", &opts(), &events).await));
    assert_eq!(fake.creates(), 0);
    deploy_with(&platform, &app, "staging", &["api"], "v1", &opts(), &events).await.unwrap();
    let id = fake.service_by_name(&owner, "shop-api-staging").unwrap().id;

    // A secret's PUT.
    fake.inject(Fault::Echo { method: Some("PUT".into()), path_contains: "/env-vars/".into(), status: 500, times: 5 });
    let t = harness::target(&app, "staging");
    let r = shipit_core::engine::sync_secrets(&platform, t, &["api".to_string()], |_| {
        Some(SecretString::from(SECRET.to_string()))
    })
    .await;
    texts.push(format!("{r:?}"));
    assert!(r.is_err());
    fake.clear_faults();
    shipit_core::engine::sync_secrets(&platform, t, &["api".to_string()], |_| {
        Some(SecretString::from(SECRET.to_string()))
    })
    .await
    .unwrap();

    // An update: the env var PUT of the connection string, then the deploy POST.
    raw(&fake, "DELETE", &format!("/services/{id}/env-vars/DATABASE_URL"), None).await;
    fake.inject(Fault::Echo {
        method: Some("PUT".into()),
        path_contains: "/env-vars/DATABASE_URL".into(),
        status: 400,
        times: 1,
    });
    texts.push(said(&deploy_with(&platform, &app, "staging", &["api"], "v2", &opts(), &events).await));
    fake.inject(Fault::Echo { method: Some("POST".into()), path_contains: "/deploys$".into(), status: 400, times: 1 });
    texts.push(said(&deploy_with(&platform, &app, "staging", &["api"], "v3", &opts(), &events).await));
    fake.inject(Fault::Echo {
        method: Some("PATCH".into()),
        path_contains: "/services/".into(),
        status: 400,
        times: 1,
    });
    texts.push(said(&deploy_with(&platform, &app, "staging", &["api"], "v4", &opts(), &events).await));

    let all = texts.join("\n") + &harness::shown(&seen);
    for t in &texts {
        assert!(t.contains("echo"), "the echo reached the error: {t}");
    }
    assert!(!all.contains(API_KEY), "the API key is never shown");
    assert!(!all.contains(SECRET), "a secret's value is never shown");
    assert!(!all.contains(&password), "the database password is never shown: {all}");
    assert_eq!(fake.env_var(&id, "API_TOKEN").as_deref(), Some(SECRET));
}
