//! Fly.io's regions: the one table that `validate` checks a manifest against.
//!
//! The Machines API descriptions in `../shared/reference` (the 2023 OpenAPI and the 2024
//! Swagger copy) have no list of regions: `region` is a free string there ("omitting this
//! param launches in the same region as your WireGuard peer connection"), and the live list
//! comes from `fly platform regions`. This table is the list Fly published on its regions page
//! (fly.io/docs/reference/regions) in 2026, after it consolidated its regions; a region Fly
//! adds later is refused by `validate` until it is added here.

/// Fly's region codes, sorted.
pub const REGIONS: &[&str] = &[
    "ams", "arn", "bom", "cdg", "dfw", "ewr", "fra", "gru", "iad", "jnb", "lax", "lhr", "nrt", "ord", "sin", "sjc",
    "syd", "yyz",
];

/// Whether `region` is one of Fly's.
pub fn is_region(region: &str) -> bool {
    REGIONS.contains(&region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_has_the_usual_regions() {
        assert!(REGIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_region("iad") && is_region("fra") && !is_region("iadd") && !is_region("IAD"));
    }
}
