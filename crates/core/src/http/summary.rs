//! [`Scrubber::error_summary`]: an error response's body in one line, for a message.

use serde_json::Value;

use super::scrub::{Scrubber, error_text};

impl Scrubber {
    /// A response body in one line for an error message, scrubbed and cut to `max_chars`
    /// characters (plus `…`):
    ///
    /// - JSON: the platform's own message, the first of `fields` (JSON pointers such as
    ///   `/error`, `/message`, `/errors`) that holds one: a string; an object's `message`; or an
    ///   array of those, joined with `; ` (GraphQL's and OCI's `errors[]`). Without one, the
    ///   JSON itself, on one line.
    /// - HTML (a proxy's or load balancer's error page): its `<title>`, else its first `<h1>`,
    ///   else `HTML error page (N bytes)`; never the markup.
    /// - Anything else: the text, whitespace collapsed.
    ///
    /// Control characters are dropped; an empty body gives an empty string.
    pub fn error_summary(&self, body: &[u8], fields: &[&str], max_chars: usize) -> String {
        if let Ok(json) = serde_json::from_slice::<Value>(body)
            && let Some(message) = fields.iter().find_map(|f| json.pointer(f).and_then(message_of))
        {
            return one_line(&self.error_text(&message, max_chars));
        }
        let text = String::from_utf8_lossy(body);
        if looks_like_html(&text) {
            let scrubbed = self.scrub(&text);
            let heading = element_text(&scrubbed, "title").or_else(|| element_text(&scrubbed, "h1"));
            return match heading {
                Some(h) => one_line(&error_text(&h, max_chars)),
                None => format!("HTML error page ({} bytes)", body.len()),
            };
        }
        one_line(&self.error_text(&text, max_chars))
    }
}

/// The message a JSON value holds: a string, an object's `message` (else its `error`), or an
/// array of those joined with `; `.
fn message_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("message").or_else(|| o.get("error")).and_then(message_of),
        Value::Array(items) => {
            let all: Vec<String> = items.iter().filter_map(message_of).collect();
            (!all.is_empty()).then(|| all.join("; "))
        }
        _ => None,
    }
}

/// Whether `text` is an HTML page (or fragment) rather than text that happens to start with `<`.
fn looks_like_html(text: &str) -> bool {
    let head: String = text.trim_start().chars().take(1024).collect::<String>().to_ascii_lowercase();
    head.starts_with('<')
        && ["<!doctype html", "<html", "<head", "<body", "<title", "<h1", "<center", "<p>", "<div"]
            .iter()
            .any(|tag| head.contains(tag))
}

/// The text inside the first `<tag …>…</tag>`, tags inside it removed and the common entities
/// decoded; `None` when there is none or it is blank.
fn element_text(html: &str, tag: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find(&format!("<{tag}"))?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find(&format!("</{tag}"))?;
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.get(start..end)?.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    (!text.trim().is_empty()).then_some(text)
}

/// `text` without control characters (error_text already made every whitespace run one space).
fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLY: &[&str] = &["/error", "/message", "/data/error"];
    const RENDER: &[&str] = &["/message"];
    const RAILWAY: &[&str] = &["/errors"];

    fn summary(body: &str, fields: &[&str]) -> String {
        Scrubber::new().with_secret("tok_s3cret-value").error_summary(body.as_bytes(), fields, 80)
    }

    const NGINX: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
        <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

    #[test]
    fn each_platforms_json_error_shape() {
        assert_eq!(summary(r#"{"error":"app not found","status":"not_found"}"#, FLY), "app not found");
        assert_eq!(summary(r#"{"status":"error","data":{"error":"lease held"}}"#, FLY), "lease held");
        assert_eq!(summary(r#"{"id":"not-found","message":"service not found"}"#, RENDER), "service not found");
        assert_eq!(
            summary(r#"{"errors":[{"message":"Not Authorized"},{"message":"Problem\nprocessing"}]}"#, RAILWAY),
            "Not Authorized; Problem processing"
        );
        assert_eq!(summary(r#"{"error":{"message":"nested"}}"#, FLY), "nested");
        // JSON without the platform's field: the JSON, on one line.
        assert_eq!(summary("{\n  \"status\": \"weird\"\n}", FLY), "{ \"status\": \"weird\" }");
    }

    #[test]
    fn html_pages_become_their_title() {
        assert_eq!(summary(NGINX, FLY), "502 Bad Gateway");
        let no_title = "<!DOCTYPE html><html><body><h1>Service &amp; Co\nUnavailable</h1><p>x</p></body></html>";
        assert_eq!(summary(no_title, RENDER), "Service & Co Unavailable");
        let bare = "<html><body><p>Bad gateway</p></body></html>";
        assert_eq!(summary(bare, FLY), format!("HTML error page ({} bytes)", bare.len()));
        let echoed = "<html><head><title>denied tok_s3cret-value</title></head></html>";
        assert_eq!(summary(echoed, FLY), "denied ***");
    }

    #[test]
    fn plain_text_is_one_line_scrubbed_and_cut() {
        assert_eq!(summary("upstream\n\n  connect error\u{1b}[31m", FLY), "upstream connect error[31m");
        assert_eq!(summary("bad token tok_s3cret-value", FLY), "bad token ***");
        let long = "word ".repeat(100);
        let s = summary(&long, FLY);
        assert!(s.chars().count() <= 81 && s.ends_with('…'), "{s}");
        assert_eq!(summary("", FLY), "");
        assert_eq!(summary("<not html at all", FLY), "<not html at all");
    }
}
