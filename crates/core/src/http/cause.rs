//! Why a request failed, from its error's [`source`](std::error::Error::source) chain:
//! [`cause_chain`] (every cause, for `-v`), [`brief_cause`] (the root cause in a few words) and
//! [`transport_message`] (`cannot reach api.machines.dev: connection refused`), so that an
//! unreachable API never says only "error sending request for url (…)".
//!
//! None of these scrub: the texts may quote a URL, so callers pass them through their
//! [`Scrubber`](super::Scrubber).

use std::error::Error as StdError;
use std::io::ErrorKind;

/// The messages of `error`'s sources, outermost first, without `error`'s own message, without
/// repeats (a cause whose text is already shown by the one above it is left out), each trimmed.
pub fn cause_chain(error: &(dyn StdError + 'static)) -> Vec<String> {
    let mut shown = vec![error.to_string()];
    let mut out = Vec::new();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string().trim().to_string();
        if !text.is_empty() && !shown.iter().any(|s| s.contains(&text)) {
            out.push(text.clone());
        }
        shown.push(text);
        next = e.source();
    }
    out
}

/// The root cause of `error` in a few words: `connection refused`, `connection reset`,
/// `timed out`, `DNS lookup failed: Name or service not known`, `TLS failed: invalid peer
/// certificate: UnknownIssuer`, else the innermost cause's message (without `(os error N)`).
pub fn brief_cause(error: &(dyn StdError + 'static)) -> String {
    let chain = links(error);
    for e in &chain {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let known = match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused",
                ErrorKind::ConnectionReset => "connection reset",
                ErrorKind::ConnectionAborted => "connection aborted",
                ErrorKind::TimedOut => "timed out",
                ErrorKind::UnexpectedEof => "connection closed before the answer was complete",
                _ => "",
            };
            if !known.is_empty() {
                return known.to_string();
            }
        }
    }
    let texts: Vec<String> = chain.iter().map(|e| e.to_string().to_ascii_lowercase()).collect();
    let root = chain.last().map(|e| without_os_code(&e.to_string())).unwrap_or_default();
    let has = |words: &[&str]| texts.iter().any(|t| words.iter().any(|w| t.contains(w)));
    if has(&["dns error", "failed to lookup address", "no such host", "name or service not known"]) {
        let detail = root.strip_prefix("failed to lookup address information: ").unwrap_or(&root);
        return format!("DNS lookup failed: {detail}");
    }
    if has(&["certificate", "tls", "ssl", "handshake"]) {
        return format!("TLS failed: {root}");
    }
    if has(&["timed out", "timeout"]) {
        return "timed out".to_string();
    }
    if has(&["connection closed before message completed", "incomplete message"]) {
        return "connection closed before the answer was complete".to_string();
    }
    if has(&["connection refused"]) {
        return "connection refused".to_string();
    }
    if has(&["connection reset"]) {
        return "connection reset".to_string();
    }
    root
}

/// A transport failure, briefly: `cannot reach HOST: CAUSE` when no connection was made
/// (refused, DNS, TLS, connect timeout), else `request to HOST failed: CAUSE` (reset, timed out,
/// an answer cut short).
pub fn transport_message(host: &str, error: &(dyn StdError + 'static)) -> String {
    let brief = brief_cause(error);
    let texts: Vec<String> = links(error).iter().map(|e| e.to_string().to_ascii_lowercase()).collect();
    let words = ["(connect)", "tcp connect", "dns error", "failed to lookup address", "certificate", "handshake"];
    let connecting = brief == "connection refused" || texts.iter().any(|t| words.iter().any(|w| t.contains(w)));
    if connecting { format!("cannot reach {host}: {brief}") } else { format!("request to {host} failed: {brief}") }
}

/// `error` and its sources, outermost first.
fn links<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = vec![error];
    let mut next = error.source();
    while let Some(e) = next {
        if out.len() > 32 {
            break; // a cycle, or absurd nesting
        }
        out.push(e);
        next = e.source();
    }
    out
}

/// `Connection refused (os error 111)` → `Connection refused`.
fn without_os_code(text: &str) -> String {
    let text = text.trim();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fmt;

    use super::*;

    /// An error with a message and an optional source, like reqwest's and hyper's.
    #[derive(Debug)]
    pub(crate) struct Chain {
        text: String,
        source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    }

    impl Chain {
        pub(crate) fn new(text: &str, source: Option<impl StdError + Send + Sync + 'static>) -> Self {
            Self { text: text.to_string(), source: source.map(|s| Box::new(s) as _) }
        }
    }

    impl fmt::Display for Chain {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.text)
        }
    }

    impl StdError for Chain {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.source.as_deref().map(|s| s as _)
        }
    }

    /// reqwest's shape: "error sending request" → "client error (Connect)" → connect → io.
    fn reqwest_like(connect: &str, io: std::io::Error) -> Chain {
        let inner = Chain::new(connect, Some(io));
        let client = Chain::new("client error (Connect)", Some(inner));
        Chain::new("error sending request for url (http://127.0.0.1:1/v1/apps/x)", Some(client))
    }

    #[test]
    fn connection_refused() {
        let io = std::io::Error::new(ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let e = reqwest_like("tcp connect error", io);
        assert_eq!(brief_cause(&e), "connection refused");
        assert_eq!(transport_message("127.0.0.1:1", &e), "cannot reach 127.0.0.1:1: connection refused");
        assert_eq!(
            cause_chain(&e),
            ["client error (Connect)", "tcp connect error", "Connection refused (os error 111)"]
        );
    }

    #[test]
    fn dns_tls_and_timeouts() {
        let io = std::io::Error::other("failed to lookup address information: Name or service not known");
        let e = reqwest_like("dns error", io);
        assert_eq!(
            transport_message("api.machines.dev", &e),
            "cannot reach api.machines.dev: DNS lookup failed: Name or service not known"
        );
        let io = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let e = reqwest_like("tls handshake", io);
        assert_eq!(
            transport_message("ghcr.io", &e),
            "cannot reach ghcr.io: TLS failed: invalid peer certificate: UnknownIssuer"
        );
        let timeout = Chain::new("operation timed out", None::<std::io::Error>);
        let e = Chain::new("error sending request for url (https://api.render.com/v1/x)", Some(timeout));
        assert_eq!(transport_message("api.render.com", &e), "request to api.render.com failed: timed out");
    }

    #[test]
    fn resets_and_cut_answers() {
        let io = std::io::Error::new(ErrorKind::ConnectionReset, "Connection reset by peer (os error 104)");
        let hyper = Chain::new("connection error", Some(io));
        let e = Chain::new("error sending request for url (https://api.machines.dev/v1/apps/x)", Some(hyper));
        assert_eq!(transport_message("api.machines.dev", &e), "request to api.machines.dev failed: connection reset");
        let cut = Chain::new("end of file before message length reached", None::<std::io::Error>);
        let e = Chain::new("error decoding response body", Some(cut));
        assert_eq!(brief_cause(&e), "end of file before message length reached");
    }

    #[test]
    fn repeats_are_left_out() {
        let io = std::io::Error::other("boom");
        let same = Chain::new("boom", Some(io));
        let e = Chain::new("request failed: boom", Some(same));
        assert!(cause_chain(&e).is_empty(), "{:?}", cause_chain(&e));
    }
}
