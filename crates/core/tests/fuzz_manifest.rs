//! A bounded fuzz test of the manifest reader, run with the other tests (issue 8).
//!
//! Inputs are seeded mutations of the reference manifest (byte flips, truncation, duplicated
//! lines, long runs, invalid UTF-8, deep nesting, huge numbers, repeated list items, token soup)
//! and arbitrary bytes. For every input, [`parse_bytes`] must answer without panicking, within
//! [`TIME_BOUND`], and every problem must have a line and column inside the input.
//!
//! `SHIPIT_FUZZ_CASES` sets the number of cases of each test (default 600, sized for CI),
//! `SHIPIT_FUZZ_SEED` the seed (a number; default fixed, so CI is reproducible). A failing case
//! is written to the temp directory and named in the failure with its seed and case number.
//! docs/security.md ("Bad input") says how to run it longer.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use shipit_core::manifest::{LoadError, MAX_MANIFEST_BYTES, parse_bytes};

/// The reference manifest that mutations start from.
const REFERENCE: &str = include_str!("../../../examples/forgestack/shipit.toml");

/// The most one input may take: generous for a debug build on a busy 2-core machine; it is a
/// bound on pathological slowness (the defects it guards against took minutes).
const TIME_BOUND: Duration = Duration::from_secs(2);

fn cases() -> u64 {
    std::env::var("SHIPIT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(600)
}

fn seed() -> u64 {
    std::env::var("SHIPIT_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED_0008)
}

/// SplitMix64: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, case: u64) -> Self {
        let mut r = Self(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    /// A length, small most of the time, up to `max`.
    fn len(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => self.below(4),
            1 => self.below(64),
            2 => self.below(4096),
            _ => self.below(max + 1),
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Where lines start in `input`.
fn line_starts(input: &[u8]) -> Vec<usize> {
    std::iter::once(0).chain(input.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect()
}

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ".",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "\n",
    "\r\n",
    " ",
    "\t",
    "#",
    "\\",
    "\\u0000",
    "\\U0010FFFF",
    "app",
    "services",
    "api",
    "env",
    "secrets",
    "env_from",
    "regions",
    "environments",
    "targets",
    "fly",
    "render",
    "port",
    "health",
    "scale",
    "name_template",
    "{service}",
    "{env}",
    "db.url",
    "API_TOKEN",
    "DB_PASSWORD",
    "\"iad\"",
    "1",
    "-1",
    "0x7f",
    "1e999",
    "nan",
    "inf",
    "true",
    "1979-05-27T07:32:00Z",
    "é",
    "\u{202e}",
    "\u{1b}[2J",
    "\u{0}",
    "\u{feff}",
];

const HUGE: &[&str] = &[
    "99999999999999999999999999999",
    "-9223372036854775809",
    "9223372036854775807",
    "1e309",
    "-0.0",
    "0x7FFFFFFFFFFFFFFFFF",
    "1_000_000_000_000_000_000",
    "\"99999999999999999999h\"",
    "\"1.5e300s\"",
    "inf",
];

/// One mutation of `b`; returns its name for the failure message.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>) -> &'static str {
    let at = rng.below(b.len() + 1);
    match rng.below(12) {
        0 => {
            for _ in 0..=rng.below(8) {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
            "byte flips"
        }
        1 => {
            b.truncate(at);
            "truncation"
        }
        2 => {
            let starts = line_starts(b);
            let s = *rng.pick(&starts);
            let e = b[s..].iter().position(|x| *x == b'\n').map_or(b.len(), |p| s + p + 1);
            let line = b[s..e].to_vec();
            let n = rng.len(5000);
            let copies: Vec<u8> = line.iter().copied().cycle().take(line.len() * n).collect();
            b.splice(e..e, copies);
            "duplicated line"
        }
        3 => {
            let run = *rng.pick(&[" ", "a", "\t", "\"", "[", "{", ",", "=", "\n", "é", "日", "#", "\\", "-"]);
            let n = rng.len(200_000);
            b.splice(at..at, run.repeat(n).into_bytes());
            "long run"
        }
        4 => {
            let bytes: Vec<u8> = (0..=rng.below(6)).map(|_| 0x80 + rng.below(0x80) as u8).collect();
            b.splice(at..at, bytes);
            "invalid UTF-8"
        }
        5 => {
            let depth = rng.len(5000);
            let nested = match rng.below(4) {
                0 => format!("\nx = {}{}\n", "[".repeat(depth), "]".repeat(depth)),
                1 => format!("\nx = {}1{}\n", "{a = ".repeat(depth), "}".repeat(depth)),
                2 => format!("\n{} = 1\n", vec!["a"; depth.max(1)].join(".")),
                _ => format!("\n[{}]\n", vec!["services"; depth.max(1)].join(".")),
            };
            b.splice(at..at, nested.into_bytes());
            "deep nesting"
        }
        6 => {
            // replace the number at a random digit
            let digits: Vec<usize> = b.iter().enumerate().filter(|(_, x)| x.is_ascii_digit()).map(|(i, _)| i).collect();
            if digits.is_empty() {
                return "huge number (none)";
            }
            let s = *rng.pick(&digits);
            let e = b[s..].iter().position(|x| !x.is_ascii_digit()).map_or(b.len(), |p| s + p);
            b.splice(s..e, rng.pick(HUGE).bytes());
            "huge number"
        }
        7 => {
            let item = *rng.pick(&["\"iad\"", "\"fra\"", "\"A_SECRET\"", "\"X\"", "1", "\"node\""]);
            let key = *rng.pick(&["regions", "secrets", "command"]);
            let items = vec![item; rng.len(20_000).max(2)].join(", ");
            let table = *rng.pick(&["[environments.production]", "[services.api]", "[services.worker]"]);
            let text = String::from_utf8_lossy(b).replacen(table, &format!("{table}\n{key} = [{items}]"), 1);
            *b = text.into_bytes();
            "repeated list items"
        }
        8 => {
            let e = (at + rng.len(2000)).min(b.len());
            b.drain(at..e);
            "deleted range"
        }
        9 => {
            let n = rng.len(3000);
            let soup: String = (0..n).map(|_| *rng.pick(TOKENS)).collect();
            b.splice(at..at, soup.into_bytes());
            "token soup"
        }
        10 => {
            let starts = line_starts(b);
            let (x, y) = (rng.below(starts.len()), rng.below(starts.len()));
            let mut lines: Vec<&[u8]> = b.split(|c| *c == b'\n').collect();
            if x < lines.len() && y < lines.len() {
                lines.swap(x, y);
            }
            *b = lines.join(&b'\n');
            "swapped lines"
        }
        _ => {
            if rng.below(8) == 0 {
                // over the size limit
                b.extend(std::iter::repeat_n(b'#', MAX_MANIFEST_BYTES as usize + 1));
                "over the limit"
            } else {
                let long = format!("\n{}bogus = \"x\"\n", " ".repeat(65_530 + rng.below(20)));
                b.splice(at..at, long.into_bytes());
                "key past column 65,536"
            }
        }
    }
}

/// Checks one input; on failure, writes it to the temp directory and panics naming it.
fn check(input: &[u8], what: &str, case: u64) {
    let fail = |why: String| -> ! {
        let path = std::env::temp_dir().join(format!("shipit-fuzz-{}-{case}.toml", seed()));
        let _ = std::fs::write(&path, input);
        panic!("case {case} (seed {}, {what}): {why}; the input is in {}", seed(), path.display())
    };
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| parse_bytes(input, "fuzz.toml")));
    let took = start.elapsed();
    let Ok(result) = result else { fail("the reader panicked".to_string()) };
    if took > TIME_BOUND {
        fail(format!("took {took:?} for {} bytes", input.len()));
    }
    let errors = match result {
        Ok(_) => return,
        Err(LoadError::TooLarge { size, limit, .. }) => {
            if input.len() as u64 <= limit || size != Some(input.len() as u64) {
                fail(format!("refused as too large: {size:?} for {} bytes", input.len()));
            }
            return;
        }
        Err(LoadError::Invalid(e)) => e,
        Err(e) => fail(format!("unexpected error {e}")),
    };
    if errors.problems.is_empty() {
        fail("an error without problems".to_string());
    }
    let text = String::from_utf8_lossy(input);
    if std::str::from_utf8(input).is_ok() && errors.source_text.len() != input.len() {
        fail("the masked source does not keep every offset".to_string());
    }
    let lines: Vec<&str> = text.split('\n').collect();
    for p in &errors.problems {
        let within = p.line >= 1
            && p.column >= 1
            && lines.get(p.line - 1).is_some_and(|l| p.column <= l.chars().count() + 1)
            && p.span.start <= errors.source_text.len();
        if !within {
            fail(format!("{}:{} (span {:?}) is not inside the input: {}", p.line, p.column, p.span, p.message));
        }
        let raw = |s: &str| s.chars().any(|c| c.is_control());
        if raw(&p.message) || p.help.as_deref().is_some_and(raw) {
            fail(format!("a control character in {:?}", p.message));
        }
    }
    let _ = errors.to_string();
    let _ = serde_json::to_string(&errors.problems).unwrap();
}

#[test]
fn the_reference_manifest_is_valid() {
    parse_bytes(REFERENCE.as_bytes(), "shipit.toml").unwrap();
}

#[test]
fn mutations_of_the_reference_manifest() {
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for case in 0..cases() {
        let mut rng = Rng::new(seed(), case);
        let mut input = REFERENCE.as_bytes().to_vec();
        let mut what = Vec::new();
        for _ in 0..=rng.below(3) {
            what.push(mutate(&mut rng, &mut input));
        }
        let one = Instant::now();
        check(&input, &what.join(", "), case);
        slowest = slowest.max(one.elapsed());
    }
    eprintln!("{} mutated manifests in {:?}, the slowest {slowest:?}", cases(), start.elapsed());
}

#[test]
fn arbitrary_bytes() {
    let start = Instant::now();
    for case in 0..cases() {
        let mut rng = Rng::new(seed() ^ 0xB17E5, case);
        let n = rng.len(100_000);
        let input: Vec<u8> = match rng.below(3) {
            // any byte
            0 => (0..n).map(|_| rng.next() as u8).collect(),
            // printable ASCII and newlines
            1 => (0..n).map(|_| *rng.pick(b" =[]{}\",.#\n\tabcxyz019_-'\\")).collect(),
            // TOML tokens
            _ => (0..n / 8).map(|_| *rng.pick(TOKENS)).collect::<String>().into_bytes(),
        };
        check(&input, "arbitrary bytes", case + (1 << 32));
    }
    eprintln!("{} arbitrary inputs in {:?}", cases(), start.elapsed());
}
