//! "did you mean": the closest known name to one that is not known, when it is a likely typo.

/// How alike two names must be (Jaro-Winkler, 0 to 1) for one to be suggested for the other:
/// catches dropped letters and prefixes (`prodution`, `prod` for `production`).
const THRESHOLD: f64 = 0.8;

/// The name of `known` closest to `word`, when it is close enough to be what was meant: alike
/// by Jaro-Winkler, or a few edits away (swapped letters, `wbe` for `web`, which Jaro-Winkler
/// scores low in short names). The fewest edits win, then the most alike.
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let max_edits = (word.chars().count() / 3).max(1);
    known
        .into_iter()
        .filter_map(|k| {
            let k_lower = k.to_lowercase();
            let edits = strsim::damerau_levenshtein(&word, &k_lower);
            let alike = strsim::jaro_winkler(&word, &k_lower);
            (edits <= max_edits || alike >= THRESHOLD).then_some((edits, alike, k))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, k)| k)
}

/// ` — did you mean "x"?` when a known name is close to `word`, else nothing.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, known).map(|k| format!(" — did you mean {k:?}?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_name_it_is_closest_to() {
        let envs = ["staging", "production"];
        assert_eq!(closest("prodution", envs), Some("production"));
        assert_eq!(closest("stagign", envs), Some("staging"));
        assert_eq!(closest("Production", envs), Some("production"));
        assert_eq!(closest("prod", envs), Some("production"));
        assert_eq!(closest("wbe", ["api", "worker", "web"]), Some("web"));
        assert_eq!(closest("work", ["api", "worker", "web"]), Some("worker"));
        assert_eq!(did_you_mean("prodution", envs), " — did you mean \"production\"?");
    }

    #[test]
    fn a_name_like_none_gets_no_suggestion() {
        assert_eq!(closest("qa", ["staging", "production"]), None);
        assert_eq!(did_you_mean("xyz", ["api", "web"]), "");
        assert_eq!(closest("db", ["api", "web"]), None);
        assert_eq!(closest("api", std::iter::empty()), None);
    }
}
