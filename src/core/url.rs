//! The URL of a remote trust endpoint (`jwks_url`, introspection
//! `endpoint`) as the configuration gives it: parsed and checked, with no
//! I/O (the HTTP client in src/edge/http.rs uses it).

use std::net::IpAddr;

/// A parsed `http(s)://host[:port]/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https` or `http`.
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse `s`. `http://` is accepted only when the host is a loopback
    /// address literal (`127.0.0.0/8`, `::1`) or `localhost`: plain HTTP is
    /// for tests. No user info, no fragment.
    pub fn parse(s: &str) -> Result<Url, String> {
        if s.bytes().any(|c| !c.is_ascii_graphic()) {
            return Err("the URL has spaces or non-ASCII characters".into());
        }
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("must start with https:// (http:// only to a loopback address)".into());
        };
        if s.contains('#') {
            return Err("a URL with a fragment is not accepted".into());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(
                "user info in the URL is not accepted (use the credentials settings)".into(),
            );
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let end = r.find(']').ok_or("unclosed [ in the host")?;
            let host = &r[..end];
            let port = match &r[end + 1..] {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("bad port")?),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or("bad port")?,
            None if tls => 443,
            None => 80,
        };
        let url = Url {
            tls,
            host,
            port,
            path,
        };
        if !tls && !url.is_loopback() {
            return Err("plain http:// is only allowed to a loopback address (127.0.0.0/8, ::1, localhost); use https://".into());
        }
        Ok(url)
    }

    /// Is the host a loopback address (or `localhost`)?
    pub fn is_loopback(&self) -> bool {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host.eq_ignore_ascii_case("localhost"),
        }
    }

    pub(crate) fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if (self.tls && self.port == 443) || (!self.tls && self.port == 80) {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

impl std::fmt::Display for Url {
    /// The URL as written: `http(s)://host[:port]/path` (the port only
    /// when it is not the scheme's default).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}
