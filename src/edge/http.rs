//! The blocking HTTP/1.1 client of the remote trust features (JWKS by URL,
//! RFC 7662 introspection): [`ureq`] with its own resolver and TLS pieces
//! replaced by ours, configured as follows.
//!
//! - **No thread, nothing kept.** ureq uses no async runtime and starts no
//!   thread once its name resolver is replaced; host names are resolved by
//!   [`crate::edge::dns`], whose helper threads (at most 4 per process) are
//!   started by lookups of names (never at load, so never before the fork
//!   of the proxy's workers). An agent is built for each request and
//!   dropped with it: no connection pool, one TCP connection per request
//!   (`Connection: close`), so nothing made in one process is used by
//!   another forked from it.
//! - **TLS** by rustls with the aws-lc-rs provider the crate already links
//!   and the issuer's settings from [`tls_config`] (public roots plus its
//!   `ca_file`), through our own connector: ureq's TLS features are off.
//! - **Limits**: one overall deadline for name resolution, connect, TLS
//!   handshake, write and read (ureq's global timeout; the resolver and
//!   the handshake get what is left of it); a cap on the response header
//!   ([`MAX_HEADER_BYTES`]) and body (`max_body`, a larger declared length
//!   is refused before reading); no redirects (a 3xx is just a status, as
//!   is any 4xx/5xx); no compression (a `Content-Encoding` other than
//!   `identity` is refused); no proxy from the environment.
//!
//! Plain `http://` is only ever used towards loopback addresses (checked at
//! configuration load, see [`Url::parse`], and again on the resolved
//! addresses).

pub use crate::core::url::Url;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::ResolvedSocketAddrs;
use ureq::unversioned::transport::time::Duration as UDuration;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector,
    Transport, TransportAdapter,
};

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
    /// Everything (name resolution, connect, TLS, write, read) must be
    /// done within this.
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

/// Do `req`. Blocking, bounded by `req.timeout` overall.
pub fn send(req: &Request<'_>) -> Result<Response, Error> {
    let deadline = Instant::now() + req.timeout;
    for h in req.headers {
        if h.bytes().any(|c| c == b'\r' || c == b'\n') {
            return Err(Error::Protocol("header with CR/LF".into()));
        }
    }
    // One agent per request, dropped with it: nothing outlives the call
    // (no pool, so nothing made in a process can be used by a child forked
    // later), and the connection is closed after the response.
    let config = ureq::Agent::config_builder()
        .proxy(None)
        .https_only(false)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(req.timeout))
        .max_response_header_size(MAX_HEADER_BYTES)
        .input_buffer_size(2 * MAX_HEADER_BYTES)
        .output_buffer_size(16 * 1024)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .user_agent(concat!("wic-tna/", env!("CARGO_PKG_VERSION")))
        .accept_encoding("identity")
        .build();
    let connector = ().chain(TcpConnector::default()).chain(Tls {
        config: req.tls.clone(),
        deadline,
    });
    let agent = ureq::Agent::with_parts(config, connector, Dns { deadline });

    let uri = format!(
        "{}://{}{}",
        if req.url.tls { "https" } else { "http" },
        req.url.host_header(),
        escape_path(&req.url.path)
    );
    let mut b = ureq::http::Request::builder()
        .method(req.method)
        .uri(uri)
        .header("Connection", "close");
    for h in req.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| Error::Protocol(format!("not a header line: {h}")))?;
        b = b.header(n.trim(), v.trim());
    }
    let mut resp = match req.body {
        Some((ctype, body)) => {
            let r = b
                .header("Content-Type", ctype)
                .body(body)
                .map_err(|e| Error::Protocol(format!("request: {e}")))?;
            agent.run(r)
        }
        None => {
            let r = b
                .body(())
                .map_err(|e| Error::Protocol(format!("request: {e}")))?;
            agent.run(r)
        }
    }
    .map_err(error)?;

    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if response
        .header("content-encoding")
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return Err(Error::Protocol("compressed body".into()));
    }
    // A declared length over the limit is refused before reading.
    if response
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .is_some_and(|l| l > req.max_body as u64)
    {
        return Err(Error::TooLarge);
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(req.max_body as u64)
        .read_to_vec()
        .map_err(error)?;
    Ok(Response { body, ..response })
}

/// ureq's error as ours.
fn error(e: ureq::Error) -> Error {
    match e {
        ureq::Error::Timeout(_) => Error::Timeout,
        ureq::Error::LargeResponseHeader(..) | ureq::Error::BodyExceedsLimit(_) => Error::TooLarge,
        ureq::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout,
            _ => Error::Io(e.to_string()),
        },
        ureq::Error::Protocol(e) => Error::Protocol(e.to_string()),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => Error::Io(e.to_string()),
        e => Error::Protocol(e.to_string()),
    }
}

/// The path with the few characters a URI cannot hold as they are
/// (`"`, `<`, `>`, `` ` ``: printable ASCII the configuration accepts)
/// percent-encoded.
fn escape_path(p: &str) -> std::borrow::Cow<'_, str> {
    if !p.contains(['"', '<', '>', '`']) {
        return p.into();
    }
    let mut o = String::with_capacity(p.len() + 8);
    for c in p.chars() {
        match c {
            '"' | '<' | '>' | '`' => o.push_str(&format!("%{:02X}", c as u32)),
            c => o.push(c),
        }
    }
    o.into()
}

/// Name resolution for ureq by [`crate::edge::dns`]: an IP literal as it
/// is; a name from the per-process cache, or looked up by a helper thread
/// while this request waits at most until its deadline (getaddrinfo
/// itself cannot be bounded). At most 4 addresses are tried.
#[derive(Debug)]
struct Dns {
    deadline: Instant,
}

impl ureq::unversioned::resolver::Resolver for Dns {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let tls = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let deadline = match timeout.after {
            UDuration::Exact(d) => self.deadline.min(Instant::now() + d),
            UDuration::NotHappening => self.deadline,
        };
        let ips = crate::edge::dns::lookup(host, deadline)
            .map_err(|m| ureq::Error::Io(std::io::Error::other(m)))?;
        if !tls && !ips.iter().all(|ip| ip.is_loopback()) {
            return Err(ureq::Error::Io(std::io::Error::other(
                "plain http only to loopback",
            )));
        }
        let mut out = self.empty();
        for &ip in ips.iter().take(4) {
            out.push(SocketAddr::new(ip, port));
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// TLS for ureq with the issuer's own rustls settings ([`tls_config`]),
/// wrapping the TCP connection of an `https` request.
#[derive(Debug)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    deadline: Instant,
}

impl<In: Transport> Connector<In> for Tls {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(tcp) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || tcp.is_tls() {
            return Ok(Some(Either::A(tcp)));
        }
        let host = details.uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            ureq::Error::Io(std::io::Error::other(format!("bad TLS server name: {e}")))
        })?;
        let mut conn = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| ureq::Error::Io(std::io::Error::other(format!("TLS: {e}"))))?;
        let mut sock = TransportAdapter::new(tcp.boxed(), details.current_time.clone());
        // The handshake gets what is left of the request's time.
        sock.set_timeout(NextTimeout {
            after: UDuration::Exact(self.deadline.saturating_duration_since(Instant::now())),
            reason: ureq::Timeout::Global,
            ..NextTimeout::default()
        });
        conn.complete_io(&mut sock)?;
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: rustls::StreamOwned::new(conn, sock),
        })))
    }
}

/// A TLS connection as a ureq transport.
struct TlsTransport {
    buffers: LazyBuffers,
    stream: rustls::StreamOwned<rustls::ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.sock.set_timeout(timeout);
        let out = &self.buffers.output()[..amount];
        self.stream.write_all(out)?;
        self.stream.flush()?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.sock.set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let n = match self.stream.read(input) {
            Ok(n) => n,
            // A peer closing without close_notify: the end of the stream
            // (a body it cuts short still fails on its length or framing).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.sock.get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
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
        let url = Url::parse(&format!("http://127.0.0.1:{port}/in<tro>?a=\"b\"&c=`d`")).unwrap();
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
        assert_eq!(
            lines.next(),
            Some("POST /in%3Ctro%3E?a=%22b%22&c=%60d%60 HTTP/1.1")
        );
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
