//! Names to ids on the Railway fake: projects by name (case-insensitively) or id, environments
//! mapped or missing, a service that would take a database's name, and `--no-create`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{World, app, deploy, deploy_with, digest, mutations, opts, report};
use shipit_core::engine::{Outcome, ServiceResult};
use shipit_core::{App, ErrorKind, Events};
use shipit_testkit::railway::RailwayFake;

fn with_target(table: &str) -> App {
    app(&format!("[services.api]\nport = 8080\n\n[environments.staging]\ntarget = \"railway\"\n\n{table}\n"))
}

/// A fake with only the projects `names` (each with a `staging` environment); their ids.
async fn projects(names: &[&str]) -> (RailwayFake, Vec<String>) {
    let fake = RailwayFake::start().await;
    let ids = names
        .iter()
        .map(|n| {
            let id = fake.seed_project(n);
            fake.seed_environment(&id, "staging");
            id
        })
        .collect();
    (fake, ids)
}

fn failed(s: &shipit_core::engine::Summary, kind: ErrorKind) -> String {
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:?}");
    let r = report(s, "api");
    assert_eq!(r.result, ServiceResult::FailedUnchanged, "{s:?}");
    assert_eq!(r.error_kind, Some(kind), "{s:?}");
    r.error.clone().unwrap_or_default()
}

#[tokio::test]
async fn project_names_match_case_insensitively() {
    let (fake, ids) = projects(&["Conf-App", "elsewhere"]).await;
    let p = harness::platform(&fake, harness::api_token());
    let s = deploy(&p, &with_target("[targets.railway]\nproject = \"conf-app\""), &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(fake.service_names(&ids[0]), ["api"]);
    assert!(fake.service_names(&ids[1]).is_empty());
}

#[tokio::test]
async fn two_projects_differing_only_in_case_are_an_error_naming_both() {
    let (fake, ids) = projects(&["conf", "Conf"]).await;
    let p = harness::platform(&fake, harness::api_token());
    // The app's name, and the same name given explicitly.
    for table in ["", "[targets.railway]\nproject = \"CONF\""] {
        let s = deploy(&p, &with_target(table), &["api"], "v1").await;
        let e = failed(&s, ErrorKind::InvalidConfig);
        for (name, id) in [("conf", &ids[0]), ("Conf", &ids[1])] {
            assert!(e.contains(&format!("{name:?}")) && e.contains(id.as_str()), "names {name} ({id}): {e}");
        }
    }
    assert_eq!(mutations(&fake.operations()), Vec::<String>::new());
    // The id settles it.
    let s = deploy(&p, &with_target(&format!("[targets.railway]\nproject = \"{}\"", ids[1])), &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(fake.service_names(&ids[1]), ["api"]);
    assert!(fake.service_names(&ids[0]).is_empty());
}

#[tokio::test]
async fn a_project_id_is_used_as_is() {
    let (fake, ids) = projects(&["named-something-else"]).await;
    let p = harness::platform(&fake, harness::api_token());
    let s = deploy(&p, &with_target(&format!("[targets.railway]\nproject = \"{}\"", ids[0])), &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert!(!fake.operations().iter().any(|op| op == "Projects"), "no listing: {:?}", fake.operations());
    assert_eq!(fake.service_names(&ids[0]), ["api"]);
}

#[tokio::test]
async fn a_missing_project_says_which_the_token_sees() {
    let (fake, _) = projects(&["alpha", "beta"]).await;
    let p = harness::platform(&fake, harness::api_token());
    let s = deploy(&p, &with_target(""), &["api"], "v1").await;
    let e = failed(&s, ErrorKind::NotFound);
    assert!(e.contains("\"conf\"") && e.contains("\"alpha\"") && e.contains("\"beta\""), "{e}");
    assert!(e.contains("RAILWAY_API_TOKEN"), "{e}");
}

#[tokio::test]
async fn environments_are_mapped() {
    let fake = RailwayFake::start().await;
    let project = fake.seed_project("conf");
    let stage = fake.seed_environment(&project, "stage");
    let staging = fake.seed_environment(&project, "staging");
    let p = harness::platform(&fake, harness::api_token());
    let app = with_target("[targets.railway.environments]\nstaging = \"stage\"");
    let s = deploy(&p, &app, &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let api = fake.service_id(&project, "api").unwrap();
    let live = fake.live_deployment(&project, &stage, &api).unwrap();
    assert_eq!(live.digest.as_deref(), Some(digest("api", "v1").as_str()));
    assert!(fake.deployments(&project, &staging, &api).is_empty(), "not the environment of the same name");
    // The rendered file says so too.
    let file = shipit_railway::render(&app, "staging").unwrap();
    assert!(file[0].contents.contains("\"environment\": \"stage\""), "{}", file[0].contents);
}

#[tokio::test]
async fn a_missing_environment_names_the_ones_that_exist() {
    let fake = RailwayFake::start().await;
    let project = fake.seed_project("conf");
    fake.seed_environment(&project, "production");
    fake.seed_environment(&project, "dev");
    let p = harness::platform(&fake, harness::api_token());
    let s = deploy(&p, &with_target(""), &["api"], "v1").await;
    let e = failed(&s, ErrorKind::NotFound);
    assert!(e.contains("\"staging\"") && e.contains("\"production\"") && e.contains("\"dev\""), "{e}");
    // Mapped: the message says which manifest environment it came from.
    let s = deploy(&p, &with_target("[targets.railway.environments]\nstaging = \"stage\""), &["api"], "v1").await;
    let e = failed(&s, ErrorKind::NotFound);
    assert!(e.contains("\"stage\"") && e.contains("[targets.railway.environments]"), "{e}");
    assert_eq!(mutations(&fake.operations()), Vec::<String>::new());
    assert!(fake.service_names(&project).is_empty());
}

/// A deploy refused for its configuration: refused whole by the engine, or service by service
/// with nothing changed; its message.
fn invalid(r: Result<shipit_core::engine::Summary, shipit_core::Error>) -> String {
    match r {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{e}");
            e.message
        }
        Ok(s) => {
            assert_eq!(s.outcome, Outcome::NothingChanged, "{s:?}");
            assert_eq!(s.failure_kind(), Some(ErrorKind::InvalidConfig), "{s:?}");
            s.services.iter().filter_map(|r| r.error.clone()).collect::<Vec<_>>().join("; ")
        }
    }
}

async fn try_deploy(
    p: &dyn shipit_core::Platform,
    a: &App,
    services: &[&str],
) -> Result<shipit_core::engine::Summary, shipit_core::Error> {
    let images = services.iter().map(|s| (s.to_string(), harness::image(a, "staging", s, "v1"))).collect();
    shipit_core::engine::deploy_digests(
        p,
        None,
        harness::target(a, "staging"),
        "deploy",
        &images,
        &opts(),
        &Events::none(),
    )
    .await
}

#[tokio::test]
async fn a_service_named_like_a_database_is_refused_before_any_request() {
    let w = World::new().await;
    w.fake.seed_database(&w.project, "Postgres", "postgres:16");
    let p = w.platform();
    // Railway's name for the database is `Postgres`; the service would be `postgres`.
    let a = app(
        "[services.postgres]\nport = 8080\n\n[services.api]\nport = 8081\n\n[databases.main]\nengine = \"postgres\"\n\n[environments.staging]\ntarget = \"railway\"\n",
    );
    let e = invalid(try_deploy(&p, &a, &["postgres"]).await);
    assert!(e.contains("`postgres`") && e.contains("`main`"), "names the service and the database: {e}");
    assert_eq!(w.fake.request_count(), 0, "not one request");
    // With another service in the release: nothing of it is deployed either.
    let e = invalid(try_deploy(&p, &a, &["api", "postgres"]).await);
    assert!(e.contains("`main`"), "{e}");
    assert_eq!(w.fake.request_count(), 0, "not one request");
    // The same through `[targets.railway.databases]`.
    let a = app(
        "[services.api]\nport = 8080\n\n[databases.db]\nengine = \"postgres\"\n\n[environments.staging]\ntarget = \"railway\"\n\n[targets.railway.databases]\ndb = \"API\"\n",
    );
    let e = invalid(try_deploy(&p, &a, &["api"]).await);
    assert!(e.contains("`db`"), "{e}");
    let t = harness::target(&a, "staging");
    let e = shipit_core::Platform::describe_deploy(
        &p,
        t,
        t.env.services.get("api").unwrap(),
        &harness::image(&a, "staging", "api", "v1"),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidConfig);
    assert_eq!(w.fake.request_count(), 0);
    assert_eq!(w.fake.service_names(&w.project), ["Postgres"], "nothing created");
    assert_eq!(w.deployments("Postgres").len(), 1, "the database was not touched");
}

#[tokio::test]
async fn no_create_with_a_missing_service_creates_nothing() {
    let w = World::new().await;
    let p = w.platform();
    let a = with_target("");
    let mut o = opts();
    o.create = false;
    let s = deploy_with(&p, &a, "staging", &["api"], "v1", &o, &Events::none()).await;
    let e = failed(&s, ErrorKind::NotFound);
    assert!(e.contains("\"api\"") && e.contains("--no-create"), "{e}");
    assert!(w.fake.service_names(&w.project).is_empty(), "nothing created");
    assert_eq!(mutations(&w.fake.operations()), Vec::<String>::new(), "{:?}", w.fake.operations());
    // Once it exists (made by hand, empty), `--no-create` deploys to it.
    w.fake.seed_service(&w.project, "api");
    let s = deploy_with(&p, &a, "staging", &["api"], "v1", &o, &Events::none()).await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert!(!w.fake.operations().iter().any(|op| op == "ServiceCreate"));
    assert_eq!(w.live("api").unwrap().digest.as_deref(), Some(digest("api", "v1").as_str()));
}
