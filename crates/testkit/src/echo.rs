//! What a careless server sends back: the request's credentials and body, quoted in an error
//! body and in a response header. The fakes' echo faults ([`crate::fly::Fault::Echo`],
//! [`crate::registry::RegistryFake::inject_echo`]) use it, so a test can check that nothing a
//! client sent comes out of shipit.

/// The response header that carries the echo.
pub const ECHO_HEADER: &str = "x-echo";

/// The error text an echoing server answers with: the `Authorization` header and the body as
/// received, each also base64-encoded and percent-encoded (forms servers and proxies quote).
pub fn text(authorization: &str, body: &[u8]) -> String {
    let body_text = String::from_utf8_lossy(body);
    format!(
        "echo: Authorization: {authorization} (base64 {}, url {}); body: {body_text} (base64 {}, url {})",
        base64(authorization.as_bytes()),
        percent(authorization.as_bytes()),
        base64(body),
        percent(body),
    )
}

/// The echo as a header value: the `Authorization` header, then the body percent-encoded (a
/// body may hold bytes no header can).
pub fn header(authorization: &str, body: &[u8]) -> String {
    let auth: String = authorization.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
    format!("authorization={auth}; body={}", percent(body))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every byte but RFC 3986's unreserved characters as `%XX`.
pub fn percent(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(*b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:tok/+"), "dXNlcjp0b2svKw==");
        assert_eq!(percent(b"a b/c~"), "a%20b%2Fc~");
        let h = header("Bearer x\ny", b"{\"v\":\"s\"}");
        assert_eq!(h, "authorization=Bearer xy; body=%7B%22v%22%3A%22s%22%7D");
    }
}
