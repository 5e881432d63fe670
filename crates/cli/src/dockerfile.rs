//! The few Dockerfile instructions `shipit init` reads: EXPOSE, HEALTHCHECK, CMD and USER.
//!
//! Only the final stage counts (a multi-stage build's runtime image is its last `FROM`). Line
//! continuations and comments are handled; anything else is ignored. This is not a Dockerfile
//! parser, just enough to draft a manifest that the user then reviews.

/// What a Dockerfile says about the image it builds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DockerfileFacts {
    /// The first numeric port of the last EXPOSE.
    pub port: Option<u16>,
    /// Path of the URL in the HEALTHCHECK command.
    pub health_path: Option<String>,
    /// HEALTHCHECK `--interval`, `--timeout` and `--start-period`, as written.
    pub health_interval: Option<String>,
    /// See `health_interval`.
    pub health_timeout: Option<String>,
    /// See `health_interval`.
    pub health_start_period: Option<String>,
    /// CMD in exec form (a shell-form CMD becomes `sh -c "…"`).
    pub cmd: Option<Vec<String>>,
    /// The last USER.
    pub user: Option<String>,
}

/// Reads the facts from a Dockerfile's text.
pub fn read(text: &str) -> DockerfileFacts {
    let mut facts = DockerfileFacts::default();
    for line in logical_lines(text) {
        let (instr, rest) = match line.split_once(char::is_whitespace) {
            Some((i, r)) => (i.to_ascii_uppercase(), r.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        match instr.as_str() {
            "FROM" => facts = DockerfileFacts::default(),
            "EXPOSE" => {
                facts.port = rest
                    .split_whitespace()
                    .filter_map(|p| p.split('/').next())
                    .find_map(|p| p.parse::<u16>().ok().filter(|p| *p > 0));
            }
            "CMD" => facts.cmd = Some(parse_cmd(rest)),
            "USER" => facts.user = rest.split_whitespace().next().map(str::to_string),
            "HEALTHCHECK" => read_healthcheck(rest, &mut facts),
            _ => {}
        }
    }
    facts
}

fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') && current.is_empty() || line.is_empty() && current.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

fn parse_cmd(rest: &str) -> Vec<String> {
    if rest.starts_with('[')
        && let Ok(parts) = serde_json::from_str::<Vec<String>>(rest)
    {
        return parts;
    }
    vec!["sh".to_string(), "-c".to_string(), rest.to_string()]
}

fn read_healthcheck(rest: &str, facts: &mut DockerfileFacts) {
    facts.health_path = None;
    let mut words = rest.split_whitespace().peekable();
    while let Some(w) = words.peek() {
        let Some(opt) = w.strip_prefix("--") else { break };
        if let Some((k, v)) = opt.split_once('=') {
            let v = Some(v.to_string());
            match k {
                "interval" => facts.health_interval = v,
                "timeout" => facts.health_timeout = v,
                "start-period" => facts.health_start_period = v,
                _ => {}
            }
        }
        words.next();
    }
    let command: Vec<&str> = words.collect();
    if command.first().is_some_and(|w| w.eq_ignore_ascii_case("NONE")) {
        return;
    }
    let joined = command.join(" ");
    facts.health_path = url_path(&joined);
}

/// The path of the first `http://` or `https://` URL in `s`.
fn url_path(s: &str) -> Option<String> {
    let start = s.find("http://").map(|i| i + 7).or_else(|| s.find("https://").map(|i| i + 8))?;
    let url = &s[start..];
    let end = url
        .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ']' | ')' | '|' | ';' | '&'))
        .unwrap_or(url.len());
    let authority_and_path = &url[..end];
    let path = match authority_and_path.find('/') {
        Some(i) => &authority_and_path[i..],
        None => "/",
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    Some(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_stage() {
        let f = read(
            "FROM node:20 AS build\nEXPOSE 9999\nCMD [\"npm\", \"run\", \"build\"]\n\
             FROM node:20-alpine\nUSER node\nEXPOSE 4000/tcp 9229\n\
             HEALTHCHECK --interval=30s --timeout=5s \\\n  CMD wget -qO- http://localhost:4000/api/health || exit 1\n\
             CMD [\"node\", \"dist/server.js\"]\n",
        );
        assert_eq!(f.port, Some(4000));
        assert_eq!(f.health_path.as_deref(), Some("/api/health"));
        assert_eq!(f.health_interval.as_deref(), Some("30s"));
        assert_eq!(f.health_timeout.as_deref(), Some("5s"));
        assert_eq!(f.cmd, Some(vec!["node".to_string(), "dist/server.js".to_string()]));
        assert_eq!(f.user.as_deref(), Some("node"));
    }

    #[test]
    fn shell_form_and_none() {
        let f = read("FROM x\n# comment\ncmd node index.js\nHEALTHCHECK NONE\nexpose $PORT\n");
        assert_eq!(f.cmd, Some(vec!["sh".into(), "-c".into(), "node index.js".into()]));
        assert_eq!(f.health_path, None);
        assert_eq!(f.port, None);
    }

    #[test]
    fn url_paths() {
        assert_eq!(url_path("curl -f http://127.0.0.1:3000/healthz?x=1").as_deref(), Some("/healthz"));
        assert_eq!(url_path("[\"CMD\", \"curl\", \"https://localhost\"]").as_deref(), Some("/"));
        assert_eq!(url_path("pg_isready"), None);
    }
}
