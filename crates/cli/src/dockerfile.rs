//! How `shipit init --from-dockerfiles` reads a Dockerfile: the way Docker (BuildKit) reads it,
//! for the few things a manifest takes from it.
//!
//! The text is cut into instructions as BuildKit's parser cuts it: parser directives at the top
//! (`# escape=`), comments, blank lines, line continuations, and heredocs (`RUN <<EOF` … `EOF`),
//! whose bodies are never read as instructions. The instructions are then applied stage by stage
//! to an image config, as the builder applies them:
//!
//! - only the final stage (the last `FROM`) counts; a stage that starts `FROM <an earlier stage>`
//!   inherits that stage's config (ENV, EXPOSE, ENTRYPOINT, CMD, USER, HEALTHCHECK, SHELL);
//! - variables are expanded where Docker expands them: the ARGs declared before the first `FROM`
//!   in `FROM`, and a stage's ARGs and ENVs in `ARG`, `ENV`, `EXPOSE` and `USER`;
//! - `CMD` and `ENTRYPOINT` keep their exec form (JSON) or become `<SHELL> "<text>"`
//!   (`/bin/sh -c` unless `SHELL` says otherwise); an `ENTRYPOINT` resets the CMD the stage
//!   inherited unless the stage set its own CMD before it.
//!
//! Whatever could not be read (an unterminated heredoc, a JSON array that is not all strings, an
//! EXPOSE that is not a port…) is kept as a note with its line number.

use serde_json::Value;

/// Hosts a health check reaches its own container on.
const LOCAL_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "0.0.0.0", "[::1]"];

/// The shell of shell-form instructions unless a `SHELL` instruction says otherwise.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// A command (`CMD`, `ENTRYPOINT`, the test of a `HEALTHCHECK`) as Docker stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Exec form: the JSON array. Shell form: the shell followed by the text (for a HEALTHCHECK,
    /// the text alone).
    pub argv: Vec<String>,
    /// Written in shell form.
    pub shell_form: bool,
}

/// The protocol of an exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `/tcp`, the default.
    Tcp,
    /// `/udp`.
    Udp,
    /// `/sctp`.
    Sctp,
}

/// One port, or range of ports, of an `EXPOSE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposed {
    /// The port, or the first of the range.
    pub first: u16,
    /// The last port of the range (`first` for a single port).
    pub last: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

impl Exposed {
    /// As an EXPOSE would write it: `8080`, `8000-8010`, `53/udp`.
    pub fn spec(&self) -> String {
        let ports =
            if self.first == self.last { self.first.to_string() } else { format!("{}-{}", self.first, self.last) };
        match self.protocol {
            Protocol::Tcp => ports,
            Protocol::Udp => format!("{ports}/udp"),
            Protocol::Sctp => format!("{ports}/sctp"),
        }
    }
}

/// The final image's `HEALTHCHECK`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// What it runs, as written.
    pub test: String,
    /// The path of the URL it requests, when it requests one.
    pub path: Option<String>,
    /// The port of that URL (80 or 443 when the URL names none), when it is known.
    pub port: Option<u16>,
    /// `--interval`, as written.
    pub interval: Option<String>,
    /// `--timeout`, as written.
    pub timeout: Option<String>,
    /// `--start-period`, as written.
    pub start_period: Option<String>,
}

/// A port the command names, and the words that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The port.
    pub port: u16,
    /// The words it was found in, like `--port 8000` or `0.0.0.0:8000`.
    pub evidence: String,
}

/// What a Dockerfile says about the image its final stage builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerfileFacts {
    /// How many stages (`FROM` instructions) it has.
    pub stages: usize,
    /// The image the final stage is built on, through the earlier stages it starts from.
    pub base: Option<String>,
    /// The final image's exposed ports, in the order the EXPOSE instructions list them.
    pub exposed: Vec<Exposed>,
    /// The final image's HEALTHCHECK, unless it has none or `HEALTHCHECK NONE`.
    pub health: Option<Health>,
    /// The final image's ENTRYPOINT.
    pub entrypoint: Option<Command>,
    /// The final image's CMD.
    pub cmd: Option<Command>,
    /// The final image's USER, expanded.
    pub user: Option<String>,
    /// The final image's ENV, in order.
    pub env: Vec<(String, String)>,
    /// What could not be read, or Docker would refuse.
    pub notes: Vec<Note>,
}

/// Something about a Dockerfile that could not be read, or that Docker would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The line it is on, from 1, when it is on one.
    pub line: Option<usize>,
    /// What it is.
    pub text: String,
}

fn note(line: usize, text: String) -> Note {
    Note { line: Some(line), text }
}

impl DockerfileFacts {
    /// The first TCP port exposed: the port a service takes.
    pub fn port(&self) -> Option<u16> {
        self.first_tcp().map(|e| e.first)
    }

    /// The EXPOSE entry the port comes from.
    pub fn first_tcp(&self) -> Option<&Exposed> {
        self.exposed.iter().find(|e| e.protocol == Protocol::Tcp)
    }

    /// The command a container of the image runs, ENTRYPOINT and CMD combined as Docker combines
    /// them: an exec-form ENTRYPOINT followed by the CMD, a shell-form ENTRYPOINT alone (its shell
    /// ignores the CMD), else the CMD. `None` when that is empty.
    pub fn command(&self) -> Option<Vec<String>> {
        let cmd = self.cmd.as_ref().map(|c| c.argv.clone()).unwrap_or_default();
        let argv = match &self.entrypoint {
            Some(ep) if ep.shell_form => ep.argv.clone(),
            Some(ep) => [ep.argv.clone(), cmd].concat(),
            None => cmd,
        };
        (!argv.is_empty()).then_some(argv)
    }

    /// A CMD the shell-form ENTRYPOINT ignores.
    pub fn cmd_ignored(&self) -> bool {
        self.entrypoint.as_ref().is_some_and(|e| e.shell_form) && self.cmd.as_ref().is_some_and(|c| !c.argv.is_empty())
    }

    /// A port the command names (`--port 8000`, `-b 0.0.0.0:8000`, `PORT=8000 …`), its variables
    /// expanded from the image's ENV.
    pub fn listen(&self) -> Option<Listen> {
        listen_port(&self.command()?, &self.env)
    }
}

/// Whether a USER value is root: the user `root` or `0`, whatever the group.
pub fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or(user).trim();
    name == "root" || name == "0"
}

/// Reads the facts from a Dockerfile's text.
pub fn read(text: &str) -> DockerfileFacts {
    let parsed = parse(text);
    let mut notes = parsed.notes;
    let escape = parsed.escape;
    let mut global_args: Vec<(String, Option<String>)> = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut current: Option<Building> = None;

    for ins in &parsed.instructions {
        let at = ins.line;
        if ins.keyword == "FROM" {
            if let Some(b) = current.take() {
                stages.push(b.stage);
            }
            current = Some(from(ins, &global_args, &stages, escape, &mut notes));
            continue;
        }
        let Some(b) = current.as_mut() else {
            if ins.keyword == "ARG" {
                let declared = args_of(&ins.args, escape, &|n| lookup(&[], &global_args, n));
                global_args.extend(declared);
            } else {
                notes.push(note(at, format!("{} before the first FROM is ignored (Docker refuses it)", ins.keyword)));
            }
            continue;
        };
        let config = &mut b.stage.config;
        if !ins.flags.is_empty() && !matches!(ins.keyword.as_str(), "HEALTHCHECK" | "RUN" | "COPY" | "ADD") {
            notes.push(note(at, format!("{} takes no flag {}; ignored", ins.keyword, ins.flags.join(" "))));
            continue;
        }
        match ins.keyword.as_str() {
            "ARG" => {
                let declared = args_of(&ins.args, escape, &|n| lookup(&config.env, &b.args, n));
                for (name, value) in declared {
                    let value = value.or_else(|| global_args.iter().rev().find(|(k, _)| *k == name)?.1.clone());
                    b.args.push((name, value));
                }
            }
            "ENV" => {
                let set = env_of(&ins.args, escape, &|n| lookup(&config.env, &b.args, n));
                if set.is_empty() {
                    notes.push(note(at, "ENV sets nothing".to_string()));
                }
                for (k, v) in set {
                    config.env.retain(|(name, _)| *name != k);
                    config.env.push((k, v));
                }
            }
            "EXPOSE" => {
                let words = expand_words(&ins.args, escape, &|n| lookup(&config.env, &b.args, n));
                for word in words {
                    match port_spec(&word) {
                        Some(e) if !config.exposed.contains(&e) => config.exposed.push(e),
                        Some(_) => {}
                        None => notes.push(note(at, format!("EXPOSE {word:?} is not a port"))),
                    }
                }
            }
            "USER" => {
                let user = expand_word(&ins.args, escape, &|n| lookup(&config.env, &b.args, n));
                let user = user.trim();
                if user.is_empty() {
                    notes.push(note(at, "USER names no user".to_string()));
                } else {
                    config.user = Some(user.to_string());
                }
            }
            "CMD" => {
                if let Some(c) = command(&ins.args, config.shell.as_deref(), at, "CMD", &mut notes) {
                    config.cmd = Some(c);
                    b.cmd_set = true;
                }
            }
            "ENTRYPOINT" => {
                if let Some(c) = command(&ins.args, config.shell.as_deref(), at, "ENTRYPOINT", &mut notes) {
                    config.entrypoint = Some(c);
                    if !b.cmd_set {
                        config.cmd = None;
                    }
                }
            }
            "SHELL" => match json_array(&ins.args) {
                Some(Ok(argv)) if !argv.is_empty() => config.shell = Some(argv),
                _ => notes.push(note(at, "SHELL must be a JSON array of strings; ignored".to_string())),
            },
            "HEALTHCHECK" => healthcheck(ins, config, at, &mut notes),
            _ => {}
        }
    }
    if let Some(b) = current {
        stages.push(b.stage);
    }
    notes.sort_by_key(|n| n.line);
    let Some(last) = stages.pop() else {
        notes.push(Note { line: None, text: "no FROM instruction: Docker cannot build it".to_string() });
        return DockerfileFacts { notes, ..Default::default() };
    };
    let c = last.config;
    let health = c.health.and_then(|h| {
        let test = h.test?;
        let text = test.argv.join(" ");
        let (path, port) = health_target(&text, &c.env);
        Some(Health { test: text, path, port, interval: h.interval, timeout: h.timeout, start_period: h.start_period })
    });
    DockerfileFacts {
        stages: stages.len() + 1,
        base: Some(last.base),
        exposed: c.exposed,
        health,
        entrypoint: c.entrypoint,
        cmd: c.cmd,
        user: c.user,
        env: c.env,
        notes,
    }
}

// ---- the image config, stage by stage ----

#[derive(Debug, Clone, Default)]
struct HealthConfig {
    /// `None` for `HEALTHCHECK NONE`.
    test: Option<Command>,
    interval: Option<String>,
    timeout: Option<String>,
    start_period: Option<String>,
}

/// What a stage's image holds, and what a stage that starts from it inherits.
#[derive(Debug, Clone, Default)]
struct Config {
    env: Vec<(String, String)>,
    exposed: Vec<Exposed>,
    entrypoint: Option<Command>,
    cmd: Option<Command>,
    user: Option<String>,
    health: Option<HealthConfig>,
    shell: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
struct Stage {
    /// Its `AS` name, lowercased.
    name: Option<String>,
    /// The image it is built on, through the earlier stages it starts from.
    base: String,
    config: Config,
}

/// The stage being built: what it does not pass on.
struct Building {
    stage: Stage,
    args: Vec<(String, Option<String>)>,
    /// A CMD was set in this stage (so an ENTRYPOINT after it keeps it).
    cmd_set: bool,
}

fn lookup(env: &[(String, String)], args: &[(String, Option<String>)], name: &str) -> Option<String> {
    if let Some((_, v)) = env.iter().rev().find(|(k, _)| k == name) {
        return Some(v.clone());
    }
    args.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.clone())
}

fn from(
    ins: &Instruction,
    global_args: &[(String, Option<String>)],
    stages: &[Stage],
    escape: char,
    notes: &mut Vec<Note>,
) -> Building {
    let words: Vec<&str> = ins.args.split_whitespace().collect();
    let image = words.first().map(|w| expand_word(w, escape, &|n| lookup(&[], global_args, n))).unwrap_or_default();
    let name = match words.as_slice() {
        [_, as_, name, ..] if as_.eq_ignore_ascii_case("as") => Some(name.to_ascii_lowercase()),
        _ => None,
    };
    if image.is_empty() {
        notes.push(note(ins.line, "FROM names no image".to_string()));
    }
    let earlier = stages.iter().rev().find(|s| s.name.as_deref() == Some(image.to_ascii_lowercase().as_str()));
    let stage = match earlier {
        Some(s) => Stage { name, base: s.base.clone(), config: s.config.clone() },
        None => Stage { name, base: image, config: Config::default() },
    };
    Building { stage, args: Vec::new(), cmd_set: false }
}

/// `ARG NAME[=default] …`: each name with its default, expanded.
fn args_of(args: &str, escape: char, vars: &dyn Fn(&str) -> Option<String>) -> Vec<(String, Option<String>)> {
    split_raw(args, escape)
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(expand_word(v, escape, vars))),
            None => (w, None),
        })
        .collect()
}

/// `ENV K=V …` or the legacy `ENV K V`: every value is expanded with the variables as they were
/// before the instruction, as Docker does.
fn env_of(args: &str, escape: char, vars: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let words = split_raw(args, escape);
    match words.first() {
        Some(first) if !first.contains('=') => {
            let value = args.trim_start().get(first.len()..).unwrap_or("").trim();
            vec![(first.clone(), expand_word(value, escape, vars))]
        }
        _ => words
            .iter()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), expand_word(v, escape, vars)))
            .collect(),
    }
}

/// `8080`, `8080/tcp`, `53/udp`, `8000-8010`.
fn port_spec(word: &str) -> Option<Exposed> {
    let (ports, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
    let first = first.parse::<u16>().ok().filter(|p| *p > 0)?;
    let last = last.parse::<u16>().ok().filter(|p| *p >= first)?;
    Some(Exposed { first, last, protocol })
}

/// A CMD or ENTRYPOINT: exec form, else shell form behind the stage's shell.
fn command(args: &str, shell: Option<&[String]>, at: usize, what: &str, notes: &mut Vec<Note>) -> Option<Command> {
    match json_array(args) {
        Some(Ok(argv)) => Some(Command { argv, shell_form: false }),
        Some(Err(e)) => {
            notes.push(note(at, format!("{what} {e}; ignored")));
            None
        }
        None if args.trim().is_empty() => {
            notes.push(note(at, format!("{what} has no command; ignored")));
            None
        }
        None => {
            let mut argv: Vec<String> = match shell {
                Some(s) => s.to_vec(),
                None => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
            };
            argv.push(args.trim().to_string());
            Some(Command { argv, shell_form: true })
        }
    }
}

/// `HEALTHCHECK [--interval=… --timeout=… --start-period=…] CMD …` or `HEALTHCHECK NONE`. Each one
/// replaces the previous one whole, options included.
fn healthcheck(ins: &Instruction, config: &mut Config, at: usize, notes: &mut Vec<Note>) {
    let args = ins.args.trim();
    let (word, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    if word.eq_ignore_ascii_case("NONE") {
        config.health = Some(HealthConfig::default());
        return;
    }
    if !word.eq_ignore_ascii_case("CMD") {
        notes.push(note(at, "HEALTHCHECK must be followed by CMD or NONE; ignored".to_string()));
        return;
    }
    let test = match json_array(rest) {
        Some(Ok(argv)) if !argv.is_empty() => Command { argv, shell_form: false },
        Some(Ok(_)) => {
            notes.push(note(at, "HEALTHCHECK CMD has no command; ignored".to_string()));
            return;
        }
        Some(Err(e)) => {
            notes.push(note(at, format!("HEALTHCHECK CMD {e}; ignored")));
            return;
        }
        None => Command { argv: vec![rest.trim().to_string()], shell_form: true },
    };
    let mut h = HealthConfig { test: Some(test), ..Default::default() };
    for flag in &ins.flags {
        let (name, value) = flag.trim_start_matches('-').split_once('=').unwrap_or((flag.as_str(), ""));
        let value = Some(value.trim_matches(|c| c == '"' || c == '\'').to_string()).filter(|v| !v.is_empty());
        match name {
            "interval" => h.interval = value,
            "timeout" => h.timeout = value,
            "start-period" => h.start_period = value,
            "start-interval" | "retries" => {}
            _ => notes.push(note(at, format!("HEALTHCHECK has no flag {flag}"))),
        }
    }
    config.health = Some(h);
}

/// A JSON array of strings, as BuildKit reads one: `None` when the text is not JSON (so it is
/// the shell form), an error when it is an array holding something else than strings.
fn json_array(args: &str) -> Option<Result<Vec<String>, String>> {
    let text = args.trim_start();
    if !text.starts_with('[') {
        return None;
    }
    // BuildKit decodes the first JSON value and ignores what follows it.
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Vec<Value>>();
    let values = values.next()?.ok()?;
    Some(
        values
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("is a JSON array holding {other}, not only strings (Docker refuses it)")),
            })
            .collect(),
    )
}

// ---- what a health check requests, what a command listens on ----

/// The path and port of the URL a health check requests.
fn health_target(test: &str, env: &[(String, String)]) -> (Option<String>, Option<u16>) {
    let Some((https, url)) = find_url(test) else { return (None, None) };
    // An IPv6 host is in brackets; past it, a URL ends where the shell or the JSON around it goes on.
    let host_end = if url.starts_with('[') { url.find(']').map_or(0, |i| i + 1) } else { 0 };
    let end = url
        .get(host_end..)
        .and_then(|rest| {
            rest.find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ']' | ')' | '|' | ';' | '&' | '<' | '>')
            })
        })
        .map_or(url.len(), |i| host_end + i);
    let url = url.get(..end).unwrap_or(url);
    let (authority, path) = match url.find(['/', '?', '#']) {
        Some(i) => (url.get(..i).unwrap_or(url), url.get(i..).unwrap_or("/")),
        None => (url, "/"),
    };
    let port = match authority_port(authority) {
        None => Some(if https { 443 } else { 80 }),
        Some(p) => expand_known(p, env).and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = if path.is_empty() { Some("/".to_string()) } else { expand_known(path, env) };
    (path.filter(|p| p.starts_with('/') && !p.contains(char::is_whitespace)), port)
}

/// What follows `http://` or `https://` (the first URL to a local host, else the first URL), else
/// a bare `localhost:3000/…` (curl and wget take one).
fn find_url(test: &str) -> Option<(bool, &str)> {
    let mut urls: Vec<(usize, bool, &str)> = ["http://", "https://"]
        .iter()
        .flat_map(|scheme| {
            test.match_indices(scheme).map(|(i, s)| (i, s.starts_with("https"), test.get(i + s.len()..)))
        })
        .filter_map(|(i, https, rest)| Some((i, https, rest?)))
        .collect();
    urls.sort_by_key(|(i, _, _)| *i);
    let local = |rest: &str| {
        LOCAL_HOSTS.iter().any(|h| {
            rest.starts_with(h) && !rest[h.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '.' || c == '-')
        })
    };
    if let Some((_, https, rest)) = urls.iter().find(|(_, _, rest)| local(rest)).or(urls.first()) {
        return Some((*https, rest));
    }
    test.char_indices().find_map(|(i, _)| {
        let before = test.get(..i)?;
        if before.ends_with(|p: char| p.is_alphanumeric() || matches!(p, '.' | '-' | '_' | '/' | '@')) {
            return None;
        }
        let here = test.get(i..)?;
        let host = LOCAL_HOSTS.iter().find(|h| here.starts_with(**h))?;
        here.get(host.len()..)?.starts_with([':', '/']).then_some((false, here))
    })
}

/// The port part of `host:port` or `[v6]:port`, if there is one.
fn authority_port(authority: &str) -> Option<&str> {
    let host_end = if authority.starts_with('[') { authority.find(']').map_or(0, |i| i + 1) } else { 0 };
    let rest = authority.get(host_end..)?;
    // The first colon: the port may be `${PORT:-3000}`.
    let i = rest.find(':')?;
    rest.get(i + 1..).filter(|p| !p.is_empty())
}

/// `s` with its `$VAR`s expanded from `env`; `None` if one is not set there.
fn expand_known(s: &str, env: &[(String, String)]) -> Option<String> {
    if !s.contains('$') {
        return Some(s.to_string());
    }
    let unknown = std::cell::Cell::new(false);
    let value = expand_word(s, '\\', &|n| {
        let v = lookup(env, &[], n);
        if v.is_none() {
            unknown.set(true);
        }
        v
    });
    (!unknown.get()).then_some(value)
}

/// A port the command names: `--port 8000`, `--port=8000`, `-p 8000`, `--server.port=8000`,
/// `-b 0.0.0.0:8000`, `0.0.0.0:8000`, `:8000`, `http://0.0.0.0:8000`, `PORT=8000`.
fn listen_port(argv: &[String], env: &[(String, String)]) -> Option<Listen> {
    let words: Vec<String> = argv
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .map(|w| expand_known(w, env).unwrap_or_default())
        .collect();
    let number = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).map(String::as_str).unwrap_or("");
        let lower = w.to_ascii_lowercase();
        if let Some(option) = lower.strip_prefix('-') {
            let (name, value) = match option.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (option, None),
            };
            let name = name.trim_start_matches('-');
            let takes_port = name.ends_with("port") || name == "p";
            let takes_address = matches!(name, "b" | "bind" | "listen" | "addr" | "address" | "http" | "s");
            if takes_port || takes_address {
                let (value, evidence) = match value {
                    Some(v) => (v.to_string(), w.clone()),
                    None => (next.to_string(), format!("{w} {next}")),
                };
                let port = if takes_port { number(&value) } else { address_port(&value) };
                if let Some(port) = port {
                    return Some(Listen { port, evidence });
                }
            }
            continue;
        }
        if let Some(port) = address_port(w) {
            return Some(Listen { port, evidence: w.clone() });
        }
        if let Some(port) = w.strip_prefix("PORT=").and_then(number) {
            return Some(Listen { port, evidence: w.clone() });
        }
    }
    None
}

/// The port of a listening address: `0.0.0.0:8000`, `:8000`, `[::]:8000`, `localhost:8000`,
/// `http://0.0.0.0:8000`, `tcp://…`.
fn address_port(s: &str) -> Option<u16> {
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split('/').next().unwrap_or(s);
    let (host, port) = s.rsplit_once(':')?;
    let local = matches!(host, "" | "0.0.0.0" | "127.0.0.1" | "localhost" | "[::]" | "::" | "[::1]" | "*");
    if !local {
        return None;
    }
    port.parse::<u16>().ok().filter(|p| *p > 0)
}

// ---- variables, as BuildKit's shell lexer expands them ----

/// `s` as one word: quotes removed, escapes applied, variables expanded (an unset one is empty).
fn expand_word(s: &str, escape: char, vars: &dyn Fn(&str) -> Option<String>) -> String {
    lex(s, escape, vars, false).concat()
}

/// The words of `s`, split at unquoted whitespace, including whitespace an unquoted variable
/// brings.
fn expand_words(s: &str, escape: char, vars: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    lex(s, escape, vars, true)
}

fn lex(s: &str, escape: char, vars: &dyn Fn(&str) -> Option<String>, split: bool) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == escape {
            if let Some(&n) = chars.get(i + 1) {
                word.push(n);
                in_word = true;
            }
            i += 2;
            continue;
        }
        match c {
            '\'' => {
                i += 1;
                while let Some(&q) = chars.get(i) {
                    i += 1;
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
                in_word = true;
            }
            '"' => {
                i += 1;
                while let Some(&q) = chars.get(i) {
                    if q == '"' {
                        i += 1;
                        break;
                    }
                    if q == escape && chars.get(i + 1).is_some_and(|n| matches!(n, '"' | '$') || *n == escape) {
                        word.extend(chars.get(i + 1));
                        i += 2;
                    } else if q == '$' {
                        let (value, next) = dollar(&chars, i, escape, vars);
                        word.push_str(&value);
                        i = next;
                    } else {
                        word.push(q);
                        i += 1;
                    }
                }
                in_word = true;
            }
            '$' => {
                let (value, next) = dollar(&chars, i, escape, vars);
                i = next;
                for v in value.chars() {
                    if split && v.is_whitespace() {
                        if in_word {
                            words.push(std::mem::take(&mut word));
                            in_word = false;
                        }
                    } else {
                        word.push(v);
                        in_word = true;
                    }
                }
            }
            c if split && c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                i += 1;
            }
            c => {
                word.push(c);
                in_word = true;
                i += 1;
            }
        }
    }
    if in_word || !split {
        words.push(word);
    }
    words
}

/// Expands the `$NAME` or `${NAME…}` at `chars[i]`; returns the value and where the text goes on.
fn dollar(chars: &[char], i: usize, escape: char, vars: &dyn Fn(&str) -> Option<String>) -> (String, usize) {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let mut j = i + 2;
            let name: String = chars.iter().skip(j).take_while(|c| is_name(c)).collect();
            j += name.chars().count();
            // The word after an operator runs to the matching `}`.
            let mut depth = 0usize;
            let mut k = j;
            while let Some(&c) = chars.get(k) {
                if c == escape {
                    k += 2;
                    continue;
                }
                if c == '$' && chars.get(k + 1) == Some(&'{') {
                    depth += 1;
                    k += 1;
                } else if c == '}' {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                }
                k += 1;
            }
            let inner: String = chars.get(j..k.min(chars.len())).unwrap_or(&[]).iter().collect();
            let value = vars(&name);
            let (op, word) = if let Some(w) = inner.strip_prefix(":-") {
                (":-", w)
            } else if let Some(w) = inner.strip_prefix(":+") {
                (":+", w)
            } else if let Some(w) = inner.strip_prefix(":?") {
                (":?", w)
            } else if let Some(w) = inner.strip_prefix('-') {
                ("-", w)
            } else if let Some(w) = inner.strip_prefix('+') {
                ("+", w)
            } else {
                ("", inner.as_str())
            };
            let word = || expand_word(word, escape, vars);
            let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
            let out = match op {
                ":-" if !set_nonempty => word(),
                "-" if value.is_none() => word(),
                ":+" => {
                    if set_nonempty {
                        word()
                    } else {
                        String::new()
                    }
                }
                "+" => {
                    if value.is_some() {
                        word()
                    } else {
                        String::new()
                    }
                }
                // `${V:?msg}`, and the pattern operators (`#`, `%`, `/`): the value as it is.
                _ => value.unwrap_or_default(),
            };
            (out, k + 1)
        }
        Some(c) if is_name(c) => {
            let name: String = chars.iter().skip(i + 1).take_while(|c| is_name(c)).collect();
            let next = i + 1 + name.chars().count();
            (vars(&name).unwrap_or_default(), next)
        }
        _ => ("$".to_string(), i + 1),
    }
}

/// Words split at unquoted whitespace, quotes and escapes kept (BuildKit's `parseWords`).
fn split_raw(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            word.push(c);
            word.extend(chars.next());
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                continue;
            }
            _ => {}
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

// ---- from text to instructions, as BuildKit's parser reads it ----

#[derive(Debug, Clone, PartialEq, Eq)]
struct Instruction {
    /// Upper case.
    keyword: String,
    /// Leading `--name=value` words.
    flags: Vec<String>,
    /// The rest, continuations joined.
    args: String,
    /// The line it starts on, from 1.
    line: usize,
}

struct Parsed {
    instructions: Vec<Instruction>,
    escape: char,
    notes: Vec<Note>,
}

fn parse(text: &str) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut escape = '\\';
    let mut notes = Vec::new();
    let mut instructions = Vec::new();
    let mut directives = true;
    let mut i = 0;
    while let Some(raw) = lines.get(i) {
        i += 1;
        let start = i;
        let line = raw.trim_start();
        if directives {
            if let Some((name, value)) = directive(line) {
                if name == "escape" {
                    match value {
                        "\\" => escape = '\\',
                        "`" => escape = '`',
                        _ => notes.push(note(start, format!("escape must be \\ or `, not {value:?}"))),
                    }
                }
                continue;
            }
            directives = false;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (mut joined, mut more) = continuation(line, escape);
        while more && let Some(next) = lines.get(i) {
            i += 1;
            let trimmed = next.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (part, again) = continuation(next, escape);
            joined.push_str(&part);
            more = again;
        }
        let (keyword, flags, args) = split_command(&joined);
        if takes_heredocs(&keyword, &args) && joined.contains("<<") {
            for (name, chomp) in heredocs(&joined, escape) {
                let mut ended = false;
                while let Some(body) = lines.get(i) {
                    i += 1;
                    let end = if chomp { body.trim_start_matches('\t') } else { body };
                    if end == name {
                        ended = true;
                        break;
                    }
                }
                if !ended {
                    notes.push(note(start, format!("heredoc <<{name} is never closed (Docker refuses it)")));
                }
            }
        }
        instructions.push(Instruction { keyword, flags, args, line: start });
    }
    Parsed { instructions, escape, notes }
}

/// `# name=value` at the top of the file: a parser directive.
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    let name = name.to_ascii_lowercase();
    let value = value.trim();
    // BuildKit knows these; any other `# x=y` is a comment, and ends the directives.
    (matches!(name.as_str(), "syntax" | "escape" | "check") && !value.is_empty()).then_some((name, value))
}

/// The line without its trailing escape, and whether it continues on the next line: it does when
/// its last non-blank character is the escape character, not itself escaped.
fn continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape)
        && !before.ends_with(escape)
    {
        return (before.to_string(), true);
    }
    (line.to_string(), false)
}

/// The keyword (upper case), the leading `--flags`, and the rest.
fn split_command(line: &str) -> (String, Vec<String>, String) {
    let line = line.trim();
    let (keyword, mut rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let mut flags = Vec::new();
    loop {
        rest = rest.trim_start();
        if !rest.starts_with("--") {
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        flags.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    (keyword.to_ascii_uppercase(), flags, rest.trim().to_string())
}

/// RUN, COPY and ADD (also behind ONBUILD) take heredocs, in their shell form only.
fn takes_heredocs(keyword: &str, args: &str) -> bool {
    let (keyword, args) = if keyword == "ONBUILD" {
        let (k, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
        (k.to_ascii_uppercase(), rest)
    } else {
        (keyword.to_string(), args)
    };
    matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") && !matches!(json_array(args), Some(Ok(_)))
}

/// The heredocs a line opens (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`), each as its terminator
/// and whether leading tabs are stripped before comparing with it.
fn heredocs(line: &str, escape: char) -> Vec<(String, bool)> {
    split_raw(line, escape)
        .iter()
        .filter_map(|word| {
            let rest = word.trim_start_matches(|c: char| c.is_ascii_digit()).strip_prefix("<<")?;
            let (chomp, rest) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            if rest.is_empty() || rest.contains('<') {
                return None;
            }
            let name: String = {
                let mut out = String::new();
                let mut chars = rest.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' | '\'' => {}
                        c if c == escape => out.extend(chars.next()),
                        c => out.push(c),
                    }
                }
                out
            };
            (!name.is_empty()).then_some((name, chomp))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_the_last_stage() {
        let f = read(
            "FROM node:20 AS build\nEXPOSE 9999\nCMD [\"npm\", \"run\", \"build\"]\n\
             FROM node:20-alpine\nUSER node\nEXPOSE 4000/tcp 9229\n\
             HEALTHCHECK --interval=30s --timeout=5s \\\n  CMD wget -qO- http://localhost:4000/api/health || exit 1\n\
             CMD [\"node\", \"dist/server.js\"]\n",
        );
        assert_eq!(f.stages, 2);
        assert_eq!(f.base.as_deref(), Some("node:20-alpine"));
        assert_eq!(f.port(), Some(4000));
        let h = f.health.as_ref().unwrap();
        assert_eq!((h.path.as_deref(), h.port), (Some("/api/health"), Some(4000)));
        assert_eq!(
            (h.interval.as_deref(), h.timeout.as_deref(), h.start_period.as_deref()),
            (Some("30s"), Some("5s"), None)
        );
        assert_eq!(f.command(), Some(s(&["node", "dist/server.js"])));
        assert_eq!(f.user.as_deref(), Some("node"));
        assert!(f.notes.is_empty(), "{:?}", f.notes);
    }

    #[test]
    fn the_first_tcp_port_counts_and_udp_is_kept_apart() {
        let f = read("FROM x\nEXPOSE 53/udp\nEXPOSE 8080 9090/TCP\nEXPOSE 7000-7010\n");
        assert_eq!(f.port(), Some(8080));
        let specs: Vec<String> = f.exposed.iter().map(Exposed::spec).collect();
        assert_eq!(specs, ["53/udp", "8080", "9090", "7000-7010"]);
        let f = read("FROM x\nEXPOSE 53/udp 5353/sctp\n");
        assert_eq!(f.port(), None);
        assert_eq!(f.exposed.len(), 2);
        let f = read("FROM x\nEXPOSE 8000-8010/tcp\n");
        assert_eq!(f.port(), Some(8000));
        let f = read("FROM x\nEXPOSE http 0 9-3 80/quic\n");
        assert_eq!(f.port(), None);
        assert_eq!(f.notes.len(), 4, "{:?}", f.notes);
    }

    #[test]
    fn shell_form_and_none() {
        let f = read("FROM x\n# comment\ncmd node index.js\nHEALTHCHECK NONE\nexpose $PORT\n");
        assert_eq!(f.command(), Some(s(&["/bin/sh", "-c", "node index.js"])));
        assert_eq!(f.cmd.as_ref().map(|c| c.shell_form), Some(true));
        assert_eq!(f.health, None);
        assert_eq!(f.port(), None);
    }

    #[test]
    fn entrypoint_and_cmd_combine_as_docker_combines_them() {
        let f = read("FROM x\nENTRYPOINT [\"/bin/app\"]\nCMD [\"--serve\"]\n");
        assert_eq!(f.command(), Some(s(&["/bin/app", "--serve"])));
        // CMD before ENTRYPOINT in the same stage is kept.
        let f = read("FROM x\nCMD [\"--serve\"]\nENTRYPOINT [\"/bin/app\"]\n");
        assert_eq!(f.command(), Some(s(&["/bin/app", "--serve"])));
        // exec ENTRYPOINT + shell CMD: the CMD behind the shell, as arguments.
        let f = read("FROM x\nENTRYPOINT [\"tini\", \"--\"]\nCMD node server.js\n");
        assert_eq!(f.command(), Some(s(&["tini", "--", "/bin/sh", "-c", "node server.js"])));
        // shell ENTRYPOINT ignores CMD.
        let f = read("FROM x\nENTRYPOINT exec /bin/app --serve\nCMD [\"--ignored\"]\n");
        assert_eq!(f.command(), Some(s(&["/bin/sh", "-c", "exec /bin/app --serve"])));
        assert!(f.cmd_ignored());
        // An ENTRYPOINT resets the CMD the stage inherited.
        let f = read("FROM x AS base\nCMD [\"serve\"]\nFROM base\nENTRYPOINT [\"/bin/app\"]\n");
        assert_eq!(f.command(), Some(s(&["/bin/app"])));
        // … but not one set after it.
        let f = read("FROM x AS base\nCMD [\"serve\"]\nFROM base\nENTRYPOINT [\"/bin/app\"]\nCMD [\"run\"]\n");
        assert_eq!(f.command(), Some(s(&["/bin/app", "run"])));
        // ENTRYPOINT [] clears it.
        let f = read("FROM x AS base\nENTRYPOINT [\"/e\"]\nFROM base\nENTRYPOINT []\nCMD [\"a\"]\n");
        assert_eq!(f.command(), Some(s(&["a"])));
        // CMD [] is no command.
        assert_eq!(read("FROM x\nCMD []\n").command(), None);
        // SHELL changes the shell of the shell form.
        let f = read("FROM x\nSHELL [\"/bin/bash\", \"-euo\", \"pipefail\", \"-c\"]\nCMD echo hi\n");
        assert_eq!(f.command(), Some(s(&["/bin/bash", "-euo", "pipefail", "-c", "echo hi"])));
        // A JSON array that is not all strings is refused, not read as shell form.
        let f = read("FROM x\nCMD [\"a\"]\nCMD [\"b\", 1]\n");
        assert_eq!(f.command(), Some(s(&["a"])));
        assert_eq!(f.notes.len(), 1);
        // Broken JSON is shell form, as in Docker.
        let f = read("FROM x\nCMD [\"a\", \n");
        assert_eq!(f.command(), Some(s(&["/bin/sh", "-c", "[\"a\","])));
    }

    #[test]
    fn a_stage_from_an_earlier_stage_inherits_its_config() {
        let f = read(
            "ARG BASE=runtime\nFROM alpine:3.20 AS Runtime\nUSER app\nEXPOSE 3000\nENV PORT=3000\n\
             HEALTHCHECK CMD curl -f http://localhost:$PORT/up\nCMD [\"serve\"]\n\
             FROM golang AS build\nEXPOSE 9999\nUSER root\n\
             FROM ${BASE}\nCOPY --from=build /out /app\n",
        );
        assert_eq!(f.stages, 3);
        assert_eq!(f.base.as_deref(), Some("alpine:3.20"));
        assert_eq!(f.port(), Some(3000));
        assert_eq!(f.user.as_deref(), Some("app"));
        assert_eq!(f.command(), Some(s(&["serve"])));
        let h = f.health.unwrap();
        assert_eq!((h.path.as_deref(), h.port), (Some("/up"), Some(3000)));
        // A stage from a registry image inherits nothing.
        let f = read("FROM x AS a\nEXPOSE 1\nUSER a\nFROM y\n");
        assert_eq!((f.port(), f.user), (None, None));
    }

    #[test]
    fn variables_expand_where_docker_expands_them() {
        let f = read("FROM x\nARG PORT=8080\nEXPOSE ${PORT}\n");
        assert_eq!(f.port(), Some(8080));
        let f = read("ARG PORT=7000\nFROM x\nEXPOSE $PORT\n");
        assert_eq!(f.port(), None, "a global ARG is not seen in a stage that does not declare it");
        let f = read("ARG PORT=7000\nFROM x\nARG PORT\nEXPOSE $PORT\n");
        assert_eq!(f.port(), Some(7000));
        let f = read("FROM x\nARG P\nEXPOSE ${P:-5000} ${Q:+6000}\n");
        assert_eq!(f.port(), Some(5000));
        assert_eq!(f.exposed.len(), 1);
        let f = read("FROM x\nARG PORTS=\"53/udp 8443\"\nEXPOSE $PORTS\n");
        assert_eq!(f.port(), Some(8443));
        let f = read("FROM x\nARG PORT=1\nENV PORT=2\nEXPOSE $PORT\n");
        assert_eq!(f.port(), Some(2), "ENV wins over ARG");
        let f = read("FROM x\nENV A=1\nENV A=5 B=${A}0\nEXPOSE $B\n");
        assert_eq!(f.port(), Some(10), "one ENV sees the values from before it");
        let f = read("FROM x\nENV APP_USER app user\nENV LEGACY 1 2\nUSER ${APP_USER}\n");
        assert_eq!(f.user.as_deref(), Some("app user"));
        let f = read("FROM x\nARG UID=0\nUSER ${UID}:0\n");
        assert!(is_root(f.user.as_deref().unwrap()));
        let f = read("FROM x\nEXPOSE \\$PORT\n");
        assert_eq!(f.port(), None);
    }

    #[test]
    fn users() {
        for u in ["root", "0", "0:0", "root:root", "root:staff"] {
            assert!(is_root(u), "{u}");
        }
        for u in ["node", "1000", "1000:0", "nobody:root", "rooty"] {
            assert!(!is_root(u), "{u}");
        }
    }

    #[test]
    fn continuations_comments_and_the_escape_directive() {
        let f = read(
            "# syntax=docker/dockerfile:1\n\n# a comment\nFROM x\nEXPOSE \\\n  # a comment in a continuation\n\n  8080\n\
             CMD [\"node\", \\\n     \"server.js\"]\n  # indented comment\nUSER no\\\nde\n",
        );
        assert_eq!(f.port(), Some(8080));
        assert_eq!(f.command(), Some(s(&["node", "server.js"])));
        assert_eq!(f.user.as_deref(), Some("node"), "continuations join without a space, as Docker joins them");
        let f = read(
            "# escape=`\nFROM mcr.microsoft.com/windows\nEXPOSE `\n  80\nUSER C:\\Users\\app\nCMD [\"app.exe\"]\n",
        );
        assert_eq!(f.port(), Some(80));
        assert_eq!(f.user.as_deref(), Some("C:\\Users\\app"));
        // A directive after a comment is a comment.
        let f = read("# hello\n# escape=`\nFROM x\nEXPOSE `\n80\n");
        assert_eq!(f.port(), None);
        // An escaped escape does not continue the line.
        let f = read("FROM x\nRUN echo \\\\\nEXPOSE 81\n");
        assert_eq!(f.port(), Some(81));
    }

    #[test]
    fn heredocs_are_skipped() {
        let f = read(
            "FROM x\nRUN <<EOF\nFROM evil\nEXPOSE 9999\nEOF\nCOPY <<-\"CONF\" <<'TWO' /etc/\n\tUSER root\n\tCONF\nCMD [\"no\"]\nTWO\n\
             RUN python3 <<PY > /out\nprint('EXPOSE 1')\nPY\nEXPOSE 8080\nCMD [\"yes\"]\n",
        );
        assert_eq!(f.stages, 1);
        assert_eq!(f.port(), Some(8080));
        assert_eq!(f.user, None);
        assert_eq!(f.command(), Some(s(&["yes"])));
        assert!(f.notes.is_empty(), "{:?}", f.notes);
        // Not in CMD, nor in JSON form.
        let f = read("FROM x\nRUN [\"sh\", \"-c\", \"cat <<EOF\"]\nEXPOSE 80\n");
        assert_eq!(f.port(), Some(80));
        let f = read("FROM x\nRUN <<EOF\nEXPOSE 80\n");
        assert_eq!((f.port(), f.notes.len()), (None, 1));
        // A heredoc on a continued line.
        let f = read("FROM x\nRUN cat \\\n  <<EOF\nEXPOSE 1\nEOF\nEXPOSE 2\n");
        assert_eq!(f.port(), Some(2));
    }

    #[test]
    fn healthchecks() {
        let f = read(
            "FROM x\nHEALTHCHECK --interval=30s CMD curl -f http://localhost:3000/a\nHEALTHCHECK CMD [\"wget\", \"-qO-\", \"http://127.0.0.1/b?x=1\"]\n",
        );
        let h = f.health.unwrap();
        assert_eq!((h.path.as_deref(), h.port, h.interval), (Some("/b"), Some(80), None), "replaced whole");
        let h = read("FROM x\nHEALTHCHECK CMD curl -fsS localhost:8080/healthz\n").health.unwrap();
        assert_eq!((h.path.as_deref(), h.port), (Some("/healthz"), Some(8080)));
        let h = read("FROM x\nHEALTHCHECK CMD pg_isready -U app\n").health.unwrap();
        assert_eq!((h.path, h.port), (None, None));
        let h = read("FROM x\nHEALTHCHECK CMD curl https://[::1]/\n").health.unwrap();
        assert_eq!((h.path.as_deref(), h.port), (Some("/"), Some(443)));
        let h = read("FROM x\nHEALTHCHECK CMD curl http://localhost:${PORT}/h\n").health.unwrap();
        assert_eq!((h.path.as_deref(), h.port), (Some("/h"), None), "the port is not known");
        let h = read("FROM x\nHEALTHCHECK CMD curl http://localhost:${PORT:-3000}/h\n").health.unwrap();
        assert_eq!((h.path.as_deref(), h.port), (Some("/h"), None), "the platform sets PORT");
        let h = read("FROM x\nENV PORT=4000\nHEALTHCHECK CMD curl http://localhost:${PORT:-3000}/h\n").health.unwrap();
        assert_eq!(h.port, Some(4000));
        let h = read("FROM x\nHEALTHCHECK CMD curl -H 'Referer: https://example.com/' http://localhost:81/h\n")
            .health
            .unwrap();
        assert_eq!((h.path.as_deref(), h.port), (Some("/h"), Some(81)), "the first URL");
        assert_eq!(read("FROM x AS a\nHEALTHCHECK CMD true\nFROM a\nHEALTHCHECK NONE\n").health, None);
        let f = read("FROM x\nHEALTHCHECK curl http://x/\n");
        assert_eq!((f.health, f.notes.len()), (None, 1));
    }

    #[test]
    fn listen_ports() {
        let env = vec![("PORT".to_string(), "8000".to_string())];
        let port = |argv: &[&str]| listen_port(&s(argv), &env).map(|l| (l.port, l.evidence));
        assert_eq!(
            port(&["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8080"]),
            Some((8080, "--port 8080".into()))
        );
        assert_eq!(
            port(&["/bin/sh", "-c", "gunicorn -b 0.0.0.0:$PORT app:app"]),
            Some((8000, "-b 0.0.0.0:8000".into()))
        );
        assert_eq!(port(&["java", "-Dserver.port=9090", "-jar", "app.jar"]), Some((9090, "-Dserver.port=9090".into())));
        assert_eq!(port(&["php", "-S", "0.0.0.0:8000", "-t", "public"]), Some((8000, "-S 0.0.0.0:8000".into())));
        assert_eq!(
            port(&["serve", "-s", "build", "-l", "tcp://0.0.0.0:3000"]),
            Some((3000, "tcp://0.0.0.0:3000".into()))
        );
        assert_eq!(port(&["/bin/sh", "-c", "PORT=5000 node server.js"]), Some((5000, "PORT=5000".into())));
        assert_eq!(port(&["node", "server.js"]), None);
        assert_eq!(port(&["mkdir", "-p", "/x", "redis:6379"]), None);
    }

    /// Every prefix of every Dockerfile of the corpus (tests/dockerfiles), and odd bits of text.
    #[test]
    fn reads_anything_without_panicking() {
        fn dockerfiles(dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dockerfiles(&path, out);
                } else if path.file_name().is_some_and(|n| n == "Dockerfile") {
                    out.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut texts = Vec::new();
        dockerfiles(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles"), &mut texts);
        assert!(texts.len() >= 20);
        for odd in [
            "\\",
            "`",
            "FROM",
            "FROM x\nEXPOSE ${",
            "FROM x\nUSER ${A:-${B",
            "FROM x\nCMD [",
            "FROM x\nRUN <<",
            "é\\\né",
        ] {
            texts.push(odd.to_string());
        }
        for text in &texts {
            for (i, _) in text.char_indices() {
                let _ = read(&text[..i]);
            }
            let f = read(text);
            let _ = (f.command(), f.listen(), f.port());
        }
    }

    #[test]
    fn lexer() {
        let vars = |n: &str| match n {
            "A" => Some("1".to_string()),
            "E" => Some(String::new()),
            "S" => Some("x y".to_string()),
            _ => None,
        };
        let w = |t: &str| expand_word(t, '\\', &vars);
        assert_eq!(w("$A-${A}'$A'\"$A\"\\$A"), "1-1$A1$A");
        assert_eq!(w("${E:-d} ${E-d} ${U-d} ${A:+y} ${U:+y} ${A+y}|"), "d  d y  y|");
        assert_eq!(w("${U:-${A}0}"), "10");
        assert_eq!(expand_words("a \"b c\" $S ''", '\\', &vars), ["a", "b c", "x", "y", ""]);
        assert_eq!(split_raw("A=\"x y\" B='z w' C=a\\ b", '\\'), ["A=\"x y\"", "B='z w'", "C=a\\ b"]);
        assert_eq!(
            heredocs("RUN <<EOF 3<<-\"X\" cat <<'Y' <<", '\\'),
            [("EOF".into(), false), ("X".into(), true), ("Y".into(), false)]
        );
    }
}
