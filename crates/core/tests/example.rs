//! The reference app parses, and environment overrides merge over the base.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use shipit_core::*;

#[test]
fn reference_app_parses_with_overrides_merged() {
    let app = load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/forgestack/shipit.toml")))
        .unwrap();
    assert_eq!(app.name, "forgestack");
    assert_eq!(app.services.keys().collect::<Vec<_>>(), ["api", "worker", "web"]);
    let prod = app.environment("production").unwrap();
    let api = &prod.services["api"];
    assert_eq!((api.scale.min, api.scale.max, api.scale.auto_stop), (2, 6, true));
    assert_eq!(app.environment("staging").unwrap().services["api"].scale.min, 1);
    assert_eq!(prod.regions, ["iad", "fra"]);
    assert_eq!(api.env["BETTER_AUTH_SECRET"], EnvValue::Secret);
    assert!(
        matches!(&api.env["DATABASE_URL"], EnvValue::From(r) if r.target == "db" && r.property == Property::ConnectionString)
    );
    assert_eq!(app.services["worker"].port, None);
    assert_eq!(app.platform_name(PlatformKind::Fly, "api", "staging"), "forgestack-api-staging");
}
