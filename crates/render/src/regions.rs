//! Render's regions: the one table that deploys, `render` and `validate` check against.
//!
//! Both of Render's published descriptions give the full list: the public API's `region` enum
//! (`../shared/reference/render/render-public-api-1.json`, `components.schemas.region`) and the
//! Blueprint schema's (`render.yaml.schema.json`, `$defs.region`), the same five names.

/// Render's regions, as both the Blueprint and the API spell them.
pub const REGIONS: &[&str] = &["oregon", "ohio", "frankfurt", "singapore", "virginia"];

/// The region used when neither the target nor the environment names one (the API's default).
pub const DEFAULT_REGION: &str = "oregon";

/// Whether `region` is one of Render's.
pub fn is_region(region: &str) -> bool {
    REGIONS.contains(&region)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// The table is the published API's enum, name for name.
    #[test]
    fn the_table_is_the_published_enum() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/reference/render/render-public-api-1.json");
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut published: Vec<&str> = spec["components"]["schemas"]["region"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut ours = REGIONS.to_vec();
        published.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, published);
        assert!(is_region(DEFAULT_REGION));
    }
}
