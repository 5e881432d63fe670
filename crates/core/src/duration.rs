//! Go-style durations, as fly.toml and the Fly API write them: `"500ms"`, `"30s"`, `"1h30m"`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written the Go way: one or more `<number><unit>` with no spaces.
///
/// Units are `ns`, `us` (or `µs`), `ms`, `s`, `m` and `h`; numbers may have a fraction
/// (`"1.5s"`). It prints back in the shortest Go form (`"1m30s"`), which Fly, Compose and
/// GitHub all accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a duration like \"30s\", \"500ms\" or \"1h30m\", found {found:?}")]
pub struct DurationError {
    /// The text that was refused.
    pub found: String,
}

impl GoDuration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The std duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError { found: s.to_string() };
        if s.is_empty() {
            return Err(err());
        }
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        let mut total: f64 = 0.0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let (num, after) = rest.split_at(num_len);
            if num.is_empty() || num.starts_with('.') && num.len() == 1 || num.matches('.').count() > 1 {
                return Err(err());
            }
            let value: f64 = num.parse().map_err(|_| err())?;
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_len);
            let scale = match unit {
                "ns" => 1e-9,
                "us" | "µs" | "μs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(err()),
            };
            total += value * scale;
            rest = next;
        }
        if !total.is_finite() || total > 10.0 * 365.0 * 86400.0 {
            return Err(err());
        }
        Ok(Self(Duration::from_secs_f64(total)))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d.subsec_nanos() != 0 {
            let nanos = d.as_nanos();
            return if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos.is_multiple_of(1_000) {
                write!(f, "{}us", nanos / 1_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_go_durations() {
        for (text, secs, printed) in [
            ("30s", 30.0, "30s"),
            ("500ms", 0.5, "500ms"),
            ("5m", 300.0, "5m"),
            ("1h30m", 5400.0, "1h30m"),
            ("1.5s", 1.5, "1500ms"),
            ("90s", 90.0, "1m30s"),
        ] {
            let d: GoDuration = text.parse().unwrap();
            assert_eq!(d.0.as_secs_f64(), secs, "{text}");
            assert_eq!(d.to_string(), printed);
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "30", "30 seconds", "s", "1x", "-5s", "1..2s", ".s", "30S"] {
            assert!(bad.parse::<GoDuration>().is_err(), "{bad:?} should be refused");
        }
    }
}
