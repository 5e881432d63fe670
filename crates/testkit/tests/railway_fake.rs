//! The Railway fake keeps state, validates against shipit's SDL subset and sets Railway's traps,
//! driven by plain reqwest with the real operation documents of `crates/railway/graphql`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use shipit_testkit::railway::{API_TOKEN, Behaviour, Fault, PROJECT_TOKEN_HEADER, RailwayFake, TokenKind};

mod ops {
    pub const DEPLOYMENT: &str = include_str!("../../railway/graphql/operations/Deployment.graphql");
    pub const DEPLOYMENT_CANCEL: &str = include_str!("../../railway/graphql/operations/DeploymentCancel.graphql");
    pub const DEPLOYMENTS: &str = include_str!("../../railway/graphql/operations/Deployments.graphql");
    pub const PROJECT: &str = include_str!("../../railway/graphql/operations/Project.graphql");
    pub const PROJECT_TOKEN: &str = include_str!("../../railway/graphql/operations/ProjectToken.graphql");
    pub const PROJECTS: &str = include_str!("../../railway/graphql/operations/Projects.graphql");
    pub const SERVICE_CREATE: &str = include_str!("../../railway/graphql/operations/ServiceCreate.graphql");
    pub const SERVICE_INSTANCE: &str = include_str!("../../railway/graphql/operations/ServiceInstance.graphql");
    pub const DEPLOY_V2: &str = include_str!("../../railway/graphql/operations/ServiceInstanceDeployV2.graphql");
    pub const LIMITS_UPDATE: &str =
        include_str!("../../railway/graphql/operations/ServiceInstanceLimitsUpdate.graphql");
    pub const INSTANCE_UPDATE: &str = include_str!("../../railway/graphql/operations/ServiceInstanceUpdate.graphql");
    pub const VARIABLE_UPSERT: &str = include_str!("../../railway/graphql/operations/VariableCollectionUpsert.graphql");
    pub const VARIABLE_DELETE: &str = include_str!("../../railway/graphql/operations/VariableDelete.graphql");
    pub const VARIABLES: &str = include_str!("../../railway/graphql/operations/Variables.graphql");
}

/// Documents shipit never sends (real Railway operations with traps, or variants of the subset).
mod extra {
    pub const CREATE_WITH_SOURCE: &str = "mutation CreateWithSource($input: ServiceCreateInput!) {
        serviceCreate(input: $input) { id name } }";
    pub const INSTANCE_REDEPLOY: &str = "mutation Redeploy($serviceId: String!, $environmentId: String!) {
        serviceInstanceRedeploy(serviceId: $serviceId, environmentId: $environmentId) }";
    pub const DEPLOYMENT_REDEPLOY: &str =
        "mutation DeploymentRedeploy($id: String!) { deploymentRedeploy(id: $id) { id status meta } }";
    pub const ROLLBACK: &str = "mutation Rollback($id: String!) { deploymentRollback(id: $id) }";
    pub const UPSERT: &str = "mutation Upsert($input: VariableCollectionUpsertInput!) {
        variableCollectionUpsert(input: $input) }";
    pub const RENDERED: &str = "query Rendered($projectId: String!, $environmentId: String!, $serviceId: String) {
        variables(projectId: $projectId, environmentId: $environmentId, serviceId: $serviceId) }";
    pub const PROJECTS_PAGE: &str = "query Page($first: Int, $after: String) {
        projects(first: $first, after: $after) { edges { node { id name } } pageInfo { hasNextPage endCursor } } }";
    pub const ME: &str = "query Me { me { id email } }";
}

const A: &str = "ghcr.io/acme/api:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "ghcr.io/acme/api:2@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const B_DIGEST: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

struct Api {
    http: reqwest::Client,
    url: String,
    bearer: Option<String>,
    project_token: Option<String>,
}

impl Api {
    fn new(fake: &RailwayFake) -> Self {
        Api {
            http: reqwest::Client::new(),
            url: fake.endpoint(),
            bearer: Some(API_TOKEN.to_owned()),
            project_token: None,
        }
    }

    fn with_project_token(fake: &RailwayFake, token: &str) -> Self {
        Api { bearer: None, project_token: Some(token.to_owned()), ..Api::new(fake) }
    }

    async fn send(&self, doc: &str, op: &str, vars: Value) -> reqwest::Result<reqwest::Response> {
        let mut req = self.http.post(&self.url).json(&json!({"query": doc, "operationName": op, "variables": vars}));
        if let Some(b) = &self.bearer {
            req = req.bearer_auth(b);
        }
        if let Some(t) = &self.project_token {
            req = req.header(PROJECT_TOKEN_HEADER, t);
        }
        req.send().await
    }

    async fn call(&self, doc: &str, op: &str, vars: Value) -> (u16, Value) {
        let resp = self.send(doc, op, vars).await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
    }

    /// The `data` of a successful answer.
    async fn data(&self, doc: &str, op: &str, vars: Value) -> Value {
        let (status, body) = self.call(doc, op, vars).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{op}: {body}");
        body["data"].clone()
    }

    /// The first error message of a 200 answer with `errors[]` and `data: null`.
    async fn error(&self, doc: &str, op: &str, vars: Value) -> String {
        let (status, body) = self.call(doc, op, vars).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"], Value::Null, "{body}");
        body["errors"][0]["message"].as_str().unwrap_or_else(|| panic!("no error: {body}")).to_owned()
    }

    async fn update(&self, service: &str, env: &str, input: Value) {
        let vars = json!({"serviceId": service, "environmentId": env, "input": input});
        assert_eq!(self.data(ops::INSTANCE_UPDATE, "ServiceInstanceUpdate", vars).await["serviceInstanceUpdate"], true);
    }

    async fn deploy(&self, service: &str, env: &str) -> String {
        let vars = json!({"serviceId": service, "environmentId": env});
        let data = self.data(ops::DEPLOY_V2, "ServiceInstanceDeployV2", vars).await;
        data["serviceInstanceDeployV2"].as_str().unwrap().to_owned()
    }

    /// Points the service at `image` (2 replicas) and deploys it.
    async fn ship(&self, service: &str, env: &str, image: &str) -> String {
        let input = json!({"source": {"image": image}, "multiRegionConfig": {"us-west2": {"numReplicas": 2}}});
        self.update(service, env, input).await;
        self.deploy(service, env).await
    }

    /// One observation of a deployment.
    async fn poll(&self, id: &str) -> Value {
        self.data(ops::DEPLOYMENT, "Deployment", json!({"id": id})).await["deployment"].clone()
    }

    /// Ships `image` and polls it live.
    async fn ship_live(&self, service: &str, env: &str, image: &str) -> String {
        let id = self.ship(service, env, image).await;
        assert_eq!(self.poll(&id).await["status"], "DEPLOYING");
        assert_eq!(self.poll(&id).await["status"], "SUCCESS");
        id
    }

    async fn instance(&self, service: &str, env: &str) -> Value {
        self.data(ops::SERVICE_INSTANCE, "ServiceInstance", json!({"serviceId": service, "environmentId": env})).await
    }
}

struct World {
    fake: RailwayFake,
    api: Api,
    project: String,
    prod: String,
    staging: String,
}

async fn world() -> World {
    let fake = RailwayFake::start().await;
    let project = fake.seed_project("forge");
    let prod = fake.seed_environment(&project, "production");
    let staging = fake.seed_environment(&project, "staging");
    let api = Api::new(&fake);
    World { fake, api, project, prod, staging }
}

#[tokio::test]
async fn a_project_token_sees_one_project_and_acts_in_one_environment() {
    let w = world().await;
    assert!(w.fake.endpoint().ends_with("/graphql/v2"));
    let web = w.fake.seed_service(&w.project, "web");
    let other = w.fake.seed_project("elsewhere");
    let token = w.fake.create_project_token(&w.project, &w.prod);
    let pt = Api::with_project_token(&w.fake, &token);

    let scope = pt.data(ops::PROJECT_TOKEN, "ProjectToken", json!({})).await["projectToken"].clone();
    assert_eq!(scope["projectId"], w.project.as_str());
    assert_eq!(scope["environmentId"], w.prod.as_str());
    assert_eq!(scope["project"]["name"], "forge");
    assert_eq!(scope["environment"]["name"], "production");

    let project = pt.data(ops::PROJECT, "Project", json!({"id": w.project})).await["project"].clone();
    assert_eq!(project["environments"]["edges"].as_array().unwrap().len(), 2);
    assert_eq!(project["services"]["edges"][0]["node"]["name"], "web");
    assert!(pt.instance(&web, &w.prod).await["serviceInstance"]["id"].is_string());

    // Another environment, another project, or listing projects: refused.
    let vars = json!({"serviceId": web, "environmentId": w.staging});
    assert_eq!(pt.error(ops::SERVICE_INSTANCE, "ServiceInstance", vars.clone()).await, "Not Authorized");
    let vars = json!({"serviceId": web, "environmentId": w.staging, "input": {"startCommand": "x"}});
    assert_eq!(pt.error(ops::INSTANCE_UPDATE, "ServiceInstanceUpdate", vars).await, "Not Authorized");
    assert_eq!(pt.error(ops::PROJECT, "Project", json!({"id": other})).await, "Not Authorized");
    assert_eq!(pt.error(ops::PROJECTS, "Projects", json!({})).await, "Not Authorized");
    assert_eq!(w.fake.instance(&w.project, &w.staging, &web).unwrap().start_command, None);

    // An account token: no project token scope, every project.
    assert_eq!(w.api.error(ops::PROJECT_TOKEN, "ProjectToken", json!({})).await, "Project Token not found");
    let projects = w.api.data(ops::PROJECTS, "Projects", json!({})).await["projects"].clone();
    assert_eq!(projects["edges"].as_array().unwrap().len(), 2);
    assert_eq!(projects["pageInfo"]["hasNextPage"], false);

    // `me` works with neither kind; no token or an unknown one is refused.
    assert_eq!(w.api.error(extra::ME, "Me", json!({})).await, "Not Authorized");
    assert_eq!(pt.error(extra::ME, "Me", json!({})).await, "Not Authorized");
    let anonymous = Api { bearer: None, ..Api::new(&w.fake) };
    assert_eq!(anonymous.error(ops::PROJECT, "Project", json!({"id": w.project})).await, "Not Authorized");
    let wrong = Api { bearer: Some("nope".into()), ..Api::new(&w.fake) };
    assert_eq!(wrong.error(ops::PROJECTS, "Projects", json!({})).await, "Not Authorized");

    // Both headers: the project token wins.
    let both = Api { bearer: Some(API_TOKEN.into()), ..Api::with_project_token(&w.fake, &token) };
    assert_eq!(both.error(ops::PROJECTS, "Projects", json!({})).await, "Not Authorized");
    let kinds: Vec<TokenKind> = w.fake.requests().iter().map(|r| r.token_kind).collect();
    assert_eq!(kinds.first(), Some(&TokenKind::Project));
    assert_eq!(kinds.last(), Some(&TokenKind::Project));
    assert!(kinds.contains(&TokenKind::Api) && kinds.contains(&TokenKind::None));
}

#[tokio::test]
async fn validation_errors_answer_200_and_change_nothing() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let before = w.fake.instance(&w.project, &w.prod, &web).unwrap();

    // Legacy replica fields are not in the subset: refused, nothing changes.
    let vars = json!({"serviceId": web, "environmentId": w.prod, "input": {"startCommand": "serve", "numReplicas": 3}});
    let msg = w.api.error(ops::INSTANCE_UPDATE, "ServiceInstanceUpdate", vars).await;
    assert_eq!(msg, "Field \"numReplicas\" is not defined by type \"ServiceInstanceUpdateInput\".");
    assert_eq!(w.fake.instance(&w.project, &w.prod, &web).unwrap(), before);

    // A required variable missing, null, or of the wrong kind; an undeclared one; a bad enum.
    let vars = json!({"projectId": w.project, "environmentId": w.prod});
    let msg = w.api.error(ops::SERVICE_CREATE, "ServiceCreate", vars).await;
    assert_eq!(msg, "Variable \"$name\" of required type \"String!\" was not provided.");
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "name": null});
    assert!(w.api.error(ops::SERVICE_CREATE, "ServiceCreate", vars).await.contains("must not be null"));
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "name": 7});
    assert!(w.api.error(ops::SERVICE_CREATE, "ServiceCreate", vars).await.contains("String cannot represent"));
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "name": "api", "source": "x"});
    let msg = w.api.error(ops::SERVICE_CREATE, "ServiceCreate", vars).await;
    assert_eq!(msg, "Variable \"$source\" is not defined by operation \"ServiceCreate\".");
    let vars = json!({"serviceId": web, "environmentId": w.prod, "input": {"restartPolicyType": "SOMETIMES"}});
    assert!(w.api.error(ops::INSTANCE_UPDATE, "ServiceInstanceUpdate", vars).await.contains("RestartPolicyType"));
    let vars = json!({"serviceId": web, "environmentId": w.prod, "input": {"healthcheckTimeout": "30"}});
    assert!(w.api.error(ops::INSTANCE_UPDATE, "ServiceInstanceUpdate", vars).await.contains("Int cannot represent"));
    assert_eq!(w.fake.service_names(&w.project), ["web"]);
    assert_eq!(w.fake.instance(&w.project, &w.prod, &web).unwrap(), before);

    // No such operation in the document, or none named.
    let msg = w.api.error(ops::PROJECT, "Projects", json!({"id": w.project})).await;
    assert_eq!(msg, "Unknown operation named \"Projects\".");
    let (status, body) = w.api.call(ops::PROJECT, "", json!({})).await;
    assert_eq!(status, 200);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("Unknown operation"), "{body}");

    // Anything but POST /graphql/v2 is 404.
    let resp = w.api.http.get(&w.api.url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = w.api.http.post(format!("{}/graphql", w.fake.uri())).body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn service_create_without_source_is_in_every_environment_and_deploys_nothing() {
    let w = world().await;
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "name": "api"});
    let created = w.api.data(ops::SERVICE_CREATE, "ServiceCreate", vars).await["serviceCreate"].clone();
    assert_eq!(created["name"], "api");
    let id = created["id"].as_str().unwrap();
    assert_eq!(w.fake.service_id(&w.project, "api").as_deref(), Some(id));
    for env in [&w.prod, &w.staging] {
        let i = w.fake.instance(&w.project, env, id).expect("an instance in every environment");
        assert_eq!(i.image, None);
        assert!(w.fake.deployments(&w.project, env, id).is_empty());
    }
    let si = w.api.instance(id, &w.staging).await;
    assert_eq!(si["serviceInstance"]["restartPolicyType"], "ON_FAILURE");
    assert_eq!(si["serviceInstance"]["restartPolicyMaxRetries"], 10);
    assert_eq!(si["serviceInstance"]["numReplicas"], 1);
    assert_eq!(si["serviceInstance"]["region"], "us-west2");
    assert_eq!(si["serviceInstance"]["activeDeployments"], json!([]));
    assert_eq!(si["serviceInstanceLimits"], json!({}));

    // Names are unique per project, case-insensitively.
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "name": "API"});
    assert_eq!(w.api.error(ops::SERVICE_CREATE, "ServiceCreate", vars).await, "Service name already exists");
    // A service without a source cannot deploy.
    let vars = json!({"serviceId": id, "environmentId": w.prod});
    let msg = w.api.error(ops::DEPLOY_V2, "ServiceInstanceDeployV2", vars).await;
    assert_eq!(msg, "Service has no source to deploy");
}

#[tokio::test]
async fn service_create_with_a_source_deploys_at_once() {
    let w = world().await;
    let input = json!({"projectId": w.project, "environmentId": w.prod, "name": "api", "source": {"image": A}});
    let created = w.api.data(extra::CREATE_WITH_SOURCE, "CreateWithSource", json!({"input": input})).await;
    let id = created["serviceCreate"]["id"].as_str().unwrap();
    for env in [&w.prod, &w.staging] {
        let ds = w.fake.deployments(&w.project, env, id);
        assert_eq!(ds.len(), 1, "deployed in every environment");
        assert_eq!((ds[0].status.as_str(), ds[0].image.as_deref()), ("INITIALIZING", Some(A)));
        assert_eq!(ds[0].replicas, 1, "with default settings");
    }
}

#[tokio::test]
async fn instance_update_sets_resets_on_null_keeps_omitted_and_loses_replicas_when_omitted() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let input = json!({
        "source": {"image": A},
        "startCommand": "serve --port 8080",
        "healthcheckPath": "/health",
        "healthcheckTimeout": 60,
        "restartPolicyType": "ALWAYS",
        "restartPolicyMaxRetries": 3,
        "sleepApplication": true,
        "multiRegionConfig": {"us-east4-eqdc4a": {"numReplicas": 3}},
        "railwayConfigFile": "railway.json",
    });
    w.api.update(&web, &w.prod, input).await;
    let i = w.fake.instance(&w.project, &w.prod, &web).unwrap();
    assert_eq!(i.image.as_deref(), Some(A));
    assert_eq!((i.restart_policy_type.as_str(), i.restart_policy_max_retries), ("ALWAYS", 3));
    assert_eq!(i.multi_region_config, json!({"us-east4-eqdc4a": {"numReplicas": 3}}));
    assert!(!i.replicas_reset_pending);
    assert!(w.fake.deployments(&w.project, &w.prod, &web).is_empty(), "an update deploys nothing");
    let si = w.api.instance(&web, &w.prod).await["serviceInstance"].clone();
    assert_eq!((si["numReplicas"].clone(), si["region"].clone()), (json!(3), json!("us-east4-eqdc4a")));
    assert_eq!(si["source"]["image"], A);
    assert_eq!(si["railwayConfigFile"], "railway.json");

    // Null resets to Railway's default; omitted fields are kept — except the replicas.
    let input = json!({"startCommand": null, "restartPolicyType": null, "restartPolicyMaxRetries": null,
                       "sleepApplication": null, "railwayConfigFile": ""});
    w.api.update(&web, &w.prod, input).await;
    let i = w.fake.instance(&w.project, &w.prod, &web).unwrap();
    assert_eq!(i.start_command, None);
    assert_eq!((i.restart_policy_type.as_str(), i.restart_policy_max_retries), ("ON_FAILURE", 10));
    assert!(!i.sleep_application);
    assert_eq!(i.railway_config_file, None);
    assert_eq!(i.healthcheck_path.as_deref(), Some("/health"), "omitted: kept");
    assert_eq!(i.healthcheck_timeout, Some(60));
    assert!(i.replicas_reset_pending);

    let id = w.api.deploy(&web, &w.prod).await;
    let d = w.fake.deployment(&id).unwrap();
    assert_eq!(d.replicas, 1, "an update without multiRegionConfig, then a deploy: 1 replica");
    assert_eq!(d.multi_region_config, json!({"us-east4-eqdc4a": {"numReplicas": 1}}));
    assert_eq!(d.meta["serviceManifest"]["deploy"]["healthcheckPath"], "/health");
    assert!(d.meta["serviceManifest"]["deploy"].get("startCommand").is_none(), "unset settings are omitted");
    let i = w.fake.instance(&w.project, &w.prod, &web).unwrap();
    assert_eq!(i.multi_region_config, json!({"us-east4-eqdc4a": {"numReplicas": 1}}));

    // Null multiRegionConfig is the default; unknown regions are refused.
    w.api.update(&web, &w.prod, json!({"multiRegionConfig": null})).await;
    let i = w.fake.instance(&w.project, &w.prod, &web).unwrap();
    assert_eq!(i.multi_region_config, json!({"us-west2": {"numReplicas": 1}}));
    let vars = json!({"serviceId": web, "environmentId": w.prod, "input": {"multiRegionConfig": {"mars-1": {"numReplicas": 1}}}});
    let msg = w.api.error(ops::INSTANCE_UPDATE, "ServiceInstanceUpdate", vars).await;
    assert!(msg.starts_with("Invalid region"), "{msg}");

    // Limits, read back as the instance's serviceInstanceLimits.
    let vars = json!({"input": {"serviceId": web, "environmentId": w.prod, "vCPUs": 2.0, "memoryGB": 4.0}});
    let ok = w.api.data(ops::LIMITS_UPDATE, "ServiceInstanceLimitsUpdate", vars).await;
    assert_eq!(ok["serviceInstanceLimitsUpdate"], true);
    assert_eq!(w.api.instance(&web, &w.prod).await["serviceInstanceLimits"], json!({"vCPUs": 2.0, "memoryGB": 4.0}));
    let i = w.fake.instance(&w.project, &w.prod, &web).unwrap();
    assert_eq!((i.vcpus, i.memory_gb), (Some(2.0), Some(4.0)));
}

#[tokio::test]
async fn a_deployment_polls_to_success_and_supersedes_the_previous_one() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let first = w.api.ship(&web, &w.prod, A).await;
    let d = w.api.poll(&first).await;
    assert_eq!(d["status"], "DEPLOYING");
    assert_eq!(d["instances"], json!([]));
    let d = w.api.poll(&first).await;
    assert_eq!(d["status"], "SUCCESS");
    assert_eq!(d["canRollback"], false);
    assert_eq!(d["instances"].as_array().unwrap().len(), 2);
    assert_eq!(d["instances"][0]["status"], "RUNNING");
    assert_eq!(d["meta"]["image"], A);
    assert_eq!(d["meta"]["imageDigest"], A.split_once('@').unwrap().1);
    assert!(d["createdAt"].as_str().unwrap().ends_with('Z'));

    let vars = json!({"serviceId": web, "environmentId": w.prod, "commitSha": "3f2c1ab"});
    w.api
        .update(&web, &w.prod, json!({"source": {"image": B}, "multiRegionConfig": {"us-west2": {"numReplicas": 2}}}))
        .await;
    let second = w.api.data(ops::DEPLOY_V2, "ServiceInstanceDeployV2", vars).await["serviceInstanceDeployV2"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(w.fake.live_deployment(&w.project, &w.prod, &web).unwrap().id, first, "still the old one");
    w.api.poll(&second).await;
    let d = w.api.poll(&second).await;
    assert_eq!(d["status"], "SUCCESS");
    assert_eq!(d["meta"]["commitHash"], "3f2c1ab");

    let old = w.fake.deployment(&first).unwrap();
    assert_eq!((old.status.as_str(), old.can_rollback, old.instances), ("REMOVED", true, 0));
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web, "first": 10});
    let list = w.api.data(ops::DEPLOYMENTS, "Deployments", vars).await["deployments"]["edges"].clone();
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    assert_eq!(list[1]["node"]["canRollback"], true);
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web, "first": 1});
    assert_eq!(
        w.api.data(ops::DEPLOYMENTS, "Deployments", vars).await["deployments"]["edges"].as_array().unwrap().len(),
        1
    );
    let si = w.api.instance(&web, &w.prod).await["serviceInstance"].clone();
    assert_eq!(si["activeDeployments"].as_array().unwrap().len(), 1);
    assert_eq!(si["activeDeployments"][0]["id"], second.as_str());
    assert!(w.fake.deployments(&w.project, &w.staging, &web).is_empty());

    assert_eq!(w.api.error(ops::DEPLOYMENT, "Deployment", json!({"id": "nope"})).await, "Deployment not found");
}

#[tokio::test]
async fn an_unhealthy_deployment_fails_after_its_timeout_and_the_previous_one_keeps_serving() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let good = w.api.ship_live(&web, &w.prod, A).await;
    w.fake.set_behaviour(B_DIGEST, Behaviour::Unhealthy);
    w.api.update(&web, &w.prod, json!({"healthcheckTimeout": 30})).await;
    let bad = w.api.ship(&web, &w.prod, B).await;
    for _ in 0..5 {
        assert_eq!(w.api.poll(&bad).await["status"], "DEPLOYING");
    }
    w.fake.advance(Duration::from_secs(25));
    assert_eq!(w.api.poll(&bad).await["status"], "FAILED");
    let d = w.fake.deployment(&bad).unwrap();
    assert!(!d.can_rollback);
    let live = w.fake.live_deployment(&w.project, &w.prod, &web).unwrap();
    assert_eq!((live.id.as_str(), live.status.as_str()), (good.as_str(), "SUCCESS"));
}

#[tokio::test]
async fn a_crash_keeps_the_previous_deployment_live() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let good = w.api.ship_live(&web, &w.prod, A).await;
    let bad = w.api.ship(&web, &w.prod, B).await;
    w.fake.set_behaviour(B_DIGEST, Behaviour::Crash); // after the deploy: looked up at each step
    assert_eq!(w.api.poll(&bad).await["status"], "DEPLOYING");
    assert_eq!(w.api.poll(&bad).await["status"], "CRASHED");
    assert_eq!(w.api.poll(&bad).await["status"], "CRASHED");
    assert_eq!(w.fake.live_deployment(&w.project, &w.prod, &web).unwrap().id, good);

    w.fake.set_behaviour(B_DIGEST, Behaviour::Fail);
    let failed = w.api.deploy(&web, &w.prod).await;
    assert_eq!(w.api.poll(&failed).await["status"], "FAILED");
    assert_eq!(w.fake.live_deployment(&w.project, &w.prod, &web).unwrap().id, good);
}

#[tokio::test]
async fn cancel_removes_a_deployment_that_never_went_live() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let good = w.api.ship_live(&web, &w.prod, A).await;
    w.fake.set_behaviour(B_DIGEST, Behaviour::NeedsApproval);
    let waiting = w.api.ship(&web, &w.prod, B).await;
    assert_eq!(w.api.poll(&waiting).await["status"], "NEEDS_APPROVAL");
    assert_eq!(w.api.poll(&waiting).await["status"], "NEEDS_APPROVAL");
    let ok = w.api.data(ops::DEPLOYMENT_CANCEL, "DeploymentCancel", json!({"id": waiting})).await;
    assert_eq!(ok["deploymentCancel"], true);
    let d = w.api.poll(&waiting).await;
    assert_eq!((d["status"].clone(), d["canRollback"].clone()), (json!("REMOVED"), json!(false)));
    // Cancelling a finished deployment answers true and changes nothing.
    let ok = w.api.data(ops::DEPLOYMENT_CANCEL, "DeploymentCancel", json!({"id": good})).await;
    assert_eq!(ok["deploymentCancel"], true);
    assert_eq!(w.fake.deployment(&good).unwrap().status, "SUCCESS");
}

#[tokio::test]
async fn a_newer_deployment_going_live_removes_older_ones_in_progress() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let older = w.api.ship(&web, &w.prod, A).await;
    let newer = w.api.ship_live(&web, &w.prod, B).await;
    let d = w.fake.deployment(&older).unwrap();
    assert_eq!((d.status.as_str(), d.can_rollback), ("REMOVED", false));
    assert_eq!(w.fake.live_deployment(&w.project, &w.prod, &web).unwrap().id, newer);
}

#[tokio::test]
async fn redeploy_runs_the_old_image_not_the_current_source() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let first = w.api.ship_live(&web, &w.prod, A).await;
    w.api
        .update(&web, &w.prod, json!({"source": {"image": B}, "multiRegionConfig": {"us-west2": {"numReplicas": 2}}}))
        .await;

    let vars = json!({"serviceId": web, "environmentId": w.prod});
    assert_eq!(w.api.data(extra::INSTANCE_REDEPLOY, "Redeploy", vars).await["serviceInstanceRedeploy"], true);
    let latest = &w.fake.deployments(&w.project, &w.prod, &web)[0];
    assert_ne!(latest.id, first);
    assert_eq!(latest.image.as_deref(), Some(A), "the old image, although the source is B");

    let again = w.api.data(extra::DEPLOYMENT_REDEPLOY, "DeploymentRedeploy", json!({"id": first})).await;
    assert_eq!(again["deploymentRedeploy"]["meta"]["image"], A);
    assert_eq!(w.fake.deployments(&w.project, &w.prod, &web).len(), 3);
}

#[tokio::test]
async fn rollback_restores_the_old_image_and_the_old_variables() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let upsert = |value: &str| json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web, "variables": {"MODE": value}});
    w.api.data(ops::VARIABLE_UPSERT, "VariableCollectionUpsert", upsert("old")).await;
    let first = w.api.ship_live(&web, &w.prod, A).await;
    w.api.data(ops::VARIABLE_UPSERT, "VariableCollectionUpsert", upsert("new")).await;
    let second = w.api.ship_live(&web, &w.prod, B).await;
    assert_eq!(w.fake.variable(&w.project, &w.prod, &web, "MODE"), Some(Some("new".into())));

    assert_eq!(
        w.api.error(extra::ROLLBACK, "Rollback", json!({"id": second})).await,
        "Deployment cannot be rolled back"
    );
    assert_eq!(w.api.data(extra::ROLLBACK, "Rollback", json!({"id": first})).await["deploymentRollback"], true);
    let latest = w.fake.deployments(&w.project, &w.prod, &web)[0].clone();
    assert_eq!(latest.image.as_deref(), Some(A));
    assert_eq!(latest.variables.get("MODE"), Some(&Some("old".into())));
    assert_eq!(w.fake.variable(&w.project, &w.prod, &web, "MODE"), Some(Some("old".into())), "variables restored");
    assert_eq!(w.fake.instance(&w.project, &w.prod, &web).unwrap().image.as_deref(), Some(B), "source untouched");
    w.api.poll(&latest.id).await;
    assert_eq!(w.api.poll(&latest.id).await["status"], "SUCCESS");
    assert_eq!(w.fake.deployment(&second).unwrap().status, "REMOVED");
}

#[tokio::test]
async fn variable_upserts_deploy_unless_skipped_and_go_shared_without_a_service() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let db = w.fake.seed_database(&w.project, "Postgres", "ghcr.io/railwayapp-templates/postgres-ssl:16");
    assert!(w.fake.seed_variable(&w.project, &w.prod, &db, "DATABASE_URL", Some("postgres://db:5432/app")));
    assert_eq!(w.fake.live_deployment(&w.project, &w.staging, &db).unwrap().status, "SUCCESS");
    w.api
        .update(&web, &w.prod, json!({"source": {"image": A}, "multiRegionConfig": {"us-west2": {"numReplicas": 1}}}))
        .await;

    // The real operation says skipDeploys: true: nothing deploys, other variables are kept.
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web,
                      "variables": {"A": "1", "DB": "${{Postgres.DATABASE_URL}}"}});
    w.api.data(ops::VARIABLE_UPSERT, "VariableCollectionUpsert", vars).await;
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web, "variables": {"B": null}});
    w.api.data(ops::VARIABLE_UPSERT, "VariableCollectionUpsert", vars).await;
    assert!(w.fake.deployments(&w.project, &w.prod, &web).is_empty());
    let read = json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web});
    let vs = w.api.data(ops::VARIABLES, "Variables", read.clone()).await["variables"].clone();
    assert_eq!(vs, json!({"A": "1", "B": null, "DB": "${{Postgres.DATABASE_URL}}"}), "unrendered, null kept");
    let vs = w.api.data(extra::RENDERED, "Rendered", read.clone()).await["variables"].clone();
    assert_eq!(vs["DB"], "postgres://db:5432/app");

    // Without skipDeploys: every upsert deploys the service.
    let input = json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web, "variables": {"C": "3"}});
    w.api.data(extra::UPSERT, "Upsert", json!({"input": input})).await;
    let ds = w.fake.deployments(&w.project, &w.prod, &web);
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].variables.get("C"), Some(&Some("3".into())));

    // replace: true drops the others.
    let input = json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web,
                       "variables": {"ONLY": "x"}, "replace": true, "skipDeploys": true});
    w.api.data(extra::UPSERT, "Upsert", json!({"input": input})).await;
    assert_eq!(w.fake.instance(&w.project, &w.prod, &web).unwrap().variables.len(), 1);

    // Without serviceId: shared variables of the environment, not the service's.
    let input =
        json!({"projectId": w.project, "environmentId": w.prod, "variables": {"SHARED": "s"}, "skipDeploys": true});
    w.api.data(extra::UPSERT, "Upsert", json!({"input": input})).await;
    assert_eq!(w.fake.shared_variables(&w.project, &w.prod).get("SHARED"), Some(&Some("s".into())));
    assert_eq!(w.fake.variable(&w.project, &w.prod, &web, "SHARED"), None);

    let vars = json!({"projectId": w.project, "environmentId": w.prod, "serviceId": web, "name": "ONLY"});
    assert_eq!(w.api.data(ops::VARIABLE_DELETE, "VariableDelete", vars).await["variableDelete"], true);
    assert_eq!(w.fake.variable(&w.project, &w.prod, &web, "ONLY"), None);
    assert_eq!(w.fake.deployments(&w.project, &w.prod, &web).len(), 1);
}

#[tokio::test]
async fn projects_page_by_first_and_after() {
    let fake = RailwayFake::start().await;
    for name in ["a", "b", "c"] {
        fake.seed_project(name);
    }
    let api = Api::new(&fake);
    let page = api.data(extra::PROJECTS_PAGE, "Page", json!({"first": 2})).await["projects"].clone();
    assert_eq!(page["edges"].as_array().unwrap().len(), 2);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let after = page["pageInfo"]["endCursor"].clone();
    let page = api.data(extra::PROJECTS_PAGE, "Page", json!({"first": 2, "after": after})).await["projects"].clone();
    assert_eq!(page["edges"][0]["node"]["name"], "c");
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    assert_eq!(api.error(ops::PROJECT, "Project", json!({"id": "nope"})).await, "Project not found");
}

#[tokio::test]
async fn past_the_hourly_budget_requests_get_429_with_retry_after() {
    let w = world().await;
    w.fake.set_hourly_limit(2);
    let vars = json!({"id": w.project});
    let resp = w.api.send(ops::PROJECT, "Project", vars.clone()).await.unwrap();
    assert_eq!(resp.headers()["x-ratelimit-limit"], "2");
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "1");
    let reset: i64 = resp.headers()["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > 1_700_000_000);
    let resp = w.api.send(ops::PROJECT, "Project", vars.clone()).await.unwrap();
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");

    let resp = w.api.send(ops::PROJECT, "Project", vars.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("Rate limit"));
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "name": "api"});
    assert_eq!(w.api.send(ops::SERVICE_CREATE, "ServiceCreate", vars).await.unwrap().status().as_u16(), 429);
    assert!(w.fake.service_names(&w.project).is_empty(), "nothing applied");

    w.fake.advance(Duration::from_secs(3600));
    assert_eq!(w.api.data(ops::PROJECT, "Project", json!({"id": w.project})).await["project"]["name"], "forge");
    assert_eq!(w.fake.request_count(), 5);
}

#[tokio::test]
async fn a_reset_fault_is_a_connection_error() {
    let w = world().await;
    w.fake.inject(Fault::Reset { ops: Fault::only(&["ServiceCreate"]), times: 1 });
    let vars = json!({"projectId": w.project, "environmentId": w.prod, "name": "api"});
    // Other operations pass.
    w.api.data(ops::PROJECT, "Project", json!({"id": w.project})).await;
    let err = w.api.send(ops::SERVICE_CREATE, "ServiceCreate", vars.clone()).await.unwrap_err();
    assert!(!err.is_timeout() && !err.is_status(), "a reset, not an answer: {err:?}");
    assert!(w.fake.service_names(&w.project).is_empty(), "not applied");
    assert_eq!(w.fake.faults_left(), 0);

    // ResetAfter: applied, then reset.
    w.fake.inject(Fault::ResetAfter { ops: None, times: 1 });
    let err = w.api.send(ops::SERVICE_CREATE, "ServiceCreate", vars.clone()).await.unwrap_err();
    assert!(!err.is_timeout() && !err.is_status(), "{err:?}");
    assert_eq!(w.fake.service_names(&w.project), ["api"], "applied");
    let statuses: Vec<u16> = w.fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 0, 0]);
    assert_eq!(w.fake.operations(), ["Project", "ServiceCreate", "ServiceCreate"]);
}

#[tokio::test]
async fn other_faults_status_graphql_error_lost_malformed_cut_slow_and_refused_deploys() {
    let w = world().await;
    let web = w.fake.seed_service(&w.project, "web");
    let project = json!({"id": w.project});

    w.fake.inject(Fault::rate_limited(None, 1, 7));
    let resp = w.api.send(ops::PROJECT, "Project", project.clone()).await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["retry-after"].to_str().unwrap()), (429, "7"));
    w.fake.inject(Fault::unavailable(Fault::only(&["Project"]), 1));
    assert_eq!(w.api.call(ops::PROJECT, "Project", project.clone()).await.0, 503);

    w.fake.inject(Fault::GraphqlError { ops: None, message: "Problem processing request".into(), times: 1 });
    assert_eq!(w.api.error(ops::PROJECT, "Project", project.clone()).await, "Problem processing request");

    // Applied, but the answer is lost / not JSON / cut short.
    let input = |cmd: &str| json!({"serviceId": web, "environmentId": w.prod, "input": {"startCommand": cmd}});
    w.fake.inject(Fault::LostResponse { ops: None, status: 502, times: 1 });
    assert_eq!(w.api.call(ops::INSTANCE_UPDATE, "ServiceInstanceUpdate", input("one")).await.0, 502);
    assert_eq!(w.fake.instance(&w.project, &w.prod, &web).unwrap().start_command.as_deref(), Some("one"));
    w.fake.inject(Fault::Malformed { ops: None, times: 1 });
    let resp = w.api.send(ops::INSTANCE_UPDATE, "ServiceInstanceUpdate", input("two")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(serde_json::from_str::<Value>(&resp.text().await.unwrap()).is_err());
    assert_eq!(w.fake.instance(&w.project, &w.prod, &web).unwrap().start_command.as_deref(), Some("two"));
    w.fake.inject(Fault::CutBody { ops: None, times: 1 });
    let resp = w.api.send(ops::PROJECT, "Project", project.clone()).await.unwrap();
    assert!(resp.text().await.is_err(), "the body stops short");

    // Slow: applied, the client gives up first.
    w.fake.inject(Fault::Slow { ops: None, delay: Duration::from_millis(400), times: 1 });
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let body =
        json!({"query": ops::INSTANCE_UPDATE, "operationName": "ServiceInstanceUpdate", "variables": input("three")});
    let err = quick.post(&w.api.url).bearer_auth(API_TOKEN).json(&body).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(w.fake.instance(&w.project, &w.prod, &web).unwrap().start_command.as_deref(), Some("three"));

    // RefuseDeploy: that digest's deploys fail, others pass.
    w.api.update(&web, &w.prod, json!({"source": {"image": B}})).await;
    w.fake.inject(Fault::RefuseDeploy { digest: B_DIGEST.into(), message: "Image pull failed".into() });
    let vars = json!({"serviceId": web, "environmentId": w.prod});
    assert_eq!(w.api.error(ops::DEPLOY_V2, "ServiceInstanceDeployV2", vars.clone()).await, "Image pull failed");
    assert!(w.fake.deployments(&w.project, &w.prod, &web).is_empty());
    w.api.update(&web, &w.prod, json!({"source": {"image": A}})).await;
    w.api.deploy(&web, &w.prod).await;
    assert_eq!(w.fake.faults_left(), 0);
    w.fake.clear_faults();
    w.api.update(&web, &w.prod, json!({"source": {"image": B}})).await;
    w.api.deploy(&web, &w.prod).await;
    assert_eq!(w.fake.deployments(&w.project, &w.prod, &web).len(), 2);
}

#[tokio::test]
async fn echo_quotes_credentials_back_and_the_log_keeps_none() {
    let w = world().await;
    let token = w.fake.create_project_token(&w.project, &w.prod);
    let pt = Api::with_project_token(&w.fake, &token);
    w.fake.inject(Fault::Echo { ops: None, status: 500, times: 1 });
    let vars =
        json!({"projectId": w.project, "environmentId": w.prod, "serviceId": "s", "variables": {"K": "canary-value"}});
    let resp = pt.send(ops::VARIABLE_UPSERT, "VariableCollectionUpsert", vars).await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let echoed = resp.headers()[shipit_testkit::echo::ECHO_HEADER].to_str().unwrap().to_owned();
    assert!(echoed.contains(&token));
    let body: Value = resp.json().await.unwrap();
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains(&token) && msg.contains("canary-value"));

    let log = format!("{:?}", w.fake.requests());
    assert!(!log.contains(&token) && !log.contains("canary-value"), "{log}");
    assert_eq!(w.fake.requests()[0].operation.as_deref(), Some("VariableCollectionUpsert"));
    assert_eq!(w.fake.requests()[0].token_kind, TokenKind::Project);
}
