//! `shipit init`: draft a shipit.toml, from the Dockerfiles when asked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use shipit_core::GoDuration;
use shipit_core::model::{HealthCheck, is_valid_name};

use crate::cli::{Cli, InitArgs};
use crate::diagnostics;
use crate::dockerfile::{self, DockerfileFacts, Protocol};
use crate::exit::Exit;

/// A Dockerfile found, and the service it becomes.
struct Found {
    name: String,
    context: String,
    dockerfile: String,
    facts: DockerfileFacts,
}

/// What init writes for one service, and what it has to say about it.
struct Draft {
    name: String,
    context: String,
    dockerfile: String,
    port: Option<u16>,
    /// Whether `port` is the Dockerfile's first TCP EXPOSE: recorded in a comment after it
    /// (`# EXPOSE 4000 in apps/api/Dockerfile`) that `validate` reads (`crate::checks`).
    exposed: bool,
    /// The inside of `health = { … }`.
    health: Option<String>,
    command: Option<Vec<String>>,
    /// Comment lines written under the service.
    comments: Vec<String>,
    /// Printed after the service's line.
    warnings: Vec<String>,
    /// `port 4000, health /api/health — from apps/api/Dockerfile`.
    summary: String,
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
    let app = match app_name(args.app.as_deref(), &root) {
        Ok(name) => name,
        Err((message, help)) => {
            diagnostics::error(cli, &message, Some(&help));
            return Exit::BadInput;
        }
    };
    let namespace = args
        .namespace
        .clone()
        .or_else(|| github_owner(&root))
        .unwrap_or_else(|| "owner".to_string())
        .to_ascii_lowercase();

    let mut skipped = Vec::new();
    let drafts = if args.from_dockerfiles {
        let found = match find_dockerfiles(&root, &app, &mut skipped) {
            Ok(found) => found,
            Err(e) => {
                diagnostics::error(cli, &format!("cannot read {}: {e}", root.display()), None);
                return Exit::Failed;
            }
        };
        if found.is_empty() {
            let mut help = "run without --from-dockerfiles for a starter manifest".to_string();
            if !skipped.is_empty() {
                let _ = write!(help, " (skipped: {})", skipped.join("; "));
            }
            diagnostics::error(
                cli,
                &format!("no Dockerfile found: looked for {0}/apps/*/Dockerfile and {0}/Dockerfile", root.display()),
                Some(&help),
            );
            return Exit::BadInput;
        }
        found.iter().map(draft).collect()
    } else {
        vec![starter()]
    };

    let text = manifest_text(&app, &namespace, &args.to, &drafts);
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
        let names: Vec<&str> = drafts.iter().map(|d| d.name.as_str()).collect();
        let warnings: Vec<String> =
            drafts.iter().flat_map(|d| d.warnings.iter().map(move |w| format!("{}: {w}", d.name))).collect();
        crate::report::result(serde_json::json!({ "file": path, "app": app, "services": names, "warnings": warnings }));
    }
    for d in &drafts {
        diagnostics::info(cli, &format!("  {}: {}", d.name, d.summary));
        for w in &d.warnings {
            diagnostics::info(cli, &format!("  warning: {}: {w}", d.name));
        }
    }
    for s in &skipped {
        diagnostics::info(cli, &format!("  skipped {s}"));
    }
    if !args.from_dockerfiles && has_dockerfile(&root) {
        diagnostics::info(cli, "  a Dockerfile is here: `shipit init --from-dockerfiles --force` drafts from it");
    }
    if namespace == crate::checks::PLACEHOLDER_NAMESPACE {
        diagnostics::info(
            cli,
            &format!(
                "  {} no GitHub owner found (no `origin` remote on GitHub): `[registry] namespace` is the placeholder {:?}, which `shipit validate` refuses until you set it (or run init again with --namespace NAME)",
                crate::style::warning_word(),
                crate::checks::PLACEHOLDER_NAMESPACE
            ),
        );
    }
    diagnostics::info(cli, &format!("wrote {}; review it, then run `shipit validate`", path.display()));
    Exit::Ok
}

/// `--app` as given, else the directory's name sanitised; an error and its help otherwise.
fn app_name(given: Option<&str>, root: &Path) -> Result<String, (String, String)> {
    const RULE: &str = "lowercase letters, digits and dashes, starting with a letter and not ending with a dash \
                        (at most 63 characters)";
    if let Some(name) = given {
        if is_valid_name(name) {
            return Ok(name.to_string());
        }
        let suggestion = Some(sanitize(name)).filter(|s| is_valid_name(s)).unwrap_or_else(|| "my-app".to_string());
        return Err((
            format!("--app {name:?} is not a valid app name: expected {RULE}"),
            format!("for example --app {suggestion}"),
        ));
    }
    let Some(dir) = dir_name(root) else {
        return Err((
            format!("cannot derive an app name: {} has no directory name", root.display()),
            "pass --app NAME".to_string(),
        ));
    };
    let name = sanitize(&dir);
    if is_valid_name(&name) {
        return Ok(name);
    }
    Err((
        format!("cannot derive an app name from the directory name {dir:?}: an app name is {RULE}"),
        "pass --app NAME".to_string(),
    ))
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

fn has_dockerfile(root: &Path) -> bool {
    root.join("Dockerfile").is_file()
        || std::fs::read_dir(root.join("apps"))
            .map(|dirs| dirs.filter_map(Result::ok).any(|e| e.path().join("Dockerfile").is_file()))
            .unwrap_or(false)
}

/// `name`, or `name-2`, `name-3`… if a service already has it.
fn unique(name: String, found: &[Found]) -> String {
    let taken = |n: &str| found.iter().any(|f| f.name == n);
    if !taken(&name) {
        return name;
    }
    (2..).map(|i| format!("{name}-{i}")).find(|n| !taken(n)).unwrap_or(name)
}

/// apps/*/Dockerfile in name order, then ./Dockerfile; what is passed over goes to `skipped`.
fn find_dockerfiles(root: &Path, app: &str, skipped: &mut Vec<String>) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    let apps = root.join("apps");
    if apps.is_dir() {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&apps)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs {
            if !dir.is_dir() {
                continue;
            }
            let Some(raw) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            if raw.starts_with('.') {
                continue;
            }
            let df = dir.join("Dockerfile");
            if !df.is_file() {
                skipped.push(format!("apps/{raw}: no Dockerfile"));
                continue;
            }
            if dir.file_name().and_then(|n| n.to_str()).is_none() {
                skipped.push(format!("apps/{raw}: the directory's name is not UTF-8"));
                continue;
            }
            let name = sanitize(&raw);
            if name.is_empty() {
                skipped.push(format!("apps/{raw}/Dockerfile: no service name can be made from {raw:?}"));
                continue;
            }
            let name = unique(name, &found);
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
        let name =
            if found.iter().any(|f| f.name == app) { unique(format!("{app}-root"), &found) } else { app.to_string() };
        found.push(Found {
            name,
            context: ".".to_string(),
            dockerfile: "Dockerfile".to_string(),
            facts: dockerfile::read(&std::fs::read_to_string(&root_df)?),
        });
    }
    Ok(found)
}

/// The one service of the manifest drafted without `--from-dockerfiles`.
fn starter() -> Draft {
    Draft {
        name: "web".to_string(),
        context: ".".to_string(),
        dockerfile: "Dockerfile".to_string(),
        port: Some(8080),
        exposed: false,
        health: Some(format!("path = {}", q("/healthz"))),
        command: None,
        comments: vec![
            "# a starter service, not read from a Dockerfile: set port and health to what the image does".to_string(),
        ],
        warnings: Vec::new(),
        summary: "port 8080, health /healthz — a starter service (no Dockerfile was read)".to_string(),
    }
}

/// A duration as written in the Dockerfile, if shipit reads it as one.
fn duration(d: Option<&str>) -> Option<(&str, GoDuration)> {
    let d = d?;
    d.parse::<GoDuration>().ok().map(|v| (d, v))
}

/// Turns what a Dockerfile says into a service: the first TCP EXPOSE is its port, checked
/// against the port its HEALTHCHECK requests and the one its command names.
fn draft(found: &Found) -> Draft {
    let f = &found.facts;
    let df = found.dockerfile.as_str();
    let mut comments = Vec::new();
    let mut warnings: Vec<String> = f
        .notes
        .iter()
        .map(|n| match n.line {
            Some(line) => format!("{df}:{line}: {}", n.text),
            None => format!("{df}: {}", n.text),
        })
        .collect();

    // The port: the first TCP EXPOSE.
    let first = f.first_tcp();
    let port = f.port();
    let refused: Vec<String> = f.exposed.iter().filter(|e| e.protocol != Protocol::Tcp).map(|e| e.spec()).collect();
    if !refused.is_empty() {
        let list = refused.join(" ");
        warnings.push(format!(
            "EXPOSE {list} refused: a shipit service takes HTTP over TCP, not UDP or SCTP{}",
            if port.is_none() { ", so this is drafted as a worker" } else { "" }
        ));
        comments.push(format!("# EXPOSE {list} not drafted: a shipit service takes HTTP over TCP only"));
    }
    if let Some(e) = first
        && e.first != e.last
    {
        comments.push(format!("# EXPOSE {}: a range; port is its first port", e.spec()));
    }
    let others: Vec<String> =
        f.exposed.iter().filter(|e| e.protocol == Protocol::Tcp && Some(*e) != first).map(|e| e.spec()).collect();
    if !others.is_empty() {
        comments.push(format!("# EXPOSE also lists {}: a service has one port, the first", others.join(" ")));
    }

    // The health check, and the ports the HEALTHCHECK and the command use.
    let http_health = f.health.as_ref().and_then(|h| h.path.as_deref().map(|p| (h, p)));
    let listen = f.listen();
    let mut health = None;
    if let Some(h) = &f.health
        && h.path.is_none()
    {
        comments.push(format!("# HEALTHCHECK `{}` is not an HTTP check: no health drafted", cut(&h.test)));
    }
    match port {
        Some(port) => {
            if let Some((h, path)) = http_health {
                match h.port {
                    Some(p) if p != port => {
                        warnings.push(format!(
                            "HEALTHCHECK requests port {p}, not port {port} (the first TCP EXPOSE): health not drafted"
                        ));
                        comments.push(format!(
                            "# health = {{ path = {} }}   # not drafted: HEALTHCHECK requests port {p}, not {port}",
                            q(path)
                        ));
                    }
                    _ => health = Some(health_table(h, path, &mut comments)),
                }
            }
            if let Some(l) = &listen
                && l.port != port
            {
                warnings.push(format!(
                    "the command names port {} (`{}`), not port {port} (the first TCP EXPOSE)",
                    l.port, l.evidence
                ));
                comments
                    .push(format!("# the command names port {} (`{}`), not {port}: check `port`", l.port, l.evidence));
            }
        }
        None => {
            let health_port = http_health.and_then(|(h, _)| h.port);
            if http_health.is_some() {
                comments.push("# HEALTHCHECK found, but no TCP EXPOSE: a health check needs a port".to_string());
            }
            let mut uses = Vec::new();
            if let Some(p) = health_port {
                uses.push((p, format!("HEALTHCHECK requests port {p}")));
            }
            if let Some(l) = &listen {
                let what = format!("the command names port {} (`{}`)", l.port, l.evidence);
                match uses.first_mut() {
                    Some((p, first)) if *p == l.port => *first = format!("{first} and {what}"),
                    _ => uses.push((l.port, what)),
                }
            }
            for (p, what) in uses {
                warnings.push(format!(
                    "{what} but no TCP port is EXPOSEd: drafted as a worker; add `EXPOSE {p}` if it serves HTTP"
                ));
            }
        }
    }

    // The command: what runs is ENTRYPOINT and CMD, as Docker combines them. shipit's `command`
    // replaces only the image's CMD (docs/manifest.md), so with an ENTRYPOINT it is not written:
    // the image already runs that, and writing both would run the ENTRYPOINT twice.
    let runs = f.command();
    let has_entrypoint = f.entrypoint.as_ref().is_some_and(|e| !e.argv.is_empty());
    let command = if has_entrypoint {
        if let Some(argv) = &runs {
            let how =
                if f.cmd_ignored() { "ENTRYPOINT in shell form, which ignores CMD" } else { "ENTRYPOINT then CMD" };
            comments
                .push(format!("# the image runs {} ({how}); `command` would replace its CMD only", toml_list(argv)));
        }
        None
    } else {
        runs
    };

    // The user.
    match f.user.as_deref() {
        Some(u) if dockerfile::is_root(u) => {
            comments.push(format!("# runs as root (USER {u} in {df}): consider a non-root USER"));
            warnings.push(format!("runs as root (USER {u} in {df})"));
        }
        Some(u) => comments.push(format!("# runs as user {}", q(u))),
        None => {
            let base = f.base.as_deref().unwrap_or("its base image");
            comments.push(format!("# no USER in {df}: runs as root unless {base} sets a user"));
            warnings.push(format!("may run as root: no USER in {df} (unless {base} sets one)"));
        }
    }

    let what = match (port, &health) {
        (Some(p), Some(_)) => format!("port {p}, health {}", http_health.map_or("", |(_, path)| path)),
        (Some(p), None) => format!("port {p}"),
        (None, _) if !refused.is_empty() => format!("worker (EXPOSE {} only)", refused.join(" ")),
        (None, _) => "worker (no EXPOSE)".to_string(),
    };
    Draft {
        name: found.name.clone(),
        context: found.context.clone(),
        dockerfile: found.dockerfile.clone(),
        port,
        exposed: port.is_some(),
        health,
        command,
        comments,
        warnings,
        summary: format!("{what} — from {df}"),
    }
}

/// `path = …` and the HEALTHCHECK's timings that shipit can take.
fn health_table(h: &dockerfile::Health, path: &str, comments: &mut Vec<String>) -> String {
    let mut parts = vec![format!("path = {}", q(path))];
    let (default_interval, _, _) = HealthCheck::default_timing();
    let mut bad = |flag: &str, value: Option<&str>, why: &str| {
        if let Some(v) = value {
            comments.push(format!("# HEALTHCHECK --{flag}={v} not drafted: {why}"));
        }
    };
    let interval = duration(h.interval.as_deref());
    if interval.is_none() {
        bad("interval", h.interval.as_deref(), "not a duration");
    }
    if let Some((i, _)) = interval {
        parts.push(format!("interval = {}", q(i)));
    }
    match duration(h.timeout.as_deref()) {
        None => bad("timeout", h.timeout.as_deref(), "not a duration"),
        Some((_, t)) if t > interval.map_or(default_interval, |(_, i)| i) => {
            bad("timeout", h.timeout.as_deref(), "longer than the interval");
        }
        Some((t, _)) => parts.push(format!("timeout = {}", q(t))),
    }
    match duration(h.start_period.as_deref()) {
        None => bad("start-period", h.start_period.as_deref(), "not a duration"),
        Some((g, _)) => parts.push(format!("grace = {}", q(g))),
    }
    parts.join(", ")
}

/// At most 60 characters of `s`, for a comment.
fn cut(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= 60 {
        return one_line;
    }
    let mut out: String = one_line.chars().take(57).collect();
    out.push_str("...");
    out
}

fn q(s: &str) -> String {
    toml_quote(s)
}

/// `["a", "b"]`, each a TOML string.
fn toml_list(argv: &[String]) -> String {
    let parts: Vec<String> = argv.iter().map(|c| q(c)).collect();
    format!("[{}]", parts.join(", "))
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

fn manifest_text(app: &str, namespace: &str, to: &str, services: &[Draft]) -> String {
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
        match s.port {
            Some(port) if s.exposed => {
                let df: String = s.dockerfile.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
                let _ = writeln!(t, "port = {port}  # EXPOSE {port} in {df}");
            }
            Some(port) => {
                let _ = writeln!(t, "port = {port}");
            }
            None => {}
        }
        if let Some(h) = &s.health {
            let _ = writeln!(t, "health = {{ {h} }}");
        }
        if let Some(cmd) = &s.command {
            let _ = writeln!(t, "command = {}", toml_list(cmd));
        }
        for c in &s.comments {
            // A TOML comment holds no control character but tab.
            let c: String = c.chars().map(|ch| if ch.is_control() && ch != '\t' { ' ' } else { ch }).collect();
            let _ = writeln!(t, "{c}");
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
    fn app_names() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(app_name(Some("shop-2"), dir.path()).unwrap(), "shop-2");
        for bad in ["123", "", "Shop", "my_app", "-x", "x-", &"a".repeat(64)] {
            let (message, help) = app_name(Some(bad), dir.path()).unwrap_err();
            assert!(
                message.starts_with(&format!("--app {bad:?} is not a valid app name: expected lowercase")),
                "{message}"
            );
            assert!(help.starts_with("for example --app "), "{help}");
        }
        assert_eq!(app_name(Some("My_Shop"), dir.path()).unwrap_err().1, "for example --app my-shop");
        let named = dir.path().join("My Shop.v2");
        std::fs::create_dir(&named).unwrap();
        assert_eq!(app_name(None, &named).unwrap(), "my-shop-v2");
        let digits = dir.path().join("123");
        std::fs::create_dir(&digits).unwrap();
        let (message, help) = app_name(None, &digits).unwrap_err();
        assert!(message.contains("from the directory name \"123\""), "{message}");
        assert_eq!(help, "pass --app NAME");
    }

    #[test]
    fn quotes_toml_strings() {
        assert_eq!(toml_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
