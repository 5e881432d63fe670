//! Bad input of any size (issue 8): every manifest gets an answer with a line and column,
//! quickly, and no snippet source repeats a secret. Each test here reproduced a defect.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use shipit_core::manifest::{
    LoadError, MAX_COMPONENTS, MAX_ENVIRONMENTS, MAX_MANIFEST_BYTES, MAX_OVERRIDDEN_VALUES, MAX_PROBLEMS,
};
use shipit_core::{ManifestErrors, parse};

/// A small valid manifest (the same as in invalid.rs).
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

/// Generous for a debug build on a busy 2-core machine; the defects took minutes.
const QUICK: Duration = Duration::from_secs(5);

/// Parses `src` expecting problems, and checks that it took less than [`QUICK`].
#[track_caller]
fn errors(src: &str) -> ManifestErrors {
    let start = Instant::now();
    let result = parse(src, "shipit.toml");
    let took = start.elapsed();
    assert!(took < QUICK, "took {took:?} for {} bytes", src.len());
    match result {
        Ok(_) => panic!("expected problems"),
        Err(e) => e,
    }
}

/// Parses `src` expecting success (printing only the first problems otherwise), in less than
/// [`QUICK`].
#[track_caller]
fn app(src: &str) -> shipit_core::App {
    let start = Instant::now();
    let result = parse(src, "shipit.toml");
    let took = start.elapsed();
    assert!(took < QUICK, "took {took:?} for {} bytes", src.len());
    match result {
        Ok(app) => app,
        Err(e) => panic!("unexpected problems: {:#?}", &messages(&e)[..e.problems.len().min(5)]),
    }
}

fn messages(e: &ManifestErrors) -> Vec<String> {
    e.problems.iter().map(|p| format!("{}:{}: {}", p.line, p.column, p.message)).collect()
}

#[test]
fn duplicate_regions_are_reported_once_per_value_in_linear_time() {
    // 8,000 duplicates took 166 s: each problem was compared with every earlier one, and each
    // position was counted from the start of the file.
    let mut items = vec!["\"iad\""; 8000];
    items.extend(vec!["\"fra\""; 3]);
    let src = format!("{BASE}regions = [{}]\n", items.join(", "));
    let e = errors(&src);
    let ms = messages(&e);
    assert_eq!(ms.len(), 2, "{ms:#?}");
    assert_eq!(
        ms[0],
        "15:19: `environments.staging.regions`: \"iad\" is listed 8000 times (first at line 15, column 12)"
    );
    assert!(ms[1].contains("\"fra\" is listed 3 times (first at line 15, column 56012)"), "{ms:#?}");
}

#[test]
fn bad_regions_are_reported_once_per_value() {
    let items = vec!["\"Frankfurt\""; 5000].join(", ");
    let e = errors(&format!("{BASE}regions = [{items}]\n"));
    assert_eq!(
        messages(&e),
        [
            "15:12: `environments.staging.regions`: \"Frankfurt\" is not a region name (lowercase letters, digits, dashes)"
        ]
    );
}

#[test]
fn a_variable_defined_many_times_is_reported_once() {
    let secrets = vec!["\"A_SECRET\""; 5000].join(", ");
    let bad = vec!["\"1BAD\""; 5000].join(", ");
    let src = BASE.replace(
        "port = 4000",
        &format!(
            "port = 4000\nenv = {{ A_SECRET = {{ value = \"x\", secret = false }} }}\nsecrets = [{secrets}, {bad}]"
        ),
    );
    let ms = messages(&errors(&src));
    assert_eq!(ms.len(), 2, "{ms:#?}");
    assert!(
        ms[0].starts_with("9:12: `services.api.secrets`: A_SECRET is defined 5001 times (in `env`, `secrets` or `env_from`; first at line 8, column 9)"),
        "{ms:#?}"
    );
    assert!(ms[1].contains("\"1BAD\" is not a valid variable name"), "{ms:#?}");
}

/// `n` services, each with variables and references to the previous one and to the database.
fn many_services(n: usize) -> String {
    let mut src =
        String::from("app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[databases.db]\nengine = \"postgres\"\n");
    for i in 0..n {
        src.push_str(&format!(
            "[services.s{i}]\nport = 80\nenv = {{ A = \"1\", B = \"2\" }}\nsecrets = [\"S_SECRET\"]\nenv_from = {{ DB = \"db.connection_string\", UP = \"{}\" }}\n",
            if i == 0 { "db.host".to_string() } else { format!("s{}.url", i - 1) }
        ));
    }
    src
}

#[test]
fn the_most_services_in_the_most_environments_are_read_quickly() {
    let n = MAX_COMPONENTS - 1;
    let mut src = many_services(n);
    for e in 0..MAX_ENVIRONMENTS {
        // two environments override every service
        src.push_str(&format!("[environments.e{e}]\ntarget = \"fly\"\n"));
        if e % 50 == 0 {
            for i in 0..n {
                src.push_str(&format!("services.s{i}.scale = {{ min = 2 }}\n"));
            }
        }
    }
    assert!(src.len() < MAX_MANIFEST_BYTES as usize, "{}", src.len());
    let app = app(&src);
    assert_eq!(app.environments.len(), MAX_ENVIRONMENTS);
    assert_eq!(app.environments["e50"].services["s7"].scale.min, 2);
    assert_eq!(app.environments["e51"].services["s7"].scale.min, 1);
}

#[test]
fn too_many_services_or_environments_are_refused_where_the_first_extra_one_is() {
    let e = errors(&format!("{}[environments.staging]\n", many_services(MAX_COMPONENTS)));
    let ms = messages(&e);
    assert_eq!(ms.len(), 1, "{:#?}", &ms[..ms.len().min(5)]);
    assert!(ms[0].contains(&format!("too many services and databases: {}", MAX_COMPONENTS + 1)), "{ms:#?}");
    assert!(ms[0].starts_with(&format!("{}:11: ", 6 + 5 * (MAX_COMPONENTS - 1))), "{ms:#?}");

    let envs: String = (0..=MAX_ENVIRONMENTS).map(|i| format!("[environments.e{i}]\n")).collect();
    let ms = messages(&errors(&format!("{}{envs}", BASE.replace("[environments.staging]\ntarget = \"fly\"\n", ""))));
    assert_eq!(
        ms,
        [format!("{}:15: too many environments: 101; a manifest may declare at most 100", 13 + MAX_ENVIRONMENTS)]
    );
}

#[test]
fn many_unknown_overrides_and_keys_with_suggestions_stay_quick() {
    // "did you mean" compared every unknown name with every known one.
    let services = many_services(MAX_COMPONENTS - 1);
    let overrides: String = (0..20_000).map(|i| format!("services.x{i}.port = 1\n")).collect();
    let e = errors(&format!("{services}[environments.staging]\n{overrides}"));
    assert_eq!(e.problems.len(), MAX_PROBLEMS + 1);
    let m = &e.problems[0].message;
    assert!(m.contains("overrides a service that does not exist (services: `s0`, `s1`"), "{m}");
    assert!(m.contains(" and 979 more)"), "{m}");

    let plans: String = (0..5_000).map(|i| format!("r{i} = {{ plan = \"pro\" }}\n")).collect();
    let e = errors(&format!("{services}[environments.staging]\n[targets.render.services]\n{plans}"));
    assert_eq!(e.problems.len(), MAX_PROBLEMS + 1);
    assert!(e.problems[0].message.contains("names a service that does not exist"), "{}", e.problems[0].message);
}

#[test]
fn too_many_problems_are_cut_with_a_last_one_saying_so() {
    let items = vec!["1"; 50_000].join(", ");
    let e = errors(&format!("{BASE}regions = [{items}]\n"));
    assert_eq!(e.problems.len(), MAX_PROBLEMS + 1);
    let last = e.problems.last().unwrap();
    assert_eq!(last.message, format!("too many problems: only the first {MAX_PROBLEMS} are reported"));
    assert!(last.line >= 1 && last.column >= 1);
}

#[test]
fn overriding_a_large_service_in_many_environments_is_bounded() {
    // Each override checked the whole merged service again: 100 environments overriding one
    // port of a service with 20,000 variables took 25 s.
    let vars: String = (0..20_000).map(|i| format!("V{i} = \"{i}\"\n")).collect();
    let envs: String = (0..100).map(|e| format!("[environments.e{e}]\nservices.api.port = {}\n", e + 1)).collect();
    let src = format!(
        "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n{envs}[services.api]\nport = 1\n[services.api.env]\n{vars}"
    );
    let ms = messages(&errors(&src));
    assert_eq!(ms.len(), 1, "{ms:#?}");
    let third = 4 + 2 * 2 + 1; // e2's override: 2 × 20,003 values fit, the third does not
    assert!(
        ms[0].starts_with(&format!("{third}:10: `environments.e2.services.api`: too many overridden values")),
        "{ms:#?}"
    );
    assert!(ms[0].contains(&format!("at most {MAX_OVERRIDDEN_VALUES} values")), "{ms:#?}");
}

#[test]
fn merging_large_tables_is_linear() {
    let vars: String = (0..10_000).map(|i| format!("V{i} = \"{i}\"\n")).collect();
    let over: String = (0..10_000).map(|i| format!("services.api.env.V{i} = \"x\"\n")).collect();
    let src = format!(
        "{}[services.api.env]\n{vars}",
        BASE.replace("[environments.staging]\ntarget = \"fly\"\n", &format!("[environments.staging]\n{over}"))
    );
    let app = app(&src);
    assert_eq!(app.environments["staging"].services["api"].env.len(), 10_000);
}

#[test]
fn long_names_give_short_messages() {
    let key = "k".repeat(200_000);
    let e = errors(&format!(
        "{BASE}\n[services.api.env]\n{key} = 1\n[targets.fly]\nname_template = \"{{service}}{}\"\n",
        "-x".repeat(200)
    ));
    assert!(
        e.problems.iter().all(|p| p.message.len() < 1100),
        "{:?}",
        e.problems.iter().map(|p| p.message.len()).collect::<Vec<_>>()
    );
    assert!(e.problems.iter().any(|p| p.message.contains("`targets.fly.name_template` is too long")));
}

#[test]
fn control_characters_in_messages_are_escaped() {
    let e = errors(&format!("{BASE}\"\\u001b[2J\\u202e\" = 1\n"));
    let m = &e.problems[0].message;
    assert!(m.contains("\\u{1b}[2J\\u{202e}"), "{m}");
    assert!(!m.contains('\u{1b}') && !m.contains('\u{202e}'), "{m}");
}

#[test]
fn a_problem_past_column_65536_has_its_column() {
    let e = errors(&format!("{BASE}{}bogus = 1\n", " ".repeat(70_000)));
    assert_eq!(
        messages(&e)[0],
        "15:70001: unknown key `bogus` in `environments.staging`; expected one of `target`, `regions`, `strategy`, `services`"
    );
}

#[test]
fn invalid_utf8_is_reported_at_the_first_bad_byte() {
    let mut bytes = BASE.replace("acme", "äcme").into_bytes();
    let at = BASE.find("acme").unwrap() + 3; // after "äc" (ä is 2 bytes)
    bytes.insert(at, 0xff);
    let Err(LoadError::Invalid(e)) = shipit_core::manifest::parse_bytes(&bytes, "shipit.toml") else {
        panic!("expected a positioned problem")
    };
    assert_eq!(messages(&e), ["4:16: the manifest is not valid UTF-8 (byte 0xFF): save it as UTF-8"]);
    assert_eq!(e.source_text.get(e.problems[0].span.clone()), Some("\u{FFFD}"));

    // a sequence cut short by the end of the file
    let mut bytes = b"app = \"shop\"\n# caf".to_vec();
    bytes.push(0xc3);
    let Err(LoadError::Invalid(e)) = shipit_core::manifest::parse_bytes(&bytes, "shipit.toml") else { panic!() };
    assert_eq!((e.problems[0].line, e.problems[0].column), (2, 6));
}

#[test]
fn load_refuses_a_file_over_the_limit_before_parsing() {
    let dir = std::env::temp_dir().join(format!("shipit-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shipit.toml");
    let mut text = BASE.to_string();
    text.push_str(&"#".repeat(MAX_MANIFEST_BYTES as usize - text.len()));
    std::fs::write(&path, &text).unwrap();
    shipit_core::load(&path).unwrap();

    text.push('#');
    std::fs::write(&path, &text).unwrap();
    let err = shipit_core::load(&path).unwrap_err();
    assert!(matches!(err, LoadError::TooLarge { size: Some(n), .. } if n == MAX_MANIFEST_BYTES + 1), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{} is 1 MiB (1048577 bytes): a manifest may be at most 1 MiB (1048576 bytes)", path.display())
    );
    let err = shipit_core::manifest::parse_bytes(&vec![b'#'; 3 << 20], "big.toml").unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(err.to_string(), "big.toml is 3 MiB (3145728 bytes): a manifest may be at most 1 MiB (1048576 bytes)");
}

#[test]
fn secret_values_are_masked_in_the_source_for_snippets() {
    let src = BASE
        .replace(
            "port = 4000",
            "port = 4000\nenv = { API_TOKEN = \"tok-123456\", K = { value = \"v-123456\", secret = true }, NEXT_PUBLIC_X_KEY = { value = \"pk-public\", secret = false } }\nenv_from = { DB_PASSWORD = \"pw-123456\" }",
        )
        .replace("target = \"fly\"", "target = \"fly\"\nservices.api.env.OTHER_SECRET = \"over-123456\"");
    let e = errors(&src);
    assert_eq!(e.source_text.len(), src.len(), "masking keeps every offset");
    for secret in ["tok-123456", "v-123456", "pw-123456", "over-123456"] {
        assert!(src.contains(secret));
        assert!(!e.source_text.contains(secret), "{secret} in {}", e.source_text);
        assert!(!e.to_string().contains(secret), "{secret} in {e}");
    }
    assert!(e.source_text.contains("API_TOKEN = \"**********\""), "{}", e.source_text);
    assert!(e.source_text.contains("pk-public"), "a value marked public stays");
    assert!(e.to_string().contains("DB_PASSWORD"), "{e}");

    // TOML that does not parse: the values are found without the tree
    let src = "app = \"shop\"\n[services.api.env]\nSTRIPE_SECRET_KEY = \"sk_live_123456\"\n[[oops\n";
    let e = errors(src);
    assert!(e.problems[0].message.contains("invalid TOML"), "{e}");
    assert!(!e.source_text.contains("sk_live_123456"), "{}", e.source_text);
}
