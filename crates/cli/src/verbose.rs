//! `-v` and `-vv`: what shipit sends, as it sends it, on stderr.
//!
//! - `-v` prints one line per API request, whichever client made it (the platforms and the
//!   registry all pass through [`shipit_core::http::Observed`]):
//!   `-> GET https://api.machines.dev/v1/apps/x  200 OK  143ms`; a request that got no answer
//!   says why (`failed: connection refused`) with its causes under it. Every error shipit ends
//!   on is followed by its whole cause chain ([`causes`]).
//! - `-vv` adds each retry: the attempt, why, and how long it waits (a server's Retry-After
//!   honoured, capped): `   retry 1/5 in 1.0s (Retry-After 1s): Fly API error 503: busy`.
//!
//! Never a header or a body. Every line goes through [`crate::platforms::scrub`], and always to
//! stderr: with `--json`, stdout stays NDJSON only.

use std::time::Duration;

use shipit_core::http::{Observer, Outcome, Request, Retry, set_observer};

use crate::cli::Cli;
use crate::platforms::scrub;

/// Prints requests, and at level 2 retries, to stderr.
struct Stderr {
    level: u8,
}

impl Observer for Stderr {
    fn request(&self, r: &Request) {
        let note = r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        eprintln!("{}", scrub(&format!("-> {} {}{note}  {}  {}", r.method, r.url, r.outcome, took(r.elapsed))));
        if let Outcome::Failed { causes, .. } = &r.outcome {
            for cause in causes {
                eprintln!("   caused by: {}", scrub(cause));
            }
        }
    }

    fn retry(&self, r: &Retry) {
        if self.level < 2 {
            return;
        }
        let of = if r.max_attempts > 0 { format!("{}/{}", r.attempt, r.max_attempts) } else { r.attempt.to_string() };
        let asked = r.retry_after.map(|a| format!(" (Retry-After {})", took(a))).unwrap_or_default();
        eprintln!("{}", scrub(&format!("   retry {of} in {}{asked}: {}", took(r.wait), r.reason)));
    }
}

/// Installs the observer for `-v`/`-vv` (nothing without them, or with `-q`).
pub fn install(cli: &Cli) {
    if cli.verbose > 0 && !cli.quiet {
        set_observer(Box::new(Stderr { level: cli.verbose }));
    }
}

/// At `-v`, the causes of `error` under its message: `  caused by: …`, one per line, each once,
/// scrubbed. Nothing without `-v`.
pub fn causes(cli: &Cli, error: &(dyn std::error::Error + 'static)) {
    if cli.verbose == 0 {
        return;
    }
    for cause in shipit_core::http::cause_chain(error) {
        eprintln!("  caused by: {}", scrub(&cause));
    }
}

/// `143ms`, `1.2s`, `2m05s`.
fn took(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", d.as_secs_f64()),
        _ => format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(took(Duration::from_millis(143)), "143ms");
        assert_eq!(took(Duration::from_millis(1250)), "1.2s");
        assert_eq!(took(Duration::from_secs(125)), "2m05s");
    }
}
