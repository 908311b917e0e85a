//! A small blocking HTTP/1.1 client for the remote trust features (JWKS by
//! URL, RFC 7662 introspection). It uses no async runtime and starts no
//! thread itself (the proxy forks after loading the library); host names
//! are resolved by [`crate::edge::dns`], whose helper threads (at most 4 per
//! process) are started by lookups of names (never at load, so never before
//! the fork). One TCP connection per request (`Connection: close`), TLS by
//! rustls with the aws-lc-rs provider the crate already links, and every
//! limit enforced as it reads: one overall deadline for name resolution,
//! connect, write and read, a cap on the header and body sizes, no
//! redirects (a 3xx is just a status), no compression.
//!
//! Plain `http://` is only ever used towards loopback addresses (checked at
//! configuration load, see [`Url::parse`]).

pub use crate::core::url::Url;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest response header block read, bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The TLS settings of one issuer: the public roots plus, optionally, the
/// certificates of a `ca_file`.
pub fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        let mut n = 0;
        for item in rustls::pki_types::pem::PemObject::pem_slice_iter(pem) {
            let cert: CertificateDer<'static> =
                item.map_err(|e| format!("not a PEM certificate file: {e:?}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad CA certificate: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err("no certificate in the CA file".into());
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A request.
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// Where.
    pub url: &'a Url,
    /// Extra header lines (`Name: value`), without CRLF.
    pub headers: &'a [String],
    /// Body (POST), with its content type.
    pub body: Option<(&'a str, &'a [u8])>,
    /// Everything (connect, TLS, write, read) must be done within this.
    pub timeout: Duration,
    /// Largest body accepted, bytes.
    pub max_body: usize,
    /// TLS settings (https).
    pub tls: &'a Arc<rustls::ClientConfig>,
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header field named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `max-age` of `Cache-Control`, seconds.
    pub fn max_age(&self) -> Option<u64> {
        let cc = self.header("cache-control")?;
        let mut age = None;
        for d in cc.split(',') {
            let d = d.trim();
            if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
                return Some(0);
            }
            if let Some((k, v)) = d.split_once('=') {
                if k.trim().eq_ignore_ascii_case("max-age") {
                    age = v.trim().trim_matches('"').parse::<u64>().ok();
                }
            }
        }
        age
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// Not done within the timeout.
    Timeout,
    /// Connection, TLS or I/O failure.
    Io(String),
    /// The response is not HTTP/1.x as this client reads it.
    Protocol(String),
    /// Header or body larger than the limit.
    TooLarge,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Timeout => f.write_str("timed out"),
            Error::Io(m) => write!(f, "{m}"),
            Error::Protocol(m) => write!(f, "bad HTTP response: {m}"),
            Error::TooLarge => f.write_str("response larger than the limit"),
        }
    }
}

struct Deadline(Instant);

impl Deadline {
    fn left(&self) -> Result<Duration, Error> {
        let now = Instant::now();
        if now >= self.0 {
            return Err(Error::Timeout);
        }
        Ok((self.0 - now).max(Duration::from_millis(1)))
    }
}

fn io_err(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout,
        _ => Error::Io(e.to_string()),
    }
}

/// A stream whose every read and write is bounded by the deadline.
struct Bounded<S> {
    tcp: TcpStream,
    inner: S,
    deadline: Deadline,
}

impl<S: Read + Write> Bounded<S> {
    fn arm(&self) -> std::io::Result<()> {
        let left = self
            .deadline
            .left()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.set_write_timeout(Some(left))
    }
}

impl<S: Read + Write> Read for Bounded<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.inner.read(buf)
    }
}

impl<S: Read + Write> Write for Bounded<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.arm()?;
        self.inner.flush()
    }
}

/// Do `req`. Blocking, bounded by `req.timeout` overall.
pub fn send(req: &Request<'_>) -> Result<Response, Error> {
    let deadline = Deadline(Instant::now() + req.timeout);
    // Name resolution by crate::edge::dns: an IP literal as it is; a name from
    // the per-process cache, or looked up by a helper thread while this
    // request waits at most until its deadline (getaddrinfo itself cannot
    // be bounded).
    let addrs: Vec<SocketAddr> = crate::edge::dns::lookup(&req.url.host, deadline.0)
        .map_err(Error::Io)?
        .iter()
        .map(|&ip| SocketAddr::new(ip, req.url.port))
        .collect();
    if !req.url.tls && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(Error::Io("plain http only to loopback".into()));
    }
    let mut last = Error::Io(format!("no address for {}", req.url.host));
    let mut tcp = None;
    for a in addrs.iter().take(4) {
        match TcpStream::connect_timeout(a, deadline.left()?) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = io_err(e),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept-Encoding: identity\r\nUser-Agent: wic-tna/{}\r\n",
        req.method,
        req.url.path,
        req.url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    for h in req.headers {
        if h.bytes().any(|c| c == b'\r' || c == b'\n') {
            return Err(Error::Protocol("header with CR/LF".into()));
        }
        head.push_str(h);
        head.push_str("\r\n");
    }
    if let Some((ctype, body)) = req.body {
        head.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let body = req.body.map(|(_, b)| b).unwrap_or(&[]);
    if req.url.tls {
        let name = ServerName::try_from(req.url.host.clone())
            .map_err(|e| Error::Io(format!("bad TLS server name: {e}")))?;
        let conn = rustls::ClientConnection::new(req.tls.clone(), name)
            .map_err(|e| Error::Io(format!("TLS: {e}")))?;
        let tcp2 = tcp.try_clone().map_err(io_err)?;
        let mut s = Bounded {
            tcp,
            inner: rustls::StreamOwned::new(conn, tcp2),
            deadline,
        };
        exchange(&mut s, head.as_bytes(), body, req.max_body)
    } else {
        let tcp2 = tcp.try_clone().map_err(io_err)?;
        let mut s = Bounded {
            tcp,
            inner: tcp2,
            deadline,
        };
        exchange(&mut s, head.as_bytes(), body, req.max_body)
    }
}

fn exchange<S: Read + Write>(
    s: &mut Bounded<S>,
    head: &[u8],
    body: &[u8],
    max_body: usize,
) -> Result<Response, Error> {
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head);
    out.extend_from_slice(body);
    s.write_all(&out).map_err(io_err)?;
    s.flush().map_err(io_err)?;

    // Header block.
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEADER_BYTES {
            return Err(Error::TooLarge);
        }
        let n = read_some(s, &mut chunk)?;
        if n == 0 {
            return Err(Error::Protocol(
                "connection closed before the header ended".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if header_end > MAX_HEADER_BYTES {
        return Err(Error::TooLarge);
    }
    let head_text = std::str::from_utf8(&buf[..header_end])
        .map_err(|_| Error::Protocol("header not UTF-8".into()))?;
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut sp = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (sp.next(), sp.next()) else {
        return Err(Error::Protocol("no status line".into()));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Error::Protocol("not HTTP/1.x".into()));
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| Error::Protocol("bad status".into()))?;
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| Error::Protocol("bad header line".into()))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut rest = buf[header_end + 4..].to_vec();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let chunked =
        get("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if get("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
        return Err(Error::Protocol("compressed body".into()));
    }
    let body = if status == 304 || status == 204 || (100..200).contains(&status) {
        Vec::new()
    } else if chunked {
        read_chunked(s, rest, max_body)?
    } else if let Some(cl) = get("content-length") {
        let len = cl
            .parse::<usize>()
            .map_err(|_| Error::Protocol("bad Content-Length".into()))?;
        if len > max_body {
            return Err(Error::TooLarge);
        }
        while rest.len() < len {
            let n = read_some(s, &mut chunk)?;
            if n == 0 {
                return Err(Error::Protocol("body shorter than Content-Length".into()));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else {
        loop {
            if rest.len() > max_body {
                return Err(Error::TooLarge);
            }
            let n = read_some(s, &mut chunk)?;
            if n == 0 {
                break rest;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn read_some<S: Read + Write>(s: &mut Bounded<S>, buf: &mut [u8]) -> Result<usize, Error> {
    s.deadline.left()?;
    match s.read(buf) {
        Ok(n) => Ok(n),
        // A peer closing without close_notify: treat as end of stream.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(io_err(e)),
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn read_chunked<S: Read + Write>(
    s: &mut Bounded<S>,
    mut data: Vec<u8>,
    max_body: usize,
) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut pos = 0;
    loop {
        // Chunk size line.
        let line_end = loop {
            if let Some(i) = find(&data[pos..], b"\r\n") {
                break pos + i;
            }
            if data.len() - pos > 1024 {
                return Err(Error::Protocol("chunk size line too long".into()));
            }
            let n = read_some(s, &mut chunk)?;
            if n == 0 {
                return Err(Error::Protocol("truncated chunked body".into()));
            }
            data.extend_from_slice(&chunk[..n]);
        };
        let line = std::str::from_utf8(&data[pos..line_end])
            .map_err(|_| Error::Protocol("bad chunk size".into()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Error::Protocol("bad chunk size".into()))?;
        pos = line_end + 2;
        if size == 0 {
            return Ok(body);
        }
        if body.len().saturating_add(size) > max_body {
            return Err(Error::TooLarge);
        }
        while data.len() < pos + size + 2 {
            let n = read_some(s, &mut chunk)?;
            if n == 0 {
                return Err(Error::Protocol("truncated chunked body".into()));
            }
            data.extend_from_slice(&chunk[..n]);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(Url::parse("https://as.example/jwks").is_ok());
        assert!(Url::parse("http://127.0.0.1:8080/jwks").is_ok());
        assert!(Url::parse("http://[::1]:8080/x").is_ok());
        assert!(Url::parse("http://localhost/x").is_ok());
        assert!(Url::parse("http://as.example/jwks").is_err());
        assert!(Url::parse("http://10.0.0.1/jwks").is_err());
        assert!(Url::parse("ftp://as.example/").is_err());
        assert!(Url::parse("https://u:p@as.example/").is_err());
        let u = Url::parse("https://as.example:8443?x=1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8443, "/?x=1"));
    }

    #[test]
    fn max_age() {
        let r = |v: &str| Response {
            status: 200,
            headers: vec![("cache-control".into(), v.into())],
            body: vec![],
        };
        assert_eq!(r("public, max-age=300").max_age(), Some(300));
        assert_eq!(r("no-store").max_age(), Some(0));
        assert_eq!(r("public").max_age(), None);
    }

    // ------------------------------------------------------------ loopback

    use std::net::{TcpListener, TcpStream};
    use std::sync::Mutex;

    #[derive(Clone)]
    enum Answer {
        /// These bytes, then close.
        Raw(Vec<u8>),
        /// Nothing for a while, then close.
        Silent,
        /// This header, then one body byte every 50 ms (for 3 s at most).
        Trickle(&'static str),
    }

    /// A server on 127.0.0.1 answering every connection with `a`; the raw
    /// requests it read. Its threads end by themselves within 3 s.
    fn server(a: Answer) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (a, seen) = (a.clone(), seen2.clone());
                std::thread::spawn(move || answer(s, &a, &seen));
            }
        });
        (port, seen)
    }

    fn answer(mut s: TcpStream, a: &Answer, seen: &Mutex<Vec<Vec<u8>>>) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break buf.len(),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < end + len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        seen.lock().unwrap().push(buf);
        match a {
            Answer::Raw(b) => {
                let _ = s.write_all(b);
            }
            Answer::Silent => std::thread::sleep(Duration::from_secs(3)),
            Answer::Trickle(head) => {
                let _ = s.write_all(head.as_bytes());
                for _ in 0..60 {
                    std::thread::sleep(Duration::from_millis(50));
                    if s.write_all(b"x").is_err() {
                        break;
                    }
                }
            }
        }
    }

    fn tls() -> Arc<rustls::ClientConfig> {
        tls_config(None).unwrap()
    }

    fn get(url: &str, timeout_ms: u64, max_body: usize) -> Result<Response, Error> {
        let url = Url::parse(url).unwrap();
        send(&Request {
            method: "GET",
            url: &url,
            headers: &[],
            body: None,
            timeout: Duration::from_millis(timeout_ms),
            max_body,
            tls: &tls(),
        })
    }

    fn raw(s: &str) -> Answer {
        Answer::Raw(s.as_bytes().to_vec())
    }

    #[test]
    fn framing_status_and_limits() {
        let big_header = format!(
            "HTTP/1.1 200 OK\r\nX-Pad: {}\r\nContent-Length: 2\r\n\r\nok",
            "p".repeat(MAX_HEADER_BYTES)
        );
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n";
        type Check = fn(Result<Response, Error>) -> bool;
        let cases: Vec<(&str, Answer, usize, Check)> = vec![
            (
                "content-length",
                raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: max-age=7\r\n\r\nhello"),
                5,
                |r| matches!(r, Ok(r) if r.status == 200 && r.body == b"hello" && r.max_age() == Some(7)),
            ),
            (
                "chunked",
                raw(chunked),
                7,
                |r| matches!(r, Ok(r) if r.body == b"abcdefg"),
            ),
            ("chunked over the limit", raw(chunked), 6, |r| {
                matches!(r, Err(Error::TooLarge))
            }),
            (
                "close-delimited",
                raw("HTTP/1.0 200 OK\r\n\r\nhello"),
                5,
                |r| matches!(r, Ok(r) if r.body == b"hello"),
            ),
            (
                "close-delimited over the limit",
                raw("HTTP/1.0 200 OK\r\n\r\nhello"),
                4,
                |r| matches!(r, Err(Error::TooLarge)),
            ),
            (
                "declared length over the limit",
                raw("HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n"),
                4096,
                |r| matches!(r, Err(Error::TooLarge)),
            ),
            ("header over the limit", Answer::Raw(big_header.into_bytes()), 10, |r| {
                matches!(r, Err(Error::TooLarge))
            }),
            (
                "a redirect is a status",
                raw("HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n"),
                10,
                |r| matches!(r, Ok(r) if r.status == 301 && r.header("location").is_some()),
            ),
            (
                "an error status is a status",
                raw("HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"),
                10,
                |r| matches!(r, Ok(r) if r.status == 503 && r.body == b"busy"),
            ),
            (
                "304",
                raw("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"),
                10,
                |r| matches!(r, Ok(r) if r.status == 304 && r.body.is_empty() && r.header("etag") == Some("\"v1\"")),
            ),
            (
                "compressed",
                raw("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nxxxx"),
                10,
                |r| matches!(r, Err(Error::Protocol(_))),
            ),
            (
                "truncated",
                raw("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"),
                100,
                |r| r.is_err(),
            ),
            ("not HTTP", raw("SSH-2.0-OpenSSH\r\n\r\n"), 100, |r| {
                matches!(r, Err(Error::Protocol(_) | Error::Io(_)))
            }),
        ];
        for (what, a, max_body, check) in cases {
            let (port, seen) = server(a);
            let r = get(&format!("http://127.0.0.1:{port}/x"), 2000, max_body);
            let shown = format!("{r:?}");
            assert!(check(r), "{what}: {shown}");
            assert_eq!(seen.lock().unwrap().len(), 1, "{what}: one request");
        }
    }

    #[test]
    fn one_deadline_covers_connect_tls_header_and_body() {
        for (what, a, https) in [
            ("no answer", Answer::Silent, false),
            ("no TLS handshake", Answer::Silent, true),
            (
                "a body that trickles",
                Answer::Trickle("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
                false,
            ),
        ] {
            let (port, _) = server(a);
            let scheme = if https { "https" } else { "http" };
            let start = Instant::now();
            let r = get(&format!("{scheme}://127.0.0.1:{port}/x"), 300, 10_000);
            let took = start.elapsed();
            assert!(matches!(r, Err(Error::Timeout)), "{what}: {r:?}");
            assert!(
                took >= Duration::from_millis(290) && took < Duration::from_millis(800),
                "{what}: took {took:?}"
            );
        }
        // Nobody listening.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(matches!(
            get(&format!("http://127.0.0.1:{port}/x"), 300, 10),
            Err(Error::Io(_))
        ));
    }

    #[test]
    fn the_request_as_sent() {
        let (port, seen) = server(raw("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        let url = Url::parse(&format!("http://127.0.0.1:{port}/introspect?a=b")).unwrap();
        let r = send(&Request {
            method: "POST",
            url: &url,
            headers: &[
                "Authorization: Basic eDp5".into(),
                "Accept: application/json".into(),
            ],
            body: Some(("application/x-www-form-urlencoded", b"token=a%2Bb")),
            timeout: Duration::from_secs(2),
            max_body: 10,
            tls: &tls(),
        });
        assert!(matches!(r, Ok(ref r) if r.status == 200), "{r:?}");
        let req = String::from_utf8(seen.lock().unwrap()[0].clone()).unwrap();
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("POST /introspect?a=b HTTP/1.1"));
        let mut fields: Vec<String> = lines.map(|l| l.to_ascii_lowercase()).collect();
        fields.sort();
        let want = [
            "accept-encoding: identity".to_owned(),
            "accept: application/json".to_owned(),
            "authorization: basic edp5".to_owned(),
            "connection: close".to_owned(),
            "content-length: 11".to_owned(),
            "content-type: application/x-www-form-urlencoded".to_owned(),
            format!("host: 127.0.0.1:{port}"),
            format!("user-agent: wic-tna/{}", env!("CARGO_PKG_VERSION")),
        ];
        assert_eq!(fields, want);
        assert_eq!(body, "token=a%2Bb");
        // A header that would split the request is refused unsent.
        let r = send(&Request {
            method: "GET",
            url: &url,
            headers: &["X-A: b\r\nX-Injected: c".into()],
            body: None,
            timeout: Duration::from_secs(2),
            max_body: 10,
            tls: &tls(),
        });
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn plain_http_only_to_loopback_even_if_a_url_says_otherwise() {
        let url = Url {
            tls: false,
            host: "192.0.2.1".into(),
            port: 80,
            path: "/".into(),
        };
        let start = Instant::now();
        let r = send(&Request {
            method: "GET",
            url: &url,
            headers: &[],
            body: None,
            timeout: Duration::from_secs(2),
            max_body: 10,
            tls: &tls(),
        });
        assert!(
            matches!(&r, Err(Error::Io(m)) if m.contains("plain http only to loopback")),
            "{r:?}"
        );
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "no connection tried"
        );
    }

    /// The threads of this process (Linux).
    fn tasks() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
    }

    #[test]
    fn a_request_starts_no_thread() {
        // In a forked child, which has one thread: requests (plain, and
        // a TLS handshake that fails) to the parent's loopback server.
        let (port, seen) = server(raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        // SAFETY: the child only runs the code below and leaves by _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = std::panic::catch_unwind(|| {
                let one = tasks() == 1;
                let plain = get(&format!("http://127.0.0.1:{port}/x"), 2000, 10)
                    .is_ok_and(|r| r.body == b"ok");
                let tls = get(&format!("https://127.0.0.1:{port}/x"), 2000, 10).is_err();
                one && plain && tls && tasks() == 1
            });
            // SAFETY: leave the child without running anything of the parent's.
            unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        let start = Instant::now();
        loop {
            // SAFETY: our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                // SAFETY: our own child, hung: end it.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                panic!("the child hung");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status}"
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
