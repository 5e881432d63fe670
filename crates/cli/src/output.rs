//! Turning events into output: progress bars in a terminal, timestamped lines otherwise,
//! NDJSON with `--json`, and annotations plus a job summary in GitHub Actions.
//!
//! Rule: stdout carries only the result (the summary, or JSON in `--json` mode); progress,
//! warnings and human text go to stderr. Nothing here ever sees a secret value: events carry
//! secret names only, the event sink is behind the process's scrubber, and the summary, every
//! JSON line and every line [`Output::say`] prints are scrubbed once more (see
//! [`crate::platforms`]'s "Secrets never leave").

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use shipit_core::engine::{Outcome, ServiceResult, Summary};
use shipit_core::{Event, Events};

use crate::cli::Cli;
use crate::style::Tone;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Json,
    Tty,
    Plain,
}

/// Where a command's output goes.
pub struct Output {
    mode: Mode,
    quiet: bool,
    github: bool,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    multi: MultiProgress,
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", hex.chars().take(12).collect::<String>()),
        None => digest.to_string(),
    }
}

/// Escapes a GitHub Actions workflow-command message.
fn gha(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

impl Output {
    /// Output for this invocation.
    pub fn new(cli: &Cli) -> Arc<Self> {
        let mode = if cli.json {
            Mode::Json
        } else if std::io::stderr().is_terminal() && !cli.quiet {
            Mode::Tty
        } else {
            Mode::Plain
        };
        let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        Arc::new(Self {
            mode,
            quiet: cli.quiet,
            github,
            bars: Mutex::new(BTreeMap::new()),
            multi: MultiProgress::new(),
        })
    }

    /// Whether `--json` is on.
    pub fn json(&self) -> bool {
        self.mode == Mode::Json
    }

    /// An event sink that reports here, behind the process's scrubber: every event's text is
    /// scrubbed before it is shown.
    pub fn events(self: &Arc<Self>) -> Events {
        let me = self.clone();
        Events::new(move |e| me.on_event(e)).scrubbed(crate::platforms::scrubber())
    }

    /// In `--json` mode, prints `value` (an object) as the event `name` (see [`crate::report`]).
    pub fn json_event(&self, name: &str, value: serde_json::Value) {
        if self.mode == Mode::Json {
            crate::report::event(name, value);
        }
    }

    /// A line of human text on stderr (kept with `-q` only when `always`), scrubbed.
    pub fn say(&self, text: &str) {
        let text = &crate::platforms::scrub(text);
        if !self.quiet {
            let _ = self.multi.println(text);
            if self.mode != Mode::Tty {
                eprintln!("{text}");
            }
        }
    }

    fn line(&self, service: Option<&str>, text: &str) {
        if self.quiet {
            return;
        }
        let prefix = service.map(|s| format!("{s}: ")).unwrap_or_default();
        match self.mode {
            Mode::Tty => {
                let _ = self.multi.println(format!("{prefix}{text}"));
            }
            _ => eprintln!("[{}] {prefix}{text}", now()),
        }
    }

    fn bar(&self, service: &str) -> Option<ProgressBar> {
        if self.mode != Mode::Tty {
            return None;
        }
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(service.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(service.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Some(bar.clone())
    }

    fn on_event(&self, e: &Event) {
        if self.mode == Mode::Json
            && let Ok(mut v) = serde_json::to_value(e)
            && let Some(obj) = v.as_object_mut()
        {
            obj.insert("ts".to_string(), serde_json::Value::String(now()));
            let name = obj.remove("event").and_then(|n| n.as_str().map(str::to_string)).unwrap_or_default();
            crate::report::event(&name, v);
        }
        // Annotations go to stderr, which the runner reads too: stdout is the result's.
        if self.github {
            match e {
                Event::Warning { service, message } => {
                    eprintln!(
                        "::warning title=shipit::{}",
                        gha(&format!("{}{message}", service.as_ref().map(|s| format!("{s}: ")).unwrap_or_default()))
                    );
                }
                Event::ServiceFailed { service, reason, .. } => {
                    eprintln!("::error title=shipit: {service} failed::{}", gha(reason))
                }
                Event::RollbackFailed { service, reason } => {
                    eprintln!("::error title=shipit: {service} could not be rolled back::{}", gha(reason))
                }
                _ => {}
            }
        }
        if self.mode == Mode::Json {
            return;
        }
        let text = match e {
            Event::Started { operation, release, env, platform, services } => {
                self.line(None, &format!("{operation} {release} to {env} on {platform}: {}", services.join(", ")));
                return;
            }
            Event::ImageResolved { image, digest, .. } => format!("{image} is {}", short(digest)),
            Event::Step { message, .. } => message.clone(),
            Event::InstanceUpdated { instance, region, digest, .. } => {
                format!(
                    "{instance}{} now runs {}",
                    region.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(),
                    short(digest)
                )
            }
            Event::InstanceHealthy { instance, .. } => format!("{instance} is healthy"),
            Event::ServiceSucceeded { digest, changed, .. } => {
                if *changed {
                    format!("{} on {}", crate::style::err(Tone::Good, "live and healthy"), short(digest))
                } else {
                    format!("already runs {}; nothing to change", short(digest))
                }
            }
            Event::ServiceFailed { kind, reason, .. } => {
                format!("{} ({}): {reason}", crate::style::err(Tone::Bad, "FAILED"), kind.as_str())
            }
            Event::RollbackStarted { release, digest, .. } => {
                format!(
                    "rolling back to {}{}",
                    short(digest),
                    release.as_ref().map(|r| format!(" (release {r})")).unwrap_or_default()
                )
            }
            Event::RollbackSucceeded { digest, .. } => {
                format!("{}: runs {} again", crate::style::err(Tone::Warn, "rolled back"), short(digest))
            }
            Event::RollbackFailed { reason, .. } => {
                format!("{}: {reason}", crate::style::err(Tone::Bad, "ROLLBACK FAILED"))
            }
            Event::Warning { message, .. } => format!("{} {message}", crate::style::warning_word()),
            _ => return,
        };
        let service = e.service();
        match service.and_then(|s| self.bar(s)) {
            Some(bar) => {
                let done = matches!(e, Event::ServiceSucceeded { .. } | Event::RollbackSucceeded { .. });
                let failed =
                    matches!(e, Event::ServiceFailed { .. } | Event::RollbackFailed { .. } | Event::Warning { .. });
                if failed || done {
                    let _ = self.multi.println(format!("{}: {text}", service.unwrap_or_default()));
                }
                bar.set_message(text);
            }
            None => self.line(service, &text),
        }
    }

    /// Finishes progress bars and prints the verdict (scrubbed), with the step summary in
    /// GitHub Actions.
    pub fn summary(&self, s: &Summary) {
        let s = &s.scrubbed(&crate::platforms::scrubber());
        for (_, bar) in std::mem::take(&mut *self.bars.lock().unwrap_or_else(|e| e.into_inner())) {
            bar.finish_and_clear();
        }
        // The result of the run, in its one summary event (printed by `main`); the error when it
        // failed is the headline, with the first failed service's kind.
        if let Ok(v) = serde_json::to_value(s) {
            crate::report::result(v);
        }
        if s.outcome != Outcome::Succeeded {
            let kind = s.services.iter().find_map(|r| r.error_kind).map(|k| k.as_str());
            let first = s.services.iter().find_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.service)));
            let message = match first {
                Some(why) => format!("{}: {why}", verdict_text(s)),
                None => verdict_text(s).to_string(),
            };
            crate::report::error(kind, &message, None);
        }
        if self.mode != Mode::Json {
            print!("{}", human_summary(s, crate::style::colour_stdout()));
        }
        if self.github {
            write_step_summary(s);
        }
    }
}

fn verdict_text(s: &Summary) -> &'static str {
    match s.outcome {
        Outcome::Succeeded => "live and healthy",
        Outcome::RolledBack => "FAILED — the previous release was put back",
        Outcome::Partial => "FAILED — the services that failed run their previous release; the others run the new one",
        Outcome::TimedOut => "TIMED OUT — the previous release was put back",
        Outcome::Failed => "FAILED — NOT every service could be put back",
        Outcome::Cancelled => "CANCELLED — stopped; see what runs below",
        Outcome::NothingChanged => "FAILED — nothing was changed",
    }
}

fn result_text(r: ServiceResult) -> &'static str {
    match r {
        ServiceResult::Deployed => "deployed",
        ServiceResult::Unchanged => "unchanged",
        ServiceResult::RolledBack => "failed, rolled back",
        ServiceResult::FailedUnchanged => "failed, nothing changed",
        ServiceResult::Failed => "FAILED, not restored",
        ServiceResult::RolledBackAtomic => "rolled back (atomic)",
        ServiceResult::Skipped => "skipped",
        ServiceResult::Cancelled => "cancelled",
    }
}

fn verdict_tone(o: Outcome) -> Tone {
    match o {
        Outcome::Succeeded => Tone::Good,
        Outcome::Cancelled => Tone::Warn,
        _ => Tone::Bad,
    }
}

fn result_tone(r: ServiceResult) -> Tone {
    match r {
        ServiceResult::Deployed | ServiceResult::Unchanged => Tone::Good,
        ServiceResult::Skipped | ServiceResult::Cancelled | ServiceResult::FailedUnchanged => Tone::Warn,
        _ => Tone::Bad,
    }
}

/// The verdict as text: one header line and one line per service; status words coloured when
/// `colour`.
pub fn human_summary(s: &Summary, colour: bool) -> String {
    let paint = |tone: Tone, text: &str| if colour { crate::style::paint_always(tone, text) } else { text.to_string() };
    let mut out = format!(
        "{} {} to {} on {}: {}\n",
        s.operation,
        s.release,
        s.env,
        s.platform,
        paint(verdict_tone(s.outcome), verdict_text(s))
    );
    let width = s.services.iter().map(|r| r.service.len()).max().unwrap_or(0);
    for r in &s.services {
        let runs = match (&r.running_digest, r.running_digests.as_slice()) {
            (Some(d), _) => short(d),
            (None, []) if r.status_error.is_some() => "unknown (its status could not be read)".to_string(),
            (None, []) => "nothing".to_string(),
            (None, many) => format!("mixed: {}", many.iter().map(|d| short(d)).collect::<Vec<_>>().join(", ")),
        };
        let release = r.running_release.as_ref().map(|x| format!(" (release {x})")).unwrap_or_default();
        let result = format!("{:22}", result_text(r.result));
        out.push_str(&format!(
            "  {:width$}  {}  runs {runs}{release}",
            r.service,
            paint(result_tone(r.result), &result)
        ));
        if let Some(err) = &r.error {
            out.push_str(&format!("  — {err}"));
        }
        out.push('\n');
        // A web service's public address, on a line of its own.
        if let Some(url) = &r.url {
            out.push_str(&format!("  {:width$}  {url}\n", ""));
        }
    }
    out
}

fn write_step_summary(s: &Summary) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else { return };
    let md = step_summary(s);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{md}");
    }
}

/// The verdict as the Markdown table appended to `$GITHUB_STEP_SUMMARY`.
pub fn step_summary(s: &Summary) -> String {
    let mut md = format!(
        "### shipit {} to `{}` on {}: {}\n\n| service | result | runs | release | url |\n|---|---|---|---|---|\n",
        s.operation,
        s.env,
        s.platform,
        verdict_text(s)
    );
    for r in &s.services {
        md.push_str(&format!(
            "| {} | {} | `{}` | {} | {} |\n",
            r.service,
            result_text(r.result),
            r.running_digest.as_deref().map(short).unwrap_or_else(|| if r.status_error.is_some() {
                "unknown"
            } else {
                "—"
            }
            .to_string()),
            r.running_release.as_deref().unwrap_or("—"),
            r.url.as_deref().unwrap_or("—")
        ));
    }
    md
}
