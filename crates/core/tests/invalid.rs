//! Malformed manifests: each is refused with a message that names the place and says what was
//! expected. None of them may panic.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use shipit_core::parse;

/// A small valid manifest that the cases below break one way at a time.
const BASE: &str = r#"app = "shop"

[registry]
namespace = "acme"

[services.api]
port = 4000
health = { path = "/healthz" }

[databases.db]
engine = "postgres"

[environments.staging]
target = "fly"
"#;

/// Parses `src`, expecting failure; returns every problem as `line:col: message (help)`.
fn problems(src: &str) -> Vec<String> {
    match parse(src, "shipit.toml") {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(e) => e
            .problems
            .iter()
            .map(|p| match &p.help {
                Some(h) => format!("{}:{}: {} ({h})", p.line, p.column, p.message),
                None => format!("{}:{}: {}", p.line, p.column, p.message),
            })
            .collect(),
    }
}

/// Asserts that exactly one problem was found, at `at` ("line:col"), containing `needle`.
#[track_caller]
fn one(src: &str, at: &str, needle: &str) {
    let ps = problems(src);
    assert_eq!(ps.len(), 1, "expected one problem, got {ps:#?}");
    assert!(ps[0].starts_with(&format!("{at}: ")), "expected the problem at {at}, got {:?}", ps[0]);
    assert!(ps[0].contains(needle), "expected {needle:?} in {:?}", ps[0]);
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn the_base_is_valid() {
    parse(BASE, "shipit.toml").unwrap();
}

#[test]
fn invalid_toml() {
    one("app = \"shop\"\n[services.api\nport = 1\n", "2:14", "invalid TOML");
    one("app = 'shop\n", "1:12", "invalid TOML");
}

#[test]
fn duplicate_keys_are_invalid_toml() {
    one(&BASE.replace("port = 4000", "port = 4000\nport = 4001"), "8:1", "invalid TOML");
}

#[test]
fn duplicate_service_tables() {
    one(&with("\n[services.api]\nport = 1\n"), "16:11", "invalid TOML: duplicate key");
}

#[test]
fn unknown_top_level_key_suggests() {
    one(&with("\n[enviroments.prod]\n"), "16:2", "did you mean `environments`?");
}

#[test]
fn unknown_service_key_suggests() {
    one(&BASE.replace("port = 4000", "prot = 4000\nport = 4000"), "7:1", "did you mean `port`?");
}

#[test]
fn unknown_key_in_inline_table() {
    one(
        &BASE.replace("{ path = \"/healthz\" }", "{ path = \"/healthz\", intervall = \"5s\" }"),
        "8:31",
        "did you mean `interval`?",
    );
}

#[test]
fn port_out_of_range() {
    one(&BASE.replace("port = 4000", "port = 70000"), "7:8", "a port number from 1 to 65535, found 70000");
    one(&BASE.replace("port = 4000", "port = 0"), "7:8", "from 1 to 65535, found 0");
}

#[test]
fn port_of_the_wrong_type() {
    one(
        &BASE.replace("port = 4000", "port = \"4000\""),
        "7:8",
        "must be a port number from 1 to 65535, found a string",
    );
}

#[test]
fn bad_durations() {
    one(
        &BASE.replace("{ path = \"/healthz\" }", "{ path = \"/healthz\", interval = \"30 seconds\" }"),
        "8:42",
        "must be a duration like \"30s\", \"500ms\" or \"1h30m\", found \"30 seconds\"",
    );
    one(
        &BASE.replace("{ path = \"/healthz\" }", "{ path = \"/healthz\", timeout = 5 }"),
        "8:41",
        "must be a duration like \"30s\"",
    );
    one(&BASE.replace("{ path = \"/healthz\" }", "{ path = \"/healthz\", grace = \"10\" }"), "8:39", "found \"10\"");
}

#[test]
fn timeout_longer_than_interval() {
    one(
        &BASE.replace("{ path = \"/healthz\" }", "{ path = \"/healthz\", interval = \"5s\", timeout = \"10s\" }"),
        "8:58",
        "must not be longer than the interval",
    );
}

#[test]
fn health_path_must_start_with_a_slash() {
    one(&BASE.replace("/healthz", "healthz"), "8:19", "must start with `/`");
}

#[test]
fn health_needs_a_port() {
    one(&BASE.replace("port = 4000\n", ""), "7:1", "needs a port");
}

#[test]
fn bad_app_name() {
    one(&BASE.replace("app = \"shop\"", "app = \"Shop_1\""), "1:7", "lowercase letters, digits and dashes");
    one(&BASE.replace("app = \"shop\"", "app = 5"), "1:7", "found an integer");
}

#[test]
fn missing_app() {
    one(&BASE.replace("app = \"shop\"\n", ""), "1:1", "missing `app");
}

#[test]
fn bad_service_name() {
    one(&BASE.replace("[services.api]", "[services.API]"), "6:11", "`services.API` must be lowercase");
}

#[test]
fn service_and_database_share_a_name() {
    one(&with("\n[services.db]\nimage = \"ghcr.io/acme/db\"\n"), "16:11", "both a service and a database");
}

#[test]
fn env_from_unknown_target_suggests() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv_from = { DATABASE_URL = \"dbb.connection_string\" }"),
        "8:29",
        "did you mean `db`?",
    );
}

#[test]
fn env_from_unknown_property() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv_from = { DATABASE_URL = \"db.connection_url\" }"),
        "8:29",
        "has no property \"connection_url\"",
    );
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv_from = { U = \"api.connection_string\" }"),
        "8:18",
        "a service has no property",
    );
}

#[test]
fn env_from_without_a_property() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv_from = { DATABASE_URL = \"db\" }"),
        "8:29",
        "must be `<database>.<property>`",
    );
}

#[test]
fn env_from_url_of_a_worker() {
    let src = with(
        "\n[services.worker]\nimage = \"ghcr.io/acme/w\"\n\n[services.web]\nport = 3000\nenv_from = { API = \"worker.url\" }\n",
    );
    one(&src, "21:20", "it is a worker with none");
}

#[test]
fn secret_looking_plain_values_are_refused() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv = { STRIPE_SECRET_KEY = \"sk_live_x\" }"),
        "8:9",
        "looks like a secret",
    );
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv = { DB_PASSWORD = \"hunter2\" }"),
        "8:9",
        "move DB_PASSWORD to `secrets",
    );
    one(&BASE.replace("port = 4000", "port = 4000\nenv = { GITHUB_TOKEN = \"x\" }"), "8:9", "looks like a secret");
}

#[test]
fn secret_marked_plain_is_allowed_but_marked_secret_is_not() {
    parse(
        &BASE.replace(
            "port = 4000",
            "port = 4000\nenv = { STRIPE_PUBLISHABLE_KEY = { value = \"pk_x\", secret = false } }",
        ),
        "t",
    )
    .unwrap();
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv = { K = { value = \"v\", secret = true } }"),
        "8:37",
        "marked secret but has its value",
    );
}

#[test]
fn bad_env_names() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv = { node_env = \"production\" }"),
        "8:9",
        "not a valid variable name",
    );
    one(&BASE.replace("port = 4000", "port = 4000\nsecrets = [\"1KEY\"]"), "8:12", "not a valid variable name");
}

#[test]
fn a_variable_defined_twice() {
    one(
        &BASE.replace(
            "port = 4000",
            "port = 4000\nenv = { API_SECRET = { value = \"x\", secret = false } }\nsecrets = [\"API_SECRET\"]",
        ),
        "9:12",
        "defined twice",
    );
}

#[test]
fn env_value_of_the_wrong_type() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nenv = { LIST = [1, 2] }"),
        "8:16",
        "must be a string, found an array",
    );
}

#[test]
fn secrets_must_be_strings() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nsecrets = [\"A_SECRET\", 5]"),
        "8:24",
        "found an integer in the array",
    );
}

#[test]
fn scale_min_above_max() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nscale = { min = 4, max = 2 }"),
        "8:17",
        "must not be greater than `max`",
    );
}

#[test]
fn vm_values_must_be_positive() {
    one(&BASE.replace("port = 4000", "port = 4000\nvm = { cpus = 0 }"), "8:15", "a positive number of CPUs");
    one(&BASE.replace("port = 4000", "port = 4000\nvm = { memory_mb = -512 }"), "8:20", "a positive amount of memory");
    one(
        &BASE.replace("port = 4000", "port = 4000\nvm = { cpu_kind = \"dedicated\" }"),
        "8:19",
        "one of `shared`, `performance`",
    );
}

#[test]
fn restart_policy_choice_suggests() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nrestart = { policy = \"on_failure\" }"),
        "8:22",
        "did you mean \"on-failure\"?",
    );
    one(
        &BASE.replace("port = 4000", "port = 4000\nrestart = { policy = \"always\", retries = 3 }"),
        "8:32",
        "applies only to policy \"on-failure\"",
    );
}

#[test]
fn image_with_a_tag_or_invalid() {
    one(
        &BASE.replace("port = 4000", "port = 4000\nimage = \"ghcr.io/acme/api:latest\""),
        "8:9",
        "the tag comes from `shipit deploy --tag`",
    );
    one(
        &BASE.replace("port = 4000", "port = 4000\nimage = \"ghcr.io/Acme/API\""),
        "8:9",
        "not a valid image reference",
    );
}

#[test]
fn image_cannot_be_derived_without_a_namespace() {
    one(&BASE.replace("[registry]\nnamespace = \"acme\"\n", ""), "4:11", "has no `image`");
}

#[test]
fn command_must_be_an_array_of_strings() {
    one(&BASE.replace("port = 4000", "port = 4000\ncommand = \"node index.js\""), "8:11", "an array of strings");
    one(&BASE.replace("port = 4000", "port = 4000\ncommand = []"), "8:11", "must not be empty");
}

#[test]
fn database_engine_unknown_or_missing() {
    one(&BASE.replace("engine = \"postgres\"", "engine = \"mysql\""), "11:10", "one of `postgres`, `redis`");
    one(&BASE.replace("engine = \"postgres\"", "version = \"16\""), "10:12", "needs `engine");
}

#[test]
fn environment_target_unknown_suggests() {
    one(&BASE.replace("target = \"fly\"", "target = \"flyio\""), "14:10", "did you mean \"fly\"?");
}

#[test]
fn no_environments() {
    one(&BASE.replace("[environments.staging]\ntarget = \"fly\"\n", ""), "1:1", "declare at least one environment");
}

#[test]
fn override_of_an_unknown_service_suggests() {
    one(&with("services.apii.scale = { min = 2 }\n"), "15:10", "did you mean `api`?");
}

#[test]
fn override_is_reported_where_it_was_written() {
    one(&with("services.api.port = 99999\n"), "15:21", "found 99999");
    one(&with("services.api.scale = { min = 3, max = 1 }\n"), "15:30", "must not be greater than `max`");
}

#[test]
fn bad_regions() {
    one(&with("regions = [\"iad\", \"iad\"]\n"), "15:19", "listed twice");
    one(&with("regions = [\"Frankfurt\"]\n"), "15:12", "not a region name");
}

#[test]
fn name_template_problems() {
    one(&with("\n[targets.fly]\nname_template = \"{app}-{svc}\"\n"), "17:17", "unknown placeholder {svc}");
    one(&with("\n[targets.fly]\nname_template = \"{app}-{env}\"\n"), "17:17", "must contain {service}");
    let ps = problems(&with("\n[targets.fly]\nname_template = \"{service}_{env}\"\n"));
    assert_eq!(ps.len(), 2, "{ps:#?}");
    assert!(ps[0].starts_with("17:17: the fly name of `api` in `staging` would be \"api_staging\""), "{ps:#?}");
    assert!(ps[1].contains("`db` in `staging` would be \"db_staging\""), "{ps:#?}");
}

#[test]
fn unknown_target_table_suggests() {
    one(&with("\n[targets.rendr]\nregion = \"oregon\"\n"), "16:10", "did you mean `render`?");
}

#[test]
fn render_plan_for_an_unknown_service() {
    one(&with("\n[targets.render.services.ap]\nplan = \"pro\"\n"), "16:26", "did you mean `api`?");
}

#[test]
fn a_table_where_a_value_is_expected() {
    one(&with("\n[services.api.env_from]\nX = 5\n"), "17:5", "must be a string like \"db.connection_string\"");
    one(&with("\n[registry.namespace]\nx = 1\n"), "16:11", "invalid TOML: duplicate key");
}

#[test]
fn every_problem_is_reported_at_once() {
    let src = BASE
        .replace("port = 4000", "port = 0\nprot = 1\nenv = { API_TOKEN = \"t\" }")
        .replace("engine = \"postgres\"", "engine = \"mysql\"");
    let ps = problems(&src);
    assert_eq!(ps.len(), 4, "{ps:#?}");
    let lines: Vec<&str> = ps.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(lines, ["7", "8", "9", "13"]);
}

#[test]
fn display_names_the_file() {
    let err = parse(&BASE.replace("port = 4000", "port = 70000"), "deploy/shipit.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "deploy/shipit.toml:7:8: `services.api.port` must be a port number from 1 to 65535, found 70000"
    );
}

#[test]
fn garbage_never_panics() {
    let samples = [
        "",
        "\0",
        "[[services]]\nx=1",
        "services = 5",
        "environments = []",
        "app = \"a\"\n[services]\napi = 1",
        "app=\"a\"\n[services.a]\nhealth = 5\nscale = \"x\"\nvm = []\nrestart = 1\nbuild = 3\nenv = 4\nenv_from = 1\nsecrets = {}",
        "app=\"a\"\n[environments.x]\nservices = 1\n[targets]\nfly = 1",
        "app = \"a\"\n[environments.e]\nservices.x = 1",
    ];
    for s in samples {
        let _ = parse(s, "shipit.toml");
    }
    // every prefix of the base manifest
    for i in 0..BASE.len() {
        let _ = parse(&BASE[..i], "shipit.toml");
    }
}
