//! Commands as one shell line, for platforms that take a string (`fly.toml [processes]`,
//! Render's `dockerCommand`, Railway's `startCommand`).

/// Joins `args` into a line that a POSIX shell splits back into the same arguments: an
/// argument with anything but safe characters is single-quoted.
pub fn join(args: &[String]) -> String {
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// Quotes one argument when it needs it.
pub fn quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) { arg.to_string() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_only_what_needs_it() {
        let args = ["node", "dist/index.js", "--name=a b", "", "it's"].map(String::from);
        assert_eq!(super::join(&args), r#"node dist/index.js '--name=a b' '' 'it'\''s'"#);
    }
}
