//! Railway's regions: the one table that deploys, `render` and `validate` check against.
//!
//! Railway's GraphQL schema (`../shared/reference/railway/schema.json`) has no list: regions
//! are data, read at run time with the `regions` query (`Region { name, region, location }`), and
//! the schema's descriptions name only `us-west2` and `us-east4-eqdc4a` as examples. The other
//! two ids are the ones shipit's deploys already used (Railway's documented regions: US West,
//! US East, EU West, Southeast Asia); a region Railway adds later is refused until it is added
//! here.

/// Railway's regions, as its API spells them.
pub const REGIONS: &[&str] = &["us-west2", "us-east4-eqdc4a", "europe-west4-drams3a", "asia-southeast1-eqsg3a"];

/// Railway's default region, used when neither the environment nor `[targets.railway] region`
/// names one.
pub const DEFAULT_REGION: &str = "us-west2";

/// Whether `region` is one of Railway's.
pub fn is_region(region: &str) -> bool {
    REGIONS.contains(&region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_a_region() {
        assert!(is_region(DEFAULT_REGION) && !is_region("iad"));
    }
}
