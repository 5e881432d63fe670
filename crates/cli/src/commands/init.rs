//! `shipit init`: draft a shipit.toml, from the Dockerfiles when asked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, InitArgs};
use crate::diagnostics;
use crate::dockerfile::{self, DockerfileFacts};
use crate::exit::Exit;

struct Found {
    name: String,
    context: String,
    dockerfile: String,
    facts: DockerfileFacts,
}

/// Writes the manifest named by `-f`; never replaces one without `--force`.
pub fn run(cli: &Cli, args: &InitArgs) -> Exit {
    let path = &cli.file;
    if path.exists() && !args.force {
        diagnostics::error(
            cli,
            &format!("{} already exists; nothing was written", path.display()),
            Some("pass --force to replace it"),
        );
        return Exit::BadInput;
    }
    let root = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let app = match args.app.clone().or_else(|| dir_name(&root)).map(|n| sanitize(&n)) {
        Some(name) if shipit_core::model::is_valid_name(&name) => name,
        other => {
            diagnostics::error(
                cli,
                &format!("cannot derive an app name from the directory ({other:?})"),
                Some("pass --app NAME"),
            );
            return Exit::BadInput;
        }
    };
    let namespace = args
        .namespace
        .clone()
        .or_else(|| github_owner(&root))
        .unwrap_or_else(|| "owner".to_string())
        .to_ascii_lowercase();

    let services = if args.from_dockerfiles {
        let found = match find_dockerfiles(&root, &app) {
            Ok(found) => found,
            Err(e) => {
                diagnostics::error(cli, &format!("cannot read {}: {e}", root.display()), None);
                return Exit::Failed;
            }
        };
        if found.is_empty() {
            diagnostics::error(
                cli,
                &format!("no Dockerfile found: looked for {0}/apps/*/Dockerfile and {0}/Dockerfile", root.display()),
                Some("run without --from-dockerfiles for a starter manifest"),
            );
            return Exit::BadInput;
        }
        found
    } else {
        vec![Found {
            name: "web".to_string(),
            context: ".".to_string(),
            dockerfile: "Dockerfile".to_string(),
            facts: DockerfileFacts {
                port: Some(8080),
                health_path: Some("/healthz".to_string()),
                ..Default::default()
            },
        }]
    };

    let text = manifest_text(&app, &namespace, &args.to, &services);
    // What init writes must validate.
    if let Err(e) = shipit_core::parse(&text, &path.display().to_string()) {
        diagnostics::error(cli, &format!("the drafted manifest does not validate, so nothing was written:\n{e}"), None);
        return Exit::Failed;
    }
    if let Err(e) = std::fs::write(path, &text) {
        diagnostics::error(cli, &format!("cannot write {}: {e}", path.display()), None);
        return Exit::Failed;
    }
    if cli.json {
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        println!("{}", serde_json::json!({ "ok": true, "file": path, "app": app, "services": names }));
    }
    for s in &services {
        let what = match (s.facts.port, &s.facts.health_path) {
            (Some(p), Some(h)) => format!("port {p}, health {h}"),
            (Some(p), None) => format!("port {p}"),
            (None, _) => "worker (no EXPOSE)".to_string(),
        };
        diagnostics::info(cli, &format!("  {}: {what} — from {}", s.name, s.dockerfile));
        if s.facts.user.as_deref().is_none_or(|u| u == "root" || u == "0") && args.from_dockerfiles {
            diagnostics::info(cli, &format!("  warning: {} runs as root (no USER in {})", s.name, s.dockerfile));
        }
    }
    diagnostics::info(cli, &format!("wrote {}; review it, then run `shipit validate`", path.display()));
    Exit::Ok
}

fn dir_name(dir: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(dir).ok()?;
    abs.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Lowercase letters, digits and single dashes, starting with a letter.
fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-').trim_end_matches('-');
    out.chars().take(40).collect::<String>().trim_end_matches('-').to_string()
}

/// The GitHub owner of the `origin` remote, read from .git/config.
fn github_owner(root: &Path) -> Option<String> {
    let config = std::fs::read_to_string(root.join(".git/config")).ok()?;
    let url =
        config.lines().map(str::trim).find_map(|l| l.strip_prefix("url = ").filter(|u| u.contains("github.com")))?;
    let after = url.split("github.com").nth(1)?.trim_start_matches([':', '/']);
    after.split('/').next().filter(|o| !o.is_empty()).map(str::to_string)
}

fn find_dockerfiles(root: &Path, app: &str) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    let apps = root.join("apps");
    if apps.is_dir() {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&apps)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs {
            let df = dir.join("Dockerfile");
            if !df.is_file() {
                continue;
            }
            let Some(raw) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            let name = sanitize(&raw);
            if name.is_empty() {
                continue;
            }
            found.push(Found {
                name,
                context: format!("apps/{raw}"),
                dockerfile: format!("apps/{raw}/Dockerfile"),
                facts: dockerfile::read(&std::fs::read_to_string(&df)?),
            });
        }
    }
    let root_df = root.join("Dockerfile");
    if root_df.is_file() {
        let name = if found.iter().any(|f| f.name == app) { format!("{app}-root") } else { app.to_string() };
        found.push(Found {
            name,
            context: ".".to_string(),
            dockerfile: "Dockerfile".to_string(),
            facts: dockerfile::read(&std::fs::read_to_string(&root_df)?),
        });
    }
    Ok(found)
}

fn q(s: &str) -> String {
    toml_quote(s)
}

fn toml_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn valid_duration(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|d| d.parse::<shipit_core::GoDuration>().is_ok())
}

fn manifest_text(app: &str, namespace: &str, to: &str, services: &[Found]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# shipit.toml, drafted by `shipit init`. Reference: docs/manifest.md");
    let _ = writeln!(t, "app = {}\n", q(app));
    let _ = writeln!(
        t,
        "[registry]\nhost = \"ghcr.io\"\nnamespace = {}   # your GitHub user or organisation\n",
        q(namespace)
    );
    for s in services {
        let _ = writeln!(t, "[services.{}]", s.name);
        let _ = writeln!(t, "image = {}", q(&format!("ghcr.io/{namespace}/{app}-{}", s.name)));
        if s.dockerfile == format!("{}/Dockerfile", s.context) {
            let _ = writeln!(t, "build = {{ context = {} }}", q(&s.context));
        } else {
            let _ = writeln!(t, "build = {{ context = {}, dockerfile = {} }}", q(&s.context), q(&s.dockerfile));
        }
        match s.facts.port {
            Some(port) => {
                let _ = writeln!(t, "port = {port}");
                if let Some(path) = s.facts.health_path.as_deref().filter(|p| p.starts_with('/')) {
                    let mut parts = vec![format!("path = {}", q(path))];
                    if let Some(i) = valid_duration(&s.facts.health_interval) {
                        parts.push(format!("interval = {}", q(i)));
                    }
                    if let Some(to) = valid_duration(&s.facts.health_timeout) {
                        parts.push(format!("timeout = {}", q(to)));
                    }
                    if let Some(g) = valid_duration(&s.facts.health_start_period) {
                        parts.push(format!("grace = {}", q(g)));
                    }
                    let _ = writeln!(t, "health = {{ {} }}", parts.join(", "));
                }
            }
            None => {
                if s.facts.health_path.is_some() {
                    let _ = writeln!(t, "# HEALTHCHECK found, but no EXPOSE: a health check needs a port");
                }
            }
        }
        if let Some(cmd) = &s.facts.cmd {
            let parts: Vec<String> = cmd.iter().map(|c| q(c)).collect();
            let _ = writeln!(t, "command = [{}]", parts.join(", "));
        }
        match s.facts.user.as_deref() {
            Some(u) if u != "root" && u != "0" => {
                let _ = writeln!(t, "# runs as user {}", q(u));
            }
            _ => {
                let _ = writeln!(t, "# runs as root: consider a USER instruction in {}", s.dockerfile);
            }
        }
        t.push('\n');
    }
    let _ = writeln!(t, "[environments.staging]\ntarget = {}\n", q(to));
    let _ = writeln!(t, "[environments.production]\ntarget = {}\n", q(to));
    match to {
        "fly" => {
            let _ = writeln!(t, "[targets.fly]\norg = \"personal\"\nprimary_region = \"iad\"");
        }
        "railway" => {
            let _ = writeln!(t, "[targets.railway]\nproject = {}", q(app));
        }
        _ => {
            let _ = writeln!(t, "[targets.render]\nregion = \"oregon\"");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize("My_App.v2"), "my-app-v2");
        assert_eq!(sanitize("2fast"), "fast");
        assert_eq!(sanitize("--x--"), "x");
    }

    #[test]
    fn quotes_toml_strings() {
        assert_eq!(toml_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
