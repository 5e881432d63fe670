//! The Render fake keeps state and answers in the public API's shapes, driven by plain reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shipit_testkit::render::{API_KEY, Behaviour, Fault, RateBucket, RenderFake};

const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const GOOD2: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
const BAD: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn image(tag: &str, digest: &str) -> String {
    format!("ghcr.io/acme/api:{tag}@{digest}")
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    body: Value,
}

impl Api {
    fn new(fake: &RenderFake) -> Self {
        Api { http: reqwest::Client::new(), base: fake.uri(), key: API_KEY.to_owned() }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Result<Answer, reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        Ok(Answer { status, headers, text, body })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send(method, path, body).await.unwrap()
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a web service running `image_path`; returns (service id, first deploy id).
    async fn create(&self, owner: &str, name: &str, image_path: &str) -> (String, String) {
        let a = self.post("/services", create_body(owner, name, image_path)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        let id = a.body["service"]["id"].as_str().unwrap().to_owned();
        (id, a.body["deployId"].as_str().unwrap().to_owned())
    }

    async fn deploy_status(&self, service: &str, deploy: &str) -> String {
        let a = self.get(&format!("/services/{service}/deploys/{deploy}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        a.body["status"].as_str().unwrap().to_owned()
    }

    /// Observes the deploy until it reaches a final status; returns every status seen.
    async fn watch(&self, service: &str, deploy: &str) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..200 {
            let s = self.deploy_status(service, deploy).await;
            let done = !matches!(
                s.as_str(),
                "created" | "queued" | "build_in_progress" | "update_in_progress" | "pre_deploy_in_progress"
            );
            seen.push(s);
            if done {
                return seen;
            }
        }
        panic!("deploy {deploy} never finished: {seen:?}");
    }
}

fn create_body(owner: &str, name: &str, image_path: &str) -> Value {
    json!({
        "type": "web_service",
        "name": name,
        "ownerId": owner,
        "image": {"ownerId": owner, "imagePath": image_path},
        "envVars": [{"key": "MODE", "value": "one"}],
        "serviceDetails": {
            "runtime": "image",
            "plan": "starter",
            "region": "frankfurt",
            "numInstances": 2,
            "healthCheckPath": "/healthz",
            "envSpecificDetails": {"dockerCommand": "./server"},
        },
    })
}

async fn setup() -> (RenderFake, Api, String) {
    let fake = RenderFake::start().await;
    let owner = fake.seed_owner("Acme");
    let api = Api::new(&fake);
    (fake, api, owner)
}

#[tokio::test]
async fn create_starts_a_deploy_and_a_second_post_queues_behind_it() {
    let (fake, api, owner) = setup().await;
    let a = api.post("/services", create_body(&owner, "api", &image("v1", GOOD))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let svc = &a.body["service"];
    let id = svc["id"].as_str().unwrap();
    assert!(id.starts_with("srv-"));
    assert_eq!(svc["type"], "web_service");
    assert_eq!(svc["imagePath"], image("v1", GOOD));
    assert_eq!(svc["serviceDetails"]["plan"], "starter");
    assert_eq!(svc["serviceDetails"]["region"], "frankfurt");
    assert_eq!(svc["serviceDetails"]["numInstances"], 2);
    assert_eq!(svc["serviceDetails"]["healthCheckPath"], "/healthz");
    assert_eq!(svc["serviceDetails"]["envSpecificDetails"]["dockerCommand"], "./server");
    assert_eq!(svc["serviceDetails"]["url"], "https://api.onrender.com");
    let first = a.body["deployId"].as_str().unwrap();
    assert_eq!(fake.deploys(id).len(), 1, "the create already started a deploy");
    assert_eq!(fake.creates(), 1);

    // The trap: a client that deploys after the create gets a duplicate, queued.
    let a = api.post(&format!("/services/{id}/deploys"), json!({})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.text.is_empty(), "a queued deploy answers no body: {:?}", a.text);
    assert_eq!(fake.deploy_posts(id), 1);
    let deploys = fake.deploys(id);
    assert_eq!(deploys.len(), 2);
    assert_eq!((deploys[0].status.as_str(), deploys[1].status.as_str()), ("queued", "created"));
    assert_eq!(deploys[1].id, first);

    let a = api.get(&format!("/services/{id}/deploys?status=queued&limit=1")).await;
    assert_eq!(a.status, StatusCode::OK);
    let list = a.body.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let queued = list[0]["deploy"]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["deploy"]["commit"], Value::Null);
    assert_eq!(list[0]["deploy"]["image"]["ref"], image("v1", GOOD));
    assert_eq!(list[0]["deploy"]["image"]["sha"], GOOD);

    // Watching the queued deploy drains the queue: the first one goes live, then it runs.
    let seen = api.watch(id, &queued).await;
    assert_eq!(seen.first().map(String::as_str), Some("queued"));
    assert!(seen.contains(&"created".to_owned()), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("live"));
    let deploys = fake.deploys(id);
    assert_eq!((deploys[0].status.as_str(), deploys[1].status.as_str()), ("live", "deactivated"));
}

#[tokio::test]
async fn deploys_go_live_per_observation_and_deactivate_the_previous() {
    let (fake, api, owner) = setup().await;
    let (id, first) = api.create(&owner, "api", &image("v1", GOOD)).await;
    assert_eq!(api.watch(&id, &first).await, ["build_in_progress", "update_in_progress", "live"]);
    assert_eq!(fake.live_deploy(&id).unwrap().id, first);

    let a = api.post(&format!("/services/{id}/deploys"), json!({"imageUrl": image("v2", GOOD2)})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["status"], "created");
    assert_eq!(a.body["trigger"], "api");
    assert_eq!(a.body["image"]["ref"], image("v2", GOOD2));
    let second = a.body["id"].as_str().unwrap().to_owned();
    // Listing moves nothing.
    api.get(&format!("/services/{id}/deploys")).await;
    assert_eq!(fake.deploys(&id)[0].status, "created");
    assert_eq!(api.watch(&id, &second).await.last().unwrap(), "live");
    let d = fake.deploys(&id);
    assert_eq!((d[0].id.as_str(), d[0].status.as_str()), (second.as_str(), "live"));
    assert_eq!((d[1].id.as_str(), d[1].status.as_str()), (first.as_str(), "deactivated"));
    assert!(d[1].was_live);
    let a = api.get(&format!("/services/{id}/deploys/{first}")).await;
    assert_eq!(a.body["status"], "deactivated");
    assert!(a.body["finishedAt"].is_string());
    // imageUrl did not change the service's image setting.
    assert_eq!(fake.service(&id).unwrap().image_path, image("v1", GOOD));
}

#[tokio::test]
async fn unhealthy_fails_and_keeps_the_previous_live() {
    let (fake, api, owner) = setup().await;
    fake.set_unhealthy_observations(6);
    fake.set_behaviour(BAD, Behaviour::Unhealthy);
    let (id, first) = api.create(&owner, "api", &image("v1", GOOD)).await;
    api.watch(&id, &first).await;
    let a = api.post(&format!("/services/{id}/deploys"), json!({"imageUrl": image("bad", BAD)})).await;
    let bad = a.body["id"].as_str().unwrap().to_owned();
    let seen = api.watch(&id, &bad).await;
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(&seen[1..5], ["update_in_progress"; 4]);
    assert_eq!(seen.last().unwrap(), "update_failed");
    assert_eq!(fake.live_deploy(&id).unwrap().id, first);

    fake.set_behaviour(BAD, Behaviour::Crash);
    let a = api.post(&format!("/services/{id}/deploys"), json!({"imageUrl": image("bad", BAD)})).await;
    let crash = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(api.watch(&id, &crash).await, ["build_in_progress", "update_failed"]);
    fake.set_behaviour(BAD, Behaviour::BuildFail);
    let a = api.post(&format!("/services/{id}/deploys"), json!({"imageUrl": image("bad", BAD)})).await;
    let build = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(api.watch(&id, &build).await, ["build_failed"]);
    assert_eq!(fake.live_deploy(&id).unwrap().id, first);
}

#[tokio::test]
async fn cancel_in_progress_or_queued_but_not_finished() {
    let (fake, api, owner) = setup().await;
    let (id, first) = api.create(&owner, "api", &image("v1", GOOD)).await;
    assert_eq!(api.post(&format!("/services/{id}/deploys"), json!({})).await.status, StatusCode::ACCEPTED);
    let queued = fake.deploys(&id)[0].id.clone();

    let a = api.post(&format!("/services/{id}/deploys/{first}/cancel"), json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["status"], "canceled");
    // The queued one starts.
    assert_eq!(fake.deploys(&id)[0].status, "created");
    let a = api.post(&format!("/services/{id}/deploys/{first}/cancel"), json!({})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["id"].is_string() && a.body["message"].is_string(), "{}", a.text);
    assert_eq!(api.watch(&id, &queued).await.last().unwrap(), "live");
    assert!(fake.deploys(&id).iter().all(|d| d.id != first || !d.was_live));
}

#[tokio::test]
async fn rollback_only_to_a_once_live_deploy_and_keeps_the_image_setting() {
    let (fake, api, owner) = setup().await;
    fake.set_behaviour(BAD, Behaviour::Crash);
    let (id, first) = api.create(&owner, "api", &image("v1", GOOD)).await;
    api.watch(&id, &first).await;
    let a = api
        .patch(&format!("/services/{id}"), json!({"image": {"ownerId": owner, "imagePath": image("v2", BAD)}}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = api.post(&format!("/services/{id}/deploys"), json!({})).await;
    let failed = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(api.watch(&id, &failed).await.last().unwrap(), "update_failed");

    let a = api.post(&format!("/services/{id}/rollback"), json!({"deployId": failed})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    let a = api.post(&format!("/services/{id}/rollback"), json!({"deployId": first})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["trigger"], "rollback");
    assert_eq!(a.body["image"]["ref"], image("v1", GOOD));
    let rb = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(api.watch(&id, &rb).await.last().unwrap(), "live");

    // The trap: the service's image setting is still the failed one.
    assert_eq!(fake.service(&id).unwrap().image_path, image("v2", BAD));
    let next = fake.start_deploy(&id, "deployed_by_render").unwrap();
    assert_eq!(fake.deploys(&id)[0].id, next);
    assert_eq!(fake.deploys(&id)[0].image_ref, image("v2", BAD));
}

#[tokio::test]
async fn patch_and_env_changes_apply_at_the_next_deploy() {
    let (fake, api, owner) = setup().await;
    let (id, first) = api.create(&owner, "api", &image("v1", GOOD)).await;
    api.watch(&id, &first).await;
    let body = json!({
        "serviceDetails": {"plan": "pro", "healthCheckPath": "/ready", "envSpecificDetails": {"dockerCommand": "./v2"}},
    });
    let a = api.patch(&format!("/services/{id}"), body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["serviceDetails"]["plan"], "pro");
    let a = api.put(&format!("/services/{id}/env-vars/MODE"), json!({"value": "two"})).await;
    assert_eq!(a.body, json!({"key": "MODE", "value": "two"}));

    let live = fake.live_deploy(&id).unwrap();
    assert_eq!((live.plan.as_str(), live.docker_command.as_str()), ("starter", "./server"));
    assert_eq!(live.env_vars["MODE"], "one");
    assert_eq!(fake.deploys(&id).len(), 1, "PATCH starts no deploy");

    let a = api.post(&format!("/services/{id}/deploys"), json!({"clearCache": "clear"})).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let next = &fake.deploys(&id)[0];
    assert_eq!((next.plan.as_str(), next.docker_command.as_str()), ("pro", "./v2"));
    assert_eq!(next.health_check_path.as_deref(), Some("/ready"));
    assert_eq!(next.env_vars["MODE"], "two");
    let s = fake.service(&id).unwrap();
    assert_eq!((s.plan.as_str(), s.num_instances, s.region.as_str()), ("pro", 2, "frankfurt"));
}

#[tokio::test]
async fn deploy_body_rules() {
    let (_fake, api, owner) = setup().await;
    let (id, _) = api.create(&owner, "api", &image("v1", GOOD)).await;
    let path = format!("/services/{id}/deploys");
    let a = api.post(&path, json!({"imageUrl": "ghcr.io/acme/other:v2"})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["message"].as_str().unwrap().contains("PATCH"), "{}", a.text);
    let a = api.post(&path, json!({"imageUrl": "docker.io/acme/api:v2"})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "another registry is another repository");
    let a = api.post(&path, json!({"imageUrl": image("v2", GOOD2), "deployMode": "deploy_only"})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = api.call(Method::POST, &path, None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "the body is required");
    let a = api.post(&path, json!({"clearCache": "yes"})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = api.post(&path, json!({"imageUrl": "ghcr.io/acme/api:v3"})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "same repository, new tag: queued behind the first deploy");
}

#[tokio::test]
async fn patch_rules_num_instances_region_and_image() {
    let (fake, api, owner) = setup().await;
    let (id, _) = api.create(&owner, "api", &image("v1", GOOD)).await;
    let path = format!("/services/{id}");
    let a = api.patch(&path, json!({"serviceDetails": {"numInstances": 3}})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["message"].as_str().unwrap().contains("numInstances is not patchable"), "{}", a.text);
    let a = api.patch(&path, json!({"serviceDetails": {"region": "oregon"}})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = api.patch(&path, json!({"image": {"imagePath": image("v2", GOOD2)}})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "image needs ownerId too");
    let a = api.patch(&path, json!({"serviceDetails": {"plan": "huge"}})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let s = fake.service(&id).unwrap();
    assert_eq!((s.num_instances, s.region.as_str(), s.image_path.clone()), (2, "frankfurt", image("v1", GOOD)));
}

#[tokio::test]
async fn create_validation() {
    let (fake, api, owner) = setup().await;
    let other = fake.seed_owner("Other");
    api.create(&owner, "api", &image("v1", GOOD)).await;
    let mut body = create_body(&owner, "api", &image("v1", GOOD));
    assert_eq!(api.post("/services", body.clone()).await.status, StatusCode::CONFLICT);
    body["name"] = json!("worker");
    body["type"] = json!("background_worker");
    body["serviceDetails"]["plan"] = json!("free");
    body["serviceDetails"].as_object_mut().unwrap().remove("healthCheckPath");
    let a = api.post("/services", body.clone()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["message"].as_str().unwrap().contains("free"), "{}", a.text);
    body["serviceDetails"]["plan"] = json!("starter");
    body["serviceDetails"]["region"] = json!("mars");
    assert_eq!(api.post("/services", body.clone()).await.status, StatusCode::BAD_REQUEST);
    body["serviceDetails"]["region"] = json!("ohio");
    body["image"]["ownerId"] = json!(other);
    assert_eq!(api.post("/services", body.clone()).await.status, StatusCode::BAD_REQUEST);

    // A registry credential must belong to the service's owner; its token is never answered.
    let cred =
        json!({"registry": "GITHUB", "name": "ghcr", "username": "bot", "authToken": "ghp_secret", "ownerId": other});
    let a = api.post("/registrycredentials", cred).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let cred_id = a.body["id"].as_str().unwrap().to_owned();
    assert!(!a.text.contains("ghp_secret"));
    assert_eq!(fake.registry_credential_token(&cred_id).as_deref(), Some("ghp_secret"));
    body["image"] = json!({"ownerId": owner, "imagePath": image("v1", GOOD), "registryCredentialId": cred_id});
    assert_eq!(api.post("/services", body.clone()).await.status, StatusCode::BAD_REQUEST);
    let a = api.get(&format!("/registrycredentials?ownerId={other}")).await;
    assert_eq!(a.body.as_array().unwrap().len(), 1);
    assert!(!a.text.contains("ghp_secret"));
    body["image"]["ownerId"] = json!(owner);
    body["image"].as_object_mut().unwrap().remove("registryCredentialId");
    let a = api.post("/services", body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert!(a.body["service"]["serviceDetails"].get("healthCheckPath").is_none());
    assert_eq!(fake.creates(), 2);
}

#[tokio::test]
async fn scale_is_ignored_while_autoscaling() {
    let (fake, api, owner) = setup().await;
    let pro = fake.seed_pro_owner("Pro");
    let (hobby, _) = api.create(&owner, "api", &image("v1", GOOD)).await;
    let (id, _) = api.create(&pro, "api", &image("v1", GOOD)).await;
    let whole = json!({
        "enabled": true, "min": 2, "max": 5,
        "criteria": {"cpu": {"enabled": true, "percentage": 70}, "memory": {"enabled": false, "percentage": 80}},
    });
    let a = api.put(&format!("/services/{hobby}/autoscaling"), whole.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "autoscaling needs a Pro workspace");
    let a = api.put(&format!("/services/{id}/autoscaling"), json!({"enabled": true, "min": 2, "max": 5})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "the whole object is required");
    let a = api.put(&format!("/services/{id}/autoscaling"), whole.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body, whole);

    let a = api.post(&format!("/services/{id}/scale"), json!({"numInstances": 4})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let s = fake.service(&id).unwrap();
    assert_eq!((s.num_instances, s.ignored_scales), (2, 1), "ignored while autoscaling is enabled");
    assert_eq!(api.delete(&format!("/services/{id}/autoscaling")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.post(&format!("/services/{id}/scale"), json!({"numInstances": 4})).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(fake.service(&id).unwrap().num_instances, 4);
    let a = api.post(&format!("/services/{id}/scale"), json!({"numInstances": 101})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn put_env_vars_replaces_all_while_per_key_put_keeps_the_others() {
    let (fake, api, owner) = setup().await;
    let (id, _) = api.create(&owner, "api", &image("v1", GOOD)).await;
    let a = api.put(&format!("/services/{id}/env-vars/EXTRA"), json!({"value": "x"})).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(fake.env_var(&id, "MODE").as_deref(), Some("one"), "per-key PUT keeps the others");
    assert_eq!(fake.env_var(&id, "EXTRA").as_deref(), Some("x"));

    let a = api.put(&format!("/services/{id}/env-vars"), json!([{"key": "ONLY", "value": "1"}])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body[0]["envVar"], json!({"key": "ONLY", "value": "1"}));
    assert_eq!(fake.env_var(&id, "MODE"), None, "the trap: PUT /env-vars deleted the others");
    assert_eq!(fake.env_var(&id, "EXTRA"), None);
    assert_eq!(fake.service(&id).unwrap().env_vars.len(), 1);
    assert_eq!(api.delete(&format!("/services/{id}/env-vars/ONLY")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.delete(&format!("/services/{id}/env-vars/ONLY")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rate_limits_answer_429_with_ratelimit_headers() {
    let (fake, api, owner) = setup().await;
    let (id, _) = api.create(&owner, "api", &image("v1", GOOD)).await;
    let path = format!("/services/{id}");
    for i in 0..10u32 {
        let a = api.patch(&path, json!({"serviceDetails": {"plan": "standard"}})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.headers["ratelimit-limit"], "10");
        assert_eq!(a.headers["ratelimit-remaining"], (9 - i).to_string().as_str());
    }
    // Deploys share the service's bucket.
    let a = api.post(&format!("{path}/deploys"), json!({})).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.body["id"], "rate_limit_exceeded");
    assert!(a.body["message"].is_string());
    assert_eq!(a.headers["ratelimit-remaining"], "0");
    let reset: i64 = a.headers["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset), "seconds until the reset: {reset}");
    assert_eq!(fake.deploys(&id).len(), 1, "nothing applied");
    assert_eq!(fake.deploy_posts(&id), 0);

    fake.set_reset_as_epoch(true);
    let a = api.patch(&path, json!({"serviceDetails": {"plan": "pro"}})).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let reset: i64 = a.headers["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > 1_600_000_000, "an epoch time: {reset}");
    assert_eq!(fake.service(&id).unwrap().plan, "standard");

    fake.advance(Duration::from_secs(61));
    let a = api.patch(&path, json!({"serviceDetails": {"plan": "pro"}})).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["ratelimit-remaining"], "9");

    // Other buckets: reads, and the hourly create bucket.
    let a = api.get("/owners").await;
    assert_eq!(a.headers["ratelimit-limit"], "400");
    fake.set_rate_limit(RateBucket::Create, 2);
    api.create(&owner, "two", &image("v1", GOOD)).await;
    let a = api.post("/services", create_body(&owner, "three", &image("v1", GOOD))).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["ratelimit-limit"], "2");
    assert!(fake.service_by_name(&owner, "three").is_none());
}

#[tokio::test]
async fn pagination_with_cursors() {
    let (fake, api, owner) = setup().await;
    let (id, _) = api.create(&owner, "api", &image("v1", GOOD)).await;
    let vars: Vec<Value> = (0..5).map(|i| json!({"key": format!("K{i}"), "value": i.to_string()})).collect();
    assert_eq!(api.put(&format!("/services/{id}/env-vars"), Value::Array(vars)).await.status, StatusCode::OK);
    let mut keys = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let a = api.get(&format!("/services/{id}/env-vars?limit=2&cursor={cursor}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let page = a.body.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        pages += 1;
        for item in &page {
            keys.push(item["envVar"]["key"].as_str().unwrap().to_owned());
        }
        cursor = page.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(keys, ["K0", "K1", "K2", "K3", "K4"]);
    assert_eq!(pages, 3);
    assert_eq!(api.get("/services?limit=101").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(api.get(&format!("/services?cursor=nope&ownerId={owner}")).await.status, StatusCode::BAD_REQUEST);

    // Exact name match, and the owner list.
    api.create(&owner, "api-2", &image("v1", GOOD)).await;
    let a = api.get(&format!("/services?name=api&ownerId={owner}")).await;
    assert_eq!(a.body.as_array().unwrap().len(), 1);
    assert_eq!(a.body[0]["service"]["id"], id.as_str());
    let a = api.get("/owners").await;
    assert_eq!(a.body[0]["owner"]["id"], owner.as_str());
    assert_eq!(a.body[0]["owner"]["type"], "team");
    assert_eq!(fake.owners().len(), 1);
}

#[tokio::test]
async fn a_reset_fault_is_a_connection_error() {
    let (fake, api, owner) = setup().await;
    fake.inject(Fault::Reset { method: Some("POST".to_owned()), path_contains: "/v1/services$".to_owned(), times: 1 });
    let err = api.send(Method::POST, "/services", Some(create_body(&owner, "api", &image("v1", GOOD)))).await;
    assert!(err.is_err(), "expected a connection error");
    assert_eq!(fake.faults_left(), 0);
    assert_eq!(fake.creates(), 0, "a reset request is not applied");
    assert_eq!(fake.requests().last().unwrap().status, 0);

    // ResetAfter: applied, then the connection drops.
    fake.inject(Fault::ResetAfter { method: None, path_contains: "/v1/services$".to_owned(), times: 1 });
    let err = api.send(Method::POST, "/services", Some(create_body(&owner, "api", &image("v1", GOOD)))).await;
    assert!(err.is_err());
    assert_eq!(fake.creates(), 1);
    assert!(fake.service_by_name(&owner, "api").is_some());
}

#[tokio::test]
async fn other_faults() {
    let (fake, api, owner) = setup().await;
    fake.inject(Fault::RefuseImage { digest: BAD.to_owned(), status: 422 });
    let a = api.post("/services", create_body(&owner, "api", &image("v1", BAD))).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fake.creates(), 0);
    let (id, _) = api.create(&owner, "api", &image("v1", GOOD)).await;

    fake.inject(Fault::Echo { method: None, path_contains: "/env-vars/".to_owned(), status: 500, times: 1 });
    let a = api.put(&format!("/services/{id}/env-vars/TOKEN"), json!({"value": "canary-123"})).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(a.body["message"].as_str().unwrap().contains("canary-123"));
    assert!(a.body["message"].as_str().unwrap().contains(API_KEY));
    assert_eq!(fake.env_var(&id, "TOKEN"), None);

    fake.inject(Fault::Malformed { method: None, path_contains: "/deploys/$".to_owned(), times: 1 });
    let dep = fake.deploys(&id)[0].id.clone();
    let r = reqwest::Client::new()
        .get(format!("{}/services/{id}/deploys/{dep}", fake.uri()))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());
    assert_eq!(fake.deploys(&id)[0].status, "build_in_progress", "a malformed answer was still an observation");
    assert!(fake.requests().iter().all(|r| !r.query.contains("canary")));
}

#[tokio::test]
async fn databases_are_listed_with_connection_info() {
    let (fake, api, owner) = setup().await;
    let pg = fake.seed_postgres(&owner, "main-db");
    let kv = fake.seed_key_value(&owner, "cache");
    let a = api.get(&format!("/postgres?name=main-db&ownerId={owner}")).await;
    assert_eq!(a.body[0]["postgres"]["id"], pg.as_str());
    let a = api.get(&format!("/postgres/{pg}/connection-info")).await;
    assert!(a.body["internalConnectionString"].as_str().unwrap().starts_with("postgresql://"));
    assert!(a.body["psqlCommand"].is_string() && a.body["password"].is_string());
    let a = api.get("/key-value?name=cache").await;
    assert_eq!(a.body[0]["keyValue"]["id"], kv.as_str());
    let a = api.get(&format!("/key-value/{kv}/connection-info")).await;
    assert!(a.body["internalConnectionString"].as_str().unwrap().starts_with("redis://"));
    assert!(a.body["cliCommand"].is_string());
}

#[tokio::test]
async fn unauthorized_without_the_key() {
    let (fake, mut api, _) = setup().await;
    api.key = "wrong".to_owned();
    let a = api.get("/owners").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body["id"], "unauthorized");
    assert!(a.body["message"].is_string());
    let r = reqwest::Client::new().get(format!("{}/services", fake.uri())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(fake.requests().iter().all(|r| !r.authorization_ok));
    fake.accept_key("wrong");
    assert_eq!(api.get("/owners").await.status, StatusCode::OK);
    assert_eq!(fake.request_count(), 3);
}
