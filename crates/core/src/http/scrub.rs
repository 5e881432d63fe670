//! [`Scrubber`]: secrets out of anything a server sends back, and [`error_body`]: a response
//! body made short enough for a message. Where the scrubbers sit is described in
//! [`crate::http`]'s "Secrets never leave".

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// Secrets at least this long (in bytes) are also found inside a longer base64 value, such
/// as the `user:token` of Basic credentials. Shorter ones would give fragments that match
/// ordinary text.
const MIN_EMBEDDED: usize = 8;

/// RFC 3986 unreserved characters stay as they are (JavaScript's `encodeURIComponent`, Go's
/// `url.PathEscape`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// `application/x-www-form-urlencoded` (query strings, Go's `url.QueryEscape`), space as `+`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

/// Removes known secrets, and credentials in URLs, from text a server sent back.
///
/// Each secret added is searched for in every form a server may quote it: as is,
/// percent-encoded (every character, RFC 3986 components, form encoding; upper- and lower-case
/// hex), base64 (standard and URL-safe, with and without padding, and inside a longer base64
/// value), and JSON-escaped (serde/Go/Python/PHP styles), and a JSON-escaped form once more
/// percent-encoded or base64-encoded (a JSON request body quoted in a URL or in base64). Every
/// match becomes [`REDACTED`]. `scheme://user:pass@host` becomes `scheme://***@host` whether or
/// not the password is known.
///
/// Cheap to clone; `Debug` shows only how many forms it holds.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Every form of every secret, longest first (so a longer form is replaced before a part
    /// of it), without duplicates.
    forms: Vec<SecretString>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber").field("forms", &self.forms.len()).finish()
    }
}

impl Scrubber {
    /// A scrubber that knows no secret yet (it still removes URL credentials).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret. Empty strings are ignored.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut forms: Vec<String> = self.forms.iter().map(|f| f.expose_secret().to_string()).collect();
        forms.extend(encodings(secret));
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        self.forms = forms.into_iter().filter(|f| !f.is_empty()).map(SecretString::from).collect();
    }

    /// This scrubber with `secret` added.
    pub fn with_secret(mut self, secret: &str) -> Self {
        self.add(secret);
        self
    }

    /// Adds the credentials in `url`'s userinfo (`scheme://user:pass@host`): the password and
    /// `user:pass`, as given and percent-decoded; a user without a password is itself the
    /// credential (`https://TOKEN@host`). Nothing when `url` has no userinfo.
    pub fn add_url_credentials(&mut self, url: &str) {
        let Some(userinfo) = userinfo(url) else { return };
        let decoded = percent_encoding::percent_decode_str(userinfo).decode_utf8_lossy().into_owned();
        for info in [userinfo.to_string(), decoded] {
            match info.split_once(':') {
                Some((_, password)) => {
                    self.add(password);
                    self.add(&info);
                }
                None => self.add(&info),
            }
        }
    }

    /// This scrubber with the credentials in `url` added ([`add_url_credentials`](Self::add_url_credentials)).
    pub fn with_url_credentials(mut self, url: &str) -> Self {
        self.add_url_credentials(url);
        self
    }

    /// Adds every secret `other` knows.
    pub fn extend(&mut self, other: &Scrubber) {
        if other.forms.is_empty() {
            return;
        }
        let mut forms: Vec<String> =
            self.forms.iter().chain(&other.forms).map(|f| f.expose_secret().to_string()).collect();
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        self.forms = forms.into_iter().map(SecretString::from).collect();
    }

    /// This scrubber with every secret `other` knows added.
    pub fn merged(mut self, other: &Scrubber) -> Self {
        self.extend(other);
        self
    }

    /// This scrubber with every secret of `secrets` added.
    pub fn with_secrets<I, S>(mut self, secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for s in secrets {
            self.add(s.as_ref());
        }
        self
    }

    /// Whether no secret was added.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` without the secrets and URL credentials.
    pub fn scrub(&self, text: &str) -> String {
        let text = self.forms.iter().fold(text.to_string(), |t, form| {
            let form = form.expose_secret();
            if t.contains(form) { t.replace(form, REDACTED) } else { t }
        });
        strip_userinfo(&text)
    }

    /// Every string in `value` (keys included) scrubbed, in place: for JSON about to be shown.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                let clean = self.scrub(s);
                if clean != *s {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.scrub_json(&mut v);
                    map.insert(self.scrub(&k), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// A response body for an error message: decoded (lossily), scrubbed, trimmed, whitespace
    /// collapsed, and cut to `max_chars` characters plus `…`. Every client builds the body part
    /// of its error messages with this.
    pub fn error_body(&self, body: &[u8], max_chars: usize) -> String {
        self.error_text(&String::from_utf8_lossy(body), max_chars)
    }

    /// [`error_body`](Self::error_body) for text already decoded (a message taken out of a
    /// JSON body).
    pub fn error_text(&self, text: &str, max_chars: usize) -> String {
        // Scrub before cutting: a cut could leave the start of a secret that no longer matches.
        error_text(&self.scrub(text), max_chars)
    }
}

/// A body as [`error_text`] shapes it, decoded lossily. Does not scrub: with secrets or URLs
/// around, use [`Scrubber::error_body`].
pub fn error_body(body: &[u8], max_chars: usize) -> String {
    error_text(&String::from_utf8_lossy(body), max_chars)
}

/// `text` trimmed, runs of whitespace made one space, and cut on a character boundary to
/// `max_chars` characters followed by `…` when it was longer. Does not scrub.
pub fn error_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)) + 3);
    for (n, word) in text.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > max_chars.saturating_mul(4) {
            break; // enough to cut from; the rest is never shown
        }
    }
    match out.char_indices().nth(max_chars) {
        Some((at, _)) => {
            out.truncate(at);
            out.truncate(out.trim_end().len());
            out.push('…');
            out
        }
        None => out,
    }
}

/// Every form of `secret` to look for: as is and JSON-escaped, each also percent-encoded and
/// base64-encoded.
fn encodings(secret: &str) -> Vec<String> {
    let mut bases = vec![secret.to_string()];
    bases.extend(json_forms(secret));
    bases.sort();
    bases.dedup();
    let mut forms = Vec::new();
    for base in bases {
        forms.extend(percent_forms(&base));
        forms.extend(base64_forms(base.as_bytes()));
        forms.push(base);
    }
    forms
}

fn percent_forms(secret: &str) -> Vec<String> {
    let all = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
    let component = utf8_percent_encode(secret, COMPONENT).to_string();
    let form = utf8_percent_encode(secret, FORM).to_string().replace("%20", "+");
    let mut forms = vec![];
    for f in [all, component, form] {
        forms.push(lower_hex(&f));
        forms.push(f);
    }
    forms
}

/// `%2F` as `%2f`: some encoders write lower-case hex.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let hex = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&hex.to_ascii_lowercase());
        rest = &rest[at + hex.len()..];
    }
    out.push_str(rest);
    out
}

fn base64_forms(secret: &[u8]) -> Vec<String> {
    let mut forms: Vec<String> =
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().map(|e| e.encode(secret)).collect();
    if secret.len() >= MIN_EMBEDDED {
        // Inside a longer value the secret starts at byte 0, 1 or 2 of a 3-byte group: encode
        // it behind that many filler bytes and keep only the characters made of its bits alone.
        for offset in 0..3 {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(secret);
            let bits = shifted.len() * 8;
            let (first, last) = ((offset * 8).div_ceil(6), bits / 6);
            for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
                if let Some(core) = engine.encode(&shifted).get(first..last) {
                    forms.push(core.to_string());
                }
            }
        }
    }
    forms
}

fn json_forms(secret: &str) -> Vec<String> {
    let Ok(quoted) = serde_json::to_string(secret) else { return vec![] };
    let plain = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_string();
    // Go's encoding/json also escapes <, > and & (and U+2028/9), Python's json.dumps every
    // non-ASCII character, PHP's json_encode the slash.
    let go = plain
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    let mut python = String::with_capacity(plain.len());
    for c in plain.chars() {
        if c.is_ascii() {
            python.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                python.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    let php = plain.replace('/', "\\/");
    vec![plain, go, python, php]
}

/// `url` (or any text) with the userinfo of every URL in it replaced by [`REDACTED`]:
/// `https://user:pass@host/x` → `https://***@host/x`. How a URL that may carry credentials is
/// shown.
pub fn without_userinfo(url: &str) -> String {
    strip_userinfo(url)
}

/// The userinfo of `url` (`user:pass` of `scheme://user:pass@host`), if it has one.
fn userinfo(url: &str) -> Option<&str> {
    let (_, tail) = url.split_once("://")?;
    let authority_end = tail.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace()).unwrap_or(tail.len());
    let at = tail[..authority_end].rfind('@')?;
    Some(&tail[..at]).filter(|u| !u.is_empty())
}

/// `scheme://user:pass@host` → `scheme://***@host`, for every URL in `text`.
fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) if userinfo_end > 0 => {
                out.push_str(REDACTED);
                rest = &tail[userinfo_end..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t/v@lue+=&<x>é";

    fn scrubber() -> Scrubber {
        Scrubber::new().with_secret(SECRET)
    }

    fn assert_scrubbed(encoded: &str) {
        let text = format!("error: got {encoded} back");
        assert_eq!(scrubber().scrub(&text), "error: got *** back", "form {encoded:?}");
    }

    #[test]
    fn plain() {
        assert_scrubbed(SECRET);
        let twice = scrubber().scrub(&format!("{SECRET} and {SECRET}"));
        assert_eq!(twice, "*** and ***");
    }

    #[test]
    fn percent_encoded() {
        assert_scrubbed(&utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string());
        assert_scrubbed("s3cr3t%2Fv%40lue%2B%3D%26%3Cx%3E%C3%A9");
        assert_scrubbed("s3cr3t%2fv%40lue%2b%3d%26%3cx%3e%c3%a9");
        let spaced = Scrubber::new().with_secret("pass word-1");
        assert_eq!(spaced.scrub("q=pass+word-1&x"), "q=***&x", "form encoding");
        assert_eq!(spaced.scrub("q=pass%20word-1&x"), "q=***&x", "component encoding");
        assert_eq!(spaced.scrub("q=pass%20word%2D1&x"), "q=***&x", "everything encoded");
    }

    #[test]
    fn base64_every_variant() {
        let bytes = SECRET.as_bytes();
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            assert_scrubbed(&engine.encode(bytes));
        }
        // The variants differ for this value: padding, and + / versus - _.
        assert_ne!(STANDARD.encode(bytes), URL_SAFE.encode(bytes));
        assert_ne!(STANDARD.encode(bytes), STANDARD_NO_PAD.encode(bytes));
    }

    #[test]
    fn base64_inside_a_longer_value() {
        let token = "ghp_0123456789abcdefXYZ";
        let s = Scrubber::new().with_secret(token);
        for user in ["a", "ab", "abc"] {
            // Basic credentials: the token sits at every alignment depending on the user's length.
            for engine in [STANDARD, URL_SAFE_NO_PAD] {
                let basic = engine.encode(format!("{user}:{token}"));
                let scrubbed = s.scrub(&format!("Authorization: Basic {basic}"));
                assert!(scrubbed.contains(REDACTED), "{user}: {scrubbed}");
                let left = scrubbed.trim_start_matches("Authorization: Basic ").replace(REDACTED, "");
                assert!(left.len() <= 8, "only the edges stay: {scrubbed}");
            }
        }
    }

    #[test]
    fn json_escaped() {
        // serde_json: the quote and backslash of a value like this one.
        let s = Scrubber::new().with_secret("a\"b\\c\nd-long");
        assert_eq!(s.scrub(r#"{"error":"bad value a\"b\\c\nd-long"}"#), r#"{"error":"bad value ***"}"#);
        assert_scrubbed(r"s3cr3t/v@lue+=\u0026\u003cx\u003eé"); // Go
        assert_scrubbed(r"s3cr3t/v@lue+=&<x>\u00e9"); // Python
        assert_scrubbed(r"s3cr3t\/v@lue+=&<x>é"); // PHP
        let emoji = Scrubber::new().with_secret("key🔑value");
        assert_eq!(emoji.scrub(r"x key\ud83d\udd11value x"), "x *** x", "surrogate pair");
    }

    #[test]
    fn url_credentials() {
        let s = Scrubber::new();
        assert_eq!(s.scrub("GET http://user:pass@host/x failed"), "GET http://***@host/x failed");
        assert_eq!(s.scrub("redis://:hunter2@cache:6379"), "redis://***@cache:6379");
        assert_eq!(s.scrub("https://token@ghcr.io"), "https://***@ghcr.io");
        assert_eq!(s.scrub("see https://ghcr.io/v2/?a=b@c"), "see https://ghcr.io/v2/?a=b@c", "@ after the host");
        assert_eq!(s.scrub("a://x@y and b://u:p@z/"), "a://***@y and b://***@z/");
        assert_eq!(s.scrub("mailto:ops@acme.dev"), "mailto:ops@acme.dev");
    }

    #[test]
    fn json_escaped_then_encoded() {
        // A JSON request body quoted back percent-encoded or in base64: the value is escaped
        // inside it, so its plain forms are not there.
        let value = "tok \"quoted\" <x>";
        let s = Scrubber::new().with_secret(value);
        let body = serde_json::json!({ "values": { "K": value } }).to_string();
        let percent = utf8_percent_encode(&body, COMPONENT).to_string();
        assert!(!s.scrub(&percent).contains("quoted"), "{}", s.scrub(&percent));
        for engine in [STANDARD, URL_SAFE_NO_PAD] {
            let b64 = engine.encode(&body);
            let scrubbed = s.scrub(&b64);
            assert!(scrubbed.contains(REDACTED), "{scrubbed}");
            let left = scrubbed.replace(REDACTED, "");
            assert!(left.len() < b64.len() - 20, "most of it went: {scrubbed}");
        }
    }

    #[test]
    fn url_credentials_become_secrets() {
        let s = Scrubber::new().with_url_credentials("https://deployer:p%40ss-w0rd-long@api.example.com/v1");
        assert_eq!(s.scrub("refused p@ss-w0rd-long"), "refused ***");
        assert_eq!(s.scrub("refused p%40ss-w0rd-long"), "refused ***");
        let basic = STANDARD.encode("deployer:p@ss-w0rd-long");
        assert_eq!(s.scrub(&format!("Basic {basic}")), "Basic ***");
        assert_eq!(s.scrub("user deployer"), "user deployer", "a user with a password is not a secret");
        let token_only = Scrubber::new().with_url_credentials("https://ghp_tokenvalue123@ghcr.io");
        assert_eq!(token_only.scrub("x ghp_tokenvalue123 y"), "x *** y");
        assert!(Scrubber::new().with_url_credentials("https://ghcr.io/v2/?a=b@c").is_empty());
        assert!(Scrubber::new().with_url_credentials("not a url").is_empty());
        assert_eq!(without_userinfo("http://u:p@127.0.0.1:9/v1"), "http://***@127.0.0.1:9/v1");
    }

    #[test]
    fn merged_and_json() {
        let a = Scrubber::new().with_secret("first-secret");
        let b = Scrubber::new().with_secret("second-secret");
        let both = a.merged(&b).merged(&Scrubber::new());
        assert_eq!(both.scrub("first-secret second-secret"), "*** ***");
        let mut v = serde_json::json!({
            "first-secret": ["x first-secret", 1, null, {"k": "http://u:p@h/"}],
            "ok": true,
        });
        both.scrub_json(&mut v);
        assert_eq!(v, serde_json::json!({ "***": ["x ***", 1, null, {"k": "http://***@h/"}], "ok": true }));
    }

    #[test]
    fn several_secrets_and_nothing_else() {
        let s = Scrubber::new().with_secrets(["tok-AAAA", "", "tok-AAAA-longer"]);
        assert_eq!(s.scrub("tok-AAAA-longer then tok-AAAA"), "*** then ***");
        assert_eq!(s.scrub("nothing secret here"), "nothing secret here");
        assert!(Scrubber::new().is_empty());
        assert!(!format!("{s:?}").contains("tok-"), "Debug shows no secret");
    }

    #[test]
    fn error_bodies_are_shaped() {
        assert_eq!(error_body(b"  line one\n\n\tline   two \r\n", 100), "line one line two");
        assert_eq!(error_body(b"abcdef", 3), "abc…");
        assert_eq!(error_body(b"abc", 3), "abc");
        assert_eq!(error_body("ééééé".as_bytes(), 2), "éé…", "cut on a character boundary");
        assert_eq!(error_body(b"ok \xff\xfe bytes", 100), "ok \u{fffd}\u{fffd} bytes", "decoded lossily");
        assert_eq!(error_body(b"", 10), "");
        let long = "word ".repeat(10_000);
        assert_eq!(error_body(long.as_bytes(), 9).chars().count(), 10);
    }

    #[test]
    fn scrubbed_before_cut() {
        let s = Scrubber::new().with_secret("SECRET-VALUE-123");
        // Cut first, "SECRET-VAL…" would stay; scrubbed first, nothing of it does.
        assert_eq!(s.error_body(b"token SECRET-VALUE-123 refused", 10), "token ***…");
        let multiline = Scrubber::new().with_secret("-----BEGIN KEY-----\nabc\n-----END KEY-----");
        let body = b"{\"x\": \"-----BEGIN KEY-----\nabc\n-----END KEY-----\"}";
        assert_eq!(multiline.error_body(body, 100), "{\"x\": \"***\"}", "scrubbed before whitespace is collapsed");
    }
}
