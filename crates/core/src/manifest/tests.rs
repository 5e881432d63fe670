//! Every problem in one pass, and places for key paths.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::key_path;

const BASE: &str = r#"app = "shop"
[registry]
namespace = "acme"
[services.api]
port = 4000  # EXPOSE 4000 in apps/api/Dockerfile
env_from = { DATABASE_URL = "db.connection_string" }
[databases.db]
engine = "postgres"
[environments.staging]
target = "fly"
regions = ["iad", "fra"]
[environments.production]
target = "fly"
services.api.port = 5000
"#;

fn problems(source: &str) -> Vec<String> {
    match parse(source, "shipit.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| format!("{}:{}: {}", p.line, p.column, p.message)).collect(),
    }
}

#[test]
fn type_errors_and_reference_errors_come_together() {
    let src = r#"app = "shop"
[registry]
namespace = "acme"
[services.api]
port = "4000"
env_from = { DATABASE_URL = "dbb.connection_string" }
[environments.staging]
target = "flyy"
regions = "iad"
strategy = "sometimes"
services.api.port = "x"
services.web.port = 1
"#;
    let all = problems(src);
    let has = |needle: &str| all.iter().any(|p| p.contains(needle));
    assert!(has("5:8: `services.api.port` must be"), "{all:#?}");
    assert!(has("6:29: `services.api.env_from.DATABASE_URL` refers to \"dbb\""), "{all:#?}");
    assert!(has("8:10: `environments.staging.target`"), "{all:#?}");
    assert!(has("9:11: `environments.staging.regions` must be"), "{all:#?}");
    assert!(has("10:12: `environments.staging.strategy`"), "{all:#?}");
    // The overrides are checked although target, regions and strategy are wrong.
    assert!(has("11:21: `services.api.port` must be"), "{all:#?}");
    assert!(has("`environments.staging.services.web` overrides a service that does not exist"), "{all:#?}");
}

#[test]
fn a_database_with_a_bad_engine_still_counts_for_references() {
    let src = BASE.replace("engine = \"postgres\"", "engine = \"postgress\"");
    let all = problems(&src);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(all[0].starts_with("8:10: `databases.db.engine` must be one of"), "{all:#?}");
    let src = BASE.replace("engine = \"postgres\"", "engine = 5");
    let all = problems(&src);
    assert_eq!(all.len(), 1, "{all:#?}");
    // Not a table at all: still a database name, not "neither a database nor a service".
    let src = BASE.replace("[databases.db]\nengine = \"postgres\"", "[databases]\ndb = \"postgres\"");
    let all = problems(&src);
    assert!(all.iter().all(|p| !p.contains("neither")), "{all:#?}");
    assert_eq!(all.len(), 1, "{all:#?}");
}

#[test]
fn key_paths_get_the_place_they_are_written() {
    let (_, m) = parse_located(BASE, "shipit.toml").unwrap();
    let at = |path: KeyPath| m.line_col(m.span(&path).start);
    assert_eq!(at(key_path!["environments", "staging", "regions", 1]), (11, 19));
    assert_eq!(at(key_path!["environments", "staging", "regions"]), (11, 11));
    // A key the manifest lacks: its longest prefix that it has.
    assert_eq!(at(key_path!["environments", "production", "regions"]), (12, 15));
    assert_eq!(at(key_path!["environments", "production", "services", "api", "port"]), (14, 21));
    assert_eq!(at(key_path!["nothing", "here"]), (1, 1));
    let (port, health) = (key_path!["services", "api", "port"], key_path!["services", "api", "health"]);
    assert!(m.has(&port) && !m.has(&health));
    assert_eq!(m.comment_after(&port), Some("EXPOSE 4000 in apps/api/Dockerfile"));
    let over = key_path!["environments", "production", "services", "api", "port"];
    assert_eq!(m.comment_after(&over), None);
    assert_eq!(m.comment_after(&port[..2]), None);

    let f = Finding::error(key_path!["environments", "staging", "regions", 0], "no such region").with_help("h");
    let p = m.problem(&f, None);
    assert_eq!((p.line, p.column, p.message.as_str(), p.help.as_deref()), (11, 12, "no such region", Some("h")));
    let errors = m.errors(vec![p.clone(), p]);
    assert_eq!(errors.problems.len(), 1);
    assert_eq!(errors.file, "shipit.toml");
}
