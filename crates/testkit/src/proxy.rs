//! A TCP proxy in front of a fake's HTTP server, so that a fake can *reset* a connection, which
//! wiremock cannot do.
//!
//! The fake's responder marks a response that should never arrive with the [`RESET_HEADER`]
//! header; the proxy relays every other response byte for byte and, on seeing the mark, drops the
//! client's connection with `SO_LINGER` 0, which sends a TCP RST: the client sees "connection
//! reset by peer" with no response, exactly as when a load balancer drops a connection.
//!
//! A response marked with [`CUT_HEADER`]`: N` is relayed without that header and with only the
//! first N bytes of its body, then the connection is closed: the client sees a body that stops
//! short of its `Content-Length`, as from a proxy that died mid-answer.
//!
//! Each client connection gets its own upstream connection; requests are copied as they come,
//! responses are read one at a time (status line and headers, then the body by
//! `Content-Length`, chunked encoding, or until the server closes). Like wiremock's server, the
//! proxy runs on a thread of its own with its own runtime, so a test that blocks its runtime
//! (running the CLI as a child process, say) does not stop it. It does not understand responses
//! to `HEAD` (the Fly API has none).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

/// The response header that tells the proxy to reset the connection instead.
pub(crate) const RESET_HEADER: &str = "x-shipit-fake-reset";
/// The response header that tells the proxy to relay only that many bytes of the body, then
/// close the connection.
pub(crate) const CUT_HEADER: &str = "x-shipit-fake-cut";

/// A running proxy; stops when dropped.
pub(crate) struct Proxy {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and relays to `upstream`.
    pub(crate) fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        std::thread::Builder::new().name(format!("fake-proxy-{}", addr.port())).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                loop {
                    tokio::select! {
                        () = stopped.cancelled() => break,
                        accepted = listener.accept() => match accepted {
                            Ok((client, _)) => {
                                tokio::spawn(relay(client, upstream, stopped.clone()));
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                        },
                    }
                }
            });
        })?;
        Ok(Self { addr, stop })
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// How the responses of one connection ended.
enum Ended {
    /// The server or the client closed it.
    Closed,
    /// A response carried [`RESET_HEADER`]: reset the client's connection.
    Reset,
}

async fn relay(client: TcpStream, upstream: SocketAddr, stop: CancellationToken) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let ended = tokio::select! {
        () = stop.cancelled() => Ended::Closed,
        () = requests => Ended::Closed,
        ended = responses(&mut server_read, &mut client_write) => ended,
    };
    if let Ended::Reset = ended {
        // Reunited, the stream closes without the FIN a dropped write half would send first;
        // with linger 0 the close is a reset.
        if let Ok(stream) = client_read.reunite(client_write) {
            let _ = stream.set_zero_linger();
        }
    }
}

/// How a response's body is delimited.
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Relays responses until the connection ends or one of them asks for a reset.
async fn responses(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf) -> Ended {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_len = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !fill(from, &mut buf).await {
                let _ = to.write_all(&buf).await;
                return Ended::Closed;
            }
        };
        let head = String::from_utf8_lossy(buf.get(..head_len).unwrap_or_default()).to_ascii_lowercase();
        let mut lines = head.split("\r\n");
        let status: u16 =
            lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers: Vec<(&str, &str)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
        if headers.iter().any(|(k, _)| *k == RESET_HEADER) {
            return Ended::Reset;
        }
        let cut: Option<usize> = headers.iter().find(|(k, _)| *k == CUT_HEADER).and_then(|(_, v)| v.parse().ok());
        let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::None
        } else if headers.iter().any(|(k, v)| *k == "transfer-encoding" && v.contains("chunked")) {
            Framing::Chunked
        } else if let Some(n) = headers.iter().find(|(k, _)| *k == "content-length").and_then(|(_, v)| v.parse().ok()) {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        if let Some(keep) = cut {
            // The head without the mark, then the first `keep` bytes of the body, then close.
            let head = strip_header(buf.get(..head_len).unwrap_or_default(), CUT_HEADER);
            buf.drain(..head_len);
            let keep = match framing {
                Framing::None => 0,
                Framing::Length(n) => keep.min(n),
                Framing::Chunked | Framing::UntilClose => keep,
            };
            if to.write_all(&head).await.is_ok() {
                let _ = forward(from, to, &mut buf, keep).await;
            }
            let _ = to.flush().await;
            return Ended::Closed;
        }
        if !forward(from, to, &mut buf, head_len).await {
            return Ended::Closed;
        }
        let whole = match framing {
            Framing::None => true,
            Framing::Length(n) => forward(from, to, &mut buf, n).await,
            Framing::Chunked => chunks(from, to, &mut buf).await,
            Framing::UntilClose => {
                let _ = to.write_all(&buf).await;
                buf.clear();
                let _ = tokio::io::copy(from, to).await;
                false
            }
        };
        if !whole {
            return Ended::Closed;
        }
    }
}

/// Relays a chunked body: size lines, chunks, the last chunk and the trailers.
async fn chunks(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, buf: &mut Vec<u8>) -> bool {
    loop {
        let Some(size_line) = line(from, buf).await else { return false };
        let size_text = String::from_utf8_lossy(buf.get(..size_line).unwrap_or_default()).to_string();
        let size = usize::from_str_radix(size_text.trim().split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if !forward(from, to, buf, size_line).await {
            return false;
        }
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let Some(trailer) = line(from, buf).await else { return false };
                if !forward(from, to, buf, trailer).await {
                    return false;
                }
                if trailer == 2 {
                    return true;
                }
            }
        }
        if !forward(from, to, buf, size + 2).await {
            return false;
        }
    }
}

/// The length of the next line in `buf` (with its CRLF), reading more as needed.
async fn line(from: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            return Some(i + 2);
        }
        if !fill(from, buf).await {
            return None;
        }
    }
}

/// Writes the first `n` bytes of the stream (some already in `buf`) to `to`.
async fn forward(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        if !fill(from, buf).await {
            return false;
        }
    }
    let ok = to.write_all(buf.get(..n).unwrap_or_default()).await.is_ok();
    buf.drain(..n);
    ok
}

/// Reads more into `buf`; false at the end of the stream.
async fn fill(from: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match from.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            true
        }
    }
}

/// A response head without the lines of header `name` (lower case).
fn strip_header(head: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    for line in head.split_inclusive(|b| *b == b'\n') {
        let text = String::from_utf8_lossy(line).to_ascii_lowercase();
        if text.split_once(':').is_some_and(|(k, _)| k.trim() == name) {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
