//! A web service's public domain on the Railway fake: the first deploy gives a web service
//! Railway's own (`serviceDomainCreate` routed to its port), looked up first so that a retry or
//! a second deploy never makes a second one; a custom or existing domain is left alone; a worker
//! gets none; a refusal is a warning naming `railway domain`, never a failed deploy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{World, app, deploy, deploy_with, mutations, opts, report};
use shipit_core::engine::{Outcome, ServiceResult};
use shipit_core::{App, Event, Events};
use shipit_testkit::railway::Fault;

/// `api` on port 8080 with a secret (so `secrets sync` can create it first), and a worker.
fn web_and_worker() -> App {
    app(r#"
[services.api]
port = 8080
secrets = ["API_SECRET"]

[services.worker]
command = ["node", "worker.js"]

[environments.staging]
target = "railway"
"#)
}

/// The warnings about domains (the secrets the fake lacks are warned about too).
fn warnings(seen: &std::sync::Mutex<Vec<Event>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message, .. } if message.contains("domain") => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_first_deploy_gives_each_web_service_one_railway_domain_before_its_deployment() {
    let w = World::new().await;
    let app = web_and_worker();
    // One service at a time, so the request log shows its order.
    let s = deploy(&w.platform(), &app, &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let ops = w.fake.operations();
    assert_eq!(ops.iter().filter(|op| *op == "ServiceDomainCreate").count(), 1, "{ops:?}");
    // Looked up, then created, then the deployment (which starts with RAILWAY_PUBLIC_DOMAIN).
    let at = |name: &str| ops.iter().position(|op| op == name).unwrap_or_else(|| panic!("{name}: {ops:?}"));
    assert!(at("Domains") < at("ServiceDomainCreate"), "{ops:?}");
    assert!(at("ServiceDomainCreate") < at("ServiceInstanceDeployV2"), "{ops:?}");

    let domains = w.fake.domains(&w.project, &w.staging, &w.service("api"));
    assert_eq!(domains.len(), 1, "{domains:?}");
    let d = &domains[0];
    assert!(!d.custom);
    assert_eq!(d.target_port, Some(8080), "routed to the service's port");
    let host = d.domain.strip_suffix(".up.railway.app").unwrap_or_else(|| panic!("{}", d.domain));
    let hash = host.strip_prefix("api-staging-").unwrap_or_else(|| panic!("{host}"));
    assert!(hash.len() == 4 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{host}");
    assert_eq!(report(&s, "api").url, Some(format!("https://{}", d.domain)));

    let before = w.requests_now();
    let s = deploy(&w.platform(), &app, &["worker"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert!(w.fake.domains(&w.project, &w.staging, &w.service("worker")).is_empty(), "a worker gets none");
    assert_eq!(report(&s, "worker").url, None);
    let ops = w.ops_since(before);
    assert!(!ops.iter().any(|op| op == "Domains" || op == "ServiceDomainCreate"), "{ops:?}");
    // Production was created empty with the services: it gets no domain until deployed there.
    assert!(w.fake.domains(&w.project, &w.production, &w.service("api")).is_empty());
}

#[tokio::test]
async fn a_second_deploy_makes_no_second_domain_and_sends_no_lookup() {
    let w = World::new().await;
    let app = web_and_worker();
    deploy(&w.platform(), &app, &["api", "worker"], "v1").await;
    let first = w.fake.domains(&w.project, &w.staging, &w.service("api"));

    // An update from a fresh process: the restore point's read shows the domain.
    let before = w.requests_now();
    let s = deploy(&w.platform(), &app, &["api", "worker"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let ops = w.ops_since(before);
    assert!(!ops.iter().any(|op| op == "Domains" || op == "ServiceDomainCreate"), "{ops:?}");
    assert_eq!(w.fake.domains(&w.project, &w.staging, &w.service("api")), first, "the same one domain");
    assert_eq!(report(&s, "api").url, Some(format!("https://{}", first[0].domain)));

    // The same digest again: nothing is written at all.
    let before = w.requests_now();
    let s = deploy(&w.platform(), &app, &["api", "worker"], "v2").await;
    assert_eq!(report(&s, "api").result, ServiceResult::Unchanged, "{s:?}");
    assert_eq!(mutations(&w.ops_since(before)), Vec::<String>::new());
}

#[tokio::test]
async fn a_service_with_a_custom_or_railway_domain_is_left_alone() {
    for custom in [true, false] {
        let w = World::new().await;
        let app = web_and_worker();
        // `secrets sync` creates the service empty; a domain is added in the dashboard.
        harness::sync(&w.platform(), &app, "api", &[("API_SECRET", "v")]).await;
        let api = w.service("api");
        let host = if custom { "api.example.com" } else { "api-staging-beef.up.railway.app" };
        assert!(w.fake.seed_domain(&w.project, &w.staging, &api, host, custom));
        let s = deploy(&w.platform(), &app, &["api"], "v1").await;
        assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
        let ops = w.fake.operations();
        assert!(!ops.iter().any(|op| op == "ServiceDomainCreate"), "custom {custom}: {ops:?}");
        assert_eq!(w.fake.domains(&w.project, &w.staging, &api).len(), 1, "custom {custom}");
        assert_eq!(report(&s, "api").url.as_deref(), Some(format!("https://{host}").as_str()));
    }
}

#[tokio::test]
async fn a_refused_create_warns_with_the_railway_command_and_the_deploy_succeeds() {
    let w = World::new().await;
    let app = web_and_worker();
    w.fake.inject(Fault::GraphqlError {
        ops: Fault::only(&["ServiceDomainCreate"]),
        message: "You do not have permission to create a service domain".to_string(),
        times: 1,
    });
    let (events, seen) = Events::collect();
    let s = deploy_with(&w.platform(), &app, "staging", &["api"], "v1", &opts(), &events).await;
    assert_eq!(s.outcome, Outcome::Succeeded, "the deploy is not failed by it: {s:?}");
    assert_eq!(report(&s, "api").result, ServiceResult::Deployed);
    assert_eq!(report(&s, "api").url, None, "no domain, no URL");
    assert!(w.live("api").is_some(), "it went live");
    let warned = warnings(&seen);
    let command = format!("railway domain --project {} --environment staging --service api --port 8080", w.project);
    assert!(
        warned.iter().any(|m| m.contains(&format!("`{command}`")) && m.contains("You do not have permission")),
        "{warned:?}"
    );

    // The next deploy of the same digest (nothing else to do) makes it.
    let (events, seen) = Events::collect();
    let s = deploy_with(&w.platform(), &app, "staging", &["api"], "v1", &opts(), &events).await;
    assert_eq!(report(&s, "api").result, ServiceResult::Unchanged, "{s:?}");
    let domains = w.fake.domains(&w.project, &w.staging, &w.service("api"));
    assert_eq!(domains.len(), 1, "{domains:?}");
    assert_eq!(report(&s, "api").url, Some(format!("https://{}", domains[0].domain)));
    assert!(warnings(&seen).is_empty(), "{:?}", warnings(&seen));
}

#[tokio::test]
async fn a_lost_answer_is_looked_up_and_never_makes_a_second_domain() {
    for fault in [
        Fault::ResetAfter { ops: Fault::only(&["ServiceDomainCreate"]), times: 1 },
        Fault::LostResponse { ops: Fault::only(&["ServiceDomainCreate"]), status: 502, times: 1 },
    ] {
        let w = World::new().await;
        let app = web_and_worker();
        w.fake.inject(fault.clone());
        let (events, seen) = Events::collect();
        let s = deploy_with(&w.platform(), &app, "staging", &["api"], "v1", &opts(), &events).await;
        assert_eq!(s.outcome, Outcome::Succeeded, "{fault:?}: {s:?}");
        let domains = w.fake.domains(&w.project, &w.staging, &w.service("api"));
        assert_eq!(domains.len(), 1, "{fault:?}: {domains:?}");
        let ops = w.fake.operations();
        assert_eq!(ops.iter().filter(|op| *op == "ServiceDomainCreate").count(), 1, "sent once: {ops:?}");
        assert_eq!(report(&s, "api").url, Some(format!("https://{}", domains[0].domain)));
        assert!(warnings(&seen).is_empty(), "{fault:?}: {:?}", warnings(&seen));
    }
}

#[tokio::test]
async fn a_failed_first_lookup_warns_and_the_deploy_goes_on() {
    let w = World::new().await;
    let app = web_and_worker();
    // Every attempt of the lookup fails (it is retried like every read).
    w.fake.inject(Fault::unavailable(Fault::only(&["Domains"]), 20));
    let (events, seen) = Events::collect();
    let s = deploy_with(&w.platform(), &app, "staging", &["api"], "v1", &opts(), &events).await;
    w.fake.clear_faults();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert!(!w.fake.operations().iter().any(|op| op == "ServiceDomainCreate"), "not created blind");
    assert!(warnings(&seen).iter().any(|m| m.contains("railway domain --project")), "{:?}", warnings(&seen));
}
